//! Driving a seller session: the buyer's messages (and what a peer other than the session's may
//! try), replies, draining the session's outputs, its events (persist, serve, stop, settle,
//! watchtower) and the tick with its meters and settle policy.

use alloy_primitives::{Address, B256};
use wayfare_p2p::{P2pError, PeerId};
use wayfare_proto::{
    Timestamp,
    messages::Message,
    session::{ChannelState, SellerEvent, SellerPhase, SellerSession, SellerSnapshot},
};

use super::{Entry, SellerRole, chain::watchtower};
use crate::{
    actions,
    inbound::{RefusalKind, Refused},
    node::{Shared, now, service_name, unix_now},
    store::{ChannelRow, SessionRow},
};

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

/// The row a `Persist` of `snap` writes for session `id`.
fn persist_row(id: &str, entry: &Entry, snap: &SellerSnapshot, now: Timestamp) -> SessionRow {
    SessionRow {
        id: id.to_string(),
        role: "seller".into(),
        channel_id: entry.session.channel_id(),
        peer: entry.peer.to_string(),
        counterparty: entry.buyer.to_string(),
        service: entry.service.code(),
        snapshot: Some(snap.to_bytes()),
        phase: format!("{:?}", snap.phase).to_lowercase(),
        ended: matches!(snap.phase, SellerPhase::Ended),
        end_reason: snap.end.map(|r| format!("{r:?}")),
        bytes: snap.meter_bytes,
        paid_wei: snap.best.map(|v| v.amount).unwrap_or_default(),
        owed_wei: entry.session.owed(now),
        seconds: entry.session.billed_seconds(now),
        created_at: entry.created_at,
        updated_at: unix_now(),
    }
}

/// The channel row a seller's newly opened channel gets.
fn opened_channel_row(c: &ChannelState, seller: Address, entry: &Entry) -> ChannelRow {
    ChannelRow {
        id: c.channel_id,
        role: "seller".into(),
        seller: seller.to_string(),
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
    }
}

impl SellerRole {
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
                if let Some(refusal) = self
                    .unreachable_refusal()
                    .or_else(|| self.below_min_score(ledger, &req.buyer))
                {
                    return Ok(Some(Message::Refusal(refusal).encode()));
                }
                self.check_pending(&peer)?;
                self.new_quoted_session(shared, peer, req)
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
        self.deliver(shared, &id, peer, message, now)?;
        let mut first = None;
        self.drain(shared, &id, Some(&mut first));
        Ok(first)
    }

    /// Hands `message` from `peer` to session `id`: a stranger only what it may try, and a
    /// stranger's new signed message re-binds the session to it.
    fn deliver(
        &mut self,
        shared: &mut Shared,
        id: &str,
        peer: PeerId,
        message: Message,
        now: Timestamp,
    ) -> Result<(), Refused> {
        let entry = self
            .sessions
            .get(id)
            .ok_or_else(|| Refused::new(RefusalKind::UnknownSession, "session gone"))?;
        let stranger = entry.peer != peer;
        if stranger {
            stranger_may_try(&entry.session, &message)?;
        }
        // The meter first, so a close is signed for every byte carried until it came.
        self.read_meter(shared, id, now);
        let entry = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| Refused::new(RefusalKind::UnknownSession, "session gone"))?;
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
            entry.out = shared.spawn_sender(peer, id.to_string());
        }
        if let Some(c) = entry.session.channel_id() {
            self.by_channel.entry(c).or_insert_with(|| id.to_string());
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
    pub(super) fn drain(
        &mut self,
        shared: &mut Shared,
        id: &str,
        mut first: Option<&mut Option<Vec<u8>>>,
    ) {
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
        self.forget_if_ended(id);
    }

    /// Drops an ended session; chain events of its channel go to the store (watchtower) from
    /// now on.
    fn forget_if_ended(&mut self, id: &str) {
        let ended = self.sessions.get(id).is_some_and(|e| e.session.is_ended());
        if ended && let Some(e) = self.sessions.remove(id) {
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
            SellerEvent::Persist(snap) => self.persist(shared, id, &snap, now),
            ev @ SellerEvent::StartService { .. } => self.start_service(shared, id, ev, now),
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

    /// The session's `StartService`: the buyer's access is provisioned and the session serves
    /// (and reveals, when it waits for that), or it is cut.
    fn start_service(&mut self, shared: &mut Shared, id: &str, ev: SellerEvent, now: Timestamp) {
        let SellerEvent::StartService {
            channel_id,
            buyer,
            service,
            wireguard_key,
            needs_reveal,
        } = ev
        else {
            return;
        };
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
                entry.session.close(now);
            }
        }
    }

    /// Stores a snapshot (with the best voucher and its channel) in one transaction; a failed
    /// write cuts the session and acknowledges nothing.
    fn persist(&mut self, shared: &mut Shared, id: &str, snap: &SellerSnapshot, now: Timestamp) {
        let account = self.account;
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        // A quote costs the seller no disk write: anyone may ask for one. The session is
        // stored from its channel's opening on (a restart loses only unopened quotes).
        if snap.phase == SellerPhase::Quoted {
            return;
        }
        let row = persist_row(id, entry, snap, now);
        let res = shared.with_store(|s| {
            s.atomically(|s| {
                if let Some(v) = &snap.best {
                    s.put_voucher(v.channel_id, v.amount, &v.signature, "seller", unix_now())?;
                }
                if let Some(c) = &snap.channel
                    && s.channel(c.channel_id)?.is_none()
                {
                    s.put_channel(&opened_channel_row(c, account, entry))?;
                }
                s.put_session(&row)
            })
        });
        shared.metrics.persist(res.is_ok());
        if let Err(e) = res {
            tracing::error!(session = id, error = %e, "persist failed: cutting the session, acknowledging nothing");
            entry.broken = true;
            entry.last_error = Some(e.to_string());
            entry.session.close(now);
        }
    }

    /// Timers, meters, announcements and the settle policy.
    pub fn on_tick(&mut self, shared: &mut Shared, now: Timestamp) {
        if now >= self.next_announce {
            self.announce(shared, now);
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let mut due = self.read_meter(shared, &id, now);
            if let Some(entry) = self.sessions.get_mut(&id) {
                if entry.session.poll_timeout().is_some_and(|t| t <= now) {
                    entry.session.handle_timeout(now);
                    due = true;
                }
                due |= self.settle_policy(&id, now);
            }
            if due {
                self.drain(shared, &id, None);
            }
        }
    }

    /// Hands the bytes session `id`'s service metered since the last reading to the session
    /// (before every message too, so a close is signed for every byte carried until it came).
    /// Whether there were any.
    fn read_meter(&mut self, shared: &Shared, id: &str, now: Timestamp) -> bool {
        let Some(entry) = self.sessions.get(id) else {
            return false;
        };
        if !entry.serving {
            return false;
        }
        let Some(total) = self.meter_total(id, entry.service) else {
            return false;
        };
        let Some(entry) = self.sessions.get_mut(id) else {
            return false;
        };
        if total <= entry.meter_seen {
            return false;
        }
        let delta = total - entry.meter_seen;
        entry.meter_seen = total;
        shared.metrics.bytes(delta);
        entry.session.handle_meter(delta, now);
        true
    }

    /// Settle policy: a serving session whose best voucher reached `[seller] settle_threshold`
    /// or whose channel is `settle_max_age_secs` old is closed (and settled). Whether it was.
    fn settle_policy(&mut self, id: &str, now: Timestamp) -> bool {
        let Some(entry) = self.sessions.get_mut(id) else {
            return false;
        };
        if !entry.session.is_serving() {
            return false;
        }
        let best = entry
            .session
            .best_voucher()
            .map(|v| v.amount)
            .unwrap_or_default();
        let threshold = self.cfg.settle_threshold.0;
        let age = unix_now().saturating_sub(entry.created_at);
        let too_old = self.cfg.settle_max_age_secs > 0 && age >= self.cfg.settle_max_age_secs;
        if (!threshold.is_zero() && best >= threshold) || too_old {
            tracing::info!(session = %id, %best, age, "settle policy: closing the session and settling");
            entry.session.close(now);
            return true;
        }
        false
    }
}
