//! The buyer's tunnel: shadowsocks (a local SOCKS5) or the WireGuard VPN brought up from the
//! seller's reveal and taken down, the run it measures, and its meter read every tick.

use alloy_primitives::B256;
use base64::Engine as _;
use wayfare_proto::{
    Timestamp,
    messages::IpRange,
    seal::{Credentials, RevealPayload, ShadowsocksMethod},
    session::{AcceptedBytes, EndReason},
};
use wayfare_tunnel::{
    Cidr, ExitPolicy,
    shadowsocks::{Buyer as SsBuyer, BuyerConfig as SsBuyerConfig, CIPHER_2022, ClientConfig},
    wireguard::{
        DEFAULT_MTU, PrivateKey as WgPrivateKey, Routing, WgBuyer, WgBuyerConfig, WgClientConfig,
        WgPublicKey,
    },
};

use super::{BuyerRole, Entry};
use crate::{error::NodeError, node::Shared, quality::Measurements};

pub(super) enum Tunnel {
    Shadowsocks(SsBuyer),
    WireGuard(WgBuyer),
}

impl Tunnel {
    fn meter(&self) -> wayfare_tunnel::meter::MeterSnapshot {
        match self {
            Self::Shadowsocks(b) => b.meter().snapshot(),
            Self::WireGuard(w) => w.meter().snapshot(),
        }
    }

    /// Takes the tunnel down.
    pub(super) fn stop(self) {
        match self {
            Self::Shadowsocks(b) => b.shutdown(),
            Self::WireGuard(w) => w.disconnect(),
        }
    }
}

/// The exit policy a seller announced, as the buyer applies it.
pub(super) fn exit_policy(ranges: &[IpRange]) -> ExitPolicy {
    ExitPolicy::with_allowed(
        ranges
            .iter()
            .filter_map(|r| Cidr::new(r.addr, r.prefix).ok()),
    )
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Tunnel {
    /// What this side refused because the seller's exit policy refuses it.
    pub(super) fn exit_refusals(&self) -> u64 {
        match self {
            Self::Shadowsocks(b) => b.exit_refusals(),
            Self::WireGuard(w) => w.exit_refusals(),
        }
    }
}

impl Entry {
    /// Reads the tunnel's meter into the run's measurements and hands new bytes to the session.
    pub(super) fn read_meter(&mut self, shared: &Shared, now: Timestamp) {
        let Some(t) = &self.tunnel else {
            return;
        };
        let reading = t.meter();
        if let Some((_, m)) = &mut self.run {
            m.on_meter(now.0, reading.up, reading.down);
        }
        let total = reading.total();
        if total > self.meter_seen {
            let delta = total - self.meter_seen;
            self.meter_seen = total;
            shared.metrics.bytes(delta);
            self.session.handle_meter(AcceptedBytes(delta), now);
        }
    }
}

impl BuyerRole {
    /// The session's `StartService`: the tunnel comes up and a new run is measured, or the
    /// session leaves.
    pub(super) fn tunnel_up(
        &mut self,
        shared: &mut Shared,
        id: &str,
        channel_id: B256,
        reveal: &RevealPayload,
        now: Timestamp,
    ) {
        let started = self.start_tunnel(shared, id, reveal);
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        match started {
            Ok(t) => {
                if let Tunnel::Shadowsocks(b) = &t {
                    entry.socks = Some(b.local_addr());
                }
                tracing::info!(session = id, %channel_id, endpoint = %reveal.endpoint, "tunnel up");
                entry.meter_seen = 0;
                // The run's first reading is zero at tunnel-up, so a burst before the first
                // tick is measured over its real span.
                let mut m = Measurements::default();
                m.on_meter(now.0, 0, 0);
                entry.run = Some((now.0, m));
                entry.tunnel = Some(t);
                entry.endpoint = Some(reveal.endpoint);
                entry.phase = "connected".into();
                let replaced = std::mem::take(&mut entry.replaces);
                self.refresh_lockdown(None);
                self.leave_replaced(shared, replaced, reveal.endpoint, now);
            }
            Err(e) => {
                tracing::error!(session = id, error = %e, "could not bring the tunnel up; leaving");
                entry.last_error = Some(e.to_string());
                entry.session.leave(now);
                self.refresh_lockdown(None);
            }
        }
    }

    /// A switch: the new tunnel is up, so the sessions it replaces are left (their tunnels go
    /// down after; a route to the same endpoint host stays for the new one).
    fn leave_replaced(
        &mut self,
        shared: &mut Shared,
        replaced: Vec<String>,
        endpoint: std::net::SocketAddr,
        now: Timestamp,
    ) {
        for old in replaced {
            let Some(e) = self.sessions.get_mut(&old) else {
                continue;
            };
            if let (Some(Tunnel::WireGuard(w)), Some(ep)) = (&mut e.tunnel, e.endpoint)
                && ep.ip() == endpoint.ip()
            {
                w.keep_endpoint_route();
            }
            if !e.session.is_ended() {
                tracing::info!(session = %old, "switched away: leaving the old session");
                e.read_meter(shared, now);
                e.session.leave(now);
                self.drain(shared, &old, None);
            }
        }
    }

    /// The lockdown's rules follow the live tunnels (plus `next`, a tunnel about to come up).
    fn refresh_lockdown(&mut self, next: Option<(String, std::net::Ipv4Addr)>) {
        let mut tunnels = Vec::new();
        let mut endpoints = Vec::new();
        for e in self.sessions.values() {
            if let Some(Tunnel::WireGuard(w)) = &e.tunnel {
                tunnels.push(w.tun_name().to_string());
            }
            if e.tunnel.is_some()
                && let Some(std::net::SocketAddr::V4(ep)) = e.endpoint
            {
                endpoints.push(*ep.ip());
            }
        }
        if let Some((tun, ep)) = next {
            tunnels.push(tun);
            endpoints.push(ep);
        }
        // A refusal keeps the previous rules (logged and shown in `wayfare status`).
        let _ = self.lockdown.update(tunnels, endpoints);
    }

    /// The session's `StopService`: the run's measurements are recorded, the tunnel goes down.
    pub(super) fn tunnel_down(&mut self, shared: &mut Shared, id: &str, reason: EndReason) {
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        tracing::info!(session = id, ?reason, "tunnel down");
        entry.socks = None;
        if let Some((started, m)) = entry.run.take() {
            let seller = entry.seller.to_string();
            if let Err(e) = shared.with_store(|s| s.put_run(id, started, &seller, &m)) {
                tracing::warn!(session = id, error = %e, "could not record the run's measurements");
            }
        }
        if let Some(t) = entry.tunnel.take() {
            t.stop();
        }
        self.refresh_lockdown(None);
    }

    fn start_tunnel(
        &mut self,
        shared: &Shared,
        id: &str,
        reveal: &RevealPayload,
    ) -> Result<Tunnel, NodeError> {
        let exit = self
            .sessions
            .get(id)
            .and_then(|e| e.exit_allow.as_ref())
            .map(|ranges| exit_policy(ranges));
        match &reveal.credentials {
            Credentials::Shadowsocks {
                method,
                server_psk,
                user_psk,
            } => self.start_shadowsocks(reveal, *method, server_psk, user_psk, exit),
            Credentials::WireGuard {
                server_public_key,
                tunnel,
                dns,
            } => {
                let key = shared
                    .with_store(|s| s.key(&format!("wg:{id}")))?
                    .ok_or_else(|| {
                        NodeError::Invalid("this session's WireGuard key is missing".into())
                    })?;
                let private_key = WgPrivateKey::from_base64(&String::from_utf8_lossy(&key))?;
                let std::net::IpAddr::V4(address) = tunnel.address else {
                    return Err(NodeError::Invalid(
                        "the seller revealed an IPv6 tunnel address".into(),
                    ));
                };
                let (mut allowed, split) = self.wireguard_allowed()?;
                if split && let Some(d) = dns {
                    // The seller's resolver is reached through the tunnel in a split too.
                    allowed.push(Cidr::new(*d, if d.is_ipv4() { 32 } else { 128 })?);
                }
                let client = WgClientConfig {
                    private_key,
                    address,
                    dns: dns.iter().copied().collect(),
                    mtu: DEFAULT_MTU,
                    peer_public_key: WgPublicKey::from_bytes(*server_public_key),
                    endpoint: reveal.endpoint,
                    allowed_ips: allowed.clone(),
                    keepalive: Some(25),
                };
                self.start_wireguard(client, allowed, split, exit)
            }
        }
    }

    /// The local SOCKS5 through the seller's shadowsocks port.
    fn start_shadowsocks(
        &self,
        reveal: &RevealPayload,
        method: ShadowsocksMethod,
        server_psk: &[u8],
        user_psk: &[u8],
        exit: Option<ExitPolicy>,
    ) -> Result<Tunnel, NodeError> {
        if method.name() != CIPHER_2022 {
            return Err(NodeError::Invalid(format!(
                "the seller revealed cipher {}, which this buyer does not speak",
                method.name()
            )));
        }
        let password = format!("{}:{}", b64(server_psk), b64(user_psk));
        let server = ClientConfig::new(&reveal.endpoint.to_string(), CIPHER_2022, &password)?;
        let cfg = SsBuyerConfig {
            listen: self.cfg.socks_listen,
            server,
            exit,
        };
        let buyer = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(SsBuyer::start(cfg))
        })?;
        Ok(Tunnel::Shadowsocks(buyer))
    }

    /// What goes through the WireGuard tunnel: `[buyer] wireguard_split`, or everything; and
    /// whether it is a split.
    fn wireguard_allowed(&self) -> Result<(Vec<Cidr>, bool), NodeError> {
        let mut allowed = Vec::new();
        for c in &self.cfg.wireguard_split {
            allowed.push(
                c.parse::<Cidr>().map_err(|e| {
                    NodeError::Invalid(format!("[buyer] wireguard_split {c:?}: {e}"))
                })?,
            );
        }
        let split = !allowed.is_empty();
        if !split {
            allowed.push(
                "0.0.0.0/0"
                    .parse()
                    .map_err(|e| NodeError::Invalid(format!("{e}")))?,
            );
        }
        Ok((allowed, split))
    }

    /// The WireGuard VPN to the seller's exit, on a TUN no live tunnel uses (a switch brings
    /// the new one up beside the old). The kill switch is the role's lockdown, which outlives
    /// the tunnel; the tunnel itself only blocks IPv6 while it is up.
    fn start_wireguard(
        &mut self,
        client: WgClientConfig,
        allowed: Vec<Cidr>,
        split: bool,
        exit: Option<ExitPolicy>,
    ) -> Result<Tunnel, NodeError> {
        let tun = self.free_tun_name();
        let std::net::SocketAddr::V4(ep) = client.endpoint else {
            return Err(NodeError::Invalid(
                "the seller revealed an IPv6 endpoint, which this buyer does not reach yet".into(),
            ));
        };
        // The lockdown lets the new tunnel and its endpoint out before the handshake.
        self.refresh_lockdown(Some((tun.clone(), *ep.ip())));
        let mut cfg = WgBuyerConfig::new(client);
        cfg.tun_name = tun;
        cfg.kill_switch = false;
        cfg.resolv_conf = if self.cfg.resolv_conf.as_os_str().is_empty() {
            None
        } else {
            Some(self.cfg.resolv_conf.clone())
        };
        cfg.state_dir = Some(self.data_dir.join("wireguard-state"));
        cfg.exit = exit;
        if split {
            cfg.routing = Routing::Split(allowed);
        }
        let vpn = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(WgBuyer::connect(cfg))
        })?;
        Ok(Tunnel::WireGuard(vpn))
    }

    /// `[buyer] wireguard_tun`, or its alternate when a live tunnel holds it (a switch).
    fn free_tun_name(&self) -> String {
        let used: Vec<&str> = self
            .sessions
            .values()
            .filter_map(|e| match &e.tunnel {
                Some(Tunnel::WireGuard(w)) => Some(w.tun_name()),
                _ => None,
            })
            .collect();
        let base = &self.cfg.wireguard_tun;
        if !used.contains(&base.as_str()) {
            return base.clone();
        }
        alternate_tun(base)
    }
}

/// The second TUN name of a switch: the last digit flipped (`wf-vpn0` → `wf-vpn1`), or `1`
/// appended (cut to the kernel's 15 bytes).
fn alternate_tun(base: &str) -> String {
    match base.char_indices().last() {
        Some((i, c)) if c.is_ascii_digit() => {
            let d = if c == '0' { '1' } else { '0' };
            format!("{}{d}", &base[..i])
        }
        _ => {
            let mut s: String = base.chars().take(14).collect();
            s.push('1');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_switch_uses_the_other_tun() {
        assert_eq!(super::alternate_tun("wf-vpn0"), "wf-vpn1");
        assert_eq!(super::alternate_tun("wf-vpn1"), "wf-vpn0");
        assert_eq!(super::alternate_tun("wfv"), "wfv1");
        assert_eq!(super::alternate_tun("abcdefghijklmnop").len(), 15);
    }
}
