//! The `wayfare` command: a local devnet, the market by hand and a plain shadowsocks proxy
//! today; the daemon's client as the node lands.

mod chain_cmd;
mod devnet_cmd;
mod output;
mod proxy_cmd;
mod tunnel_cmd;

use clap::Parser;

/// Wayfare: a decentralized VPN. Sellers sell bandwidth as exits to the internet, buyers tunnel
/// through them and pay by the interval through Ethereum payment channels.
#[derive(Debug, Parser)]
#[command(name = "wayfare", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "WAYFARE_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Run a local devnet: anvil, the market, registered sellers and funded buyers (until Ctrl-C).
    Devnet(devnet_cmd::DevnetArgs),
    /// Act on the WayfareMarket contract by hand (sellers, channels, closes, ratings).
    Chain(Box<chain_cmd::ChainArgs>),
    /// A plain shadowsocks proxy without a chain (testing and benchmarks).
    Proxy(proxy_cmd::ProxyArgs),
    /// A plain WireGuard tunnel without a chain (testing and benchmarks; root).
    Tunnel(tunnel_cmd::TunnelArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: can't start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.cmd {
            Cmd::Devnet(args) => devnet_cmd::run(args).await,
            Cmd::Chain(args) => chain_cmd::run(*args).await,
            Cmd::Proxy(args) => proxy_cmd::run(args).await,
            Cmd::Tunnel(args) => tunnel_cmd::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context, then each cause.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                msg.push_str(": ");
                msg.push_str(&cause.to_string());
            }
            eprintln!("error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}
