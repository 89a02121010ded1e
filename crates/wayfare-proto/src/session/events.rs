//! What the sessions ask their shells to do, and the chain facts shells feed in.

use alloy_primitives::{Address, B256, U256};

use crate::eip712::Offer;
use crate::messages::{SignatureBytes, SignedCloseConsent, SignedVoucher};
use crate::seal::RevealPayload;
use crate::session::snapshot::{BuyerSnapshot, SellerSnapshot};
use crate::types::{Service, Timestamp};

/// Why a session stopped (or never started) serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EndReason {
    /// No voucher arrived within interval + grace.
    MissingPayment = 1,
    /// A voucher was below the seller's meter minus tolerance and slack.
    ShortPayment = 2,
    /// Unpaid usage went past the seller's max debt.
    MaxDebt = 3,
    /// The deposit is used up (or nearly, with no top-up allowed).
    DepositExhausted = 4,
    /// The buyer asked to close.
    BuyerClosed = 5,
    /// The seller asked to close.
    SellerClosed = 6,
    /// The buyer started a unilateral close on chain.
    CloseStarted = 7,
    /// The channel closed on chain.
    ChannelClosed = 8,
    /// The seller's usage report exceeds the buyer's meter beyond tolerance.
    MeterMismatch = 9,
    /// The channel on chain does not carry the offer's terms.
    TermsMismatch = 10,
    /// The offer expired before a channel opened.
    OfferExpired = 11,
    /// No quote arrived in time.
    NoQuote = 12,
    /// The seller refused, or its offer was outside the buyer's limits.
    Refused = 13,
    /// No reveal arrived in time after the channel opened.
    NoReveal = 14,
    /// The buyer's user chose to leave.
    UserLeft = 15,
    /// The buyer paused: service stopped, the channel stays open for a later resume.
    Paused = 16,
    /// The seller held a paused channel for `pause_timeout` without a resume and settled it.
    PauseTimeout = 17,
    /// The buyer asked to resume a paused channel the seller no longer holds (it settled or
    /// forgot it): the buyer closes the channel on chain and a new connect opens a new one.
    ResumeRefused = 18,
}

impl EndReason {
    /// Parses a stored code.
    pub const fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::MissingPayment,
            2 => Self::ShortPayment,
            3 => Self::MaxDebt,
            4 => Self::DepositExhausted,
            5 => Self::BuyerClosed,
            6 => Self::SellerClosed,
            7 => Self::CloseStarted,
            8 => Self::ChannelClosed,
            9 => Self::MeterMismatch,
            10 => Self::TermsMismatch,
            11 => Self::OfferExpired,
            12 => Self::NoQuote,
            13 => Self::Refused,
            14 => Self::NoReveal,
            15 => Self::UserLeft,
            16 => Self::Paused,
            17 => Self::PauseTimeout,
            18 => Self::ResumeRefused,
            _ => return None,
        })
    }
}

/// A chain fact about one channel, as the shell's chain client saw it (with its confirmations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainEvent {
    /// `ChannelOpened`, plus the transaction hash and the channel's `voucherSigner` (read from
    /// the `channel(id)` view: the event does not carry it).
    ChannelOpened(ChannelOpened),
    /// `ToppedUp`: the channel's deposit is now `deposit`.
    ToppedUp {
        /// The channel.
        channel_id: B256,
        /// The new total deposit.
        deposit: U256,
    },
    /// `CloseStarted`.
    CloseStarted {
        /// The channel.
        channel_id: B256,
        /// Unix seconds when it can be finalized.
        closes_at: u64,
    },
    /// `ChannelClosed`.
    ChannelClosed {
        /// The channel.
        channel_id: B256,
        /// Wei credited to the seller.
        to_seller: U256,
        /// Wei credited to the buyer.
        to_buyer: U256,
    },
}

/// The `ChannelOpened` event's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOpened {
    /// The channel id.
    pub channel_id: B256,
    /// The seller account.
    pub seller: Address,
    /// The buyer account.
    pub buyer: Address,
    /// The service code.
    pub service: u8,
    /// X.
    pub price_per_mib: u128,
    /// Y.
    pub price_per_second: u128,
    /// Z.
    pub seller_burn: u128,
    /// W.
    pub buyer_burn: u128,
    /// The deposit.
    pub deposit: U256,
    /// The payment interval in seconds.
    pub payment_interval: u32,
    /// The channel's voucher signer.
    pub voucher_signer: Address,
    /// The `open` transaction hash.
    pub tx_hash: B256,
}

impl ChannelOpened {
    /// Whether the channel carries exactly the offer's terms (and at least its minimum deposit).
    pub fn matches(&self, offer: &Offer) -> bool {
        self.seller == offer.seller
            && self.buyer == offer.buyer
            && self.service == offer.service
            && self.price_per_mib == offer.pricePerMiB
            && self.price_per_second == offer.pricePerSecond
            && self.seller_burn == offer.sellerBurn
            && self.buyer_burn == offer.buyerBurn
            && self.payment_interval == offer.paymentInterval
            && self.deposit >= U256::from(offer.minDeposit)
            && self.voucher_signer != Address::ZERO
    }
}

/// What a seller session asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SellerEvent {
    /// Store this snapshot durably before polling anything else (it holds the best voucher).
    Persist(Box<SellerSnapshot>),
    /// The channel is open with the offer's terms: provision the buyer's access, then call
    /// [`SellerSession::reveal`](crate::session::SellerSession::reveal) (also emitted after a
    /// restore while serving, to bring the access back; no reveal is needed then; and after a
    /// `Resume`, with the buyer's new WireGuard key: provision that one, then `reveal`).
    StartService {
        /// The channel.
        channel_id: B256,
        /// The buyer account.
        buyer: Address,
        /// Which service to provision.
        service: Service,
        /// The buyer's WireGuard key, for WireGuard.
        wireguard_key: Option<[u8; 32]>,
        /// Whether the session waits for `reveal` (false after a restore).
        needs_reveal: bool,
    },
    /// Cut the buyer's access.
    StopService {
        /// The channel.
        channel_id: B256,
        /// Why.
        reason: EndReason,
    },
    /// Call `settle` with this voucher (the best one held).
    Settle {
        /// The voucher.
        voucher: SignedVoucher,
    },
    /// The buyer started a unilateral close: call `submitVoucher` with this voucher (the best one
    /// held) at once, before the challenge deadline; the close then pays out on `finalize`.
    SubmitVoucher {
        /// The voucher.
        voucher: SignedVoucher,
        /// Unix seconds from which the close can be finalized.
        closes_at: u64,
    },
    /// The session is over; drop it once the queues are drained.
    Ended {
        /// Why.
        reason: EndReason,
    },
}

/// How the buyer should close its channel when it leaves.
#[allow(clippy::large_enum_variant)] // a rare, short-lived event; boxing buys nothing
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// `cooperativeClose(id, amount, voucher.signature, consent.signature)`: closes at once.
    Cooperative {
        /// The buyer's final voucher.
        voucher: SignedVoucher,
        /// The seller's consent for the same amount.
        consent: SignedCloseConsent,
    },
    /// `startClose(id)`, then `finalize` after the challenge period.
    StartClose {
        /// The channel.
        channel_id: B256,
    },
    /// Nothing to do on chain (no channel, or it is already closed).
    Nothing,
}

/// What a buyer session asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyerEvent {
    /// Store this snapshot durably before polling anything else (it holds the last voucher).
    Persist(Box<BuyerSnapshot>),
    /// Open the channel: `open(offer, seller_signature, voucher_signer)` with `value` wei.
    OpenChannel {
        /// The signed offer.
        offer: Offer,
        /// The seller's signature.
        seller_signature: SignatureBytes,
        /// This channel's voucher signer.
        voucher_signer: Address,
        /// `msg.value`: buyer burn + deposit.
        value: U256,
    },
    /// Connect with these credentials.
    StartService {
        /// The channel.
        channel_id: B256,
        /// Endpoint and credentials.
        reveal: RevealPayload,
    },
    /// Disconnect.
    StopService {
        /// Why.
        reason: EndReason,
    },
    /// The session is paused: service stopped, the final voucher sent, the channel left open.
    /// The `Persist` before this event holds the paused snapshot: keep it. Keep driving the
    /// session until its `poll_timeout` is `None` (the pause was acknowledged, or gave up after
    /// `close_timeout`), then it may be dropped. To reconnect on the same channel call
    /// [`BuyerSession::resume`](crate::session::BuyerSession::resume) with that snapshot (it
    /// replaces this session); to close instead, `leave` (on this session or a restored one).
    Paused {
        /// The channel.
        channel_id: B256,
    },
    /// Add `amount` to the channel's deposit (`topUp`).
    TopUp {
        /// The channel.
        channel_id: B256,
        /// Wei to add.
        amount: U256,
    },
    /// The session is over; close the channel as told.
    Leave {
        /// Why.
        reason: EndReason,
        /// What to do on chain.
        close: CloseAction,
    },
}

/// Time the service started, for billing seconds.
pub(crate) fn billed_seconds(start: Option<Timestamp>, now: Timestamp) -> u64 {
    start.map_or(0, |s| now.saturating_since(s).as_secs())
}
