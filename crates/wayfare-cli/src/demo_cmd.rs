//! `wayfare demo`: a whole local network moving real traffic and real payments, then a table of
//! what happened, every figure read back from the meters and the chain.
//!
//! As root: the namespace lab (buyer, seller and internet hosts), anvil on the seller host,
//! three seller daemons and a buyer daemon. Seller 1 is the cheapest, but its exit reaches
//! nothing. Round 1: the buyer picks it (every seller is a newcomer, so price decides), measures
//! that nothing comes back, closes and rates it 1 on chain. Round 2: the buyer's choice passes
//! over the seller that just failed and weighs price against score among the others; it downloads from the internet host through it
//! (WireGuard by default), pays every interval, disconnects after `--duration`, and the channel
//! closes on chain. Without root: round 2 only, on loopback with shadowsocks and SOCKS5.

use std::{path::PathBuf, time::Duration};

use alloy_primitives::{B256, U256};
use anyhow::{Context, bail};
use serde::Serialize;
use wayfare_chain::{bindings::WayfareMarket::WayfareMarketEvents, units::format_eth};
use wayfare_node::{
    config::ServiceName,
    labnet::{Daemon, LabNet, SellerSpec},
};

use crate::output;

/// `wayfare demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Seconds connected before the buyer disconnects.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seller daemons to start.
    #[arg(long, default_value_t = 3)]
    sellers: usize,
    /// The service the buyer uses (default: wireguard as root in the lab, shadowsocks on loopback).
    #[arg(long, value_parser = ["wireguard", "shadowsocks"])]
    service: Option<String>,
    /// Run on loopback even as root (shadowsocks only).
    #[arg(long)]
    loopback: bool,
    /// Work directory (configs, stores, logs); a temporary one by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the summary as JSON here.
    #[arg(long, env = "WAYFARE_DEMO_SUMMARY")]
    summary: Option<PathBuf>,
}

/// One session in the summary.
#[derive(Debug, Serialize)]
struct SessionSummary {
    seller: String,
    service: String,
    channel: String,
    bytes: u64,
    seconds: u64,
    owed_wei: String,
    paid_wei: String,
    settled_wei: String,
    refunded_wei: String,
    seller_burn_wei: String,
    buyer_burn_wei: String,
}

#[derive(Debug, Serialize)]
struct Summary {
    namespaces: bool,
    sessions: Vec<SessionSummary>,
    burns_wei: String,
    all_settled: bool,
}

fn step(msg: &str) {
    println!("==> {msg}");
}

/// `wayfare demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // The lab drives blocking child processes: keep it off the async workers.
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

fn run_blocking(args: DemoArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("where is the wayfare binary?")?;
    let namespaces = !args.loopback && LabNet::namespaces_unavailable().is_none();
    if !namespaces && !args.loopback {
        step(&format!(
            "no namespace lab here ({}): running on loopback with shadowsocks",
            LabNet::namespaces_unavailable().unwrap_or_default()
        ));
    }
    let service = match (&args.service, namespaces) {
        (Some(s), _) if s == "wireguard" && !namespaces => {
            bail!(
                "WireGuard needs root and the namespace lab: run as root, or use --service shadowsocks"
            )
        }
        (Some(s), _) => s.clone(),
        (None, true) => "wireguard".into(),
        (None, false) => "shadowsocks".into(),
    };
    if args.sellers == 0 {
        bail!("--sellers must be at least 1");
    }
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let net = LabNet::start(&exe, &dir, namespaces, args.sellers, 60, &mut |m| step(m))?;
    step(&format!(
        "chain up: market {} on {} (chain {})",
        net.info.market,
        net.rpc_url(),
        net.info.chain_id
    ));

    // With two sellers or more in the namespace lab, seller 1 is the cheapest and its exit is
    // broken: its uplink drops what its tunnel forwards (its announced policy is honest, so a
    // refusal by policy would not be its fault; a dead uplink is).
    let trial = args.sellers >= 2 && namespaces;
    let mut sellers: Vec<Daemon> = Vec::new();
    for i in 1..=args.sellers {
        let mut spec = SellerSpec::new(i);
        // Different prices, so the choice shows.
        spec.price_per_mib = match i {
            1 if trial => 800_000_000_000,
            _ => 1_000_000_000_000 * i as u128,
        };
        if namespaces {
            spec.services = vec![ServiceName::Shadowsocks, ServiceName::Wireguard];
        }
        if i == 1 && trial {
            step(
                "starting seller-1 daemon: the cheapest, with a broken exit (its uplink drops what its tunnel forwards)",
            );
        } else {
            step(&format!("starting seller-{i} daemon"));
        }
        sellers.push(net.start_seller(&spec)?);
        if i == 1 && trial {
            net.break_exit(1)?;
        }
    }
    step("starting the buyer daemon");
    let buyer = net.start_buyer(U256::from(50_000_000_000_000_000u128))?;

    step("waiting for the sellers' announcements");
    let n = args.sellers;
    net.wait_for("every seller's offer", Duration::from_secs(60), || {
        net.cli_json(&buyer, &["offers"])
            .ok()
            .filter(|v| v.as_array().is_some_and(|a| a.len() >= n))
    })?;
    print!("{}", net.cli(&buyer, &["offers"])?);
    let socks = (service == "shadowsocks").then_some(buyer.service_port);

    if trial {
        step("round 1: every seller is a newcomer, so the cheapest offer wins");
        step(&format!("wayfare connect --service {service}"));
        print!("{}", net.cli(&buyer, &["connect", "--service", &service])?);
        step("downloading for 10 s: nothing comes back through seller-1's exit");
        let got = download_for(&net, &buyer, socks, Duration::from_secs(10), 3);
        if got > 0 {
            bail!("{got} bytes came back through seller-1's broken exit");
        }
        step("wayfare disconnect --close (the buyer rates the seller from what it measured)");
        print!("{}", net.cli(&buyer, &["disconnect", "--close"])?);
        wait_all_closed(&net, &buyer)?;
        let a1 = net.info.sellers[0].account.address.to_string();
        net.wait_for(
            "the buyer's rating of seller-1",
            Duration::from_secs(30),
            || {
                let v = net.cli_json(&buyer, &["offers", "--sort", "score"]).ok()?;
                let o = v.as_array()?.iter().find(|o| o["seller"] == a1.as_str())?;
                // Its close and its rating of 1 read (0.28 with these burns).
                (o["score"].as_f64()? < 0.3).then_some(())
            },
        )?;
        step("wayfare offers --sort score (seller-1 rated 1 on chain, and the buyer's own record)");
        print!("{}", net.cli(&buyer, &["offers", "--sort", "score"])?);
        step(
            "round 2: a seller whose latest session failed is tried last; the others by price and score",
        );
        // The old session may still be winding down for a moment.
        std::thread::sleep(Duration::from_secs(1));
    }

    step(&format!("wayfare connect --service {service}"));
    let out = net.cli(&buyer, &["connect", "--service", &service])?;
    print!("{out}");

    step(&format!(
        "downloading from the internet host for {} s",
        args.duration
    ));
    download_for(&net, &buyer, socks, Duration::from_secs(args.duration), 60);

    step("wayfare disconnect --close");
    print!("{}", net.cli(&buyer, &["disconnect", "--close"])?);
    step("waiting for the channel to close on chain");
    let channels = wait_all_closed(&net, &buyer)?;

    // Read everything back: meters from the seller daemons, amounts from the chain.
    let mut sessions = Vec::new();
    let mut all_settled = true;
    for ch in &channels {
        let id: B256 = ch["id"].as_str().unwrap_or_default().parse()?;
        let seller_addr = ch["seller"].as_str().unwrap_or_default().to_string();
        let seller_daemon = sellers
            .iter()
            .find(|d| {
                net.cli_json(d, &["seller", "status"])
                    .ok()
                    .is_some_and(|v| {
                        v["account"]
                            .as_str()
                            .is_some_and(|a| a.eq_ignore_ascii_case(&seller_addr))
                    })
            })
            .context("no seller daemon for the channel's seller")?;
        let sv = net.cli_json(seller_daemon, &["seller", "status"])?;
        let sess = sv["sessions"]
            .as_array()
            .and_then(|a| {
                a.iter().find(|s| {
                    s["channel_id"]
                        .as_str()
                        .is_some_and(|c| c.eq_ignore_ascii_case(&id.to_string()))
                })
            })
            .cloned()
            .unwrap_or_default();
        let (opened, closed) = net.chain(move |c| async move {
            let logs = c.events_between(0, c.head().await?.0).await?;
            let mut opened = None;
            let mut closed = None;
            for l in logs {
                match l.event {
                    WayfareMarketEvents::ChannelOpened(e) if e.id == id => {
                        opened = Some((e.sellerBurn, e.buyerBurn))
                    }
                    WayfareMarketEvents::ChannelClosed(e) if e.id == id => {
                        closed = Some((e.toSeller, e.toBuyer))
                    }
                    _ => {}
                }
            }
            Ok((opened, closed))
        })?;
        let (z, w) = opened.unwrap_or_default();
        let Some((to_seller, to_buyer)) = closed else {
            all_settled = false;
            continue;
        };
        sessions.push(SessionSummary {
            seller: seller_addr,
            service: ch["service"].as_str().unwrap_or_default().into(),
            channel: id.to_string(),
            bytes: sess["bytes"].as_u64().unwrap_or(0),
            seconds: sess["seconds"].as_u64().unwrap_or(0),
            owed_wei: sess["owed_wei"].as_str().unwrap_or("0").into(),
            paid_wei: ch["voucher_wei"].as_str().unwrap_or("0").into(),
            settled_wei: to_seller.to_string(),
            refunded_wei: to_buyer.to_string(),
            seller_burn_wei: z.to_string(),
            buyer_burn_wei: w.to_string(),
        });
    }
    // Both sides rated each other on chain at the close; the offers now show it.
    let rated = net.wait_for("the ratings to be read", Duration::from_secs(20), || {
        let v = net.cli_json(&buyer, &["offers", "--sort", "score"]).ok()?;
        let top = v.as_array()?.first()?["score"].as_f64()?;
        (top > 0.5).then_some(())
    });
    if rated.is_ok() {
        step("wayfare offers --sort score (after the buyer rated its sellers on chain)");
        print!("{}", net.cli(&buyer, &["offers", "--sort", "score"])?);
    }
    let burns = net.chain(|c| async move { c.burned_unswept().await })?;
    let summary = Summary {
        namespaces,
        sessions,
        burns_wei: burns.to_string(),
        all_settled,
    };
    step("summary (meters from the seller daemon, amounts from the chain)");
    let rows: Vec<Vec<String>> = summary
        .sessions
        .iter()
        .map(|s| {
            vec![
                short(&s.seller),
                s.service.clone(),
                format!("{:.1} MiB", s.bytes as f64 / 1048576.0),
                s.seconds.to_string(),
                eth(Some(&s.owed_wei)),
                eth(Some(&s.paid_wei)),
                eth(Some(&s.settled_wei)),
                eth(Some(&s.refunded_wei)),
                eth(Some(
                    &(s.seller_burn_wei.parse::<U256>().unwrap_or_default()
                        + s.buyer_burn_wei.parse::<U256>().unwrap_or_default())
                    .to_string(),
                )),
            ]
        })
        .collect();
    output::table(
        &[
            "SELLER",
            "SERVICE",
            "BYTES",
            "SECONDS",
            "OWED",
            "PAID",
            "SETTLED ON CHAIN",
            "REFUNDED",
            "BURNS",
        ],
        &rows,
    );
    println!("burns waiting for the sink: {}", format_eth(burns));
    if let Some(p) = &args.summary {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("write {}", p.display()))?;
        println!("summary written to {}", p.display());
    }
    drop(buyer);
    drop(sellers);
    drop(net);
    if !summary.all_settled || summary.sessions.is_empty() {
        bail!(
            "not every session was settled on chain (logs in {})",
            dir.display()
        );
    }
    println!("every session settled on chain");
    Ok(())
}

/// Downloads from the internet host for `duration` (each try at most `per_try` seconds),
/// printing progress every 10 s; returns the bytes received.
fn download_for(
    net: &LabNet,
    buyer: &Daemon,
    socks: Option<u16>,
    duration: Duration,
    per_try: u64,
) -> u64 {
    let start = std::time::Instant::now();
    let mut got = 0u64;
    let mut next_report = Duration::from_secs(0);
    while start.elapsed() < duration {
        match net.download_within(socks, 4 << 20, Duration::from_secs(per_try)) {
            Ok(n) => got += n,
            Err(e) => println!("    download failed: {e}"),
        }
        if start.elapsed() >= next_report {
            next_report += Duration::from_secs(10);
            if let Ok(v) = net.cli_json(buyer, &["status"])
                && let Some(s) = v["sessions"].as_array().and_then(|a| {
                    a.iter()
                        .find(|s| s["role"] == "buyer" && s["phase"] != "ended")
                })
            {
                println!(
                    "    {:>4} s  downloaded {:>6.1} MiB  metered {:>6.1} MiB  owed {}  paid {}",
                    start.elapsed().as_secs(),
                    got as f64 / 1048576.0,
                    s["bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0,
                    eth(s["owed_wei"].as_str()),
                    eth(s["paid_wei"].as_str()),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    got
}

/// Waits until every channel of the buyer is closed on chain; returns them.
fn wait_all_closed(net: &LabNet, buyer: &Daemon) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(net.wait_for(
        "the buyer's channels to close",
        Duration::from_secs(90),
        || {
            let v = net.cli_json(buyer, &["channels"]).ok()?;
            let list = v.as_array()?.clone();
            (!list.is_empty() && list.iter().all(|c| c["state"] == "closed")).then_some(list)
        },
    )?)
}

fn eth(wei: Option<&str>) -> String {
    wei.and_then(|w| w.parse().ok())
        .map(format_eth)
        .unwrap_or_else(|| "-".into())
}

fn short(s: &str) -> String {
    if s.len() > 14 {
        format!("{}…{}", &s[..8], &s[s.len() - 4..])
    } else {
        s.to_string()
    }
}
