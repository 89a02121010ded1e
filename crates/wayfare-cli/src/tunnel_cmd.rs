//! `wayfare tunnel …`: the WireGuard data plane without a chain, for testing and benchmarks.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use wayfare_tunnel::{
    Cidr, ExitPolicy,
    wireguard::{
        DEFAULT_STATE_DIR, Routing, WgBuyer, WgBuyerConfig, WgClientConfig, WgSeller,
        WgSellerConfig, repair,
    },
};

use crate::output;

/// A plain WireGuard tunnel with no chain and no payments (testing, benchmarks; needs root).
#[derive(Debug, clap::Args)]
pub struct TunnelArgs {
    #[command(subcommand)]
    cmd: TunnelCmd,
}

#[derive(Debug, clap::Subcommand)]
enum TunnelCmd {
    /// Serve as an exit: write a wg-quick config per session, then meters on Ctrl-C.
    Serve(ServeArgs),
    /// Bring a full-device VPN up from a wg-quick config (kill switch on) until Ctrl-C.
    Connect(ConnectArgs),
    /// Undo what a crashed or killed `connect` left: routes, DNS, the kill switch.
    Repair {
        /// Name of the crashed connection's TUN device.
        #[arg(long, default_value = "wf-vpn0")]
        tun: String,
        /// Where `connect` records its changes.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// UDP port to serve all sessions on.
    #[arg(long, default_value_t = 51820)]
    port: u16,
    /// The IP:PORT buyers dial (written into the configs).
    #[arg(long)]
    endpoint: SocketAddr,
    /// Pool of tunnel addresses, one per session.
    #[arg(long, default_value = "198.19.0.0/16")]
    pool: Cidr,
    /// Destinations to allow although private (repeatable CIDR).
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<Cidr>,
    /// Name of the exit's TUN device.
    #[arg(long, default_value = "wf-exit0")]
    tun: String,
    /// Number of sessions (peers) to create.
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Directory for the session-N.conf files (mode 0600: they hold private keys).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Resolvers the exit's DNS (served to buyers on the tunnel gateway, port 53, and written
    /// as the configs' `DNS =`) forwards to (repeatable IP:PORT; default: the nameservers in
    /// /etc/resolv.conf).
    #[arg(long = "dns-upstream", value_name = "IP:PORT")]
    dns_upstream: Vec<SocketAddr>,
    /// Serve no DNS (the configs then carry no `DNS =` line).
    #[arg(long)]
    no_dns: bool,
}

#[derive(Debug, clap::Args)]
struct ConnectArgs {
    /// wg-quick config (as `wayfare tunnel serve` writes it, or any WireGuard server's).
    #[arg(long)]
    config: PathBuf,
    /// Name of the TUN device.
    #[arg(long, default_value = "wf-vpn0")]
    tun: String,
    /// Only route these ranges through the tunnel (repeatable CIDR; default: everything).
    #[arg(long = "split", value_name = "CIDR")]
    split: Vec<Cidr>,
    /// Let traffic leave outside the tunnel if it fails (default: the kill switch blocks it).
    #[arg(long)]
    no_kill_switch: bool,
    /// Leave /etc/resolv.conf alone (default: DNS goes through the tunnel while connected).
    #[arg(long)]
    no_dns: bool,
    /// Where the changes are recorded so that a crash can be undone (`wayfare tunnel repair`).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

pub async fn run(args: TunnelArgs) -> anyhow::Result<()> {
    match args.cmd {
        TunnelCmd::Serve(a) => serve(a).await,
        TunnelCmd::Connect(a) => connect(a).await,
        TunnelCmd::Repair { tun, state_dir } => {
            let r = repair(&tun, &state_dir)?;
            if r.found_state {
                println!(
                    "repaired {tun}: routes and kill switch removed{}",
                    if r.restored_dns {
                        ", resolv.conf restored"
                    } else {
                        ""
                    }
                );
            } else {
                println!(
                    "nothing recorded for {tun}; removed its device and firewall table if any were left"
                );
            }
            Ok(())
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("can't write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.sessions >= 1, "--sessions must be at least 1");
    std::fs::create_dir_all(&a.out).with_context(|| format!("can't create {}", a.out.display()))?;
    let mut cfg = WgSellerConfig::new(a.port, a.endpoint);
    cfg.pool = a.pool;
    cfg.tun_name = a.tun;
    cfg.exit_policy = ExitPolicy::with_allowed(a.allow);
    if !a.no_dns {
        cfg.dns_upstream = if a.dns_upstream.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            wayfare_tunnel::dns::nameservers(&text)
        } else {
            a.dns_upstream
        };
        anyhow::ensure!(
            !cfg.dns_upstream.is_empty(),
            "no nameserver in /etc/resolv.conf to resolve the buyers' DNS: pass --dns-upstream IP:53 (or --no-dns)"
        );
    }
    let port = a.port;
    let seller = WgSeller::start(cfg).await.with_context(|| {
        format!("can't serve on UDP port {port} (if it is in use, pick another with --port; the TUN and nftables need root)")
    })?;
    let mut rows = Vec::new();
    for i in 1..=a.sessions {
        let id = format!("session-{i}");
        let client = seller.add_session_generated(&id).await?;
        let path = a.out.join(format!("{id}.conf"));
        write_private(&path, &client.to_wg_quick())?;
        rows.push(vec![id, path.display().to_string()]);
    }
    println!(
        "serving on UDP {} as {}; Ctrl-C stops",
        a.port,
        seller.public_key()
    );
    output::table(&["session", "wg-quick config"], &rows);
    crate::devnet_cmd::wait_for_stop().await?;
    for id in seller.sessions() {
        let m = seller.remove_session(&id).await?;
        println!("{id}: up {} B, down {} B", m.up, m.down);
    }
    Ok(())
}

async fn connect(a: ConnectArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("can't read {}", a.config.display()))?;
    let client = WgClientConfig::from_wg_quick(&text)?;
    let mut cfg = WgBuyerConfig::new(client);
    cfg.tun_name = a.tun;
    cfg.kill_switch = !a.no_kill_switch;
    cfg.state_dir = Some(a.state_dir);
    if a.no_dns {
        cfg.resolv_conf = None;
    }
    if !a.split.is_empty() {
        cfg.routing = Routing::Split(a.split);
    }
    let buyer = WgBuyer::connect(cfg).await.context(
        "can't bring the tunnel up (it needs root for the TUN, routes and firewall; after a crash run `wayfare tunnel repair`)",
    )?;
    println!(
        "connected{}; Ctrl-C disconnects and restores routes, DNS and firewall",
        if a.no_kill_switch {
            ""
        } else {
            " (kill switch on)"
        }
    );
    crate::devnet_cmd::wait_for_stop().await?;
    let m = buyer.meter().snapshot();
    buyer.disconnect();
    println!("disconnected: up {} B, down {} B", m.up, m.down);
    Ok(())
}
