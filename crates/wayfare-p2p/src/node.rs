//! The libp2p node: one tokio task owning the swarm, driven through a [`P2pHandle`] and
//! reporting through a channel of [`P2pEvent`]s.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use futures::StreamExt;
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::kad::{self, store::MemoryStore};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, dcutr, identify, noise, relay, tcp,
    yamux,
};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use wayfare_proto::codec::DecodeError;
use wayfare_proto::messages::{Announcement, Message, Refusal, RefusalReason};

use crate::announce::{self, AnnouncementError, MAX_ANNOUNCEMENT_BYTES};
use crate::codec::{REQUEST_PROTOCOL, RawCodec};
use crate::config::{Advertise, P2pConfig};
use crate::ratelimit::RateLimiter;
use crate::registry::{Registry, RegistryError, SignerCache};

/// The gossipsub topic announcements travel on.
pub const ANNOUNCEMENT_TOPIC: &str = "/wayfare/announcements/1";
/// The Kademlia protocol name (a private DHT, not the IPFS one).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/wayfare/kad/1");
/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/wayfare/1";

/// Most announcements waiting for a registry answer at once (more are ignored).
const MAX_PENDING_VALIDATIONS: usize = 1024;
/// How long one registry lookup may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most sellers whose signer is cached.
const SIGNER_CACHE_ENTRIES: usize = 10_000;
/// How long a DHT lookup may take before a request falls back to the configured relays.
const DHT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of a circuit-address record in the DHT.
const CIRCUIT_RECORD_TTL: Duration = Duration::from_secs(60 * 60);
/// Most circuit addresses published or accepted for one peer.
const MAX_CIRCUIT_ADDRS: usize = 8;
/// Application score per strike (gossipsub weighs it ×10: one strike is below the gossip
/// threshold of −10, four reach the graylist threshold of −80).
const STRIKE_SCORE: f64 = -2.0;
/// How often lost relay reservations are retried.
const RESERVATION_RETRY: Duration = Duration::from_secs(10);
/// Events buffered for the application before new ones are dropped.
const EVENT_BUFFER: usize = 1024;

/// What can go wrong talking to the node or a peer.
#[derive(Debug, Clone, Error)]
pub enum P2pError {
    /// The swarm could not be built or could not listen.
    #[error("could not start the p2p node: {0}")]
    Start(String),
    /// The node's task has stopped (shut down, or the runtime is going away).
    #[error("the p2p node has stopped")]
    Stopped,
    /// Publishing needs at least one peer subscribed to the topic: retry after peers connect.
    #[error("no peer is subscribed to the announcement topic yet: retry once connected")]
    NoPeers,
    /// Gossipsub refused the publication.
    #[error("publish failed: {0}")]
    Publish(String),
    /// The request could not be delivered or answered (dial failure, timeout, peer gone).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
    /// The peer answered with bytes that are not a Wayfare message.
    #[error("{peer} sent a malformed reply: {error}")]
    BadReply {
        /// The peer.
        peer: PeerId,
        /// The decoding error.
        error: Box<DecodeError>,
    },
    /// Dialing failed.
    #[error("dial failed: {0}")]
    Dial(String),
    /// The response channel was already closed (the requester gave up or timed out).
    #[error("the requester is gone; response dropped")]
    ResponseDropped,
}

/// What the node reports.
#[derive(Debug)]
pub enum P2pEvent {
    /// The node listens on a new address.
    Listening(Multiaddr),
    /// A valid announcement (signed by the seller's registered signer, live) from the seller
    /// node `peer`. Feed it to an [`OfferBook`](crate::OfferBook).
    Announcement {
        /// The seller's node.
        peer: PeerId,
        /// The announcement.
        announcement: Announcement,
    },
    /// An announcement was dropped and the peer that forwarded it penalised.
    AnnouncementRejected {
        /// The peer that forwarded it.
        from: PeerId,
        /// Why.
        reason: AnnouncementError,
    },
    /// A peer sent a request; answer through `responder` (dropping it fails the request).
    Request {
        /// The peer.
        peer: PeerId,
        /// The decoded message.
        message: Message,
        /// Where the answer goes.
        responder: Responder,
    },
    /// A peer identified itself (the addresses it advertises).
    Identified {
        /// The peer.
        peer: PeerId,
        /// Addresses it advertises.
        listen_addrs: Vec<Multiaddr>,
    },
    /// A relay accepted our reservation: we are reachable at a circuit address through it.
    RelayReservation {
        /// The relay.
        relay: PeerId,
    },
    /// A peer was penalised for garbage or floods; `banned` once it is disconnected and blocked.
    PeerPenalised {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
        /// Whether the peer is now blocked.
        banned: bool,
    },
}

/// Answers one inbound request: with a message, or with a bare acknowledgement.
#[derive(Debug)]
pub struct Responder {
    channel: ResponseChannel<Vec<u8>>,
    cmd: mpsc::UnboundedSender<Command>,
}

impl Responder {
    /// Replies with `message`.
    pub fn respond(self, message: &Message) -> Result<(), P2pError> {
        self.send(message.encode())
    }

    /// Acknowledges without a message (for Opened, Voucher, Usage…).
    pub fn ack(self) -> Result<(), P2pError> {
        self.send(Vec::new())
    }

    fn send(self, bytes: Vec<u8>) -> Result<(), P2pError> {
        self.cmd
            .send(Command::Respond {
                channel: self.channel,
                bytes,
            })
            .map_err(|_| P2pError::Stopped)
    }
}

type Reply<T> = oneshot::Sender<T>;

#[derive(Debug)]
enum Command {
    Request {
        peer: PeerId,
        bytes: Vec<u8>,
        reply: Reply<Result<Option<Message>, P2pError>>,
    },
    Respond {
        channel: ResponseChannel<Vec<u8>>,
        bytes: Vec<u8>,
    },
    Publish {
        bytes: Vec<u8>,
        reply: Reply<Result<(), P2pError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<(), P2pError>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
    },
    ListenAddrs(Reply<Vec<Multiaddr>>),
    ExternalAddrs(Reply<Vec<Multiaddr>>),
    ConnectedPeers(Reply<Vec<PeerId>>),
    FindCircuits {
        peer: PeerId,
        reply: Reply<Vec<Multiaddr>>,
    },
    ConnectionAddrs {
        peer: PeerId,
        reply: Reply<Vec<Multiaddr>>,
    },
    TopicPeers(Reply<Vec<PeerId>>),
    KadAddresses(Reply<HashMap<PeerId, Vec<Multiaddr>>>),
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
}

/// A cloneable handle on a running node. The node stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct P2pHandle {
    peer_id: PeerId,
    cmd: mpsc::UnboundedSender<Command>,
    _stop: Arc<oneshot::Sender<()>>,
}

impl P2pHandle {
    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// Sends `message` to `peer` and waits for its answer: `Some(message)`, or `None` for a bare
    /// acknowledgement. Dials the peer if needed, through the configured relays if no direct
    /// address is known.
    pub async fn request(
        &self,
        peer: PeerId,
        message: &Message,
    ) -> Result<Option<Message>, P2pError> {
        self.request_raw(peer, message.encode()).await
    }

    /// Like [`Self::request`] with the request bytes as given (for tests and tools).
    pub async fn request_raw(
        &self,
        peer: PeerId,
        bytes: Vec<u8>,
    ) -> Result<Option<Message>, P2pError> {
        self.ask(|reply| Command::Request { peer, bytes, reply })
            .await?
    }

    /// Publishes a signed announcement on the topic. Fails with [`P2pError::NoPeers`] until a
    /// peer has subscribed: a seller republishes periodically anyway (announcements expire).
    pub async fn publish(&self, announcement: &Announcement) -> Result<(), P2pError> {
        let bytes = Message::Announcement(announcement.clone()).encode();
        self.ask(|reply| Command::Publish { bytes, reply }).await?
    }

    /// Dials `addr` (ending in `/p2p/<peer id>` to authenticate the peer).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Tells the node an address of `peer`.
    pub fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), P2pError> {
        self.cmd
            .send(Command::AddAddress { peer, addr })
            .map_err(|_| P2pError::Stopped)
    }

    /// Addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        self.ask(Command::ListenAddrs).await
    }

    /// Addresses the node has confirmed as its external ones (what identify tells peers).
    pub async fn external_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        self.ask(Command::ExternalAddrs).await
    }

    /// Peers connected now.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, P2pError> {
        self.ask(Command::ConnectedPeers).await
    }

    /// The addresses of our connections to `peer`: the remote address, or for a relayed
    /// connection the circuit address (it contains `/p2p-circuit`).
    pub async fn connection_addrs(&self, peer: PeerId) -> Result<Vec<Multiaddr>, P2pError> {
        self.ask(|reply| Command::ConnectionAddrs { peer, reply })
            .await
    }

    /// The relay circuit addresses `peer` published in the DHT (empty if none found).
    pub async fn find_circuit_addrs(&self, peer: PeerId) -> Result<Vec<Multiaddr>, P2pError> {
        self.ask(|reply| Command::FindCircuits { peer, reply })
            .await
    }

    /// Connected peers subscribed to the announcement topic.
    pub async fn topic_peers(&self) -> Result<Vec<PeerId>, P2pError> {
        self.ask(Command::TopicPeers).await
    }

    /// Every address in the node's Kademlia routing table, by peer.
    pub async fn kad_addresses(&self) -> Result<HashMap<PeerId, Vec<Multiaddr>>, P2pError> {
        self.ask(Command::KadAddresses).await
    }

    /// The gossipsub score of `peer` (negative once penalised).
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, P2pError> {
        self.ask(|reply| Command::PeerScore { peer, reply }).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<BlockedPeers>,
    relay_client: relay::client::Behaviour,
    relay_server: Toggle<relay::Behaviour>,
    dcutr: Toggle<dcutr::Behaviour>,
    identify: identify::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    rr: request_response::Behaviour<RawCodec>,
}

/// Starts nodes.
#[derive(Debug)]
pub struct P2pNode;

impl P2pNode {
    /// Builds the swarm, starts listening, dials bootstrap peers and relays, and runs the node on
    /// the current tokio runtime. Returns the handle and the event stream.
    pub fn spawn<R: Registry>(
        config: P2pConfig,
        registry: Arc<R>,
    ) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>), P2pError> {
        let mut swarm = build_swarm(&config)?;
        let peer_id = *swarm.local_peer_id();
        let topic = IdentTopic::new(ANNOUNCEMENT_TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| P2pError::Start(e.to_string()))?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| P2pError::Start(format!("listen on {addr}: {e}")))?;
        }
        let hide = config.advertise == Advertise::Relay;
        for addr in config.bootstrap.iter().chain(&config.relays) {
            if let Some(peer) = peer_of(addr).filter(|_| !hide) {
                swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, strip_p2p(addr));
            }
            // A reservation dials its relay itself (a second dial in flight would abort it).
            if config.advertise == Advertise::Relay && config.relays.contains(addr) {
                continue;
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, error = %e, "cannot dial bootstrap peer; continuing without it");
            }
        }

        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (lookup_tx, lookup_rx) = mpsc::unbounded_channel();
        let relays: Vec<(PeerId, Multiaddr)> = config
            .relays
            .iter()
            .filter_map(|a| peer_of(a).map(|p| (p, a.clone())))
            .collect();
        let node = Node {
            swarm,
            topic,
            registry,
            cache: SignerCache::new(config.signer_cache_ttl, SIGNER_CACHE_ENTRIES),
            pending_validations: HashMap::new(),
            pending_count: 0,
            lookup_tx,
            pending_requests: HashMap::new(),
            gossip_limit: RateLimiter::new(config.gossip_rate.0, config.gossip_rate.1),
            request_limit: RateLimiter::new(config.request_rate.0, config.request_rate.1),
            strikes: HashMap::new(),
            relays,
            circuit_listeners: HashMap::new(),
            connections: HashMap::new(),
            pending_lookups: HashMap::new(),
            events: ev_tx,
            cmd_tx: cmd_tx.clone(),
            config,
        };
        tokio::spawn(node.run(cmd_rx, lookup_rx, stop_rx));
        Ok((
            P2pHandle {
                peer_id,
                cmd: cmd_tx,
                _stop: Arc::new(stop_tx),
            },
            ev_rx,
        ))
    }
}

fn build_swarm(config: &P2pConfig) -> Result<Swarm<Behaviour>, P2pError> {
    let start = |e: &dyn std::fmt::Display| P2pError::Start(e.to_string());
    let hide = config.advertise == Advertise::Relay;
    let server = config.reachable && !hide;
    let topic = IdentTopic::new(ANNOUNCEMENT_TOPIC);
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.gossip_heartbeat)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_ANNOUNCEMENT_BYTES + 1024)
        .build()
        .map_err(|e| start(&e))?;
    let score = score_params(&topic);
    let relay_server = config.relay_server.map(|r| relay::Config {
        max_reservations: r.max_reservations,
        max_circuits: r.max_circuits,
        max_circuit_duration: r.max_circuit_duration,
        max_circuit_bytes: r.max_circuit_bytes,
        ..relay::Config::default()
    });
    let idle = config.idle_timeout;
    let request_timeout = config.request_timeout;
    let swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| start(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| start(&e))?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_cfg,
            )?;
            gossipsub.with_peer_score(score.0, score.1)?;
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config(hide));
            kad.set_mode(Some(if server {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
            let identify = identify::Behaviour::new(
                identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                    .with_agent_version(format!("wayfare/{}", env!("CARGO_PKG_VERSION")))
                    .with_hide_listen_addrs(hide)
                    // A relay-only node must not learn direct addresses to dial.
                    .with_cache_size(if hide { 0 } else { 100 }),
            );
            Ok(Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                relay_client,
                relay_server: relay_server
                    .map(|c| relay::Behaviour::new(peer_id, c))
                    .into(),
                // Hole punching would hand our direct addresses to the remote.
                dcutr: (!hide).then(|| dcutr::Behaviour::new(peer_id)).into(),
                identify,
                kad,
                gossipsub,
                rr: request_response::Behaviour::with_codec(
                    RawCodec::default(),
                    [(REQUEST_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(request_timeout),
                ),
            })
        })
        .map_err(|e| start(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// Kademlia settings. A relay-only node (`hide`) must never dial peers it discovers (its IP
/// would go with the dial): its routing table stays empty (manual inserts, none made), so it
/// never bootstraps or runs iterative queries; it only stores its record on its relays.
fn kad_config(hide: bool) -> kad::Config {
    let mut c = kad::Config::new(KAD_PROTOCOL);
    c.set_query_timeout(DHT_QUERY_TIMEOUT)
        .set_record_ttl(Some(CIRCUIT_RECORD_TTL))
        .set_publication_interval(Some(CIRCUIT_RECORD_TTL / 2));
    if hide {
        c.set_kbucket_inserts(kad::BucketInserts::Manual)
            .set_periodic_bootstrap_interval(None)
            .set_publication_interval(None)
            .set_replication_interval(None);
    }
    c
}

/// The DHT key under which a relay-only node publishes its circuit addresses.
fn circuit_record_key(peer: &PeerId) -> kad::RecordKey {
    kad::RecordKey::new(&[b"/wayfare/circuit/".as_slice(), &peer.to_bytes()].concat())
}

/// Encodes circuit addresses for the DHT: each a `u16` length then the multiaddr bytes.
fn encode_circuit_addrs(addrs: &[Multiaddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addrs.iter().take(MAX_CIRCUIT_ADDRS) {
        let b = a.to_vec();
        if let Ok(len) = u16::try_from(b.len()) {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&b);
        }
    }
    out
}

/// Decodes a circuit record for `peer`, keeping only relay circuit addresses that end in
/// `/p2p/<peer>` (anyone can write a DHT record; noise authenticates whoever we reach).
fn decode_circuit_addrs(peer: &PeerId, mut bytes: &[u8]) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    while bytes.len() >= 2 && out.len() < MAX_CIRCUIT_ADDRS {
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        let Some(raw) = bytes.get(2..2 + len) else {
            break;
        };
        bytes = &bytes[2 + len..];
        if let Ok(a) = Multiaddr::try_from(raw.to_vec())
            && a.iter().any(|p| p == Protocol::P2pCircuit)
            && peer_of(&a) == Some(*peer)
        {
            out.push(a);
        }
    }
    out
}

/// Peer scoring: invalid announcements (P4) weigh heavily, application penalties (garbage
/// requests, floods) too; mesh delivery rate (P3) is off (announcements are rare). Loopback is
/// exempt from the same-IP penalty.
fn score_params(
    topic: &IdentTopic,
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams::default();
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    let t = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.99,
        ..gossipsub::TopicScoreParams::default()
    };
    params.topics.insert(topic.hash(), t);
    (params, gossipsub::PeerScoreThresholds::default())
}

/// The peer id an address ends with, if any.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

/// `addr` without a trailing `/p2p/<id>`.
fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a DHT lookup of circuit addresses is for.
enum Lookup {
    /// A request waiting to be sent.
    Request(Vec<u8>, ReplyTo),
    /// [`P2pHandle::find_circuit_addrs`].
    Find(Reply<Vec<Multiaddr>>),
}

type ReplyTo = Reply<Result<Option<Message>, P2pError>>;
type PendingRequest = (PeerId, ReplyTo);
type LookupResult = (Address, Result<Option<Address>, RegistryError>);

struct Node<R> {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    registry: Arc<R>,
    cache: SignerCache,
    /// Announcements waiting for the registry, by seller.
    pending_validations: HashMap<Address, Vec<(MessageId, PeerId, Announcement)>>,
    pending_count: usize,
    lookup_tx: mpsc::UnboundedSender<LookupResult>,
    pending_requests: HashMap<OutboundRequestId, PendingRequest>,
    gossip_limit: RateLimiter<PeerId>,
    request_limit: RateLimiter<PeerId>,
    strikes: HashMap<PeerId, u32>,
    relays: Vec<(PeerId, Multiaddr)>,
    /// Our reservation listeners, by relay address (with [`Advertise::Relay`]).
    circuit_listeners: HashMap<Multiaddr, ListenerId>,
    /// Open connections: peer and remote address.
    connections: HashMap<ConnectionId, (PeerId, Multiaddr)>,
    /// Requests waiting for a DHT lookup of the peer's circuit addresses.
    pending_lookups: HashMap<kad::QueryId, (PeerId, Lookup)>,
    events: mpsc::Sender<P2pEvent>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    config: P2pConfig,
}

impl<R: Registry> Node<R> {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Command>,
        mut lookups: mpsc::UnboundedReceiver<LookupResult>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut maintenance = tokio::time::interval(RESERVATION_RETRY);
        loop {
            tokio::select! {
                _ = maintenance.tick() => self.keep_reservations(),
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                Some(cmd) = cmds.recv() => self.on_command(cmd),
                Some((seller, result)) = lookups.recv() => self.on_lookup(seller, result),
                _ = &mut stop => break,
            }
        }
        debug!(peer = %self.swarm.local_peer_id(), "p2p node stopped");
    }

    /// With [`Advertise::Relay`], (re)makes a reservation on every relay that has none (at
    /// start, and after a relay went away or refused us).
    fn keep_reservations(&mut self) {
        if self.config.advertise != Advertise::Relay {
            return;
        }
        for relay in &self.config.relays {
            if self.circuit_listeners.contains_key(relay) {
                continue;
            }
            match self
                .swarm
                .listen_on(relay.clone().with(Protocol::P2pCircuit))
            {
                Ok(id) => {
                    self.circuit_listeners.insert(relay.clone(), id);
                }
                Err(e) => {
                    warn!(%relay, error = %e, "cannot reserve a slot on relay; will retry");
                }
            }
        }
    }

    fn emit(&self, ev: P2pEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(ev) {
            warn!("p2p event buffer full: the application is not draining events; event dropped");
        }
    }

    /// Sends a request, dialing through `found` (DHT circuit addresses), the configured relays
    /// and whatever the behaviours know if we are not connected.
    fn send_request(
        &mut self,
        peer: PeerId,
        bytes: Vec<u8>,
        reply: Reply<Result<Option<Message>, P2pError>>,
        mut addrs: Vec<Multiaddr>,
    ) {
        if !self.swarm.is_connected(&peer) {
            addrs.extend(
                self.relays
                    .iter()
                    .filter(|(relay, _)| *relay != peer)
                    .map(|(_, a)| {
                        a.clone()
                            .with(Protocol::P2pCircuit)
                            .with(Protocol::P2p(peer))
                    }),
            );
        }
        let id = self
            .swarm
            .behaviour_mut()
            .rr
            .send_request_with_addresses(&peer, bytes, addrs);
        self.pending_requests.insert(id, (peer, reply));
    }

    /// A DHT lookup for a peer's circuit addresses progressed.
    fn on_kad_get(
        &mut self,
        id: kad::QueryId,
        result: Result<kad::GetRecordOk, kad::GetRecordError>,
    ) {
        let found = match result {
            Ok(kad::GetRecordOk::FoundRecord(r)) => Some(r.record.value),
            Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => None,
        };
        let Some((peer, lookup)) = self.pending_lookups.remove(&id) else {
            return;
        };
        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            q.finish();
        }
        let addrs = found
            .map(|v| decode_circuit_addrs(&peer, &v))
            .unwrap_or_default();
        debug!(%peer, found = addrs.len(), "DHT lookup for circuit addresses done");
        match lookup {
            Lookup::Request(bytes, reply) => self.send_request(peer, bytes, reply, addrs),
            Lookup::Find(reply) => {
                let _ = reply.send(addrs);
            }
        }
    }

    /// Publishes our relay circuit addresses in the DHT (with [`Advertise::Relay`]).
    fn publish_circuits(&mut self) {
        let addrs: Vec<Multiaddr> = self
            .swarm
            .external_addresses()
            .filter(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
            .cloned()
            .collect();
        if addrs.is_empty() {
            return;
        }
        let local = *self.swarm.local_peer_id();
        let record = kad::Record {
            key: circuit_record_key(&local),
            value: encode_circuit_addrs(&addrs),
            publisher: Some(local),
            expires: Some(Instant::now() + CIRCUIT_RECORD_TTL),
        };
        // Stored on our relays only: they know our IP already, nobody else must see us dial.
        let relays: Vec<PeerId> = self.relays.iter().map(|(p, _)| *p).collect();
        self.swarm
            .behaviour_mut()
            .kad
            .put_record_to(record, relays.into_iter(), kad::Quorum::One);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { peer, bytes, reply } => {
                if self.swarm.is_connected(&peer) || self.config.advertise == Advertise::Relay {
                    // A relay-only node reaches others only through its relays.
                    self.send_request(peer, bytes, reply, Vec::new());
                } else {
                    // Look for the peer's relay circuits in the DHT first.
                    let query = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .get_record(circuit_record_key(&peer));
                    self.pending_lookups
                        .insert(query, (peer, Lookup::Request(bytes, reply)));
                }
            }
            Command::Respond { channel, bytes } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, bytes)
                    .is_err()
                {
                    debug!("response dropped: the requester is gone");
                }
            }
            Command::Publish { bytes, reply } => {
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), bytes)
                    .map(|_| ())
                    .map_err(|e| match e {
                        gossipsub::PublishError::NoPeersSubscribedToTopic => P2pError::NoPeers,
                        e => P2pError::Publish(e.to_string()),
                    });
                let _ = reply.send(r);
            }
            Command::Dial { addr, reply } => {
                let _ = reply.send(
                    self.swarm
                        .dial(addr)
                        .map_err(|e| P2pError::Dial(e.to_string())),
                );
            }
            Command::AddAddress { peer, addr } => self.swarm.add_peer_address(peer, addr),
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ExternalAddrs(reply) => {
                let _ = reply.send(self.swarm.external_addresses().cloned().collect());
            }
            Command::ConnectionAddrs { peer, reply } => {
                let addrs = self
                    .connections
                    .values()
                    .filter(|(p, _)| *p == peer)
                    .map(|(_, a)| a.clone())
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::FindCircuits { peer, reply } => {
                let query = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(circuit_record_key(&peer));
                self.pending_lookups
                    .insert(query, (peer, Lookup::Find(reply)));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::TopicPeers(reply) => {
                let hash = self.topic.hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(peers);
            }
            Command::KadAddresses(reply) => {
                let mut out: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
                    for entry in bucket.iter() {
                        out.entry(*entry.node.key.preimage())
                            .or_default()
                            .extend(entry.node.value.iter().cloned());
                    }
                }
                let _ = reply.send(out);
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let circuit = address.iter().any(|p| p == Protocol::P2pCircuit);
                if self.config.reachable && self.config.advertise == Advertise::Direct && !circuit {
                    self.swarm.add_external_address(address.clone());
                }
                info!(%address, "listening");
                self.emit(P2pEvent::Listening(address));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                let bootstrap = peer_id.is_some_and(|p| {
                    self.config
                        .bootstrap
                        .iter()
                        .chain(&self.config.relays)
                        .any(|a| peer_of(a) == Some(p))
                });
                if bootstrap {
                    warn!(peer = ?peer_id, error = %error, "bootstrap peer or relay unreachable; continuing without it");
                } else {
                    debug!(peer = ?peer_id, error = %error, "outgoing connection failed");
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                let before = self.circuit_listeners.len();
                self.circuit_listeners.retain(|_, id| *id != listener_id);
                if before != self.circuit_listeners.len() {
                    let error = reason.err().map(|e| e.to_string()).unwrap_or_default();
                    warn!(?addresses, %error, "relay reservation lost (relay full, gone or unreachable); retrying later");
                } else if let Err(e) = reason {
                    warn!(?addresses, error = %e, "listener closed");
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                warn!(error = %error, "listener error (a relay may be full or gone)");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                // An inbound relayed connection's remote address is just `/p2p/<peer>`: show
                // the circuit we accepted it on instead.
                let addr = match &endpoint {
                    libp2p::core::ConnectedPoint::Listener { local_addr, .. }
                        if endpoint.is_relayed() =>
                    {
                        local_addr.clone()
                    }
                    _ => endpoint.get_remote_address().clone(),
                };
                self.connections.insert(connection_id, (peer_id, addr));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connections.remove(&connection_id);
                if num_established == 0 {
                    self.gossip_limit.forget(&peer_id);
                    self.request_limit.forget(&peer_id);
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address }
                if address.iter().any(|p| p == Protocol::P2pCircuit) =>
            {
                info!(%address, "reachable through a relay");
                self.publish_circuits();
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Rr(ev) => self.on_rr(ev),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetRecord(result),
                ..
            }) => self.on_kad_get(id, result),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocols.contains(&KAD_PROTOCOL)
                    && self.config.advertise == Advertise::Direct
                {
                    for a in &info.listen_addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, a.clone());
                    }
                }
                self.emit(P2pEvent::Identified {
                    peer: peer_id,
                    listen_addrs: info.listen_addrs,
                });
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                info!(relay = %relay_peer_id, "relay reservation accepted");
                self.emit(P2pEvent::RelayReservation {
                    relay: relay_peer_id,
                });
            }
            BehaviourEvent::RelayServer(relay::Event::ReservationReqDenied {
                src_peer_id, ..
            }) => {
                info!(peer = %src_peer_id, "relay full or limited: reservation denied");
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: MessageId, msg: gossipsub::Message) {
        if !self.gossip_limit.allow(&source, Instant::now()) {
            self.report(&id, &source, MessageAcceptance::Ignore);
            self.strike(source, "announcement flood");
            return;
        }
        let origin = msg.source.map(|p| p.to_bytes());
        let ttl = self.config.max_announcement_ttl.as_secs();
        match announce::precheck(&msg.data, origin.as_deref(), unix_now(), ttl) {
            Err(e) => self.reject(id, source, e),
            Ok(a) => match self.cache.get(&a.seller, Instant::now()) {
                Some(signer) => self.finish_validation(id, source, a, signer),
                None if self.pending_count >= MAX_PENDING_VALIDATIONS => {
                    debug!("too many announcements awaiting the registry; ignoring one");
                    self.report(&id, &source, MessageAcceptance::Ignore);
                }
                None => {
                    let seller = a.seller;
                    let queue = self.pending_validations.entry(seller).or_default();
                    let first = queue.is_empty();
                    queue.push((id, source, a));
                    self.pending_count += 1;
                    if first {
                        let registry = self.registry.clone();
                        let tx = self.lookup_tx.clone();
                        tokio::spawn(async move {
                            let r =
                                tokio::time::timeout(REGISTRY_TIMEOUT, registry.signer_of(seller))
                                    .await
                                    .unwrap_or_else(|_| Err(RegistryError("timed out".into())));
                            let _ = tx.send((seller, r));
                        });
                    }
                }
            },
        }
    }

    fn on_lookup(&mut self, seller: Address, result: Result<Option<Address>, RegistryError>) {
        let waiting = self.pending_validations.remove(&seller).unwrap_or_default();
        self.pending_count = self.pending_count.saturating_sub(waiting.len());
        match result {
            Ok(signer) => {
                self.cache.insert(seller, signer, Instant::now());
                for (id, source, a) in waiting {
                    self.finish_validation(id, source, a, signer);
                }
            }
            Err(e) => {
                warn!(%seller, error = %e, "registry lookup failed; ignoring that seller's announcements for now");
                for (id, source, _) in waiting {
                    self.report(&id, &source, MessageAcceptance::Ignore);
                }
            }
        }
    }

    fn finish_validation(
        &mut self,
        id: MessageId,
        source: PeerId,
        a: Announcement,
        signer: Option<Address>,
    ) {
        match announce::check_signature(&a, signer, &self.config.domain) {
            Ok(()) => {
                self.report(&id, &source, MessageAcceptance::Accept);
                match PeerId::from_bytes(&a.peer_id) {
                    Ok(peer) => self.emit(P2pEvent::Announcement {
                        peer,
                        announcement: a,
                    }),
                    Err(_) => debug!("announcement names an unparsable peer id"),
                }
            }
            Err(e) => self.reject(id, source, e),
        }
    }

    fn report(&mut self, id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    fn reject(&mut self, id: MessageId, source: PeerId, reason: AnnouncementError) {
        warn!(peer = %source, %reason, "dropped invalid announcement; peer penalised");
        self.report(&id, &source, MessageAcceptance::Reject);
        self.emit(P2pEvent::AnnouncementRejected {
            from: source,
            reason,
        });
    }

    /// Penalises `peer` (application score), blocking it after too many strikes.
    fn strike(&mut self, peer: PeerId, reason: &str) {
        let n = self.strikes.entry(peer).or_default();
        *n += 1;
        let n = *n;
        let banned = n >= self.config.strikes_before_ban;
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, STRIKE_SCORE * f64::from(n));
        if banned {
            warn!(%peer, reason, strikes = n, "peer blocked after repeated misbehaviour");
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        } else {
            warn!(%peer, reason, strikes = n, "peer penalised");
        }
        self.emit(P2pEvent::PeerPenalised {
            peer,
            reason: reason.to_owned(),
            banned,
        });
    }

    fn on_rr(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message as RrMessage};
        match ev {
            Event::Message {
                peer,
                message:
                    RrMessage::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_request(peer, request, channel),
            Event::Message {
                peer,
                message:
                    RrMessage::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some((_, reply)) = self.pending_requests.remove(&request_id) else {
                    return;
                };
                let r = if response.is_empty() {
                    Ok(None)
                } else {
                    match Message::decode(&response) {
                        Ok(m) => Ok(Some(m)),
                        Err(error) => {
                            self.strike(peer, "malformed reply");
                            Err(P2pError::BadReply {
                                peer,
                                error: Box::new(error),
                            })
                        }
                    }
                };
                let _ = reply.send(r);
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, request: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let refuse = |reason, detail: String| Message::Refusal(Refusal { reason, detail }).encode();
        if !self.request_limit.allow(&peer, Instant::now()) {
            let bytes = refuse(RefusalReason::Unavailable, "rate limited: slow down".into());
            let _ = self.swarm.behaviour_mut().rr.send_response(channel, bytes);
            self.strike(peer, "request flood");
            return;
        }
        match Message::decode(&request) {
            Ok(Message::Announcement(_)) => {
                let bytes = refuse(
                    RefusalReason::BadRequest,
                    "announcements go on the gossip topic".into(),
                );
                let _ = self.swarm.behaviour_mut().rr.send_response(channel, bytes);
                self.strike(peer, "announcement sent as a request");
            }
            Ok(message) => {
                debug!(%peer, kind = message.name(), "inbound request");
                let responder = Responder {
                    channel,
                    cmd: self.cmd_tx.clone(),
                };
                self.emit(P2pEvent::Request {
                    peer,
                    message,
                    responder,
                });
            }
            Err(e) => {
                let detail = truncate(
                    format!("malformed request: {e}"),
                    wayfare_proto::messages::MAX_DETAIL_LEN,
                );
                let bytes = refuse(RefusalReason::BadRequest, detail);
                let _ = self.swarm.behaviour_mut().rr.send_response(channel, bytes);
                self.strike(peer, "malformed request");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_records_keep_only_circuits_to_the_named_peer() {
        let peer = PeerId::random();
        let relay = PeerId::random();
        let good: Multiaddr = format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}")
            .parse()
            .unwrap();
        let direct: Multiaddr = format!("/ip4/10.0.0.2/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        let other: Multiaddr =
            format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{relay}")
                .parse()
                .unwrap();
        let bytes = encode_circuit_addrs(&[good.clone(), direct, other]);
        assert_eq!(decode_circuit_addrs(&peer, &bytes), vec![good.clone()]);
        // Truncated or garbage input yields what parses, never panics.
        assert!(decode_circuit_addrs(&peer, &bytes[..bytes.len() - 3]).len() <= 1);
        assert!(decode_circuit_addrs(&peer, &[0xff, 0xff, 1, 2]).is_empty());
        assert_eq!(truncate("ab‖c".into(), 3), "ab");
    }
}
