//! The [`P2pHandle`] the application drives the node with, the commands it sends the node's
//! task, and [`P2pError`].

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use wayfare_proto::codec::DecodeError;
use wayfare_proto::messages::{Announcement, Message};

use crate::queues::P2pStats;

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

pub(crate) type Reply<T> = oneshot::Sender<T>;

#[derive(Debug)]
pub(crate) enum Command {
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
    ClosestPeers {
        peer: PeerId,
        reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>,
    },
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
}

/// A cloneable handle on a running node. The node stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct P2pHandle {
    pub(crate) peer_id: PeerId,
    pub(crate) cmd: mpsc::UnboundedSender<Command>,
    pub(crate) stats: Arc<P2pStats>,
    pub(crate) _stop: Arc<oneshot::Sender<()>>,
}

impl P2pHandle {
    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's counters: requests refused as busy and events dropped (by class), incoming
    /// connections denied (by limit). Shared, read without asking the node's task.
    pub fn stats(&self) -> Arc<P2pStats> {
        self.stats.clone()
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

    /// A Kademlia walk towards `peer`: the peers closest to it and the addresses the DHT gives
    /// for them (what any stranger can learn about `peer` from the DHT).
    pub async fn closest_peers(
        &self,
        peer: PeerId,
    ) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, P2pError> {
        self.ask(|reply| Command::ClosestPeers { peer, reply })
            .await
    }

    /// The gossipsub score of `peer` (negative once penalised).
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, P2pError> {
        self.ask(|reply| Command::PeerScore { peer, reply }).await
    }
}
