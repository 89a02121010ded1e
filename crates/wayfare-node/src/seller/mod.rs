//! The seller role: announces its offer, answers quote requests with a session each, provisions
//! the buyer's access once the channel is on chain, checks vouchers against its own meter,
//! settles by policy and watches its channels (its own watchtower).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, U256};
use tokio::sync::mpsc;
use wayfare_chain::MarketClient;
use wayfare_p2p::{P2pError, PeerId, sign_announcement};
use wayfare_proto::{
    Service, ServiceSet, Terms, Timestamp,
    keys::SecretKey,
    messages::{Announcement, Message},
    negotiation::CounterOfferBounds,
    seal::{Credentials, RevealPayload, ShadowsocksMethod},
    session::{SellerEvent, SellerParams, SellerSession, SessionConfig},
};
use wayfare_tunnel::{
    ExitPolicy,
    shadowsocks::{Seller as SsSeller, SellerConfig as SsSellerConfig, SessionKey},
    wireguard::{PrivateKey as WgPrivateKey, WgPublicKey, WgSeller, WgSellerConfig},
};

use crate::{
    actions,
    api_types::{SellerStatus, SessionView},
    config::SellerConfig,
    error::NodeError,
    inbound::{RefusalKind, Refused},
    node::{Shared, new_session_id, now, service_name, unix_now},
    store::{ChannelRow, SessionRow},
};

/// How long an announcement is valid; republished every third of it.
const ANNOUNCEMENT_TTL: u64 = 120;
/// Most quoted sessions (waiting for their channel) one peer may hold.
pub const MAX_PENDING_PER_PEER: usize = 4;
/// Most quoted sessions in all: past it new quote requests are refused until some expire.
pub const MAX_PENDING_TOTAL: usize = 256;

/// What a message from a peer other than the session's may do: only one that carries a
/// signature of the channel's voucher signer and may be new to the session is handed to it (the
/// session then checks the signature, the amount and the run, so a forgery is `BadSignature` and
/// an old one `Replayed`); a retransmission of the current run's `Resume` is not new and re-binds
/// nothing.
fn stranger_may_try(session: &SellerSession, message: &Message) -> Result<(), Refused> {
    let open = session.is_open();
    let tried = match message {
        Message::Voucher(_) | Message::CloseRequest(_) => open,
        Message::Resume(r) if open && !session.is_paused() && r.run == session.run() => {
            return Err(Refused::new(
                RefusalKind::Replayed,
                "a resume of the channel's current run from another peer changes nothing",
            ));
        }
        Message::Resume(_) => open,
        _ => false,
    };
    if tried {
        Ok(())
    } else {
        Err(Refused::new(
            RefusalKind::NotYourSession,
            "this channel's session belongs to another peer",
        ))
    }
}

struct Entry {
    session: SellerSession,
    peer: PeerId,
    buyer: Address,
    service: Service,
    out: mpsc::UnboundedSender<Vec<u8>>,
    meter_seen: u64,
    serving: bool,
    created_at: u64,
    last_error: Option<String>,
    broken: bool,
}

/// The seller's state inside the node actor.
pub struct SellerRole {
    /// The registered account.
    pub account: Address,
    /// Sends `settle` / `submitVoucher` (signed by the hot signer).
    pub client: MarketClient,
    /// Sends `withdraw` for the payout account, when its keystore is configured.
    pub payout_client: Option<MarketClient>,
    cfg: SellerConfig,
    signer: SecretKey,
    terms: Terms,
    services: ServiceSet,
    session_cfg: SessionConfig,
    public_ip: IpAddr,
    ss: Option<Arc<SsSeller>>,
    ss_ipsk: Option<SessionKey>,
    wg: Option<Arc<WgSeller>>,
    sessions: BTreeMap<String, Entry>,
    by_channel: BTreeMap<B256, String>,
    next_announce: Timestamp,
    announce_ok: Arc<std::sync::atomic::AtomicBool>,
}

fn secret_key(signer: &PrivateKeySigner) -> Result<SecretKey, NodeError> {
    let bytes: [u8; 32] = signer.to_bytes().0;
    SecretKey::from_bytes(&bytes).map_err(|e| NodeError::Invalid(format!("signer key: {e}")))
}

impl SellerRole {
    /// Starts the seller's services (shadowsocks port, WireGuard exit) and keys.
    pub async fn start(
        cfg: SellerConfig,
        account: Address,
        signer: PrivateKeySigner,
        client: MarketClient,
        payout_client: Option<MarketClient>,
        shared: &Shared,
    ) -> Result<Self, NodeError> {
        let terms = Terms {
            price_per_mib: cfg.price_per_mib.to_u128("price_per_mib")?,
            price_per_second: cfg.price_per_second.to_u128("price_per_second")?,
            seller_burn: cfg.seller_burn.to_u128("seller_burn")?,
            buyer_burn: cfg.buyer_burn.to_u128("buyer_burn")?,
            min_deposit: cfg.min_deposit.to_u128("min_deposit")?,
            payment_interval: cfg.payment_interval,
        };
        let services: Vec<Service> = cfg.services.iter().map(|s| s.service()).collect();
        let public_ip: IpAddr = match cfg.public_host.parse() {
            Ok(ip) => ip,
            Err(_) => tokio::net::lookup_host((cfg.public_host.as_str(), 0))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
                .ok_or_else(|| {
                    NodeError::Invalid(format!(
                        "[seller] public_host {:?} is neither an IP address nor a name that resolves",
                        cfg.public_host
                    ))
                })?,
        };
        let mut policy_allow = Vec::new();
        for c in &cfg.exit_allow {
            policy_allow.push(c.parse().map_err(|e| {
                NodeError::Invalid(format!("[seller] exit_allow {c:?} is not a CIDR: {e}"))
            })?);
        }
        let policy = ExitPolicy::with_allowed(policy_allow);

        let (mut ss, mut ss_ipsk) = (None, None);
        if services.contains(&Service::Shadowsocks) {
            let ipsk = stable_key(shared, "ss-ipsk")?;
            let mut sc = SsSellerConfig::new(cfg.shadowsocks_listen);
            sc.exit_policy = policy.clone();
            sc.identity_key = Some(SessionKey::from_base64(&ipsk.to_base64())?);
            let seller = SsSeller::bind(sc).await?;
            ss = Some(Arc::new(seller));
            ss_ipsk = Some(ipsk);
        }
        let mut wg = None;
        if services.contains(&Service::WireGuard) {
            let key = match shared.with_store(|s| s.key("wg-seller"))? {
                Some(k) => WgPrivateKey::from_base64(&String::from_utf8_lossy(&k))?,
                None => {
                    let k = WgPrivateKey::generate();
                    shared.with_store(|s| {
                        s.put_key("wg-seller", k.to_base64().as_bytes(), unix_now())
                    })?;
                    k
                }
            };
            let mut wc = WgSellerConfig::new(
                cfg.wireguard_port,
                SocketAddr::new(public_ip, cfg.wireguard_port),
            );
            wc.private_key = key;
            wc.exit_policy = policy;
            wc.tun_name = cfg.wireguard_tun.clone();
            wc.pool = cfg.wireguard_pool.parse().map_err(|e| {
                NodeError::Invalid(format!(
                    "[seller] wireguard_pool {:?} is not a CIDR: {e}",
                    cfg.wireguard_pool
                ))
            })?;
            wg = Some(Arc::new(WgSeller::start(wc).await?));
        }
        let mut session_cfg = SessionConfig {
            payment_interval: Duration::from_secs(u64::from(cfg.payment_interval)),
            grace: Duration::from_secs(cfg.grace_secs),
            pause_timeout: Duration::from_secs(cfg.pause_timeout_secs),
            ..SessionConfig::default()
        };
        session_cfg.counter_offer = CounterOfferBounds::fixed(&terms);
        Ok(Self {
            account,
            signer: secret_key(&signer)?,
            client,
            payout_client,
            terms,
            services: ServiceSet::new(&services),
            session_cfg,
            public_ip,
            ss,
            ss_ipsk,
            wg,
            cfg,
            sessions: BTreeMap::new(),
            by_channel: BTreeMap::new(),
            next_announce: Timestamp::default(),
            announce_ok: Arc::default(),
        })
    }

    fn params(&self, shared: &Shared) -> SellerParams {
        SellerParams {
            chain_id: shared.chain.chain_id(),
            market: shared.chain.address(),
            seller: self.account,
            signer: self.signer.clone(),
            list_terms: self.terms,
            services: self.services,
        }
    }

    /// Whether `id` is one of this role's sessions.
    pub fn has(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// Brings back every session that had not ended.
    pub fn restore(&mut self, shared: &mut Shared) -> Result<(), NodeError> {
        let rows = shared.with_store(|s| s.live_sessions("seller"))?;
        let now = now();
        for row in rows {
            let Some(bytes) = &row.snapshot else { continue };
            let snap = match wayfare_proto::session::SellerSnapshot::from_bytes(bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(session = %row.id, error = %e, "stored snapshot does not decode; session left as is");
                    continue;
                }
            };
            let Ok(peer) = row.peer.parse::<PeerId>() else {
                continue;
            };
            let session =
                SellerSession::restore(snap, self.params(shared), self.session_cfg.clone(), now);
            let service = Service::from_code(row.service).unwrap_or(Service::Shadowsocks);
            let buyer = row.counterparty.parse().unwrap_or_default();
            tracing::info!(session = %row.id, channel = ?row.channel_id, "seller session restored");
            if let Some(c) = row.channel_id {
                self.by_channel.insert(c, row.id.clone());
            }
            let out = shared.spawn_sender(peer, row.id.clone());
            self.sessions.insert(
                row.id.clone(),
                Entry {
                    session,
                    peer,
                    buyer,
                    service,
                    out,
                    meter_seen: 0,
                    serving: false,
                    created_at: row.created_at,
                    last_error: None,
                    broken: false,
                },
            );
            self.drain(shared, &row.id, None);
        }
        Ok(())
    }

    /// Whether a session of this role has (or was quoted for) `channel`.
    pub fn has_channel(&self, channel: B256) -> bool {
        self.by_channel.contains_key(&channel)
    }

    /// A request from a buyer. Returns the first message to answer with, or the refusal. A
    /// session answers only its own peer, or a peer that proves itself with a new signed message
    /// (see [`crate::inbound`]).
    pub fn on_request(
        &mut self,
        shared: &mut Shared,
        ledger: &crate::reputation::Ledger,
        peer: PeerId,
        message: Message,
    ) -> Result<Option<Vec<u8>>, Refused> {
        let now = now();
        let id = match &message {
            Message::QuoteRequest(req) => {
                if let Some(refusal) = self.below_min_score(ledger, &req.buyer) {
                    return Ok(Some(Message::Refusal(refusal).encode()));
                }
                self.check_pending(&peer)?;
                let id = new_session_id();
                let session = SellerSession::new(self.params(shared), self.session_cfg.clone());
                let out = shared.spawn_sender(peer, id.clone());
                self.sessions.insert(
                    id.clone(),
                    Entry {
                        session,
                        peer,
                        buyer: req.buyer,
                        service: req.service,
                        out,
                        meter_seen: 0,
                        serving: false,
                        created_at: unix_now(),
                        last_error: None,
                        broken: false,
                    },
                );
                id
            }
            Message::Opened(o) => self.by_channel(o.channel_id)?,
            Message::Resume(r) => self.by_channel(r.channel_id)?,
            Message::Voucher(v) => self.by_channel(v.channel_id)?,
            Message::CloseRequest(c) => self.by_channel(c.channel_id)?,
            other => {
                return Err(Refused::new(
                    RefusalKind::BadRequest,
                    format!("a seller does not take {}", other.name()),
                ));
            }
        };
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or_else(|| Refused::new(RefusalKind::UnknownSession, "session gone"))?;
        let stranger = entry.peer != peer;
        if stranger {
            stranger_may_try(&entry.session, &message)?;
        }
        if let Err(e) = entry.session.handle_message(message, now) {
            let kind = RefusalKind::of_session_error(&e);
            if stranger || kind == RefusalKind::BadSignature {
                return Err(Refused::new(kind, e.to_string()));
            }
            // The session's own peer: a reordered or repeated message, noted and acknowledged.
            tracing::debug!(session = %id, error = %e, "message refused by the session");
            entry.last_error = Some(e.to_string());
        } else if stranger {
            // A new message signed by the channel's voucher signer: the buyer moved.
            tracing::info!(session = %id, old = %entry.peer, new = %peer, "buyer proved itself from a new peer id: session re-bound");
            entry.peer = peer;
            entry.out = shared.spawn_sender(peer, id.clone());
        }
        if let Some(c) = entry.session.channel_id() {
            self.by_channel.entry(c).or_insert_with(|| id.clone());
        }
        let mut first = None;
        self.drain(shared, &id, Some(&mut first));
        Ok(first)
    }

    /// The refusal for a buyer under `[seller] min_buyer_score`, if it is.
    fn below_min_score(
        &self,
        ledger: &crate::reputation::Ledger,
        buyer: &Address,
    ) -> Option<wayfare_proto::messages::Refusal> {
        if self.cfg.min_buyer_score <= 0.0 {
            return None;
        }
        let score = ledger.buyer_score(buyer, &crate::reputation::ScoreParams::default());
        tracing::debug!(%buyer, score, stats = ?ledger.buyer_stats(buyer), events = ledger.len(), "buyer score");
        if score >= self.cfg.min_buyer_score {
            return None;
        }
        tracing::info!(%buyer, score, min = self.cfg.min_buyer_score, "buyer refused: score below the minimum");
        Some(wayfare_proto::messages::Refusal {
            reason: wayfare_proto::messages::RefusalReason::Unavailable,
            detail: format!(
                "buyer score {score:.3} is below this seller's minimum {:.3}",
                self.cfg.min_buyer_score
            ),
        })
    }

    /// Refuses a new quote when too many sessions wait for a channel, from `peer` or in all.
    fn check_pending(&self, peer: &PeerId) -> Result<(), Refused> {
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

    fn by_channel(&self, c: B256) -> Result<String, Refused> {
        self.by_channel
            .get(&c)
            .cloned()
            .ok_or_else(|| Refused::unknown(c))
    }

    /// The answer to a message this seller pushed (Reveal, Usage, CloseConsent…).
    pub fn on_reply(
        &mut self,
        shared: &mut Shared,
        id: &str,
        result: Result<Option<Message>, P2pError>,
    ) {
        let now = now();
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        match result {
            Ok(Some(Message::Refusal(r))) => {
                entry.last_error = Some(format!("buyer refused: {}", r.detail));
            }
            Ok(Some(m)) => {
                if let Err(e) = entry.session.handle_message(m, now) {
                    entry.last_error = Some(e.to_string());
                }
                self.drain(shared, id, None);
            }
            Ok(None) => {}
            Err(e) => entry.last_error = Some(e.to_string()),
        }
    }

    /// Drains the session's outputs: events first (persist before anything), then transmits.
    /// With `first`, the first transmit is returned there (the answer to a request).
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
                continue; // a failed persist: acknowledge nothing
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
        let ended = self.sessions.get(id).is_some_and(|e| e.session.is_ended());
        if ended && let Some(e) = self.sessions.remove(id) {
            // Chain events of its channel go to the store (watchtower) from now on.
            if let Some(c) = e.session.channel_id()
                && self.by_channel.get(&c).is_some_and(|s| s == id)
            {
                self.by_channel.remove(&c);
            }
            if e.session.is_open() {
                tracing::info!(session = id, reason = ?e.session.end_reason(), "seller session over");
            } else {
                tracing::debug!(session = id, reason = ?e.session.end_reason(), "quote expired or refused");
            }
        }
    }

    fn on_event(&mut self, shared: &mut Shared, id: &str, ev: SellerEvent) {
        let now = now();
        match ev {
            SellerEvent::Persist(snap) => {
                let Some(entry) = self.sessions.get_mut(id) else {
                    return;
                };
                // A quote costs the seller no disk write: anyone may ask for one. The session is
                // stored from its channel's opening on (a restart loses only unopened quotes).
                if snap.phase == wayfare_proto::session::SellerPhase::Quoted {
                    return;
                }
                let channel_id = entry.session.channel_id();
                let row = SessionRow {
                    id: id.to_string(),
                    role: "seller".into(),
                    channel_id,
                    peer: entry.peer.to_string(),
                    counterparty: entry.buyer.to_string(),
                    service: entry.service.code(),
                    snapshot: Some(snap.to_bytes()),
                    phase: format!("{:?}", snap.phase).to_lowercase(),
                    ended: matches!(snap.phase, wayfare_proto::session::SellerPhase::Ended),
                    end_reason: snap.end.map(|r| format!("{r:?}")),
                    bytes: snap.meter_bytes,
                    paid_wei: snap.best.map(|v| v.amount).unwrap_or_default(),
                    owed_wei: entry.session.owed(now),
                    seconds: entry.session.billed_seconds(now),
                    created_at: entry.created_at,
                    updated_at: unix_now(),
                };
                let res = shared.with_store(|s| {
                    s.atomically(|s| {
                        if let Some(v) = &snap.best {
                            s.put_voucher(
                                v.channel_id,
                                v.amount,
                                &v.signature,
                                "seller",
                                unix_now(),
                            )?;
                        }
                        if let Some(c) = &snap.channel
                            && s.channel(c.channel_id)?.is_none()
                        {
                            s.put_channel(&ChannelRow {
                                id: c.channel_id,
                                role: "seller".into(),
                                seller: self.account.to_string(),
                                buyer: entry.buyer.to_string(),
                                service: entry.service.code(),
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
                        s.put_session(&row)
                    })
                });
                shared.metrics.persist(res.is_ok());
                if let Err(e) = res {
                    tracing::error!(session = id, error = %e, "persist failed: cutting the session, acknowledging nothing");
                    entry.broken = true;
                    entry.last_error = Some(e.to_string());
                    entry.session.shutdown(now);
                }
            }
            SellerEvent::StartService {
                channel_id,
                buyer,
                service,
                wireguard_key,
                needs_reveal,
            } => {
                let result = self.provision(shared, id, channel_id, service, wireguard_key);
                let Some(entry) = self.sessions.get_mut(id) else {
                    return;
                };
                match result {
                    Ok(payload) => {
                        entry.serving = true;
                        entry.meter_seen = 0;
                        tracing::info!(session = id, %channel_id, %buyer, service = service_name(service.code()), "serving");
                        if needs_reveal {
                            let mut rng = rand::rngs::OsRng;
                            if let Err(e) = entry.session.reveal(&payload, &mut rng, now) {
                                entry.last_error = Some(e.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(session = id, error = %e, "could not provision the buyer's access");
                        entry.last_error = Some(e.to_string());
                        entry.session.shutdown(now);
                    }
                }
            }
            SellerEvent::StopService { channel_id, reason } => {
                self.unprovision(id);
                if let Some(e) = self.sessions.get_mut(id) {
                    e.serving = false;
                }
                tracing::info!(session = id, %channel_id, ?reason, "service stopped");
            }
            SellerEvent::Settle { voucher } => {
                let payload = actions::voucher_payload(voucher.amount, &voucher.signature);
                let client = self.client.clone();
                if let Err(e) = shared.add_action(
                    &client,
                    voucher.channel_id,
                    "settle",
                    payload,
                    Some(id.to_string()),
                ) {
                    tracing::error!(session = id, error = %e, "could not record the settle action");
                }
            }
            SellerEvent::SubmitVoucher { voucher, closes_at } => {
                let client = self.client.clone();
                watchtower(
                    shared,
                    &client,
                    voucher.channel_id,
                    voucher.amount,
                    &voucher.signature,
                    closes_at,
                );
            }
            SellerEvent::Ended { reason } => {
                tracing::info!(session = id, ?reason, "seller session ended");
            }
        }
    }

    fn provision(
        &mut self,
        shared: &Shared,
        id: &str,
        channel_id: B256,
        service: Service,
        wireguard_key: Option<[u8; 32]>,
    ) -> Result<RevealPayload, NodeError> {
        let mut session_id = [0u8; 16];
        let raw = hex::decode(id).unwrap_or_default();
        let n = raw.len().min(8);
        session_id[..n].copy_from_slice(&raw[..n]);
        session_id[8..].copy_from_slice(&channel_id.0[..8]);
        match service {
            Service::Shadowsocks => {
                let (Some(ss), Some(ipsk)) = (&self.ss, &self.ss_ipsk) else {
                    return Err(NodeError::Invalid("shadowsocks is not served here".into()));
                };
                let upsk = stable_key(shared, &format!("ss-upsk:{id}"))?;
                let key = SessionKey::from_base64(&upsk.to_base64())?;
                match ss.add_session_with_key(id, key) {
                    Ok(_) | Err(wayfare_tunnel::TunnelError::DuplicateSession(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(RevealPayload {
                    endpoint: SocketAddr::new(self.public_ip, ss.local_addr().port()),
                    session_id,
                    credentials: Credentials::Shadowsocks {
                        method: ShadowsocksMethod::Blake3Aes256Gcm,
                        server_psk: ipsk.as_bytes().to_vec(),
                        user_psk: upsk.as_bytes().to_vec(),
                    },
                })
            }
            Service::WireGuard => {
                let Some(wg) = self.wg.clone() else {
                    return Err(NodeError::Invalid("WireGuard is not served here".into()));
                };
                let key = wireguard_key
                    .ok_or_else(|| NodeError::Invalid("the buyer sent no WireGuard key".into()))?;
                let pubkey = WgPublicKey::from_bytes(key);
                // The address this session had (a restarted seller hands it back).
                let addr_key = format!("wg-addr:{id}");
                let preferred = shared
                    .with_store(|s| s.key(&addr_key))?
                    .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
                    .map(std::net::Ipv4Addr::from);
                let grant = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async {
                        match wg.add_session_at(id, pubkey, preferred).await {
                            // A resume racing the removal of the paused peer: finish it first.
                            Err(wayfare_tunnel::TunnelError::DuplicateSession(_)) => {
                                let _ = wg.remove_session(id).await;
                                wg.add_session_at(id, pubkey, preferred).await
                            }
                            other => other,
                        }
                    })
                })?;
                if preferred != Some(grant.address) {
                    shared.with_store(|s| {
                        s.replace_key(&addr_key, &grant.address.octets(), unix_now())
                    })?;
                }
                let server_public_key = grant.seller_public_key.to_bytes();
                Ok(RevealPayload {
                    endpoint: grant.endpoint,
                    session_id,
                    credentials: Credentials::WireGuard {
                        server_public_key,
                        tunnel: wayfare_proto::messages::TunnelAddress {
                            address: IpAddr::V4(grant.address),
                            prefix_len: 32,
                        },
                    },
                })
            }
        }
    }

    fn unprovision(&mut self, id: &str) {
        let Some(entry) = self.sessions.get(id) else {
            return;
        };
        match entry.service {
            Service::Shadowsocks => {
                if let Some(ss) = &self.ss {
                    let _ = ss.remove_session(id);
                }
            }
            Service::WireGuard => {
                if let Some(wg) = self.wg.clone() {
                    let id = id.to_string();
                    tokio::spawn(async move {
                        let _ = wg.remove_session(&id).await;
                    });
                }
            }
        }
    }

    fn meter_total(&self, id: &str, service: Service) -> Option<u64> {
        match service {
            Service::Shadowsocks => self.ss.as_ref()?.meter(id).map(|m| m.snapshot().total()),
            Service::WireGuard => self.wg.as_ref()?.meter(id).map(|m| m.snapshot().total()),
        }
    }

    /// A chain fact: fed to the channel's session; a close started on a channel whose session
    /// is gone is answered with the best stored voucher (watchtower).
    pub fn on_chain_event(&mut self, shared: &mut Shared, ev: &wayfare_proto::session::ChainEvent) {
        use wayfare_proto::session::ChainEvent as E;
        let now = now();
        let channel = match ev {
            E::ChannelOpened(o) => {
                if o.seller != self.account {
                    return;
                }
                o.channel_id
            }
            E::ToppedUp { channel_id, .. }
            | E::CloseStarted { channel_id, .. }
            | E::ChannelClosed { channel_id, .. } => *channel_id,
        };
        self.record_channel_event(shared, ev);
        if let Some(id) = self.by_channel.get(&channel).cloned()
            && let Some(entry) = self.sessions.get_mut(&id)
        {
            if let Err(e) = entry.session.handle_chain_event(*ev, now) {
                entry.last_error = Some(e.to_string());
            }
            self.drain(shared, &id, None);
            return;
        }
        if let E::CloseStarted {
            channel_id,
            closes_at,
        } = ev
        {
            let best = shared
                .with_store(|s| s.best_voucher(*channel_id))
                .ok()
                .flatten();
            let ours = shared
                .with_store(|s| s.channel(*channel_id))
                .ok()
                .flatten()
                .is_some_and(|c| c.role == "seller");
            if ours && let Some((amount, sig)) = best {
                let client = self.client.clone();
                watchtower(shared, &client, *channel_id, amount, &sig, *closes_at);
            }
        }
    }

    /// When one of its channels closes, the seller rates the buyer by how it paid: 1 after a
    /// missing or short payment, 2 after a buyer-started close (a dispute), else 5.
    pub fn rate_on_close(&mut self, shared: &mut Shared, ev: &wayfare_proto::session::ChainEvent) {
        let wayfare_proto::session::ChainEvent::ChannelClosed { channel_id, .. } = ev else {
            return;
        };
        if !self.cfg.rate_buyers {
            return;
        }
        let Ok(Some(row)) = shared.with_store(|s| s.session_by_channel("seller", *channel_id))
        else {
            return;
        };
        let disputed = shared
            .with_store(|s| s.channel(*channel_id))
            .ok()
            .flatten()
            .is_some_and(|c| c.closes_at.is_some());
        let score = match row.end_reason.as_deref() {
            Some("MissingPayment" | "ShortPayment" | "MaxDebt") => 1,
            _ if disputed => 2,
            _ => 5,
        };
        tracing::info!(channel = %channel_id, score, "rating the buyer");
        let client = self.client.clone();
        let _ = shared.add_action(
            &client,
            *channel_id,
            "rate",
            actions::rate_payload(score, "seller"),
            None,
        );
    }

    fn record_channel_event(&self, shared: &Shared, ev: &wayfare_proto::session::ChainEvent) {
        use wayfare_proto::session::ChainEvent as E;
        let res = shared.with_store(|s| {
            let id = match ev {
                E::ChannelOpened(o) => o.channel_id,
                E::ToppedUp { channel_id, .. }
                | E::CloseStarted { channel_id, .. }
                | E::ChannelClosed { channel_id, .. } => *channel_id,
            };
            let mut row = match s.channel(id)? {
                Some(r) if r.role == "seller" => r,
                Some(_) => return Ok(()),
                None => match ev {
                    E::ChannelOpened(o) => ChannelRow {
                        id,
                        role: "seller".into(),
                        seller: o.seller.to_string(),
                        buyer: o.buyer.to_string(),
                        service: o.service,
                        deposit_wei: o.deposit,
                        state: "open".into(),
                        open_tx: Some(o.tx_hash.to_string()),
                        to_seller_wei: None,
                        to_buyer_wei: None,
                        closes_at: None,
                        opened_at: unix_now(),
                        updated_at: unix_now(),
                    },
                    _ => return Ok(()),
                },
            };
            match ev {
                E::ChannelOpened(_) => {}
                E::ToppedUp { deposit, .. } => row.deposit_wei = *deposit,
                E::CloseStarted { closes_at, .. } => {
                    row.state = "closing".into();
                    row.closes_at = Some(*closes_at);
                }
                E::ChannelClosed {
                    to_seller,
                    to_buyer,
                    ..
                } => {
                    row.state = "closed".into();
                    row.to_seller_wei = Some(*to_seller);
                    row.to_buyer_wei = Some(*to_buyer);
                }
            }
            row.updated_at = unix_now();
            s.put_channel(&row)
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "could not record a channel event");
        }
    }

    /// Timers, meters, announcements and the settle policy.
    pub fn on_tick(&mut self, shared: &mut Shared, now: Timestamp) {
        if now >= self.next_announce {
            self.announce(shared, now);
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let mut due = false;
            if let Some(entry) = self.sessions.get(&id) {
                let total = if entry.serving {
                    self.meter_total(&id, entry.service)
                } else {
                    None
                };
                let entry = self.sessions.get_mut(&id).unwrap_or_else(|| unreachable!());
                if let Some(total) = total
                    && total > entry.meter_seen
                {
                    let delta = total - entry.meter_seen;
                    entry.meter_seen = total;
                    shared.metrics.bytes(delta);
                    entry.session.handle_meter(delta, now);
                    due = true;
                }
                if entry.session.poll_timeout().is_some_and(|t| t <= now) {
                    entry.session.handle_timeout(now);
                    due = true;
                }
                // Settle policy: amount threshold and channel age.
                if entry.session.is_serving() {
                    let best = entry
                        .session
                        .best_voucher()
                        .map(|v| v.amount)
                        .unwrap_or_default();
                    let threshold = self.cfg.settle_threshold.0;
                    let age = unix_now().saturating_sub(entry.created_at);
                    let too_old =
                        self.cfg.settle_max_age_secs > 0 && age >= self.cfg.settle_max_age_secs;
                    if (!threshold.is_zero() && best >= threshold) || too_old {
                        tracing::info!(session = %id, %best, age, "settle policy: closing the session and settling");
                        entry.session.shutdown(now);
                        due = true;
                    }
                }
            }
            if due {
                self.drain(shared, &id, None);
            }
        }
    }

    fn announce(&mut self, shared: &Shared, now: Timestamp) {
        let mut a = Announcement {
            seller: self.account,
            peer_id: shared.p2p.peer_id().to_bytes(),
            services: self.services,
            terms: self.terms,
            region: self.cfg.region.clone(),
            capacity_bps: self.cfg.capacity_bps,
            valid_until: now.as_secs() + ANNOUNCEMENT_TTL,
            signature: [0; 65],
        };
        sign_announcement(&mut a, &self.signer, &shared.chain.domain());
        let p2p = shared.p2p.clone();
        let flag = self.announce_ok.clone();
        tokio::spawn(async move {
            let ok = match p2p.publish(&a).await {
                Ok(()) => true,
                Err(P2pError::NoPeers) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "announcement not published");
                    false
                }
            };
            flag.store(ok, std::sync::atomic::Ordering::SeqCst);
        });
        // Until someone listens, try every second; then every third of the lifetime.
        let wait = if self.announce_ok.load(std::sync::atomic::Ordering::SeqCst) {
            ANNOUNCEMENT_TTL / 3
        } else {
            1
        };
        self.next_announce = now.saturating_add(Duration::from_secs(wait));
    }

    /// Stops every session (settling what it holds).
    pub fn shutdown(&mut self, shared: &mut Shared) {
        let now = now();
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            if let Some(e) = self.sessions.get_mut(&id) {
                e.session.shutdown(now);
            }
            self.drain(shared, &id, None);
        }
    }

    /// `wayfare close` on a seller's channel: stop serving and settle.
    pub fn close_channel(
        &mut self,
        shared: &mut Shared,
        channel: B256,
    ) -> Result<Option<String>, NodeError> {
        if let Some(id) = self.by_channel.get(&channel).cloned()
            && let Some(e) = self.sessions.get_mut(&id)
        {
            e.session.shutdown(now());
            self.drain(shared, &id, None);
            return Ok(Some(format!(
                "session {id} stopped; settling channel {channel} with the best voucher"
            )));
        }
        let row = shared.with_store(|s| s.channel(channel))?;
        if row
            .as_ref()
            .is_some_and(|r| r.role == "seller" && r.state != "closed")
            && let Some((amount, sig)) = shared.with_store(|s| s.best_voucher(channel))?
        {
            let client = self.client.clone();
            shared.add_action(
                &client,
                channel,
                "settle",
                actions::voucher_payload(amount, &sig),
                None,
            )?;
            return Ok(Some(format!("settling channel {channel} for {amount} wei")));
        }
        Ok(None)
    }

    /// A live session's view.
    pub fn view(&self, id: &str, now: Timestamp) -> Option<SessionView> {
        let e = self.sessions.get(id)?;
        let s = &e.session;
        let terms = s.terms();
        let paid = s.best_voucher().map(|v| v.amount).unwrap_or_default();
        Some(SessionView {
            id: id.to_string(),
            role: "seller".into(),
            counterparty: e.buyer.to_string(),
            service: service_name(e.service.code()).into(),
            phase: if s.is_serving() {
                "serving".into()
            } else if s.is_paused() {
                "paused".into()
            } else if s.is_ended() {
                "ended".into()
            } else if s.channel_id().is_some() && e.serving {
                "closing".into()
            } else {
                "negotiating".into()
            },
            channel_id: s.channel_id().map(|c| c.to_string()),
            bytes: s.meter_bytes(),
            seconds: s.billed_seconds(now),
            owed_wei: s.owed(now).to_string(),
            paid_wei: paid.to_string(),
            deposit_wei: None,
            deposit_left_wei: None,
            price_per_mib_wei: terms.map(|t| t.price_per_mib.to_string()),
            price_per_second_wei: terms.map(|t| t.price_per_second.to_string()),
            live: s.is_serving(),
            socks: None,
            end_reason: s.end_reason().map(|r| format!("{r:?}")),
            last_error: e.last_error.clone(),
            measured: None,
        })
    }

    /// Earnings and sessions.
    pub async fn status(
        &self,
        shared: &Shared,
        sessions: Vec<SessionView>,
    ) -> Result<SellerStatus, NodeError> {
        let channels = shared.with_store(|s| s.channels())?;
        let mut earned = U256::ZERO;
        let mut unsettled = U256::ZERO;
        for c in channels.iter().filter(|c| c.role == "seller") {
            if c.state == "closed" {
                earned += c.to_seller_wei.unwrap_or_default();
            } else if let Some((a, _)) = shared.with_store(|s| s.best_voucher(c.id))? {
                unsettled += a.min(c.deposit_wei);
            }
        }
        let payout = self
            .payout_client
            .as_ref()
            .and_then(|c| c.from())
            .unwrap_or(self.account);
        // Never hold the node (and its sessions) on a chain that doesn't answer.
        let withdrawable =
            tokio::time::timeout(Duration::from_secs(3), shared.chain.withdrawable(payout))
                .await
                .ok()
                .and_then(Result::ok);
        let sessions: Vec<SessionView> = sessions
            .into_iter()
            .filter(|s| s.role == "seller")
            .collect();
        Ok(SellerStatus {
            account: self.account.to_string(),
            live_sessions: sessions.iter().filter(|s| s.live).count(),
            sessions,
            earned_wei: earned.to_string(),
            unsettled_wei: unsettled.to_string(),
            withdrawable_wei: withdrawable.map(|w| w.to_string()),
        })
    }
}

/// The watchtower's answer to a buyer's `startClose`: record the best voucher on chain at once
/// (`submitVoucher`, valid until `closes_at`), then `finalize` once the challenge period is over
/// (the buyer usually finalizes first; the seller's then reverts, which changes nothing).
fn watchtower(
    shared: &mut Shared,
    client: &MarketClient,
    channel: B256,
    amount: U256,
    sig: &[u8],
    closes_at: u64,
) {
    tracing::info!(%channel, %amount, closes_at, "buyer started a close: submitting the best voucher (watchtower)");
    let submit = shared.add_action(
        client,
        channel,
        "submit_voucher",
        actions::voucher_payload(amount, sig),
        None,
    );
    let finalize = shared.add_action(
        client,
        channel,
        "finalize",
        serde_json::json!({ "not_before": closes_at, "side": "seller" }),
        None,
    );
    if let Err(e) = submit.and(finalize) {
        tracing::error!(%channel, error = %e, "could not record the watchtower's actions");
    }
}

/// A 32-byte key kept in the store under `name` (created on first use), so a restarted seller
/// hands out the same credentials.
fn stable_key(shared: &Shared, name: &str) -> Result<SessionKey, NodeError> {
    if let Some(k) = shared.with_store(|s| s.key(name))? {
        return Ok(SessionKey::from_base64(&String::from_utf8_lossy(&k))?);
    }
    let k = SessionKey::generate();
    shared.with_store(|s| s.put_key(name, k.to_base64().as_bytes(), unix_now()))?;
    Ok(k)
}
