//! The REST API's request and response bodies (JSON). The CLI uses the same types, so the
//! two never drift apart. Amounts are decimal strings of wei.

use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Program version.
    pub version: String,
    /// `seller`, `buyer` or both.
    pub roles: Vec<String>,
    /// The libp2p peer id.
    pub peer_id: String,
    /// Addresses the p2p node listens on.
    pub p2p_addrs: Vec<String>,
    /// `[p2p] advertise`: `relay` (only circuit addresses reach the network) or `direct`.
    #[serde(default)]
    pub advertise: String,
    /// The relays it reserves on and reaches peers through.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Whether it relays for others.
    #[serde(default)]
    pub relay_server: bool,
    /// Hosts a buyer's kill switch lets through outside the tunnel (chain RPC, bootstrap peers,
    /// relays), besides the current seller's endpoint.
    #[serde(default)]
    pub outside_tunnel: Vec<String>,
    /// Chain id.
    pub chain_id: u64,
    /// The market.
    pub market: String,
    /// The last block whose events were read.
    pub chain_block: u64,
    /// Whether the last chain call worked.
    pub chain_ok: bool,
    /// p2p peers connected now.
    #[serde(default)]
    pub p2p_peers: u64,
    /// The seller account, when selling.
    pub seller: Option<String>,
    /// The buyer account, when buying.
    pub buyer: Option<String>,
    /// Sessions (both roles).
    pub sessions: Vec<SessionView>,
    /// The buyer's lockdown (kill switch), when buying.
    #[serde(default)]
    pub lockdown: Option<LockdownView>,
}

/// The buyer's lockdown: `GET /v1/status` (`lockdown`) and `POST /v1/lockdown`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockdownView {
    /// Up now: nothing leaves the host except through `tunnels`, to `endpoints` and `hosts`.
    pub engaged: bool,
    /// `[buyer] kill_switch` (a WireGuard `connect` puts the lockdown up).
    pub kill_switch: bool,
    /// `[buyer] lockdown`: `connect` or `always`.
    pub mode: String,
    /// TUN interfaces traffic may leave through.
    pub tunnels: Vec<String>,
    /// The current sellers' endpoint hosts.
    pub endpoints: Vec<String>,
    /// The node's own hosts (chain RPC, bootstrap peers, relays).
    pub hosts: Vec<String>,
    /// Why the last change of the rules failed (the previous rules stayed).
    pub last_error: Option<String>,
}

/// `POST /v1/lockdown`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockdownRequest {
    /// Up (`true`) or lifted (`false`).
    pub on: bool,
}

/// One session as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionView {
    /// Local id.
    pub id: String,
    /// `seller` or `buyer`.
    pub role: String,
    /// The other side's account.
    pub counterparty: String,
    /// `wireguard` or `shadowsocks`.
    pub service: String,
    /// Phase: requesting, opening, awaiting-reveal, connected/serving, closing, ended.
    pub phase: String,
    /// The channel.
    pub channel_id: Option<String>,
    /// Bytes metered by this side.
    pub bytes: u64,
    /// Seconds of service so far.
    pub seconds: u64,
    /// What this side's meter says is owed, wei.
    pub owed_wei: String,
    /// The last voucher signed (buyer) or the best held (seller), wei.
    pub paid_wei: String,
    /// The channel's deposit, wei.
    pub deposit_wei: Option<String>,
    /// Deposit minus paid, wei.
    pub deposit_left_wei: Option<String>,
    /// Price X and Y, wei.
    pub price_per_mib_wei: Option<String>,
    /// Y.
    pub price_per_second_wei: Option<String>,
    /// Whether traffic flows.
    pub live: bool,
    /// The SOCKS5 address (buyer, shadowsocks).
    pub socks: Option<String>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// The last problem seen (chain, peer), if any.
    pub last_error: Option<String>,
    /// What the buyer measured of the current tunnel run (buyer, live sessions).
    #[serde(default)]
    pub measured: Option<MeasuredView>,
    /// What the seller's exit lets through, as its offer announced it (`the public internet`,
    /// `the public internet plus 198.18.0.0/15`); `None` when not known.
    #[serde(default)]
    pub exit: Option<String>,
    /// Connections (shadowsocks) or packets (WireGuard) this buyer refused because the seller's
    /// exit policy refuses their destination.
    #[serde(default)]
    pub exit_refused: u64,
}

/// The buyer's measurements of a tunnel run (`quality::Measurements`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MeasuredView {
    /// Milliseconds from the first byte sent to the first byte back (100 ms resolution).
    pub first_byte_ms: Option<u64>,
    /// Most bytes down within one second.
    pub peak_down_bps: u64,
    /// Messages to the seller answered.
    pub answered: u32,
    /// Messages to the seller that got no answer.
    pub lost: u32,
}

/// One offer in the book.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OfferView {
    /// Seller account.
    pub seller: String,
    /// Seller's node.
    pub peer_id: String,
    /// Region.
    pub region: String,
    /// Services.
    pub services: Vec<String>,
    /// X.
    pub price_per_mib_wei: String,
    /// Y.
    pub price_per_second_wei: String,
    /// Z.
    pub seller_burn_wei: String,
    /// W.
    pub buyer_burn_wei: String,
    /// Least deposit.
    pub min_deposit_wei: String,
    /// Seconds between vouchers.
    pub payment_interval: u32,
    /// Capacity, bits per second.
    pub capacity_bps: u64,
    /// The exit policy: ranges opened beyond the public internet (empty: the public internet
    /// only; private, loopback, link-local, CGNAT and benchmark ranges are refused).
    #[serde(default)]
    pub exit_allow: Vec<String>,
    /// Reputation score (none until computed).
    pub score: Option<f64>,
    /// Unix seconds the announcement is valid until.
    pub valid_until: u64,
    /// This buyer's latest session with the seller failed within the last hour: the automatic
    /// choice tries every other matching seller first.
    #[serde(default)]
    pub failed_recently: bool,
}

/// `POST /v1/connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// A seller account (default: the best offer).
    pub seller: Option<String>,
    /// `wireguard` or `shadowsocks` (default shadowsocks).
    pub service: Option<String>,
    /// Highest X accepted, wei.
    pub max_price_per_mib: Option<String>,
    /// Highest Y accepted, wei.
    pub max_price_per_second: Option<String>,
    /// Deposit, wei (default from config).
    pub deposit: Option<String>,
    /// Only sellers announcing this region (exact, case-insensitive).
    #[serde(default)]
    pub region: Option<String>,
    /// Only sellers whose score (as `wayfare offers` shows it) is at least this, 0..1.
    #[serde(default)]
    pub min_score: Option<f64>,
    /// Switch from the live session to this new one: the new tunnel comes up before the old
    /// one goes (with the lockdown up throughout), then the old session is left.
    #[serde(default)]
    pub switch: bool,
}

/// Answer to connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectAnswer {
    /// The new session's id (poll `GET /v1/sessions/{id}`).
    pub session: String,
    /// The seller chosen.
    pub seller: String,
    /// The channel reused (no transaction), when reconnecting to a seller with an open one.
    pub reused_channel: Option<String>,
}

/// `POST /v1/disconnect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DisconnectRequest {
    /// The session (default: every live buyer session).
    pub session: Option<String>,
    /// Close the channel too (default: keep it open, so a reconnect needs no transaction).
    #[serde(default)]
    pub close: bool,
}

/// One channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelView {
    /// Id.
    pub id: String,
    /// Our side.
    pub role: String,
    /// Seller account.
    pub seller: String,
    /// Buyer account.
    pub buyer: String,
    /// Service.
    pub service: String,
    /// `open`, `closing`, `closed`.
    pub state: String,
    /// Deposit, wei.
    pub deposit_wei: String,
    /// Best voucher we hold (seller) or signed (buyer), wei.
    pub voucher_wei: String,
    /// Vouchers stored.
    pub vouchers: u64,
    /// Credited to the seller at close.
    pub to_seller_wei: Option<String>,
    /// Credited to the buyer at close.
    pub to_buyer_wei: Option<String>,
    /// Unix seconds a buyer-started close can be finalized.
    pub closes_at: Option<u64>,
    /// Chain actions waiting (settle, close…).
    pub pending_actions: Vec<String>,
}

/// `GET /v1/seller`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SellerStatus {
    /// The account.
    pub account: String,
    /// Sessions being served.
    pub live_sessions: usize,
    /// Every session.
    pub sessions: Vec<SessionView>,
    /// Sum credited to the seller by closed channels, wei.
    pub earned_wei: String,
    /// Best vouchers of channels not yet closed, wei.
    pub unsettled_wei: String,
    /// What `withdraw` would pay the payout address now, wei (none if the chain is down).
    pub withdrawable_wei: Option<String>,
    /// How buyers reach this seller (direct, mapped on the router) or why they can't, with the
    /// fix.
    #[serde(default)]
    pub reachability: String,
    /// Whether buyers can reach it at all; an unreachable seller does not announce and
    /// refuses quotes.
    #[serde(default = "yes")]
    pub reachable: bool,
}

fn yes() -> bool {
    true
}

/// A mined transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxView {
    /// Hash.
    pub tx: String,
    /// Amount moved, wei, when there is one.
    pub amount_wei: Option<String>,
}

/// An error body: what went wrong and what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// One line.
    pub error: String,
}
