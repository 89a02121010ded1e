//! Node configuration.

use std::net::Ipv4Addr;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use wayfare_proto::eip712::Eip712Domain;

use crate::limits::ConnectionLimits;
use crate::queues::QueueSizes;

/// Which of its addresses a node lets others learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Advertise {
    /// Its own listen addresses (a reachable node: relays, bootstrap nodes, sellers that don't
    /// mind being found by IP).
    #[default]
    Direct,
    /// Only relay circuit addresses: its listen addresses stay out of identify, Kademlia and
    /// hole punching (dcutr is off), so a seller's IP leaves it only inside a sealed Reveal.
    Relay,
}

/// Limits of a node that serves as a circuit relay (v2) for others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayServerConfig {
    /// Reservations held at once (a full relay refuses more).
    pub max_reservations: usize,
    /// Circuits open at once.
    pub max_circuits: usize,
    /// Longest a circuit stays up (session messages run over it for a whole session).
    pub max_circuit_duration: Duration,
    /// Bytes a circuit may carry (session messages only: the tunnel never runs over relays).
    pub max_circuit_bytes: u64,
}

impl Default for RelayServerConfig {
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_circuits: 64,
            max_circuit_duration: Duration::from_secs(60 * 60),
            max_circuit_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Everything [`crate::P2pNode::spawn`] needs.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// The node's stable identity (see [`crate::load_or_create_keypair`]).
    pub keypair: Keypair,
    /// Addresses to listen on (TCP and/or QUIC).
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start, each ending in `/p2p/<peer id>`. Unreachable ones are
    /// logged and skipped.
    pub bootstrap: Vec<Multiaddr>,
    /// Relays (each ending in `/p2p/<peer id>`): with [`Advertise::Relay`] the node reserves a
    /// slot on each; every node tries them to reach peers it has no address for.
    pub relays: Vec<Multiaddr>,
    /// Serve as a relay for others.
    pub relay_server: Option<RelayServerConfig>,
    /// Which addresses to let others learn.
    pub advertise: Advertise,
    /// Whether the listen addresses are reachable from outside: the node then confirms them as
    /// external and answers Kademlia queries (server mode). Ignored with [`Advertise::Relay`].
    pub reachable: bool,
    /// EIP-712 domain announcements are signed under.
    pub domain: Eip712Domain,
    /// Longest announcement lifetime accepted (`valid_until - now`).
    pub max_announcement_ttl: Duration,
    /// How long registry answers are cached.
    pub signer_cache_ttl: Duration,
    /// Gossipsub heartbeat (mesh maintenance).
    pub gossip_heartbeat: Duration,
    /// How long an outbound request waits for its response.
    pub request_timeout: Duration,
    /// Announcements accepted per second from one forwarding peer (and burst).
    pub gossip_rate: (u32, u32),
    /// Requests accepted per second from one peer (and burst).
    pub request_rate: (u32, u32),
    /// Penalties (garbage, floods) after which a peer is disconnected and blocked.
    pub strikes_before_ban: u32,
    /// Connections with no stream are closed after this long.
    pub idle_timeout: Duration,
    /// Limits on incoming connections: in total, in handshake, per peer, per IP.
    pub connection_limits: ConnectionLimits,
    /// How much each queue to the application holds (sessions, quotes, other events).
    pub queues: QueueSizes,
}

impl P2pConfig {
    /// Defaults: listen on all interfaces (TCP and QUIC, ephemeral ports), no bootstrap, no
    /// relays, [`Advertise::Direct`], not reachable, [`ConnectionLimits::default`] and
    /// [`QueueSizes::default`].
    pub fn new(keypair: Keypair, domain: Eip712Domain) -> Self {
        Self {
            keypair,
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
                    .with(Protocol::Tcp(0)),
                Multiaddr::empty()
                    .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
                    .with(Protocol::Udp(0))
                    .with(Protocol::QuicV1),
            ],
            bootstrap: Vec::new(),
            relays: Vec::new(),
            relay_server: None,
            advertise: Advertise::Direct,
            reachable: false,
            domain,
            max_announcement_ttl: Duration::from_secs(60 * 60),
            signer_cache_ttl: Duration::from_secs(5 * 60),
            gossip_heartbeat: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            gossip_rate: (5, 20),
            request_rate: (20, 50),
            strikes_before_ban: 5,
            idle_timeout: Duration::from_secs(120),
            connection_limits: ConnectionLimits::default(),
            queues: QueueSizes::default(),
        }
    }
}
