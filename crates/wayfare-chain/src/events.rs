//! The market's events: a range read and a stream from a block, by polling `eth_getLogs`
//! (works on every JSON-RPC node; no WebSocket subscription needed).

use std::{collections::VecDeque, time::Duration};

use alloy::{
    primitives::{B256, TxHash},
    providers::Provider,
    rpc::types::{Filter, Log},
    sol_types::SolEventInterface,
};
use futures::Stream;

use crate::{
    bindings::WayfareMarket::WayfareMarketEvents, error::ChainError, market::MarketClient,
};

/// Blocks asked for in one `eth_getLogs` (many providers cap ranges).
pub const MAX_BLOCK_RANGE: u64 = 2_000;

/// One decoded market event and where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketLog {
    /// The block.
    pub block: u64,
    /// The transaction.
    pub tx: TxHash,
    /// The log's index in the block.
    pub log_index: u64,
    /// The event.
    pub event: WayfareMarketEvents,
}

impl MarketLog {
    /// The channel id the event is about, if it is a channel event.
    pub fn channel_id(&self) -> Option<B256> {
        use WayfareMarketEvents as E;
        match &self.event {
            E::ChannelOpened(e) => Some(e.id),
            E::ToppedUp(e) => Some(e.id),
            E::CloseStarted(e) => Some(e.id),
            E::VoucherSubmitted(e) => Some(e.id),
            E::ChannelClosed(e) => Some(e.id),
            E::Rated(e) => Some(e.id),
            _ => None,
        }
    }
}

fn decode(log: &Log) -> Result<MarketLog, ChainError> {
    let event = WayfareMarketEvents::decode_log(&log.inner).map_err(|e| ChainError::Rpc {
        what: "decode event".into(),
        why: format!(
            "log {:?} in block {:?} is not a market event: {e}",
            log.log_index, log.block_number
        ),
    })?;
    Ok(MarketLog {
        block: log.block_number.unwrap_or_default(),
        tx: log.transaction_hash.unwrap_or_default(),
        log_index: log.log_index.unwrap_or_default(),
        event: event.data,
    })
}

impl MarketClient {
    /// Every market event in blocks `from..=to`, oldest first.
    pub async fn events_between(&self, from: u64, to: u64) -> Result<Vec<MarketLog>, ChainError> {
        let mut out = Vec::new();
        let mut start = from;
        while start <= to {
            let end = to.min(start.saturating_add(MAX_BLOCK_RANGE - 1));
            let filter = Filter::new()
                .address(self.address())
                .from_block(start)
                .to_block(end);
            let logs = self
                .provider()
                .get_logs(&filter)
                .await
                .map_err(|e| ChainError::unreachable(self.rpc_url(), &e.to_string()))?;
            for log in &logs {
                out.push(decode(log)?);
            }
            start = end + 1;
        }
        Ok(out)
    }

    /// Every market event from block `from` on, as they are mined, oldest first; polls every
    /// `poll` while there is nothing new. The stream ends only on an error.
    pub fn events_from(
        &self,
        from: u64,
        poll: Duration,
    ) -> impl Stream<Item = Result<MarketLog, ChainError>> + use<> {
        struct State {
            client: MarketClient,
            next: u64,
            queue: VecDeque<MarketLog>,
            failed: bool,
        }
        let state = State {
            client: self.clone(),
            next: from,
            queue: VecDeque::new(),
            failed: false,
        };
        futures::stream::unfold(state, move |mut st| async move {
            if st.failed {
                return None;
            }
            loop {
                if let Some(item) = st.queue.pop_front() {
                    return Some((Ok(item), st));
                }
                let head = match st.client.provider().get_block_number().await {
                    Ok(h) => h,
                    Err(e) => {
                        st.failed = true;
                        let err = ChainError::unreachable(st.client.rpc_url(), &e.to_string());
                        return Some((Err(err), st));
                    }
                };
                if head < st.next {
                    tokio::time::sleep(poll).await;
                    continue;
                }
                let to = head.min(st.next.saturating_add(MAX_BLOCK_RANGE - 1));
                match st.client.events_between(st.next, to).await {
                    Ok(logs) => {
                        st.queue.extend(logs);
                        st.next = to + 1;
                    }
                    Err(e) => {
                        st.failed = true;
                        return Some((Err(e), st));
                    }
                }
            }
        })
    }
}
