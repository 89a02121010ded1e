//! The buyer's WireGuard client: TUN, routes, DNS, IPv6 block and kill switch, and a meter
//! that counts only packets the buyer accepted.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use gotatun::device::{Device, Peer};
use ipnetwork::{IpNetwork, Ipv4Network};
use tracing::{info, warn};

use super::{
    config::WgClientConfig,
    resolved, sys,
    tun::{Hooks, TunIo, parse_v4},
    udp::{BatchUdpFactory, UdpMode},
};
use crate::{
    Cidr, ExitPolicy, Meter, TunnelError,
    exit_policy::{INTERNAL_V4, NEVER_V4},
};

/// Which destinations go through the tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Everything (0.0.0.0/1 + 128.0.0.0/1), except the seller's endpoint.
    Full,
    /// Only these ranges.
    Split(Vec<Cidr>),
}

/// How the buyer connects.
#[derive(Clone, Debug)]
pub struct WgBuyerConfig {
    /// The session (as exported by the seller).
    pub client: WgClientConfig,
    /// TUN interface name (also names the nftables table).
    pub tun_name: String,
    /// Full or split tunnel; by default from the config's AllowedIPs.
    pub routing: Routing,
    /// Block everything except the endpoint and the tunnel until `disconnect`.
    pub kill_switch: bool,
    /// With the kill switch, also let anything reach the endpoint's host outside the tunnel
    /// (not only its WireGuard port): the node's control traffic (p2p, vouchers) to the seller
    /// itself. Nothing else gets out. Off by default.
    pub allow_endpoint_host: bool,
    /// With the kill switch, more hosts reachable outside the tunnel: the ones the node itself
    /// needs (the chain's RPC, its bootstrap peers and relays). Nothing else gets out.
    pub allow_hosts: Vec<std::net::Ipv4Addr>,
    /// Point this resolv.conf at the config's DNS servers while connected (restored after).
    pub resolv_conf: Option<PathBuf>,
    /// The seller's announced exit policy, when known: packets to destinations it refuses are
    /// rejected on this host with ICMP "administratively prohibited" (counted, see
    /// [`WgBuyer::exit_refusals`]) instead of entering a tunnel whose exit drops them.
    pub exit: Option<ExitPolicy>,
    /// Record what the tunnel changes in this directory before changing it, so a crashed run
    /// is undone by [`repair`] (also run at the next `connect`). `None`: keep it in memory only.
    pub state_dir: Option<PathBuf>,
}

impl WgBuyerConfig {
    /// Defaults: `wf-vpn0`, kill switch on, routing from AllowedIPs, DNS in /etc/resolv.conf.
    pub fn new(client: WgClientConfig) -> Self {
        let full = client
            .allowed_ips
            .iter()
            .any(|c| c.prefix() == 0 && c.addr().is_ipv4());
        let routing = if full {
            Routing::Full
        } else {
            Routing::Split(
                client
                    .allowed_ips
                    .iter()
                    .filter(|c| c.addr().is_ipv4())
                    .copied()
                    .collect(),
            )
        };
        Self {
            client,
            tun_name: "wf-vpn0".into(),
            routing,
            kill_switch: true,
            allow_endpoint_host: false,
            allow_hosts: Vec::new(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            exit: None,
            state_dir: None,
        }
    }
}

/// (protocol, remote address, remote port, local port)
type FlowKey = (u8, Ipv4Addr, u16, u16);

struct BuyerHooks {
    addr: Ipv4Addr,
    meter: Meter,
    flows: Mutex<Flows>,
    dropped: Meter,
}

const FLOW_IDLE: Duration = Duration::from_secs(300);
/// Flows remembered before idle ones are swept (and, if every one is live, the least recently
/// used quarter forgotten: their next outgoing packet registers them again).
const MAX_FLOWS: usize = 131_072;

/// The flows the buyer started, so only their answers are accepted. Touching a flow is O(1);
/// a full table is swept at most once a second, never per packet.
struct Flows {
    map: HashMap<FlowKey, Instant>,
    swept: Option<Instant>,
}

impl Flows {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
            swept: None,
        }
    }

    fn touch(&mut self, key: FlowKey, now: Instant) {
        self.map.insert(key, now);
        if self.map.len() <= MAX_FLOWS
            || self
                .swept
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        self.map
            .retain(|_, t| now.saturating_duration_since(*t) < FLOW_IDLE);
        if self.map.len() > MAX_FLOWS {
            let mut seen: Vec<Instant> = self.map.values().copied().collect();
            let cut = seen.len() - MAX_FLOWS * 3 / 4;
            let (_, oldest_kept, _) = seen.select_nth_unstable(cut);
            let oldest_kept = *oldest_kept;
            self.map.retain(|_, t| *t >= oldest_kept);
        }
    }

    fn solicited(&self, key: &FlowKey, now: Instant) -> bool {
        self.map
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < FLOW_IDLE)
    }
}

impl BuyerHooks {
    fn solicited(&self, key: FlowKey) -> bool {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .solicited(&key, Instant::now())
    }
}

impl Hooks for BuyerHooks {
    fn on_routed(&self, pkt: &[u8]) -> bool {
        // IPv6 is never tunnelled (the seller offers IPv4 only) and never leaks.
        let Some(h) = parse_v4(pkt) else {
            return false;
        };
        let key = match h.proto {
            6 | 17 => Some((h.proto, h.dst, h.dport, h.sport)),
            1 if h.sport == 8 => Some((1, h.dst, 0, 0)),
            _ => None,
        };
        if let Some(key) = key {
            self.flows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .touch(key, Instant::now());
        }
        self.meter.add_up(pkt.len() as u64);
        true
    }

    fn on_decrypted(&self, pkt: &[u8]) -> bool {
        let ok = parse_v4(pkt).is_some_and(|h| {
            h.dst == self.addr
                && match h.proto {
                    6 | 17 => self.solicited((h.proto, h.src, h.sport, h.dport)),
                    1 if h.sport == 0 => self.solicited((1, h.src, 0, 0)),
                    // Errors about our own packets (unreachable, time exceeded, too big).
                    1 if matches!(h.sport >> 8, 3 | 11 | 12) => {
                        pkt.get(h.l4 + 8..).and_then(parse_v4).is_some_and(|inner| {
                            inner.src == self.addr
                                && self.solicited((
                                    inner.proto,
                                    inner.dst,
                                    inner.dport,
                                    inner.sport,
                                ))
                        })
                    }
                    _ => false,
                }
        });
        if ok {
            self.meter.add_down(pkt.len() as u64);
        } else {
            self.dropped.add_down(pkt.len() as u64);
        }
        ok
    }
}

type BuyerDevice = Device<(BatchUdpFactory, TunIo<BuyerHooks>, TunIo<BuyerHooks>)>;

/// The nftables table a buyer with TUN `tun` owns (kill switch, IPv6 block).
pub fn buyer_table_name(tun: &str) -> String {
    let clean: String = tun
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("wayfare_buyer_{clean}")
}

struct Teardown {
    endpoint_route: Option<String>,
    tun_routes: Vec<String>,
    tun: String,
    table: String,
    resolv: Option<(PathBuf, Option<Vec<u8>>)>,
    /// The tunnel's resolver is set on the TUN link through systemd-resolved.
    resolved: bool,
    state_file: Option<PathBuf>,
}

/// Where the CLI records a buyer's changes (`WgBuyerConfig::state_dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/wayfare";

fn state_file(dir: &std::path::Path, tun: &str) -> PathBuf {
    dir.join(format!("{}.state", buyer_table_name(tun)))
}

impl Teardown {
    /// Writes what must be undone to the state file (if any), atomically, before acting.
    fn save(&self) -> Result<(), TunnelError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let mut text = format!("tun {}\ntable {}\n", self.tun, self.table);
        if let Some(r) = &self.endpoint_route {
            text.push_str(&format!("endpoint_route {r}\n"));
        }
        for r in &self.tun_routes {
            text.push_str(&format!("tun_route {r}\n"));
        }
        if let Some((p, old)) = &self.resolv {
            let old = old
                .as_deref()
                .map(|b| B64.encode(b))
                .unwrap_or_else(|| "-".into());
            text.push_str(&format!("resolv {old} {}\n", p.display()));
        }
        if self.resolved {
            text.push_str("resolved link\n");
        }
        let fail = |e: std::io::Error| {
            TunnelError::System(format!(
                "can't record the tunnel's changes in {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("state.tmp");
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }

    /// Reads a state file left by an earlier run.
    fn load(path: &std::path::Path) -> Result<Self, TunnelError> {
        let bad = |why: &str| {
            TunnelError::System(format!(
                "{} is damaged ({why}): fix or delete it, then run `wayfare tunnel repair` again",
                path.display()
            ))
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
        let mut t = Teardown {
            endpoint_route: None,
            tun_routes: Vec::new(),
            tun: String::new(),
            table: String::new(),
            resolv: None,
            resolved: false,
            state_file: Some(path.to_path_buf()),
        };
        for line in text.lines() {
            let (key, rest) = line
                .split_once(' ')
                .ok_or_else(|| bad("a line without a value"))?;
            match key {
                "tun" => t.tun = rest.to_string(),
                "table" => t.table = rest.to_string(),
                "endpoint_route" => t.endpoint_route = Some(rest.to_string()),
                "tun_route" => t.tun_routes.push(rest.to_string()),
                "resolv" => {
                    let (old, p) = rest
                        .split_once(' ')
                        .ok_or_else(|| bad("resolv without a path"))?;
                    let old = match old {
                        "-" => None,
                        b => Some(
                            B64.decode(b)
                                .map_err(|_| bad("resolv backup is not base64"))?,
                        ),
                    };
                    t.resolv = Some((PathBuf::from(p), old));
                }
                "resolved" => t.resolved = true,
                _ => return Err(bad(&format!("unknown key `{key}`"))),
            }
        }
        if t.tun.is_empty() || t.table.is_empty() {
            return Err(bad("no tun or table"));
        }
        Ok(t)
    }

    fn run(&mut self) {
        if std::mem::take(&mut self.resolved) {
            resolved::revert(&self.tun);
        }
        for r in self.tun_routes.drain(..) {
            let _ = sys::run("ip", &["route", "del", &r, "dev", &self.tun]);
        }
        // The device's tasks may still hold the TUN for a moment; remove it now.
        let _ = sys::run("ip", &["link", "del", &self.tun]);
        if let Some(r) = self.endpoint_route.take() {
            let _ = sys::run("ip", &["route", "del", &r]);
        }
        if let Some((path, old)) = self.resolv.take() {
            let res = match old {
                Some(bytes) => std::fs::write(&path, bytes),
                None => std::fs::remove_file(&path),
            };
            if let Err(e) = res {
                warn!(path = %path.display(), error = %e, "restore resolv.conf");
            }
        }
        sys::nft_delete_table("inet", &self.table);
        if let Some(path) = self.state_file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What [`repair`] found and undid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// An earlier run's record was found (it crashed or was killed) and undone.
    pub found_state: bool,
    /// resolv.conf was restored from the record.
    pub restored_dns: bool,
}

/// Undoes what a crashed or killed buyer with TUN `tun` left behind: its routes, the endpoint
/// route, resolv.conf (restored from the record in `state_dir`) and its nftables table (the
/// kill switch). Safe to run at any time; a no-op when nothing is left.
pub fn repair(tun: &str, state_dir: &std::path::Path) -> Result<RepairReport, TunnelError> {
    let path = state_file(state_dir, tun);
    let mut report = RepairReport {
        found_state: false,
        restored_dns: false,
    };
    if path.exists() {
        let mut t = Teardown::load(&path)?;
        report.found_state = true;
        report.restored_dns = t.resolv.is_some();
        t.run();
    } else {
        let _ = sys::run("ip", &["link", "del", tun]);
        sys::nft_delete_table("inet", &buyer_table_name(tun));
    }
    Ok(report)
}

/// A connected buyer. `disconnect` (or drop) restores routes, DNS and the firewall.
pub struct WgBuyer {
    device: Option<Arc<BuyerDevice>>,
    hooks: Arc<BuyerHooks>,
    teardown: Teardown,
    netns: sys::NetnsHandle,
    peer: gotatun::x25519::PublicKey,
    /// Whether exit rules were installed (without them there is nothing to count).
    has_exit_rules: bool,
}

/// Rules rejecting what the exit `policy` refuses, before it enters TUN `tun`: the tunnel's
/// DNS servers (the seller's resolver, on its gateway) pass, then never-opened destinations are
/// rejected, the allow-list passes, and the internal ranges are rejected (IPv4; IPv6 is never
/// tunnelled).
fn exit_rules(tun: &str, policy: &ExitPolicy, dns: &[IpAddr]) -> String {
    let set = |ranges: &mut dyn Iterator<Item = String>| ranges.collect::<Vec<_>>().join(", ");
    let reject = "counter reject with icmp type admin-prohibited";
    let never = set(&mut NEVER_V4.iter().map(|(a, p)| format!("{a}/{p}")));
    let internal = set(&mut INTERNAL_V4.iter().map(|(a, p)| format!("{a}/{p}")));
    let allowed = set(&mut policy
        .allowed()
        .iter()
        .filter(|c| c.addr().is_ipv4())
        .filter_map(net_of));
    let mut rules = String::new();
    let dns = set(&mut dns.iter().filter(|d| d.is_ipv4()).map(ToString::to_string));
    if !dns.is_empty() {
        rules.push_str(&format!(
            "    oifname \"{tun}\" ip daddr {{ {dns} }} udp dport 53 accept\n    oifname \"{tun}\" ip daddr {{ {dns} }} tcp dport 53 accept\n"
        ));
    }
    rules.push_str(&format!(
        "    oifname \"{tun}\" ip daddr {{ {never} }} {reject}\n"
    ));
    if !allowed.is_empty() {
        rules.push_str(&format!(
            "    oifname \"{tun}\" ip daddr {{ {allowed} }} accept\n"
        ));
    }
    rules.push_str(&format!(
        "    oifname \"{tun}\" ip daddr {{ {internal} }} {reject}\n"
    ));
    rules
}

fn net_of(c: &Cidr) -> Option<String> {
    match c.addr() {
        IpAddr::V4(a) => Ipv4Network::new(a, c.prefix())
            .ok()
            .map(|n| format!("{}/{}", n.network(), n.prefix())),
        IpAddr::V6(_) => None,
    }
}

impl WgBuyer {
    /// Bring the tunnel up in this thread's network namespace.
    pub async fn connect(cfg: WgBuyerConfig) -> Result<Self, TunnelError> {
        let c = &cfg.client;
        let netns = sys::NetnsHandle::current()?;
        let table = buyer_table_name(&cfg.tun_name);
        let mut teardown = Teardown {
            endpoint_route: None,
            tun_routes: Vec::new(),
            tun: cfg.tun_name.clone(),
            table: table.clone(),
            resolv: None,
            resolved: false,
            state_file: cfg
                .state_dir
                .as_deref()
                .map(|d| state_file(d, &cfg.tun_name)),
        };
        // Whatever a crashed run left (routes, DNS, kill switch) is undone first.
        if let Some(dir) = &cfg.state_dir {
            let r = repair(&cfg.tun_name, dir)?;
            if r.found_state {
                warn!(tun = %cfg.tun_name, "undid what an earlier run left behind (it crashed or was killed)");
            }
        }
        sys::nft_delete_table("inet", &table);
        teardown.save()?;
        let result = Self::setup(&cfg, &mut teardown).await;
        match result {
            Ok((device, hooks, peer)) => {
                info!(tun = %cfg.tun_name, endpoint = %c.endpoint, "WireGuard tunnel up");
                Ok(Self {
                    device: Some(device),
                    hooks,
                    teardown,
                    netns,
                    peer,
                    has_exit_rules: cfg.exit.is_some(),
                })
            }
            Err(e) => {
                teardown.run();
                Err(e)
            }
        }
    }

    async fn setup(
        cfg: &WgBuyerConfig,
        teardown: &mut Teardown,
    ) -> Result<
        (
            Arc<BuyerDevice>,
            Arc<BuyerHooks>,
            gotatun::x25519::PublicKey,
        ),
        TunnelError,
    > {
        let c = &cfg.client;
        let tun_name = &cfg.tun_name;
        let SocketAddr::V4(ep) = c.endpoint else {
            return Err(TunnelError::BadConfig(
                "IPv6 endpoints are not supported yet".into(),
            ));
        };
        // Firewall first, so nothing leaks while routes change.
        let ks = if cfg.kill_switch {
            let mut rules = format!(
                "    oifname \"{tun_name}\" accept\n    ip daddr {ip} {ports}accept\n",
                ip = ep.ip(),
                ports = if cfg.allow_endpoint_host {
                    String::new()
                } else {
                    format!("udp dport {} ", ep.port())
                }
            );
            for host in &cfg.allow_hosts {
                rules.push_str(&format!("    ip daddr {host} accept\n"));
            }
            rules
        } else {
            "    meta nfproto ipv6 drop\n".to_string()
        };
        let policy = if cfg.kill_switch { "drop" } else { "accept" };
        let exit = cfg
            .exit
            .as_ref()
            .map(|p| exit_rules(tun_name, p, &c.dns))
            .unwrap_or_default();
        sys::nft_script(&format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority filter; policy {policy};\n    oifname \"lo\" accept\n{exit}{ks}  }}\n}}\n",
            table = teardown.table
        ))?;
        let hooks = Arc::new(BuyerHooks {
            addr: c.address,
            meter: Meter::new(),
            flows: Mutex::new(Flows::new()),
            dropped: Meter::new(),
        });
        // The route to the seller stays outside the tunnel.
        let (via, dev) = sys::route_to(*ep.ip())?;
        let route = format!("{}/32", ep.ip());
        let mut args = vec!["route", "replace", route.as_str()];
        let via_s = via.map(|v| v.to_string());
        if let Some(v) = via_s.as_deref() {
            args.extend(["via", v]);
        }
        args.extend(["dev", dev.as_str()]);
        teardown.endpoint_route = Some(route.clone());
        teardown.save()?;
        sys::run("ip", &args)?;

        let tun = TunIo::create(tun_name, c.address, 32, c.mtu, hooks.clone())?;
        let peer_key = c.peer_public_key.x25519();
        let mut peer = Peer::new(peer_key)
            .with_endpoint(c.endpoint)
            .with_allowed_ip(IpNetwork::V4(
                Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0)
                    .map_err(|e| TunnelError::BadConfig(e.to_string()))?,
            ));
        peer.keepalive = c.keepalive;
        let device = gotatun::device::build()
            .with_udp(BatchUdpFactory::new(UdpMode::from_env()))
            .with_ip(tun)
            .with_private_key(c.private_key.secret())
            .with_peer(peer)
            .build()
            .await
            .map_err(|e| TunnelError::Device(e.to_string()))?;
        let device = Arc::new(device);

        let dests: Vec<String> = match &cfg.routing {
            Routing::Full => vec!["0.0.0.0/1".into(), "128.0.0.0/1".into()],
            Routing::Split(list) => list.iter().filter_map(net_of).collect(),
        };
        for d in &dests {
            sys::run("ip", &["route", "replace", d, "dev", tun_name])?;
            teardown.tun_routes.push(d.clone());
        }
        let resolv_conf = cfg.resolv_conf.as_ref().filter(|_| !c.dns.is_empty());
        if let Some(path) = resolv_conf
            && resolved::in_charge(path)
        {
            // Record first: a crash leaves nothing behind anyway (the link goes with the TUN).
            teardown.resolved = true;
            teardown.save()?;
            if let Err(e) = resolved::point_link(tun_name, &c.dns) {
                // With the kill switch, DNS outside the tunnel stays dropped: names fail.
                warn!(error = %e, "systemd-resolved manages DNS here but did not take the tunnel's resolver; names are not sent through the tunnel");
            }
        } else if let Some(path) = resolv_conf {
            let old = std::fs::read(path).ok();
            // Persist the backup before touching the file.
            teardown.resolv = Some((path.clone(), old.clone()));
            teardown.save()?;
            let text: String = c.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
            if let Err(e) = std::fs::write(
                path,
                format!("# written by wayfare while connected\n{text}"),
            ) {
                // The tunnel still comes up; with the kill switch, DNS outside it stays dropped,
                // so names fail rather than leak.
                warn!(path = %path.display(), error = %e, "can't point the resolver at the tunnel's DNS: give the daemon write access to it (the systemd unit needs CAP_DAC_OVERRIDE or a writable file), or set [buyer] resolv_conf = \"\" and configure DNS yourself");
                teardown.resolv = None;
                teardown.save()?;
            }
        }
        Ok((device, hooks, peer_key))
    }

    /// Packets rejected on this host because the seller's exit policy refuses their
    /// destination (0 without a policy). Read fresh from the kernel's counters each call (one
    /// `nft list table`), so a status right after a refusal shows it.
    pub fn exit_refusals(&self) -> u64 {
        if !self.has_exit_rules {
            return 0;
        }
        let table = self.teardown.table.clone();
        match self
            .netns
            .run(move || sys::run("nft", &["list", "table", "inet", &table]))
        {
            Some(Ok(out)) => count_rejected(&out),
            _ => 0,
        }
    }

    /// Bytes the buyer sent into the tunnel (up) and accepted from it (down).
    pub fn meter(&self) -> Meter {
        self.hooks.meter.clone()
    }

    /// Bytes of unsolicited inbound packets dropped before metering.
    pub fn dropped_unsolicited(&self) -> u64 {
        self.hooks.dropped.snapshot().down
    }

    /// Time since the last completed handshake with the seller, if any.
    pub async fn last_handshake(&self) -> Option<Duration> {
        let d = self.device.as_ref()?;
        d.peers()
            .await
            .into_iter()
            .find(|p| p.peer.public_key == self.peer)
            .and_then(|p| p.stats.last_handshake)
    }

    /// The TUN's name.
    pub fn tun_name(&self) -> &str {
        &self.teardown.tun
    }

    /// Leaves the route to the seller's endpoint in place at teardown: the next tunnel (a
    /// switch to a seller on the same host) came up before this one goes and uses it too.
    pub fn keep_endpoint_route(&mut self) {
        if self.teardown.endpoint_route.take().is_some()
            && let Err(e) = self.teardown.save()
        {
            warn!(error = %e, "could not record the kept endpoint route");
        }
    }

    /// Tear down: routes, DNS and firewall (including the kill switch) are restored.
    pub fn disconnect(mut self) {
        self.teardown_now();
    }

    fn teardown_now(&mut self) {
        self.device.take();
        let t = &mut self.teardown;
        self.netns.run(|| t.run());
    }
}

/// Packets counted by the exit rules' `reject` lines in `nft list table` output.
fn count_rejected(nft_listing: &str) -> u64 {
    nft_listing
        .lines()
        .filter(|l| l.contains("admin-prohibited"))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.by_ref().find(|t| *t == "packets")?;
            w.next()?.parse::<u64>().ok()
        })
        .sum()
}

impl Drop for WgBuyer {
    fn drop(&mut self) {
        self.teardown_now();
    }
}

#[cfg(test)]
mod repair_tests {
    use super::*;

    /// A run that was killed after pointing DNS at the tunnel is undone from its record:
    /// resolv.conf comes back byte for byte and the record is gone. (The route and nft parts
    /// are idempotent deletions, exercised by the lab tests.)
    #[test]
    fn repair_restores_dns_from_the_record_of_a_killed_run() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        let original = b"nameserver 192.0.2.53\nsearch lab\n".to_vec();
        std::fs::write(
            &resolv,
            b"# written by wayfare while connected\nnameserver 198.19.0.1\n",
        )
        .unwrap();
        let tun = "wf-repair-t0";
        let t = Teardown {
            endpoint_route: None,
            tun_routes: vec![],
            tun: tun.into(),
            table: buyer_table_name(tun),
            resolv: Some((resolv.clone(), Some(original.clone()))),
            resolved: false,
            state_file: Some(state_file(dir.path(), tun)),
        };
        t.save().unwrap();
        drop(t); // the process "dies": nothing restored yet
        assert_ne!(std::fs::read(&resolv).unwrap(), original);

        let report = repair(tun, dir.path()).unwrap();
        assert_eq!(
            report,
            RepairReport {
                found_state: true,
                restored_dns: true
            }
        );
        assert_eq!(std::fs::read(&resolv).unwrap(), original);
        assert!(!state_file(dir.path(), tun).exists());
        // Nothing left: a second repair finds nothing.
        assert!(!repair(tun, dir.path()).unwrap().found_state);
    }

    #[test]
    fn exit_rules_let_the_tunnels_dns_through_before_rejecting_internal_ranges() {
        // The default pool 198.19.0.0/16 lies in the benchmark range an exit refuses.
        let dns: IpAddr = "198.19.0.1".parse().unwrap();
        let policy = ExitPolicy::with_allowed(["203.0.113.0/24".parse::<Cidr>().unwrap()]);
        let rules = exit_rules("wf-vpn0", &policy, &[dns]);
        let lines: Vec<&str> = rules.lines().map(str::trim).collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no rule with {needle:?} in {rules}"))
        };
        let dns_ok = at("{ 198.19.0.1 } udp dport 53 accept");
        let never = at("169.254.169.254/32 } counter reject");
        let allowed = at("{ 203.0.113.0/24 } accept");
        let internal = at("198.18.0.0/15, 224.0.0.0/4, 240.0.0.0/4 } counter reject");
        assert!(
            dns_ok < never && never < allowed && allowed < internal,
            "{rules}"
        );
        assert!(
            lines.iter().all(|l| l.starts_with("oifname \"wf-vpn0\"")),
            "{rules}"
        );
    }

    #[test]
    fn exit_refusals_are_the_sum_of_the_reject_counters() {
        let listing = "table inet wf_vpn0 {
	chain output {
		type filter hook output priority filter; policy drop;
		oifname \"lo\" accept
		oifname \"wf-vpn0\" ip daddr { 198.19.0.1 } udp dport 53 accept
		oifname \"wf-vpn0\" ip daddr { 169.254.169.254 } counter packets 3 bytes 180 reject with icmp admin-prohibited
		oifname \"wf-vpn0\" ip daddr { 10.0.0.0/8 } counter packets 4 bytes 240 reject with icmp admin-prohibited
		oifname \"wf-vpn0\" counter packets 900 bytes 1000 accept
	}
}
";
        assert_eq!(count_rejected(listing), 7);
        assert_eq!(count_rejected(""), 0);
    }

    #[test]
    fn a_damaged_record_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let tun = "wf-repair-t1";
        std::fs::write(state_file(dir.path(), tun), "tun x\nresolv zz /etc/x\n").unwrap();
        let e = repair(tun, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("is damaged") && e.contains("wayfare tunnel repair"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    fn key(n: u32) -> FlowKey {
        (6, Ipv4Addr::from(0x0a00_0000 + (n >> 16)), n as u16, 40000)
    }

    #[test]
    fn a_full_flow_table_stays_bounded_and_keeps_the_recent_flows() {
        let t0 = Instant::now();
        let mut f = Flows::new();
        // 300,000 live flows, one new every 10 µs (3 s in all): far past the cap.
        for n in 0..300_000u32 {
            f.touch(key(n), t0 + Duration::from_micros(u64::from(n) * 10));
        }
        let now = t0 + Duration::from_secs(3);
        assert!(
            f.map.len() <= MAX_FLOWS + 100_000 + 1,
            "{} flows kept",
            f.map.len()
        );
        // The newest flows are answered; the very first were forgotten (still live, but the
        // least recently used of a full table).
        assert!(f.solicited(&key(299_999), now));
        assert!(f.solicited(&key(250_000), now));
        assert!(!f.solicited(&key(0), now));
        // Idle flows expire.
        assert!(!f.solicited(&key(299_999), now + FLOW_IDLE));
    }

    #[test]
    fn a_full_table_is_swept_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut f = Flows::new();
        for n in 0..=MAX_FLOWS as u32 {
            f.touch(key(n), t0);
        }
        let first = f.swept;
        assert!(first.is_some());
        // More flows within the same second: no sweep, the table just grows.
        for n in 0..1000u32 {
            f.touch(key(1_000_000 + n), t0 + Duration::from_millis(500));
        }
        assert_eq!(f.swept, first);
        f.touch(key(2_000_000), t0 + Duration::from_millis(1500));
        assert_ne!(f.swept, first);
    }
}
