//! Follows the market's events from a block on and hands them to the node, with the channel's
//! voucher signer read for every `ChannelOpened` (the event does not carry it). A chain that is
//! down is retried forever; the node keeps serving meanwhile.

use std::time::Duration;

use alloy_primitives::Address;
use tokio::sync::mpsc;
use wayfare_chain::{MarketClient, MarketLog, bindings::WayfareMarket::WayfareMarketEvents};

use crate::node::Internal;

/// Reads events from `from` on and sends them as [`Internal::Log`], then
/// [`Internal::ChainHead`] after each batch. Ends when the node is gone.
///
/// * Only blocks `confirmations` deep are read (1: the head block itself), so a `ChannelOpened`
///   is acted on (and a reveal sent) only once it is that deep.
/// * Each `ChannelOpened` is checked against the channel as the chain holds it at that depth
///   (its voucher signer is read from the `channel(id)` view): a channel the chain does not hold
///   (a reorg removed it) is skipped with a warning, never revealed for.
/// * A read that fails stops the batch at that event: the cursor ([`Internal::ChainHead`]) never
///   passes an event that was not delivered, and the next pass starts again from it (events
///   already delivered are not delivered twice).
pub async fn watch(
    client: MarketClient,
    from: u64,
    confirmations: u64,
    poll: Duration,
    tx: mpsc::Sender<Internal>,
) {
    let mut next = from;
    let mut delivered: Option<(u64, u64)> = None;
    let mut down = false;
    loop {
        let head = match tokio::time::timeout(CALL_TIMEOUT, client.head())
            .await
            .unwrap_or_else(|_| Err(timed_out(&client)))
        {
            Ok((h, _)) => h,
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, "chain unreachable; sessions go on, retrying");
                }
                down = true;
                if tx.send(Internal::ChainDown(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(poll.max(Duration::from_secs(1))).await;
                continue;
            }
        };
        if down {
            tracing::info!("chain reachable again");
            down = false;
        }
        let safe = confirmed_head(head, confirmations);
        if let Some(safe) = safe.filter(|s| *s >= next) {
            match tokio::time::timeout(CALL_TIMEOUT, client.events_between(next, safe))
                .await
                .unwrap_or_else(|_| Err(timed_out(&client)))
            {
                Ok(logs) => match deliver(&client, logs, &mut delivered, &tx).await {
                    Delivery::All => {
                        next = safe + 1;
                        if tx.send(Internal::ChainHead(safe)).await.is_err() {
                            return;
                        }
                    }
                    Delivery::StoppedAt(block) => {
                        // Everything below `block` was handled; retry from it.
                        next = block;
                        if block > 0 && tx.send(Internal::ChainHead(block - 1)).await.is_err() {
                            return;
                        }
                    }
                    Delivery::NodeGone => return,
                },
                Err(e) => {
                    if tx.send(Internal::ChainDown(e.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// The newest block at least `confirmations` deep (`confirmations` 0 counts as 1), if any.
pub fn confirmed_head(head: u64, confirmations: u64) -> Option<u64> {
    head.checked_sub(confirmations.max(1) - 1)
}

enum Delivery {
    All,
    StoppedAt(u64),
    NodeGone,
}

/// Sends `logs` (chain order) to the node, skipping those up to `delivered` (already sent on an
/// earlier pass). Stops at the first `ChannelOpened` whose channel can't be read.
async fn deliver(
    client: &MarketClient,
    logs: Vec<MarketLog>,
    delivered: &mut Option<(u64, u64)>,
    tx: &mpsc::Sender<Internal>,
) -> Delivery {
    for log in logs {
        let at = (log.block, log.log_index);
        if delivered.is_some_and(|d| at <= d) {
            continue;
        }
        let signer = match opened_signer(client, &log).await {
            Ok(s) => s,
            Err(()) => return Delivery::StoppedAt(log.block),
        };
        let skip = matches!(log.event, WayfareMarketEvents::ChannelOpened(_)) && signer.is_none();
        if !skip && tx.send(Internal::Log(Box::new(log), signer)).await.is_err() {
            return Delivery::NodeGone;
        }
        *delivered = Some(at);
    }
    Delivery::All
}

/// For a `ChannelOpened`: the channel's voucher signer, read back from the chain, or `None` when
/// the chain holds no such channel (reorged away: skipped). `Err` when the read failed (retry).
async fn opened_signer(client: &MarketClient, log: &MarketLog) -> Result<Option<Address>, ()> {
    let WayfareMarketEvents::ChannelOpened(ev) = &log.event else {
        return Ok(None);
    };
    for attempt in 0..3u32 {
        match tokio::time::timeout(CALL_TIMEOUT, client.channel(ev.id))
            .await
            .unwrap_or_else(|_| Err(timed_out(client)))
        {
            Ok(c)
                if c.voucherSigner == Address::ZERO
                    || c.seller != ev.seller
                    || c.buyer != ev.buyer =>
            {
                tracing::warn!(channel = %ev.id, block = log.block,
                    "ChannelOpened for a channel the chain does not hold (reorged away?): skipped, nothing revealed");
                return Ok(None);
            }
            Ok(c) => return Ok(Some(c.voucherSigner)),
            Err(e) => {
                tracing::warn!(channel = %ev.id, attempt, error = %e, "reading the channel's voucher signer");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    tracing::warn!(channel = %ev.id, "channel unreadable: the event is retried on the next pass");
    Err(())
}

/// How long one read may take before the chain counts as down.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn timed_out(client: &MarketClient) -> wayfare_chain::ChainError {
    wayfare_chain::ChainError::unreachable(client.rpc_url(), "no answer within 10 s")
}

/// The reputation index: reads market events from `from` on in bounded windows and sends each
/// window as [`Internal::Indexed`] (the node stores the events and the cursor, so progress
/// survives a restart). Ends when the node is gone.
///
/// * A window holds at most `MAX_BLOCK_RANGE` (2,000) new blocks: one `eth_getLogs` on providers
///   that cap ranges, and a node starting on a long chain makes progress from its first pass
///   instead of timing out on the whole history. A read that fails or times out halves the
///   window (down to one block: a busy chain whose logs are too many for one answer, or a
///   provider that caps results); each read that succeeds doubles it back.
/// * While behind the head it reads the next window at once; it sleeps `poll` only once caught
///   up (or after a failed read).
/// * Blocks that are within `reorg_depth` of the head are read again on the next pass (from
///   `next - reorg_depth`, never below `start`), so a reorg near the head replaces what it
///   changed. Deeper blocks are final and read once.
pub async fn index(
    client: MarketClient,
    start: u64,
    from: u64,
    reorg_depth: u64,
    poll: Duration,
    tx: mpsc::Sender<Internal>,
) {
    let mut next = from;
    let mut window = INDEX_WINDOW;
    loop {
        let head = match tokio::time::timeout(CALL_TIMEOUT, client.head())
            .await
            .unwrap_or_else(|_| Err(timed_out(&client)))
        {
            Ok((h, _)) => h,
            Err(_) => {
                tokio::time::sleep(poll.max(Duration::from_secs(1))).await;
                continue;
            }
        };
        let Some((lo, hi)) = index_range(start, next, head, reorg_depth, window) else {
            // Nothing new, and nothing read yet that a reorg could still change.
            tokio::time::sleep(poll).await;
            continue;
        };
        let read = tokio::time::timeout(
            CALL_TIMEOUT.saturating_mul(6),
            client.events_between(lo, hi),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out(&client)));
        match read {
            Ok(logs) => {
                let events: Vec<_> = logs
                    .iter()
                    .filter_map(|l| {
                        crate::reputation::from_log(l).map(|e| (l.block, l.log_index, e))
                    })
                    .collect();
                // In pieces, so the node (which serves sessions between messages) never
                // stores and folds a whole busy window at once.
                for (from, next, events) in split_window(lo, hi, events, INDEX_MESSAGE_EVENTS) {
                    if tx
                        .send(Internal::Indexed { from, next, events })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                next = hi + 1;
                window = window.saturating_mul(2).min(INDEX_WINDOW);
                if hi < head {
                    continue; // behind: the next window at once
                }
            }
            Err(e) => {
                window = (window / 2).max(1);
                tracing::warn!(from = lo, to = hi, next_window = window, error = %e,
                    "reputation index: reading market events failed; retrying with a smaller window");
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// The most events one [`Internal::Indexed`] carries (a block is never split).
pub const INDEX_MESSAGE_EVENTS: usize = 5_000;

/// Events with their block and log index, chain order.
pub type Positioned<E> = Vec<(u64, u64, E)>;

/// Cuts the events read from blocks `lo..=hi` (chain order) into messages
/// `(from, next, events)` of at most `max` events each (more only when one block holds more),
/// cut between blocks, whose ranges cover `lo..=hi` without gaps.
pub fn split_window<E>(
    lo: u64,
    hi: u64,
    events: Positioned<E>,
    max: usize,
) -> Vec<(u64, u64, Positioned<E>)> {
    let mut out = Vec::new();
    let mut from = lo;
    let mut cur: Positioned<E> = Vec::new();
    let mut events = events.into_iter().peekable();
    while let Some(first) = events.next() {
        // One block's events together.
        let block = first.0;
        let mut group = vec![first];
        while let Some(ev) = events.next_if(|e| e.0 == block) {
            group.push(ev);
        }
        if !cur.is_empty() && cur.len() + group.len() > max {
            out.push((from, block, std::mem::take(&mut cur)));
            from = block;
        }
        cur.extend(group);
    }
    out.push((from, hi + 1, cur));
    out
}

/// The most new blocks one pass of [`index`] reads.
pub const INDEX_WINDOW: u64 = wayfare_chain::events::MAX_BLOCK_RANGE;

/// Blocks `lo..=hi` the index reads next, with `next` the first block it has not read, or none
/// when there is nothing to read. At most `window` new blocks (`next..`); blocks below `next`
/// that are still within `reorg_depth` of `head` are read again (from `next - reorg_depth`,
/// never below `start`).
fn index_range(
    start: u64,
    next: u64,
    head: u64,
    reorg_depth: u64,
    window: u64,
) -> Option<(u64, u64)> {
    if head.saturating_add(1) < next {
        return None; // the chain is shorter than what was read (a reset devnet): wait
    }
    let near_head = next.saturating_add(reorg_depth) > head;
    let lo = if near_head {
        next.saturating_sub(reorg_depth).max(start)
    } else {
        next
    };
    let hi = head.min(next.saturating_add(window.max(1) - 1));
    if hi < lo {
        return None; // caught up with nothing to re-read (reorg_depth 0, or at `start`)
    }
    Some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::{confirmed_head, index_range, split_window};

    #[test]
    fn only_blocks_deep_enough_are_read() {
        // 1 confirmation: the head block itself.
        assert_eq!(confirmed_head(100, 1), Some(100));
        assert_eq!(confirmed_head(100, 0), Some(100));
        // 3: two blocks on top.
        assert_eq!(confirmed_head(100, 3), Some(98));
        // A chain shorter than the depth: nothing yet.
        assert_eq!(confirmed_head(1, 3), None);
    }

    #[test]
    fn a_busy_window_is_cut_between_blocks_without_gaps() {
        let ev = |b: u64, i: u64| (b, i, ());
        // Blocks 10..=20; 3 events in block 11, 2 in 12, 1 in 15, 4 in 19.
        let events: Vec<_> = [(11, 3), (12, 2), (15, 1), (19, 4)]
            .into_iter()
            .flat_map(|(b, n)| (0..n).map(move |i| ev(b, i)))
            .collect();
        let parts = split_window(10, 20, events.clone(), 4);
        let ranges: Vec<(u64, u64, usize)> =
            parts.iter().map(|(f, n, e)| (*f, *n, e.len())).collect();
        assert_eq!(ranges, vec![(10, 12, 3), (12, 19, 3), (19, 21, 4)]);
        // Nothing lost or reordered.
        let back: Vec<_> = parts.into_iter().flat_map(|p| p.2).collect();
        assert_eq!(back, events);
        // A block bigger than the limit stays whole; no events: one empty message.
        assert_eq!(split_window(10, 20, events.clone(), 1).len(), 4);
        assert_eq!(
            split_window::<()>(10, 20, vec![], 4),
            vec![(10, 21, vec![])]
        );
    }

    #[test]
    fn windows_are_bounded_and_re_read_only_near_the_head() {
        // A long chain: 2,000-block windows with no re-read while far behind.
        assert_eq!(
            index_range(100, 100, 1_000_000, 12, 2_000),
            Some((100, 2_099))
        );
        assert_eq!(
            index_range(100, 2_100, 1_000_000, 12, 2_000),
            Some((2_100, 4_099))
        );
        // The last window reaches the head.
        assert_eq!(
            index_range(100, 999_000, 1_000_000, 12, 2_000),
            Some((999_000, 1_000_000))
        );
        // Caught up: the last 12 blocks again, nothing new.
        assert_eq!(
            index_range(100, 1_000_001, 1_000_000, 12, 2_000),
            Some((999_989, 1_000_000))
        );
        // New blocks near the head: re-read below `next` too.
        assert_eq!(
            index_range(100, 1_000_001, 1_000_005, 12, 2_000),
            Some((999_989, 1_000_005))
        );
        // Never below `start`.
        assert_eq!(index_range(100, 105, 110, 12, 2_000), Some((100, 110)));
        // A window shrunk to one block still makes progress.
        assert_eq!(index_range(100, 500, 505, 12, 1), Some((488, 500)));
        assert_eq!(index_range(100, 500, 1_000, 12, 1), Some((500, 500)));
        // A chain shorter than what was read: wait.
        assert_eq!(index_range(100, 2_000, 1_000, 12, 2_000), None);
        // Caught up without a reorg depth: nothing to read.
        assert_eq!(index_range(100, 1_001, 1_000, 0, 2_000), None);
        // Empty chain at `start`.
        assert_eq!(index_range(100, 100, 99, 12, 2_000), None);
    }
}
