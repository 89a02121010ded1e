//! The node actor: one task owns every session, the store and the role state, and is fed by the
//! p2p events, the chain watcher, the API and its own completions. Sessions are the sans-IO
//! state machines of `wayfare-proto`; this shell does their I/O:
//!
//! * `Persist` is written to the store before anything else the session asked for is done;
//! * transmits go to the peer in order through one sender task per session;
//! * one-shot chain actions (open, settle, close, finalize) become an `actions` row first, then
//!   a transaction, retried while the chain is down.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::{Address, B256, U256};
use tokio::sync::{mpsc, oneshot};
use wayfare_chain::{
    ChainError, MarketClient, MarketLog, bindings::WayfareMarket::WayfareMarketEvents,
};
use wayfare_p2p::{OfferBook, P2pError, P2pEvent, P2pEvents, P2pHandle, PeerId};
use wayfare_proto::{
    Timestamp,
    messages::Message,
    session::{ChainEvent, ChannelOpened},
};

use crate::{
    api_types::{
        ChannelView, ConnectAnswer, ConnectRequest, DisconnectRequest, LockdownView, NodeStatus,
        OfferView, SellerStatus, SessionView, TxView,
    },
    buyer::BuyerRole,
    config::NodeConfig,
    error::NodeError,
    metrics::Metrics,
    seller::SellerRole,
    store::{ActionRow, Store},
};

/// How long one message to a peer may take before the next one goes.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one chain action may take before it is retried.
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The current time for the sessions (the only clock the node reads for them).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    now().as_secs()
}

/// What the API asks of the node.
#[derive(Debug)]
pub enum Command {
    /// Node and session summary.
    Status(oneshot::Sender<NodeStatus>),
    /// The offer book, sorted by `price`, `score` or `utility` (the default).
    Offers(String, oneshot::Sender<Result<Vec<OfferView>, NodeError>>),
    /// Start a buyer session.
    Connect(
        ConnectRequest,
        oneshot::Sender<Result<ConnectAnswer, NodeError>>,
    ),
    /// Leave buyer sessions.
    Disconnect(
        DisconnectRequest,
        oneshot::Sender<Result<Vec<String>, NodeError>>,
    ),
    /// The buyer's lockdown up (`true`) or lifted.
    Lockdown(bool, oneshot::Sender<Result<LockdownView, NodeError>>),
    /// One session.
    Session(String, oneshot::Sender<Result<SessionView, NodeError>>),
    /// Every session.
    Sessions(oneshot::Sender<Result<Vec<SessionView>, NodeError>>),
    /// Every channel.
    Channels(oneshot::Sender<Result<Vec<ChannelView>, NodeError>>),
    /// Close a channel (buyer: leave or start a close; seller: settle).
    Close(B256, oneshot::Sender<Result<String, NodeError>>),
    /// Seller earnings.
    SellerStatus(oneshot::Sender<Result<SellerStatus, NodeError>>),
    /// Withdraw the seller's (or buyer's) credited funds.
    Withdraw(oneshot::Sender<Result<TxView, NodeError>>),
}

/// Completions the node's own tasks report back.
#[allow(clippy::large_enum_variant)] // short-lived channel messages; boxing buys nothing
#[derive(Debug)]
pub enum Internal {
    /// A market event (with the voucher signer for `ChannelOpened`).
    Log(Box<MarketLog>, Option<Address>),
    /// Every event up to this block was delivered.
    ChainHead(u64),
    /// The chain could not be read.
    ChainDown(String),
    /// The reputation index read blocks `from..next` (re-reading the last few for reorgs).
    Indexed {
        /// First block read.
        from: u64,
        /// Next block to read.
        next: u64,
        /// Reputation events with their block and log index, chain order.
        events: Vec<(u64, u64, crate::reputation::RepEvent)>,
    },
    /// A peer answered a message a session sent (or the send failed).
    Reply {
        /// The session.
        session: String,
        /// The answer.
        result: Result<Option<Message>, P2pError>,
    },
    /// A chain action finished.
    ActionDone {
        /// The action row.
        action: i64,
        /// The session it belongs to, if any.
        session: Option<String>,
        /// Transaction hash, or the error and whether to retry.
        result: Result<String, (String, bool)>,
        /// For `open`: the `ChannelOpened` fields read back from the receipt's block.
        opened: Option<Box<ChannelOpened>>,
    },
}

/// State shared by both roles.
pub struct Shared {
    /// The config.
    pub cfg: NodeConfig,
    /// The store (the actor's; the mutex only lets spawned readers share it).
    pub store: Arc<Mutex<Store>>,
    /// The p2p node.
    pub p2p: P2pHandle,
    /// Where the node's tasks report.
    pub internal: mpsc::Sender<Internal>,
    /// Views only (no key).
    pub chain: MarketClient,
    /// The last block whose events were handled.
    pub chain_block: u64,
    /// Whether the last chain read worked.
    pub chain_ok: bool,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Actions being sent right now (so a retry doesn't double-send).
    pub in_flight: std::collections::BTreeSet<i64>,
    /// Next retry time of pending actions.
    pub retry_at: BTreeMap<i64, Timestamp>,
}

impl Shared {
    /// Runs `f` on the store.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        let guard = self.store.lock().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// A sender task for one session: messages go out in order; answers come back as
    /// [`Internal::Reply`].
    pub fn spawn_sender(&self, peer: PeerId, session: String) -> mpsc::UnboundedSender<Vec<u8>> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let p2p = self.p2p.clone();
        let internal = self.internal.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                let voucher = matches!(Message::decode(&bytes), Ok(Message::Voucher(_)));
                let sent = std::time::Instant::now();
                // One stuck request must not hold the ones behind it (the next voucher) past
                // the seller's grace: give up on it; the session resends what matters.
                let result =
                    match tokio::time::timeout(SEND_TIMEOUT, p2p.request_raw(peer, bytes)).await {
                        Ok(r) => r,
                        Err(_) => Err(P2pError::Request {
                            peer,
                            reason: format!("no answer within {} s", SEND_TIMEOUT.as_secs()),
                        }),
                    };
                if voucher && result.is_ok() {
                    metrics
                        .voucher_acks
                        .record(std::time::Instant::now(), sent.elapsed());
                }
                if internal
                    .send(Internal::Reply {
                        session: session.clone(),
                        result,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        tx
    }

    /// Makes a chain action durable and sends it.
    pub fn add_action(
        &mut self,
        client: &MarketClient,
        channel: B256,
        kind: &str,
        payload: serde_json::Value,
        session: Option<String>,
    ) -> Result<i64, NodeError> {
        let id = self.with_store(|s| s.add_action(channel, kind, &payload, unix_now()))?;
        tracing::info!(%channel, kind, action = id, "chain action recorded");
        let row = ActionRow {
            id,
            channel_id: channel,
            kind: kind.into(),
            payload,
            state: "pending".into(),
            attempts: 0,
            last_error: None,
            tx_hash: None,
        };
        self.send_action(client, row, session);
        Ok(id)
    }

    /// Sends a recorded action (again).
    pub fn send_action(&mut self, client: &MarketClient, row: ActionRow, session: Option<String>) {
        if !self.in_flight.insert(row.id) {
            return;
        }
        self.retry_at.remove(&row.id);
        let client = client.clone();
        let internal = self.internal.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            // A node that accepts the connection and never answers must not hold the action
            // forever: give up after a while and retry (the contract makes a repeat harmless).
            let (result, opened) =
                match tokio::time::timeout(ACTION_TIMEOUT, crate::actions::execute(&client, &row))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => (
                        Err((
                            format!(
                                "the chain did not answer within {} s; retrying",
                                ACTION_TIMEOUT.as_secs()
                            ),
                            true,
                        )),
                        None,
                    ),
                };
            metrics.tx(result.is_ok());
            let _ = internal
                .send(Internal::ActionDone {
                    action: row.id,
                    session,
                    result,
                    opened,
                })
                .await;
        });
    }
}

/// The node actor.
pub struct Node {
    pub(crate) shared: Shared,
    pub(crate) seller: Option<SellerRole>,
    pub(crate) buyer: Option<BuyerRole>,
    pub(crate) offers: OfferBook,
    /// Reputation folded from every market event since the start block.
    pub indexer: crate::indexer::Indexer,
}

impl Node {
    /// Builds the actor (the daemon wires its inputs).
    pub fn new(shared: Shared, seller: Option<SellerRole>, buyer: Option<BuyerRole>) -> Self {
        Self {
            shared,
            seller,
            buyer,
            offers: OfferBook::new(),
            indexer: crate::indexer::Indexer::default(),
        }
    }

    /// Restores persisted sessions and resends pending chain actions.
    pub fn restore(&mut self) -> Result<(), NodeError> {
        if let Some(s) = &mut self.seller {
            s.restore(&mut self.shared)?;
        }
        if let Some(b) = &mut self.buyer {
            b.restore(&mut self.shared)?;
        }
        let pending = self.shared.with_store(|s| s.pending_actions())?;
        for row in pending {
            tracing::info!(action = row.id, kind = %row.kind, channel = %row.channel_id, "resending a chain action from before the restart");
            self.route_action(row, None);
        }
        Ok(())
    }

    fn route_action(&mut self, row: ActionRow, session: Option<String>) {
        let seller_side = matches!(row.kind.as_str(), "settle" | "submit_voucher")
            || (matches!(row.kind.as_str(), "rate" | "finalize")
                && row.payload["side"] == "seller");
        let client = if seller_side {
            self.seller.as_ref().map(|s| s.client.clone())
        } else {
            self.buyer.as_ref().map(|b| b.client.clone())
        };
        match client {
            Some(c) => self.shared.send_action(&c, row, session),
            None => {
                tracing::warn!(action = row.id, kind = %row.kind, "no role can send this action; it stays pending")
            }
        }
    }

    /// Runs until `shutdown` fires.
    pub async fn run(
        mut self,
        mut p2p: P2pEvents,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::Receiver<Internal>,
        mut shutdown: oneshot::Receiver<()>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // In this order, first ready first: an open channel's messages (vouchers, usage,
            // close…) before anything else, so a flood can't hold a voucher past its grace;
            // then our own completions (chain logs, replies) and the API, then the tick (ready
            // at most every 100 ms, so it is never starved for long behind session traffic,
            // which the p2p rate limit bounds); then new quotes (each costs a signature: they
            // wait behind all of this, and the p2p task answers "busy" once their queue is
            // full); announcements last (dropped, counted, when behind).
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(req) = p2p.sessions.recv() => self.on_p2p(req.into()),
                Some(msg) = internal.recv() => self.on_internal(msg),
                Some(cmd) = commands.recv() => self.on_command(cmd).await,
                _ = tick.tick() => self.on_tick(),
                Some(req) = p2p.quotes.recv() => self.on_p2p(req.into()),
                Some(ev) = p2p.events.recv() => self.on_p2p(ev),
            }
        }
        // Stop serving: sellers settle what they hold, buyers keep their channels (a restart
        // resumes them).
        if let Some(s) = &mut self.seller {
            s.shutdown(&mut self.shared);
        }
        if let Some(b) = &mut self.buyer {
            b.shutdown(&mut self.shared);
        }
        // Let the last persists and actions go out.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !self.shared.in_flight.is_empty() && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), internal.recv()).await {
                Ok(Some(msg)) => self.on_internal(msg),
                Ok(None) => break,
                Err(_) => {}
            }
        }
    }

    fn on_p2p(&mut self, ev: P2pEvent) {
        match ev {
            P2pEvent::Announcement { announcement, .. } => {
                self.offers.insert(announcement, unix_now());
            }
            P2pEvent::Request {
                peer,
                message,
                responder,
            } => {
                self.shared.metrics.message_in();
                let name = message.name();
                let seller = &self.seller;
                let buyer = &self.buyer;
                let target = crate::inbound::route(
                    &message,
                    |c| seller.as_ref().is_some_and(|s| s.has_channel(c)),
                    |c| buyer.as_ref().is_some_and(|b| b.has_channel(c)),
                );
                let reply = match target {
                    Ok(crate::inbound::Route::Seller) => match &mut self.seller {
                        Some(s) => {
                            s.on_request(&mut self.shared, &self.indexer.ledger, peer, message)
                        }
                        None => Err(crate::inbound::Refused::new(
                            crate::inbound::RefusalKind::BadRequest,
                            "this node does not sell",
                        )),
                    },
                    Ok(crate::inbound::Route::Buyer) => match &mut self.buyer {
                        Some(b) => b.on_request(&mut self.shared, peer, message),
                        None => Err(crate::inbound::Refused::new(
                            crate::inbound::RefusalKind::BadRequest,
                            "this node does not buy",
                        )),
                    },
                    Err(r) => Err(r),
                };
                let sent = match reply {
                    Ok(Some(bytes)) => match Message::decode(&bytes) {
                        Ok(m) => responder.respond(&m),
                        Err(_) => responder.ack(),
                    },
                    Ok(None) => responder.ack(),
                    Err(refused) => {
                        self.shared.metrics.refused.record(&peer, name, &refused);
                        responder.respond(&refused.message())
                    }
                };
                if let Err(e) = sent {
                    tracing::debug!(%peer, error = %e, "reply not delivered");
                }
            }
            P2pEvent::Listening(addr) => tracing::info!(%addr, "p2p listening"),
            P2pEvent::AnnouncementRejected { from, reason } => {
                tracing::debug!(%from, %reason, "announcement rejected")
            }
            _ => {}
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Log(log, signer) => {
                self.shared.chain_ok = true;
                self.on_log(&log, signer);
            }
            Internal::ChainHead(head) => {
                self.shared.chain_ok = true;
                // Written only when it moved: every write is a sync to disk on the actor.
                let moved = head != self.shared.chain_block;
                self.shared.chain_block = head;
                let next = head + 1;
                if moved
                    && let Err(e) = self
                        .shared
                        .with_store(|s| s.set_meta("chain_next_block", &next.to_string()))
                {
                    tracing::error!(error = %e, "could not record the chain cursor");
                }
            }
            Internal::Indexed { from, next, events } => {
                let store = self.shared.store.clone();
                let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = self.indexer.apply_batch(&mut guard, from, next, &events) {
                    tracing::error!(error = %e, "could not store indexed events");
                }
            }
            Internal::ChainDown(why) => {
                self.shared.chain_ok = false;
                tracing::debug!(%why, "chain read failed");
            }
            Internal::Reply { session, result } => {
                if let Some(b) = &mut self.buyer
                    && b.has(&session)
                {
                    b.on_reply(&mut self.shared, &session, result);
                } else if let Some(s) = &mut self.seller
                    && s.has(&session)
                {
                    s.on_reply(&mut self.shared, &session, result);
                }
            }
            Internal::ActionDone {
                action,
                session,
                result,
                opened,
            } => self.on_action_done(action, session, result, opened),
        }
    }

    fn on_action_done(
        &mut self,
        action: i64,
        session: Option<String>,
        result: Result<String, (String, bool)>,
        opened: Option<Box<ChannelOpened>>,
    ) {
        self.shared.in_flight.remove(&action);
        let now_s = unix_now();
        let update = match &result {
            Ok(tx) => {
                tracing::info!(action, %tx, "chain action mined");
                self.shared
                    .with_store(|s| s.update_action(action, "done", None, Some(tx), now_s))
            }
            Err((why, true)) => {
                tracing::warn!(action, %why, "chain action failed; will retry");
                self.shared
                    .retry_at
                    .insert(action, now().saturating_add(Duration::from_secs(3)));
                self.shared
                    .with_store(|s| s.update_action(action, "pending", Some(why), None, now_s))
            }
            Err((why, false)) => {
                tracing::warn!(action, %why, "chain action refused");
                self.shared
                    .with_store(|s| s.update_action(action, "failed", Some(why), None, now_s))
            }
        };
        if let Err(e) = update {
            tracing::error!(action, error = %e, "could not record the action's outcome");
        }
        if let Some(session) = session
            && let Some(b) = &mut self.buyer
            && b.has(&session)
        {
            b.on_action_done(&mut self.shared, &session, &result, opened);
        }
    }

    fn on_log(&mut self, log: &MarketLog, signer: Option<Address>) {
        let ev =
            match &log.event {
                WayfareMarketEvents::ChannelOpened(e) => match signer {
                    Some(voucher_signer) => ChainEvent::ChannelOpened(
                        crate::actions::opened_fields(e, voucher_signer, log.tx),
                    ),
                    None => return,
                },
                WayfareMarketEvents::ToppedUp(e) => ChainEvent::ToppedUp {
                    channel_id: e.id,
                    deposit: e.deposit,
                },
                WayfareMarketEvents::CloseStarted(e) => ChainEvent::CloseStarted {
                    channel_id: e.id,
                    closes_at: e.closesAt,
                },
                WayfareMarketEvents::ChannelClosed(e) => ChainEvent::ChannelClosed {
                    channel_id: e.id,
                    to_seller: e.toSeller,
                    to_buyer: e.toBuyer,
                },
                _ => return,
            };
        if let Some(s) = &mut self.seller {
            s.on_chain_event(&mut self.shared, &ev);
            s.rate_on_close(&mut self.shared, &ev);
        }
        if let Some(b) = &mut self.buyer {
            b.on_chain_event(&mut self.shared, &ev);
            b.rate_on_close(&mut self.shared, &ev);
        }
    }

    fn on_tick(&mut self) {
        let now = now();
        if let Some(s) = &mut self.seller {
            s.on_tick(&mut self.shared, now);
        }
        if let Some(b) = &mut self.buyer {
            b.on_tick(&mut self.shared, now);
        }
        // Retry pending actions whose time has come.
        let due: Vec<i64> = self
            .shared
            .retry_at
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        if !due.is_empty() {
            let pending = self
                .shared
                .with_store(|s| s.pending_actions())
                .unwrap_or_default();
            for id in due {
                self.shared.retry_at.remove(&id);
                if let Some(row) = pending.iter().find(|r| r.id == id) {
                    self.route_action(row.clone(), None);
                }
            }
        }
        self.offers.prune(now.as_secs());
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(tx) => {
                let _ = tx.send(self.status().await);
            }
            Command::Offers(sort, tx) => {
                let _ = tx.send(self.offer_views(&sort));
            }
            Command::Connect(req, tx) => {
                let r = match &mut self.buyer {
                    Some(b) => {
                        b.connect(&mut self.shared, &self.offers, &self.indexer.ledger, req)
                            .await
                    }
                    None => Err(NodeError::NoRole("buyer")),
                };
                let _ = tx.send(r);
            }
            Command::Disconnect(req, tx) => {
                let r = match &mut self.buyer {
                    Some(b) => b.disconnect(&mut self.shared, req),
                    None => Err(NodeError::NoRole("buyer")),
                };
                let _ = tx.send(r);
            }
            Command::Lockdown(on, tx) => {
                let r = match &mut self.buyer {
                    Some(b) => b.set_lockdown(on),
                    None => Err(NodeError::NoRole("buyer")),
                };
                let _ = tx.send(r);
            }
            Command::Session(id, tx) => {
                // `wayfare connect` polls this: look at one session, not all of them.
                let now = now();
                let live = self
                    .seller
                    .as_ref()
                    .and_then(|s| s.view(&id, now))
                    .or_else(|| self.buyer.as_ref().and_then(|b| b.view(&id, now)));
                let r = match live {
                    Some(v) => Ok(v),
                    None => match self.shared.with_store(|s| s.session(&id)) {
                        Ok(Some(row)) => Ok(crate::buyer::row_view(&row)),
                        Ok(None) => Err(NodeError::NoSuchSession(id)),
                        Err(e) => Err(e.into()),
                    },
                };
                let _ = tx.send(r);
            }
            Command::Sessions(tx) => {
                let _ = tx.send(Ok(self.sessions()));
            }
            Command::Channels(tx) => {
                let _ = tx.send(self.channels());
            }
            Command::Close(id, tx) => {
                let r = self.close(id);
                let _ = tx.send(r);
            }
            Command::SellerStatus(tx) => {
                let r = match &self.seller {
                    Some(s) => {
                        let sessions = self.sessions();
                        s.status(&self.shared, sessions).await
                    }
                    None => Err(NodeError::NoRole("seller")),
                };
                let _ = tx.send(r);
            }
            Command::Withdraw(tx) => {
                let client = if let Some(s) = &self.seller {
                    s.payout_client.clone()
                } else {
                    self.buyer.as_ref().map(|b| b.client.clone())
                };
                match client {
                    None => {
                        let _ = tx.send(Err(NodeError::Invalid(
                            "withdrawing needs the seller's account keystore ([seller] account_keystore) or a buyer role".into(),
                        )));
                    }
                    // A transaction takes a block or more: off the actor, so sessions go on.
                    Some(c) => {
                        tokio::spawn(async move {
                            let _ = tx.send(withdraw(c).await);
                        });
                    }
                }
            }
        }
    }

    fn offer_views(&self, sort: &str) -> Result<Vec<OfferView>, NodeError> {
        let offers = self.offers.query(
            &wayfare_p2p::OfferFilter::default(),
            unix_now(),
            &wayfare_p2p::CheapestFirst,
        );
        let local = crate::buyer::local_scores_from(&self.shared);
        // Ranked as `wayfare connect` picks: recent failures last, then by utility.
        let ranked = crate::buyer::rank(&offers, &self.indexer.ledger, &local);
        let mut views: Vec<(OfferView, u128)> = ranked
            .into_iter()
            .map(|(a, score, _)| {
                let mut v = crate::buyer::offer_view(a);
                v.score = Some((score * 1000.0).round() / 1000.0);
                v.failed_recently = local.get(&a.seller).is_some_and(|l| l.failed_recently);
                let price = a
                    .terms
                    .price_per_mib
                    .saturating_add(a.terms.price_per_second);
                (v, price)
            })
            .collect();
        match sort {
            "price" => views.sort_by_key(|v| v.1), // stable: equal prices keep the ranking
            "score" => views.sort_by(|a, b| {
                b.0.score
                    .unwrap_or(0.0)
                    .total_cmp(&a.0.score.unwrap_or(0.0))
            }),
            "utility" | "" => {}
            other => {
                return Err(NodeError::Invalid(format!(
                    "unknown sort {other:?}: use price, score or utility"
                )));
            }
        }
        Ok(views.into_iter().map(|(v, _)| v).collect())
    }

    fn close(&mut self, id: B256) -> Result<String, NodeError> {
        if let Some(b) = &mut self.buyer
            && let Some(r) = b.close_channel(&mut self.shared, id)?
        {
            return Ok(r);
        }
        if let Some(s) = &mut self.seller
            && let Some(r) = s.close_channel(&mut self.shared, id)?
        {
            return Ok(r);
        }
        Err(NodeError::Invalid(format!(
            "channel {id} is not one of this node's open channels: see `wayfare channels`"
        )))
    }

    pub(crate) fn sessions(&self) -> Vec<SessionView> {
        let now = now();
        let mut out = Vec::new();
        let stored = self.shared.with_store(|s| {
            let mut v = s.sessions("seller").unwrap_or_default();
            v.extend(s.sessions("buyer").unwrap_or_default());
            v
        });
        for row in stored {
            let live = self
                .seller
                .as_ref()
                .and_then(|s| s.view(&row.id, now))
                .or_else(|| self.buyer.as_ref().and_then(|b| b.view(&row.id, now)));
            out.push(live.unwrap_or_else(|| crate::buyer::row_view(&row)));
        }
        out
    }

    fn channels(&self) -> Result<Vec<ChannelView>, NodeError> {
        let rows = self.shared.with_store(|s| s.channels())?;
        let mut out = Vec::new();
        for c in rows {
            let (voucher, count, actions) = self.shared.with_store(|s| {
                (
                    s.best_voucher(c.id).ok().flatten(),
                    s.voucher_count(c.id).unwrap_or(0),
                    s.actions(c.id).unwrap_or_default(),
                )
            });
            out.push(ChannelView {
                id: c.id.to_string(),
                role: c.role.clone(),
                seller: c.seller.clone(),
                buyer: c.buyer.clone(),
                service: service_name(c.service).into(),
                state: c.state.clone(),
                deposit_wei: c.deposit_wei.to_string(),
                voucher_wei: voucher.map(|v| v.0).unwrap_or_default().to_string(),
                vouchers: count,
                to_seller_wei: c.to_seller_wei.map(|v| v.to_string()),
                to_buyer_wei: c.to_buyer_wei.map(|v| v.to_string()),
                closes_at: c.closes_at,
                pending_actions: actions
                    .iter()
                    .filter(|a| a.state == "pending")
                    .map(|a| a.kind.clone())
                    .collect(),
            });
        }
        Ok(out)
    }

    async fn status(&self) -> NodeStatus {
        let mut roles = Vec::new();
        if self.seller.is_some() {
            roles.push("seller".to_string());
        }
        if self.buyer.is_some() {
            roles.push("buyer".to_string());
        }
        let addrs = self
            .shared
            .p2p
            .listen_addrs()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        NodeStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            roles,
            peer_id: self.shared.p2p.peer_id().to_string(),
            p2p_addrs: addrs,
            advertise: match self.shared.cfg.advertise() {
                crate::config::AdvertiseMode::Relay => "relay".into(),
                crate::config::AdvertiseMode::Direct => "direct".into(),
            },
            relays: self.shared.cfg.p2p.relays.clone(),
            relay_server: self.shared.cfg.p2p.relay_server,
            outside_tunnel: self
                .shared
                .cfg
                .own_hosts()
                .iter()
                .map(|h| h.to_string())
                .collect(),
            chain_id: self.shared.chain.chain_id(),
            market: self.shared.chain.address().to_string(),
            chain_block: self.shared.chain_block,
            chain_ok: self.shared.chain_ok,
            p2p_peers: self.shared.p2p.stats().peers(),
            seller: self.seller.as_ref().map(|s| s.account.to_string()),
            buyer: self.buyer.as_ref().map(|b| b.account.to_string()),
            sessions: self.sessions(),
            lockdown: self.buyer.as_ref().map(|b| b.lockdown_view()),
        }
    }
}

async fn withdraw(c: MarketClient) -> Result<TxView, NodeError> {
    let me = c.from().unwrap_or_default();
    let amount = c.withdrawable(me).await?;
    if amount.is_zero() {
        return Err(NodeError::Invalid(format!(
            "nothing to withdraw for {me}: channels credit it when they close"
        )));
    }
    let o = c.withdraw().await?;
    Ok(TxView {
        tx: o.hash.to_string(),
        amount_wei: Some(amount.to_string()),
    })
}

/// The service's name for a code.
pub fn service_name(code: u8) -> &'static str {
    match code {
        1 => "wireguard",
        2 => "shadowsocks",
        _ => "unknown",
    }
}

/// Whether a chain error is worth retrying (the chain is down, not a refusal).
pub fn retryable(e: &ChainError) -> bool {
    matches!(
        e,
        ChainError::Unreachable { .. } | ChainError::Rpc { .. } | ChainError::TxFailed { .. }
    )
}

/// A 16-byte session id as hex.
pub fn new_session_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// `amount` as `U256` from a decimal string, or an error naming `what`.
pub fn parse_wei(what: &str, s: &str) -> Result<U256, NodeError> {
    wayfare_chain::units::parse_amount(s).map_err(|e| NodeError::Invalid(format!("{what}: {e}")))
}
