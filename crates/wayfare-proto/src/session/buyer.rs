//! The buyer's side of a session: ask, accept, open, receive the reveal, pay every interval from
//! its own meter, top up or leave; pause and later resume on the same channel.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::Eip712Domain;

use crate::billing;
use crate::codec::DecodeError;
use crate::eip712::{self, VerifyError};
use crate::keys::SecretKey;
use crate::messages::{
    CloseReason, CloseRequest, Message, Opened, Quote, QuoteRequest, RefusalReason, Resume, Reveal,
    SignedCloseConsent, SignedVoucher, Usage,
};
use crate::negotiation::{self, offer_terms};
use crate::seal::{self, RevealPayload, RevealSecret};
use crate::session::config::SessionConfig;
use crate::session::error::SessionError;
use crate::session::events::{BuyerEvent, ChainEvent, CloseAction, EndReason, billed_seconds};
use crate::session::outbox::Outbox;
use crate::session::snapshot::{BuyerPhase, BuyerSnapshot, ChannelState, Secret32};
use crate::types::{Service, Terms, Timestamp};

/// Bytes of packets the buyer's data plane *accepted* for this session, both directions.
/// Unsolicited inbound packets (anything the tunnel did not expect, such as a flood aimed at the
/// buyer's tunnel address) are dropped before they are counted, so they never reach the bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct AcceptedBytes(pub u64);

/// Who the buyer is and what it asks for.
#[derive(Debug, Clone)]
pub struct BuyerParams {
    /// Chain id of the market.
    pub chain_id: u64,
    /// The market contract.
    pub market: Address,
    /// The buyer's account (opens and funds the channel).
    pub buyer: Address,
    /// The seller's account.
    pub seller: Address,
    /// The seller's current signer, from the registry.
    pub seller_signer: Address,
    /// Service wanted.
    pub service: Service,
    /// Terms to propose (a counter-offer), or `None` for the seller's list terms.
    pub wanted: Option<Terms>,
    /// The channel's fresh voucher signer (for [`BuyerSession::resume`]: the channel's existing
    /// one, from the store).
    pub voucher_key: SecretKey,
    /// 32 fresh random bytes for this negotiation's X25519 key (for [`BuyerSession::resume`]:
    /// fresh bytes again, for the new reveal).
    pub reveal_seed: [u8; 32],
    /// The buyer's WireGuard public key (required for WireGuard; may be a new one on resume).
    pub wireguard_key: Option<[u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Requesting,
    Opening,
    AwaitingReveal,
    Serving,
    Closing,
    /// Service stopped, final voucher sent, the channel left open for a resume.
    Paused,
    Ended,
}

impl Phase {
    const fn name(self) -> &'static str {
        match self {
            Self::Requesting => "requesting a quote",
            Self::Opening => "opening the channel",
            Self::AwaitingReveal => "awaiting the reveal",
            Self::Serving => "serving",
            Self::Closing => "closing",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }
}

/// One buyer session: one seller, one offer, one channel. See the [module docs](super).
#[derive(Debug)]
pub struct BuyerSession {
    params: BuyerParams,
    config: SessionConfig,
    domain: Eip712Domain,
    secret: RevealSecret,
    phase: Phase,
    request: QuoteRequest,
    quote: Option<Quote>,
    channel: Option<ChannelState>,
    reveal: Option<RevealPayload>,
    service_start: Option<Timestamp>,
    service_end: Option<Timestamp>,
    meter_bytes: u64,
    last_voucher: Option<SignedVoucher>,
    acked: bool,
    owed_at_last_tick: U256,
    rate_per_interval: U256,
    next_voucher_at: Timestamp,
    next_retransmit: Timestamp,
    deadline: Timestamp,
    top_up_pending: bool,
    /// Seconds billed in earlier service runs (before a pause).
    prior_seconds: u64,
    /// The channel's current service run: 0 for the first, +1 per resume.
    run: u32,
    /// Awaiting the reveal of a resumed channel: retransmit `Resume`, not `Opened`.
    resuming: bool,
    /// Paused and the seller's `Usage` ack for the final voucher has not come yet.
    pause_unacked: bool,
    end: Option<EndReason>,
    out: Outbox<BuyerEvent>,
}

impl BuyerSession {
    /// Starts a negotiation: the `QuoteRequest` is queued for transmit at once.
    pub fn new(params: BuyerParams, config: SessionConfig, now: Timestamp) -> Self {
        let secret = RevealSecret::from_seed(&params.reveal_seed);
        let request = QuoteRequest {
            buyer: params.buyer,
            service: params.service,
            wanted: params.wanted,
            buyer_key: secret.public_key(),
            wireguard_key: params.wireguard_key,
        };
        let mut s = Self::blank(params, config, secret, request);
        s.deadline = now.saturating_add(s.config.quote_timeout);
        s.next_retransmit = now.saturating_add(s.config.retransmit);
        s.out
            .transmit(Message::QuoteRequest(s.request.clone()).encode());
        s
    }

    fn blank(
        params: BuyerParams,
        config: SessionConfig,
        secret: RevealSecret,
        request: QuoteRequest,
    ) -> Self {
        let domain = eip712::domain(params.chain_id, params.market);
        Self {
            params,
            config,
            domain,
            secret,
            phase: Phase::Requesting,
            request,
            quote: None,
            channel: None,
            reveal: None,
            service_start: None,
            service_end: None,
            meter_bytes: 0,
            last_voucher: None,
            acked: true,
            owed_at_last_tick: U256::ZERO,
            rate_per_interval: U256::ZERO,
            next_voucher_at: Timestamp::default(),
            next_retransmit: Timestamp::default(),
            deadline: Timestamp::default(),
            top_up_pending: false,
            prior_seconds: 0,
            run: 0,
            resuming: false,
            pause_unacked: false,
            end: None,
            out: Outbox::default(),
        }
    }

    /// Rebuilds a session from its last persisted snapshot (`params.reveal_seed` is ignored: the
    /// snapshot's seed is used). A serving session emits `StartService` again so the shell
    /// reconnects, and pays at once; a closing one resends its final voucher and close request;
    /// a paused one stays paused and emits nothing (use [`Self::resume`] to reconnect instead).
    pub fn restore(
        snapshot: BuyerSnapshot,
        params: BuyerParams,
        config: SessionConfig,
        now: Timestamp,
    ) -> Self {
        let secret = RevealSecret::from_seed(&snapshot.reveal_seed.0);
        let mut s = Self::blank(params, config, secret, snapshot.request);
        s.phase = match snapshot.phase {
            BuyerPhase::Opening => Phase::Opening,
            BuyerPhase::AwaitingReveal => Phase::AwaitingReveal,
            BuyerPhase::Serving => Phase::Serving,
            BuyerPhase::Closing => Phase::Closing,
            BuyerPhase::Paused => Phase::Paused,
            BuyerPhase::Ended => Phase::Ended,
        };
        s.quote = Some(snapshot.quote);
        s.channel = snapshot.channel;
        s.reveal = snapshot.reveal;
        s.service_start = snapshot.service_start;
        s.meter_bytes = snapshot.meter_bytes;
        s.last_voucher = snapshot.last_voucher;
        s.end = snapshot.end;
        s.prior_seconds = snapshot.prior_seconds;
        s.run = snapshot.run;
        s.owed_at_last_tick = s.owed(now);
        s.acked = false;
        s.next_retransmit = now.saturating_add(s.config.retransmit);
        match s.phase {
            Phase::AwaitingReveal => {
                s.deadline = now.saturating_add(s.config.reveal_timeout);
                // Awaiting a reveal while still holding one: a resume was under way.
                s.resuming = s.reveal.is_some();
                s.send_reveal_request();
            }
            Phase::Serving => {
                if let (Some(c), Some(r)) = (&s.channel, &s.reveal) {
                    s.out.event(
                        BuyerEvent::StartService {
                            channel_id: c.channel_id,
                            reveal: r.clone(),
                        },
                        false,
                    );
                }
                s.next_voucher_at = now;
            }
            Phase::Closing => {
                s.deadline = now.saturating_add(s.config.close_timeout);
                s.send_close();
            }
            Phase::Opening | Phase::Requesting | Phase::Paused | Phase::Ended => {}
        }
        s
    }

    /// Resumes a paused channel (`snapshot.phase` must be [`BuyerPhase::Paused`]) with no chain
    /// transaction: a fresh X25519 key from `params.reveal_seed` (not the snapshot's) and
    /// `params.wireguard_key` as the new WireGuard key; the channel, quote, meter, last voucher
    /// and billed seconds carry over. Persists, then sends a `Resume` signed with
    /// `params.voucher_key` (resent every `retransmit`) and waits for the reveal as after an open:
    /// `StartService` on the reveal, `Leave { NoReveal, StartClose }` after `reveal_timeout`.
    ///
    /// Errors (nothing is emitted): the snapshot is not paused, names another channel than
    /// `params` give, `params.voucher_key` is not the channel's voucher signer, or the WireGuard
    /// key is missing for WireGuard (or present for shadowsocks).
    pub fn resume(
        snapshot: BuyerSnapshot,
        params: BuyerParams,
        config: SessionConfig,
        now: Timestamp,
    ) -> Result<Self, SessionError> {
        let Some(channel) = snapshot
            .channel
            .filter(|_| snapshot.phase == BuyerPhase::Paused)
        else {
            return Err(SessionError::Unexpected {
                message: "resume",
                state: "not paused",
            });
        };
        let signer = params.voucher_key.address();
        if signer != channel.voucher_signer {
            return Err(VerifyError::WrongSigner {
                expected: channel.voucher_signer,
                got: signer,
            }
            .into());
        }
        if (snapshot.request.service == Service::WireGuard) != params.wireguard_key.is_some() {
            return Err(DecodeError::BadValue {
                field: "resume.wireguard_key",
                reason: "required for WireGuard and forbidden for shadowsocks",
            }
            .into());
        }
        let secret = RevealSecret::from_seed(&params.reveal_seed);
        let request = QuoteRequest {
            buyer_key: secret.public_key(),
            wireguard_key: params.wireguard_key,
            ..snapshot.request
        };
        let mut s = Self::blank(params, config, secret, request);
        s.quote = Some(snapshot.quote);
        s.check_channel(channel.channel_id)?;
        s.phase = Phase::AwaitingReveal;
        s.channel = Some(channel);
        // The previous run's reveal stays until the new one arrives (it marks a resume in the
        // snapshot, so a restart resends `Resume`).
        s.reveal = snapshot.reveal;
        s.meter_bytes = snapshot.meter_bytes;
        s.last_voucher = snapshot.last_voucher;
        s.prior_seconds = snapshot.prior_seconds;
        // A new run: the seller takes only this run's messages from now on.
        s.run = snapshot.run.saturating_add(1);
        s.resuming = true;
        s.deadline = now.saturating_add(s.config.reveal_timeout);
        s.next_retransmit = now.saturating_add(s.config.retransmit);
        // Store the new key before the seller can seal to it.
        s.persist();
        s.send_resume();
        Ok(s)
    }

    // ---------------------------------------------------------------- inputs

    /// Decodes and handles one message from the seller.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Timestamp) -> Result<(), SessionError> {
        let msg = Message::decode(bytes)?;
        self.handle_message(msg, now)
    }

    /// Handles one message from the seller. An offer outside the limits ends the session
    /// (`Leave { reason: Refused }`) and is also returned as an error for the log.
    pub fn handle_message(&mut self, msg: Message, now: Timestamp) -> Result<(), SessionError> {
        match msg {
            Message::Quote(q) => self.on_quote(q, now),
            Message::Refusal(r) => {
                if self.phase == Phase::AwaitingReveal
                    && self.resuming
                    && r.reason == RefusalReason::NotYourSession
                {
                    // The seller holds no session on the channel any more: waiting for a reveal
                    // is pointless, the deposit comes back by a close on chain.
                    let action = self.start_close_action();
                    self.finish(EndReason::ResumeRefused, action);
                    return Ok(());
                }
                if self.phase != Phase::Requesting {
                    return Err(self.unexpected("Refusal"));
                }
                self.finish(EndReason::Refused, CloseAction::Nothing);
                Ok(())
            }
            Message::Reveal(r) => self.on_reveal(r, now),
            Message::Usage(u) => self.on_usage(u, now),
            Message::CloseRequest(c) => {
                self.check_channel(c.channel_id)?;
                let digest =
                    eip712::close_request_digest(c.channel_id, c.run, c.reason as u8, &self.domain);
                self.check_seller_message("CloseRequest", digest, &c.signature, c.run)?;
                match self.phase {
                    Phase::Serving => {
                        self.leave_with(EndReason::SellerClosed, now);
                        Ok(())
                    }
                    Phase::AwaitingReveal => {
                        self.finish(
                            EndReason::SellerClosed,
                            CloseAction::StartClose {
                                channel_id: c.channel_id,
                            },
                        );
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            Message::CloseConsent(c) => self.on_consent(c),
            other => Err(self.unexpected(other.name())),
        }
    }

    /// Adds bytes the data plane accepted for this session (see [`AcceptedBytes`]).
    pub fn handle_meter(&mut self, accepted: AcceptedBytes, _now: Timestamp) {
        if self.phase == Phase::Serving {
            self.meter_bytes = self.meter_bytes.saturating_add(accepted.0);
        }
    }

    /// Handles a chain fact about this session's channel.
    pub fn handle_chain_event(
        &mut self,
        ev: ChainEvent,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        match ev {
            ChainEvent::ChannelOpened(o) => {
                let expected = self
                    .expected_channel_id()
                    .ok_or(self.unexpected("ChannelOpened"))?;
                if o.channel_id != expected {
                    return Err(SessionError::WrongChannel {
                        expected,
                        got: o.channel_id,
                    });
                }
                if self.phase != Phase::Opening {
                    return Ok(());
                }
                let ok = self.quote.as_ref().is_some_and(|q| o.matches(&q.offer))
                    && o.voucher_signer == self.params.voucher_key.address();
                if !ok {
                    return Err(SessionError::TermsMismatch(o.channel_id));
                }
                self.channel = Some(ChannelState {
                    channel_id: o.channel_id,
                    deposit: o.deposit,
                    voucher_signer: o.voucher_signer,
                    tx_hash: o.tx_hash,
                });
                self.phase = Phase::AwaitingReveal;
                self.deadline = now.saturating_add(self.config.reveal_timeout);
                self.next_retransmit = now.saturating_add(self.config.retransmit);
                self.persist();
                self.send_opened();
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
                self.top_up_pending = false;
                self.persist();
                Ok(())
            }
            ChainEvent::CloseStarted { channel_id, .. } => {
                self.check_channel(channel_id)?;
                Ok(())
            }
            ChainEvent::ChannelClosed { channel_id, .. } => {
                self.check_channel(channel_id)?;
                if self.phase == Phase::Ended {
                    return Ok(());
                }
                if self.phase == Phase::Serving {
                    self.service_end = Some(now);
                    self.out.event(
                        BuyerEvent::StopService {
                            reason: EndReason::ChannelClosed,
                        },
                        false,
                    );
                }
                let reason = self.end.unwrap_or(EndReason::ChannelClosed);
                self.finish(reason, CloseAction::Nothing);
                Ok(())
            }
        }
    }

    /// Handles timers due at or before `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.phase {
            Phase::Requesting => {
                if now >= self.deadline {
                    self.finish(EndReason::NoQuote, CloseAction::Nothing);
                } else if now >= self.next_retransmit {
                    self.out
                        .transmit(Message::QuoteRequest(self.request.clone()).encode());
                    self.next_retransmit = now.saturating_add(self.config.retransmit);
                }
            }
            Phase::Opening => {
                if now >= self.open_deadline() {
                    self.finish(EndReason::OfferExpired, CloseAction::Nothing);
                }
            }
            Phase::AwaitingReveal => {
                if now >= self.deadline {
                    let action = self.start_close_action();
                    self.finish(EndReason::NoReveal, action);
                } else if now >= self.next_retransmit {
                    self.send_reveal_request();
                    self.next_retransmit = now.saturating_add(self.config.retransmit);
                }
            }
            Phase::Paused if self.pause_unacked => {
                if now >= self.deadline {
                    // Unanswered for close_timeout: stop asking (the seller's own timers decide).
                    self.pause_unacked = false;
                } else if now >= self.next_retransmit {
                    self.send_pause();
                    self.next_retransmit = now.saturating_add(self.config.retransmit);
                }
            }
            Phase::Paused => {}
            Phase::Serving => {
                if now >= self.next_voucher_at {
                    self.tick(now);
                } else if !self.acked && now >= self.next_retransmit {
                    if let Some(v) = self.last_voucher {
                        self.out.transmit(Message::Voucher(v).encode());
                    }
                    self.next_retransmit = now.saturating_add(self.config.retransmit);
                }
            }
            Phase::Closing => {
                if now >= self.deadline {
                    let action = self.start_close_action();
                    let reason = self.end.unwrap_or(EndReason::UserLeft);
                    self.finish(reason, action);
                } else if now >= self.next_retransmit {
                    self.send_close();
                    self.next_retransmit = now.saturating_add(self.config.retransmit);
                }
            }
            Phase::Ended => {}
        }
    }

    /// The user wants out: pay what is owed, ask the seller for a close consent (also from
    /// `Paused`: the channel is then closed cooperatively).
    pub fn leave(&mut self, now: Timestamp) {
        match self.phase {
            Phase::Serving => self.leave_with(EndReason::UserLeft, now),
            Phase::Paused => self.leave_paused(now),
            Phase::AwaitingReveal => {
                let action = self.start_close_action();
                self.finish(EndReason::UserLeft, action);
            }
            Phase::Requesting | Phase::Opening => {
                self.finish(EndReason::UserLeft, CloseAction::Nothing);
            }
            Phase::Closing | Phase::Ended => {}
        }
    }

    /// The user disconnects but keeps the channel: while serving, sign (and persist) a final
    /// voucher for the own meter's owed now, send it and a `CloseRequest { Pause }`, stop the
    /// service and emit `Paused`. The seller acknowledges with a `Usage` and keeps the channel
    /// for its `pause_timeout`; resume with [`Self::resume`] from the persisted snapshot. Until
    /// a `Usage` holding the final voucher arrives, the voucher and the pause request are resent
    /// every `retransmit`, for at most `close_timeout` (`poll_timeout` is `None` once done). A
    /// `Usage` can't tell a paused seller from a serving one, so if only the pause request is
    /// lost the seller ends at its payment deadline and settles the final voucher: the money is
    /// right, the channel is not reused. Already paused: nothing. Any other phase: the same as
    /// [`Self::leave`].
    pub fn pause(&mut self, now: Timestamp) {
        match self.phase {
            Phase::Serving => self.pause_serving(now),
            Phase::Paused => {}
            _ => self.leave(now),
        }
    }

    // ---------------------------------------------------------------- outputs

    /// The next bytes to send to the seller.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.poll_transmit()
    }

    /// The next thing for the shell to do.
    pub fn poll_event(&mut self) -> Option<BuyerEvent> {
        self.out.poll_event()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Requesting | Phase::AwaitingReveal | Phase::Closing => {
                Some(self.deadline.min(self.next_retransmit))
            }
            Phase::Opening => Some(self.open_deadline()),
            Phase::Paused => self
                .pause_unacked
                .then(|| self.deadline.min(self.next_retransmit)),
            Phase::Serving => Some(if self.acked {
                self.next_voucher_at
            } else {
                self.next_voucher_at.min(self.next_retransmit)
            }),
            Phase::Ended => None,
        }
    }

    /// The state to persist now (`None` before an offer was accepted).
    pub fn snapshot(&self) -> Option<BuyerSnapshot> {
        let phase = match self.phase {
            Phase::Requesting => return None,
            Phase::Opening => BuyerPhase::Opening,
            Phase::AwaitingReveal => BuyerPhase::AwaitingReveal,
            Phase::Serving => BuyerPhase::Serving,
            Phase::Closing => BuyerPhase::Closing,
            Phase::Paused => BuyerPhase::Paused,
            Phase::Ended => BuyerPhase::Ended,
        };
        Some(BuyerSnapshot {
            phase,
            request: self.request.clone(),
            reveal_seed: Secret32(self.secret.seed()),
            quote: self.quote.clone()?,
            channel: self.channel,
            reveal: self.reveal.clone(),
            service_start: self.service_start,
            meter_bytes: self.meter_bytes,
            last_voucher: self.last_voucher,
            end: self.end,
            prior_seconds: self.prior_seconds,
            run: self.run,
        })
    }

    // ---------------------------------------------------------------- accessors

    /// Whether connected and paying.
    pub fn is_serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// Whether leaving: the close is under way (consent awaited, or closing alone).
    pub fn is_closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// Whether paused: service stopped, the channel kept open for [`Self::resume`].
    pub fn is_paused(&self) -> bool {
        self.phase == Phase::Paused
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Why it ended (or is ending).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// The last voucher signed.
    pub fn last_voucher(&self) -> Option<&SignedVoucher> {
        self.last_voucher.as_ref()
    }

    /// The channel id, once an offer is accepted.
    pub fn channel_id(&self) -> Option<B256> {
        self.expected_channel_id()
    }

    /// The channel's deposit, once open.
    pub fn deposit(&self) -> Option<U256> {
        self.channel.map(|c| c.deposit)
    }

    /// The agreed terms, once an offer is accepted.
    pub fn terms(&self) -> Option<Terms> {
        self.quote.as_ref().map(|q| offer_terms(&q.offer))
    }

    /// Accepted bytes metered.
    pub fn meter_bytes(&self) -> u64 {
        self.meter_bytes
    }

    /// What the buyer's own meter says it owes at `now`: all accepted bytes on the channel and
    /// the seconds of every service run (time stops counting when service stops, and a pause is
    /// not billed).
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

    // ---------------------------------------------------------------- internals

    fn unexpected(&self, message: &'static str) -> SessionError {
        SessionError::Unexpected {
            message,
            state: self.phase.name(),
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
            None => Err(self.unexpected("a channel message")),
        }
    }

    fn open_deadline(&self) -> Timestamp {
        let expiry = self.quote.as_ref().map_or(0, |q| q.offer.expiry);
        Timestamp::from_secs(expiry).saturating_add(self.config.open_wait)
    }

    /// Seconds billed so far: earlier runs plus the current one (up to its stop); a pause is
    /// not billed.
    pub fn billed_seconds(&self, now: Timestamp) -> u64 {
        let now = self.service_end.map_or(now, |e| e.min(now));
        self.prior_seconds
            .saturating_add(billed_seconds(self.service_start, now))
    }

    fn interval(&self) -> core::time::Duration {
        self.terms()
            .map_or(self.config.payment_interval, |t| t.interval())
    }

    fn persist(&mut self) {
        if let Some(s) = self.snapshot() {
            self.out.event(BuyerEvent::Persist(Box::new(s)), true);
        }
    }

    fn send_opened(&mut self) {
        if let Some(c) = &self.channel {
            self.out.transmit(
                Message::Opened(Opened {
                    channel_id: c.channel_id,
                    tx_hash: c.tx_hash,
                })
                .encode(),
            );
        }
    }

    /// What asks the seller for the reveal: `Resume` when resuming, else `Opened`.
    fn send_reveal_request(&mut self) {
        if self.resuming {
            self.send_resume();
        } else {
            self.send_opened();
        }
    }

    fn send_resume(&mut self) {
        let Some(c) = &self.channel else { return };
        let digest = eip712::resume_digest(
            c.channel_id,
            self.run,
            self.request.buyer_key,
            self.request.wireguard_key,
            &self.domain,
        );
        let resume = Resume {
            channel_id: c.channel_id,
            run: self.run,
            buyer_key: self.request.buyer_key,
            wireguard_key: self.request.wireguard_key,
            signature: self.params.voucher_key.sign_digest(digest),
        };
        self.out.transmit(Message::Resume(resume).encode());
    }

    /// The final voucher (if any) and `CloseRequest { Pause }`.
    fn send_pause(&mut self) {
        let Some(c) = self.channel else { return };
        if let Some(v) = self.last_voucher {
            self.out.transmit(Message::Voucher(v).encode());
        }
        self.out.transmit(
            self.close_request(c.channel_id, CloseReason::Pause)
                .encode(),
        );
    }

    /// A `CloseRequest` of the current run, signed by the channel's voucher signer.
    fn close_request(&self, channel_id: B256, reason: CloseReason) -> Message {
        let digest = eip712::close_request_digest(channel_id, self.run, reason as u8, &self.domain);
        Message::CloseRequest(CloseRequest {
            channel_id,
            run: self.run,
            reason,
            signature: self.params.voucher_key.sign_digest(digest),
        })
    }

    /// Checks that a seller message of run `run` is signed by the seller's signer over `digest`
    /// and belongs to the current run.
    fn check_seller_message(
        &self,
        message: &'static str,
        digest: B256,
        signature: &[u8],
        run: u32,
    ) -> Result<(), SessionError> {
        eip712::verify_signer(digest, signature, self.params.seller_signer)?;
        if run != self.run {
            return Err(SessionError::StaleRun {
                message,
                got: run,
                current: self.run,
            });
        }
        Ok(())
    }

    fn close_reason(&self) -> CloseReason {
        CloseReason::from_end(self.end.unwrap_or(EndReason::UserLeft))
    }

    fn send_close(&mut self) {
        let Some(c) = self.channel else { return };
        if let Some(v) = self.last_voucher {
            self.out.transmit(Message::Voucher(v).encode());
        }
        let reason = match self.close_reason() {
            // The seller's own reasons, echoed back, read as "the buyer is done" on its side.
            CloseReason::PaymentProblem | CloseReason::SellerShutdown => CloseReason::BuyerDone,
            r => r,
        };
        self.out
            .transmit(self.close_request(c.channel_id, reason).encode());
    }

    fn start_close_action(&self) -> CloseAction {
        self.channel
            .map_or(CloseAction::Nothing, |c| CloseAction::StartClose {
                channel_id: c.channel_id,
            })
    }

    fn finish(&mut self, reason: EndReason, close: CloseAction) {
        self.phase = Phase::Ended;
        self.end = Some(reason);
        self.persist();
        self.out.event(BuyerEvent::Leave { reason, close }, false);
    }

    /// Signs a voucher for `amount` if it is above the last one; persists before sending.
    fn sign_and_send(&mut self, amount: U256) -> bool {
        let Some(c) = self.channel else { return false };
        if self.last_voucher.is_some_and(|v| amount <= v.amount) {
            return false;
        }
        let digest = eip712::voucher_digest(c.channel_id, amount, &self.domain);
        let v = SignedVoucher {
            channel_id: c.channel_id,
            amount,
            signature: self.params.voucher_key.sign_digest(digest),
        };
        self.last_voucher = Some(v);
        self.acked = false;
        self.persist();
        self.out.transmit(Message::Voucher(v).encode());
        true
    }

    /// What to sign now: the own meter's owed, never above the deposit.
    fn payable(&self, now: Timestamp) -> U256 {
        let deposit = self.channel.map_or(U256::ZERO, |c| c.deposit);
        self.owed(now).min(deposit)
    }

    fn tick(&mut self, now: Timestamp) {
        let owed = self.owed(now);
        let amount = self.payable(now);
        if !self.sign_and_send(amount)
            && let Some(v) = self.last_voucher
        {
            self.out.transmit(Message::Voucher(v).encode());
        }
        self.next_retransmit = now.saturating_add(self.config.retransmit);
        self.rate_per_interval = owed.saturating_sub(self.owed_at_last_tick);
        self.owed_at_last_tick = owed;
        self.next_voucher_at = self
            .next_voucher_at
            .saturating_add(self.interval())
            .max(now);
        self.check_deposit(owed, now);
    }

    fn check_deposit(&mut self, owed: U256, now: Timestamp) {
        let Some(c) = self.channel else { return };
        if owed >= c.deposit {
            self.leave_with(EndReason::DepositExhausted, now);
            return;
        }
        let terms = match self.terms() {
            Some(t) => t,
            None => return,
        };
        let per_interval = self.rate_per_interval.max(self.config.slack(&terms));
        let remaining = c.deposit - owed;
        let margin = per_interval.saturating_mul(U256::from(self.config.deposit_margin_intervals));
        if remaining >= margin || self.top_up_pending {
            return;
        }
        if let Some(p) = self.config.top_up
            && c.deposit.saturating_add(p.amount) <= p.max_total_deposit
            && p.amount > U256::ZERO
        {
            self.top_up_pending = true;
            self.out.event(
                BuyerEvent::TopUp {
                    channel_id: c.channel_id,
                    amount: p.amount,
                },
                false,
            );
            return;
        }
        if remaining < per_interval {
            self.leave_with(EndReason::DepositExhausted, now);
        }
    }

    /// From serving: stop, pay the final amount, ask for a close consent.
    fn leave_with(&mut self, reason: EndReason, now: Timestamp) {
        if self.phase != Phase::Serving {
            return;
        }
        self.out.event(BuyerEvent::StopService { reason }, false);
        self.end = Some(reason);
        let amount = self.payable(now);
        self.service_end = Some(now);
        // Always hold a voucher to close cooperatively with (the first may be for 0).
        if self.last_voucher.is_none_or(|v| amount > v.amount) {
            self.phase = Phase::Closing;
            self.sign_and_send(amount);
        } else {
            self.phase = Phase::Closing;
            self.persist();
        }
        self.deadline = now.saturating_add(self.config.close_timeout);
        self.next_retransmit = now.saturating_add(self.config.retransmit);
        if let Some(c) = self.channel {
            self.out.transmit(
                self.close_request(c.channel_id, self.close_reason())
                    .encode(),
            );
        }
    }

    /// From serving: stop, pay the final amount, ask the seller to pause, keep the channel.
    fn pause_serving(&mut self, now: Timestamp) {
        let Some(c) = self.channel else {
            return self.leave(now);
        };
        let amount = self.payable(now);
        self.out.event(
            BuyerEvent::StopService {
                reason: EndReason::Paused,
            },
            false,
        );
        self.prior_seconds = self.billed_seconds(now);
        self.service_start = None;
        self.service_end = None;
        self.phase = Phase::Paused;
        // Persist (the paused snapshot with the final voucher) before anything is sent.
        if !self.sign_and_send(amount) {
            self.persist();
            if let Some(v) = self.last_voucher {
                self.out.transmit(Message::Voucher(v).encode());
            }
        }
        self.out.transmit(
            self.close_request(c.channel_id, CloseReason::Pause)
                .encode(),
        );
        self.pause_unacked = true;
        self.deadline = now.saturating_add(self.config.close_timeout);
        self.next_retransmit = now.saturating_add(self.config.retransmit);
        self.out.event(
            BuyerEvent::Paused {
                channel_id: c.channel_id,
            },
            false,
        );
    }

    /// From paused: the user leaves for good; close cooperatively.
    fn leave_paused(&mut self, now: Timestamp) {
        self.end = Some(EndReason::UserLeft);
        self.pause_unacked = false;
        self.phase = Phase::Closing;
        let amount = self.payable(now);
        // Always hold a voucher to close cooperatively with (a pause always signed one).
        let fresh = self.last_voucher.is_none() && self.sign_and_send(amount);
        if !fresh {
            self.persist();
            if let Some(v) = self.last_voucher {
                self.out.transmit(Message::Voucher(v).encode());
            }
        }
        self.deadline = now.saturating_add(self.config.close_timeout);
        self.next_retransmit = now.saturating_add(self.config.retransmit);
        if let Some(c) = self.channel {
            self.out.transmit(
                self.close_request(c.channel_id, self.close_reason())
                    .encode(),
            );
        }
    }

    fn on_quote(&mut self, q: Quote, now: Timestamp) -> Result<(), SessionError> {
        if self.phase != Phase::Requesting {
            if self.quote.as_ref() == Some(&q) {
                return Ok(()); // a duplicate
            }
            return Err(self.unexpected("Quote"));
        }
        let digest = eip712::offer_digest(&q.offer, &self.domain);
        eip712::verify_signer(digest, &q.signature, self.params.seller_signer)?;
        if let Err(e) = negotiation::check_offer(
            &q.offer,
            self.params.seller,
            self.params.buyer,
            self.params.service,
            &self.config.limits,
            now,
        ) {
            self.finish(EndReason::Refused, CloseAction::Nothing);
            return Err(e.into());
        }
        let deposit = self.config.deposit.max(U256::from(q.offer.minDeposit));
        let value = deposit.saturating_add(U256::from(q.offer.buyerBurn));
        self.quote = Some(q.clone());
        self.phase = Phase::Opening;
        self.persist();
        self.out.event(
            BuyerEvent::OpenChannel {
                offer: q.offer,
                seller_signature: q.signature,
                voucher_signer: self.params.voucher_key.address(),
                value,
            },
            false,
        );
        Ok(())
    }

    fn on_reveal(&mut self, r: Reveal, now: Timestamp) -> Result<(), SessionError> {
        self.check_channel(r.channel_id)?;
        if self.phase != Phase::AwaitingReveal {
            return match self.phase {
                Phase::Serving | Phase::Closing | Phase::Paused | Phase::Ended => Ok(()), // a duplicate
                _ => Err(self.unexpected("Reveal")),
            };
        }
        // Sealed to this run's key: after a resume, a reveal for the old key does not open.
        let payload = seal::open(&r.sealed, r.channel_id, &self.secret)?;
        self.reveal = Some(payload.clone());
        self.resuming = false;
        self.service_start = Some(now);
        self.service_end = None;
        self.phase = Phase::Serving;
        self.next_voucher_at = now.saturating_add(self.interval());
        // Zero on a first run; what earlier runs cost after a resume (the rate is per interval).
        self.owed_at_last_tick = self.owed(now);
        self.persist();
        self.out.event(
            BuyerEvent::StartService {
                channel_id: r.channel_id,
                reveal: payload,
            },
            false,
        );
        Ok(())
    }

    fn on_usage(&mut self, u: Usage, now: Timestamp) -> Result<(), SessionError> {
        self.check_channel(u.channel_id)?;
        let digest = eip712::usage_digest(&u, &self.domain);
        self.check_seller_message("Usage", digest, &u.signature, u.run)?;
        if self.phase == Phase::Paused {
            // The pause acknowledgement: done once it holds the final voucher.
            if self.last_voucher.is_none_or(|v| u.paid >= v.amount) {
                self.pause_unacked = false;
            }
            return Ok(());
        }
        if self.phase != Phase::Serving {
            return Ok(());
        }
        if self.last_voucher.is_some_and(|v| u.paid >= v.amount) {
            self.acked = true;
        }
        let Some(terms) = self.terms() else {
            return Ok(());
        };
        let allowed = billing::scale_bps(
            U256::from(self.meter_bytes),
            billing::BPS.saturating_add(self.config.tolerance_bps),
        )
        .saturating_add(U256::from(self.config.slack_bytes(&terms)));
        if U256::from(u.bytes) > allowed {
            self.leave_with(EndReason::MeterMismatch, now);
        }
        Ok(())
    }

    fn on_consent(&mut self, c: SignedCloseConsent) -> Result<(), SessionError> {
        self.check_channel(c.channel_id)?;
        // The signature first: a forgery is refused as one in every phase.
        let digest = eip712::close_consent_digest(c.channel_id, c.amount, &self.domain);
        eip712::verify_signer(digest, &c.signature, self.params.seller_signer)?;
        if self.phase != Phase::Closing {
            // The seller consents only when asked: outside a close this is an old consent again.
            return Err(SessionError::Replayed {
                message: "CloseConsent",
            });
        }
        let Some(v) = self.last_voucher else {
            return Ok(());
        };
        if v.amount != c.amount {
            // The seller hasn't seen the final voucher yet; the retransmit timer resends it.
            return Ok(());
        }
        let reason = self.end.unwrap_or(EndReason::UserLeft);
        self.finish(
            reason,
            CloseAction::Cooperative {
                voucher: v,
                consent: c,
            },
        );
        Ok(())
    }
}
