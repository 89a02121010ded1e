//! The buyer's WireGuard client: TUN, routes, DNS, IPv6 block and kill switch, and a meter
//! that counts only packets the buyer accepted.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gotatun::{
    device::{Device, Peer},
    udp::socket::UdpSocketFactory,
};
use ipnetwork::{IpNetwork, Ipv4Network};
use tracing::{info, warn};

use super::{
    config::WgClientConfig,
    sys,
    tun::{Hooks, TunIo, parse_v4},
};
use crate::{Cidr, Meter, TunnelError};

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
    /// Point this resolv.conf at the config's DNS servers while connected (restored after).
    pub resolv_conf: Option<PathBuf>,
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
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
        }
    }
}

/// (protocol, remote address, remote port, local port)
type FlowKey = (u8, Ipv4Addr, u16, u16);

struct BuyerHooks {
    addr: Ipv4Addr,
    meter: Meter,
    flows: Mutex<HashMap<FlowKey, Instant>>,
    dropped: Meter,
}

const FLOW_IDLE: Duration = Duration::from_secs(300);

impl BuyerHooks {
    fn solicited(&self, key: FlowKey) -> bool {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|t| t.elapsed() < FLOW_IDLE)
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
            let mut f = self.flows.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() > 65_536 {
                f.retain(|_, t| t.elapsed() < FLOW_IDLE);
            }
            f.insert(key, Instant::now());
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

type BuyerDevice = Device<(UdpSocketFactory, TunIo<BuyerHooks>, TunIo<BuyerHooks>)>;

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
}

impl Teardown {
    fn run(&mut self) {
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
    }
}

/// A connected buyer. `disconnect` (or drop) restores routes, DNS and the firewall.
pub struct WgBuyer {
    device: Option<Arc<BuyerDevice>>,
    hooks: Arc<BuyerHooks>,
    teardown: Teardown,
    netns: sys::NetnsHandle,
    peer: gotatun::x25519::PublicKey,
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
        };
        // A table left by a crash (kill switch) is replaced by this run's.
        sys::nft_delete_table("inet", &table);
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
            format!(
                "    oifname \"{tun_name}\" accept\n    ip daddr {ip} udp dport {port} accept\n",
                ip = ep.ip(),
                port = ep.port()
            )
        } else {
            "    meta nfproto ipv6 drop\n".to_string()
        };
        let policy = if cfg.kill_switch { "drop" } else { "accept" };
        sys::nft_script(&format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority filter; policy {policy};\n    oifname \"lo\" accept\n{ks}  }}\n}}\n",
            table = teardown.table
        ))?;
        let hooks = Arc::new(BuyerHooks {
            addr: c.address,
            meter: Meter::new(),
            flows: Mutex::new(HashMap::new()),
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
        sys::run("ip", &args)?;
        teardown.endpoint_route = Some(route);

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
            .with_default_udp()
            .udp_recv_buffer_size(8 << 20)
            .udp_send_buffer_size(8 << 20)
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
        if let (Some(path), false) = (&cfg.resolv_conf, c.dns.is_empty()) {
            let old = std::fs::read(path).ok();
            let text: String = c.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
            std::fs::write(
                path,
                format!("# written by wayfare while connected\n{text}"),
            )
            .map_err(|e| TunnelError::System(format!("write {}: {e}", path.display())))?;
            teardown.resolv = Some((path.clone(), old));
        }
        Ok((device, hooks, peer_key))
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

impl Drop for WgBuyer {
    fn drop(&mut self) {
        self.teardown_now();
    }
}
