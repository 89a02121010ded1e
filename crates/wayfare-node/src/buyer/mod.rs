//! The buyer role: picks an offer, negotiates, opens the channel, waits for the sealed reveal,
//! brings the tunnel up (shadowsocks SOCKS5 or the WireGuard VPN), pays every interval from its
//! own meter and leaves with a cooperative close (or a unilateral one, finalized later).
//!
//! ```text
//!  mod          the role and its sessions, restore, disconnect, `wayfare close`, views, shutdown
//!  choice       offers as the API shows them, the buyer's own record of sellers, the ranking
//!  negotiation  `connect`: the request checked, an offer picked, keys stored, the session started
//!  resume       paused sessions in the store; a stored session rebuilt (restored or resumed)
//!  session      driving a session: peer messages and replies, its outputs, its events, persist
//!  chain        chain actions done and chain facts about the buyer's channels
//!  tunnel       shadowsocks or WireGuard up and down, a switch, and reading its meter
//!  lockdown     the kill switch that outlives sessions: up, kept, lifted
//!  rating       the seller's on-chain rating when a channel closes
//! ```

mod chain;
mod choice;
mod lockdown;
mod negotiation;
mod rating;
mod resume;
mod session;
mod tunnel;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use alloy_primitives::{Address, B256, U256};
use tokio::sync::mpsc;
use wayfare_chain::MarketClient;
use wayfare_p2p::PeerId;
use wayfare_proto::{
    Service, Timestamp,
    messages::{IpRange, Quote},
    negotiation::BuyerLimits,
    session::{BuyerPhase, BuyerSession, SessionConfig},
};

pub use self::choice::{
    FAILURE_COOLDOWN_SECS, LOCAL_WEIGHT, LocalRecord, PRICE_WEIGHT, local_scores,
    local_scores_from, offer_view, rank, session_record,
};
use self::tunnel::Tunnel;
use crate::{
    api_types::{ConnectRequest, DisconnectRequest, LockdownView, MeasuredView, SessionView},
    config::{BuyerConfig, ServiceName},
    error::NodeError,
    node::{Shared, now, parse_wei, service_name},
    quality::Measurements,
    store::SessionRow,
};

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
    /// The seller's data-plane endpoint, once revealed and the tunnel came up.
    endpoint: Option<SocketAddr>,
    /// Sessions this one replaces (`wayfare connect --switch`): left once its tunnel is up.
    replaces: Vec<String>,
    /// The seller's announced exit policy (`None` when the session was restored and its offer
    /// is not known: then nothing is refused on this side).
    exit_allow: Option<Vec<IpRange>>,
}

impl Entry {
    /// A session in memory with no tunnel, meter reading, error or run yet.
    #[allow(clippy::too_many_arguments)] // every field a new entry is given
    fn new(
        session: BuyerSession,
        peer: PeerId,
        seller: Address,
        service: Service,
        out: mpsc::UnboundedSender<Vec<u8>>,
        created_at: u64,
        phase: String,
        quote: Option<Quote>,
    ) -> Self {
        Self {
            session,
            peer,
            seller,
            service,
            out,
            tunnel: None,
            meter_seen: 0,
            created_at,
            phase,
            last_error: None,
            broken: false,
            socks: None,
            quote,
            run: None,
            endpoint: None,
            replaces: Vec::new(),
            exit_allow: None,
        }
    }
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
    lockdown: lockdown::Lockdown,
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
        exit: None,
        exit_refused: 0,
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

impl BuyerRole {
    /// The buyer role for `account`.
    pub fn new(
        cfg: BuyerConfig,
        account: Address,
        client: MarketClient,
        data_dir: std::path::PathBuf,
        own_hosts: Vec<std::net::Ipv4Addr>,
    ) -> Self {
        let lockdown =
            lockdown::Lockdown::new(cfg.kill_switch_on(), cfg.lockdown, &data_dir, own_hosts);
        Self {
            account,
            client,
            cfg,
            data_dir,
            sessions: BTreeMap::new(),
            by_channel: BTreeMap::new(),
            lockdown,
        }
    }

    /// The lockdown as the API shows it.
    pub fn lockdown_view(&self) -> LockdownView {
        self.lockdown.view()
    }

    /// `wayfare lockdown on|off`: up with the current rules, or lifted (even with
    /// `lockdown = "always"`, until the next `connect` or start).
    pub fn set_lockdown(&mut self, on: bool) -> Result<LockdownView, NodeError> {
        if on {
            self.lockdown.engage()?;
        } else {
            self.lockdown.lift();
        }
        Ok(self.lockdown.view())
    }

    fn live_ids(&self) -> Vec<String> {
        self.sessions
            .iter()
            .filter(|(_, e)| !e.session.is_ended() && !e.session.is_paused())
            .map(|(k, _)| k.clone())
            .collect()
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

    /// Brings back every session that had not ended (reconnecting a live tunnel).
    pub fn restore(&mut self, shared: &mut Shared) -> Result<(), NodeError> {
        // A lockdown left by a crash stays up before any tunnel is rebuilt.
        self.lockdown.start()?;
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

    /// The daemon stops: tunnels go down, channels stay open (a restart resumes them).
    pub fn shutdown(&mut self, _shared: &mut Shared) {
        for e in self.sessions.values_mut() {
            if let Some(t) = e.tunnel.take() {
                t.stop();
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
            // Sessions already leaving (a switch left them) go on closing by themselves.
            None => self
                .live_ids()
                .into_iter()
                .filter(|id| {
                    self.sessions
                        .get(id)
                        .is_some_and(|e| !e.session.is_closing())
                })
                .collect(),
        };
        if ids.is_empty() && self.lockdown.engaged() {
            // Nothing live (a seller cut it, the deposit ran out): only the lockdown is left.
            self.lockdown.after_disconnect();
            return Ok(ids);
        }
        if ids.is_empty() {
            return Err(NodeError::Invalid(
                "no live session to disconnect: `wayfare status` shows them".into(),
            ));
        }
        let now = now();
        for id in &ids {
            if let Some(e) = self.sessions.get_mut(id) {
                // The final voucher pays for every byte metered until now, not only until the
                // last tick.
                e.read_meter(shared, now);
                if req.close || !e.session.is_serving() {
                    e.session.leave(now);
                } else {
                    e.session.pause(now);
                }
            }
            self.drain(shared, id, None);
        }
        let staying = self
            .sessions
            .values()
            .any(|e| !e.session.is_ended() && !e.session.is_paused() && !e.session.is_closing());
        if !staying {
            self.lockdown.after_disconnect();
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
            let now = now();
            e.read_meter(shared, now);
            e.session.leave(now);
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
            exit: e
                .exit_allow
                .as_deref()
                .map(|r| tunnel::exit_policy(r).describe()),
            exit_refused: e.tunnel.as_ref().map_or(0, Tunnel::exit_refusals),
        })
    }
}
