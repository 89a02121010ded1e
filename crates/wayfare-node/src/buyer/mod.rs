//! The buyer role: picks an offer, negotiates, opens the channel, waits for the sealed reveal,
//! brings the tunnel up (shadowsocks SOCKS5 or the WireGuard VPN), pays every interval from its
//! own meter and leaves with a cooperative close (or a unilateral one, finalized later).

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use alloy_primitives::{Address, B256, U256};
use base64::Engine as _;
use tokio::sync::mpsc;
use wayfare_chain::MarketClient;
use wayfare_p2p::{CheapestFirst, OfferBook, OfferFilter, P2pError, PeerId};
use wayfare_proto::{
    Service, Timestamp,
    keys::SecretKey,
    messages::{Announcement, Message, Quote},
    negotiation::BuyerLimits,
    seal::{Credentials, RevealPayload},
    session::{
        AcceptedBytes, BuyerEvent, BuyerParams, BuyerPhase, BuyerSession, BuyerSnapshot,
        ChainEvent, ChannelOpened, CloseAction, SessionConfig,
    },
};
use wayfare_tunnel::{
    Cidr,
    shadowsocks::{Buyer as SsBuyer, BuyerConfig as SsBuyerConfig, CIPHER_2022, ClientConfig},
    wireguard::{
        DEFAULT_MTU, PrivateKey as WgPrivateKey, Routing, WgBuyer, WgBuyerConfig, WgClientConfig,
        WgPublicKey,
    },
};

use crate::{
    actions,
    api_types::{
        ConnectAnswer, ConnectRequest, DisconnectRequest, MeasuredView, OfferView, SessionView,
    },
    config::{BuyerConfig, ServiceName},
    error::NodeError,
    inbound::{RefusalKind, Refused},
    node::{Shared, new_session_id, now, parse_wei, service_name, unix_now},
    quality::{self, Measurements},
    store::{ChannelRow, SessionRow},
};

enum Tunnel {
    Shadowsocks(SsBuyer),
    WireGuard(WgBuyer),
}

impl Tunnel {
    fn meter(&self) -> wayfare_tunnel::meter::MeterSnapshot {
        match self {
            Self::Shadowsocks(b) => b.meter().snapshot(),
            Self::WireGuard(w) => w.meter().snapshot(),
        }
    }
}

struct Entry {
    session: BuyerSession,
    peer: PeerId,
    seller: Address,
    service: Service,
    out: mpsc::UnboundedSender<Vec<u8>>,
    tunnel: Option<Tunnel>,
    meter_seen: u64,
    created_at: u64,
    phase: String,
    last_error: Option<String>,
    broken: bool,
    socks: Option<SocketAddr>,
    quote: Option<Quote>,
    /// The tunnel run being measured: when it came up (Unix ms) and what it measured.
    run: Option<(u64, Measurements)>,
}

/// The buyer's state inside the node actor.
pub struct BuyerRole {
    /// The buyer account.
    pub account: Address,
    /// Sends `open`, `topUp`, closes and `withdraw` as the buyer.
    pub client: MarketClient,
    cfg: BuyerConfig,
    data_dir: std::path::PathBuf,
    sessions: BTreeMap<String, Entry>,
    by_channel: BTreeMap<B256, String>,
}

/// An announcement as the API shows it.
pub fn offer_view(a: &Announcement) -> OfferView {
    let mut services = Vec::new();
    for s in [Service::WireGuard, Service::Shadowsocks] {
        if a.services.contains(s) {
            services.push(service_name(s.code()).to_string());
        }
    }
    OfferView {
        seller: a.seller.to_string(),
        peer_id: PeerId::from_bytes(&a.peer_id)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        region: a.region.clone(),
        services,
        price_per_mib_wei: a.terms.price_per_mib.to_string(),
        price_per_second_wei: a.terms.price_per_second.to_string(),
        seller_burn_wei: a.terms.seller_burn.to_string(),
        buyer_burn_wei: a.terms.buyer_burn.to_string(),
        min_deposit_wei: a.terms.min_deposit.to_string(),
        payment_interval: a.terms.payment_interval,
        capacity_bps: a.capacity_bps,
        score: None,
        failed_recently: false,
        valid_until: a.valid_until,
    }
}

/// Weight of price against score in the buyer's choice (see `reputation::utility`).
pub const PRICE_WEIGHT: f64 = 0.3;

/// How much the buyer's own experience with a seller weighs against its chain score.
pub const LOCAL_WEIGHT: f64 = 0.5;

/// Whether a session ended on the seller's failure (no quote, no reveal, meter mismatch,
/// broken terms, refusal).
fn seller_failed(end_reason: Option<&str>) -> bool {
    matches!(
        end_reason,
        Some(
            "NoReveal" | "MeterMismatch" | "TermsMismatch" | "Refused" | "NoQuote" | "OfferExpired"
        )
    )
}

/// What the buyer's own record says of one ended session, in `[0, 1]`: 0 when it ended on the
/// seller's failure, else the quality of its measured runs ([`quality::session_quality`]);
/// `None` when the tunnel was never used. Sessions from before measurements were kept count 1
/// when bytes flowed.
pub fn session_record(row: &SessionRow, runs: &[&Measurements]) -> Option<f64> {
    if seller_failed(row.end_reason.as_deref()) {
        return Some(0.0);
    }
    match quality::session_quality(runs.iter().copied()) {
        Some(q) => Some(q),
        None if runs.is_empty() && row.bytes > 0 => Some(1.0),
        None => None,
    }
}

/// How long a seller whose latest session failed is passed over by the automatic choice.
pub const FAILURE_COOLDOWN_SECS: u64 = 3600;

/// The buyer's own record of a seller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalRecord {
    /// [`quality::local_score`] over its ended sessions.
    pub score: f64,
    /// Its latest session failed (record 0) less than [`FAILURE_COOLDOWN_SECS`] ago: the
    /// automatic choice tries every other matching seller first.
    pub failed_recently: bool,
}

/// The buyer's own record of each seller from its ended sessions ([`session_record`]), as
/// [`quality::local_score`]: a newcomer is 0.5, one failed session 0.25, one perfect 0.75.
/// `now` is Unix seconds.
pub fn local_scores(
    rows: &[SessionRow],
    runs: &[(String, String, Measurements)],
    now: u64,
) -> BTreeMap<Address, LocalRecord> {
    let mut by_session: BTreeMap<&str, Vec<&Measurements>> = BTreeMap::new();
    for (session, _, m) in runs {
        by_session.entry(session.as_str()).or_default().push(m);
    }
    // Per seller: every session's record, and the latest one (when it ended, its record).
    let mut records: BTreeMap<Address, (Vec<f64>, (u64, f64))> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.role == "buyer" && r.ended) {
        let Ok(seller) = r.counterparty.parse::<Address>() else {
            continue;
        };
        let runs = by_session
            .get(r.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let Some(q) = session_record(r, runs) {
            let e = records.entry(seller).or_insert((Vec::new(), (0, 1.0)));
            e.0.push(q);
            if r.updated_at >= e.1.0 {
                e.1 = (r.updated_at, q);
            }
        }
    }
    records
        .into_iter()
        .map(|(a, (q, (at, last)))| {
            (
                a,
                LocalRecord {
                    score: quality::local_score(&q),
                    failed_recently: last == 0.0 && now.saturating_sub(at) < FAILURE_COOLDOWN_SECS,
                },
            )
        })
        .collect()
}

/// The buyer's local record of every seller, read from the store.
pub fn local_scores_from(shared: &Shared) -> BTreeMap<Address, LocalRecord> {
    let rows = shared
        .with_store(|s| s.sessions("buyer"))
        .unwrap_or_default();
    let runs = shared.with_store(|s| s.runs()).unwrap_or_default();
    local_scores(&rows, &runs, unix_now())
}

/// Offers with their seller's score (chain score blended half and half with the buyer's own
/// record, 0.5 when it has none) and the buyer's utility, best first: sellers whose latest session with this buyer
/// failed within [`FAILURE_COOLDOWN_SECS`] come after every other, then by utility.
pub fn rank<'a>(
    offers: &[&'a Announcement],
    ledger: &crate::reputation::Ledger,
    local: &BTreeMap<Address, LocalRecord>,
) -> Vec<(&'a Announcement, f64, f64)> {
    let params = crate::reputation::ScoreParams::default();
    let price = |a: &Announcement| {
        a.terms
            .price_per_mib
            .saturating_add(a.terms.price_per_second)
    };
    let max = offers.iter().map(|a| price(a)).max().unwrap_or(0);
    let mut v: Vec<_> = offers
        .iter()
        .map(|a| {
            let chain = ledger.seller_score(&a.seller, &params);
            // A seller the buyer never used has the neutral local prior.
            let own = local
                .get(&a.seller)
                .map_or_else(|| quality::local_score(&[]), |l| l.score);
            let score = (1.0 - LOCAL_WEIGHT) * chain + LOCAL_WEIGHT * own;
            let u = crate::reputation::utility(score, price(a), max, PRICE_WEIGHT);
            (*a, score, u)
        })
        .collect();
    // Recent failures last; then best utility first; ties: cheaper, then by address.
    let failed = |a: &Announcement| local.get(&a.seller).is_some_and(|l| l.failed_recently);
    v.sort_by(|x, y| {
        failed(x.0)
            .cmp(&failed(y.0))
            .then(y.2.total_cmp(&x.2))
            .then(price(x.0).cmp(&price(y.0)))
            .then(x.0.seller.cmp(&y.0.seller))
    });
    v
}

/// A stored session (not in memory) as the API shows it.
pub fn row_view(row: &SessionRow) -> SessionView {
    SessionView {
        id: row.id.clone(),
        role: row.role.clone(),
        counterparty: row.counterparty.clone(),
        service: service_name(row.service).into(),
        phase: if row.ended {
            "ended".into()
        } else {
            row.phase.clone()
        },
        channel_id: row.channel_id.map(|c| c.to_string()),
        bytes: row.bytes,
        seconds: row.seconds,
        owed_wei: row.owed_wei.to_string(),
        paid_wei: row.paid_wei.to_string(),
        deposit_wei: None,
        deposit_left_wei: None,
        price_per_mib_wei: None,
        price_per_second_wei: None,
        live: false,
        socks: None,
        end_reason: row.end_reason.clone(),
        last_error: None,
        measured: None,
    }
}

fn phase_name(p: BuyerPhase) -> &'static str {
    match p {
        BuyerPhase::Opening => "opening",
        BuyerPhase::AwaitingReveal => "awaiting-reveal",
        BuyerPhase::Serving => "connected",
        BuyerPhase::Closing => "closing",
        BuyerPhase::Paused => "paused",
        BuyerPhase::Ended => "ended",
    }
}

/// The seller signer that signed `quote` (the buyer checks close consents against it).
fn quote_signer(shared: &Shared, quote: &Quote) -> Address {
    let domain = wayfare_proto::eip712::domain(shared.chain.chain_id(), shared.chain.address());
    let digest = wayfare_proto::eip712::offer_digest(&quote.offer, &domain);
    wayfare_proto::eip712::recover_signer(digest, &quote.signature).unwrap_or(quote.offer.seller)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl BuyerRole {
    /// The buyer role for `account`.
    pub fn new(
        cfg: BuyerConfig,
        account: Address,
        client: MarketClient,
        data_dir: std::path::PathBuf,
    ) -> Self {
        Self {
            account,
            client,
            cfg,
            data_dir,
            sessions: BTreeMap::new(),
            by_channel: BTreeMap::new(),
        }
    }

    /// Whether `id` is one of this role's sessions.
    pub fn has(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    fn session_config(&self, deposit: U256, limits: BuyerLimits) -> SessionConfig {
        SessionConfig {
            payment_interval: Duration::from_secs(u64::from(self.cfg.payment_interval)),
            limits,
            deposit,
            close_timeout: Duration::from_secs(self.cfg.close_timeout_secs),
            reveal_timeout: Duration::from_secs(self.cfg.reveal_timeout_secs),
            ..SessionConfig::default()
        }
    }

    fn limits(&self, req: &ConnectRequest) -> Result<BuyerLimits, NodeError> {
        let mut l = BuyerLimits {
            min_interval: 1,
            ..BuyerLimits::default()
        };
        let to128 = |what: &str, v: U256| {
            u128::try_from(v).map_err(|_| NodeError::Invalid(format!("{what} is too large")))
        };
        if let Some(v) = &self.cfg.max_price_per_mib {
            l.max_price_per_mib = to128("max_price_per_mib", v.0)?;
        }
        if let Some(v) = &self.cfg.max_price_per_second {
            l.max_price_per_second = to128("max_price_per_second", v.0)?;
        }
        if let Some(v) = &self.cfg.max_buyer_burn {
            l.max_buyer_burn = to128("max_buyer_burn", v.0)?;
        }
        if let Some(v) = &req.max_price_per_mib {
            l.max_price_per_mib =
                to128("--max-price-per-mib", parse_wei("--max-price-per-mib", v)?)?;
        }
        if let Some(v) = &req.max_price_per_second {
            l.max_price_per_second = to128(
                "--max-price-per-second",
                parse_wei("--max-price-per-second", v)?,
            )?;
        }
        Ok(l)
    }

    /// Starts a session with the best matching offer (or the one asked for).
    pub async fn connect(
        &mut self,
        shared: &mut Shared,
        offers: &OfferBook,
        ledger: &crate::reputation::Ledger,
        req: ConnectRequest,
    ) -> Result<ConnectAnswer, NodeError> {
        if let Some((id, _)) = self
            .sessions
            .iter()
            .find(|(_, e)| !e.session.is_ended() && !e.session.is_paused())
        {
            return Err(NodeError::Invalid(format!(
                "already connected or connecting (session {id}): run `wayfare disconnect` first"
            )));
        }
        let service = match req.service.as_deref() {
            None | Some("shadowsocks") => Service::Shadowsocks,
            Some("wireguard") => Service::WireGuard,
            Some(other) => {
                return Err(NodeError::Invalid(format!(
                    "unknown service {other:?}: use wireguard or shadowsocks"
                )));
            }
        };
        let limits = self.limits(&req)?;
        let deposit = match &req.deposit {
            Some(d) => parse_wei("--deposit", d)?,
            None => self.cfg.deposit.0,
        };
        let want_seller: Option<Address> = match &req.seller {
            Some(s) => Some(s.parse().map_err(|_| {
                NodeError::Invalid(format!(
                    "--seller {s:?} is not an address (0x + 40 hex digits)"
                ))
            })?),
            None => None,
        };
        if let Some(m) = req.min_score
            && !(0.0..=1.0).contains(&m)
        {
            return Err(NodeError::Invalid(format!(
                "--min-score {m} is outside 0..1 (scores are the SCORE column of `wayfare offers`)"
            )));
        }
        let filter = OfferFilter {
            service: Some(service),
            max_price_per_mib: Some(limits.max_price_per_mib),
            max_price_per_second: Some(limits.max_price_per_second),
            max_buyer_burn: Some(limits.max_buyer_burn),
            region: req.region.clone(),
            ..OfferFilter::default()
        };
        let now_s = unix_now();
        let all = offers.query(&OfferFilter::default(), now_s, &CheapestFirst);
        let matching = offers.query(&filter, now_s, &CheapestFirst);
        let offer = match want_seller {
            Some(s) => {
                let Some(a) = all.iter().find(|a| a.seller == s) else {
                    return Err(NodeError::NoOffers(format!(
                        "seller {s} has no live offer: `wayfare offers` lists who is announcing"
                    )));
                };
                if !matching.iter().any(|m| m.seller == s) {
                    return Err(NodeError::NoOffers(format!(
                        "seller {s}'s offer does not match: service {}, X {} wei/MiB, Y {} wei/s, W {} wei (raise --max-price-… or pick another seller)",
                        service_name(service.code()),
                        a.terms.price_per_mib,
                        a.terms.price_per_second,
                        a.terms.buyer_burn
                    )));
                }
                (*a).clone()
            }
            None => {
                // A seller with a paused channel first (no transaction), else the best utility
                // scoring at least --min-score.
                let resumable = matching
                    .iter()
                    .find(|a| self.paused_with(shared, a.seller, service).is_some())
                    .copied();
                let ranked = match resumable {
                    Some(_) => Vec::new(),
                    None => rank(&matching, ledger, &local_scores_from(shared)),
                };
                let pick = resumable.or_else(|| {
                    ranked
                        .iter()
                        .find(|r| req.min_score.is_none_or(|m| r.1 >= m))
                        .map(|r| r.0)
                });
                match pick {
                    Some(a) => (*a).clone(),
                    None if !ranked.is_empty() => {
                        return Err(NodeError::NoOffers(format!(
                            "no matching seller scores {} or more (the best scores {:.3}): lower --min-score",
                            req.min_score.unwrap_or_default(),
                            ranked[0].1
                        )));
                    }
                    None if all.is_empty() => {
                        return Err(NodeError::NoOffers(
                        "no seller has announced an offer yet: wait a few seconds, or check [p2p] bootstrap".into(),
                    ));
                    }
                    None => {
                        return Err(NodeError::NoOffers(format!(
                            "none of the {} offers matches (service {}, max X {}, max Y {}{}): raise the limits or pick --service",
                            all.len(),
                            service_name(service.code()),
                            limits.max_price_per_mib,
                            limits.max_price_per_second,
                            req.region
                                .as_deref()
                                .map(|r| format!(", region {r}"))
                                .unwrap_or_default()
                        )));
                    }
                }
            }
        };
        // A channel left open with this seller (paused) is reused: no transaction, no burn.
        if let Some(ans) = self.try_resume(shared, offer.seller, service)? {
            return Ok(ans);
        }
        if deposit < U256::from(offer.terms.min_deposit) {
            return Err(NodeError::Invalid(format!(
                "deposit {deposit} wei is below the seller's minimum of {} wei: pass --deposit {} or more",
                offer.terms.min_deposit, offer.terms.min_deposit
            )));
        }
        let peer = PeerId::from_bytes(&offer.peer_id)
            .map_err(|e| NodeError::Invalid(format!("offer names a bad peer id: {e}")))?;
        // Never hold the node (and its sessions) on a chain that doesn't answer.
        let info = tokio::time::timeout(Duration::from_secs(10), shared.chain.seller(offer.seller))
            .await
            .map_err(|_| {
                NodeError::Chain(wayfare_chain::ChainError::unreachable(
                    shared.chain.rpc_url(),
                    "no answer within 10 s",
                ))
            })??;
        if !info.active {
            return Err(NodeError::NoOffers(format!(
                "seller {} is not active in the registry any more",
                offer.seller
            )));
        }
        let id = new_session_id();
        // Keys first: a voucher signer that opens a channel must never be lost.
        let voucher_bytes: [u8; 32] = rand::random();
        let voucher_key = SecretKey::from_bytes(&voucher_bytes)
            .map_err(|e| NodeError::Invalid(format!("voucher key: {e}")))?;
        shared.with_store(|s| s.put_key(&format!("voucher:{id}"), &voucher_bytes, now_s))?;
        let wireguard_key = if service == Service::WireGuard {
            let k = WgPrivateKey::generate();
            shared
                .with_store(|s| s.put_key(&format!("wg:{id}"), k.to_base64().as_bytes(), now_s))?;
            Some(k.public_key().to_bytes())
        } else {
            None
        };
        let params = BuyerParams {
            chain_id: shared.chain.chain_id(),
            market: shared.chain.address(),
            buyer: self.account,
            seller: offer.seller,
            seller_signer: info.signer,
            service,
            wanted: None,
            voucher_key,
            reveal_seed: rand::random(),
            wireguard_key,
        };
        let session = BuyerSession::new(params, self.session_config(deposit, limits), now());
        shared.with_store(|s| {
            s.put_session(&SessionRow {
                id: id.clone(),
                role: "buyer".into(),
                channel_id: None,
                peer: peer.to_string(),
                counterparty: offer.seller.to_string(),
                service: service.code(),
                snapshot: None,
                phase: "requesting".into(),
                ended: false,
                end_reason: None,
                bytes: 0,
                paid_wei: U256::ZERO,
                owed_wei: U256::ZERO,
                seconds: 0,
                created_at: now_s,
                updated_at: now_s,
            })
        })?;
        let out = shared.spawn_sender(peer, id.clone());
        tracing::info!(session = %id, seller = %offer.seller, service = service_name(service.code()), "connecting");
        self.sessions.insert(
            id.clone(),
            Entry {
                session,
                peer,
                seller: offer.seller,
                service,
                out,
                tunnel: None,
                meter_seen: 0,
                created_at: now_s,
                phase: "requesting".into(),
                last_error: None,
                broken: false,
                socks: None,
                quote: None,
                run: None,
            },
        );
        self.drain(shared, &id, None);
        Ok(ConnectAnswer {
            session: id,
            seller: offer.seller.to_string(),
            reused_channel: None,
        })
    }

    /// Brings back every session that had not ended (reconnecting a live tunnel).
    pub fn restore(&mut self, shared: &mut Shared) -> Result<(), NodeError> {
        let rows = shared.with_store(|s| s.live_sessions("buyer"))?;
        for row in rows {
            if row.phase == "paused" {
                continue; // resumed on the next `connect` to this seller
            }
            if row.snapshot.is_none() {
                // Never got a quote: nothing was promised; mark it over.
                let mut r = row.clone();
                r.ended = true;
                r.phase = "ended".into();
                r.end_reason = Some("Restarted".into());
                shared.with_store(|s| s.put_session(&r))?;
                continue;
            }
            match self.bring_back(shared, &row.id, false) {
                Ok(()) => {
                    tracing::info!(session = %row.id, channel = ?row.channel_id, phase = %row.phase, "buyer session restored");
                    self.drain(shared, &row.id, None);
                }
                Err(e) => {
                    tracing::error!(session = %row.id, error = %e, "session not restored; left as stored")
                }
            }
        }
        Ok(())
    }

    /// Whether a session of this role is on `channel`.
    pub fn has_channel(&self, channel: B256) -> bool {
        self.by_channel.contains_key(&channel)
    }

    /// A message the seller pushed (Reveal, Usage, CloseRequest, CloseConsent). From a peer other
    /// than the session's seller only the seller-signed ones are tried (the session checks the
    /// signature against the seller's registered signer); a reveal must come from the seller's
    /// own peer.
    pub fn on_request(
        &mut self,
        shared: &mut Shared,
        peer: PeerId,
        message: Message,
    ) -> Result<Option<Vec<u8>>, Refused> {
        let channel = match &message {
            Message::Reveal(r) => r.channel_id,
            Message::Usage(u) => u.channel_id,
            Message::CloseConsent(c) => c.channel_id,
            Message::CloseRequest(c) => c.channel_id,
            other => {
                return Err(Refused::new(
                    RefusalKind::BadRequest,
                    format!("a buyer does not take {} unasked", other.name()),
                ));
            }
        };
        let id = self
            .by_channel
            .get(&channel)
            .cloned()
            .ok_or_else(|| Refused::unknown(channel))?;
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or_else(|| Refused::new(RefusalKind::UnknownSession, "session gone"))?;
        let stranger = entry.peer != peer;
        if stranger && matches!(message, Message::Reveal(_)) {
            return Err(Refused::new(
                RefusalKind::NotYourSession,
                "a reveal comes from the seller's own peer only",
            ));
        }
        if let Err(e) = entry.session.handle_message(message, now()) {
            let kind = RefusalKind::of_session_error(&e);
            if stranger || kind == RefusalKind::BadSignature {
                return Err(Refused::new(kind, e.to_string()));
            }
            entry.last_error = Some(e.to_string());
        }
        let mut first = None;
        self.drain(shared, &id, Some(&mut first));
        Ok(first)
    }

    /// The seller's answer to something this buyer sent.
    pub fn on_reply(
        &mut self,
        shared: &mut Shared,
        id: &str,
        result: Result<Option<Message>, P2pError>,
    ) {
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        if let Some((_, m)) = &mut entry.run {
            m.on_reply(result.is_ok());
        }
        match result {
            Ok(Some(m)) => {
                if let Message::Refusal(r) = &m {
                    entry.last_error = Some(format!("seller refused: {}", r.detail));
                }
                if let Message::Quote(q) = &m {
                    entry.quote = Some(q.clone());
                }
                if let Err(e) = entry.session.handle_message(m, now()) {
                    tracing::warn!(session = id, error = %e, "seller's answer refused");
                    entry.last_error = Some(e.to_string());
                }
                self.drain(shared, id, None);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(session = id, error = %e, "message to the seller failed");
                entry.last_error = Some(e.to_string());
            }
        }
    }

    fn drain(&mut self, shared: &mut Shared, id: &str, mut first: Option<&mut Option<Vec<u8>>>) {
        loop {
            let Some(entry) = self.sessions.get_mut(id) else {
                return;
            };
            if let Some(ev) = entry.session.poll_event() {
                self.on_event(shared, id, ev);
                continue;
            }
            let Some(bytes) = entry.session.poll_transmit() else {
                break;
            };
            if entry.broken {
                continue;
            }
            shared.metrics.message_out();
            match first.as_deref_mut() {
                Some(slot) if slot.is_none() => *slot = Some(bytes),
                _ => {
                    let _ = entry.out.send(bytes);
                }
            }
        }
        if let Some(entry) = self.sessions.get(id)
            && let Some(c) = entry.session.channel_id()
        {
            self.by_channel.entry(c).or_insert_with(|| id.to_string());
        }
    }

    fn on_event(&mut self, shared: &mut Shared, id: &str, ev: BuyerEvent) {
        let now = now();
        let client = self.client.clone();
        let account = self.account;
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        match ev {
            BuyerEvent::Persist(snap) => {
                entry.phase = phase_name(snap.phase).into();
                let row = SessionRow {
                    id: id.to_string(),
                    role: "buyer".into(),
                    channel_id: entry.session.channel_id(),
                    peer: entry.peer.to_string(),
                    counterparty: entry.seller.to_string(),
                    service: entry.service.code(),
                    snapshot: Some(snap.to_bytes()),
                    phase: entry.phase.clone(),
                    ended: snap.phase == BuyerPhase::Ended,
                    end_reason: snap.end.map(|r| format!("{r:?}")),
                    bytes: snap.meter_bytes,
                    paid_wei: snap.last_voucher.map(|v| v.amount).unwrap_or_default(),
                    owed_wei: entry.session.owed(now),
                    seconds: entry.session.billed_seconds(now),
                    created_at: entry.created_at,
                    updated_at: unix_now(),
                };
                let seller = entry.seller;
                let service = entry.service.code();
                let run = entry.run.clone();
                let res = shared.with_store(|s| {
                    s.atomically(|s| {
                        if let Some(v) = &snap.last_voucher {
                            s.put_voucher(
                                v.channel_id,
                                v.amount,
                                &v.signature,
                                "buyer",
                                unix_now(),
                            )?;
                        }
                        if let Some(c) = &snap.channel
                            && s.channel(c.channel_id)?.is_none()
                        {
                            s.put_channel(&ChannelRow {
                                id: c.channel_id,
                                role: "buyer".into(),
                                seller: seller.to_string(),
                                buyer: account.to_string(),
                                service,
                                deposit_wei: c.deposit,
                                state: "open".into(),
                                open_tx: Some(c.tx_hash.to_string()),
                                to_seller_wei: None,
                                to_buyer_wei: None,
                                closes_at: None,
                                opened_at: unix_now(),
                                updated_at: unix_now(),
                            })?;
                        }
                        if let Some((started, m)) = &run {
                            s.put_run(id, *started, &seller.to_string(), m)?;
                        }
                        s.put_session(&row)
                    })
                });
                shared.metrics.persist(res.is_ok());
                if let Err(e) = res {
                    tracing::error!(session = id, error = %e, "persist failed: leaving without sending the voucher");
                    entry.broken = true;
                    entry.last_error = Some(e.to_string());
                    entry.session.leave(now);
                }
            }
            BuyerEvent::OpenChannel {
                offer,
                seller_signature,
                voucher_signer,
                value,
            } => {
                entry.phase = "opening".into();
                let quote = Quote {
                    offer: offer.clone(),
                    signature: seller_signature,
                };
                let channel = entry.session.channel_id().unwrap_or_default();
                tracing::info!(session = id, %channel, %value, "opening the channel");
                if let Err(e) = shared.add_action(
                    &client,
                    channel,
                    "open",
                    actions::open_payload(&quote, voucher_signer, value),
                    Some(id.to_string()),
                ) {
                    entry.last_error = Some(e.to_string());
                    entry.session.leave(now);
                }
            }
            BuyerEvent::StartService { channel_id, reveal } => {
                let started = self.start_tunnel(shared, id, &reveal);
                let Some(entry) = self.sessions.get_mut(id) else {
                    return;
                };
                match started {
                    Ok(t) => {
                        if let Tunnel::Shadowsocks(b) = &t {
                            entry.socks = Some(b.local_addr());
                        }
                        tracing::info!(session = id, %channel_id, endpoint = %reveal.endpoint, "tunnel up");
                        entry.meter_seen = 0;
                        entry.run = Some((now.0, Measurements::default()));
                        entry.tunnel = Some(t);
                        entry.phase = "connected".into();
                    }
                    Err(e) => {
                        tracing::error!(session = id, error = %e, "could not bring the tunnel up; leaving");
                        entry.last_error = Some(e.to_string());
                        entry.session.leave(now);
                    }
                }
            }
            BuyerEvent::StopService { reason } => {
                tracing::info!(session = id, ?reason, "tunnel down");
                entry.socks = None;
                if let Some((started, m)) = entry.run.take() {
                    let seller = entry.seller.to_string();
                    if let Err(e) = shared.with_store(|s| s.put_run(id, started, &seller, &m)) {
                        tracing::warn!(session = id, error = %e, "could not record the run's measurements");
                    }
                }
                match entry.tunnel.take() {
                    Some(Tunnel::Shadowsocks(b)) => b.shutdown(),
                    Some(Tunnel::WireGuard(w)) => w.disconnect(),
                    None => {}
                }
            }
            BuyerEvent::Paused { channel_id } => {
                tracing::info!(session = id, %channel_id, "paused: the channel stays open for a reconnect");
                entry.phase = "paused".into();
            }
            BuyerEvent::TopUp { channel_id, amount } => {
                let _ = shared.add_action(
                    &client,
                    channel_id,
                    "top_up",
                    serde_json::json!({ "amount": amount.to_string() }),
                    Some(id.to_string()),
                );
            }
            BuyerEvent::Leave { reason, close } => {
                tracing::info!(session = id, ?reason, "leaving");
                match close {
                    CloseAction::Cooperative { voucher, consent } => {
                        let _ = shared.add_action(
                            &client,
                            voucher.channel_id,
                            "cooperative_close",
                            actions::cooperative_payload(
                                voucher.amount,
                                &voucher.signature,
                                &consent.signature,
                            ),
                            Some(id.to_string()),
                        );
                    }
                    CloseAction::StartClose { channel_id } => {
                        let _ = shared.add_action(
                            &client,
                            channel_id,
                            "start_close",
                            serde_json::json!({}),
                            Some(id.to_string()),
                        );
                    }
                    CloseAction::Nothing => {}
                }
            }
        }
    }

    fn start_tunnel(
        &mut self,
        shared: &Shared,
        id: &str,
        reveal: &RevealPayload,
    ) -> Result<Tunnel, NodeError> {
        match &reveal.credentials {
            Credentials::Shadowsocks {
                method,
                server_psk,
                user_psk,
            } => {
                if method.name() != CIPHER_2022 {
                    return Err(NodeError::Invalid(format!(
                        "the seller revealed cipher {}, which this buyer does not speak",
                        method.name()
                    )));
                }
                let password = format!("{}:{}", b64(server_psk), b64(user_psk));
                let server =
                    ClientConfig::new(&reveal.endpoint.to_string(), CIPHER_2022, &password)?;
                let cfg = SsBuyerConfig {
                    listen: self.cfg.socks_listen,
                    server,
                };
                let buyer = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(SsBuyer::start(cfg))
                })?;
                Ok(Tunnel::Shadowsocks(buyer))
            }
            Credentials::WireGuard {
                server_public_key,
                tunnel,
            } => {
                let key = shared
                    .with_store(|s| s.key(&format!("wg:{id}")))?
                    .ok_or_else(|| {
                        NodeError::Invalid("this session's WireGuard key is missing".into())
                    })?;
                let private_key = WgPrivateKey::from_base64(&String::from_utf8_lossy(&key))?;
                let std::net::IpAddr::V4(address) = tunnel.address else {
                    return Err(NodeError::Invalid(
                        "the seller revealed an IPv6 tunnel address".into(),
                    ));
                };
                let mut allowed = Vec::new();
                for c in &self.cfg.wireguard_split {
                    allowed.push(c.parse::<Cidr>().map_err(|e| {
                        NodeError::Invalid(format!("[buyer] wireguard_split {c:?}: {e}"))
                    })?);
                }
                let split = !allowed.is_empty();
                if !split {
                    allowed.push(
                        "0.0.0.0/0"
                            .parse()
                            .map_err(|e| NodeError::Invalid(format!("{e}")))?,
                    );
                }
                let client = WgClientConfig {
                    private_key,
                    address,
                    dns: Vec::new(),
                    mtu: DEFAULT_MTU,
                    peer_public_key: WgPublicKey::from_bytes(*server_public_key),
                    endpoint: reveal.endpoint,
                    allowed_ips: allowed.clone(),
                    keepalive: Some(25),
                };
                let mut cfg = WgBuyerConfig::new(client);
                cfg.tun_name = self.cfg.wireguard_tun.clone();
                cfg.kill_switch = self.cfg.kill_switch;
                // The node keeps talking to the seller (vouchers) outside the tunnel.
                cfg.allow_endpoint_host = true;
                cfg.resolv_conf = None;
                cfg.state_dir = Some(self.data_dir.join("wireguard-state"));
                if split {
                    cfg.routing = Routing::Split(allowed);
                }
                let vpn = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(WgBuyer::connect(cfg))
                })?;
                Ok(Tunnel::WireGuard(vpn))
            }
        }
    }

    /// A chain action of this role finished.
    pub fn on_action_done(
        &mut self,
        shared: &mut Shared,
        id: &str,
        result: &Result<String, (String, bool)>,
        opened: Option<Box<ChannelOpened>>,
    ) {
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        match (result, opened) {
            (Ok(_), Some(o)) => {
                if let Err(e) = entry
                    .session
                    .handle_chain_event(ChainEvent::ChannelOpened(*o), now())
                {
                    entry.last_error = Some(e.to_string());
                }
                self.drain(shared, id, None);
            }
            (Ok(_), None) => {}
            (Err((why, retry)), _) => {
                entry.last_error = Some(why.clone());
                // An open the chain refused will never happen: give up on this session.
                if !retry && entry.phase == "opening" {
                    entry.session.leave(now());
                    self.drain(shared, id, None);
                }
            }
        }
    }

    /// A chain fact about a channel.
    pub fn on_chain_event(&mut self, shared: &mut Shared, ev: &ChainEvent) {
        let now = now();
        let channel = match ev {
            ChainEvent::ChannelOpened(o) => {
                if o.buyer != self.account {
                    return;
                }
                o.channel_id
            }
            ChainEvent::ToppedUp { channel_id, .. }
            | ChainEvent::CloseStarted { channel_id, .. }
            | ChainEvent::ChannelClosed { channel_id, .. } => *channel_id,
        };
        let row = shared.with_store(|s| s.channel(channel)).ok().flatten();
        if let Some(mut row) = row.filter(|r| r.role == "buyer") {
            match ev {
                ChainEvent::ToppedUp { deposit, .. } => row.deposit_wei = *deposit,
                ChainEvent::CloseStarted { closes_at, .. } => {
                    row.state = "closing".into();
                    row.closes_at = Some(*closes_at);
                    let pending = shared
                        .with_store(|s| s.actions(channel))
                        .unwrap_or_default()
                        .iter()
                        .any(|a| a.kind == "finalize" && a.state == "pending");
                    if !pending {
                        let client = self.client.clone();
                        let _ = shared.add_action(
                            &client,
                            channel,
                            "finalize",
                            serde_json::json!({ "not_before": closes_at }),
                            None,
                        );
                    }
                }
                ChainEvent::ChannelClosed {
                    to_seller,
                    to_buyer,
                    ..
                } => {
                    row.state = "closed".into();
                    row.to_seller_wei = Some(*to_seller);
                    row.to_buyer_wei = Some(*to_buyer);
                }
                ChainEvent::ChannelOpened(_) => {}
            }
            row.updated_at = unix_now();
            let _ = shared.with_store(|s| s.put_channel(&row));
        }
        if let Some(id) = self.by_channel.get(&channel).cloned()
            && let Some(entry) = self.sessions.get_mut(&id)
        {
            if let Err(e) = entry.session.handle_chain_event(*ev, now) {
                tracing::debug!(session = %id, error = %e, "chain event not for this session's state");
            }
            self.drain(shared, &id, None);
        }
    }

    /// When one of its channels closes, the buyer rates the seller by how the session went:
    /// 1 when the seller never revealed, metered more than the buyer saw or broke the terms;
    /// 2 when the buyer had to close alone (the seller vanished); otherwise the stars its
    /// measurements are worth ([`quality::stars`]: a tunnel where nothing came back is 1),
    /// capped at 3 when the seller cut the session, and 3 when the tunnel was never used.
    pub fn rate_on_close(&mut self, shared: &mut Shared, ev: &ChainEvent) {
        let ChainEvent::ChannelClosed { channel_id, .. } = ev else {
            return;
        };
        if !self.cfg.rate_sellers {
            return;
        }
        let Ok(Some(row)) = shared.with_store(|s| s.session_by_channel("buyer", *channel_id))
        else {
            return;
        };
        let disputed = shared
            .with_store(|s| s.channel(*channel_id))
            .ok()
            .flatten()
            .is_some_and(|c| c.closes_at.is_some());
        let runs = shared
            .with_store(|s| s.runs_of(&row.id))
            .unwrap_or_default();
        let measured = quality::session_quality(&runs);
        let score = match row.end_reason.as_deref() {
            Some("NoReveal" | "MeterMismatch" | "TermsMismatch") => 1,
            // The seller never answered the close: it vanished.
            _ if disputed => 2,
            Some("UserLeft" | "Paused") => measured.map_or(3, quality::stars),
            _ => measured.map_or(3, |q| quality::stars(q).min(3)),
        };
        tracing::info!(channel = %channel_id, score, quality = ?measured, "rating the seller");
        let client = self.client.clone();
        let _ = shared.add_action(
            &client,
            *channel_id,
            "rate",
            actions::rate_payload(score, "buyer"),
            None,
        );
    }

    /// Meters and timers.
    pub fn on_tick(&mut self, shared: &mut Shared, now: Timestamp) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            let mut due = false;
            if let Some(t) = &entry.tunnel {
                let reading = t.meter();
                if let Some((_, m)) = &mut entry.run {
                    m.on_meter(now.0, reading.up, reading.down);
                }
                let total = reading.total();
                if total > entry.meter_seen {
                    let delta = total - entry.meter_seen;
                    entry.meter_seen = total;
                    shared.metrics.bytes(delta);
                    entry.session.handle_meter(AcceptedBytes(delta), now);
                }
            }
            if entry.session.poll_timeout().is_some_and(|t| t <= now) {
                entry.session.handle_timeout(now);
                due = true;
            }
            if due {
                self.drain(shared, &id, None);
            }
            // Forget ended and paused sessions (the store keeps them).
            if self.sessions.get(&id).is_some_and(|e| {
                (e.session.is_ended()
                    || (e.session.is_paused() && e.session.poll_timeout().is_none()))
                    && e.tunnel.is_none()
            }) {
                let age = self
                    .sessions
                    .get(&id)
                    .map(|e| unix_now().saturating_sub(e.created_at))
                    .unwrap_or(0);
                if age > 0 {
                    self.sessions.remove(&id);
                }
            }
        }
    }

    /// The daemon stops: tunnels go down, channels stay open (a restart resumes them).
    pub fn shutdown(&mut self, _shared: &mut Shared) {
        for e in self.sessions.values_mut() {
            match e.tunnel.take() {
                Some(Tunnel::Shadowsocks(b)) => b.shutdown(),
                Some(Tunnel::WireGuard(w)) => w.disconnect(),
                None => {}
            }
        }
    }

    /// Leaves one or every live session.
    pub fn disconnect(
        &mut self,
        shared: &mut Shared,
        req: DisconnectRequest,
    ) -> Result<Vec<String>, NodeError> {
        let ids: Vec<String> = match req.session {
            Some(s) => {
                if !self.sessions.contains_key(&s) {
                    return Err(NodeError::NoSuchSession(s));
                }
                vec![s]
            }
            None => self
                .sessions
                .iter()
                .filter(|(_, e)| !e.session.is_ended() && !e.session.is_paused())
                .map(|(k, _)| k.clone())
                .collect(),
        };
        if ids.is_empty() {
            return Err(NodeError::Invalid(
                "no live session to disconnect: `wayfare status` shows them".into(),
            ));
        }
        let now = now();
        for id in &ids {
            if let Some(e) = self.sessions.get_mut(id) {
                if req.close || !e.session.is_serving() {
                    e.session.leave(now);
                } else {
                    e.session.pause(now);
                }
            }
            self.drain(shared, id, None);
        }
        Ok(ids)
    }

    /// `wayfare close` on a buyer's channel.
    pub fn close_channel(
        &mut self,
        shared: &mut Shared,
        channel: B256,
    ) -> Result<Option<String>, NodeError> {
        if let Some(id) = self.by_channel.get(&channel).cloned()
            && let Some(e) = self.sessions.get_mut(&id)
            && !e.session.is_ended()
        {
            e.session.leave(now());
            self.drain(shared, &id, None);
            return Ok(Some(format!(
                "leaving session {id}: closing channel {channel} cooperatively (or by a unilateral close if the seller does not answer)"
            )));
        }
        if let Some(id) = self.paused_on_channel(shared, channel)? {
            let now = now();
            self.bring_back(shared, &id, false)?;
            if let Some(e) = self.sessions.get_mut(&id) {
                e.session.leave(now);
            }
            self.drain(shared, &id, None);
            return Ok(Some(format!(
                "closing paused channel {channel} cooperatively (or by a unilateral close if the seller does not answer)"
            )));
        }
        let Some(row) = shared.with_store(|s| s.channel(channel))? else {
            return Ok(None);
        };
        if row.role != "buyer" {
            return Ok(None);
        }
        let client = self.client.clone();
        match row.state.as_str() {
            "open" => {
                shared.add_action(&client, channel, "start_close", serde_json::json!({}), None)?;
                Ok(Some(format!(
                    "close started on {channel}: it can be finalized after the challenge period (the node does it)"
                )))
            }
            "closing" => {
                shared.add_action(
                    &client,
                    channel,
                    "finalize",
                    serde_json::json!({ "not_before": row.closes_at.unwrap_or(0) }),
                    None,
                )?;
                Ok(Some(format!(
                    "finalizing {channel} once the challenge period is over"
                )))
            }
            _ => Err(NodeError::Invalid(format!(
                "channel {channel} is already closed"
            ))),
        }
    }

    /// The stored paused session with `seller` for `service`, if any.
    fn paused_with(&self, shared: &Shared, seller: Address, service: Service) -> Option<String> {
        let rows = shared.with_store(|s| s.live_sessions("buyer")).ok()?;
        rows.into_iter()
            .rev()
            .find(|r| {
                r.phase == "paused"
                    && r.service == service.code()
                    && r.counterparty.parse::<Address>().ok() == Some(seller)
            })
            .map(|r| r.id)
    }

    fn paused_on_channel(
        &self,
        shared: &Shared,
        channel: B256,
    ) -> Result<Option<String>, NodeError> {
        let rows = shared.with_store(|s| s.live_sessions("buyer"))?;
        Ok(rows
            .into_iter()
            .find(|r| r.phase == "paused" && r.channel_id == Some(channel))
            .map(|r| r.id))
    }

    /// Rebuilds a stored session in memory: restored as it was (`resume = false`) or resumed
    /// with fresh reveal and WireGuard keys (`resume = true`).
    fn bring_back(&mut self, shared: &mut Shared, id: &str, resume: bool) -> Result<(), NodeError> {
        let row = shared
            .with_store(|s| s.session(id))?
            .ok_or_else(|| NodeError::NoSuchSession(id.to_string()))?;
        let snap = BuyerSnapshot::from_bytes(row.snapshot.as_deref().unwrap_or_default()).map_err(
            |e| NodeError::Invalid(format!("session {id}: stored state does not decode: {e}")),
        )?;
        let key = shared
            .with_store(|s| s.key(&format!("voucher:{id}")))?
            .ok_or_else(|| {
                NodeError::Invalid(format!("session {id}: its voucher key is missing"))
            })?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| NodeError::Invalid(format!("session {id}: bad voucher key")))?;
        let voucher_key = SecretKey::from_bytes(&key)
            .map_err(|e| NodeError::Invalid(format!("voucher key: {e}")))?;
        let peer: PeerId = row
            .peer
            .parse()
            .map_err(|_| NodeError::Invalid(format!("session {id}: bad peer id")))?;
        let seller: Address = row.counterparty.parse().unwrap_or_default();
        let service = Service::from_code(row.service).unwrap_or(Service::Shadowsocks);
        let wireguard_key = if resume && service == Service::WireGuard {
            let k = WgPrivateKey::generate();
            shared.with_store(|s| {
                s.replace_key(&format!("wg:{id}"), k.to_base64().as_bytes(), unix_now())
            })?;
            Some(k.public_key().to_bytes())
        } else {
            snap.request.wireguard_key
        };
        let params = BuyerParams {
            chain_id: shared.chain.chain_id(),
            market: shared.chain.address(),
            buyer: self.account,
            seller,
            seller_signer: quote_signer(shared, &snap.quote),
            service,
            wanted: None,
            voucher_key,
            reveal_seed: rand::random(),
            wireguard_key,
        };
        let deposit = snap
            .channel
            .map(|c| c.deposit)
            .unwrap_or(self.cfg.deposit.0);
        let config = self.session_config(deposit, self.limits(&ConnectRequest::default())?);
        let quote = snap.quote.clone();
        let session = if resume {
            BuyerSession::resume(snap, params, config, now())
                .map_err(|e| NodeError::Invalid(format!("can't resume session {id}: {e}")))?
        } else {
            BuyerSession::restore(snap, params, config, now())
        };
        if let Some(c) = row.channel_id {
            self.by_channel.insert(c, id.to_string());
        }
        let out = shared.spawn_sender(peer, id.to_string());
        self.sessions.insert(
            id.to_string(),
            Entry {
                session,
                peer,
                seller,
                service,
                out,
                tunnel: None,
                meter_seen: 0,
                created_at: row.created_at,
                phase: if resume {
                    "awaiting-reveal".into()
                } else {
                    row.phase.clone()
                },
                last_error: None,
                broken: false,
                socks: None,
                quote: Some(quote),
                run: None,
            },
        );
        Ok(())
    }

    /// Resumes a paused channel with `seller`, if there is one.
    fn try_resume(
        &mut self,
        shared: &mut Shared,
        seller: Address,
        service: Service,
    ) -> Result<Option<ConnectAnswer>, NodeError> {
        let Some(id) = self.paused_with(shared, seller, service) else {
            return Ok(None);
        };
        self.sessions.remove(&id);
        self.bring_back(shared, &id, true)?;
        tracing::info!(session = %id, %seller, "reconnecting on the open channel");
        self.drain(shared, &id, None);
        let channel = self
            .sessions
            .get(&id)
            .and_then(|e| e.session.channel_id())
            .map(|c| c.to_string());
        Ok(Some(ConnectAnswer {
            session: id,
            seller: seller.to_string(),
            reused_channel: channel,
        }))
    }

    /// A live session's view.
    pub fn view(&self, id: &str, now: Timestamp) -> Option<SessionView> {
        let e = self.sessions.get(id)?;
        let s = &e.session;
        let terms = s.terms();
        let paid = s.last_voucher().map(|v| v.amount).unwrap_or_default();
        let deposit = s.deposit();
        Some(SessionView {
            id: id.to_string(),
            role: "buyer".into(),
            counterparty: e.seller.to_string(),
            service: ServiceName::from_service(e.service).as_str().into(),
            phase: if s.is_ended() {
                "ended".into()
            } else {
                e.phase.clone()
            },
            channel_id: s.channel_id().map(|c| c.to_string()),
            bytes: s.meter_bytes(),
            seconds: s.billed_seconds(now),
            owed_wei: s.owed(now).to_string(),
            paid_wei: paid.to_string(),
            deposit_wei: deposit.map(|d| d.to_string()),
            deposit_left_wei: deposit.map(|d| d.saturating_sub(paid).to_string()),
            price_per_mib_wei: terms.map(|t| t.price_per_mib.to_string()),
            price_per_second_wei: terms.map(|t| t.price_per_second.to_string()),
            live: s.is_serving() && e.tunnel.is_some(),
            socks: e.socks.map(|a| a.to_string()),
            end_reason: s.end_reason().map(|r| format!("{r:?}")),
            last_error: e.last_error.clone(),
            measured: e.run.as_ref().map(|(_, m)| MeasuredView {
                first_byte_ms: m.first_byte_ms,
                peak_down_bps: m.peak_down_bps,
                answered: m.answered,
                lost: m.lost,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayfare_proto::{ServiceSet, Terms};

    fn offer(seller: u8, x: u128) -> Announcement {
        Announcement {
            seller: Address::repeat_byte(seller),
            peer_id: vec![],
            services: ServiceSet::new(&[Service::Shadowsocks]),
            terms: Terms {
                price_per_mib: x,
                price_per_second: 0,
                seller_burn: 0,
                buyer_burn: 0,
                min_deposit: 0,
                payment_interval: 15,
            },
            region: "lab".into(),
            capacity_bps: 0,
            valid_until: u64::MAX,
            signature: [0; 65],
        }
    }

    fn row(seller: u8, end: &str, bytes: u64) -> SessionRow {
        SessionRow {
            id: format!("{seller}-{end}-{bytes}"),
            role: "buyer".into(),
            channel_id: None,
            peer: String::new(),
            counterparty: Address::repeat_byte(seller).to_string(),
            service: 2,
            snapshot: None,
            phase: "ended".into(),
            ended: true,
            end_reason: Some(end.into()),
            bytes,
            paid_wei: U256::ZERO,
            owed_wei: U256::ZERO,
            seconds: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn with_equal_scores_the_cheaper_offer_wins() {
        let (a, b) = (offer(1, 100), offer(2, 50));
        let ranked = rank(
            &[&a, &b],
            &crate::reputation::Ledger::new(),
            &BTreeMap::new(),
        );
        assert_eq!(ranked[0].0.seller, b.seller);
    }

    #[test]
    fn a_seller_whose_sessions_failed_loses_the_buyers_choice() {
        // Seller 1 is cheaper, but the buyer's sessions with it never got a reveal.
        let (a, b) = (offer(1, 90), offer(2, 100));
        let rows = vec![
            row(1, "NoReveal", 0),
            row(1, "NoReveal", 0),
            row(1, "MeterMismatch", 10),
            row(2, "UserLeft", 5_000_000),
        ];
        let local = local_scores(&rows, &[], 0);
        assert!(local[&Address::repeat_byte(1)].score < 0.25);
        assert!(local[&Address::repeat_byte(2)].score > 0.6);
        let ranked = rank(&[&a, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        // Without that record, the cheaper one would have won.
        let ranked = rank(
            &[&a, &b],
            &crate::reputation::Ledger::new(),
            &BTreeMap::new(),
        );
        assert_eq!(ranked[0].0.seller, a.seller);
    }

    #[test]
    fn a_seller_whose_exit_returned_nothing_loses_to_a_dearer_newcomer() {
        let (a, b) = (offer(1, 80), offer(2, 100));
        // The session ended as the buyer chose, with bytes sent: only the measurements say
        // that nothing ever came back.
        let rows = vec![row(1, "UserLeft", 300)];
        let mut dead = Measurements::default();
        for t in 0..30 {
            dead.on_meter(t * 100, t * 60, 0);
        }
        let seller = Address::repeat_byte(1).to_string();
        let runs = [(rows[0].id.clone(), seller.clone(), dead)];
        let local = local_scores(&rows, &runs, 60);
        let l = local[&Address::repeat_byte(1)];
        assert_eq!(l.score, 0.25);
        assert!(l.failed_recently);
        let ranked = rank(&[&a, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        // Even much cheaper, a seller that just failed is tried last.
        let cheap = offer(1, 10);
        let ranked = rank(&[&cheap, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        // After the cool-down only the score is held against it: still enough at 80 % price.
        let local = local_scores(&rows, &runs, 2 * FAILURE_COOLDOWN_SECS);
        assert!(!local[&Address::repeat_byte(1)].failed_recently);
        let ranked = rank(&[&a, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        let ranked = rank(&[&cheap, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, cheap.seller, "{ranked:?}");
        // A run the buyer never used says nothing either way.
        let idle = Measurements::default();
        let local = local_scores(&rows, &[(rows[0].id.clone(), seller, idle)], 60);
        assert!(local.is_empty(), "{local:?}");
    }
}
