//! Driving a buyer session: the seller's messages and replies, draining the session's outputs
//! (events first, then transmits), its events (persist, open, pause, top-up, leave) and the tick.

use alloy_primitives::Address;
use wayfare_chain::MarketClient;
use wayfare_p2p::{P2pError, PeerId};
use wayfare_proto::{
    Timestamp,
    messages::{Message, Quote},
    session::{BuyerEvent, BuyerPhase, BuyerSnapshot, ChannelState, CloseAction, EndReason},
};

use super::{BuyerRole, Entry, phase_name};
use crate::{
    actions,
    inbound::{RefusalKind, Refused},
    node::{Shared, now, unix_now},
    store::{ChannelRow, SessionRow},
};

/// The row a `Persist` of `snap` writes for session `id`.
fn persist_row(id: &str, entry: &Entry, snap: &BuyerSnapshot, now: Timestamp) -> SessionRow {
    SessionRow {
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
    }
}

/// The channel row a buyer's newly opened channel gets.
fn opened_channel_row(
    c: &ChannelState,
    seller: Address,
    account: Address,
    service: u8,
) -> ChannelRow {
    ChannelRow {
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
    }
}

impl BuyerRole {
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
        if !self.sessions.contains_key(id) {
            return;
        }
        match ev {
            BuyerEvent::Persist(snap) => self.persist(shared, id, &snap, now),
            BuyerEvent::OpenChannel {
                offer,
                seller_signature,
                voucher_signer,
                value,
            } => {
                let Some(entry) = self.sessions.get_mut(id) else {
                    return;
                };
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
                self.tunnel_up(shared, id, channel_id, &reveal, now);
            }
            BuyerEvent::StopService { reason } => self.tunnel_down(shared, id, reason),
            BuyerEvent::Paused { channel_id } => {
                tracing::info!(session = id, %channel_id, "paused: the channel stays open for a reconnect");
                if let Some(entry) = self.sessions.get_mut(id) {
                    entry.phase = "paused".into();
                }
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
            BuyerEvent::Leave { reason, close } => leave(shared, &client, id, reason, close),
        }
    }

    /// Stores a snapshot (with its voucher, its channel and the run so far) in one transaction; a
    /// failed write leaves the session without sending the voucher.
    fn persist(&mut self, shared: &mut Shared, id: &str, snap: &BuyerSnapshot, now: Timestamp) {
        let account = self.account;
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        entry.phase = phase_name(snap.phase).into();
        let row = persist_row(id, entry, snap, now);
        let seller = entry.seller;
        let service = entry.service.code();
        let run = entry.run.clone();
        let res = shared.with_store(|s| {
            s.atomically(|s| {
                if let Some(v) = &snap.last_voucher {
                    s.put_voucher(v.channel_id, v.amount, &v.signature, "buyer", unix_now())?;
                }
                if let Some(c) = &snap.channel
                    && s.channel(c.channel_id)?.is_none()
                {
                    s.put_channel(&opened_channel_row(c, seller, account, service))?;
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

    /// Meters and timers.
    pub fn on_tick(&mut self, shared: &mut Shared, now: Timestamp) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            let mut due = false;
            entry.read_meter(shared, now);
            if entry.session.poll_timeout().is_some_and(|t| t <= now) {
                entry.session.handle_timeout(now);
                due = true;
            }
            if due {
                self.drain(shared, &id, None);
            }
            self.forget_if_done(&id);
        }
    }

    /// Forgets an ended or paused session once it has nothing left to do (the store keeps it).
    fn forget_if_done(&mut self, id: &str) {
        if self.sessions.get(id).is_some_and(|e| {
            (e.session.is_ended() || (e.session.is_paused() && e.session.poll_timeout().is_none()))
                && e.tunnel.is_none()
        }) {
            let age = self
                .sessions
                .get(id)
                .map(|e| unix_now().saturating_sub(e.created_at))
                .unwrap_or(0);
            if age > 0 {
                self.sessions.remove(id);
            }
        }
    }
}

/// The session is over: the close it asks for becomes a durable chain action.
fn leave(
    shared: &mut Shared,
    client: &MarketClient,
    id: &str,
    reason: EndReason,
    close: CloseAction,
) {
    tracing::info!(session = id, ?reason, "leaving");
    match close {
        CloseAction::Cooperative { voucher, consent } => {
            let _ = shared.add_action(
                client,
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
                client,
                channel_id,
                "start_close",
                serde_json::json!({}),
                Some(id.to_string()),
            );
        }
        CloseAction::Nothing => {}
    }
}
