//! The `wayfare` command: the daemon and its client (offers, connect, status, disconnect,
//! channels, close, seller), a local devnet, the market by hand, and plain proxies and tunnels.

mod chain_cmd;
mod chain_conn;
mod dashboard_cmd;
mod demo_cmd;
mod devnet_cmd;
mod init_cmd;
mod init_files;
mod lockdown_cmd;
mod man_cmd;
mod node_cmd;
mod output;
mod proxy_cmd;
mod service_cmd;
mod tunnel_cmd;

use clap::{CommandFactory, Parser};

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
    /// A whole local network with real traffic and real payments, then a table read back from
    /// the meters and the chain (as root: the namespace lab with WireGuard; else loopback).
    Demo(demo_cmd::DemoArgs),
    /// The guided first run: create the role's keystores, write a commented wayfare.toml with
    /// every key, check the chain and (with --register) register and fund a seller.
    Init(Box<init_cmd::InitArgs>),
    /// Run a local devnet: anvil, the market, registered sellers and funded buyers (until Ctrl-C).
    Devnet(devnet_cmd::DevnetArgs),
    /// Act on the WayfareMarket contract by hand: deploy it, sellers, channels, closes, ratings.
    Chain(Box<chain_cmd::ChainArgs>),
    /// Run the daemon as a systemd service (dedicated user, CAP_NET_ADMIN only): install or
    /// print the unit.
    Service(service_cmd::ServiceArgs),
    /// A plain shadowsocks proxy without a chain (testing and benchmarks).
    Proxy(proxy_cmd::ProxyArgs),
    /// A plain WireGuard tunnel without a chain (testing and benchmarks; root).
    Tunnel(tunnel_cmd::TunnelArgs),
    /// Run the node (seller and/or buyer, per its TOML config) until Ctrl-C.
    Daemon(node_cmd::DaemonArgs),
    /// The offers sellers announce (seller, region, service, X, Y, Z, W, score).
    Offers {
        #[command(flatten)]
        api: node_cmd::ApiArgs,
        /// Order: utility (score against price, what `connect` picks), score, or price.
        #[arg(long, default_value = "utility", value_parser = ["utility", "score", "price"])]
        sort: String,
    },
    /// Buy: negotiate, open a channel, connect through the tunnel and pay as you go.
    Connect {
        #[command(flatten)]
        api: node_cmd::ApiArgs,
        #[command(flatten)]
        args: node_cmd::ConnectArgs,
    },
    /// The daemon's sessions: seller, bytes, rate, paid, deposit left, live.
    Status(node_cmd::ApiArgs),
    /// Leave the buyer session(s) with a final voucher; the channel stays open for a free
    /// reconnect unless --close (a cooperative close on chain). Lifts the lockdown.
    Disconnect {
        #[command(flatten)]
        api: node_cmd::ApiArgs,
        #[command(flatten)]
        args: node_cmd::DisconnectArgs,
    },
    /// The buyer's lockdown (kill switch): show it, put it up, or lift it.
    Lockdown {
        #[command(flatten)]
        api: node_cmd::ApiArgs,
        #[command(flatten)]
        args: lockdown_cmd::LockdownArgs,
    },
    /// A one-time link to the daemon's web dashboard (offers, sessions, earnings, channels, health).
    Dashboard(node_cmd::ApiArgs),
    /// The channels this node is party to.
    Channels(node_cmd::ApiArgs),
    /// Close a channel (buyer: leave or start a unilateral close; seller: settle).
    Close {
        #[command(flatten)]
        api: node_cmd::ApiArgs,
        #[command(flatten)]
        args: node_cmd::CloseArgs,
    },
    /// The seller's sessions and earnings, and withdrawing them.
    Seller {
        #[command(flatten)]
        api: node_cmd::ApiArgs,
        #[command(subcommand)]
        cmd: node_cmd::SellerCmd,
    },
    /// Write a man page for wayfare and each of its commands into a directory.
    Man(man_cmd::ManArgs),
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
            Cmd::Demo(args) => demo_cmd::run(args).await,
            Cmd::Init(args) => init_cmd::run(*args).await,
            Cmd::Devnet(args) => devnet_cmd::run(args).await,
            Cmd::Chain(args) => chain_cmd::run(*args).await,
            Cmd::Service(args) => service_cmd::run(args),
            Cmd::Proxy(args) => proxy_cmd::run(args).await,
            Cmd::Tunnel(args) => tunnel_cmd::run(args).await,
            Cmd::Daemon(args) => node_cmd::daemon(args).await,
            Cmd::Offers { api, sort } => node_cmd::offers(api, &sort).await,
            Cmd::Connect { api, args } => node_cmd::connect(api, args).await,
            Cmd::Status(api) => node_cmd::status(api).await,
            Cmd::Disconnect { api, args } => node_cmd::disconnect(api, args).await,
            Cmd::Lockdown { api, args } => lockdown_cmd::lockdown(api, args).await,
            Cmd::Dashboard(api) => dashboard_cmd::run(api).await,
            Cmd::Channels(api) => node_cmd::channels(api).await,
            Cmd::Close { api, args } => node_cmd::close(api, args).await,
            Cmd::Seller { api, cmd } => node_cmd::seller(api, cmd).await,
            Cmd::Man(args) => man_cmd::run(args, Cli::command()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command says what it does and every argument what it is for (`--help`, the man
    /// pages and `make deb` print these).
    #[test]
    fn every_command_and_argument_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd
                .get_about()
                .is_none_or(|a| a.to_string().trim().is_empty())
            {
                missing.push(format!("`{path}` has no description"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("`{path}` argument {id} has no help"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "wayfare", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
