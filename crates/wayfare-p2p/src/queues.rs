//! What the p2p task hands the application, in three bounded queues by class, and the counters
//! of what did not fit.
//!
//! ```text
//!  request ─ rate limit ─ decode ─ classify ─┬─ Session    (Voucher, Usage, Close…) ─▶ sessions
//!                                            └─ NewSession (QuoteRequest…)          ─▶ quotes
//!  announcements, listening, identify, penalties ─────────────────────────────────▶ events
//! ```
//!
//! The application takes `sessions` before `quotes` (see `wayfare-node`'s `Node::run`), so a
//! flood of quote requests from fresh peer ids can't delay an open channel's voucher. A full
//! request queue never drops silently: the requester is answered at once with a `Refusal`
//! ("busy: retry later": no signature, no state), and the refusal is counted by class. A full
//! event queue drops the event, counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc::{
    self,
    error::{TryRecvError, TrySendError},
};
use tracing::warn;
use wayfare_proto::messages::{Message, Refusal, RefusalReason};

use crate::events::{InboundRequest, P2pEvent};

/// The detail of the refusal a requester gets when its queue is full.
pub const BUSY_DETAIL: &str = "busy: retry later";

/// Which queue a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// About a session that exists (quoted or open): served first.
    Session,
    /// Asks for new state for whoever sends it (a quote costs the seller a signature), or is
    /// never a valid request: served after sessions, refused first when busy.
    NewSession,
}

impl RequestClass {
    /// The `class` label in metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::NewSession => "quote",
        }
    }
}

/// The class of a request, from its message. Every variant is listed: a new message must be
/// classified here before it compiles.
pub const fn classify(message: &Message) -> RequestClass {
    match message {
        Message::Opened(_)
        | Message::Reveal(_)
        | Message::Voucher(_)
        | Message::Usage(_)
        | Message::CloseRequest(_)
        | Message::CloseConsent(_)
        | Message::Resume(_) => RequestClass::Session,
        Message::QuoteRequest(_) => RequestClass::NewSession,
        // Answers and gossip, never valid requests: refused by the application, so they wait
        // behind sessions with the strangers.
        Message::Quote(_) | Message::Refusal(_) | Message::Announcement(_) => {
            RequestClass::NewSession
        }
    }
}

/// How much each queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSizes {
    /// Session requests (generous: a full queue means refusing a paying buyer's message).
    pub sessions: usize,
    /// New-session requests (each costs a signature: a short queue answers "busy" early).
    pub quotes: usize,
    /// Announcements and the other events (dropped, counted, when full).
    pub events: usize,
}

impl Default for QueueSizes {
    fn default() -> Self {
        Self {
            sessions: 4096,
            quotes: 256,
            events: 1024,
        }
    }
}

/// Counters of the node's queues and connection limits (shared with [`crate::P2pHandle`]).
#[derive(Debug, Default)]
pub struct P2pStats {
    busy_sessions: AtomicU64,
    busy_quotes: AtomicU64,
    dropped_events: AtomicU64,
    denied_per_ip: AtomicU64,
    denied_other: AtomicU64,
    malformed: AtomicU64,
    rate_limited: AtomicU64,
    peers: AtomicU64,
}

impl P2pStats {
    /// Peers connected now.
    pub fn peers(&self) -> u64 {
        self.peers.load(Relaxed)
    }

    pub(crate) fn set_peers(&self, n: usize) {
        self.peers.store(n as u64, Relaxed);
    }

    /// What did not reach the application, by class: session and quote requests refused as
    /// busy, events dropped. Labels `session`, `quote`, `event`.
    pub fn dropped(&self) -> [(&'static str, u64); 3] {
        [
            ("session", self.busy_sessions.load(Relaxed)),
            ("quote", self.busy_quotes.load(Relaxed)),
            ("event", self.dropped_events.load(Relaxed)),
        ]
    }

    /// Inbound connections denied, by limit: `per_ip`, and `limits` (total, pending, per peer).
    pub fn connections_denied(&self) -> [(&'static str, u64); 2] {
        [
            ("per_ip", self.denied_per_ip.load(Relaxed)),
            ("limits", self.denied_other.load(Relaxed)),
        ]
    }

    /// Requests the p2p layer refused before the application saw them, by reason: `malformed`
    /// (not a Wayfare message, or an announcement sent as a request) and `rate_limited`.
    pub fn requests_refused(&self) -> [(&'static str, u64); 2] {
        [
            ("malformed", self.malformed.load(Relaxed)),
            ("rate_limited", self.rate_limited.load(Relaxed)),
        ]
    }

    pub(crate) fn count_refused(&self, malformed: bool) {
        let c = if malformed {
            &self.malformed
        } else {
            &self.rate_limited
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_denied(&self, per_ip: bool) {
        let c = if per_ip {
            &self.denied_per_ip
        } else {
            &self.denied_other
        };
        c.fetch_add(1, Relaxed);
    }
}

/// The receiving ends: what the application drains.
#[derive(Debug)]
pub struct P2pEvents {
    /// Requests about existing sessions ([`RequestClass::Session`]): take these first.
    pub sessions: mpsc::Receiver<InboundRequest>,
    /// Requests for new sessions ([`RequestClass::NewSession`]).
    pub quotes: mpsc::Receiver<InboundRequest>,
    /// Everything else: announcements, listen addresses, identify, penalties.
    pub events: mpsc::Receiver<P2pEvent>,
}

impl P2pEvents {
    /// The next event of any queue, sessions first, then quotes, then the rest (requests come
    /// as [`P2pEvent::Request`]); `None` once the node stopped. For tests and simple consumers.
    pub async fn recv(&mut self) -> Option<P2pEvent> {
        tokio::select! {
            biased;
            Some(r) = self.sessions.recv() => Some(r.into()),
            Some(r) = self.quotes.recv() => Some(r.into()),
            Some(e) = self.events.recv() => Some(e),
            else => None,
        }
    }

    /// Like [`Self::recv`] without waiting: `Empty` when nothing is queued, `Disconnected` once
    /// the node stopped and every queue is drained.
    pub fn try_recv(&mut self) -> Result<P2pEvent, TryRecvError> {
        let mut open = false;
        for q in [&mut self.sessions, &mut self.quotes] {
            match q.try_recv() {
                Ok(r) => return Ok(r.into()),
                Err(TryRecvError::Empty) => open = true,
                Err(TryRecvError::Disconnected) => {}
            }
        }
        match self.events.try_recv() {
            Err(TryRecvError::Disconnected) if open => Err(TryRecvError::Empty),
            r => r,
        }
    }

    /// Whether the node has stopped (its sending ends are gone).
    pub fn is_closed(&self) -> bool {
        self.sessions.is_closed() && self.quotes.is_closed() && self.events.is_closed()
    }
}

/// A request its queue had no room for: answer it with [`Busy::refusal`].
#[derive(Debug)]
pub(crate) struct Busy {
    pub(crate) channel: ResponseChannel<Vec<u8>>,
    pub(crate) class: RequestClass,
}

impl Busy {
    /// The encoded refusal to answer with.
    pub(crate) fn refusal(&self) -> Vec<u8> {
        busy_refusal(self.class)
    }
}

/// The refusal of a request its queue had no room for (a new session: too many pending; a
/// session: unavailable), detail [`BUSY_DETAIL`].
pub fn busy_refusal(class: RequestClass) -> Vec<u8> {
    let reason = match class {
        RequestClass::Session => RefusalReason::Unavailable,
        RequestClass::NewSession => RefusalReason::TooManyPending,
    };
    Message::Refusal(Refusal {
        reason,
        detail: BUSY_DETAIL.into(),
    })
    .encode()
}

/// The sending ends, owned by the node's task.
#[derive(Debug)]
pub(crate) struct Queues {
    sessions: mpsc::Sender<InboundRequest>,
    quotes: mpsc::Sender<InboundRequest>,
    events: mpsc::Sender<P2pEvent>,
    stats: Arc<P2pStats>,
}

impl Queues {
    pub(crate) fn new(sizes: QueueSizes, stats: Arc<P2pStats>) -> (Self, P2pEvents) {
        let (s_tx, s_rx) = mpsc::channel(sizes.sessions.max(1));
        let (q_tx, q_rx) = mpsc::channel(sizes.quotes.max(1));
        let (e_tx, e_rx) = mpsc::channel(sizes.events.max(1));
        let queues = Self {
            sessions: s_tx,
            quotes: q_tx,
            events: e_tx,
            stats,
        };
        let events = P2pEvents {
            sessions: s_rx,
            quotes: q_rx,
            events: e_rx,
        };
        (queues, events)
    }

    /// Hands `req` to the application, or gives its channel back (counted) when its queue is
    /// full. A request whose queue is closed (the application is gone) is dropped.
    pub(crate) fn request(&self, req: InboundRequest) -> Result<(), Busy> {
        let class = classify(&req.message);
        let (queue, counter) = match class {
            RequestClass::Session => (&self.sessions, &self.stats.busy_sessions),
            RequestClass::NewSession => (&self.quotes, &self.stats.busy_quotes),
        };
        match queue.try_send(req) {
            Ok(()) | Err(TrySendError::Closed(_)) => Ok(()),
            Err(TrySendError::Full(req)) => {
                let n = counter.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        class = class.label(),
                        refused = n,
                        "p2p request queue full: the application is behind; answering busy"
                    );
                }
                Err(Busy {
                    channel: req.responder.channel,
                    class,
                })
            }
        }
    }

    /// Hands `ev` to the application, or drops it (counted) when the queue is full.
    pub(crate) fn event(&self, ev: P2pEvent) {
        if let Err(TrySendError::Full(_)) = self.events.try_send(ev) {
            let n = self.stats.dropped_events.fetch_add(1, Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(
                    dropped = n,
                    "p2p event queue full: the application is not draining events; event dropped"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_requests_wait_behind_sessions_and_busy_is_a_typed_refusal() {
        let refusal = Message::Refusal(Refusal {
            reason: RefusalReason::BadRequest,
            detail: String::new(),
        });
        assert_eq!(classify(&refusal), RequestClass::NewSession);
        let Ok(Message::Refusal(r)) = Message::decode(&busy_refusal(RequestClass::NewSession))
        else {
            panic!("busy is a refusal");
        };
        assert_eq!(r.reason, RefusalReason::TooManyPending);
        assert_eq!(r.detail, BUSY_DETAIL);
    }
}
