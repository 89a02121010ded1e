//! Connection limits: established and pending incoming connections in total and per peer
//! (libp2p's `connection_limits`), and incoming connections per remote IP ([`PerIp`], ours).
//!
//! A stranger with one IP can then hold at most [`ConnectionLimits::max_per_ip`] of the
//! [`ConnectionLimits::max_established_incoming`] slots, so peers from other addresses still get
//! in. IPv6 addresses count per /64 (what one host is usually given). Relayed connections carry
//! no remote IP and are not counted per IP (they all arrive over the relay's one connection,
//! which is). Outgoing connections are ours to make and are not limited here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{PeerId, connection_limits};

/// Limits on incoming connections (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Established incoming connections at once, from everyone.
    pub max_established_incoming: u32,
    /// Incoming connections still in their handshake at once, from everyone.
    pub max_pending_incoming: u32,
    /// Established connections (either direction) with one peer id.
    pub max_per_peer: u32,
    /// Incoming connections (pending or established) from one IP (IPv6: one /64).
    pub max_per_ip: u32,
}

impl Default for ConnectionLimits {
    /// 512 incoming in all, 128 in handshake, 8 per peer id, 64 per IP. A node's honest load
    /// is a few dozen buyers and its gossip mesh (~10 peers), one or two connections each
    /// (TCP and QUIC, a relay circuit), so 8 per peer leaves room for redials. 64 per IP lets
    /// a NAT'd office, or the lab's flood of 50 peer ids from one host, connect, while one IP
    /// takes at most an eighth of the 512: a flood from one host leaves most slots to others.
    /// 128 in handshake bounds the noise handshakes (the costly part) a SYN flood can start.
    fn default() -> Self {
        Self {
            max_established_incoming: 512,
            max_pending_incoming: 128,
            max_per_peer: 8,
            max_per_ip: 64,
        }
    }
}

impl ConnectionLimits {
    /// libp2p's totals and per-peer limits.
    pub(crate) fn totals(&self) -> connection_limits::Behaviour {
        connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_incoming(Some(self.max_established_incoming))
                .with_max_pending_incoming(Some(self.max_pending_incoming))
                .with_max_established_per_peer(Some(self.max_per_peer)),
        )
    }
}

/// An incoming connection denied because its IP holds its share already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerIpExceeded {
    /// The remote IP (IPv6: its /64).
    pub ip: IpAddr,
    /// The limit.
    pub limit: u32,
}

impl fmt::Display for PerIpExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} already has {} incoming connections (the most per IP)",
            self.ip, self.limit
        )
    }
}

impl std::error::Error for PerIpExceeded {}

/// The IP an incoming connection counts against: the first IP of its remote address (IPv6 cut
/// to its /64); `None` for relayed connections and addresses without an IP.
pub fn ip_key(remote: &Multiaddr) -> Option<IpAddr> {
    if remote.iter().any(|p| p == Protocol::P2pCircuit) {
        return None;
    }
    remote.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => {
            let bits = u128::from(ip) & !((1u128 << 64) - 1);
            Some(IpAddr::V6(bits.into()))
        }
        _ => None,
    })
}

/// Denies incoming connections from an IP that has `limit` incoming connections, pending or
/// established, already. Counts from the swarm's own events, so it holds whatever the other
/// behaviours decide.
#[derive(Debug)]
pub struct PerIp {
    limit: u32,
    /// Every counted connection (pending or established) and its IP.
    live: HashMap<ConnectionId, IpAddr>,
    /// Counted connections by IP (no zero entries).
    counts: HashMap<IpAddr, u32>,
}

impl PerIp {
    /// Allows `limit` incoming connections per IP.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            live: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    /// Connections counted against `ip` now.
    pub fn count(&self, ip: &IpAddr) -> u32 {
        self.counts.get(ip).copied().unwrap_or(0)
    }

    fn admit(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        if self.live.contains_key(&id) {
            return Ok(());
        }
        let Some(ip) = ip_key(remote) else {
            return Ok(());
        };
        let n = self.counts.entry(ip).or_default();
        if *n >= self.limit {
            if *n == 0 {
                self.counts.remove(&ip);
            }
            return Err(ConnectionDenied::new(PerIpExceeded {
                ip,
                limit: self.limit,
            }));
        }
        *n += 1;
        self.live.insert(id, ip);
        Ok(())
    }

    fn release(&mut self, id: ConnectionId) {
        let Some(ip) = self.live.remove(&id) else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for PerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Counted when pending already; admitted here only if it never was.
        self.admit(connection_id, remote_addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.release(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Which connection limit denied a connection: `Some(true)` the per-IP one, `Some(false)` a
/// total or per-peer one, `None` none (a blocked peer…).
pub(crate) fn denied_by(cause: &ConnectionDenied) -> Option<bool> {
    if cause.downcast_ref::<PerIpExceeded>().is_some() {
        Some(true)
    } else if cause
        .downcast_ref::<connection_limits::Exceeded>()
        .is_some()
    {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_ip_after_the_limit_is_denied_until_one_closes() {
        let mut b = PerIp::new(2);
        let local = addr("/ip4/127.0.0.1/tcp/4001");
        let a = addr("/ip4/10.0.0.1/tcp/5000");
        let ids: Vec<ConnectionId> = (1..=4).map(ConnectionId::new_unchecked).collect();
        assert!(
            b.handle_pending_inbound_connection(ids[0], &local, &a)
                .is_ok()
        );
        assert!(
            b.handle_pending_inbound_connection(ids[1], &local, &a)
                .is_ok()
        );
        let denied = b
            .handle_pending_inbound_connection(ids[2], &local, &a)
            .unwrap_err();
        assert_eq!(denied_by(&denied), Some(true));
        // Another IP is not affected; established after pending counts once.
        let other = addr("/ip4/10.0.0.2/tcp/5000");
        assert!(
            b.handle_pending_inbound_connection(ids[3], &local, &other)
                .is_ok()
        );
        let peer = PeerId::random();
        assert!(
            b.handle_established_inbound_connection(ids[3], peer, &local, &other)
                .is_ok()
        );
        assert_eq!(b.count(&ip_key(&other).unwrap()), 1);
        // A failed handshake frees its slot.
        b.release(ids[0]);
        assert_eq!(b.count(&ip_key(&a).unwrap()), 1);
        assert!(
            b.handle_pending_inbound_connection(ids[2], &local, &a)
                .is_ok()
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_relayed_connections_not_at_all() {
        let v6a = addr("/ip6/2001:db8:1:2:aaaa::1/tcp/1");
        let v6b = addr("/ip6/2001:db8:1:2:bbbb::9/udp/1/quic-v1");
        assert_eq!(ip_key(&v6a), ip_key(&v6b));
        assert_ne!(ip_key(&v6a), ip_key(&addr("/ip6/2001:db8:1:3::1/tcp/1")));
        let relay = PeerId::random();
        let circuit = addr(&format!("/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit"));
        assert_eq!(ip_key(&circuit), None);
        assert_eq!(ip_key(&addr(&format!("/p2p/{relay}"))), None);
    }
}
