//! Whole sessions in simulation: named scenarios from the protocol's promises.

mod sim;

use alloy_primitives::U256;
use sim::*;
use wayfare_proto::billing;
use wayfare_proto::eip712;
use wayfare_proto::keys::SecretKey;
use wayfare_proto::messages::{CloseReason, Message, Refusal, RefusalReason, Resume, Reveal};
use wayfare_proto::seal::{self, RevealSecret};
use wayfare_proto::session::{
    BuyerPhase, BuyerSnapshot, CloseAction, EndReason, SellerEvent, SellerPhase, SellerSnapshot,
    SessionConfig, SessionError, TopUpPolicy,
};
use wayfare_proto::{Terms, Timestamp};

fn open_and_serve(w: &mut World) {
    assert!(
        w.run_until(MINUTE, |w| w.seller.is_serving() && w.buyer.is_serving()),
        "session never started"
    );
}

fn assert_paid_within_tolerance(w: &World) {
    let paid = w.chain.paid_to_seller().expect("channel closed");
    let truth = w.true_owed();
    let tol = billing::scale_bps(truth, 200);
    assert!(
        paid <= truth + tol,
        "seller paid {paid}, more than true usage {truth} + 2 %"
    );
    assert!(
        paid + tol >= truth,
        "seller paid {paid}, less than true usage {truth} - 2 %"
    );
}

#[test]
fn one_hour_session_at_15s_intervals_pays_the_seller_within_tolerance() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(60 * MINUTE);
    assert!(w.seller.is_serving() && w.buyer.is_serving());
    // About one voucher per interval.
    let n = w.log.vouchers_signed.len();
    assert!((235..=245).contains(&n), "{n} vouchers in an hour");
    w.buyer.leave(w.t());
    assert!(w.finish(MINUTE));
    assert_paid_within_tolerance(&w);
    // Closed cooperatively on the buyer's final voucher.
    assert!(matches!(
        w.log.leave,
        Some((_, EndReason::UserLeft, CloseAction::Cooperative { .. }))
    ));
    assert!(
        w.chain.rejected.iter().all(|r| r.starts_with("settle")),
        "{:?}",
        w.chain.rejected
    );
}

#[test]
fn buyer_stops_paying_service_stops_within_interval_plus_grace() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(10 * MINUTE);
    let stop_at = w.now;
    w.b2s_filter = Some(Box::new(move |m, now| {
        !(matches!(m, Message::Voucher(_)) && now >= stop_at)
    }));
    assert!(w.run_until(2 * MINUTE, |w| w.seller.is_ended()));
    let last = w.log.last_voucher_arrival.expect("vouchers arrived before");
    let (cut_at, reason) = w.log.seller_stop.expect("seller stopped");
    assert_eq!(reason, EndReason::MissingPayment);
    assert!(
        cut_at - last <= 15_000 + 10_000 + STEP_MS,
        "cut {} ms after the last voucher",
        cut_at - last
    );
    assert!(
        w.log.max_exposure <= w.max_debt(),
        "exposure {} > max debt {}",
        w.log.max_exposure,
        w.max_debt()
    );
    // The seller settled with the best voucher it held.
    assert!(w.finish(MINUTE) || w.chain.paid_to_seller().is_some());
    assert_eq!(
        w.chain.paid_to_seller(),
        w.seller.best_voucher().map(|v| v.amount)
    );
}

#[test]
fn buyer_stops_paying_on_a_fast_flow_seller_cuts_at_max_debt() {
    let mut cfg = WorldConfig {
        flow: 64 * 1024 * 1024,
        ..WorldConfig::default()
    };
    cfg.session.max_debt_wei = Some(U256::from(40_000_000_000u64)); // 40 MiB worth
    let mut w = World::new(cfg);
    open_and_serve(&mut w);
    w.run_for(2 * MINUTE);
    // Honest payments at 64 MiB/s would exceed this max debt within an interval, so it is cut
    // on debt, not on a missing voucher, and its exposure stays under max debt + one step.
    assert!(w.run_until(MINUTE, |w| w.seller.is_ended()));
    assert_eq!(w.log.seller_stop.map(|s| s.1), Some(EndReason::MaxDebt));
    let one_step = billing::owed(64 * 1024 * 1024 / 4, 1, 1_000_000_000, 1_000_000_000).unwrap();
    assert!(w.log.max_exposure <= w.max_debt() + one_step);
}

#[test]
fn buyer_paying_ten_percent_short_is_cut() {
    let cfg = WorldConfig {
        buyer_meter_factor: 0.9,
        flow: 1024 * 1024,
        ..WorldConfig::default()
    };
    let mut w = World::new(cfg);
    // A cheating buyer ignores the seller's usage reports.
    w.s2b_filter = Some(Box::new(|m, _| !matches!(m, Message::Usage(_))));
    open_and_serve(&mut w);
    assert!(
        w.run_until(30 * MINUTE, |w| w.seller.is_ended()),
        "never cut"
    );
    assert_eq!(
        w.log.seller_stop.map(|s| s.1),
        Some(EndReason::ShortPayment)
    );
    assert!(w.finish(5 * MINUTE));
    // The seller settled on the best voucher; its loss is bounded by the tolerance, the slack
    // and the shortfall of the one interval in which the threshold was crossed.
    let paid = w.chain.paid_to_seller().unwrap();
    assert_eq!(Some(paid), w.seller.best_voucher().map(|v| v.amount));
    let truth = w.true_owed();
    let slack = w.cfg.session.slack(&w.seller.terms().unwrap());
    assert!(
        paid + billing::scale_bps(truth, 200) + slack + slack >= truth,
        "paid {paid} of {truth}"
    );
    assert!(paid < truth);
}

#[test]
fn seller_meter_inflated_20_percent_makes_the_buyer_leave() {
    let cfg = WorldConfig {
        seller_meter_factor: 1.2,
        flow: 1024 * 1024,
        ..WorldConfig::default()
    };
    let mut w = World::new(cfg);
    open_and_serve(&mut w);
    assert!(
        w.run_until(30 * MINUTE, |w| w.buyer.is_ended()),
        "buyer stayed"
    );
    let (_, reason, close) = w.log.leave.expect("left");
    assert_eq!(reason, EndReason::MeterMismatch);
    assert!(
        matches!(close, CloseAction::Cooperative { .. }),
        "{close:?}"
    );
    assert!(w.finish(5 * MINUTE));
    // The buyer paid its own meter, not the inflated one.
    let paid = w.chain.paid_to_seller().unwrap();
    assert!(paid <= w.true_owed() + billing::scale_bps(w.true_owed(), 200));
}

#[test]
fn five_percent_message_loss_with_duplication_and_reordering_still_completes() {
    let cfg = WorldConfig {
        seed: 5,
        link: LinkConfig {
            loss: 0.05,
            duplicate: 0.05,
            base_delay_ms: 30,
            jitter_ms: 400,
        },
        ..WorldConfig::default()
    };
    let mut w = World::new(cfg);
    open_and_serve(&mut w);
    w.run_for(30 * MINUTE);
    assert!(
        w.seller.is_serving() && w.buyer.is_serving(),
        "ended: {:?} {:?}",
        w.log.seller_stop,
        w.log.leave
    );
    assert!(w.b2s.dropped + w.s2b.dropped > 10, "the link lost nothing");
    w.buyer.leave(w.t());
    assert!(w.finish(2 * MINUTE));
    assert_paid_within_tolerance(&w);
}

#[test]
fn five_percent_loss_over_many_seeds_never_cuts_an_honest_buyer() {
    for seed in 10..16 {
        let cfg = WorldConfig {
            seed,
            link: LinkConfig {
                loss: 0.05,
                duplicate: 0.02,
                base_delay_ms: 20,
                jitter_ms: 200,
            },
            ..WorldConfig::default()
        };
        let mut w = World::new(cfg);
        open_and_serve(&mut w);
        w.run_for(5 * MINUTE);
        assert!(
            w.seller.is_serving(),
            "seed {seed}: {:?}",
            w.log.seller_stop
        );
    }
}

#[test]
fn old_or_replayed_vouchers_change_nothing() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = captured.clone();
    w.b2s_filter = Some(Box::new(move |m, _| {
        if let Message::Voucher(v) = m {
            sink.borrow_mut().push(*v);
        }
        true
    }));
    w.run_for(5 * MINUTE);
    let old = captured.borrow().clone();
    assert!(old.len() > 10);
    let best = *w.seller.best_voucher().unwrap();
    let snapshot = w.seller.snapshot();
    let now = w.t();
    for v in &old[..old.len() - 1] {
        if v.amount < best.amount {
            let err = w
                .seller
                .handle_message(Message::Voucher(*v), now)
                .unwrap_err();
            assert!(matches!(err, SessionError::StaleVoucher { .. }), "{err}");
        }
    }
    assert_eq!(w.seller.best_voucher(), Some(&best));
    assert_eq!(w.seller.snapshot(), snapshot);
    assert!(
        w.seller.poll_event().is_none(),
        "an old voucher caused an event"
    );
    // A voucher for another channel is refused.
    let mut other = best;
    other.channel_id = alloy_primitives::B256::repeat_byte(1);
    assert!(matches!(
        w.seller.handle_message(Message::Voucher(other), now),
        Err(SessionError::WrongChannel { .. })
    ));
    // Forged amount: signature no longer matches.
    let mut forged = best;
    forged.amount += U256::from(1u8);
    assert!(matches!(
        w.seller.handle_message(Message::Voucher(forged), now),
        Err(SessionError::Signature(_))
    ));
    assert_eq!(w.seller.best_voucher(), Some(&best));

    // Now the buyer stops paying and an attacker replays the best voucher every second: the cut
    // still comes within interval + grace of the last real voucher.
    let stop_at = w.now;
    w.b2s_filter = Some(Box::new(move |m, now| {
        !(matches!(m, Message::Voucher(_)) && now >= stop_at)
    }));
    let mut replay_at = w.now;
    let last_real = w.now;
    let ended = w.run_until(2 * MINUTE, |w| w.seller.is_ended());
    assert!(!ended || w.now > last_real);
    while !w.seller.is_ended() && w.now < last_real + 2 * MINUTE {
        if w.now >= replay_at {
            let best = *w.seller.best_voucher().unwrap();
            let _ = w.seller.handle_message(Message::Voucher(best), w.t());
            replay_at += 1_000;
        }
        w.step();
    }
    let (cut_at, reason) = w.log.seller_stop.unwrap();
    assert_eq!(reason, EndReason::MissingPayment);
    assert!(
        cut_at <= last_real + 15_000 + 10_000 + 1_000,
        "replays stretched the deadline"
    );
}

#[test]
fn seller_restarts_from_its_snapshot_mid_session_and_nothing_is_lost() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(20 * MINUTE + 7_000);
    let best_before = *w.seller.best_voucher().unwrap();
    w.restart_seller();
    assert_eq!(
        w.seller.best_voucher(),
        Some(&best_before),
        "the best voucher survived"
    );
    assert!(w.seller.is_serving());
    w.run_for(20 * MINUTE);
    assert!(
        w.seller.is_serving() && w.buyer.is_serving(),
        "{:?} {:?}",
        w.log.seller_stop,
        w.log.leave
    );
    assert!(w.seller.best_voucher().unwrap().amount > best_before.amount);
    w.buyer.leave(w.t());
    assert!(w.finish(MINUTE));
    assert_paid_within_tolerance(&w);
}

#[test]
fn buyer_restarts_from_its_snapshot_mid_session_and_nothing_is_lost() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(20 * MINUTE + 3_000);
    let last_before = *w.buyer.last_voucher().unwrap();
    w.restart_buyer();
    assert_eq!(
        w.buyer.last_voucher(),
        Some(&last_before),
        "the last voucher survived"
    );
    w.run_for(20 * MINUTE);
    assert!(
        w.seller.is_serving() && w.buyer.is_serving(),
        "{:?} {:?}",
        w.log.seller_stop,
        w.log.leave
    );
    assert!(w.buyer.last_voucher().unwrap().amount > last_before.amount);
    w.buyer.leave(w.t());
    assert!(w.finish(MINUTE));
    assert_paid_within_tolerance(&w);
}

#[test]
fn both_sides_restart_while_the_buyer_waits_for_the_reveal() {
    let mut w = World::new(WorldConfig::default());
    assert!(w.run_until(MINUTE, |w| w.buyer_store.is_some()
        && w.buyer.channel_id().is_some()
        && w.buyer.deposit().is_some()));
    w.restart_buyer();
    open_and_serve(&mut w);
    w.run_for(2 * MINUTE);
    w.restart_seller();
    w.restart_buyer();
    w.run_for(2 * MINUTE);
    assert!(w.seller.is_serving() && w.buyer.is_serving());
}

#[test]
fn seller_restarts_while_closing_and_still_settles_its_best_voucher() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(3 * MINUTE);
    // The seller's consents never reach the buyer, so only the seller can close.
    w.s2b_filter = Some(Box::new(|m, _| !matches!(m, Message::CloseConsent(_))));
    w.chain.challenge_ms = 10 * MINUTE;
    w.buyer.leave(w.t());
    assert!(w.run_until(MINUTE, |w| {
        w.seller_store
            .as_deref()
            .and_then(|b| wayfare_proto::session::SellerSnapshot::from_bytes(b).ok())
            .is_some_and(|s| s.phase == wayfare_proto::session::SellerPhase::Closing)
    }));
    w.run_for(2_000);
    let best = *w.seller.best_voucher().unwrap();
    w.restart_seller();
    assert_eq!(w.seller.best_voucher(), Some(&best));
    // Without a consent the buyer starts a close; the seller submits its best voucher and the
    // close pays it out once the 10-minute challenge period is over.
    assert!(w.finish(15 * MINUTE), "never closed");
    assert_eq!(w.chain.paid_to_seller(), Some(best.amount));
    assert_paid_within_tolerance(&w);
}

fn low_deposit_config(top_up: Option<TopUpPolicy>) -> WorldConfig {
    let mut cfg = WorldConfig::default();
    // 512 KiB/s at 1 gwei/MiB + 1 gwei/s costs 1.5 gwei/s: 1800 gwei lasts 20 minutes.
    cfg.session.deposit = U256::from(1_800_000_000_000u64);
    cfg.session.top_up = top_up;
    cfg
}

#[test]
fn low_deposit_tops_up_by_policy_and_the_session_goes_on() {
    let policy = TopUpPolicy {
        amount: U256::from(1_800_000_000_000u64),
        max_total_deposit: U256::from(10_000_000_000_000u64),
    };
    let mut w = World::new(low_deposit_config(Some(policy)));
    open_and_serve(&mut w);
    w.run_for(45 * MINUTE);
    assert!(
        w.seller.is_serving() && w.buyer.is_serving(),
        "{:?} {:?}",
        w.log.seller_stop,
        w.log.leave
    );
    assert!(w.log.top_ups >= 2, "{} top-ups", w.log.top_ups);
    assert!(w.buyer.deposit().unwrap() > U256::from(1_800_000_000_000u64));
    w.buyer.leave(w.t());
    assert!(w.finish(MINUTE));
    assert_paid_within_tolerance(&w);
}

#[test]
fn low_deposit_without_top_up_leaves_before_the_deposit_runs_out() {
    let mut w = World::new(low_deposit_config(None));
    open_and_serve(&mut w);
    assert!(w.run_until(30 * MINUTE, |w| w.buyer.is_ended()));
    let (_, reason, close) = w.log.leave.unwrap();
    assert_eq!(reason, EndReason::DepositExhausted);
    assert!(matches!(close, CloseAction::Cooperative { .. }));
    assert!(w.finish(MINUTE));
    let paid = w.chain.paid_to_seller().unwrap();
    assert!(paid <= U256::from(1_800_000_000_000u64));
    assert_paid_within_tolerance(&w);
    assert_eq!(w.log.top_ups, 0);
}

#[test]
fn seller_flooding_the_buyers_tunnel_address_does_not_raise_the_bill() {
    // The seller sends 2 MiB/s of junk at the buyer; it counts it, the buyer's data plane drops
    // it before its meter (the buyer meter API takes only accepted bytes).
    let cfg = WorldConfig {
        flood: 2 * 1024 * 1024,
        ..WorldConfig::default()
    };
    let mut w = World::new(cfg);
    open_and_serve(&mut w);
    assert!(w.run_until(30 * MINUTE, |w| w.buyer.is_ended() || w.seller.is_ended()));
    assert!(w.finish(5 * MINUTE));
    let paid = w.chain.paid_to_seller().unwrap();
    let truth = w.true_owed();
    assert!(
        paid <= truth + billing::scale_bps(truth, 200),
        "flood raised the bill: {paid} > {truth}"
    );
    // Every voucher the buyer signed was within its own (accepted-bytes) meter.
    assert!(
        w.log
            .vouchers_signed
            .iter()
            .all(|a| *a <= truth + billing::scale_bps(truth, 200))
    );
}

#[test]
fn buyer_starts_a_close_while_the_seller_is_away_and_the_watchtower_settles() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(5 * MINUTE);
    // Seller unreachable: nothing from it arrives; the buyer leaves and, with no consent,
    // starts a unilateral close.
    w.s2b_filter = Some(Box::new(|_, _| false));
    w.buyer.leave(w.t());
    assert!(w.run_until(2 * MINUTE, |w| w.buyer.is_ended()));
    assert!(matches!(
        w.log.leave,
        Some((_, _, CloseAction::StartClose { .. }))
    ));
    // The seller's chain watcher sees CloseStarted and submits its best voucher at once (before
    // the deadline); the close pays it out at finalize.
    assert!(w.run_until(MINUTE, |w| !w.log.submitted.is_empty()));
    assert_eq!(
        w.log.submitted.last().map(|v| v.amount),
        w.seller.best_voucher().map(|v| v.amount)
    );
    assert!(w.run_until(120 * MINUTE, |w| w.chain.paid_to_seller().is_some()));
    assert_eq!(
        w.chain.paid_to_seller(),
        w.seller.best_voucher().map(|v| v.amount)
    );
}

#[test]
fn counter_offer_is_clamped_to_the_sellers_bounds_and_checked_by_the_buyer() {
    let mut cfg = WorldConfig::default();
    cfg.session.counter_offer.min_price_per_mib = 800_000_000;
    cfg.session.counter_offer.min_price_per_second = 500_000_000;
    let wanted = Terms {
        price_per_mib: 1,
        price_per_second: 600_000_000,
        ..list_terms()
    };
    let mut w = World::new(cfg).with_buyer_params(|p| p.wanted = Some(wanted));
    open_and_serve(&mut w);
    let t = w.buyer.terms().unwrap();
    assert_eq!(t.price_per_mib, 800_000_000);
    assert_eq!(t.price_per_second, 600_000_000);
    assert_eq!(w.seller.terms(), Some(t));
}

#[test]
fn buyer_refuses_an_offer_above_its_max_price() {
    let mut cfg = WorldConfig::default();
    cfg.session.limits.max_price_per_mib = 10;
    let mut w = World::new(cfg);
    assert!(w.run_until(MINUTE, |w| w.buyer.is_ended()));
    assert_eq!(w.buyer.end_reason(), Some(EndReason::Refused));
    assert!(w.chain.channels.is_empty(), "no channel opened");
}

#[test]
fn seller_refuses_a_service_it_does_not_offer() {
    let mut w = World::new(WorldConfig::default()).with_seller_params(|p| {
        p.services = wayfare_proto::ServiceSet::new(&[wayfare_proto::Service::Shadowsocks]);
    });
    assert!(w.run_until(MINUTE, |w| w.buyer.is_ended() && w.seller.is_ended()));
    assert_eq!(w.buyer.end_reason(), Some(EndReason::Refused));
}

#[test]
fn offer_nobody_opens_expires_on_the_sellers_side() {
    let mut w = World::new(WorldConfig::default());
    // The buyer's open never reaches the chain.
    w.run_for(STEP_MS);
    let now = w.t();
    let _ = now;
    w.chain.confirm_ms = u64::MAX / 4;
    let ttl =
        w.cfg.session.offer_ttl.as_millis() as u64 + w.cfg.session.open_wait.as_millis() as u64;
    assert!(w.run_until(ttl + MINUTE, |w| w.seller.is_ended()));
    assert_eq!(w.seller.end_reason(), Some(EndReason::OfferExpired));
    assert!(w.buyer.is_ended());
}

#[test]
fn persist_comes_before_the_voucher_and_the_usage_ack_leave() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(14_000);
    // Drive the buyer by hand over its next voucher tick.
    let t = w.buyer.poll_timeout().unwrap();
    w.buyer.handle_timeout(t);
    assert!(
        w.buyer.poll_transmit().is_none(),
        "voucher left before its Persist was polled"
    );
    let ev = w.buyer.poll_event().unwrap();
    assert!(
        matches!(ev, wayfare_proto::session::BuyerEvent::Persist(_)),
        "{ev:?}"
    );
    let bytes = w.buyer.poll_transmit().expect("voucher after persist");
    assert!(matches!(Message::decode(&bytes), Ok(Message::Voucher(_))));
    // The seller persists the new best before acknowledging it.
    w.seller.handle_bytes(&bytes, Timestamp(t.0 + 40)).unwrap();
    assert!(
        w.seller.poll_transmit().is_none(),
        "usage ack left before the best was persisted"
    );
    assert!(matches!(
        w.seller.poll_event(),
        Some(wayfare_proto::session::SellerEvent::Persist(_))
    ));
    assert!(matches!(
        Message::decode(&w.seller.poll_transmit().unwrap()),
        Ok(Message::Usage(_))
    ));
}

#[test]
fn default_config_holds_the_protocol_defaults() {
    let c = SessionConfig::default();
    assert_eq!(c.payment_interval.as_secs(), 15);
    assert_eq!(c.pause_timeout.as_secs(), 3600);
    assert_eq!(c.tolerance_bps, 200);
    assert_eq!(c.slack_flow, 1 << 20);
    // Slack: one interval at the agreed price for a 1 MiB/s flow.
    assert_eq!(
        c.slack(&list_terms()),
        U256::from(15 * 1_000_000_000u64 + 15 * 1_000_000_000u64)
    );
}

// ------------------------------------------------------------------ pause and resume

const NEW_SEED: [u8; 32] = [0x55; 32];
const NEW_WG: [u8; 32] = [0x66; 32];

/// The buyer pauses; runs until the seller is paused and has acknowledged the final voucher.
fn pause(w: &mut World) {
    w.buyer.pause(w.t());
    assert!(w.buyer.is_paused());
    assert!(
        w.run_until(MINUTE, |w| w.seller.is_paused()
            && w.buyer.poll_timeout().is_none()),
        "the seller never paused: {:?}",
        w.log.seller_stop
    );
    assert!(!w.seller_up && !w.buyer_up, "service still up while paused");
    // The seller holds the buyer's final voucher.
    assert_eq!(
        w.seller.best_voucher().map(|v| v.amount),
        w.buyer.last_voucher().map(|v| v.amount)
    );
}

fn resume_with_new_keys(w: &mut World) {
    w.resume_buyer(|p| {
        p.reveal_seed = NEW_SEED;
        p.wireguard_key = Some(NEW_WG);
    })
    .expect("resume");
}

/// Records every reveal the seller sends.
fn capture_reveals(w: &mut World) -> std::rc::Rc<std::cell::RefCell<Vec<Reveal>>> {
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = captured.clone();
    w.s2b_filter = Some(Box::new(move |m, _| {
        if let Message::Reveal(r) = m {
            sink.borrow_mut().push(r.clone());
        }
        true
    }));
    captured
}

#[test]
fn pause_then_resume_with_new_keys_reuses_the_channel_and_bills_both_runs_not_the_pause() {
    let mut w = World::new(WorldConfig::default());
    let reveals = capture_reveals(&mut w);
    open_and_serve(&mut w);
    w.run_for(10 * MINUTE);
    let channel = w.buyer.channel_id().unwrap();
    pause(&mut w);
    let first_run_reveals = reveals.borrow().len();
    assert!(first_run_reveals >= 1);
    assert_eq!(w.log.paused.len(), 1);
    assert_eq!(w.log.paused[0].1, channel);
    assert_eq!(w.log.seller_stop.map(|s| s.1), Some(EndReason::Paused));
    assert_eq!(w.log.buyer_stop.map(|s| s.1), Some(EndReason::Paused));
    let seller_owed = w.seller.owed(w.t());
    let buyer_owed = w.buyer.owed(w.t());
    let last_before = *w.buyer.last_voucher().unwrap();
    let stored = BuyerSnapshot::from_bytes(w.buyer_store.as_deref().unwrap()).unwrap();
    assert_eq!(stored.phase, BuyerPhase::Paused);
    assert!(
        (599..=601).contains(&stored.prior_seconds),
        "{}",
        stored.prior_seconds
    );

    // Half an hour paused: nothing is billed, nothing times out, nothing is settled.
    w.run_for(30 * MINUTE);
    assert!(w.seller.is_paused() && w.buyer.is_paused());
    assert_eq!(w.seller.owed(w.t()), seller_owed);
    assert_eq!(w.buyer.owed(w.t()), buyer_owed);
    assert!(w.log.settles.is_empty());
    assert!(w.chain.paid_to_seller().is_none());

    // The buyer reconnects (a new process: from the stored snapshot) with fresh keys.
    resume_with_new_keys(&mut w);
    assert!(!w.buyer.is_paused());
    open_and_serve(&mut w);
    let stored = SellerSnapshot::from_bytes(w.seller_store.as_deref().unwrap()).unwrap();
    assert_eq!(
        stored.request.buyer_key,
        RevealSecret::from_seed(&NEW_SEED).public_key()
    );
    assert_eq!(stored.request.wireguard_key, Some(NEW_WG));
    w.run_for(10 * MINUTE);
    assert!(w.seller.is_serving() && w.buyer.is_serving());
    // Vouchers went on cumulatively from the last one.
    assert!(w.buyer.last_voucher().unwrap().amount > last_before.amount);
    w.buyer.leave(w.t());
    assert!(w.finish(MINUTE));
    assert!(matches!(
        w.log.leave,
        Some((_, EndReason::UserLeft, CloseAction::Cooperative { .. }))
    ));
    // One channel, no chain transaction for the resume, paid for both runs (bytes and seconds)
    // within tolerance, the half hour of pause not billed.
    assert_eq!(w.chain.channels.len(), 1);
    assert_eq!(w.log.top_ups, 0);
    assert!(
        (1199..=1201)
            .contains(&(w.true_prior_secs + (w.true_end.unwrap() - w.true_start.unwrap()) / 1000))
    );
    assert_paid_within_tolerance(&w);
    assert!(
        w.chain.rejected.iter().all(|r| r.starts_with("settle")),
        "{:?}",
        w.chain.rejected
    );

    // The reveals of the second run open only with the new key, those of the first only with
    // the old one.
    let reveals = reveals.borrow();
    let (first, second) = reveals.split_at(first_run_reveals);
    assert!(!second.is_empty(), "no reveal after the resume");
    let old = RevealSecret::from_seed(&[0x33; 32]);
    let new = RevealSecret::from_seed(&NEW_SEED);
    for r in first {
        assert!(seal::open(&r.sealed, channel, &old).is_ok());
        assert!(seal::open(&r.sealed, channel, &new).is_err());
    }
    for r in second {
        assert!(seal::open(&r.sealed, channel, &new).is_ok());
        assert!(seal::open(&r.sealed, channel, &old).is_err());
    }
}

#[test]
fn a_resume_not_signed_by_the_voucher_signer_is_refused_and_the_seller_stays_paused() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(2 * MINUTE);
    pause(&mut w);
    let channel = w.seller.channel_id().unwrap();
    let snapshot = w.seller.snapshot();
    let domain = eip712::domain(CHAIN_ID, MARKET);
    let mallory = SecretKey::from_bytes(&[0x99; 32]).unwrap();
    let digest = eip712::resume_digest(channel, 1, [0x77; 32], Some([0x78; 32]), &domain);
    let forged = Resume {
        channel_id: channel,
        run: 1,
        buyer_key: [0x77; 32],
        wireguard_key: Some([0x78; 32]),
        signature: mallory.sign_digest(digest),
    };
    let err = w
        .seller
        .handle_message(Message::Resume(forged), w.t())
        .unwrap_err();
    assert!(matches!(err, SessionError::Signature(_)), "{err}");
    // The voucher signer's signature, but the keys swapped afterwards.
    let voucher_key = w.buyer_params().voucher_key.clone();
    let mut tampered = Resume {
        signature: voucher_key.sign_digest(digest),
        ..forged
    };
    tampered.buyer_key = [0x79; 32];
    let err = w
        .seller
        .handle_message(Message::Resume(tampered), w.t())
        .unwrap_err();
    assert!(matches!(err, SessionError::Signature(_)), "{err}");
    // Signed by the right key for the wrong service shape (no WireGuard key for WireGuard).
    let digest = eip712::resume_digest(channel, 1, [0x77; 32], None, &domain);
    let no_wg = Resume {
        channel_id: channel,
        run: 1,
        buyer_key: [0x77; 32],
        wireguard_key: None,
        signature: voucher_key.sign_digest(digest),
    };
    assert!(
        w.seller
            .handle_message(Message::Resume(no_wg), w.t())
            .is_err()
    );
    // Nothing changed.
    assert!(w.seller.is_paused());
    assert_eq!(w.seller.snapshot(), snapshot);
    assert!(w.seller.poll_event().is_none());
    assert!(w.seller.poll_transmit().is_none());

    // A buyer can't resume with a key that is not the channel's voucher signer either.
    let err = w
        .resume_buyer(|p| {
            p.reveal_seed = NEW_SEED;
            p.voucher_key = mallory.clone();
        })
        .unwrap_err();
    assert!(matches!(err, SessionError::Signature(_)), "{err}");
    assert!(w.buyer.is_paused());
    // The real buyer still can.
    resume_with_new_keys(&mut w);
    open_and_serve(&mut w);
    assert_eq!(w.chain.channels.len(), 1);
}

#[test]
fn a_channel_paused_past_the_pause_timeout_is_settled_on_the_best_voucher() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(5 * MINUTE);
    pause(&mut w);
    let paused_at = w.now;
    let best = *w.seller.best_voucher().unwrap();
    // Default pause timeout: one hour.
    assert_eq!(w.cfg.session.pause_timeout.as_secs(), 3600);
    assert!(w.run_until(2 * 60 * MINUTE, |w| w.seller.is_ended()));
    assert_eq!(w.seller.end_reason(), Some(EndReason::PauseTimeout));
    let ended_after = w.now - paused_at;
    assert!(
        (60 * MINUTE..=60 * MINUTE + 2_000).contains(&ended_after),
        "ended {ended_after} ms after the pause"
    );
    assert_eq!(w.log.settles, vec![best]);
    assert!(w.run_until(MINUTE, |w| w.buyer.is_ended()));
    assert_eq!(w.chain.paid_to_seller(), Some(best.amount));
    assert_eq!(w.buyer.last_voucher().map(|v| v.amount), Some(best.amount));
    // The paused buyer learns from the chain and ends without an action of its own.
    assert!(matches!(
        w.log.leave,
        Some((_, EndReason::ChannelClosed, CloseAction::Nothing))
    ));
    assert_paid_within_tolerance(&w);
}

#[test]
fn a_buyer_starting_a_close_while_paused_makes_the_seller_settle_at_once() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(5 * MINUTE);
    pause(&mut w);
    w.run_for(MINUTE);
    let best = *w.seller.best_voucher().unwrap();
    let channel = w.seller.channel_id().unwrap();
    // The buyer's user closes the channel on chain directly (e.g. from the CLI).
    w.chain.start_close(channel, w.now);
    assert!(w.run_until(MINUTE, |w| w.seller.is_ended()));
    assert_eq!(w.seller.end_reason(), Some(EndReason::CloseStarted));
    // The watchtower records its best voucher on chain at once; finalize pays it out.
    assert_eq!(w.log.submitted, vec![best]);
    assert!(w.log.settles.is_empty());
    assert!(w.run_until(120 * MINUTE, |w| w.buyer.is_ended()));
    assert_eq!(w.chain.paid_to_seller(), Some(best.amount));
    assert_paid_within_tolerance(&w);
}

#[test]
fn leaving_while_paused_closes_cooperatively_on_the_final_voucher() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(5 * MINUTE);
    pause(&mut w);
    w.run_for(10 * MINUTE);
    let last = *w.buyer.last_voucher().unwrap();
    w.buyer.leave(w.t());
    assert!(w.finish(MINUTE));
    match w.log.leave {
        Some((_, EndReason::UserLeft, CloseAction::Cooperative { voucher, consent })) => {
            assert_eq!(voucher, last);
            assert_eq!(consent.amount, last.amount);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.chain.paid_to_seller(), Some(last.amount));
    assert!(
        w.log.settles.is_empty(),
        "the seller did not need to settle"
    );
    assert_paid_within_tolerance(&w);
}

#[test]
fn a_lost_pause_request_is_resent_until_the_seller_acknowledges() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(5 * MINUTE);
    // Pause a few seconds after a voucher tick (its Usage already back), so the final voucher
    // is a new one and no Usage is in flight.
    let tick = w.buyer.poll_timeout().unwrap().0;
    w.run_until(MINUTE, |w| w.now >= tick + 5_000);
    // The final voucher and the pause request are lost (the link is down for a second).
    let paused_at = w.now;
    w.b2s_filter = Some(Box::new(move |_, now| now > paused_at + 1_000));
    w.buyer.pause(w.t());
    assert!(w.buyer.poll_timeout().is_some(), "waiting for the ack");
    w.run_for(STEP_MS);
    assert!(w.seller.is_serving());
    assert!(w.run_until(10_000, |w| w.seller.is_paused()));
    assert!(w.run_until(MINUTE, |w| w.buyer.poll_timeout().is_none()));
    assert_eq!(
        w.seller.best_voucher().map(|v| v.amount),
        w.buyer.last_voucher().map(|v| v.amount)
    );
    w.run_for(2 * MINUTE);
    assert!(w.seller.is_paused(), "{:?}", w.seller.end_reason());
}

#[test]
fn a_lost_reveal_after_a_resume_is_resent_on_the_next_resume() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(2 * MINUTE);
    pause(&mut w);
    // The first reveal after the resume is lost.
    let mut dropped = false;
    w.s2b_filter = Some(Box::new(move |m, _| {
        if matches!(m, Message::Reveal(_)) && !dropped {
            dropped = true;
            return false;
        }
        true
    }));
    resume_with_new_keys(&mut w);
    assert!(w.run_until(2_000, |w| w.seller.is_serving()));
    assert!(!w.buyer.is_serving());
    open_and_serve(&mut w);
    w.run_for(2 * MINUTE);
    assert!(w.seller.is_serving() && w.buyer.is_serving());
    // A Resume with other keys while serving is refused.
    let channel = w.seller.channel_id().unwrap();
    let domain = eip712::domain(CHAIN_ID, MARKET);
    let run = w.seller.run();
    let digest = eip712::resume_digest(channel, run, [0x77; 32], Some(NEW_WG), &domain);
    let other = Resume {
        channel_id: channel,
        run,
        buyer_key: [0x77; 32],
        wireguard_key: Some(NEW_WG),
        signature: w.buyer_params().voucher_key.sign_digest(digest),
    };
    assert!(matches!(
        w.seller.handle_message(Message::Resume(other), w.t()),
        Err(SessionError::Unexpected { .. })
    ));
    assert!(w.seller.is_serving());
}

#[test]
fn both_sides_restored_while_paused_stay_paused_and_can_resume() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(3 * MINUTE);
    pause(&mut w);
    w.run_for(50 * MINUTE);
    let best = *w.seller.best_voucher().unwrap();
    w.restart_seller();
    w.restart_buyer();
    assert!(w.seller.is_paused() && w.buyer.is_paused());
    assert_eq!(w.seller.best_voucher(), Some(&best));
    assert!(
        w.buyer.poll_event().is_none(),
        "a restored paused buyer emits nothing"
    );
    assert!(w.buyer.poll_transmit().is_none());
    assert!(
        !w.seller_up,
        "a restored paused seller does not start the service"
    );
    // The pause deadline counts from the restore: 50 + 30 minutes after the pause, still paused.
    w.run_for(30 * MINUTE);
    assert!(w.seller.is_paused());
    resume_with_new_keys(&mut w);
    open_and_serve(&mut w);
    // A restart right after the resume (reveal not yet received) resends the Resume.
    w.run_for(MINUTE);
    w.buyer.pause(w.t());
    assert!(w.run_until(MINUTE, |w| w.seller.is_paused()));
    w.resume_buyer(|p| p.reveal_seed = [0x56; 32])
        .expect("resume");
    w.restart_buyer();
    open_and_serve(&mut w);
    w.run_for(2 * MINUTE);
    w.buyer.leave(w.t());
    assert!(w.finish(MINUTE));
    assert_eq!(w.chain.channels.len(), 1);
    assert_paid_within_tolerance(&w);
}

#[test]
fn seller_acknowledges_a_pause_without_consent_or_settle() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(14_000);
    // Drive the buyer by hand: pause persists the final voucher before anything leaves.
    w.buyer.pause(w.t());
    assert!(
        w.buyer.poll_transmit().is_none(),
        "sent before the Persist was polled"
    );
    let mut events = Vec::new();
    while let Some(e) = w.buyer.poll_event() {
        events.push(e);
    }
    use wayfare_proto::session::BuyerEvent;
    assert!(
        matches!(
            events.as_slice(),
            [
                BuyerEvent::StopService {
                    reason: EndReason::Paused
                },
                BuyerEvent::Persist(p),
                BuyerEvent::Paused { .. },
            ] if p.phase == BuyerPhase::Paused && p.last_voucher.is_some()
        ),
        "{events:?}"
    );
    let voucher = w.buyer.poll_transmit().unwrap();
    let close = w.buyer.poll_transmit().unwrap();
    assert!(matches!(Message::decode(&voucher), Ok(Message::Voucher(_))));
    assert!(matches!(
        Message::decode(&close),
        Ok(Message::CloseRequest(c)) if c.reason == CloseReason::Pause
    ));
    let t = Timestamp(w.now + 40);
    w.seller.handle_bytes(&voucher, t).unwrap();
    w.seller.handle_bytes(&close, t).unwrap();
    let mut events = Vec::new();
    while let Some(e) = w.seller.poll_event() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, SellerEvent::Settle { .. } | SellerEvent::Ended { .. })),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        SellerEvent::StopService {
            reason: EndReason::Paused,
            ..
        }
    )));
    assert!(matches!(
        events.last(),
        Some(SellerEvent::Persist(p)) if p.phase == SellerPhase::Paused
    ));
    let mut sent = Vec::new();
    while let Some(b) = w.seller.poll_transmit() {
        sent.push(Message::decode(&b).unwrap());
    }
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|m| matches!(m, Message::Usage(_))),
        "{sent:?}"
    );
    assert!(w.seller.is_paused());
    assert_eq!(
        w.seller.poll_timeout(),
        Some(t.saturating_add(w.cfg.session.pause_timeout))
    );
}

#[test]
fn a_late_pause_request_of_the_previous_run_does_not_pause_the_resumed_one() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(2 * MINUTE);
    pause(&mut w);
    let channel = w.seller.channel_id().unwrap();
    let domain = eip712::domain(CHAIN_ID, MARKET);
    let new_key = RevealSecret::from_seed(&NEW_SEED).public_key();
    let digest = eip712::resume_digest(channel, 1, new_key, Some([0x44; 32]), &domain);
    let resume = Resume {
        channel_id: channel,
        run: 1,
        buyer_key: new_key,
        wireguard_key: Some([0x44; 32]),
        signature: w.buyer_params().voucher_key.sign_digest(digest),
    };
    let voucher_key = w.buyer_params().voucher_key.clone();
    let pause_digest = eip712::close_request_digest(channel, 0, CloseReason::Pause as u8, &domain);
    let late_pause = Message::CloseRequest(wayfare_proto::messages::CloseRequest {
        channel_id: channel,
        run: 0,
        reason: CloseReason::Pause,
        signature: voucher_key.sign_digest(pause_digest),
    });
    // The Resume, then the old pause request, before the shell got to provision.
    w.seller
        .handle_message(Message::Resume(resume), w.t())
        .unwrap();
    assert!(!w.seller.is_paused());
    assert!(matches!(
        w.seller.handle_message(late_pause, w.t()),
        Err(SessionError::StaleRun {
            got: 0,
            current: 1,
            ..
        })
    ));
    assert!(
        !w.seller.is_paused(),
        "a late pause request paused the new run"
    );
    w.step();
    assert!(w.seller.is_serving());
}

#[test]
fn a_paused_channel_survives_the_sellers_shutdown_and_a_refused_resume_closes_it_at_once() {
    let mut w = World::new(WorldConfig::default());
    open_and_serve(&mut w);
    w.run_for(MINUTE);
    pause(&mut w);
    // A graceful stop (and the restart after it) keeps the pause: nothing settles.
    w.seller.shutdown(w.t());
    w.drain();
    assert!(w.seller.is_paused(), "shutdown ended the paused session");
    assert!(
        w.log.settles.is_empty(),
        "shutdown settled a paused channel"
    );
    w.restart_seller();
    assert!(w.seller.is_paused());
    resume_with_new_keys(&mut w);
    open_and_serve(&mut w);
    assert_eq!(w.chain.channels.len(), 1, "the same channel serves again");
    w.run_for(MINUTE);
    pause(&mut w);

    // The seller's user closes it; the buyer, not told, resumes later and is refused.
    w.seller.close(w.t());
    w.drain();
    assert!(w.seller.is_ended());
    w.resume_buyer(|p| p.reveal_seed = NEW_SEED)
        .expect("resume");
    assert!(!w.buyer.is_ended());
    let refusal = Message::Refusal(Refusal {
        reason: RefusalReason::NotYourSession,
        detail: "no session for channel".into(),
    });
    w.buyer
        .handle_message(refusal, w.t())
        .expect("refusal taken");
    assert!(w.buyer.is_ended());
    assert_eq!(w.buyer.end_reason(), Some(EndReason::ResumeRefused));
    w.drain();
    let (_, reason, close) = w.log.leave.expect("the buyer left");
    assert_eq!(reason, EndReason::ResumeRefused);
    assert!(
        matches!(close, CloseAction::StartClose { .. }),
        "a refused resume must start a close on chain, got {close:?}"
    );
}
