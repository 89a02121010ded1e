//! A quote flood against a seller daemon while a buyer pays it (namespace lab, real daemons, real
//! anvil, root): how many quote requests a second the seller absorbs from 50 hostile peer ids,
//! its resident memory before, at the peak and after, and the p99 of the honest buyer's voucher
//! round trip (`wayfare_voucher_ack_seconds`, a 60 s window) without and with the flood.
//! Target: honest p99 under 1 s during the flood, and memory back within 10 % of its start.
//! `make bench-flood` (or `cargo bench -p wayfare-cli --bench flood`). Ends with one line
//! `RESULT quotes_per_s=… honest_p99_ms=… honest_p99_idle_ms=… rss_start_mib=… rss_peak_mib=…
//! rss_end_mib=…` and exits non-zero when a target is missed.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::attacker::Attacker;
use lab::{World, channel_id, spec};
use wayfare_node::config::ServiceName;

const PEERS: usize = 50;
const PHASE: Duration = Duration::from_secs(60);

/// The process's resident memory in MiB (`VmRSS`).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The buyer's voucher round trip p99 over the last minute, in ms (NaN if none).
fn honest_p99_ms(w: &World) -> f64 {
    let name = "wayfare_voucher_ack_seconds{quantile=\"0.99\"}";
    let page = w.metrics(&w.buyer);
    if !page.contains(name) {
        return f64::NAN;
    }
    lab::metric_in(&page, name) * 1000.0
}

/// Downloads a little now and then for `length` (so vouchers keep flowing), sampling the
/// seller's memory every second; the peak seen.
fn carry_on(w: &World, pid: u32, length: Duration) -> f64 {
    let start = Instant::now();
    let mut peak: f64 = 0.0;
    while start.elapsed() < length {
        let _ = w.net.download(Some(w.buyer.service_port), 256 * 1024);
        peak = peak.max(rss_mib(pid));
        std::thread::sleep(Duration::from_secs(1));
    }
    peak
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(why) = wayfare_node::labnet::LabNet::namespaces_unavailable() {
        eprintln!("bench-flood needs the namespace lab: {why}");
        std::process::exit(2);
    }
    // The lab (daemons, anvil, namespaces) is dropped inside `run`, before any exit code.
    let missed = run();
    if !missed.is_empty() {
        eprintln!("target missed: {}", missed.join("; "));
        std::process::exit(1);
    }
}

/// Runs the flood; the targets it missed.
fn run() -> Vec<String> {
    let mut s = spec(vec![ServiceName::Shadowsocks]);
    s.price_per_second = 10_000_000_000; // a voucher every interval, traffic or not
    let mut w = World::new(true, s);
    let id = channel_id(&w.connect("shadowsocks"));
    let pid = w.sellers[0]
        .child
        .as_ref()
        .map(|c| c.id())
        .expect("seller pid");
    eprintln!("· idle: {} s of a paying session", PHASE.as_secs());
    carry_on(&w, pid, PHASE);
    let idle_p99 = honest_p99_ms(&w);
    let rss_start = rss_mib(pid);

    let evil = Attacker::new(&mut w);
    eprintln!(
        "· flood: {PEERS} peer ids sending quote requests for {} s",
        PHASE.as_secs()
    );
    let t = Instant::now();
    let flood = evil.flood_quotes(PEERS, PHASE);
    let peak = carry_on(&w, pid, PHASE);
    let flood_p99 = honest_p99_ms(&w);
    let tally = flood.wait(&evil.rt);
    let took = t.elapsed().as_secs_f64();
    // The flooders are gone; their quotes wait (capped) until the offers expire.
    eprintln!("· after: 40 s without the flood");
    carry_on(&w, pid, Duration::from_secs(40));
    let rss_end = rss_mib(pid);
    let served = w
        .seller_channels()
        .into_iter()
        .any(|c| c["id"].as_str() == Some(&id.to_string()) && c["state"].as_str() == Some("open"));

    let answered = (tally.quotes + tally.refusals) as f64;
    let per_s = answered / took;
    println!("quote flood: {PEERS} peer ids, {} s", PHASE.as_secs());
    println!(
        "  answered   {:>8.0} /s   ({} quotes, {} refusals, {} failed)",
        per_s, tally.quotes, tally.refusals, tally.failures
    );
    println!("  honest p99 {idle_p99:>8.1} ms idle   {flood_p99:>8.1} ms flooded");
    println!("  seller rss {rss_start:>8.1} MiB start {peak:>8.1} MiB peak {rss_end:>8.1} MiB end");
    println!(
        "RESULT quotes_per_s={per_s:.0} honest_p99_ms={flood_p99:.1} honest_p99_idle_ms={idle_p99:.1} rss_start_mib={rss_start:.1} rss_peak_mib={peak:.1} rss_end_mib={rss_end:.1}"
    );
    let mut missed = Vec::new();
    if !served {
        missed.push("the honest channel is not open any more".to_string());
    }
    if flood_p99.is_nan() || flood_p99 >= 1000.0 {
        missed.push(format!(
            "honest p99 {flood_p99:.1} ms during the flood (target < 1000)"
        ));
    }
    if rss_end > rss_start * 1.10 {
        missed.push(format!(
            "memory {rss_end:.1} MiB after the flood, more than 10 % over {rss_start:.1}"
        ));
    }
    missed
}
