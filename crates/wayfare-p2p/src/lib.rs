//! Wayfare's peer-to-peer layer on libp2p: signed announcements (gossipsub), discovery
//! (Kademlia), negotiation and session messages (request-response) and relays (circuit relay
//! v2, dcutr).
//!
//! ```text
//!  seller node                        relay                          buyer node
//!  P2pHandle::publish(Announcement) ─▶ gossipsub ─▶ validate (size, expiry, origin,
//!                                                   signer == Registry::signer_of(seller))
//!                                                   ─▶ P2pEvent::Announcement ─▶ OfferBook
//!  P2pEvent::Request{QuoteRequest} ◀── /p2p-circuit ◀── P2pHandle::request(seller, QuoteRequest)
//!  Responder::respond(Quote) ────────▶ ─────────────▶ Ok(Some(Quote))
//! ```
//!
//! Request-response carries `wayfare_proto::Message::encode()` bytes (one message per stream,
//! capped at 64 KiB); the answer is a message or an empty acknowledgement. A malformed request
//! gets a `Refusal(BadRequest)` and a strike against its sender; invalid announcements are
//! rejected in gossipsub validation (peer score penalty); floods are rate limited per peer.
//! Requests reach the application in two queues ([`P2pEvents`]): session messages, taken first,
//! and new-session requests; a full queue answers "busy" at once, never silently. Incoming
//! connections are capped in total, in handshake, per peer and per IP ([`ConnectionLimits`]).
//! With [`Advertise::Relay`] a node tells others only relay circuit addresses.

mod announce;
mod codec;
mod config;
mod events;
mod handle;
mod keyfile;
mod limits;
mod node;
mod offers;
mod queues;
mod ratelimit;
mod registry;
mod swarm;

pub use announce::{
    AnnouncementError, MAX_ANNOUNCEMENT_BYTES, check_signature, precheck, sign_announcement,
};
pub use codec::{REQUEST_PROTOCOL, RawCodec};
pub use config::{Advertise, P2pConfig, RelayServerConfig};
pub use events::{InboundRequest, P2pEvent, Responder};
pub use handle::{P2pError, P2pHandle};
pub use keyfile::{KeyFileError, load_or_create_keypair};
pub use libp2p::{Multiaddr, PeerId, identity::Keypair};
pub use limits::{ConnectionLimits, PerIp, PerIpExceeded, ip_key};
pub use node::{ANNOUNCEMENT_TOPIC, IDENTIFY_VERSION, KAD_PROTOCOL, P2pNode};
pub use offers::{CheapestFirst, OfferBook, OfferFilter, Ranker};
pub use queues::{
    BUSY_DETAIL, P2pEvents, P2pStats, QueueSizes, RequestClass, busy_refusal, classify,
};
pub use ratelimit::RateLimiter;
pub use registry::{MemoryRegistry, Registry, RegistryError, SignerCache};
