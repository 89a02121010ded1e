//! What the node reports to the application: [`P2pEvent`]s, and inbound requests with the
//! [`Responder`] that answers them.

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use wayfare_proto::messages::{Announcement, Message};

use crate::announce::AnnouncementError;
use crate::handle::{Command, P2pError};

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

/// A peer's request, as the session and quote queues of [`crate::P2pEvents`] carry it.
#[derive(Debug)]
pub struct InboundRequest {
    /// The peer.
    pub peer: PeerId,
    /// The decoded message.
    pub message: Message,
    /// Where the answer goes (dropping it fails the request).
    pub responder: Responder,
}

impl From<InboundRequest> for P2pEvent {
    fn from(r: InboundRequest) -> Self {
        P2pEvent::Request {
            peer: r.peer,
            message: r.message,
            responder: r.responder,
        }
    }
}

/// Answers one inbound request: with a message, or with a bare acknowledgement.
#[derive(Debug)]
pub struct Responder {
    pub(crate) channel: ResponseChannel<Vec<u8>>,
    pub(crate) cmd: mpsc::UnboundedSender<Command>,
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
