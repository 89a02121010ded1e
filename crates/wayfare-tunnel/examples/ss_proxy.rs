//! Plain shadowsocks proxy without a chain, for benchmarks and manual tests.
//!
//! ```text
//! ss_proxy seller  --listen 0.0.0.0:8388 [--allow 198.18.0.0/15 ...] [--legacy]
//!     prints `URI ss://...` for one session named "bench", then serves until killed
//! ss_proxy connect --uri ss://... [--listen 127.0.0.1:1080]      SOCKS5 front end
//! ss_proxy tunnel  --uri ss://... --listen 127.0.0.1:15201 --forward 198.18.2.2:5201
//! ```

use std::{error::Error, io::Write, net::SocketAddr};

use wayfare_tunnel::{
    ExitPolicy,
    shadowsocks::{Buyer, BuyerConfig, ClientConfig, LegacySeller, Seller, SellerConfig},
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
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let usage = "usage: ss_proxy seller|connect|tunnel [options] (see the file header)";
    match cmd {
        "seller" => {
            let listen: SocketAddr = flag(&args, "--listen")
                .unwrap_or_else(|| "0.0.0.0:8388".into())
                .parse()?;
            let allow = all(&args, "--allow")
                .iter()
                .map(|c| c.parse())
                .collect::<Result<Vec<_>, _>>()?;
            let policy = ExitPolicy::with_allowed(allow);
            if args.iter().any(|a| a == "--legacy") {
                let seller = LegacySeller::new(policy, None);
                let c = seller.add_session("bench", listen).await?;
                println!("URI {}", c.to_uri());
                std::io::stdout().flush()?;
                std::future::pending::<()>().await;
            } else {
                let mut cfg = SellerConfig::new(listen);
                cfg.exit_policy = policy;
                let seller = Seller::bind(cfg).await?;
                let c = seller.add_session("bench")?;
                println!("URI {}", c.to_uri());
                std::io::stdout().flush()?;
                std::future::pending::<()>().await;
            }
        }
        "connect" | "tunnel" => {
            let uri = flag(&args, "--uri").ok_or(usage)?;
            let server = ClientConfig::from_uri(&uri)?;
            let mut cfg = BuyerConfig::new(server);
            if cmd == "connect"
                && let Some(l) = flag(&args, "--listen")
            {
                cfg.listen = l.parse()?;
            }
            if cmd == "tunnel" {
                cfg.listen = "127.0.0.1:0".parse()?;
            }
            let buyer = Buyer::start(cfg).await?;
            if cmd == "tunnel" {
                let listen: SocketAddr = flag(&args, "--listen").ok_or(usage)?.parse()?;
                let target: SocketAddr = flag(&args, "--forward").ok_or(usage)?.parse()?;
                buyer.forward(listen, target).await?;
            }
            eprintln!("ready");
            std::future::pending::<()>().await;
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
