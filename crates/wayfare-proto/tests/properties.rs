//! Properties over random event sequences: whatever the network, the meters, restarts and the
//! buyer's behaviour do, the invariants hold after every step (checked inside `World::step`):
//! the seller's exposure stays under max debt + one interval of usage, the buyer never signs more
//! than its meter × (1 + tolerance) nor more than the deposit, and voucher amounts strictly
//! increase.

mod sim;

use alloy_primitives::U256;
use proptest::prelude::*;
use sim::*;
use wayfare_proto::messages::Message;
use wayfare_proto::session::TopUpPolicy;

#[derive(Debug, Clone)]
enum Op {
    Run { secs: u64 },
    SetFlow { bytes_per_sec: u64 },
    StopPaying,
    ResumePaying,
    RestartSeller,
    RestartBuyer,
    Leave,
    SellerShutdown,
    ReplayOldVoucher,
    Pause,
    Resume,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..90).prop_map(|secs| Op::Run { secs }),
        2 => prop_oneof![Just(0u64), 1u64..(4 << 20), (4u64 << 20)..(80 << 20)]
            .prop_map(|bytes_per_sec| Op::SetFlow { bytes_per_sec }),
        1 => Just(Op::StopPaying),
        1 => Just(Op::ResumePaying),
        1 => Just(Op::RestartSeller),
        1 => Just(Op::RestartBuyer),
        1 => Just(Op::ReplayOldVoucher),
        1 => Just(Op::Leave),
        1 => Just(Op::SellerShutdown),
    ]
}

/// The same operations plus pausing and resuming (with a fresh reveal key each time).
fn op_with_pause() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => op(),
        2 => Just(Op::Pause),
        2 => Just(Op::Resume),
    ]
}

/// A session that has started, then random operations with pauses and resumes.
fn ops_with_pause() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_with_pause(), 1..25).prop_map(|mut ops| {
        ops.insert(0, Op::Run { secs: 10 });
        ops
    })
}

fn world() -> impl Strategy<Value = WorldConfig> {
    (
        any::<u64>(),
        0.0f64..0.1,
        0.0f64..0.05,
        0u64..500,
        0.85f64..1.0,
        1.0f64..1.3,
        prop_oneof![Just(0u64), 0u64..(1 << 20)],
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(1_000_000_000u64..100_000_000_000),
    )
        .prop_map(
            |(
                seed,
                loss,
                duplicate,
                jitter_ms,
                buyer_f,
                seller_f,
                flood,
                small_deposit,
                top_up,
                max_debt,
            )| {
                let mut cfg = WorldConfig {
                    seed,
                    link: LinkConfig {
                        loss,
                        duplicate,
                        base_delay_ms: 20,
                        jitter_ms,
                    },
                    buyer_meter_factor: buyer_f,
                    seller_meter_factor: seller_f,
                    flood,
                    ..WorldConfig::default()
                };
                cfg.session.max_debt_wei = max_debt.map(U256::from);
                if small_deposit {
                    cfg.session.deposit = U256::from(1_000_000_000_000u64);
                }
                if top_up {
                    cfg.session.top_up = Some(TopUpPolicy {
                        amount: U256::from(1_000_000_000_000u64),
                        max_total_deposit: U256::from(5_000_000_000_000u64),
                    });
                }
                cfg
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_event_sequences(cfg in world(), ops in proptest::collection::vec(op(), 1..25)) {
        run_ops(cfg, ops)?;
    }

    #[test]
    fn invariants_hold_with_pauses_and_resumes(cfg in world(), ops in ops_with_pause()) {
        run_ops(cfg, ops)?;
    }
}

fn run_ops(cfg: WorldConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    {
        let mut w = World::new(cfg);
        let mut resumes = 0u8;
        let paying = std::rc::Rc::new(std::cell::Cell::new(true));
        let gate = paying.clone();
        w.b2s_filter = Some(Box::new(move |m, _| {
            gate.get() || !matches!(m, Message::Voucher(_))
        }));
        let mut old_voucher = None;
        for op in ops {
            match op {
                Op::Run { secs } => w.run_for(secs * 1000),
                Op::SetFlow { bytes_per_sec } => w.cfg.flow = bytes_per_sec,
                Op::StopPaying => paying.set(false),
                Op::ResumePaying => paying.set(true),
                Op::RestartSeller => {
                    if w.seller_store.is_some() {
                        w.restart_seller();
                    }
                }
                Op::RestartBuyer => {
                    if w.buyer_store.is_some() {
                        w.restart_buyer();
                    }
                }
                Op::Leave => w.buyer.leave(w.t()),
                Op::SellerShutdown => w.seller.shutdown(w.t()),
                Op::ReplayOldVoucher => {
                    if let Some(v) = old_voucher {
                        let before = w.seller.best_voucher().copied();
                        let _ = w.seller.handle_message(Message::Voucher(v), w.t());
                        let after = w.seller.best_voucher().copied();
                        prop_assert!(after.map(|a| a.amount) >= before.map(|b| b.amount));
                    }
                    old_voucher = w.buyer.last_voucher().copied();
                }
                Op::Pause => w.buyer.pause(w.t()),
                Op::Resume => {
                    if w.buyer.is_paused() {
                        resumes += 1;
                        let seed = [0x60 + resumes; 32];
                        prop_assert!(w.resume_buyer(|p| p.reveal_seed = seed).is_ok());
                    }
                }
            }
            w.step();
        }
        // Let it wind down: everything ends within bounded time once the buyer leaves.
        w.buyer.leave(w.t());
        w.run_for(3 * MINUTE);
        prop_assert!(w.buyer.is_ended(), "buyer still running: {:?}", w.log.leave);
        // Never a second channel: a resume needs no chain transaction.
        prop_assert!(w.chain.channels.len() <= 1);
    }
    Ok(())
}
