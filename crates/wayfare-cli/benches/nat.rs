//! Sellers at home: the time from the channel's open to the first byte from the internet host
//! through the tunnel, for a seller behind the lab's home router (nft masquerade, miniupnpd:
//! its ports mapped by UPnP, its reveal naming the router's address) against a directly
//! reachable seller, both services, medians over rounds, in one run. Namespace lab only (root).
//! `cargo bench -p wayfare-cli --bench nat` (or `make bench-nat`).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use alloy_primitives::U256;
use wayfare_node::{
    config::ServiceName,
    labnet::{LabNet, SellerSpec},
};

const ROUNDS: usize = 5;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The seconds `wayfare connect` printed for the channel's open ("channel … open; waiting …"),
/// or for "connected" when the reveal came before its next poll.
fn opened_at(out: &str) -> Option<f64> {
    let at = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|t| t.trim_end_matches('s').parse().ok())
    };
    at(" open; waiting").or_else(|| at("    connected"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(why) = LabNet::namespaces_unavailable() {
        eprintln!("bench-nat needs the namespace lab: {why}");
        std::process::exit(1);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut net = LabNet::start(
        Path::new(env!("CARGO_BIN_EXE_wayfare")),
        tmp.path(),
        true,
        2,
        60,
        &mut |m| eprintln!("· {m}"),
    )
    .expect("lab network");
    net.add_home().expect("the home router");
    let both = vec![ServiceName::Shadowsocks, ServiceName::Wireguard];
    let mut home = SellerSpec::new(1);
    home.services = both.clone();
    home.at_home = true;
    let mut direct = SellerSpec::new(2);
    direct.services = both;
    let _home = net.start_seller(&home).expect("the seller at home");
    let _direct = net.start_seller(&direct).expect("the direct seller");
    let buyer = net
        .start_buyer(U256::from(50_000_000_000_000_000u128))
        .expect("buyer");
    net.wait_for("both offers", Duration::from_secs(60), || {
        net.cli_json(&buyer, &["offers"])
            .ok()
            .filter(|v| v.as_array().is_some_and(|a| a.len() == 2))
    })
    .expect("offers");
    println!(
        "channel open -> first byte, namespace lab ({ROUNDS} rounds each, debug={})",
        cfg!(debug_assertions)
    );
    let sellers = [
        ("mapped", net.info.sellers[0].account.address.to_string()),
        ("direct", net.info.sellers[1].account.address.to_string()),
    ];
    for service in ["wireguard", "shadowsocks"] {
        let mut medians = Vec::new();
        for (kind, seller) in &sellers {
            let mut open_to_first = Vec::new();
            for round in 0..ROUNDS {
                let t0 = Instant::now();
                let out = net
                    .cli(
                        &buyer,
                        &["connect", "--service", service, "--seller", seller],
                    )
                    .expect("connect");
                let socks = (service == "shadowsocks").then_some(buyer.service_port);
                net.download(socks, 1).expect("first byte");
                let first = t0.elapsed().as_secs_f64();
                let opened = opened_at(&out).expect("connect printed the channel's open");
                open_to_first.push((first - opened) * 1000.0);
                println!(
                    "  {service:<11} {kind}  round {round}: open -> first byte {:>7.1} ms",
                    open_to_first[round]
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
            medians.push(median(&mut open_to_first));
        }
        println!(
            "RESULT service={service} mapped_open_to_first_byte_ms={:.0} direct_open_to_first_byte_ms={:.0} ratio={:.2}",
            medians[0],
            medians[1],
            medians[0] / medians[1]
        );
    }
}
