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
pub async fn watch(client: MarketClient, from: u64, poll: Duration, tx: mpsc::Sender<Internal>) {
    let mut next = from;
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
        if head >= next {
            match tokio::time::timeout(CALL_TIMEOUT, client.events_between(next, head))
                .await
                .unwrap_or_else(|_| Err(timed_out(&client)))
            {
                Ok(logs) => {
                    for log in logs {
                        let signer = voucher_signer(&client, &log).await;
                        if tx.send(Internal::Log(Box::new(log), signer)).await.is_err() {
                            return;
                        }
                    }
                    next = head + 1;
                    if tx.send(Internal::ChainHead(head)).await.is_err() {
                        return;
                    }
                }
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

/// How long one read may take before the chain counts as down.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn timed_out(client: &MarketClient) -> wayfare_chain::ChainError {
    wayfare_chain::ChainError::unreachable(client.rpc_url(), "no answer within 10 s")
}

async fn voucher_signer(client: &MarketClient, log: &MarketLog) -> Option<Address> {
    let WayfareMarketEvents::ChannelOpened(ev) = &log.event else {
        return None;
    };
    for attempt in 0..5u32 {
        match tokio::time::timeout(CALL_TIMEOUT, client.channel(ev.id))
            .await
            .unwrap_or_else(|_| Err(timed_out(client)))
        {
            Ok(c) => return Some(c.voucherSigner),
            Err(e) => {
                tracing::warn!(channel = %ev.id, attempt, error = %e, "reading the channel's voucher signer");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    None
}

/// The reputation index: reads market events from `from` on, every pass again from
/// `reorg_depth` blocks below where it stopped (so a reorg near the head is seen), and sends them
/// as [`Internal::Indexed`]. Ends when the node is gone.
pub async fn index(
    client: MarketClient,
    start: u64,
    from: u64,
    reorg_depth: u64,
    poll: Duration,
    tx: mpsc::Sender<Internal>,
) {
    let mut next = from;
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
        if head + 1 >= next {
            let lo = next.saturating_sub(reorg_depth).max(start);
            let read = tokio::time::timeout(
                CALL_TIMEOUT.saturating_mul(6),
                client.events_between(lo, head),
            )
            .await
            .unwrap_or_else(|_| Err(timed_out(&client)));
            if let Ok(logs) = read {
                let events = logs
                    .iter()
                    .filter_map(|l| {
                        crate::reputation::from_log(l).map(|e| (l.block, l.log_index, e))
                    })
                    .collect();
                if tx
                    .send(Internal::Indexed {
                        from: lo,
                        next: head + 1,
                        events,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                next = head + 1;
            }
        }
        tokio::time::sleep(poll).await;
    }
}
