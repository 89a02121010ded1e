//! `wayfare proxy …`: the shadowsocks data plane without a chain, for testing and benchmarks.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use wayfare_tunnel::{
    Cidr, ExitPolicy, MeterSnapshot,
    shadowsocks::{Buyer, BuyerConfig, ClientConfig, LegacySeller, Seller, SellerConfig},
};

use crate::output;

/// A plain shadowsocks proxy with no chain and no payments (testing, benchmarks).
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    #[command(subcommand)]
    cmd: ProxyCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ProxyCmd {
    /// Serve as an exit: print one ss:// URI per session, then meters until Ctrl-C.
    Serve(ServeArgs),
    /// Run a local SOCKS5 proxy (CONNECT and UDP ASSOCIATE) through an ss:// URI until Ctrl-C.
    Connect(ConnectArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to serve on (TCP and UDP; in --legacy mode the first session's port, the next
    /// sessions take the following ports).
    #[arg(long, default_value = "0.0.0.0:8388")]
    listen: SocketAddr,
    /// Host (or host:port) the printed URIs name, when --listen is a wildcard address.
    #[arg(long)]
    public_addr: Option<String>,
    /// Number of sessions (users) to create.
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// One port per session with chacha20-ietf-poly1305, for clients without AEAD-2022.
    #[arg(long)]
    legacy: bool,
    /// Destinations to allow although private (repeatable CIDR, e.g. 198.18.0.0/15).
    /// Private, loopback, link-local and metadata addresses are denied otherwise.
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<Cidr>,
    /// Seconds between meter lines (0: none).
    #[arg(long, default_value_t = 10)]
    meter_every: u64,
    /// Print the sessions (and final meters) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ConnectArgs {
    /// The session's ss:// URI (as `wayfare proxy serve` prints it).
    #[arg(long)]
    uri: String,
    /// Local SOCKS5 address.
    #[arg(long, default_value = "127.0.0.1:1080")]
    listen: SocketAddr,
    /// Also forward a local TCP port to a fixed destination (LISTEN=TARGET, like ss-tunnel).
    #[arg(long, value_name = "LISTEN=TARGET")]
    forward: Vec<String>,
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    match args.cmd {
        ProxyCmd::Serve(a) => serve(a).await,
        ProxyCmd::Connect(a) => connect(a).await,
    }
}

fn fmt_meter(m: MeterSnapshot) -> String {
    format!("up {} B, down {} B", m.up, m.down)
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.sessions >= 1, "--sessions must be at least 1");
    // A chain-less proxy serves its operator: an explicit `--allow 127.0.0.0/8` opens loopback.
    let policy = ExitPolicy::with_allowed(a.allow.clone()).opening_allowed_loopback();
    let names: Vec<String> = (1..=a.sessions).map(|i| format!("session-{i}")).collect();
    let mut uris = Vec::new();
    enum Running {
        Multi(Seller),
        Legacy(LegacySeller),
    }
    let running = if a.legacy {
        let seller = LegacySeller::new(policy, a.public_addr.clone());
        for (i, name) in names.iter().enumerate() {
            let port = a
                .listen
                .port()
                .checked_add(i as u16)
                .context("--listen port + sessions overflows 65535")?;
            let listen = SocketAddr::new(a.listen.ip(), port);
            let c = seller.add_session(name, listen).await?;
            uris.push(c.to_uri());
        }
        Running::Legacy(seller)
    } else {
        let mut cfg = SellerConfig::new(a.listen);
        cfg.exit_policy = policy;
        cfg.public_addr = a.public_addr.clone();
        let seller = Seller::bind(cfg).await?;
        for name in &names {
            uris.push(seller.add_session(name)?.to_uri());
        }
        Running::Multi(seller)
    };
    let meter = |name: &str| -> MeterSnapshot {
        match &running {
            Running::Multi(s) => s.meter(name).map(|m| m.snapshot()).unwrap_or_default(),
            Running::Legacy(s) => s.meter(name).map(|m| m.snapshot()).unwrap_or_default(),
        }
    };
    if a.json {
        let list: Vec<_> = names
            .iter()
            .zip(&uris)
            .map(|(n, u)| serde_json::json!({ "session": n, "uri": u }))
            .collect();
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "sessions": list }))?
        );
    } else {
        println!(
            "serving {} session(s) on {} ({}); Ctrl-C stops",
            names.len(),
            a.listen,
            if a.legacy {
                "chacha20-ietf-poly1305, a port each"
            } else {
                "2022-blake3-aes-256-gcm"
            }
        );
        let rows: Vec<Vec<String>> = names
            .iter()
            .zip(&uris)
            .map(|(n, u)| vec![n.clone(), u.clone()])
            .collect();
        output::table(&["session", "uri"], &rows);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(a.meter_every.max(1)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = crate::devnet_cmd::wait_for_stop() => break,
            _ = tick.tick(), if a.meter_every > 0 && !a.json => {
                for n in &names {
                    eprintln!("{n}: {}", fmt_meter(meter(n)));
                }
            }
        }
    }
    if a.json {
        let list: Vec<_> = names
            .iter()
            .map(|n| {
                let m = meter(n);
                serde_json::json!({ "session": n, "up_bytes": m.up, "down_bytes": m.down })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "meters": list }))?
        );
    } else {
        for n in &names {
            println!("{n}: {}", fmt_meter(meter(n)));
        }
    }
    match running {
        Running::Multi(s) => s.shutdown(),
        Running::Legacy(s) => s.shutdown(),
    }
    Ok(())
}

async fn connect(a: ConnectArgs) -> anyhow::Result<()> {
    let server = ClientConfig::from_uri(&a.uri)?;
    let via = server.server();
    let mut cfg = BuyerConfig::new(server);
    cfg.listen = a.listen;
    let buyer = Buyer::start(cfg).await?;
    for f in &a.forward {
        let (l, t) = f.split_once('=').with_context(|| {
            format!("--forward `{f}` is not LISTEN=TARGET (e.g. 127.0.0.1:5201=198.18.2.2:5201)")
        })?;
        let l: SocketAddr = l
            .parse()
            .with_context(|| format!("--forward: `{l}` is not an address:port"))?;
        let t: SocketAddr = t
            .parse()
            .with_context(|| format!("--forward: `{t}` is not an address:port"))?;
        buyer.forward(l, t).await?;
        eprintln!("forwarding {l} -> {t}");
    }
    println!("SOCKS5 on {} via {via}; Ctrl-C stops", buyer.local_addr());
    crate::devnet_cmd::wait_for_stop().await?;
    println!("{}", fmt_meter(buyer.meter().snapshot()));
    buyer.shutdown();
    Ok(())
}
