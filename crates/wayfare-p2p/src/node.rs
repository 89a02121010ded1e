//! The libp2p node: one tokio task owning the swarm, driven through a [`P2pHandle`] and
//! reporting through the queues of [`P2pEvents`]. Its handlers live by concern in `node/`:
//! `gossip.rs` (announcement validation), `requests.rs` (request-response, both ways) and
//! `dht.rs` (circuit address records).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, IdentTopic, MessageId};
use libp2p::kad;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::{ConnectionId, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, relay};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use wayfare_proto::messages::{Announcement, Message};

use crate::config::{Advertise, P2pConfig};
use crate::events::P2pEvent;
use crate::handle::{Command, P2pError, P2pHandle, Reply};
use crate::queues::{P2pEvents, P2pStats, Queues};
use crate::ratelimit::RateLimiter;
use crate::registry::{Registry, RegistryError, SignerCache};
use crate::swarm::{Behaviour, BehaviourEvent, build_swarm};

mod backoff;
mod dht;
use dht::circuit_record_key;
mod gossip;
mod requests;

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
pub(crate) const DHT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of a circuit-address record in the DHT.
pub(crate) const CIRCUIT_RECORD_TTL: Duration = Duration::from_secs(60 * 60);
/// Most circuit addresses published or accepted for one peer.
pub(crate) const MAX_CIRCUIT_ADDRS: usize = 8;
/// Application score per strike (gossipsub weighs it ×10: one strike is below the gossip
/// threshold of −10, four reach the graylist threshold of −80).
const STRIKE_SCORE: f64 = -2.0;
/// How often lost relay reservations are retried.
const RESERVATION_RETRY: Duration = Duration::from_secs(10);

/// Starts nodes.
#[derive(Debug)]
pub struct P2pNode;

impl P2pNode {
    /// Builds the swarm, starts listening, dials bootstrap peers and relays, and runs the node on
    /// the current tokio runtime. Returns the handle and the event stream.
    pub fn spawn<R: Registry>(
        config: P2pConfig,
        registry: Arc<R>,
    ) -> Result<(P2pHandle, P2pEvents), P2pError> {
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
        let stats = Arc::new(P2pStats::default());
        let (queues, events) = Queues::new(config.queues, stats.clone());
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
            dial_backoff: backoff::DialBackoff::default(),
            relays,
            circuit_listeners: HashMap::new(),
            connections: HashMap::new(),
            pending_lookups: HashMap::new(),
            pending_closest: HashMap::new(),
            queues,
            stats: stats.clone(),
            cmd_tx: cmd_tx.clone(),
            config,
        };
        tokio::spawn(node.run(cmd_rx, lookup_rx, stop_rx));
        Ok((
            P2pHandle {
                peer_id,
                cmd: cmd_tx,
                stats,
                _stop: Arc::new(stop_tx),
            },
            events,
        ))
    }
}

/// The peer id an address ends with, if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
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
pub(crate) fn truncate(mut s: String, max: usize) -> String {
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
/// Peers and the addresses known for them.
type PeerAddrs = Vec<(PeerId, Vec<Multiaddr>)>;
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
    /// Peers whose last dial failed, and when they may be dialed again.
    dial_backoff: backoff::DialBackoff,
    relays: Vec<(PeerId, Multiaddr)>,
    /// Our reservation listeners, by relay address (with [`Advertise::Relay`]).
    circuit_listeners: HashMap<Multiaddr, ListenerId>,
    /// Open connections: peer and remote address.
    connections: HashMap<ConnectionId, (PeerId, Multiaddr)>,
    /// Requests waiting for a DHT lookup of the peer's circuit addresses.
    pending_lookups: HashMap<kad::QueryId, (PeerId, Lookup)>,
    /// [`P2pHandle::closest_peers`] walks under way.
    pending_closest: HashMap<kad::QueryId, Reply<PeerAddrs>>,
    /// What goes to the application, by class.
    queues: Queues,
    stats: Arc<P2pStats>,
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

    /// Hands an event (not a request) to the application; dropped, counted, when it is behind.
    fn emit(&self, ev: P2pEvent) {
        self.queues.event(ev);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { peer, bytes, reply } => {
                if !self.swarm.is_connected(&peer)
                    && let Some(wait) = self.dial_backoff.wait(&peer, std::time::Instant::now())
                {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: format!(
                            "unreachable at the last dial; next try in {} ms",
                            wait.as_millis()
                        ),
                    }));
                    return;
                }
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
            Command::ClosestPeers { peer, reply } => {
                let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                self.pending_closest.insert(query, reply);
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
                if let Some(p) = peer_id {
                    self.dial_backoff.failed(p, std::time::Instant::now());
                }
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
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                send_back_addr,
                ..
            } => {
                if let Some(per_ip) = crate::limits::denied_by(&cause) {
                    self.stats.count_denied(per_ip);
                    debug!(remote = %send_back_addr, %cause, "incoming connection denied by a limit");
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
                self.dial_backoff.connected(&peer_id);
                self.stats.set_peers(self.swarm.connected_peers().count());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connections.remove(&connection_id);
                self.stats.set_peers(self.swarm.connected_peers().count());
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
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            }) => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                if let Some(reply) = self.pending_closest.remove(&id) {
                    let _ = reply.send(peers.into_iter().map(|p| (p.peer_id, p.addrs)).collect());
                }
            }
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
}
