//! Every message of the off-chain protocol (see `shared/design/protocol.md`).
//!
//! The byte format lives in [`crate::codec`]; `Message::encode` / `Message::decode` are the
//! entry points.

use std::net::{IpAddr, SocketAddr};

use alloy_primitives::{Address, B256, U256};

use crate::eip712::Offer;
use crate::types::{Service, ServiceSet, Terms};

/// A 65-byte `r ‖ s ‖ v` secp256k1 signature, `v` in {27, 28}.
pub type SignatureBytes = [u8; 65];

/// Longest libp2p peer id accepted (multihash bytes).
pub const MAX_PEER_ID_LEN: usize = 64;
/// Longest region string (UTF-8 bytes).
pub const MAX_REGION_LEN: usize = 64;
/// Longest refusal detail (UTF-8 bytes).
pub const MAX_DETAIL_LEN: usize = 256;
/// Longest sealed reveal ciphertext (bytes, tag included).
pub const MAX_SEALED_LEN: usize = 4096;
/// Most address ranges an announcement's exit policy lists.
pub const MAX_EXIT_RANGES: usize = 16;
/// HPKE ChaCha20Poly1305 tag length: the shortest possible ciphertext.
pub const AEAD_TAG_LEN: usize = 16;

/// Seller → gossip topic: an offer template, signed by the seller's signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The seller's registered account.
    pub seller: Address,
    /// The seller's libp2p peer id (multihash bytes, 1..=64).
    pub peer_id: Vec<u8>,
    /// Services offered (never empty).
    pub services: ServiceSet,
    /// List terms.
    pub terms: Terms,
    /// Free-form region, e.g. `eu-west` (≤ 64 bytes of UTF-8).
    pub region: String,
    /// Advertised capacity in bits per second.
    pub capacity_bps: u64,
    /// The exit policy: ranges the exit opens beyond the public internet (`[seller]
    /// exit_allow`; at most [`MAX_EXIT_RANGES`]). Empty: the public internet only — private,
    /// loopback, link-local, CGNAT, benchmark, NAT64, 6to4 and other internal destinations
    /// (and the seller's own addresses, always) are refused.
    pub exit_allow: Vec<IpRange>,
    /// Unix seconds after which the announcement is stale.
    pub valid_until: u64,
    /// EIP-712 signature by the seller's signer over
    /// [`announcement_digest`](crate::eip712::announcement_digest).
    pub signature: SignatureBytes,
}

/// Buyer → seller: asks for a signed offer, optionally proposing its own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRequest {
    /// The buyer's account (the only one that may open with the offer).
    pub buyer: Address,
    /// Service wanted.
    pub service: Service,
    /// Terms the buyer proposes (a counter-offer); `None` takes the list terms.
    pub wanted: Option<Terms>,
    /// The buyer's fresh X25519 public key, to seal the reveal to.
    pub buyer_key: [u8; 32],
    /// The buyer's WireGuard public key: present if and only if `service` is WireGuard.
    pub wireguard_key: Option<[u8; 32]>,
}

/// Seller → buyer: a signed offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The offer, exactly as the contract's `open` takes it.
    pub offer: Offer,
    /// The seller signer's EIP-712 signature over the offer.
    pub signature: SignatureBytes,
}

/// Why a seller declined a quote request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefusalReason {
    /// The service asked for is not offered.
    ServiceNotOffered = 1,
    /// The seller is at capacity.
    AtCapacity = 2,
    /// The proposed terms are outside what the seller accepts and it won't counter.
    TermsRejected = 3,
    /// The request was malformed or inconsistent.
    BadRequest = 4,
    /// The seller is not taking buyers now.
    Unavailable = 5,
    /// The message names a session the sending peer is not a party to (or proved nothing).
    NotYourSession = 6,
    /// A signature on the message did not verify against the party's key.
    BadSignature = 7,
    /// An old message again (a replayed voucher, resume, pause or consent): nothing changed.
    Replayed = 8,
    /// Too many sessions are waiting for a channel (from this peer, or in total): try later.
    TooManyPending = 9,
}

impl RefusalReason {
    /// Parses a wire code.
    pub const fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::ServiceNotOffered,
            2 => Self::AtCapacity,
            3 => Self::TermsRejected,
            4 => Self::BadRequest,
            5 => Self::Unavailable,
            6 => Self::NotYourSession,
            7 => Self::BadSignature,
            8 => Self::Replayed,
            9 => Self::TooManyPending,
            _ => return None,
        })
    }
}

/// Seller → buyer: no offer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason.
    pub reason: RefusalReason,
    /// Human-readable detail (≤ 256 bytes of UTF-8).
    pub detail: String,
}

/// Buyer → seller: the channel is open on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The channel id (`keccak256(abi.encode(chainid, market, seller, nonce))`).
    pub channel_id: B256,
    /// Hash of the `open` transaction.
    pub tx_hash: B256,
}

/// An HPKE-sealed [`RevealPayload`](crate::seal::RevealPayload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedReveal {
    /// The sender's ephemeral X25519 public key (HPKE `enc`).
    pub encapped_key: [u8; 32],
    /// ChaCha20Poly1305 ciphertext with its tag (16..=4096 bytes).
    pub ciphertext: Vec<u8>,
}

/// Seller → buyer: endpoint and credentials, sealed to the buyer's X25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reveal {
    /// The channel this reveal is for (also bound as HPKE associated data).
    pub channel_id: B256,
    /// The sealed payload.
    pub sealed: SealedReveal,
}

/// Buyer → seller: a cumulative payment, EIP-712 `Voucher` signed by the channel's voucher signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedVoucher {
    /// The channel.
    pub channel_id: B256,
    /// Cumulative amount in wei.
    pub amount: U256,
    /// The voucher signer's signature.
    pub signature: SignatureBytes,
}

/// Seller → buyer: the seller's own meter, and the best voucher amount it holds (an ack).
/// Signed by the seller's registered signer over
/// [`usage_digest`](crate::eip712::usage_digest), so nobody else can make the buyer believe the
/// seller over-metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The channel.
    pub channel_id: B256,
    /// The channel's service run this report belongs to (0 for the first, +1 per [`Resume`]).
    pub run: u32,
    /// Bytes the seller counted, both directions.
    pub bytes: u64,
    /// Seconds of session the seller counted.
    pub seconds: u64,
    /// The best voucher amount the seller holds.
    pub paid: U256,
    /// The seller signer's signature.
    pub signature: SignatureBytes,
}

/// Why a side asks to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The buyer is done.
    BuyerDone = 1,
    /// The deposit is used up.
    DepositExhausted = 2,
    /// The meters disagree beyond tolerance.
    MeterMismatch = 3,
    /// A payment was missing or short.
    PaymentProblem = 4,
    /// The seller is shutting down.
    SellerShutdown = 5,
    /// The buyer pauses: stop serving but keep the channel open for a later [`Resume`]. The
    /// seller answers with a [`Usage`] (no close consent) and settles on its own only after its
    /// `pause_timeout`.
    Pause = 6,
}

impl CloseReason {
    /// Parses a wire code.
    pub const fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::BuyerDone,
            2 => Self::DepositExhausted,
            3 => Self::MeterMismatch,
            4 => Self::PaymentProblem,
            5 => Self::SellerShutdown,
            6 => Self::Pause,
            _ => return None,
        })
    }
}

/// Either side: please close the channel (or, from the buyer, pause it). Signed over
/// [`close_request_digest`](crate::eip712::close_request_digest): by the channel's voucher signer
/// when the buyer sends it, by the seller's registered signer when the seller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    /// The channel.
    pub channel_id: B256,
    /// The service run it ends (0 for the first, +1 per [`Resume`]): a request of an earlier run
    /// is stale and changes nothing.
    pub run: u32,
    /// Why.
    pub reason: CloseReason,
    /// The sender's signature.
    pub signature: SignatureBytes,
}

/// Seller → buyer: the seller signer's EIP-712 `CloseConsent` for an amount, usable with the
/// buyer's voucher for the same amount in `cooperativeClose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedCloseConsent {
    /// The channel.
    pub channel_id: B256,
    /// The amount the seller consents to close on.
    pub amount: U256,
    /// The seller signer's signature.
    pub signature: SignatureBytes,
}

/// Buyer → seller: resume a paused channel with fresh keys (no chain transaction). Signed by the
/// channel's voucher signer over [`resume_digest`](crate::eip712::resume_digest), so only the
/// channel's buyer can redirect its reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The paused channel.
    pub channel_id: B256,
    /// The run this resume starts: the paused run + 1 (an older resume is a replay).
    pub run: u32,
    /// The buyer's fresh X25519 public key, to seal the new reveal to.
    pub buyer_key: [u8; 32],
    /// The buyer's WireGuard public key for the new run: present if and only if the channel's
    /// service is WireGuard (the seller checks; the codec can't know the service).
    pub wireguard_key: Option<[u8; 32]>,
    /// The voucher signer's signature.
    pub signature: SignatureBytes,
}

/// Any protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Announcement`].
    Announcement(Announcement),
    /// See [`QuoteRequest`].
    QuoteRequest(QuoteRequest),
    /// See [`Quote`].
    Quote(Quote),
    /// See [`Refusal`].
    Refusal(Refusal),
    /// See [`Opened`].
    Opened(Opened),
    /// See [`Reveal`].
    Reveal(Reveal),
    /// See [`SignedVoucher`].
    Voucher(SignedVoucher),
    /// See [`Usage`].
    Usage(Usage),
    /// See [`CloseRequest`].
    CloseRequest(CloseRequest),
    /// See [`SignedCloseConsent`].
    CloseConsent(SignedCloseConsent),
    /// See [`Resume`].
    Resume(Resume),
}

impl Message {
    /// A short name, for logs.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Announcement(_) => "Announcement",
            Self::QuoteRequest(_) => "QuoteRequest",
            Self::Quote(_) => "Quote",
            Self::Refusal(_) => "Refusal",
            Self::Opened(_) => "Opened",
            Self::Reveal(_) => "Reveal",
            Self::Voucher(_) => "Voucher",
            Self::Usage(_) => "Usage",
            Self::CloseRequest(_) => "CloseRequest",
            Self::CloseConsent(_) => "CloseConsent",
            Self::Resume(_) => "Resume",
        }
    }
}

/// An address range, `addr/prefix` (the prefix fits the family; host bits may be set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    /// The range's address as written.
    pub addr: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix: u8,
}

impl IpRange {
    /// `addr/prefix`, or `None` when the prefix does not fit the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        (prefix <= if addr.is_ipv4() { 32 } else { 128 }).then_some(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where a WireGuard buyer's tunnel lives, as sealed in a reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelAddress {
    /// The buyer's address inside the tunnel.
    pub address: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix_len: u8,
}

/// A socket address, re-exported for the reveal payload.
pub type Endpoint = SocketAddr;
