//! `connect`: the request checked, an offer picked (the one asked for, a paused channel's seller
//! or the best ranked), the seller checked in the registry, the keys stored, the session started.

use std::time::Duration;

use alloy_primitives::{Address, U256};
use wayfare_p2p::{CheapestFirst, OfferBook, OfferFilter, PeerId};
use wayfare_proto::{
    Service,
    keys::SecretKey,
    messages::Announcement,
    negotiation::BuyerLimits,
    session::{BuyerParams, BuyerSession},
};
use wayfare_tunnel::wireguard::PrivateKey as WgPrivateKey;

use super::{BuyerRole, Entry, choice::local_scores_from, choice::rank};
use crate::{
    api_types::{ConnectAnswer, ConnectRequest},
    error::NodeError,
    node::{Shared, new_session_id, now, parse_wei, service_name, unix_now},
    store::SessionRow,
};

/// What a `connect` asks for, checked.
struct Wanted<'a> {
    req: &'a ConnectRequest,
    service: Service,
    limits: BuyerLimits,
    deposit: U256,
    seller: Option<Address>,
}

/// The service a `connect` names (shadowsocks when it names none).
fn parse_service(name: Option<&str>) -> Result<Service, NodeError> {
    match name {
        None | Some("shadowsocks") => Ok(Service::Shadowsocks),
        Some("wireguard") => Ok(Service::WireGuard),
        Some(other) => Err(NodeError::Invalid(format!(
            "unknown service {other:?}: use wireguard or shadowsocks"
        ))),
    }
}

/// The seller a `connect` asks for by `--seller`, if any.
fn parse_seller(seller: Option<&str>) -> Result<Option<Address>, NodeError> {
    match seller {
        Some(s) => Ok(Some(s.parse().map_err(|_| {
            NodeError::Invalid(format!(
                "--seller {s:?} is not an address (0x + 40 hex digits)"
            ))
        })?)),
        None => Ok(None),
    }
}

/// The offer of the seller asked for by `--seller`, which must be live and match.
fn named_offer(
    all: &[&Announcement],
    matching: &[&Announcement],
    s: Address,
    service: Service,
) -> Result<Announcement, NodeError> {
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
    Ok((*a).clone())
}

/// Why no offer was picked: none scores enough, none was announced, or none matches.
fn no_pick(
    w: &Wanted<'_>,
    all: &[&Announcement],
    ranked: &[(&Announcement, f64, f64)],
) -> NodeError {
    if !ranked.is_empty() {
        return NodeError::NoOffers(format!(
            "no matching seller scores {} or more (the best scores {:.3}): lower --min-score",
            w.req.min_score.unwrap_or_default(),
            ranked[0].1
        ));
    }
    if all.is_empty() {
        return NodeError::NoOffers(
            "no seller has announced an offer yet: wait a few seconds, or check [p2p] bootstrap"
                .into(),
        );
    }
    NodeError::NoOffers(format!(
        "none of the {} offers matches (service {}, max X {}, max Y {}{}): raise the limits or pick --service",
        all.len(),
        service_name(w.service.code()),
        w.limits.max_price_per_mib,
        w.limits.max_price_per_second,
        w.req
            .region
            .as_deref()
            .map(|r| format!(", region {r}"))
            .unwrap_or_default()
    ))
}

impl BuyerRole {
    /// Starts a session with the best matching offer (or the one asked for).
    pub async fn connect(
        &mut self,
        shared: &mut Shared,
        offers: &OfferBook,
        ledger: &crate::reputation::Ledger,
        req: ConnectRequest,
    ) -> Result<ConnectAnswer, NodeError> {
        let live = self.live_ids();
        if let Some(id) = live.first()
            && !req.switch
        {
            return Err(NodeError::Invalid(format!(
                "already connected or connecting (session {id}): `wayfare connect --switch` moves to another seller, `wayfare disconnect` leaves"
            )));
        }
        let w = self.wanted(&req)?;
        let now_s = unix_now();
        let offer = self.pick_offer(shared, offers, ledger, &w, now_s)?;
        if w.service == Service::WireGuard && self.lockdown.applies_to_wireguard() {
            // From here until `wayfare disconnect`, nothing leaves outside the tunnel.
            self.lockdown.engage()?;
        }
        let ans = self.connect_to(shared, &offer, &w, now_s).await?;
        if let Some(e) = self.sessions.get_mut(&ans.session) {
            e.replaces = live;
            e.exit_allow = Some(offer.exit_allow.clone());
        }
        Ok(ans)
    }

    /// Resumes a paused channel with the offer's seller, or starts a new session with it.
    async fn connect_to(
        &mut self,
        shared: &mut Shared,
        offer: &Announcement,
        w: &Wanted<'_>,
        now_s: u64,
    ) -> Result<ConnectAnswer, NodeError> {
        // A channel left open with this seller (paused) is reused: no transaction, no burn.
        if let Some(ans) = self.try_resume(shared, offer.seller, w.service)? {
            return Ok(ans);
        }
        if w.deposit < U256::from(offer.terms.min_deposit) {
            return Err(NodeError::Invalid(format!(
                "deposit {} wei is below the seller's minimum of {} wei: pass --deposit {} or more",
                w.deposit, offer.terms.min_deposit, offer.terms.min_deposit
            )));
        }
        let peer = PeerId::from_bytes(&offer.peer_id)
            .map_err(|e| NodeError::Invalid(format!("offer names a bad peer id: {e}")))?;
        let signer = active_signer(shared, offer.seller).await?;
        self.start_session(shared, offer, peer, signer, w, now_s)
    }

    /// The request's service, limits, deposit and seller, checked in that order.
    fn wanted<'a>(&self, req: &'a ConnectRequest) -> Result<Wanted<'a>, NodeError> {
        let service = parse_service(req.service.as_deref())?;
        let limits = self.limits(req)?;
        let deposit = match &req.deposit {
            Some(d) => parse_wei("--deposit", d)?,
            None => self.cfg.deposit.0,
        };
        let seller = parse_seller(req.seller.as_deref())?;
        if let Some(m) = req.min_score
            && !(0.0..=1.0).contains(&m)
        {
            return Err(NodeError::Invalid(format!(
                "--min-score {m} is outside 0..1 (scores are the SCORE column of `wayfare offers`)"
            )));
        }
        Ok(Wanted {
            req,
            service,
            limits,
            deposit,
            seller,
        })
    }

    /// The offer to take: the one asked for, else a seller with a paused channel, else the best
    /// ranked one scoring at least `--min-score`.
    fn pick_offer(
        &self,
        shared: &Shared,
        offers: &OfferBook,
        ledger: &crate::reputation::Ledger,
        w: &Wanted<'_>,
        now_s: u64,
    ) -> Result<Announcement, NodeError> {
        let filter = OfferFilter {
            service: Some(w.service),
            max_price_per_mib: Some(w.limits.max_price_per_mib),
            max_price_per_second: Some(w.limits.max_price_per_second),
            max_buyer_burn: Some(w.limits.max_buyer_burn),
            region: w.req.region.clone(),
            ..OfferFilter::default()
        };
        let all = offers.query(&OfferFilter::default(), now_s, &CheapestFirst);
        let mut matching = offers.query(&filter, now_s, &CheapestFirst);
        if w.req.switch {
            // A switch goes to another seller than the ones connected now.
            let current: Vec<Address> = self
                .live_ids()
                .iter()
                .filter_map(|id| self.sessions.get(id).map(|e| e.seller))
                .collect();
            if let Some(s) = w.seller.filter(|s| current.contains(s)) {
                return Err(NodeError::Invalid(format!(
                    "already connected to {s}: a switch goes to another seller"
                )));
            }
            matching.retain(|a| !current.contains(&a.seller));
        }
        if let Some(s) = w.seller {
            return named_offer(&all, &matching, s, w.service);
        }
        // A seller with a paused channel first (no transaction), else the best utility
        // scoring at least --min-score.
        let resumable = matching
            .iter()
            .find(|a| self.paused_with(shared, a.seller, w.service).is_some())
            .copied();
        let ranked = match resumable {
            Some(_) => Vec::new(),
            None => rank(&matching, ledger, &local_scores_from(shared)),
        };
        let pick = resumable.or_else(|| {
            ranked
                .iter()
                .find(|r| w.req.min_score.is_none_or(|m| r.1 >= m))
                .map(|r| r.0)
        });
        match pick {
            Some(a) => Ok(a.clone()),
            None => Err(no_pick(w, &all, &ranked)),
        }
    }

    /// A new session with `offer`'s seller: its keys stored first, then its row, then it starts.
    fn start_session(
        &mut self,
        shared: &mut Shared,
        offer: &Announcement,
        peer: PeerId,
        seller_signer: Address,
        w: &Wanted<'_>,
        now_s: u64,
    ) -> Result<ConnectAnswer, NodeError> {
        let id = new_session_id();
        let service = w.service;
        let (voucher_key, wireguard_key) = store_keys(shared, &id, service, now_s)?;
        let params = BuyerParams {
            chain_id: shared.chain.chain_id(),
            market: shared.chain.address(),
            buyer: self.account,
            seller: offer.seller,
            seller_signer,
            service,
            wanted: None,
            voucher_key,
            reveal_seed: rand::random(),
            wireguard_key,
        };
        let session = BuyerSession::new(params, self.session_config(w.deposit, w.limits), now());
        shared.with_store(|s| {
            s.put_session(&requesting_row(&id, peer, offer.seller, service, now_s))
        })?;
        let out = shared.spawn_sender(peer, id.clone());
        tracing::info!(session = %id, seller = %offer.seller, service = service_name(service.code()), "connecting");
        self.sessions.insert(
            id.clone(),
            Entry::new(
                session,
                peer,
                offer.seller,
                service,
                out,
                now_s,
                "requesting".into(),
                None,
            ),
        );
        self.drain(shared, &id, None);
        Ok(ConnectAnswer {
            session: id,
            seller: offer.seller.to_string(),
            reused_channel: None,
        })
    }
}

/// The registered signer of `seller`, which must still be active. Never holds the node (and its
/// sessions) on a chain that doesn't answer.
async fn active_signer(shared: &Shared, seller: Address) -> Result<Address, NodeError> {
    let info = tokio::time::timeout(Duration::from_secs(10), shared.chain.seller(seller))
        .await
        .map_err(|_| {
            NodeError::Chain(wayfare_chain::ChainError::unreachable(
                shared.chain.rpc_url(),
                "no answer within 10 s",
            ))
        })??;
    if !info.active {
        return Err(NodeError::NoOffers(format!(
            "seller {seller} is not active in the registry any more"
        )));
    }
    Ok(info.signer)
}

/// A new session's keys, stored before anything else: a voucher signer that opens a channel must
/// never be lost. Returns the voucher key and, for WireGuard, the public key to send.
fn store_keys(
    shared: &Shared,
    id: &str,
    service: Service,
    now_s: u64,
) -> Result<(SecretKey, Option<[u8; 32]>), NodeError> {
    let voucher_bytes: [u8; 32] = rand::random();
    let voucher_key = SecretKey::from_bytes(&voucher_bytes)
        .map_err(|e| NodeError::Invalid(format!("voucher key: {e}")))?;
    shared.with_store(|s| s.put_key(&format!("voucher:{id}"), &voucher_bytes, now_s))?;
    let wireguard_key = if service == Service::WireGuard {
        let k = WgPrivateKey::generate();
        shared.with_store(|s| s.put_key(&format!("wg:{id}"), k.to_base64().as_bytes(), now_s))?;
        Some(k.public_key().to_bytes())
    } else {
        None
    };
    Ok((voucher_key, wireguard_key))
}

/// The first row of a session still asking for its quote.
fn requesting_row(
    id: &str,
    peer: PeerId,
    seller: Address,
    service: Service,
    now_s: u64,
) -> SessionRow {
    SessionRow {
        id: id.to_string(),
        role: "buyer".into(),
        channel_id: None,
        peer: peer.to_string(),
        counterparty: seller.to_string(),
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
    }
}
