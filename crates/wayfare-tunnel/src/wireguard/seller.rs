//! The seller's WireGuard exit: one UDP port, one gotatun device, one peer per session.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use gotatun::device::{Device, Peer};
use ipnetwork::{IpNetwork, Ipv4Network};
use tracing::{info, trace, warn};

use super::{
    config::{DEFAULT_MTU, WgClientConfig},
    conntrack,
    keys::{PrivateKey, WgPublicKey},
    pool::{AddressPool, DEFAULT_QUARANTINE, pool_v4},
    sys,
    tun::{Hooks, TunIo, parse_v4},
    udp::{BatchUdpFactory, UdpMode},
};
use crate::{Cidr, ExitPolicy, Meter, MeterSnapshot, TunnelError, dns::DnsForwarder};

/// Default tunnel address pool.
pub const DEFAULT_POOL: &str = "198.19.0.0/16";

/// How a seller's exit is set up.
#[derive(Clone, Debug)]
pub struct WgSellerConfig {
    /// UDP port the device listens on (all addresses).
    pub listen_port: u16,
    /// Address buyers dial (goes into their configs).
    pub public_endpoint: SocketAddr,
    /// The seller's static key.
    pub private_key: PrivateKey,
    /// Tunnel addresses; the first host is the seller's, the rest go to buyers.
    pub pool: Cidr,
    /// Where buyers may go.
    pub exit_policy: ExitPolicy,
    /// TUN interface name (also names the nftables table).
    pub tun_name: String,
    /// Tunnel MTU.
    pub mtu: u16,
    /// Install IPv4 forwarding and nftables masquerade for the pool.
    pub nat: bool,
    /// DNS servers written into buyers' configs (after the gateway, when it serves DNS).
    pub dns: Vec<IpAddr>,
    /// Serve DNS to the buyers on the gateway address (port 53), forwarding to these
    /// upstream resolvers; empty: no resolver in the tunnel.
    pub dns_upstream: Vec<SocketAddr>,
    /// How long a released tunnel address is kept from other buyers.
    pub quarantine: Duration,
}

impl WgSellerConfig {
    /// Defaults: pool 198.19.0.0/16, `wf-exit0`, MTU 1420, NAT on, deny-by-default policy.
    pub fn new(listen_port: u16, public_endpoint: SocketAddr) -> Self {
        Self {
            listen_port,
            public_endpoint,
            private_key: PrivateKey::generate(),
            pool: DEFAULT_POOL.parse().unwrap_or_else(|_| unreachable!()),
            exit_policy: ExitPolicy::new(),
            tun_name: "wf-exit0".into(),
            mtu: DEFAULT_MTU,
            nat: true,
            dns: Vec::new(),
            dns_upstream: Vec::new(),
            quarantine: DEFAULT_QUARANTINE,
        }
    }
}

/// What the seller hands a buyer for a session (the buyer keeps its private key).
#[derive(Clone, Debug)]
pub struct WgSessionGrant {
    /// The buyer's tunnel address.
    pub address: Ipv4Addr,
    /// The seller's public key.
    pub seller_public_key: WgPublicKey,
    /// The seller's UDP endpoint.
    pub endpoint: SocketAddr,
    /// DNS servers to use.
    pub dns: Vec<IpAddr>,
    /// Tunnel MTU.
    pub mtu: u16,
}

impl WgSessionGrant {
    /// A full-tunnel client config for the buyer's key.
    pub fn client_config(&self, private_key: PrivateKey) -> WgClientConfig {
        WgClientConfig {
            private_key,
            address: self.address,
            dns: self.dns.clone(),
            mtu: self.mtu,
            peer_public_key: self.seller_public_key,
            endpoint: self.endpoint,
            allowed_ips: vec![
                Cidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).unwrap_or_else(|_| unreachable!()),
            ],
            keepalive: Some(25),
        }
    }
}

struct SellerHooks {
    by_addr: RwLock<HashMap<Ipv4Addr, Meter>>,
    policy: ExitPolicy,
    /// The gateway, when it serves DNS: port 53 there is the one own address buyers reach.
    dns_at: Option<Ipv4Addr>,
}

impl Hooks for SellerHooks {
    fn on_decrypted(&self, pkt: &[u8]) -> bool {
        // gotatun has already checked the source against the peer's allowed IP.
        let Some(h) = parse_v4(pkt) else {
            return false;
        };
        let map = self.by_addr.read().unwrap_or_else(|e| e.into_inner());
        let Some(meter) = map.get(&h.src) else {
            return false;
        };
        meter.add_up(pkt.len() as u64);
        if Some(h.dst) == self.dns_at && matches!(h.proto, 6 | 17) && h.dport == 53 {
            return true;
        }
        let dst = IpAddr::V4(h.dst);
        if self.policy.check(dst).is_err() {
            trace!(src = %h.src, %dst, "exit policy drops packet");
            return false;
        }
        true
    }

    fn on_routed(&self, pkt: &[u8]) -> bool {
        let Some(h) = parse_v4(pkt) else {
            return false;
        };
        let map = self.by_addr.read().unwrap_or_else(|e| e.into_inner());
        match map.get(&h.dst) {
            Some(meter) => {
                meter.add_down(pkt.len() as u64);
                true
            }
            None => false,
        }
    }
}

type SellerDevice = Device<(BatchUdpFactory, TunIo<SellerHooks>, TunIo<SellerHooks>)>;

struct Session {
    addr: Ipv4Addr,
    key: WgPublicKey,
    meter: Meter,
}

/// A running WireGuard exit. Dropping it stops the device and removes its nftables table.
pub struct WgSeller {
    device: Arc<SellerDevice>,
    hooks: Arc<SellerHooks>,
    sessions: Mutex<HashMap<String, Session>>,
    pool: Mutex<AddressPool>,
    cfg: WgSellerConfig,
    gateway: Ipv4Addr,
    nat_table: Option<String>,
    netns: sys::NetnsHandle,
    dns_forwarder: Option<DnsForwarder>,
}

/// The nftables table a seller with TUN `tun` owns.
pub fn exit_table_name(tun: &str) -> String {
    let clean: String = tun
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("wayfare_exit_{clean}")
}

impl WgSeller {
    /// Create the TUN, the device and (with `nat`) forwarding + masquerade. Run inside the
    /// seller's network namespace. A table left by a crashed run is replaced.
    pub async fn start(cfg: WgSellerConfig) -> Result<Self, TunnelError> {
        let net = pool_v4(&cfg.pool)?;
        let gateway = net
            .nth(1)
            .ok_or_else(|| TunnelError::PoolExhausted(cfg.pool.to_string()))?;
        // The seller's own addresses (the TUN's gateway too, read again once it exists).
        let policy = cfg.exit_policy.clone().guarding_this_host();
        let hooks = Arc::new(SellerHooks {
            by_addr: RwLock::new(HashMap::new()),
            policy,
            dns_at: (!cfg.dns_upstream.is_empty()).then_some(gateway),
        });
        let table = exit_table_name(&cfg.tun_name);
        sys::nft_delete_table("ip", &table);
        let tun = TunIo::create(&cfg.tun_name, gateway, net.prefix(), cfg.mtu, hooks.clone())?;
        if let Some(own) = hooks.policy.local_addrs() {
            own.refresh();
            own.pin([cfg.public_endpoint.ip(), IpAddr::V4(gateway)]);
        }
        let device = gotatun::device::build()
            .with_udp(BatchUdpFactory::new(UdpMode::from_env()))
            .with_ip(tun)
            .with_private_key(cfg.private_key.secret())
            .with_listen_port(cfg.listen_port)
            .build()
            .await
            .map_err(|e| TunnelError::Device(e.to_string()))?;
        let device = Arc::new(device);
        // A device built without peers binds no socket until it is reconfigured.
        device
            .clear_peers()
            .await
            .map_err(|e| TunnelError::Device(e.to_string()))?;
        let mut seller = Self {
            device,
            hooks,
            sessions: Mutex::new(HashMap::new()),
            pool: Mutex::new(AddressPool::new(net, cfg.quarantine)),
            gateway,
            nat_table: None,
            netns: sys::NetnsHandle::current()?,
            dns_forwarder: None,
            cfg,
        };
        if !seller.cfg.dns_upstream.is_empty() {
            let f = DnsForwarder::start(
                SocketAddr::new(IpAddr::V4(gateway), 53),
                seller.cfg.pool,
                seller.cfg.dns_upstream.clone(),
            )
            .await?;
            info!(at = %f.local_addr(), upstream = ?seller.cfg.dns_upstream, "serving DNS to buyers");
            seller.cfg.dns.insert(0, IpAddr::V4(gateway));
            seller.dns_forwarder = Some(f);
        }
        if seller.cfg.nat {
            sys::sysctl("net.ipv4.ip_forward", "1")?;
            let script = format!(
                "table ip {table} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {net} oifname != \"{tun}\" masquerade\n  }}\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    iifname \"{tun}\" ip saddr != {net} drop\n  }}\n}}\n",
                tun = seller.cfg.tun_name
            );
            sys::nft_script(&script)?;
            seller.nat_table = Some(table);
        }
        info!(port = seller.cfg.listen_port, tun = %seller.cfg.tun_name, "WireGuard exit up");
        Ok(seller)
    }

    /// The seller's public key.
    pub fn public_key(&self) -> WgPublicKey {
        self.cfg.private_key.public_key()
    }

    /// The seller's own tunnel address (first host of the pool).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The resolver it serves buyers inside the tunnel (the gateway), if it serves one.
    pub fn dns_server(&self) -> Option<Ipv4Addr> {
        self.dns_forwarder.as_ref().map(|_| self.gateway)
    }

    /// The nftables table this seller installed, if any.
    pub fn nat_table(&self) -> Option<&str> {
        self.nat_table.as_deref()
    }

    fn free_address(
        &self,
        used: &HashMap<String, Session>,
        preferred: Option<Ipv4Addr>,
        key: &WgPublicKey,
    ) -> Result<Ipv4Addr, TunnelError> {
        let taken: Vec<Ipv4Addr> = used.values().map(|s| s.addr).collect();
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pick(&taken, preferred, key, Instant::now())
            .ok_or_else(|| TunnelError::PoolExhausted(self.cfg.pool.to_string()))
    }

    /// Add a session for the buyer's public key: a peer with one /32 from the pool.
    pub async fn add_session(
        &self,
        id: &str,
        buyer_key: WgPublicKey,
    ) -> Result<WgSessionGrant, TunnelError> {
        self.add_session_at(id, buyer_key, None).await
    }

    /// [`Self::add_session`] with the /32 `preferred` when it is free in the pool (a restarted
    /// seller hands a buyer back the address it revealed), else the first free one.
    pub async fn add_session_at(
        &self,
        id: &str,
        buyer_key: WgPublicKey,
        preferred: Option<Ipv4Addr>,
    ) -> Result<WgSessionGrant, TunnelError> {
        let addr = {
            let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if s.contains_key(id) {
                return Err(TunnelError::DuplicateSession(id.into()));
            }
            if s.values().any(|x| x.key == buyer_key) {
                return Err(TunnelError::BadConfig(
                    "this public key already has a session".into(),
                ));
            }
            let addr = self.free_address(&s, preferred, &buyer_key)?;
            s.insert(
                id.into(),
                Session {
                    addr,
                    key: buyer_key,
                    meter: Meter::new(),
                },
            );
            addr
        };
        let meter = self.meter(id).unwrap_or_default();
        self.hooks
            .by_addr
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr, meter);
        let peer =
            Peer::new(buyer_key.x25519()).with_allowed_ip(IpNetwork::V4(Ipv4Network::from(addr)));
        let added = self.device.add_peer(peer).await;
        if !matches!(added, Ok(true)) {
            self.forget(id);
            return Err(TunnelError::Device(format!("add peer: {added:?}")));
        }
        Ok(WgSessionGrant {
            address: addr,
            seller_public_key: self.public_key(),
            endpoint: self.cfg.public_endpoint,
            dns: self.cfg.dns.clone(),
            mtu: self.cfg.mtu,
        })
    }

    /// Add a session with a freshly generated buyer key and return the buyer's whole config
    /// (for a plain tunnel, tests and `wg-quick` export).
    pub async fn add_session_generated(&self, id: &str) -> Result<WgClientConfig, TunnelError> {
        let key = PrivateKey::generate();
        let grant = self.add_session(id, key.public_key()).await?;
        Ok(grant.client_config(key))
    }

    fn forget(&self, id: &str) -> Option<Session> {
        let s = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)?;
        self.hooks
            .by_addr
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&s.addr);
        Some(s)
    }

    /// Cut a session now: its packets are dropped both ways and its peer removed.
    pub async fn remove_session(&self, id: &str) -> Result<MeterSnapshot, TunnelError> {
        let s = self
            .forget(id)
            .ok_or_else(|| TunnelError::UnknownSession(id.into()))?;
        if let Err(e) = self.device.remove_peer(&s.key.x25519()).await {
            warn!(session = id, error = %e, "remove peer");
        }
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(s.addr, s.key, Instant::now());
        if let Some(conntrack::Flush::Failed(e)) = self.netns.run(|| conntrack::flush(s.addr)) {
            warn!(session = id, address = %s.addr, error = %e, "could not flush the released address's conntrack entries");
        }
        Ok(s.meter.snapshot())
    }

    /// The live meter of a session (payload = IP packet bytes inside the tunnel).
    pub fn meter(&self, id: &str) -> Option<Meter> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|s| s.meter.clone())
    }

    /// The tunnel address of a session.
    pub fn address(&self, id: &str) -> Option<Ipv4Addr> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|s| s.addr)
    }

    /// Session ids.
    pub fn sessions(&self) -> Vec<String> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Peers known to the device (for checks and diagnostics).
    pub async fn peer_count(&self) -> usize {
        self.device.peers().await.len()
    }
}

impl Drop for WgSeller {
    fn drop(&mut self) {
        if let Some(t) = self.nat_table.take() {
            self.netns.run(|| sys::nft_delete_table("ip", &t));
        }
    }
}
