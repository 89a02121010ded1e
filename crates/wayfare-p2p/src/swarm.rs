//! The swarm: which behaviours make up a node and how each is configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
use libp2p::{Swarm, SwarmBuilder, connection_limits, dcutr, identify, noise, relay, tcp, yamux};

use crate::announce::MAX_ANNOUNCEMENT_BYTES;
use crate::codec::{REQUEST_PROTOCOL, RawCodec};
use crate::config::{Advertise, P2pConfig};
use crate::handle::P2pError;
use crate::limits::PerIp;
use crate::node::{
    ANNOUNCEMENT_TOPIC, CIRCUIT_RECORD_TTL, DHT_QUERY_TIMEOUT, IDENTIFY_VERSION, KAD_PROTOCOL,
};

/// Limits come first: a denied connection is refused before any other behaviour sets up for it.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) per_ip: PerIp,
    pub(crate) blocked: allow_block_list::Behaviour<BlockedPeers>,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) dcutr: Toggle<dcutr::Behaviour>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) rr: request_response::Behaviour<RawCodec>,
}

pub(crate) fn build_swarm(config: &P2pConfig) -> Result<Swarm<Behaviour>, P2pError> {
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
                limits: config.connection_limits.totals(),
                per_ip: PerIp::new(config.connection_limits.max_per_ip),
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
