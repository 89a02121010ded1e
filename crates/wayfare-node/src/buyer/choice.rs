//! The buyer's choice of a seller: offers as the API shows them, the buyer's own record of each
//! seller from its ended sessions, and the ranking that blends it with the chain score and price.

use std::collections::BTreeMap;

use alloy_primitives::Address;
use wayfare_p2p::PeerId;
use wayfare_proto::{Service, messages::Announcement};

use crate::{
    api_types::OfferView,
    node::{Shared, service_name, unix_now},
    quality::{self, Measurements},
    store::SessionRow,
};

/// An announcement as the API shows it.
pub fn offer_view(a: &Announcement) -> OfferView {
    let mut services = Vec::new();
    for s in [Service::WireGuard, Service::Shadowsocks] {
        if a.services.contains(s) {
            services.push(service_name(s.code()).to_string());
        }
    }
    OfferView {
        seller: a.seller.to_string(),
        peer_id: PeerId::from_bytes(&a.peer_id)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        region: a.region.clone(),
        services,
        price_per_mib_wei: a.terms.price_per_mib.to_string(),
        price_per_second_wei: a.terms.price_per_second.to_string(),
        seller_burn_wei: a.terms.seller_burn.to_string(),
        buyer_burn_wei: a.terms.buyer_burn.to_string(),
        min_deposit_wei: a.terms.min_deposit.to_string(),
        payment_interval: a.terms.payment_interval,
        capacity_bps: a.capacity_bps,
        exit_allow: a.exit_allow.iter().map(ToString::to_string).collect(),
        score: None,
        failed_recently: false,
        valid_until: a.valid_until,
    }
}

/// Weight of price against score in the buyer's choice (see `reputation::utility`).
pub const PRICE_WEIGHT: f64 = 0.3;

/// How much the buyer's own experience with a seller weighs against its chain score.
pub const LOCAL_WEIGHT: f64 = 0.5;

/// Whether a session ended on the seller's failure (no quote, no reveal, meter mismatch,
/// broken terms, refusal).
fn seller_failed(end_reason: Option<&str>) -> bool {
    matches!(
        end_reason,
        Some(
            "NoReveal" | "MeterMismatch" | "TermsMismatch" | "Refused" | "NoQuote" | "OfferExpired"
        )
    )
}

/// What the buyer's own record says of one ended session, in `[0, 1]`: 0 when it ended on the
/// seller's failure, else the quality of its measured runs ([`quality::session_quality`]);
/// `None` when the tunnel was never used. Sessions from before measurements were kept count 1
/// when bytes flowed.
pub fn session_record(row: &SessionRow, runs: &[&Measurements]) -> Option<f64> {
    if seller_failed(row.end_reason.as_deref()) {
        return Some(0.0);
    }
    match quality::session_quality(runs.iter().copied()) {
        Some(q) => Some(q),
        None if runs.is_empty() && row.bytes > 0 => Some(1.0),
        None => None,
    }
}

/// How long a seller whose latest session failed is passed over by the automatic choice.
pub const FAILURE_COOLDOWN_SECS: u64 = 3600;

/// The buyer's own record of a seller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalRecord {
    /// [`quality::local_score`] over its ended sessions.
    pub score: f64,
    /// Its latest session failed (record 0) less than [`FAILURE_COOLDOWN_SECS`] ago: the
    /// automatic choice tries every other matching seller first.
    pub failed_recently: bool,
}

/// The buyer's own record of each seller from its ended sessions ([`session_record`]), as
/// [`quality::local_score`]: a newcomer is 0.5, one failed session 0.25, one perfect 0.75.
/// `now` is Unix seconds.
pub fn local_scores(
    rows: &[SessionRow],
    runs: &[(String, String, Measurements)],
    now: u64,
) -> BTreeMap<Address, LocalRecord> {
    let mut by_session: BTreeMap<&str, Vec<&Measurements>> = BTreeMap::new();
    for (session, _, m) in runs {
        by_session.entry(session.as_str()).or_default().push(m);
    }
    // Per seller: every session's record, and the latest one (when it ended, its record).
    let mut records: BTreeMap<Address, (Vec<f64>, (u64, f64))> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.role == "buyer" && r.ended) {
        let Ok(seller) = r.counterparty.parse::<Address>() else {
            continue;
        };
        let runs = by_session
            .get(r.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let Some(q) = session_record(r, runs) {
            let e = records.entry(seller).or_insert((Vec::new(), (0, 1.0)));
            e.0.push(q);
            if r.updated_at >= e.1.0 {
                e.1 = (r.updated_at, q);
            }
        }
    }
    records
        .into_iter()
        .map(|(a, (q, (at, last)))| {
            (
                a,
                LocalRecord {
                    score: quality::local_score(&q),
                    failed_recently: last == 0.0 && now.saturating_sub(at) < FAILURE_COOLDOWN_SECS,
                },
            )
        })
        .collect()
}

/// The buyer's local record of every seller, read from the store.
pub fn local_scores_from(shared: &Shared) -> BTreeMap<Address, LocalRecord> {
    let rows = shared
        .with_store(|s| s.sessions("buyer"))
        .unwrap_or_default();
    let runs = shared.with_store(|s| s.runs()).unwrap_or_default();
    local_scores(&rows, &runs, unix_now())
}

/// Offers with their seller's score (chain score blended half and half with the buyer's own
/// record, 0.5 when it has none) and the buyer's utility, best first: sellers whose latest session with this buyer
/// failed within [`FAILURE_COOLDOWN_SECS`] come after every other, then by utility.
pub fn rank<'a>(
    offers: &[&'a Announcement],
    ledger: &crate::reputation::Ledger,
    local: &BTreeMap<Address, LocalRecord>,
) -> Vec<(&'a Announcement, f64, f64)> {
    let params = crate::reputation::ScoreParams::default();
    let price = |a: &Announcement| {
        a.terms
            .price_per_mib
            .saturating_add(a.terms.price_per_second)
    };
    let max = offers.iter().map(|a| price(a)).max().unwrap_or(0);
    let mut v: Vec<_> = offers
        .iter()
        .map(|a| {
            let chain = ledger.seller_score(&a.seller, &params);
            // A seller the buyer never used has the neutral local prior.
            let own = local
                .get(&a.seller)
                .map_or_else(|| quality::local_score(&[]), |l| l.score);
            let score = (1.0 - LOCAL_WEIGHT) * chain + LOCAL_WEIGHT * own;
            let u = crate::reputation::utility(score, price(a), max, PRICE_WEIGHT);
            (*a, score, u)
        })
        .collect();
    // Recent failures last; then best utility first; ties: cheaper, then by address.
    let failed = |a: &Announcement| local.get(&a.seller).is_some_and(|l| l.failed_recently);
    v.sort_by(|x, y| {
        failed(x.0)
            .cmp(&failed(y.0))
            .then(y.2.total_cmp(&x.2))
            .then(price(x.0).cmp(&price(y.0)))
            .then(x.0.seller.cmp(&y.0.seller))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;
    use wayfare_proto::{ServiceSet, Terms};

    fn offer(seller: u8, x: u128) -> Announcement {
        Announcement {
            seller: Address::repeat_byte(seller),
            peer_id: vec![],
            services: ServiceSet::new(&[Service::Shadowsocks]),
            terms: Terms {
                price_per_mib: x,
                price_per_second: 0,
                seller_burn: 0,
                buyer_burn: 0,
                min_deposit: 0,
                payment_interval: 15,
            },
            region: "lab".into(),
            capacity_bps: 0,
            exit_allow: Vec::new(),
            valid_until: u64::MAX,
            signature: [0; 65],
        }
    }

    fn row(seller: u8, end: &str, bytes: u64) -> SessionRow {
        SessionRow {
            id: format!("{seller}-{end}-{bytes}"),
            role: "buyer".into(),
            channel_id: None,
            peer: String::new(),
            counterparty: Address::repeat_byte(seller).to_string(),
            service: 2,
            snapshot: None,
            phase: "ended".into(),
            ended: true,
            end_reason: Some(end.into()),
            bytes,
            paid_wei: U256::ZERO,
            owed_wei: U256::ZERO,
            seconds: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn with_equal_scores_the_cheaper_offer_wins() {
        let (a, b) = (offer(1, 100), offer(2, 50));
        let ranked = rank(
            &[&a, &b],
            &crate::reputation::Ledger::new(),
            &BTreeMap::new(),
        );
        assert_eq!(ranked[0].0.seller, b.seller);
    }

    #[test]
    fn a_seller_whose_sessions_failed_loses_the_buyers_choice() {
        // Seller 1 is cheaper, but the buyer's sessions with it never got a reveal.
        let (a, b) = (offer(1, 90), offer(2, 100));
        let rows = vec![
            row(1, "NoReveal", 0),
            row(1, "NoReveal", 0),
            row(1, "MeterMismatch", 10),
            row(2, "UserLeft", 5_000_000),
        ];
        let local = local_scores(&rows, &[], 0);
        assert!(local[&Address::repeat_byte(1)].score < 0.25);
        assert!(local[&Address::repeat_byte(2)].score > 0.6);
        let ranked = rank(&[&a, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        // Without that record, the cheaper one would have won.
        let ranked = rank(
            &[&a, &b],
            &crate::reputation::Ledger::new(),
            &BTreeMap::new(),
        );
        assert_eq!(ranked[0].0.seller, a.seller);
    }

    #[test]
    fn a_seller_whose_exit_returned_nothing_loses_to_a_dearer_newcomer() {
        let (a, b) = (offer(1, 80), offer(2, 100));
        // The session ended as the buyer chose, with bytes sent: only the measurements say
        // that nothing ever came back.
        let rows = vec![row(1, "UserLeft", 300)];
        let mut dead = Measurements::default();
        for t in 0..30 {
            dead.on_meter(t * 100, t * 60, 0);
        }
        let seller = Address::repeat_byte(1).to_string();
        let runs = [(rows[0].id.clone(), seller.clone(), dead)];
        let local = local_scores(&rows, &runs, 60);
        let l = local[&Address::repeat_byte(1)];
        assert_eq!(l.score, 0.25);
        assert!(l.failed_recently);
        let ranked = rank(&[&a, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        // Even much cheaper, a seller that just failed is tried last.
        let cheap = offer(1, 10);
        let ranked = rank(&[&cheap, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        // After the cool-down only the score is held against it: still enough at 80 % price.
        let local = local_scores(&rows, &runs, 2 * FAILURE_COOLDOWN_SECS);
        assert!(!local[&Address::repeat_byte(1)].failed_recently);
        let ranked = rank(&[&a, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, b.seller, "{ranked:?}");
        let ranked = rank(&[&cheap, &b], &crate::reputation::Ledger::new(), &local);
        assert_eq!(ranked[0].0.seller, cheap.seller, "{ranked:?}");
        // A run the buyer never used says nothing either way.
        let idle = Measurements::default();
        let local = local_scores(&rows, &[(rows[0].id.clone(), seller, idle)], 60);
        assert!(local.is_empty(), "{local:?}");
    }
}
