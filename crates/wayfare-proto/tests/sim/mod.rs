//! Simulation harness: an in-memory lossy link, a fake clock, a fake chain and fake meters
//! driving one seller session and one buyer session, with invariants checked after every step.
#![allow(dead_code)]

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256, address};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wayfare_proto::billing::{self, MIB};
use wayfare_proto::eip712::{self, Offer};
use wayfare_proto::keys::SecretKey;
use wayfare_proto::messages::{
    Message, SignatureBytes, SignedCloseConsent, SignedVoucher, TunnelAddress,
};
use wayfare_proto::seal::{Credentials, RevealPayload};
use wayfare_proto::session::AcceptedBytes;
use wayfare_proto::session::{
    BuyerEvent, BuyerParams, BuyerSession, BuyerSnapshot, ChainEvent, ChannelOpened, CloseAction,
    EndReason, SellerEvent, SellerParams, SellerSession, SellerSnapshot, SessionConfig,
    SessionError,
};
use wayfare_proto::{Service, ServiceSet, Terms, Timestamp};

pub const CHAIN_ID: u64 = 31337;
pub const MARKET: Address = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
pub const SELLER: Address = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
pub const BUYER: Address = address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
pub const START_MS: u64 = 1_800_000_000_000;
pub const STEP_MS: u64 = 250;

/// Default prices: 1 gwei per MiB and 1 gwei per second.
pub fn list_terms() -> Terms {
    Terms {
        price_per_mib: 1_000_000_000,
        price_per_second: 1_000_000_000,
        seller_burn: 1_000,
        buyer_burn: 1_000,
        min_deposit: 1_000_000,
        payment_interval: 15,
    }
}

/// A link with loss, duplication and random delay (which reorders).
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub loss: f64,
    pub duplicate: f64,
    pub base_delay_ms: u64,
    pub jitter_ms: u64,
}

impl LinkConfig {
    pub const PERFECT: Self = Self {
        loss: 0.0,
        duplicate: 0.0,
        base_delay_ms: 40,
        jitter_ms: 0,
    };
}

pub struct Link {
    cfg: LinkConfig,
    in_flight: BTreeMap<(u64, u64), Vec<u8>>,
    seq: u64,
    pub sent: u64,
    pub dropped: u64,
}

impl Link {
    pub fn new(cfg: LinkConfig) -> Self {
        Self {
            cfg,
            in_flight: BTreeMap::new(),
            seq: 0,
            sent: 0,
            dropped: 0,
        }
    }

    fn send(&mut self, bytes: Vec<u8>, now: u64, rng: &mut StdRng) {
        self.sent += 1;
        if rng.gen_bool(self.cfg.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if rng.gen_bool(self.cfg.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.cfg.jitter_ms == 0 {
                0
            } else {
                rng.gen_range(0..=self.cfg.jitter_ms)
            };
            self.seq += 1;
            self.in_flight.insert(
                (now + self.cfg.base_delay_ms + jitter, self.seq),
                bytes.clone(),
            );
        }
    }

    fn due(&mut self, now: u64) -> Vec<Vec<u8>> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        due.into_values().collect()
    }

    fn clear(&mut self) {
        self.in_flight.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    Open,
    Closing { closes_at: u64 },
    Closed { to_seller: U256, to_buyer: U256 },
}

#[derive(Debug, Clone)]
pub struct FakeChannel {
    pub offer: Offer,
    pub deposit: U256,
    pub voucher_signer: Address,
    pub best: U256,
    pub status: ChannelStatus,
}

/// The contract's rules, in memory.
pub struct FakeChain {
    pub domain: eip712::Eip712Domain,
    pub seller_signer: Address,
    pub channels: BTreeMap<B256, FakeChannel>,
    pub confirm_ms: u64,
    pub challenge_ms: u64,
    pending: Vec<(u64, ChainEvent)>,
    pub rejected: Vec<String>,
}

impl FakeChain {
    fn new(seller_signer: Address) -> Self {
        Self {
            domain: eip712::domain(CHAIN_ID, MARKET),
            seller_signer,
            channels: BTreeMap::new(),
            confirm_ms: 2_000,
            challenge_ms: 3_600_000,
            pending: Vec::new(),
            rejected: Vec::new(),
        }
    }

    fn emit(&mut self, now: u64, ev: ChainEvent) {
        self.pending.push((now + self.confirm_ms, ev));
    }

    fn open(
        &mut self,
        offer: Offer,
        sig: SignatureBytes,
        voucher_signer: Address,
        value: U256,
        now: u64,
    ) {
        let digest = eip712::offer_digest(&offer, &self.domain);
        if eip712::recover_signer(digest, &sig) != Ok(self.seller_signer) {
            self.rejected.push("open: bad offer signature".into());
            return;
        }
        if offer.expiry * 1000 < now || offer.buyer != BUYER {
            self.rejected.push("open: expired or wrong buyer".into());
            return;
        }
        let id = eip712::channel_id(CHAIN_ID, MARKET, offer.seller, offer.nonce);
        let burn = U256::from(offer.buyerBurn);
        if self.channels.contains_key(&id) || value < burn + U256::from(offer.minDeposit) {
            self.rejected
                .push("open: used nonce or value too low".into());
            return;
        }
        let deposit = value - burn;
        self.channels.insert(
            id,
            FakeChannel {
                offer: offer.clone(),
                deposit,
                voucher_signer,
                best: U256::ZERO,
                status: ChannelStatus::Open,
            },
        );
        self.emit(
            now,
            ChainEvent::ChannelOpened(ChannelOpened {
                channel_id: id,
                seller: offer.seller,
                buyer: offer.buyer,
                service: offer.service,
                price_per_mib: offer.pricePerMiB,
                price_per_second: offer.pricePerSecond,
                seller_burn: offer.sellerBurn,
                buyer_burn: offer.buyerBurn,
                deposit,
                payment_interval: offer.paymentInterval,
                voucher_signer,
                tx_hash: B256::repeat_byte(0x77),
            }),
        );
    }

    fn top_up(&mut self, id: B256, amount: U256, now: u64) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        if c.status != ChannelStatus::Open {
            self.rejected.push("topUp: not open".into());
            return;
        }
        c.deposit += amount;
        let deposit = c.deposit;
        self.emit(
            now,
            ChainEvent::ToppedUp {
                channel_id: id,
                deposit,
            },
        );
    }

    fn check_voucher(&self, v: &SignedVoucher) -> bool {
        let Some(c) = self.channels.get(&v.channel_id) else {
            return false;
        };
        let digest = eip712::voucher_digest(v.channel_id, v.amount, &self.domain);
        eip712::recover_signer(digest, &v.signature) == Ok(c.voucher_signer)
    }

    fn close(&mut self, id: B256, amount: U256, now: u64) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        let to_seller = amount.max(c.best).min(c.deposit);
        let to_buyer = c.deposit - to_seller;
        c.status = ChannelStatus::Closed {
            to_seller,
            to_buyer,
        };
        self.emit(
            now,
            ChainEvent::ChannelClosed {
                channel_id: id,
                to_seller,
                to_buyer,
            },
        );
    }

    fn is_closed(&self, id: B256) -> bool {
        self.channels
            .get(&id)
            .is_none_or(|c| matches!(c.status, ChannelStatus::Closed { .. }))
    }

    fn settle(&mut self, v: SignedVoucher, now: u64) {
        if self.is_closed(v.channel_id) || !self.check_voucher(&v) {
            self.rejected.push("settle: closed or bad voucher".into());
            return;
        }
        self.close(v.channel_id, v.amount, now);
    }

    fn submit_voucher(&mut self, v: SignedVoucher, now: u64) {
        let ok = self.check_voucher(&v);
        let Some(c) = self.channels.get_mut(&v.channel_id) else {
            return;
        };
        match c.status {
            ChannelStatus::Closing { closes_at } if ok && now < closes_at => {
                c.best = c.best.max(v.amount);
            }
            _ => self
                .rejected
                .push("submitVoucher: not closing, past the deadline or bad voucher".into()),
        }
    }

    fn cooperative_close(&mut self, v: SignedVoucher, c: SignedCloseConsent, now: u64) {
        let consent_ok = eip712::recover_signer(
            eip712::close_consent_digest(c.channel_id, c.amount, &self.domain),
            &c.signature,
        ) == Ok(self.seller_signer);
        if self.is_closed(v.channel_id)
            || !self.check_voucher(&v)
            || !consent_ok
            || v.amount != c.amount
        {
            self.rejected
                .push("cooperativeClose: closed or bad signatures".into());
            return;
        }
        self.close(v.channel_id, v.amount, now);
    }

    pub fn start_close(&mut self, id: B256, now: u64) {
        let challenge = self.challenge_ms;
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        if c.status != ChannelStatus::Open {
            return;
        }
        let closes_at = now + challenge;
        c.status = ChannelStatus::Closing { closes_at };
        self.emit(
            now,
            ChainEvent::CloseStarted {
                channel_id: id,
                closes_at: closes_at / 1000,
            },
        );
    }

    fn tick(&mut self, now: u64) -> Vec<ChainEvent> {
        let due: Vec<B256> = self
            .channels
            .iter()
            .filter(|(_, c)| matches!(c.status, ChannelStatus::Closing { closes_at } if closes_at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let best = self.channels[&id].best;
            self.close(id, best, now);
        }
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.pending = later;
        ready.into_iter().map(|(_, e)| e).collect()
    }

    pub fn paid_to_seller(&self) -> Option<U256> {
        self.channels.values().find_map(|c| match c.status {
            ChannelStatus::Closed { to_seller, .. } => Some(to_seller),
            _ => None,
        })
    }
}

type Filter = Box<dyn FnMut(&Message, u64) -> bool>;

/// Knobs of the world.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub seed: u64,
    pub link: LinkConfig,
    pub session: SessionConfig,
    pub terms: Terms,
    /// True traffic, bytes per second (both directions together).
    pub flow: u64,
    /// The seller's meter counts this share of true traffic (1.0 = honest).
    pub seller_meter_factor: f64,
    /// The buyer's meter counts this share of true traffic (below 1.0 = a buyer paying short).
    pub buyer_meter_factor: f64,
    /// Bytes per second the seller sends unsolicited to the buyer's tunnel address; the seller
    /// counts them, the buyer's data plane drops them before its meter.
    pub flood: u64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            link: LinkConfig::PERFECT,
            session: SessionConfig::default(),
            terms: list_terms(),
            flow: 512 * 1024,
            seller_meter_factor: 1.0,
            buyer_meter_factor: 1.0,
            flood: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct Log {
    pub seller_events: Vec<(u64, String)>,
    pub buyer_events: Vec<(u64, String)>,
    pub seller_stop: Option<(u64, EndReason)>,
    pub buyer_stop: Option<(u64, EndReason)>,
    pub leave: Option<(u64, EndReason, CloseAction)>,
    pub paused: Vec<(u64, B256)>,
    pub settles: Vec<SignedVoucher>,
    /// Vouchers the seller submitted to a closing channel (watchtower).
    pub submitted: Vec<SignedVoucher>,
    pub top_ups: u32,
    pub vouchers_signed: Vec<U256>,
    pub last_voucher_arrival: Option<u64>,
    pub max_exposure: U256,
}

pub struct World {
    pub now: u64,
    pub cfg: WorldConfig,
    pub rng: StdRng,
    pub seller: SellerSession,
    pub buyer: BuyerSession,
    seller_params: SellerParams,
    buyer_params: BuyerParams,
    pub b2s: Link,
    pub s2b: Link,
    pub chain: FakeChain,
    pub seller_store: Option<Vec<u8>>,
    pub buyer_store: Option<Vec<u8>>,
    pub seller_up: bool,
    pub buyer_up: bool,
    pub true_bytes: u64,
    /// First and last instant both sides were up in the current run (true usage time).
    pub true_start: Option<u64>,
    pub true_end: Option<u64>,
    /// Whole seconds of earlier runs (both sides up again after both were down: a resume).
    pub true_prior_secs: u64,
    carry_true: f64,
    carry_seller: f64,
    carry_buyer: f64,
    pub b2s_filter: Option<Filter>,
    pub s2b_filter: Option<Filter>,
    pub log: Log,
    last_best: U256,
}

impl World {
    pub fn new(cfg: WorldConfig) -> Self {
        let seller_signer = SecretKey::from_bytes(&[0x11; 32]).expect("key");
        let mut list = cfg.terms;
        list.payment_interval =
            u32::try_from(cfg.session.payment_interval.as_secs()).expect("interval");
        let seller_params = SellerParams {
            chain_id: CHAIN_ID,
            market: MARKET,
            seller: SELLER,
            signer: seller_signer.clone(),
            list_terms: list,
            services: ServiceSet::new(&[Service::WireGuard, Service::Shadowsocks]),
        };
        let buyer_params = BuyerParams {
            chain_id: CHAIN_ID,
            market: MARKET,
            buyer: BUYER,
            seller: SELLER,
            seller_signer: seller_signer.address(),
            service: Service::WireGuard,
            wanted: None,
            voucher_key: SecretKey::from_bytes(&[0x22; 32]).expect("key"),
            reveal_seed: [0x33; 32],
            wireguard_key: Some([0x44; 32]),
        };
        let now = START_MS;
        let seller = SellerSession::new(seller_params.clone(), cfg.session.clone());
        let buyer = BuyerSession::new(buyer_params.clone(), cfg.session.clone(), Timestamp(now));
        Self {
            now,
            rng: StdRng::seed_from_u64(cfg.seed),
            b2s: Link::new(cfg.link),
            s2b: Link::new(cfg.link),
            chain: FakeChain::new(seller_signer.address()),
            cfg,
            seller,
            buyer,
            seller_params,
            buyer_params,
            seller_store: None,
            buyer_store: None,
            seller_up: false,
            buyer_up: false,
            true_bytes: 0,
            true_start: None,
            true_end: None,
            true_prior_secs: 0,
            carry_true: 0.0,
            carry_seller: 0.0,
            carry_buyer: 0.0,
            b2s_filter: None,
            s2b_filter: None,
            log: Log::default(),
            last_best: U256::ZERO,
        }
    }

    pub fn with_buyer_params(mut self, f: impl FnOnce(&mut BuyerParams)) -> Self {
        f(&mut self.buyer_params);
        self.buyer = BuyerSession::new(
            self.buyer_params.clone(),
            self.cfg.session.clone(),
            Timestamp(self.now),
        );
        self
    }

    pub fn with_seller_params(mut self, f: impl FnOnce(&mut SellerParams)) -> Self {
        f(&mut self.seller_params);
        self.seller = SellerSession::new(self.seller_params.clone(), self.cfg.session.clone());
        self
    }

    pub fn t(&self) -> Timestamp {
        Timestamp(self.now)
    }

    pub fn secs(&self) -> u64 {
        (self.now - START_MS) / 1000
    }

    pub fn done(&self) -> bool {
        self.seller.is_ended() && self.buyer.is_ended()
    }

    /// What true usage costs (the seconds of every run, not the gaps between them).
    pub fn true_owed(&self) -> U256 {
        let secs = self.true_prior_secs
            + match (self.true_start, self.true_end) {
                (Some(s), Some(e)) => (e - s) / 1000,
                (Some(s), None) => (self.now - s) / 1000,
                _ => 0,
            };
        let t = self.seller.terms().expect("terms");
        billing::owed(self.true_bytes, secs, t.price_per_mib, t.price_per_second).expect("owed")
    }

    pub fn drain(&mut self) {
        let now = Timestamp(self.now);
        // Events first (persist before acknowledging), then transmits; repeat until quiet.
        loop {
            let mut progressed = false;
            while let Some(ev) = self.seller.poll_event() {
                progressed = true;
                self.on_seller_event(ev, now);
            }
            while let Some(ev) = self.buyer.poll_event() {
                progressed = true;
                self.on_buyer_event(ev);
            }
            while let Some(bytes) = self.seller.poll_transmit() {
                progressed = true;
                let msg = Message::decode(&bytes).expect("seller sends valid messages");
                if let Some(f) = &mut self.s2b_filter
                    && !f(&msg, self.now)
                {
                    continue;
                }
                self.s2b.send(bytes, self.now, &mut self.rng);
            }
            while let Some(bytes) = self.buyer.poll_transmit() {
                progressed = true;
                let msg = Message::decode(&bytes).expect("buyer sends valid messages");
                if let Message::Voucher(v) = &msg {
                    // The persisted snapshot already holds this voucher.
                    let stored =
                        BuyerSnapshot::from_bytes(self.buyer_store.as_deref().expect("persisted"))
                            .expect("snapshot");
                    assert!(
                        stored.last_voucher.is_some_and(|s| s.amount >= v.amount),
                        "voucher {} transmitted before it was persisted",
                        v.amount
                    );
                }
                if let Some(f) = &mut self.b2s_filter
                    && !f(&msg, self.now)
                {
                    continue;
                }
                self.b2s.send(bytes, self.now, &mut self.rng);
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_seller_event(&mut self, ev: SellerEvent, now: Timestamp) {
        self.log
            .seller_events
            .push((self.now, format!("{ev:?}").chars().take(80).collect()));
        match ev {
            SellerEvent::Persist(s) => {
                let bytes = s.to_bytes();
                assert_eq!(SellerSnapshot::from_bytes(&bytes).as_ref(), Ok(&*s));
                self.seller_store = Some(bytes);
            }
            SellerEvent::StartService {
                needs_reveal,
                wireguard_key,
                ..
            } => {
                assert_eq!(wireguard_key, self.buyer_params.wireguard_key);
                self.seller_up = true;
                if needs_reveal {
                    let payload = reveal_payload();
                    self.seller
                        .reveal(&payload, &mut self.rng, now)
                        .expect("reveal");
                }
            }
            SellerEvent::StopService { reason, .. } => {
                self.seller_up = false;
                self.log.seller_stop.get_or_insert((self.now, reason));
            }
            SellerEvent::Settle { voucher } => {
                self.log.settles.push(voucher);
                self.chain.settle(voucher, self.now);
            }
            SellerEvent::SubmitVoucher { voucher, .. } => {
                self.log.submitted.push(voucher);
                self.chain.submit_voucher(voucher, self.now);
            }
            SellerEvent::Ended { .. } => {}
        }
    }

    fn on_buyer_event(&mut self, ev: BuyerEvent) {
        self.log
            .buyer_events
            .push((self.now, format!("{ev:?}").chars().take(80).collect()));
        match ev {
            BuyerEvent::Persist(s) => {
                let bytes = s.to_bytes();
                assert_eq!(BuyerSnapshot::from_bytes(&bytes).as_ref(), Ok(&*s));
                if let Some(v) = s.last_voucher
                    && self.log.vouchers_signed.last() != Some(&v.amount)
                {
                    self.log.vouchers_signed.push(v.amount);
                }
                self.buyer_store = Some(bytes);
            }
            BuyerEvent::OpenChannel {
                offer,
                seller_signature,
                voucher_signer,
                value,
            } => {
                self.chain
                    .open(offer, seller_signature, voucher_signer, value, self.now);
            }
            BuyerEvent::StartService { reveal, .. } => {
                assert_eq!(reveal, reveal_payload());
                self.buyer_up = true;
            }
            BuyerEvent::StopService { reason } => {
                self.buyer_up = false;
                self.log.buyer_stop.get_or_insert((self.now, reason));
            }
            BuyerEvent::Paused { channel_id } => {
                self.log.paused.push((self.now, channel_id));
            }
            BuyerEvent::TopUp { channel_id, amount } => {
                self.log.top_ups += 1;
                self.chain.top_up(channel_id, amount, self.now);
            }
            BuyerEvent::Leave { reason, close } => {
                self.log.leave.get_or_insert((self.now, reason, close));
                match close {
                    CloseAction::Cooperative { voucher, consent } => {
                        self.chain.cooperative_close(voucher, consent, self.now);
                    }
                    CloseAction::StartClose { channel_id } => {
                        self.chain.start_close(channel_id, self.now)
                    }
                    CloseAction::Nothing => {}
                }
            }
        }
    }

    /// One step of `STEP_MS`: chain events, deliveries, meters, timers, then invariants.
    pub fn step(&mut self) {
        self.now += STEP_MS;
        let now = Timestamp(self.now);
        for ev in self.chain.tick(self.now) {
            let _ = self.seller.handle_chain_event(ev, now);
            let _ = self.buyer.handle_chain_event(ev, now);
        }
        self.drain();
        for bytes in self.b2s.due(self.now) {
            if let Ok(Message::Voucher(v)) = Message::decode(&bytes) {
                let before = self.seller.best_voucher().map(|b| b.amount);
                let _ = self.seller.handle_bytes(&bytes, now);
                if self.seller.best_voucher().map(|b| b.amount) != before
                    || before == Some(v.amount)
                {
                    self.log.last_voucher_arrival = Some(self.now);
                }
            } else {
                let _ = self.seller.handle_bytes(&bytes, now);
            }
        }
        for bytes in self.s2b.due(self.now) {
            let _ = self.buyer.handle_bytes(&bytes, now);
        }
        self.drain();
        // Traffic flows while both ends are up.
        let dt = STEP_MS as f64 / 1000.0;
        if self.seller_up && self.buyer_up {
            if let (Some(s), Some(e)) = (self.true_start, self.true_end) {
                // A new run after a stop (a resume): bank the last one.
                self.true_prior_secs += (e - s) / 1000;
                self.true_start = None;
            }
            self.true_start.get_or_insert(self.now - STEP_MS);
            self.true_end = None;
            let true_bytes = self.cfg.flow as f64 * dt + self.carry_true;
            let whole = true_bytes.floor();
            self.carry_true = true_bytes - whole;
            self.true_bytes += whole as u64;
            let s = whole * self.cfg.seller_meter_factor
                + self.cfg.flood as f64 * dt
                + self.carry_seller;
            let b = whole * self.cfg.buyer_meter_factor + self.carry_buyer;
            self.carry_seller = s - s.floor();
            self.carry_buyer = b - b.floor();
            self.seller.handle_meter(s.floor() as u64, now);
            self.buyer
                .handle_meter(AcceptedBytes(b.floor() as u64), now);
        } else {
            if self.true_start.is_some() && self.true_end.is_none() {
                self.true_end = Some(self.now);
            }
            self.seller.handle_meter(0, now);
        }
        self.drain();
        if self.seller.poll_timeout().is_some_and(|t| t <= now) {
            self.seller.handle_timeout(now);
        }
        if self.buyer.poll_timeout().is_some_and(|t| t <= now) {
            self.buyer.handle_timeout(now);
        }
        self.drain();
        self.check_invariants();
    }

    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.step();
        }
    }

    pub fn run_until(&mut self, limit_ms: u64, mut cond: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + limit_ms;
        while self.now < end {
            if cond(self) {
                return true;
            }
            self.step();
        }
        cond(self)
    }

    /// Runs until both sessions end (and the channel closed), within `limit_ms`.
    pub fn finish(&mut self, limit_ms: u64) -> bool {
        self.run_until(limit_ms, |w| w.done() && w.chain.paid_to_seller().is_some())
    }

    pub fn restart_seller(&mut self) {
        let snap =
            SellerSnapshot::from_bytes(self.seller_store.as_deref().expect("seller persisted"))
                .expect("decode");
        self.seller = SellerSession::restore(
            snap,
            self.seller_params.clone(),
            self.cfg.session.clone(),
            self.t(),
        );
        self.b2s.clear();
        self.seller_up = false;
        self.drain();
    }

    pub fn restart_buyer(&mut self) {
        let snap = BuyerSnapshot::from_bytes(self.buyer_store.as_deref().expect("buyer persisted"))
            .expect("decode");
        self.buyer = BuyerSession::restore(
            snap,
            self.buyer_params.clone(),
            self.cfg.session.clone(),
            self.t(),
        );
        self.s2b.clear();
        self.buyer_up = false;
        self.drain();
    }

    /// The buyer's user reconnects a paused channel: a new `BuyerSession::resume` from the
    /// stored (paused) snapshot, with the params changed by `f` (fresh reveal seed, new
    /// WireGuard key, or another voucher key to test refusals).
    pub fn resume_buyer(&mut self, f: impl FnOnce(&mut BuyerParams)) -> Result<(), SessionError> {
        let snap = BuyerSnapshot::from_bytes(self.buyer_store.as_deref().expect("buyer persisted"))
            .expect("decode");
        let mut params = self.buyer_params.clone();
        f(&mut params);
        self.buyer =
            BuyerSession::resume(snap, params.clone(), self.cfg.session.clone(), self.t())?;
        self.buyer_params = params;
        self.buyer_up = false;
        self.drain();
        Ok(())
    }

    pub fn buyer_params(&self) -> &BuyerParams {
        &self.buyer_params
    }

    pub fn max_debt(&self) -> U256 {
        self.seller.max_debt()
    }

    /// Checked after every step.
    pub fn check_invariants(&mut self) {
        let now = self.t();
        let Some(terms) = self.seller.terms() else {
            return;
        };
        let cfg = &self.cfg.session;
        // The seller's exposure stays under max debt plus one interval of usage.
        if self.seller.is_serving() {
            let exposure = self.seller.exposure(now);
            self.log.max_exposure = self.log.max_exposure.max(exposure);
            let interval = u64::from(terms.payment_interval);
            let rate =
                (self.cfg.flow as f64 * self.cfg.seller_meter_factor) as u64 + self.cfg.flood;
            let one_interval = billing::owed(
                rate * interval,
                interval,
                terms.price_per_mib,
                terms.price_per_second,
            )
            .expect("owed");
            assert!(
                exposure <= self.seller.max_debt() + one_interval,
                "seller exposure {exposure} over max debt {} + one interval {one_interval}",
                self.seller.max_debt()
            );
        }
        // The seller's best voucher never goes down.
        let best = self.seller.best_voucher().map_or(U256::ZERO, |b| b.amount);
        assert!(
            best >= self.last_best || self.seller.is_ended() && best == U256::ZERO,
            "best went down"
        );
        self.last_best = self.last_best.max(best);
        // The buyer never signs more than its meter (plus tolerance) nor more than the deposit.
        if let Some(v) = self.buyer.last_voucher() {
            let owed = self.buyer.owed(now);
            let cap = billing::scale_bps(owed, billing::BPS + cfg.tolerance_bps);
            assert!(
                v.amount <= cap.max(owed),
                "buyer signed {} over its meter's {owed}",
                v.amount
            );
            if let Some(d) = self.buyer.deposit() {
                assert!(
                    v.amount <= d,
                    "buyer signed {} over the deposit {d}",
                    v.amount
                );
            }
        }
        // Signed voucher amounts strictly increase.
        assert!(
            self.log.vouchers_signed.windows(2).all(|w| w[0] < w[1]),
            "voucher amounts not strictly increasing: {:?}",
            self.log.vouchers_signed
        );
    }
}

pub fn reveal_payload() -> RevealPayload {
    RevealPayload {
        endpoint: "198.18.1.1:51820".parse().expect("addr"),
        session_id: [7; 16],
        credentials: Credentials::WireGuard {
            server_public_key: [9; 32],
            tunnel: TunnelAddress {
                address: "198.19.0.2".parse().expect("ip"),
                prefix_len: 32,
            },
            dns: None,
        },
    }
}

pub const MINUTE: u64 = 60_000;
pub const fn mib(n: u64) -> u64 {
    n * MIB
}
