//! Every peer message is judged here: which role it goes to, and, when a role refuses it, the
//! typed refusal the peer gets, the counter it bumps and the one log line per peer it earns.
//!
//! Who may send what (the roles enforce it with the sessions' signature checks):
//! * a session is bound to the peer that opened it (its `QuoteRequest`, or the seller of the
//!   offer the buyer took);
//! * from any other peer only a message signed by the session's party and new to it is taken (a
//!   voucher above the best held, a `Resume`, a `CloseRequest`, a seller's `Usage`,
//!   `CloseRequest` or `CloseConsent`), and the session is then re-bound to that peer: a buyer
//!   that reconnects under a new peer id proves itself by its signature, not by its transport;
//! * anything else from a stranger changes nothing and is refused.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use alloy_primitives::B256;
use wayfare_p2p::PeerId;
use wayfare_proto::messages::{Message, Refusal, RefusalReason};
use wayfare_proto::session::SessionError;

/// Why a message was refused (one counter each in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// From a peer that is not the session's, and proving nothing.
    NotYourSession,
    /// A signature that does not verify against the session's party.
    BadSignature,
    /// An old message again (voucher, resume, pause, consent): nothing changed.
    Replayed,
    /// No session for the channel it names.
    UnknownSession,
    /// Too many sessions waiting for a channel (from the peer, or in total).
    TooManyPending,
    /// Not a message this node takes (wrong role, wrong phase, inconsistent).
    BadRequest,
}

impl RefusalKind {
    /// Every kind, in metric order.
    pub const ALL: [Self; 6] = [
        Self::NotYourSession,
        Self::BadSignature,
        Self::Replayed,
        Self::UnknownSession,
        Self::TooManyPending,
        Self::BadRequest,
    ];

    /// The `reason` label of `wayfare_messages_refused_total`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotYourSession => "not_your_session",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed",
            Self::UnknownSession => "unknown_session",
            Self::TooManyPending => "too_many_pending",
            Self::BadRequest => "bad_request",
        }
    }

    /// The refusal code on the wire.
    pub const fn reason(self) -> RefusalReason {
        match self {
            Self::NotYourSession | Self::UnknownSession => RefusalReason::NotYourSession,
            Self::BadSignature => RefusalReason::BadSignature,
            Self::Replayed => RefusalReason::Replayed,
            Self::TooManyPending => RefusalReason::TooManyPending,
            Self::BadRequest => RefusalReason::BadRequest,
        }
    }

    /// How a session's own refusal of a message is told to the peer.
    pub fn of_session_error(e: &SessionError) -> Self {
        match e {
            SessionError::Signature(_) => Self::BadSignature,
            SessionError::StaleVoucher { .. }
            | SessionError::StaleRun { .. }
            | SessionError::Replayed { .. } => Self::Replayed,
            SessionError::WrongChannel { .. } => Self::UnknownSession,
            _ => Self::BadRequest,
        }
    }
}

/// A refused message: what to tell the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub kind: RefusalKind,
    /// One line for the peer (and the log).
    pub detail: String,
}

impl Refused {
    /// A refusal of `kind` with `detail`.
    pub fn new(kind: RefusalKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// No session for `channel`.
    pub fn unknown(channel: B256) -> Self {
        Self::new(
            RefusalKind::UnknownSession,
            format!("no session for channel {channel}"),
        )
    }

    /// The refusal message sent back.
    pub fn message(&self) -> Message {
        Message::Refusal(Refusal {
            reason: self.kind.reason(),
            detail: self
                .detail
                .chars()
                .take(wayfare_proto::messages::MAX_DETAIL_LEN / 4)
                .collect(),
        })
    }
}

/// Which role takes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The seller role.
    Seller,
    /// The buyer role.
    Buyer,
}

/// The role a message goes to. A `CloseRequest` goes to whichever role holds its channel (the
/// seller's cut reaches the buyer; a buyer's close reaches the seller).
pub fn route(
    message: &Message,
    seller_has: impl Fn(B256) -> bool,
    buyer_has: impl Fn(B256) -> bool,
) -> Result<Route, Refused> {
    match message {
        Message::QuoteRequest(_)
        | Message::Opened(_)
        | Message::Resume(_)
        | Message::Voucher(_) => Ok(Route::Seller),
        Message::Reveal(_)
        | Message::Usage(_)
        | Message::CloseConsent(_)
        | Message::Quote(_)
        | Message::Refusal(_) => Ok(Route::Buyer),
        Message::CloseRequest(c) if seller_has(c.channel_id) => Ok(Route::Seller),
        Message::CloseRequest(c) if buyer_has(c.channel_id) => Ok(Route::Buyer),
        Message::CloseRequest(c) => Err(Refused::unknown(c.channel_id)),
        Message::Announcement(_) => Err(Refused::new(
            RefusalKind::BadRequest,
            "announcements go on the gossip topic",
        )),
    }
}

/// Most peers remembered as already logged; past it the memory starts over (a peer is then
/// logged once more), so a flood of fresh peer ids can't grow it.
const LOGGED_PEERS: usize = 4096;

/// Counts refusals and logs each peer's first one only.
#[derive(Debug, Default)]
pub struct RefusalLog {
    counts: [AtomicU64; RefusalKind::ALL.len()],
    logged: std::sync::Mutex<BTreeSet<PeerId>>,
}

impl RefusalLog {
    /// Records a refusal of `peer`'s `message`.
    pub fn record(&self, peer: &PeerId, message: &'static str, refused: &Refused) {
        let i = RefusalKind::ALL
            .iter()
            .position(|k| *k == refused.kind)
            .unwrap_or(RefusalKind::ALL.len() - 1);
        self.counts[i].fetch_add(1, Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.len() >= LOGGED_PEERS {
            logged.clear();
        }
        if logged.insert(*peer) {
            tracing::warn!(%peer, message, reason = refused.kind.label(), detail = %refused.detail,
                "refused a peer's message (further refusals of this peer are counted, not logged)");
        }
    }

    /// How many refusals of `kind` so far.
    pub fn count(&self, kind: RefusalKind) -> u64 {
        RefusalKind::ALL
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.counts[i].load(Relaxed))
    }

    /// The Prometheus lines of `wayfare_messages_refused_total{reason=…}`.
    pub fn render(&self) -> String {
        let name = "wayfare_messages_refused_total";
        let mut out =
            format!("# HELP {name} Peer messages refused, by reason\n# TYPE {name} counter\n");
        for k in RefusalKind::ALL {
            out.push_str(&format!(
                "{name}{{reason=\"{}\"}} {}\n",
                k.label(),
                self.count(k)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;
    use wayfare_proto::messages::{CloseReason, CloseRequest, SignedVoucher};

    #[test]
    fn a_close_request_goes_to_the_role_that_holds_its_channel() {
        let ours = B256::repeat_byte(1);
        let theirs = B256::repeat_byte(2);
        let close = |c| {
            Message::CloseRequest(CloseRequest {
                channel_id: c,
                run: 0,
                reason: CloseReason::PaymentProblem,
                signature: [27; 65],
            })
        };
        let seller_has = |c| c == ours;
        let buyer_has = |c| c == theirs;
        assert_eq!(
            route(&close(ours), seller_has, buyer_has),
            Ok(Route::Seller)
        );
        assert_eq!(
            route(&close(theirs), seller_has, buyer_has),
            Ok(Route::Buyer)
        );
        let none = route(&close(B256::ZERO), seller_has, buyer_has).unwrap_err();
        assert_eq!(none.kind, RefusalKind::UnknownSession);
        let v = Message::Voucher(SignedVoucher {
            channel_id: theirs,
            amount: U256::ZERO,
            signature: [27; 65],
        });
        assert_eq!(route(&v, seller_has, buyer_has), Ok(Route::Seller));
    }

    #[test]
    fn refusals_are_counted_every_time_and_logged_once_per_peer() {
        let log = RefusalLog::default();
        let peer = PeerId::random();
        let r = Refused::new(RefusalKind::BadSignature, "bad");
        for _ in 0..5 {
            log.record(&peer, "Usage", &r);
        }
        assert_eq!(log.count(RefusalKind::BadSignature), 5);
        assert_eq!(log.logged.lock().unwrap().len(), 1);
        assert!(
            log.render()
                .contains("wayfare_messages_refused_total{reason=\"bad_signature\"} 5")
        );
        // A flood of fresh peer ids never grows the memory past its bound.
        for _ in 0..(LOGGED_PEERS + 10) {
            log.record(&PeerId::random(), "QuoteRequest", &r);
        }
        assert!(log.logged.lock().unwrap().len() <= LOGGED_PEERS);
    }
}
