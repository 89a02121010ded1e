//! Connect latency on the devnet, with the real daemons: the time from running
//! `wayfare connect` to the first byte from the internet host through the tunnel (negotiation,
//! the `open` transaction, the sealed reveal and the tunnel included), as medians over rounds.
//! Target: < 1.5 s. Namespace lab with WireGuard and shadowsocks as root, loopback shadowsocks
//! otherwise. `cargo bench -p wayfare-cli --bench connect` (or `make bench-connect`).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use alloy_primitives::U256;
use wayfare_node::{
    config::ServiceName,
    labnet::{LabNet, SellerSpec},
};

const ROUNDS: usize = 7;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ns = LabNet::namespaces_unavailable().is_none();
    let tmp = tempfile::tempdir().expect("tempdir");
    let net = LabNet::start(
        Path::new(env!("CARGO_BIN_EXE_wayfare")),
        tmp.path(),
        ns,
        1,
        60,
        &mut |m| eprintln!("· {m}"),
    )
    .expect("lab network");
    let mut spec = SellerSpec::new(1);
    if ns {
        spec.services = vec![ServiceName::Shadowsocks, ServiceName::Wireguard];
    }
    let _seller = net.start_seller(&spec).expect("seller");
    let buyer = net
        .start_buyer(U256::from(50_000_000_000_000_000u128))
        .expect("buyer");
    net.wait_for("the offer", Duration::from_secs(60), || {
        net.cli_json(&buyer, &["offers"])
            .ok()
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    })
    .expect("offer");
    let services: &[&str] = if ns {
        &["shadowsocks", "wireguard"]
    } else {
        &["shadowsocks"]
    };
    println!(
        "connect -> first byte, {} ({} rounds each, debug={})",
        if ns { "namespace lab" } else { "loopback" },
        ROUNDS,
        cfg!(debug_assertions)
    );
    for service in services {
        let (mut connect, mut first) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let t0 = Instant::now();
            net.cli(&buyer, &["connect", "--service", service])
                .expect("connect");
            let t1 = Instant::now();
            let socks = (*service == "shadowsocks").then_some(buyer.service_port);
            net.download(socks, 1).expect("first byte");
            let t2 = Instant::now();
            connect.push((t1 - t0).as_secs_f64() * 1000.0);
            first.push((t2 - t0).as_secs_f64() * 1000.0);
            println!(
                "  {service:<11} round {round}: connected {:>7.1} ms, first byte {:>7.1} ms",
                connect[round], first[round]
            );
            net.cli(&buyer, &["disconnect", "--close"])
                .expect("disconnect");
            net.wait_for("the channel to close", Duration::from_secs(60), || {
                let v = net.cli_json(&buyer, &["channels"]).ok()?;
                v.as_array()?
                    .iter()
                    .all(|c| c["state"] == "closed")
                    .then_some(())
            })
            .expect("close");
        }
        println!(
            "RESULT service={service} connect_median_ms={:.0} first_byte_median_ms={:.0} target_ms=1500",
            median(&mut connect),
            median(&mut first)
        );
    }
    // Reconnect on an open channel: connect once, then pause and resume.
    let service = services[services.len() - 1];
    let socks = (service == "shadowsocks").then_some(buyer.service_port);
    net.cli(&buyer, &["connect", "--service", service])
        .expect("connect");
    let (mut connect, mut first) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        net.cli(&buyer, &["disconnect"]).expect("pause");
        net.wait_for("the pause", Duration::from_secs(20), || {
            let v = net.cli_json(&buyer, &["status"]).ok()?;
            v["sessions"]
                .as_array()?
                .iter()
                .any(|s| s["phase"] == "paused")
                .then_some(())
        })
        .expect("paused");
        let t0 = Instant::now();
        let out = net
            .cli(&buyer, &["connect", "--service", service])
            .expect("reconnect");
        let t1 = Instant::now();
        assert!(out.contains("reused"), "not a reconnect: {out}");
        net.download(socks, 1).expect("first byte");
        let t2 = Instant::now();
        connect.push((t1 - t0).as_secs_f64() * 1000.0);
        first.push((t2 - t0).as_secs_f64() * 1000.0);
        println!(
            "  reconnect   round {round}: connected {:>7.1} ms, first byte {:>7.1} ms",
            connect[round], first[round]
        );
    }
    net.cli(&buyer, &["disconnect", "--close"]).expect("close");
    println!(
        "RESULT reconnect service={service} connect_median_ms={:.0} first_byte_median_ms={:.0} target_ms=300",
        median(&mut connect),
        median(&mut first)
    );
}
