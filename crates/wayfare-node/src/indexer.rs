//! The reputation index: market events stored as they are folded into the [`Ledger`], re-read
//! near the chain head on every pass so a reorg replaces what it changed (and the ledger is
//! rebuilt from a checkpoint of the final blocks plus the recent events when history changed).
//! A restart loads the ledger from the store.

use crate::{
    reputation::{Ledger, RepEvent},
    store::{Store, StoreError},
};

/// The ledger and where it stands.
///
/// Besides the live ledger it keeps a checkpoint: the ledger of every event below `final_upto`,
/// blocks the indexer never reads again. A reorg (which only touches blocks it re-reads) rebuilds
/// from that checkpoint plus the recent events, not from the whole history.
#[derive(Debug, Default)]
pub struct Indexer {
    /// Scores come from here.
    pub ledger: Ledger,
    last: Option<(u64, u64)>,
    checkpoint: Ledger,
    final_upto: u64,
    recent: Vec<(u64, u64, RepEvent)>,
    reorg_depth: u64,
}

fn decode(rows: &[(u64, u64, String)]) -> Vec<(u64, u64, RepEvent)> {
    rows.iter()
        .filter_map(|(b, i, json)| match serde_json::from_str::<RepEvent>(json) {
            Ok(ev) => Some((*b, *i, ev)),
            Err(e) => {
                tracing::warn!(block = b, log = i, error = %e, "unreadable indexed event skipped");
                None
            }
        })
        .collect()
}

impl Indexer {
    /// The ledger folded from every stored event, all of it final (a reorg then refolds the
    /// whole store). The node uses [`Self::load_for`].
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        Self::load_for(store, 0)
    }

    /// The ledger folded from every stored event; the events of the last `reorg_depth` blocks
    /// stored are kept apart, since the indexer reads them again.
    pub fn load_for(store: &Store, reorg_depth: u64) -> Result<Self, StoreError> {
        let rows = decode(&store.market_events()?);
        let last = rows.last().map(|(b, i, _)| (*b, *i));
        let final_upto = last.map_or(0, |(b, _)| (b + 1).saturating_sub(reorg_depth));
        let mut checkpoint = Ledger::new();
        let mut recent = Vec::new();
        for (b, i, ev) in rows {
            if b < final_upto {
                checkpoint.apply_at(b, &ev);
            } else {
                recent.push((b, i, ev));
            }
        }
        let mut ledger = checkpoint.clone();
        for (b, _, ev) in &recent {
            ledger.apply_at(*b, ev);
        }
        Ok(Self {
            ledger,
            last,
            checkpoint,
            final_upto,
            recent,
            reorg_depth,
        })
    }

    /// Stores a read of blocks `from..next` (events with their block and log index, chain
    /// order) with the cursor `next`, folds what is new, and moves what the indexer will never
    /// read again (below `next - reorg_depth`) into the checkpoint. Returns whether history
    /// changed and the ledger was rebuilt.
    pub fn apply_batch(
        &mut self,
        store: &mut Store,
        from: u64,
        next: u64,
        events: &[(u64, u64, RepEvent)],
    ) -> Result<bool, StoreError> {
        let rows: Vec<(u64, u64, String)> = events
            .iter()
            .map(|(b, i, e)| (*b, *i, serde_json::to_string(e).unwrap_or_default()))
            .collect();
        let reorg = store.replace_market_events(from, next, &rows)?;
        let rebuilt = if reorg && from < self.final_upto {
            // History changed below the checkpoint (the index was reset): refold everything.
            tracing::warn!(
                from,
                "the chain reorganised under the whole index: rebuilding reputation from the store"
            );
            *self = Self::load_for(store, self.reorg_depth)?;
            true
        } else if reorg {
            tracing::warn!(
                from,
                "the chain reorganised under the index: rebuilding reputation from the checkpoint"
            );
            self.ledger = self.checkpoint.clone();
            self.recent.retain(|(b, _, _)| *b < from);
            self.recent.extend_from_slice(events);
            for (b, _, ev) in &self.recent {
                self.ledger.apply_at(*b, ev);
            }
            self.last = self
                .recent
                .last()
                .map(|(b, i, _)| (*b, *i))
                .or_else(|| self.checkpoint_last());
            true
        } else {
            for (b, i, ev) in events {
                if self.last.is_none_or(|l| (*b, *i) > l) {
                    self.ledger.apply_at(*b, ev);
                    self.recent.push((*b, *i, *ev));
                    self.last = Some((*b, *i));
                }
            }
            false
        };
        // Later passes start at `next - reorg_depth` or later: below that is final.
        let settled = next.saturating_sub(self.reorg_depth);
        if settled > self.final_upto {
            let (done, keep): (Vec<_>, Vec<_>) =
                self.recent.drain(..).partition(|(b, _, _)| *b < settled);
            for (b, _, ev) in &done {
                self.checkpoint.apply_at(*b, ev);
            }
            self.recent = keep;
            self.final_upto = settled;
        }
        self.ledger.observe_head(next.saturating_sub(1));
        Ok(rebuilt)
    }

    fn checkpoint_last(&self) -> Option<(u64, u64)> {
        // Only the position matters: anything at or after `final_upto` is new.
        self.final_upto.checked_sub(1).map(|b| (b, u64::MAX))
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
        assert!(!ix.apply_batch(&mut store, 0, 3, &h[..2]).unwrap());
        // The next pass re-reads from block 1 (reorg depth) and brings block 3.
        assert!(!ix.apply_batch(&mut store, 1, 4, &h[..]).unwrap());
        assert_eq!(
            ix.ledger.seller_stats(&seller()).channels,
            1,
            "re-read events folded twice"
        );
        let good = ix.ledger.seller_score(&seller(), &p);
        // A reorg replaces block 3: the rating was a 1 after all.
        let bad_history = history(1);
        assert!(ix.apply_batch(&mut store, 2, 4, &bad_history[1..]).unwrap());
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

    /// Channel `n` (opened, closed, rated `score`) in blocks `b..b+3`.
    fn channel(n: u8, b: u64, score: u8) -> Vec<(u64, u64, RepEvent)> {
        let id = B256::repeat_byte(n);
        let buyer = Address::repeat_byte(100 + n);
        let burn = 1_000_000_000_000_000u128;
        vec![
            (
                b,
                0,
                RepEvent::Opened {
                    id,
                    seller: seller(),
                    buyer,
                    seller_burn: burn,
                    buyer_burn: burn,
                },
            ),
            (
                b + 1,
                0,
                RepEvent::Closed {
                    id,
                    to_seller: U256::from(u64::from(n) * 1_000_000_000_000),
                },
            ),
            (
                b + 2,
                0,
                RepEvent::Rated {
                    id,
                    rater: buyer,
                    ratee: seller(),
                    score,
                    weight: U256::from(burn),
                },
            ),
        ]
    }

    #[test]
    fn a_reorg_rebuilt_from_the_checkpoint_equals_a_full_refold() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
        let p = ScoreParams::default();
        let depth = 4;
        let mut ix = Indexer::load_for(&store, depth).unwrap();
        // 20 channels, 3 blocks each, read in passes of 6 new blocks re-reading the last 4.
        let history: Vec<_> = (1..=20u8)
            .flat_map(|n| channel(n, u64::from(n) * 3, 1 + n % 5))
            .collect();
        let mut next = 0u64;
        while next <= 62 {
            let head = (next + 5).min(62);
            let from = next.saturating_sub(depth);
            let batch: Vec<_> = history
                .iter()
                .filter(|(b, _, _)| (from..=head).contains(b))
                .copied()
                .collect();
            assert!(!ix.apply_batch(&mut store, from, head + 1, &batch).unwrap());
            next = head + 1;
        }
        assert!(
            ix.final_upto > 40,
            "nothing became final: {}",
            ix.final_upto
        );
        assert!(
            ix.recent.len() < 10,
            "{} recent events kept",
            ix.recent.len()
        );
        // A reorg of the last 4 blocks: channel 20's close and rating are gone, a new rating
        // of channel 19 (block 59: a 1) replaces its 5.
        let from = 59;
        let mut reorged: Vec<_> = channel(19, 57, 1)
            .into_iter()
            .filter(|(b, _, _)| *b >= from)
            .collect();
        reorged.push(channel(20, 60, 1)[0]);
        assert!(ix.apply_batch(&mut store, from, 63, &reorged).unwrap());
        let mut full = Indexer::load(&store).unwrap();
        // Ages count to the head the index has seen, past the last event.
        full.ledger.observe_head(62);
        assert_eq!(
            ix.ledger.seller_stats(&seller()),
            full.ledger.seller_stats(&seller())
        );
        assert_eq!(ix.ledger.head(), full.ledger.head());
        assert_eq!(
            ix.ledger.seller_score(&seller(), &p),
            full.ledger.seller_score(&seller(), &p)
        );
        // And later passes go on from there without folding anything twice.
        assert!(!ix.apply_batch(&mut store, from, 63, &reorged).unwrap());
        let more = channel(21, 63, 4);
        assert!(
            !ix.apply_batch(&mut store, 60, 66, &[&reorged[1..], &more[..]].concat())
                .unwrap()
        );
        let full = Indexer::load(&store).unwrap();
        assert_eq!(
            ix.ledger.seller_stats(&seller()),
            full.ledger.seller_stats(&seller())
        );
    }
}
