//! The end-to-end lab world shared by the daemon-level tests (`node_e2e`, `hostile`): a devnet,
//! one seller daemon and a buyer daemon, and what the tests ask of them. Each test binary uses
//! part of it.
#![allow(dead_code)]

pub mod attacker;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy_primitives::{Address, B256, U256};
use wayfare_chain::bindings::WayfareMarket::WayfareMarketEvents;
use wayfare_node::{
    config::ServiceName,
    labnet::{Daemon, LabNet, SellerSpec},
};

pub const WAYFARE: &str = env!("CARGO_BIN_EXE_wayfare");
pub const MIB: u64 = 1 << 20;
pub const X: u128 = 1_000_000_000_000; // wei per MiB
pub const DEPOSIT: u128 = 50_000_000_000_000_000;

/// Whether the lab is usable; panics under `WAYFARE_REQUIRE_NETNS=1` when it isn't.
pub fn lab_available(test: &str) -> bool {
    match LabNet::namespaces_unavailable() {
        None => true,
        Some(why) => {
            if std::env::var("WAYFARE_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("{test}: the namespace lab is required (WAYFARE_REQUIRE_NETNS=1) but {why}");
            }
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

pub struct World {
    pub net: LabNet,
    pub sellers: Vec<Daemon>,
    pub buyer: Daemon,
    pub _tmp: tempfile::TempDir,
}

impl World {
    pub fn new(namespaces: bool, spec: SellerSpec) -> World {
        let tmp = tempfile::Builder::new()
            .prefix("wayfare-e2e")
            .tempdir()
            .unwrap();
        let net = LabNet::start(
            Path::new(WAYFARE),
            tmp.path(),
            namespaces,
            1,
            60,
            &mut |m| eprintln!("· {m}"),
        )
        .expect("start the lab network");
        let seller = net.start_seller(&spec).expect("start the seller");
        let buyer = net
            .start_buyer(U256::from(DEPOSIT))
            .expect("start the buyer");
        net.wait_for("the seller's offer", Duration::from_secs(60), || {
            net.cli_json(&buyer, &["offers"])
                .ok()
                .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        })
        .expect("offer");
        World {
            net,
            sellers: vec![seller],
            buyer,
            _tmp: tmp,
        }
    }

    pub fn dir(&self) -> PathBuf {
        self._tmp.path().to_path_buf()
    }

    pub fn connect(&self, service: &str) -> serde_json::Value {
        self.net
            .cli_json(&self.buyer, &["connect", "--service", service])
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.logs()))
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for d in self.sellers.iter().chain([&self.buyer]) {
            let text = std::fs::read_to_string(&d.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} log (last 40 lines)\n", d.name));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    pub fn seller_channels(&self) -> Vec<serde_json::Value> {
        self.net
            .cli_json(&self.sellers[0], &["channels"])
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub fn buyer_channel(&self) -> Option<serde_json::Value> {
        self.net
            .cli_json(&self.buyer, &["channels"])
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
    }

    /// The channel's close on chain: (to seller, to buyer).
    pub fn closed_on_chain(&self, id: B256) -> Option<(U256, U256)> {
        self.net
            .chain(move |c| async move {
                let head = c.head().await?.0;
                let logs = c.events_between(0, head).await?;
                Ok(logs.into_iter().find_map(|l| match l.event {
                    WayfareMarketEvents::ChannelClosed(e) if e.id == id => {
                        Some((e.toSeller, e.toBuyer))
                    }
                    _ => None,
                }))
            })
            .ok()
            .flatten()
    }

    pub fn wait_closed(&self, id: B256, timeout: Duration) -> (U256, U256) {
        self.net
            .wait_for("the channel to close on chain", timeout, || {
                self.closed_on_chain(id)
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Waits until the seller holds (has persisted) a voucher for channel `id`; returns it.
    pub fn wait_seller_voucher(&self, id: B256) -> U256 {
        self.wait_seller_voucher_above(id, U256::ZERO, Duration::from_secs(20))
    }

    /// Waits up to `within` until the seller's best voucher for `id` is above `above`.
    pub fn wait_seller_voucher_above(&self, id: B256, above: U256, within: Duration) -> U256 {
        self.net
            .wait_for("a newer voucher at the seller", within, || {
                self.seller_channels()
                    .into_iter()
                    .find(|c| c["id"].as_str() == Some(&id.to_string()))
                    .map(|c| u256(&c["voucher_wei"]))
                    .filter(|v| *v > above)
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Asserts `to_seller` (what the chain paid) is the seller's `owed` within the protocol's
    /// tolerance: 2 % plus one interval of a 1 MiB/s flow (protocol.md).
    pub fn assert_settled_at_meter(&self, to_seller: U256, owed: U256) {
        let slack = owed * U256::from(2) / U256::from(100) + U256::from(X);
        let diff = to_seller.max(owed) - to_seller.min(owed);
        assert!(
            diff <= slack,
            "settled {to_seller} wei, the seller's meter says {owed} wei (diff {diff} > {slack})\n{}",
            self.logs()
        );
    }

    /// Waits for the first on-chain rating `pick` accepts; returns its score and block.
    pub fn wait_rating(
        &self,
        what: &str,
        pick: fn(&wayfare_chain::bindings::WayfareMarket::Rated, Address) -> bool,
    ) -> (u8, u64) {
        let buyer = self.net.info.buyers[0].address;
        self.net
            .wait_for(what, Duration::from_secs(30), || {
                self.net
                    .chain(move |c| async move {
                        let head = c.head().await?.0;
                        Ok(c.events_between(0, head).await?.into_iter().find_map(|l| {
                            match l.event {
                                WayfareMarketEvents::Rated(e) if pick(&e, buyer) => {
                                    Some((e.score, l.block))
                                }
                                _ => None,
                            }
                        }))
                    })
                    .ok()
                    .flatten()
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Daemon `d`'s `/metrics` page (with its API token), fetched on its host.
    pub fn metrics(&self, d: &Daemon) -> String {
        let token = std::fs::read_to_string(d.data_dir.join("api-token")).unwrap_or_default();
        let out = self
            .net
            .command(d.host, Path::new("curl"))
            .args(["-sf", "-H"])
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg(format!("http://{}/metrics", d.api))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The value of the metric line `name` (with its labels, e.g.
    /// `wayfare_messages_refused_total{reason="replayed"}`) on daemon `d`, 0 if absent.
    pub fn metric(&self, d: &Daemon, name: &str) -> f64 {
        metric_in(&self.metrics(d), name)
    }

    /// The seller's session for channel `id` as its API shows it.
    pub fn seller_session(&self, id: B256) -> serde_json::Value {
        let v = self
            .net
            .cli_json(&self.sellers[0], &["seller", "status"])
            .unwrap();
        v["sessions"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|s| s["channel_id"].as_str() == Some(&id.to_string()))
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no seller session for {id}: {v}"))
    }
}

/// The value of the line `name` in a Prometheus text page, 0 if absent.
pub fn metric_in(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn u256(v: &serde_json::Value) -> U256 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an amount: {v}"))
}

pub fn channel_id(v: &serde_json::Value) -> B256 {
    v["channel_id"]
        .as_str()
        .or_else(|| v["id"].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no channel id in {v}"))
}

pub fn spec(services: Vec<ServiceName>) -> SellerSpec {
    let mut s = SellerSpec::new(1);
    s.services = services;
    s.price_per_mib = X;
    s.price_per_second = 0; // owed is then exactly the metered bytes
    s.interval = 1;
    // Generous for a machine running every test at once; (b) allows for it.
    s.grace = 4;
    s
}

/// A DNS server answering every A query with `answer`, counting the queries it got.
pub fn dns_server(
    net: &LabNet,
    host: wayfare_node::labnet::Host,
    at: std::net::SocketAddr,
    answer: std::net::Ipv4Addr,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    net.spawn_on(host, async move {
        let sock = match tokio::net::UdpSocket::bind(at).await {
            Ok(s) => {
                let _ = tx.send(true);
                s
            }
            Err(e) => {
                eprintln!("dns server on {at}: {e}");
                let _ = tx.send(false);
                return;
            }
        };
        let mut b = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut b).await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < 12 {
                continue;
            }
            let mut r = b[..n].to_vec();
            r[2] = 0x81; // QR, RD
            r[3] = 0x80; // RA, NOERROR
            r[6..8].copy_from_slice(&1u16.to_be_bytes()); // one answer
            r[8..12].fill(0);
            // Keep the question only (drop EDNS): find its end.
            let mut i = 12;
            while i < r.len() && r[i] != 0 {
                i += usize::from(r[i]) + 1;
            }
            r.truncate(i + 5);
            r.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend(answer.octets());
            let _ = sock.send_to(&r, from).await;
        }
    })
    .expect("spawn the dns server");
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false),
        "dns server on {at}"
    );
    count
}
