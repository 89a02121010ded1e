//! A buyer's quote request: refused below `[seller] min_buyer_score` or past the caps on
//! sessions that wait for their channel (per peer and in all), else a new quoted session.

use alloy_primitives::Address;
use wayfare_p2p::PeerId;
use wayfare_proto::{
    messages::{QuoteRequest, Refusal, RefusalReason},
    session::SellerSession,
};

use super::{Entry, SellerRole};
use crate::{
    inbound::{RefusalKind, Refused},
    node::{Shared, new_session_id, unix_now},
};

/// Most quoted sessions (waiting for their channel) one peer may hold.
pub const MAX_PENDING_PER_PEER: usize = 4;
/// Most quoted sessions in all: past it new quote requests are refused until some expire.
pub const MAX_PENDING_TOTAL: usize = 256;

impl SellerRole {
    /// The refusal of every quote while buyers can't reach this seller (a buyer holding an
    /// old announcement must not open a channel to it).
    pub(super) fn unreachable_refusal(&self) -> Option<Refusal> {
        (!self.reach.reachable).then(|| Refusal {
            reason: RefusalReason::Unavailable,
            detail: "this seller can't be reached from the internet now (its `wayfare seller status` says why)".into(),
        })
    }

    /// The refusal for a buyer under `[seller] min_buyer_score`, if it is.
    pub(super) fn below_min_score(
        &self,
        ledger: &crate::reputation::Ledger,
        buyer: &Address,
    ) -> Option<Refusal> {
        if self.cfg.min_buyer_score <= 0.0 {
            return None;
        }
        let score = ledger.buyer_score(buyer, &crate::reputation::ScoreParams::default());
        tracing::debug!(%buyer, score, stats = ?ledger.buyer_stats(buyer), events = ledger.len(), "buyer score");
        if score >= self.cfg.min_buyer_score {
            return None;
        }
        tracing::info!(%buyer, score, min = self.cfg.min_buyer_score, "buyer refused: score below the minimum");
        Some(Refusal {
            reason: RefusalReason::Unavailable,
            detail: format!(
                "buyer score {score:.3} is below this seller's minimum {:.3}",
                self.cfg.min_buyer_score
            ),
        })
    }

    /// Refuses a new quote when too many sessions wait for a channel, from `peer` or in all.
    pub(super) fn check_pending(&self, peer: &PeerId) -> Result<(), Refused> {
        let pending = self.sessions.values().filter(|e| !e.session.is_open());
        let (mut total, mut ours) = (0usize, 0usize);
        for e in pending {
            total += 1;
            ours += usize::from(e.peer == *peer);
        }
        if ours >= MAX_PENDING_PER_PEER {
            return Err(Refused::new(
                RefusalKind::TooManyPending,
                format!("{ours} quotes of yours wait for a channel: open one or let them expire"),
            ));
        }
        if total >= MAX_PENDING_TOTAL {
            return Err(Refused::new(
                RefusalKind::TooManyPending,
                "this seller has too many quotes waiting for a channel: try again in a few minutes",
            ));
        }
        Ok(())
    }

    /// A new session for `peer`'s quote request (in memory only: a quote costs no disk write).
    pub(super) fn new_quoted_session(
        &mut self,
        shared: &mut Shared,
        peer: PeerId,
        req: &QuoteRequest,
    ) -> String {
        let id = new_session_id();
        let session = SellerSession::new(self.params(shared), self.session_cfg.clone());
        let out = shared.spawn_sender(peer, id.clone());
        self.sessions.insert(
            id.clone(),
            Entry::new(session, peer, req.buyer, req.service, out, unix_now()),
        );
        id
    }
}
