//! `wayfare devnet`: a local chain with the market, sellers and buyers, until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use wayfare_chain::{
    devnet::{DEFAULT_BURN_SINK, Devnet, DevnetOptions},
    units::{format_eth, parse_amount},
};

use crate::output;

/// Start a local devnet: anvil, the WayfareMarket contract, registered sellers and funded
/// buyers with keystores. Stays up until Ctrl-C, then stops anvil and removes its directory.
#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// Number of sellers to create, fund and register.
    #[arg(long, default_value_t = 3)]
    sellers: usize,
    /// Number of buyers to create and fund.
    #[arg(long, default_value_t = 1)]
    buyers: usize,
    /// Directory for keystores, the password file and devnet.json (cleared at start).
    #[arg(long, default_value = ".devnet", env = "WAYFARE_DEVNET_DIR")]
    dir: PathBuf,
    /// Port for anvil's JSON-RPC (default: a free port).
    #[arg(long)]
    port: Option<u16>,
    /// Address anvil listens on (default loopback; `0.0.0.0` for other hosts or namespaces).
    #[arg(long)]
    host: Option<String>,
    /// Challenge period of the market in seconds (at least 60).
    #[arg(long, default_value_t = 3600)]
    challenge_period: u64,
    /// Burn sink of the market (default: 0x…dEaD).
    #[arg(long)]
    burn_sink: Option<alloy_primitives::Address>,
    /// Seconds per block (default: a block per transaction).
    #[arg(long)]
    block_time: Option<u64>,
    /// Funds each seller deposits for its burns (`1eth`, `0.5 eth`, `1000` wei).
    #[arg(long, default_value = "1eth", value_parser = parse_amount)]
    seller_funds: alloy_primitives::U256,
    /// Keep the directory after Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Print the devnet's description as JSON (progress goes to stderr).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    let mut opts = DevnetOptions::new(&args.dir);
    opts.sellers = args.sellers;
    opts.buyers = args.buyers;
    opts.port = args.port;
    opts.host = args.host;
    opts.challenge_period = args.challenge_period;
    opts.burn_sink = args.burn_sink.unwrap_or(DEFAULT_BURN_SINK);
    opts.block_time = args.block_time;
    opts.seller_funds = args.seller_funds;
    let mut progress = |msg: &str| eprintln!("· {msg}");
    let devnet = Devnet::start(opts, &mut progress)
        .await
        .context("devnet failed to start")?;
    let info = &devnet.info;
    if args.json {
        output::json(info)?;
    } else {
        let dir = info.dir.display();
        println!(
            "Wayfare devnet is up. Ctrl-C stops it{}.",
            if args.keep {
                ""
            } else {
                " and removes its directory"
            }
        );
        output::pairs(&[
            ("RPC URL", info.rpc_url.clone()),
            ("WebSocket", info.ws_url.clone()),
            ("chain id", info.chain_id.to_string()),
            ("market", info.market.to_string()),
            ("burn sink", info.burn_sink.to_string()),
            ("challenge period", format!("{} s", info.challenge_period)),
            ("password file", info.password_file.display().to_string()),
            ("description", format!("{dir}/devnet.json")),
        ]);
        println!();
        let mut rows = Vec::new();
        for (i, s) in info.sellers.iter().enumerate() {
            rows.push(vec![
                format!("seller-{}", i + 1),
                s.account.address.to_string(),
                s.signer.address.to_string(),
                format_eth(s.funds_wei.parse().unwrap_or_default()),
                s.account.keystore.display().to_string(),
            ]);
        }
        for (i, b) in info.buyers.iter().enumerate() {
            rows.push(vec![
                format!("buyer-{}", i + 1),
                b.address.to_string(),
                "-".into(),
                "-".into(),
                b.keystore.display().to_string(),
            ]);
        }
        output::table(
            &["name", "account", "signer", "seller funds", "keystore"],
            &rows,
        );
        if let Some(s) = info.sellers.first() {
            println!();
            println!("Try:");
            println!("  wayfare chain --devnet {dir} --as seller-1 seller show");
            println!(
                "  contracts/node_modules/@foundry-rs/cast-linux-amd64/bin/cast call --rpc-url {} {} 'seller(address)' {}",
                info.rpc_url, info.market, s.account.address
            );
        }
    }
    wait_for_stop().await?;
    eprintln!("· stopping anvil");
    if args.keep {
        drop(devnet);
    } else {
        devnet.shutdown().context("devnet cleanup failed")?;
        eprintln!("· removed {}", args.dir.display());
    }
    Ok(())
}

pub async fn wait_for_stop() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("can't listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("can't listen for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
