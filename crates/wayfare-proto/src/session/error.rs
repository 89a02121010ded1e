//! Why a session refused an input. None of these change the session's state; the shell logs
//! them (and may drop a peer that keeps causing them).

use alloy_primitives::{B256, U256};
use thiserror::Error;

use crate::billing::BillingError;
use crate::codec::DecodeError;
use crate::eip712::VerifyError;
use crate::negotiation::OfferRejection;
use crate::seal::SealError;

/// An input a session did not act on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The bytes are not a valid message.
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    /// A message that has no place in this state (e.g. a voucher before the channel is open).
    #[error("{message} is not expected while the session is {state}: ignored")]
    Unexpected {
        /// The message or call.
        message: &'static str,
        /// The session's phase.
        state: &'static str,
    },
    /// The message names another channel.
    #[error(
        "message for channel {got}, this session is channel {expected}: route it to the right session"
    )]
    WrongChannel {
        /// This session's channel.
        expected: B256,
        /// The message's.
        got: B256,
    },
    /// A voucher at or below one already held (old, replayed or reordered): nothing changes.
    #[error("voucher for {amount} is below the best held ({best}): ignored")]
    StaleVoucher {
        /// Its amount.
        amount: U256,
        /// The best amount held.
        best: U256,
    },
    /// A message of another service run than the channel's current one (replayed, or reordered
    /// behind a `Resume`): nothing changes.
    #[error("{message} for run {got}, the channel is at run {current}: ignored as stale")]
    StaleRun {
        /// The message.
        message: &'static str,
        /// Its run.
        got: u32,
        /// The channel's current run.
        current: u32,
    },
    /// A genuine message that this session already acted on or never asked for (a seller's
    /// consent outside a close): nothing changes.
    #[error("{message} again, or unasked for: ignored as a replay")]
    Replayed {
        /// The message.
        message: &'static str,
    },
    /// A signature did not verify.
    #[error("bad signature: {0}")]
    Signature(#[from] VerifyError),
    /// The offer is outside the buyer's limits or malformed.
    #[error("offer rejected: {0}")]
    Offer(#[from] OfferRejection),
    /// Sealing or opening the reveal failed.
    #[error("reveal: {0}")]
    Seal(#[from] SealError),
    /// Billing arithmetic failed.
    #[error("billing: {0}")]
    Billing(#[from] BillingError),
    /// A request arrived that differs from the one already answered.
    #[error(
        "a different quote request arrived for a session that already answered one: start a new session for it"
    )]
    ConflictingRequest,
    /// A chain event's channel does not carry the offer's terms.
    #[error("channel {0} on chain does not carry the offered terms: not serving it")]
    TermsMismatch(B256),
}
