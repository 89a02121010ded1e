//! The reputation index: market events stored as they are folded into the [`Ledger`], re-read
//! near the chain head on every pass so a reorg replaces what it changed (and the ledger is
//! rebuilt from the store when history changed). A restart loads the ledger from the store.

use crate::{
    reputation::{Ledger, RepEvent},
    store::{Store, StoreError},
};

/// The ledger and where it stands.
#[derive(Debug, Default)]
pub struct Indexer {
    /// Scores come from here.
    pub ledger: Ledger,
    last: Option<(u64, u64)>,
}

fn fold(ledger: &mut Ledger, rows: &[(u64, u64, String)]) -> Option<(u64, u64)> {
    let mut last = None;
    for (b, i, json) in rows {
        match serde_json::from_str::<RepEvent>(json) {
            Ok(ev) => ledger.apply_at(*b, &ev),
            Err(e) => {
                tracing::warn!(block = b, log = i, error = %e, "unreadable indexed event skipped")
            }
        }
        last = Some((*b, *i));
    }
    last
}

impl Indexer {
    /// The ledger folded from every stored event.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let rows = store.market_events()?;
        let mut ledger = Ledger::new();
        let last = fold(&mut ledger, &rows);
        Ok(Self { ledger, last })
    }

    /// Stores a read of blocks `from..` (events with their block and log index, chain order)
    /// and folds what is new. Returns whether history changed and the ledger was rebuilt.
    pub fn apply_batch(
        &mut self,
        store: &mut Store,
        from: u64,
        events: &[(u64, u64, RepEvent)],
    ) -> Result<bool, StoreError> {
        let rows: Vec<(u64, u64, String)> = events
            .iter()
            .map(|(b, i, e)| (*b, *i, serde_json::to_string(e).unwrap_or_default()))
            .collect();
        let reorg = store.replace_market_events(from, &rows)?;
        if reorg {
            tracing::warn!(
                from,
                "the chain reorganised under the index: rebuilding reputation"
            );
            *self = Self::load(store)?;
            return Ok(true);
        }
        let new: Vec<(u64, u64, String)> = rows
            .into_iter()
            .filter(|(b, i, _)| self.last.is_none_or(|l| (*b, *i) > l))
            .collect();
        if let Some(l) = fold(&mut self.ledger, &new) {
            self.last = Some(l);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reputation::ScoreParams;
    use alloy_primitives::{Address, B256, U256};

    fn seller() -> Address {
        Address::repeat_byte(1)
    }

    fn history(score: u8) -> Vec<(u64, u64, RepEvent)> {
        let id = B256::repeat_byte(9);
        vec![
            (
                1,
                0,
                RepEvent::Opened {
                    id,
                    seller: seller(),
                    buyer: Address::repeat_byte(2),
                    seller_burn: 10_000_000_000_000_000,
                    buyer_burn: 10_000_000_000_000_000,
                },
            ),
            (
                2,
                0,
                RepEvent::Closed {
                    id,
                    to_seller: U256::from(5u8),
                },
            ),
            (
                3,
                0,
                RepEvent::Rated {
                    id,
                    rater: Address::repeat_byte(2),
                    ratee: seller(),
                    score,
                    weight: U256::from(10_000_000_000_000_000u128),
                },
            ),
        ]
    }

    #[test]
    fn rereads_fold_once_a_reorg_rebuilds_and_a_restart_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
        let p = ScoreParams::default();
        let mut ix = Indexer::load(&store).unwrap();
        let h = history(5);
        assert!(!ix.apply_batch(&mut store, 0, &h[..2]).unwrap());
        // The next pass re-reads from block 1 (reorg depth) and brings block 3.
        assert!(!ix.apply_batch(&mut store, 1, &h[..]).unwrap());
        assert_eq!(
            ix.ledger.seller_stats(&seller()).channels,
            1,
            "re-read events folded twice"
        );
        let good = ix.ledger.seller_score(&seller(), &p);
        // A reorg replaces block 3: the rating was a 1 after all.
        let bad_history = history(1);
        assert!(ix.apply_batch(&mut store, 2, &bad_history[1..]).unwrap());
        let bad = ix.ledger.seller_score(&seller(), &p);
        assert!(
            bad < good,
            "the reorged rating still counts: {bad} vs {good}"
        );
        assert_eq!(ix.ledger.seller_stats(&seller()).ratings, 1);
        // A restart folds the stored index to the same scores.
        drop(store);
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let again = Indexer::load(&store).unwrap();
        assert_eq!(again.ledger.seller_score(&seller(), &p), bad);
    }
}
