//! Reputation figures: folding market events into the ledger (in memory, no RPC) and scoring
//! 10,000 sellers, as medians over rounds. `cargo bench -p wayfare-node --bench reputation`.

use std::time::Instant;

use alloy_primitives::{Address, B256, U256};
use wayfare_node::reputation::{Ledger, RepEvent, ScoreParams};

const SELLERS: u32 = 10_000;
const CHANNELS_PER_SELLER: u32 = 3;
const ROUNDS: usize = 5;

fn events() -> Vec<RepEvent> {
    let mut v = Vec::new();
    for s in 0..SELLERS {
        let seller = Address::left_padding_from(&s.to_be_bytes());
        for c in 0..CHANNELS_PER_SELLER {
            let n = s * CHANNELS_PER_SELLER + c;
            let id = B256::left_padding_from(&n.to_be_bytes());
            let buyer = Address::left_padding_from(&(1_000_000 + n).to_be_bytes());
            v.push(RepEvent::Opened {
                id,
                seller,
                buyer,
                seller_burn: 1_000_000_000_000_000,
                buyer_burn: 1_000_000_000_000_000,
            });
            if n.is_multiple_of(7) {
                v.push(RepEvent::CloseStarted { id });
            }
            v.push(RepEvent::Closed {
                id,
                to_seller: U256::from(1_000_000u64 * u64::from(n)),
            });
            v.push(RepEvent::Rated {
                id,
                rater: buyer,
                ratee: seller,
                score: (n % 5 + 1) as u8,
                weight: U256::from(1_000_000_000_000_000u64),
            });
        }
    }
    v
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let evs = events();
    let (mut fold, mut score) = (Vec::new(), Vec::new());
    let mut sink = 0.0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut l = Ledger::new();
        for e in &evs {
            l.apply(e);
        }
        fold.push(t.elapsed().as_secs_f64());
        let p = ScoreParams::default();
        let t = Instant::now();
        let sellers: Vec<Address> = l.sellers().copied().collect();
        for s in &sellers {
            sink += l.seller_score(s, &p);
        }
        score.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let f = median(&mut fold);
    println!(
        "RESULT events={} fold_median_s={:.3} events_per_s={:.0} sellers={} score_all_median_ms={:.2} debug={} (checksum {:.1})",
        evs.len(),
        f,
        evs.len() as f64 / f,
        SELLERS,
        median(&mut score),
        cfg!(debug_assertions),
        sink
    );
}
