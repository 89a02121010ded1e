//! The seller role: announces its offer, answers quote requests with a session each, provisions
//! the buyer's access once the channel is on chain, checks vouchers against its own meter,
//! settles by policy and watches its channels (its own watchtower).
//!
//! ```text
//!  mod       the role and its sessions, start, restore, shutdown, `wayfare close`, views, status
//!  quotes    a new quoted session: the buyer's score, the caps on sessions waiting for a channel
//!  session   driving a session: the buyer's messages (and who may send them), replies, outputs,
//!            events, persist, the tick and the settle policy
//!  service   the shadowsocks port and the WireGuard exit: started, provisioned per session, metered
//!  announce  the signed announcement, republished
//!  chain     chain facts about the seller's channels: the stored row, the watchtower, rating
//!  portmap   the service ports mapped on a home router (UPnP-IGD), renewed, removed
//!  reach     how buyers reach this seller: the mapping made at start, or `public_host`
//! ```

mod announce;
mod chain;
mod portmap;
mod quotes;
mod reach;
mod service;
mod session;

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, U256};
use tokio::sync::mpsc;
use wayfare_chain::MarketClient;
use wayfare_p2p::PeerId;
use wayfare_proto::{
    Service, ServiceSet, Terms, Timestamp,
    keys::SecretKey,
    messages::IpRange,
    negotiation::CounterOfferBounds,
    session::{SellerParams, SellerSession, SessionConfig},
};
use wayfare_tunnel::{
    shadowsocks::{Seller as SsSeller, SessionKey},
    wireguard::WgSeller,
};

pub use self::quotes::{MAX_PENDING_PER_PEER, MAX_PENDING_TOTAL};
use crate::{
    actions,
    api_types::{SellerStatus, SessionView},
    config::SellerConfig,
    error::NodeError,
    node::{Shared, now, service_name},
};

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

impl Entry {
    /// A session in memory, not serving yet, with no meter reading or error.
    fn new(
        session: SellerSession,
        peer: PeerId,
        buyer: Address,
        service: Service,
        out: mpsc::UnboundedSender<Vec<u8>>,
        created_at: u64,
    ) -> Self {
        Self {
            session,
            peer,
            buyer,
            service,
            out,
            meter_seen: 0,
            serving: false,
            created_at,
            last_error: None,
            broken: false,
        }
    }
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
    reach: reach::Reach,
    /// `[seller] exit_allow`, as announced.
    exit_allow: Vec<IpRange>,
    /// The exit policy in words (`ExitPolicy::describe`).
    exit_text: String,
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
        let policy = service::exit_policy(&cfg)?;
        let exit_allow = service::announced_exit(&policy)?;
        let exit_text = policy.describe();
        let (mut ss, mut ss_ipsk) = (None, None);
        if services.contains(&Service::Shadowsocks) {
            let (seller, ipsk) = service::start_shadowsocks(shared, &cfg, policy.clone()).await?;
            ss = Some(Arc::new(seller));
            ss_ipsk = Some(ipsk);
        }
        let mut ports = Vec::new();
        if let Some(s) = &ss {
            let port = s.local_addr().port();
            ports.extend([
                portmap::Port { udp: false, port },
                portmap::Port { udp: true, port },
            ]);
        }
        if services.contains(&Service::WireGuard) {
            ports.push(portmap::Port {
                udp: true,
                port: cfg.wireguard_port,
            });
        }
        let reach = reach::Reach::find(&cfg, &ports).await?;
        let public_ip = reach.public_ip;
        let mut wg = None;
        if services.contains(&Service::WireGuard) {
            wg = Some(Arc::new(
                service::start_wireguard(shared, &cfg, public_ip, policy).await?,
            ));
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
            reach,
            exit_allow,
            exit_text,
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
                Entry::new(session, peer, buyer, service, out, row.created_at),
            );
            self.drain(shared, &row.id, None);
        }
        Ok(())
    }

    /// Whether a session of this role has (or was quoted for) `channel`.
    pub fn has_channel(&self, channel: B256) -> bool {
        self.by_channel.contains_key(&channel)
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
        self.reach.shutdown();
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
            e.session.close(now());
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
            exit: Some(self.exit_text.clone()),
            exit_refused: 0,
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
            reachability: self.reach.line.clone(),
            reachable: self.reach.reachable,
        })
    }
}
