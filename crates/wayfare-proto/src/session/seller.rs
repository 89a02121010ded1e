//! The seller's side of a session: quote, wait for the channel, reveal, meter, collect vouchers,
//! cut and settle; pause and resume on the same channel.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::Eip712Domain;
use rand_core::{CryptoRng, RngCore};

use crate::billing::{self, min_acceptable};
use crate::codec::DecodeError;
use crate::eip712;
use crate::keys::SecretKey;
use crate::messages::{
    CloseReason, CloseRequest, Message, Quote, QuoteRequest, Refusal, RefusalReason, Resume,
    Reveal, SignedCloseConsent, SignedVoucher, Usage,
};
use crate::negotiation::{self, offer_terms};
use crate::seal::{self, RevealPayload};
use crate::session::config::SessionConfig;
use crate::session::error::SessionError;
use crate::session::events::{ChainEvent, EndReason, SellerEvent, billed_seconds};
use crate::session::outbox::Outbox;
use crate::session::snapshot::{ChannelState, SellerPhase, SellerSnapshot};
use crate::types::{Service, ServiceSet, Terms, Timestamp};

/// Who the seller is and what it lists.
#[derive(Debug, Clone)]
pub struct SellerParams {
    /// Chain id of the market.
    pub chain_id: u64,
    /// The market contract.
    pub market: Address,
    /// The seller's registered account.
    pub seller: Address,
    /// The seller's current signer (signs offers and close consents).
    pub signer: SecretKey,
    /// List terms.
    pub list_terms: Terms,
    /// Services offered.
    pub services: ServiceSet,
}

/// Internal phase; `AwaitingRequest` has no persisted twin (nothing to keep before a quote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingRequest,
    Quoted,
    Provisioning,
    Serving,
    /// The buyer asked to close: consent sent, still taking a final voucher until the deadline.
    Closing,
    /// The buyer paused: service stopped, the channel kept for a `Resume` until the pause
    /// deadline, then settled.
    Paused,
    Ended,
}

impl Phase {
    const fn name(self) -> &'static str {
        match self {
            Self::AwaitingRequest => "awaiting a quote request",
            Self::Quoted => "quoted",
            Self::Provisioning => "provisioning",
            Self::Serving => "serving",
            Self::Closing => "closing",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }
}

/// One seller session: one buyer, one offer, one channel. See the [module docs](super).
#[derive(Debug)]
pub struct SellerSession {
    params: SellerParams,
    config: SessionConfig,
    domain: Eip712Domain,
    phase: Phase,
    request: Option<QuoteRequest>,
    quote: Option<Quote>,
    refusal: Option<Refusal>,
    channel: Option<ChannelState>,
    reveal: Option<Reveal>,
    service_start: Option<Timestamp>,
    service_end: Option<Timestamp>,
    meter_bytes: u64,
    best: Option<SignedVoucher>,
    last_arrival: Timestamp,
    closing_deadline: Timestamp,
    paused_at: Timestamp,
    /// Seconds billed in earlier service runs (before a pause).
    prior_seconds: u64,
    /// The current service run: 0 for the first, +1 per accepted `Resume`.
    run: u32,
    consent: Option<SignedCloseConsent>,
    end: Option<EndReason>,
    out: Outbox<SellerEvent>,
}

impl SellerSession {
    /// A session waiting for a buyer's `QuoteRequest`.
    pub fn new(params: SellerParams, config: SessionConfig) -> Self {
        let domain = eip712::domain(params.chain_id, params.market);
        Self {
            params,
            config,
            domain,
            phase: Phase::AwaitingRequest,
            request: None,
            quote: None,
            refusal: None,
            channel: None,
            reveal: None,
            service_start: None,
            service_end: None,
            meter_bytes: 0,
            best: None,
            last_arrival: Timestamp::default(),
            closing_deadline: Timestamp::default(),
            paused_at: Timestamp::default(),
            prior_seconds: 0,
            run: 0,
            consent: None,
            end: None,
            out: Outbox::default(),
        }
    }

    /// Rebuilds a session from its last persisted snapshot. A serving session emits
    /// `StartService { needs_reveal: false }` so the shell brings the buyer's access back, and
    /// gives the buyer a fresh interval + grace to pay. A paused session stays paused, its pause
    /// deadline counted from `now`.
    pub fn restore(
        snapshot: SellerSnapshot,
        params: SellerParams,
        config: SessionConfig,
        now: Timestamp,
    ) -> Self {
        let mut s = Self::new(params, config);
        s.phase = match snapshot.phase {
            SellerPhase::Quoted => Phase::Quoted,
            SellerPhase::Provisioning => Phase::Provisioning,
            SellerPhase::Serving => Phase::Serving,
            SellerPhase::Ended => Phase::Ended,
            SellerPhase::Closing => Phase::Closing,
            SellerPhase::Paused => Phase::Paused,
        };
        s.request = Some(snapshot.request);
        s.quote = Some(snapshot.quote);
        s.channel = snapshot.channel;
        s.reveal = snapshot.reveal;
        s.service_start = snapshot.service_start;
        s.meter_bytes = snapshot.meter_bytes;
        s.best = snapshot.best;
        s.end = snapshot.end;
        s.prior_seconds = snapshot.prior_seconds;
        s.run = snapshot.run;
        s.last_arrival = now;
        s.closing_deadline = now.saturating_add(s.config.close_timeout);
        s.paused_at = now;
        if matches!(s.phase, Phase::Provisioning | Phase::Serving) {
            s.emit_start_service(s.phase == Phase::Provisioning);
        }
        s
    }

    // ---------------------------------------------------------------- inputs

    /// Decodes and handles one message from the buyer.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Timestamp) -> Result<(), SessionError> {
        let msg = Message::decode(bytes)?;
        self.handle_message(msg, now)
    }

    /// Handles one message from the buyer.
    pub fn handle_message(&mut self, msg: Message, now: Timestamp) -> Result<(), SessionError> {
        match msg {
            Message::QuoteRequest(req) => self.on_quote_request(req, now),
            Message::Opened(o) => {
                self.check_channel(o.channel_id)?;
                match self.phase {
                    // The buyer didn't get the reveal: send it again.
                    Phase::Serving => {
                        if let Some(r) = &self.reveal {
                            self.out.transmit(Message::Reveal(r.clone()).encode());
                        }
                        Ok(())
                    }
                    // The seller acts on the chain event, not on the buyer's word.
                    Phase::Quoted | Phase::Provisioning => Ok(()),
                    p => Err(self.unexpected("Opened", p)),
                }
            }
            Message::Voucher(v) => self.on_voucher(v, now),
            Message::CloseRequest(c) => self.on_close_request(c, now),
            Message::Resume(r) => self.on_resume(r, now),
            other => Err(self.unexpected(other.name(), self.phase)),
        }
    }

    /// Adds `bytes` the data plane carried for this buyer (both directions).
    pub fn handle_meter(&mut self, bytes: u64, now: Timestamp) {
        if self.phase != Phase::Serving {
            return;
        }
        self.meter_bytes = self.meter_bytes.saturating_add(bytes);
        self.check_exposure(now);
    }

    /// Handles a chain fact about this session's channel.
    pub fn handle_chain_event(
        &mut self,
        ev: ChainEvent,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        match ev {
            ChainEvent::ChannelOpened(o) => {
                let expected = self.expected_channel_id().ok_or(SessionError::Unexpected {
                    message: "ChannelOpened",
                    state: self.phase.name(),
                })?;
                if o.channel_id != expected {
                    return Err(SessionError::WrongChannel {
                        expected,
                        got: o.channel_id,
                    });
                }
                if self.phase != Phase::Quoted {
                    return Ok(()); // a repeat
                }
                let matches = self.quote.as_ref().is_some_and(|q| o.matches(&q.offer));
                if !matches {
                    self.end(EndReason::TermsMismatch);
                    return Err(SessionError::TermsMismatch(o.channel_id));
                }
                self.channel = Some(ChannelState {
                    channel_id: o.channel_id,
                    deposit: o.deposit,
                    voucher_signer: o.voucher_signer,
                    tx_hash: o.tx_hash,
                });
                self.phase = Phase::Provisioning;
                self.persist();
                self.emit_start_service(true);
                Ok(())
            }
            ChainEvent::ToppedUp {
                channel_id,
                deposit,
            } => {
                self.check_channel(channel_id)?;
                if let Some(c) = &mut self.channel {
                    c.deposit = c.deposit.max(deposit);
                }
                self.persist();
                Ok(())
            }
            ChainEvent::CloseStarted {
                channel_id,
                closes_at,
            } => {
                self.check_channel(channel_id)?;
                // Watchtower: the buyer started a unilateral close; submit the best voucher now
                // (before the deadline; `finalize` pays it out).
                if matches!(self.phase, Phase::Serving | Phase::Provisioning) {
                    self.stop_service(EndReason::CloseStarted, now);
                }
                if let Some(best) = self.best.filter(|b| b.amount > U256::ZERO) {
                    self.out.event(
                        SellerEvent::SubmitVoucher {
                            voucher: best,
                            closes_at,
                        },
                        false,
                    );
                }
                if self.phase != Phase::Ended {
                    self.end(EndReason::CloseStarted);
                }
                Ok(())
            }
            ChainEvent::ChannelClosed { channel_id, .. } => {
                self.check_channel(channel_id)?;
                if matches!(self.phase, Phase::Serving | Phase::Provisioning) {
                    self.stop_service(EndReason::ChannelClosed, now);
                }
                if self.phase != Phase::Ended {
                    self.end(EndReason::ChannelClosed);
                }
                Ok(())
            }
        }
    }

    /// Handles timers due at or before `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.phase {
            Phase::Quoted => {
                if now >= self.open_deadline() {
                    self.end(EndReason::OfferExpired);
                }
            }
            Phase::Serving => {
                self.check_exposure(now);
                if self.phase == Phase::Serving && now >= self.payment_deadline() {
                    self.cut(EndReason::MissingPayment, now, true);
                }
            }
            Phase::Closing => {
                if now >= self.closing_deadline {
                    self.settle_best();
                    self.end(EndReason::BuyerClosed);
                }
            }
            Phase::Paused => {
                if now >= self.pause_deadline() {
                    self.settle_best();
                    self.end(EndReason::PauseTimeout);
                }
            }
            Phase::AwaitingRequest | Phase::Provisioning | Phase::Ended => {}
        }
    }

    /// The shell provisioned the buyer's access: seal `payload` to the buyer (to the key of its
    /// latest `Resume`, after a resume), send it, and start serving (and billing) now.
    pub fn reveal<R: CryptoRng + RngCore>(
        &mut self,
        payload: &RevealPayload,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        if self.phase != Phase::Provisioning {
            return Err(self.unexpected("reveal", self.phase));
        }
        let (Some(channel), Some(request)) = (&self.channel, &self.request) else {
            return Err(self.unexpected("reveal", self.phase));
        };
        let sealed = seal::seal(payload, channel.channel_id, &request.buyer_key, rng)?;
        let reveal = Reveal {
            channel_id: channel.channel_id,
            sealed,
        };
        self.reveal = Some(reveal.clone());
        self.service_start = Some(now);
        self.last_arrival = now;
        self.phase = Phase::Serving;
        self.persist();
        self.out.transmit(Message::Reveal(reveal).encode());
        Ok(())
    }

    /// The seller is shutting down: stop, settle the best voucher, tell the buyer — except a
    /// paused channel, which stays paused (its snapshot is restored at the next start).
    pub fn shutdown(&mut self, now: Timestamp) {
        if self.phase != Phase::Paused {
            self.close(now);
        }
    }

    /// The seller's user closes the session (`wayfare close`): stop, settle the best voucher,
    /// tell the buyer; a paused channel too.
    pub fn close(&mut self, now: Timestamp) {
        match self.phase {
            Phase::Ended => {}
            Phase::AwaitingRequest | Phase::Quoted => self.end(EndReason::SellerClosed),
            _ => self.cut(EndReason::SellerClosed, now, true),
        }
    }

    // ---------------------------------------------------------------- outputs

    /// The next bytes to send to the buyer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.poll_transmit()
    }

    /// The next thing for the shell to do.
    pub fn poll_event(&mut self) -> Option<SellerEvent> {
        self.out.poll_event()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Quoted => Some(self.open_deadline()),
            Phase::Serving => Some(self.payment_deadline()),
            Phase::Closing => Some(self.closing_deadline),
            Phase::Paused => Some(self.pause_deadline()),
            Phase::AwaitingRequest | Phase::Provisioning | Phase::Ended => None,
        }
    }

    /// The state to persist now (`None` before a quote was sent).
    pub fn snapshot(&self) -> Option<SellerSnapshot> {
        let phase = match self.phase {
            Phase::AwaitingRequest => return None,
            Phase::Quoted => SellerPhase::Quoted,
            Phase::Provisioning => SellerPhase::Provisioning,
            Phase::Serving => SellerPhase::Serving,
            Phase::Closing => SellerPhase::Closing,
            Phase::Paused => SellerPhase::Paused,
            Phase::Ended => SellerPhase::Ended,
        };
        Some(SellerSnapshot {
            phase,
            request: self.request.clone()?,
            quote: self.quote.clone()?,
            channel: self.channel,
            reveal: self.reveal.clone(),
            service_start: self.service_start,
            meter_bytes: self.meter_bytes,
            best: self.best,
            end: self.end,
            prior_seconds: self.prior_seconds,
            run: self.run,
        })
    }

    // ---------------------------------------------------------------- accessors

    /// Whether the buyer is being served.
    pub fn is_serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// Whether the channel is open on chain (a quoted session is not).
    pub fn is_open(&self) -> bool {
        self.channel.is_some()
    }

    /// Whether the buyer paused: service stopped, the channel kept open for a `Resume`.
    pub fn is_paused(&self) -> bool {
        self.phase == Phase::Paused
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Why it ended (or is closing).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// The best voucher held.
    pub fn best_voucher(&self) -> Option<&SignedVoucher> {
        self.best.as_ref()
    }

    /// The channel id, once the offer is made.
    pub fn channel_id(&self) -> Option<B256> {
        self.expected_channel_id()
    }

    /// The agreed terms, once quoted.
    pub fn terms(&self) -> Option<Terms> {
        self.quote.as_ref().map(|q| offer_terms(&q.offer))
    }

    /// Bytes metered.
    pub fn meter_bytes(&self) -> u64 {
        self.meter_bytes
    }

    /// What the seller's meter says the buyer owes at `now`: all bytes metered on the channel,
    /// and the seconds of every service run (time stops counting when service stops, and a pause
    /// is not billed).
    pub fn owed(&self, now: Timestamp) -> U256 {
        let Some(t) = self.terms() else {
            return U256::ZERO;
        };
        billing::owed(
            self.meter_bytes,
            self.billed_seconds(now),
            t.price_per_mib,
            t.price_per_second,
        )
        .unwrap_or(U256::MAX)
    }

    /// Owed minus the best voucher: what the seller stands to lose now.
    pub fn exposure(&self, now: Timestamp) -> U256 {
        self.owed(now).saturating_sub(self.best_amount())
    }

    /// The max debt for the agreed terms.
    pub fn max_debt(&self) -> U256 {
        self.terms()
            .map_or(U256::ZERO, |t| self.config.max_debt(&t))
    }

    // ---------------------------------------------------------------- internals

    fn unexpected(&self, message: &'static str, phase: Phase) -> SessionError {
        SessionError::Unexpected {
            message,
            state: phase.name(),
        }
    }

    fn expected_channel_id(&self) -> Option<B256> {
        let q = self.quote.as_ref()?;
        Some(eip712::channel_id(
            self.params.chain_id,
            self.params.market,
            q.offer.seller,
            q.offer.nonce,
        ))
    }

    fn check_channel(&self, got: B256) -> Result<(), SessionError> {
        match self.expected_channel_id() {
            Some(expected) if expected == got => Ok(()),
            Some(expected) => Err(SessionError::WrongChannel { expected, got }),
            None => Err(SessionError::Unexpected {
                message: "a channel message",
                state: self.phase.name(),
            }),
        }
    }

    fn best_amount(&self) -> U256 {
        self.best.map_or(U256::ZERO, |b| b.amount)
    }

    fn interval_ms(&self) -> u64 {
        self.terms()
            .map_or(0, |t| u64::from(t.payment_interval).saturating_mul(1000))
    }

    fn payment_deadline(&self) -> Timestamp {
        Timestamp(self.last_arrival.0.saturating_add(self.interval_ms()))
            .saturating_add(self.config.grace)
    }

    fn pause_deadline(&self) -> Timestamp {
        self.paused_at.saturating_add(self.config.pause_timeout)
    }

    /// Seconds billed so far: earlier runs plus the current one (up to its stop); a pause is
    /// not billed.
    pub fn billed_seconds(&self, now: Timestamp) -> u64 {
        let now = self.service_end.map_or(now, |e| e.min(now));
        self.prior_seconds
            .saturating_add(billed_seconds(self.service_start, now))
    }

    /// The seller's meter report for the current run, signed by its signer.
    fn usage(&self, channel_id: B256, now: Timestamp) -> Usage {
        let mut u = Usage {
            channel_id,
            run: self.run,
            bytes: self.meter_bytes,
            seconds: self.billed_seconds(now),
            paid: self.best_amount(),
            signature: [0; 65],
        };
        u.signature = self
            .params
            .signer
            .sign_digest(eip712::usage_digest(&u, &self.domain));
        u
    }

    /// The current service run (0 for the first, +1 per accepted `Resume`).
    pub fn run(&self) -> u32 {
        self.run
    }

    /// Refuses a buyer message of another run than the current one.
    fn check_run(&self, message: &'static str, got: u32) -> Result<(), SessionError> {
        if got == self.run {
            return Ok(());
        }
        Err(SessionError::StaleRun {
            message,
            got,
            current: self.run,
        })
    }

    fn open_deadline(&self) -> Timestamp {
        let expiry = self.quote.as_ref().map_or(0, |q| q.offer.expiry);
        Timestamp::from_secs(expiry).saturating_add(self.config.open_wait)
    }

    fn persist(&mut self) {
        if let Some(s) = self.snapshot() {
            self.out.event(SellerEvent::Persist(Box::new(s)), true);
        }
    }

    fn emit_start_service(&mut self, needs_reveal: bool) {
        let (Some(channel), Some(request)) = (&self.channel, &self.request) else {
            return;
        };
        self.out.event(
            SellerEvent::StartService {
                channel_id: channel.channel_id,
                buyer: request.buyer,
                service: request.service,
                wireguard_key: request.wireguard_key,
                needs_reveal,
            },
            false,
        );
    }

    fn stop_service(&mut self, reason: EndReason, now: Timestamp) {
        self.service_end.get_or_insert(now);
        if let Some(c) = &self.channel {
            self.out.event(
                SellerEvent::StopService {
                    channel_id: c.channel_id,
                    reason,
                },
                false,
            );
        }
    }

    fn settle_best(&mut self) {
        if let Some(best) = self.best.filter(|b| b.amount > U256::ZERO) {
            self.out.event(SellerEvent::Settle { voucher: best }, false);
        }
    }

    fn end(&mut self, reason: EndReason) {
        self.phase = Phase::Ended;
        self.end = Some(reason);
        self.persist();
        self.out.event(SellerEvent::Ended { reason }, false);
    }

    /// Stops serving, settles the best voucher, optionally tells the buyer, ends.
    fn cut(&mut self, reason: EndReason, now: Timestamp, tell_buyer: bool) {
        if matches!(self.phase, Phase::Serving | Phase::Provisioning) {
            self.stop_service(reason, now);
        }
        self.settle_best();
        if tell_buyer && let Some(c) = &self.channel {
            let close = CloseReason::from_end(reason);
            let digest =
                eip712::close_request_digest(c.channel_id, self.run, close as u8, &self.domain);
            let close = CloseRequest {
                channel_id: c.channel_id,
                run: self.run,
                reason: close,
                signature: self.params.signer.sign_digest(digest),
            };
            self.out.transmit(Message::CloseRequest(close).encode());
        }
        self.end(reason);
    }

    fn check_exposure(&mut self, now: Timestamp) {
        if self.phase != Phase::Serving {
            return;
        }
        let owed = self.owed(now);
        if owed.saturating_sub(self.best_amount()) > self.max_debt() {
            self.cut(EndReason::MaxDebt, now, true);
            return;
        }
        if let Some(c) = &self.channel
            && owed >= c.deposit
        {
            self.cut(EndReason::DepositExhausted, now, true);
        }
    }

    fn on_quote_request(&mut self, req: QuoteRequest, now: Timestamp) -> Result<(), SessionError> {
        if self.phase != Phase::AwaitingRequest {
            // A retransmission gets the same answer; anything else needs a new session.
            if self.request.as_ref() != Some(&req) {
                return Err(SessionError::ConflictingRequest);
            }
            if let Some(q) = &self.quote {
                self.out.transmit(Message::Quote(q.clone()).encode());
            } else if let Some(r) = &self.refusal {
                self.out.transmit(Message::Refusal(r.clone()).encode());
            }
            return Ok(());
        }
        self.request = Some(req.clone());
        if !self.params.services.contains(req.service) {
            return self.refuse(RefusalReason::ServiceNotOffered, "service not offered");
        }
        let terms = negotiation::counter_offer(
            &self.params.list_terms,
            &self.config.counter_offer,
            req.wanted.as_ref(),
        );
        let offer =
            negotiation::build_offer(self.params.seller, &req, &terms, now, self.config.offer_ttl);
        let digest = eip712::offer_digest(&offer, &self.domain);
        let signature = self.params.signer.sign_digest(digest);
        let quote = Quote { offer, signature };
        self.quote = Some(quote.clone());
        self.phase = Phase::Quoted;
        self.persist();
        self.out.transmit(Message::Quote(quote).encode());
        Ok(())
    }

    fn refuse(&mut self, reason: RefusalReason, detail: &str) -> Result<(), SessionError> {
        let refusal = Refusal {
            reason,
            detail: detail.to_owned(),
        };
        self.refusal = Some(refusal.clone());
        self.phase = Phase::Ended;
        self.end = Some(EndReason::Refused);
        self.out.transmit(Message::Refusal(refusal).encode());
        self.out.event(
            SellerEvent::Ended {
                reason: EndReason::Refused,
            },
            false,
        );
        Ok(())
    }

    fn on_voucher(&mut self, v: SignedVoucher, now: Timestamp) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::Serving | Phase::Closing | Phase::Paused) {
            return Err(self.unexpected("Voucher", self.phase));
        }
        let Some(channel) = self.channel else {
            return Err(self.unexpected("Voucher", self.phase));
        };
        if v.channel_id != channel.channel_id {
            return Err(SessionError::WrongChannel {
                expected: channel.channel_id,
                got: v.channel_id,
            });
        }
        let best = self.best_amount();
        if self.best.is_some() && v.amount < best {
            return Err(SessionError::StaleVoucher {
                amount: v.amount,
                best,
            });
        }
        if self.best.as_ref() != Some(&v) {
            let digest = eip712::voucher_digest(v.channel_id, v.amount, &self.domain);
            eip712::verify_signer(digest, &v.signature, channel.voucher_signer)?;
        }
        let owed = self.owed(now);
        let is_new = self.best.is_none() || v.amount > best;
        if is_new {
            self.best = Some(v);
            // Persist the best voucher before serving on (and before the ack leaves).
            self.persist();
        }
        if self.phase == Phase::Closing {
            return Ok(());
        }
        if self.phase == Phase::Paused {
            // A late final voucher: kept, acknowledged, never checked against the meter.
            let usage = self.usage(channel.channel_id, now);
            self.out.transmit(Message::Usage(usage).encode());
            return Ok(());
        }
        let terms = self.terms().unwrap_or_default_terms();
        let required = min_acceptable(owed, self.config.tolerance_bps, self.config.slack(&terms));
        if v.amount < required {
            self.cut(EndReason::ShortPayment, now, true);
            return Ok(());
        }
        // A duplicate of the best voucher only proves payment when nothing at all is unpaid, so
        // a replayed voucher never stretches the payment deadline while usage grows.
        if is_new || owed <= v.amount {
            self.last_arrival = now;
        }
        let usage = self.usage(channel.channel_id, now);
        self.out.transmit(Message::Usage(usage).encode());
        Ok(())
    }

    fn on_close_request(&mut self, c: CloseRequest, now: Timestamp) -> Result<(), SessionError> {
        self.check_channel(c.channel_id)?;
        let Some(channel) = self.channel else {
            return Err(self.unexpected("CloseRequest", self.phase));
        };
        let digest =
            eip712::close_request_digest(c.channel_id, c.run, c.reason as u8, &self.domain);
        eip712::verify_signer(digest, &c.signature, channel.voucher_signer)?;
        // A request of an earlier run (replayed, or a late pause reordered behind the `Resume`)
        // changes nothing.
        self.check_run("CloseRequest", c.run)?;
        let pause = c.reason == CloseReason::Pause;
        match self.phase {
            Phase::Serving if pause => {
                self.pause(c.channel_id, now);
                return Ok(());
            }
            // A buyer pauses a run only after that run's reveal, which leaves Provisioning.
            Phase::Provisioning if pause => return Ok(()),
            Phase::Paused if pause => {
                // A retransmitted pause: acknowledge again.
                let usage = self.usage(c.channel_id, now);
                self.out.transmit(Message::Usage(usage).encode());
                return Ok(());
            }
            Phase::Serving | Phase::Provisioning | Phase::Paused => {
                if self.phase != Phase::Paused {
                    self.stop_service(EndReason::BuyerClosed, now);
                }
                self.phase = Phase::Closing;
                self.end = Some(EndReason::BuyerClosed);
                self.closing_deadline = now.saturating_add(self.config.close_timeout);
                self.persist();
            }
            Phase::Closing | Phase::Ended => {}
            p => return Err(self.unexpected("CloseRequest", p)),
        }
        let amount = self.best_amount();
        let consent = match self.consent {
            Some(c) if c.amount == amount => c,
            _ => {
                let digest = eip712::close_consent_digest(c.channel_id, amount, &self.domain);
                SignedCloseConsent {
                    channel_id: c.channel_id,
                    amount,
                    signature: self.params.signer.sign_digest(digest),
                }
            }
        };
        self.consent = Some(consent);
        self.out.transmit(Message::CloseConsent(consent).encode());
        Ok(())
    }
}

impl SellerSession {
    /// The buyer paused: stop, fold the run's seconds into `prior_seconds`, keep the channel and
    /// the best voucher, acknowledge with a `Usage` (no consent, no settle).
    fn pause(&mut self, channel_id: B256, now: Timestamp) {
        self.stop_service(EndReason::Paused, now);
        self.prior_seconds = self.billed_seconds(now);
        self.service_start = None;
        self.service_end = None;
        self.phase = Phase::Paused;
        self.paused_at = now;
        self.persist();
        let usage = self.usage(channel_id, now);
        self.out.transmit(Message::Usage(usage).encode());
    }

    fn on_resume(&mut self, r: Resume, now: Timestamp) -> Result<(), SessionError> {
        self.check_channel(r.channel_id)?;
        if !matches!(
            self.phase,
            Phase::Paused | Phase::Provisioning | Phase::Serving
        ) {
            return Err(self.unexpected("Resume", self.phase));
        }
        let (Some(channel), Some(request)) = (&self.channel, &self.request) else {
            return Err(self.unexpected("Resume", self.phase));
        };
        let digest = eip712::resume_digest(
            r.channel_id,
            r.run,
            r.buyer_key,
            r.wireguard_key,
            &self.domain,
        );
        eip712::verify_signer(digest, &r.signature, channel.voucher_signer)?;
        // Paused at run n, only a resume for run n + 1 starts one; otherwise only the current
        // run's resume again (a retransmission). Anything older is a replay.
        let wanted = if self.phase == Phase::Paused {
            self.run.saturating_add(1)
        } else {
            self.run
        };
        if r.run != wanted {
            return Err(SessionError::StaleRun {
                message: "Resume",
                got: r.run,
                current: self.run,
            });
        }
        if (request.service == Service::WireGuard) != r.wireguard_key.is_some() {
            return Err(DecodeError::BadValue {
                field: "resume.wireguard_key",
                reason: "required for WireGuard and forbidden for shadowsocks",
            }
            .into());
        }
        let same_keys =
            request.buyer_key == r.buyer_key && request.wireguard_key == r.wireguard_key;
        match self.phase {
            Phase::Paused => {
                if let Some(req) = &mut self.request {
                    req.buyer_key = r.buyer_key;
                    req.wireguard_key = r.wireguard_key;
                }
                // The old reveal is sealed to the old key; `reveal()` seals a new one.
                self.reveal = None;
                self.run = r.run;
                self.service_start = None;
                self.service_end = None;
                self.last_arrival = now;
                self.phase = Phase::Provisioning;
                self.persist();
                self.emit_start_service(true);
                Ok(())
            }
            // The same resume again: the reveal follows (or is resent) for the same key.
            _ if same_keys => {
                if self.phase == Phase::Serving
                    && let Some(rv) = &self.reveal
                {
                    self.out.transmit(Message::Reveal(rv.clone()).encode());
                }
                Ok(())
            }
            p => Err(self.unexpected("a Resume with other keys", p)),
        }
    }
}

trait TermsOrDefault {
    fn unwrap_or_default_terms(self) -> Terms;
}

impl TermsOrDefault for Option<Terms> {
    fn unwrap_or_default_terms(self) -> Terms {
        self.unwrap_or(Terms {
            price_per_mib: 0,
            price_per_second: 0,
            seller_burn: 0,
            buyer_burn: 0,
            min_deposit: 0,
            payment_interval: 1,
        })
    }
}

impl CloseReason {
    /// The wire reason for a session end.
    pub const fn from_end(reason: EndReason) -> Self {
        match reason {
            EndReason::DepositExhausted => Self::DepositExhausted,
            EndReason::MeterMismatch => Self::MeterMismatch,
            EndReason::MissingPayment | EndReason::ShortPayment | EndReason::MaxDebt => {
                Self::PaymentProblem
            }
            EndReason::SellerClosed => Self::SellerShutdown,
            EndReason::Paused => Self::Pause,
            _ => Self::BuyerDone,
        }
    }
}
