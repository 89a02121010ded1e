//! Plain WireGuard tunnel without a chain, for benchmarks and manual tests (as root).
//!
//! ```text
//! wg_tunnel serve --port 51820 --endpoint 198.18.1.1:51820 [--pool 198.19.0.0/16]
//!                 [--allow 198.18.0.0/15 ...] [--tun wf-exit0] [--sessions 1] [--out DIR]
//!     writes DIR/session-N.conf (wg-quick) per session, prints `READY`, serves until
//!     SIGINT/SIGTERM, then removes its nftables table
//! wg_tunnel connect --config FILE [--tun wf-vpn0] [--no-kill-switch] [--no-dns]
//!     [--split CIDR ...]    prints `CONNECTED`, restores everything on SIGINT/SIGTERM
//! ```

use std::{error::Error, io::Write, net::SocketAddr, path::PathBuf};

use tokio::signal::unix::{SignalKind, signal};
use wayfare_tunnel::{
    ExitPolicy,
    wireguard::{Routing, WgBuyer, WgBuyerConfig, WgClientConfig, WgSeller, WgSellerConfig},
};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn all(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

async fn until_stopped() -> Result<(), Box<dyn Error>> {
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wayfare_tunnel=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    match args.first().map(String::as_str).unwrap_or("") {
        "serve" => {
            let port: u16 = flag(&args, "--port")
                .unwrap_or_else(|| "51820".into())
                .parse()?;
            let endpoint: SocketAddr = flag(&args, "--endpoint")
                .ok_or("--endpoint IP:PORT (what buyers dial) is required")?
                .parse()?;
            let mut cfg = WgSellerConfig::new(port, endpoint);
            if let Some(p) = flag(&args, "--pool") {
                cfg.pool = p.parse()?;
            }
            if let Some(t) = flag(&args, "--tun") {
                cfg.tun_name = t;
            }
            let allow = all(&args, "--allow")
                .iter()
                .map(|c| c.parse())
                .collect::<Result<Vec<_>, _>>()?;
            cfg.exit_policy = ExitPolicy::with_allowed(allow);
            let n: usize = flag(&args, "--sessions")
                .unwrap_or_else(|| "1".into())
                .parse()?;
            let out = PathBuf::from(flag(&args, "--out").unwrap_or_else(|| ".".into()));
            let seller = WgSeller::start(cfg).await?;
            for i in 0..n {
                let c = seller
                    .add_session_generated(&format!("session-{i}"))
                    .await?;
                std::fs::write(out.join(format!("session-{i}.conf")), c.to_wg_quick())?;
            }
            println!("READY public_key={}", seller.public_key());
            std::io::stdout().flush()?;
            until_stopped().await?;
            for id in seller.sessions() {
                let m = seller.remove_session(&id).await?;
                eprintln!("{id}: up {} down {} bytes", m.up, m.down);
            }
        }
        "connect" => {
            let file = flag(&args, "--config").ok_or("--config FILE is required")?;
            let client = WgClientConfig::from_wg_quick(&std::fs::read_to_string(&file)?)?;
            let mut cfg = WgBuyerConfig::new(client);
            if let Some(t) = flag(&args, "--tun") {
                cfg.tun_name = t;
            }
            cfg.kill_switch = !has("--no-kill-switch");
            if has("--no-dns") {
                cfg.resolv_conf = None;
            }
            let split = all(&args, "--split")
                .iter()
                .map(|c| c.parse())
                .collect::<Result<Vec<_>, _>>()?;
            if !split.is_empty() {
                cfg.routing = Routing::Split(split);
            }
            let buyer = WgBuyer::connect(cfg).await?;
            println!("CONNECTED");
            std::io::stdout().flush()?;
            until_stopped().await?;
            let m = buyer.meter().snapshot();
            eprintln!("up {} down {} bytes", m.up, m.down);
            buyer.disconnect();
        }
        _ => return Err("usage: wg_tunnel serve|connect [options] (see the file header)".into()),
    }
    Ok(())
}
