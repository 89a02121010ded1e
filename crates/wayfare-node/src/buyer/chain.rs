//! Chain results for the buyer: its durable actions done (the open's receipt feeds the session)
//! and chain facts about its channels (the stored channel row, finalize after a close started).

use alloy_primitives::B256;
use wayfare_proto::session::{ChainEvent, ChannelOpened};

use super::BuyerRole;
use crate::node::{Shared, now, unix_now};

impl BuyerRole {
    /// A chain action of this role finished.
    pub fn on_action_done(
        &mut self,
        shared: &mut Shared,
        id: &str,
        result: &Result<String, (String, bool)>,
        opened: Option<Box<ChannelOpened>>,
    ) {
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        match (result, opened) {
            (Ok(_), Some(o)) => {
                if let Err(e) = entry
                    .session
                    .handle_chain_event(ChainEvent::ChannelOpened(*o), now())
                {
                    entry.last_error = Some(e.to_string());
                }
                self.drain(shared, id, None);
            }
            (Ok(_), None) => {}
            (Err((why, retry)), _) => {
                entry.last_error = Some(why.clone());
                // An open the chain refused will never happen: give up on this session.
                if !retry && entry.phase == "opening" {
                    entry.session.leave(now());
                    self.drain(shared, id, None);
                }
            }
        }
    }

    /// A chain fact about a channel.
    pub fn on_chain_event(&mut self, shared: &mut Shared, ev: &ChainEvent) {
        let now = now();
        let channel = match ev {
            ChainEvent::ChannelOpened(o) => {
                if o.buyer != self.account {
                    return;
                }
                o.channel_id
            }
            ChainEvent::ToppedUp { channel_id, .. }
            | ChainEvent::CloseStarted { channel_id, .. }
            | ChainEvent::ChannelClosed { channel_id, .. } => *channel_id,
        };
        self.record_channel_event(shared, channel, ev);
        if let Some(id) = self.by_channel.get(&channel).cloned()
            && let Some(entry) = self.sessions.get_mut(&id)
        {
            if let Err(e) = entry.session.handle_chain_event(*ev, now) {
                tracing::debug!(session = %id, error = %e, "chain event not for this session's state");
            }
            self.drain(shared, &id, None);
        }
    }

    /// Updates the stored row of a buyer's `channel`; a close started gets a `finalize` (once).
    fn record_channel_event(&self, shared: &mut Shared, channel: B256, ev: &ChainEvent) {
        let row = shared.with_store(|s| s.channel(channel)).ok().flatten();
        let Some(mut row) = row.filter(|r| r.role == "buyer") else {
            return;
        };
        match ev {
            ChainEvent::ToppedUp { deposit, .. } => row.deposit_wei = *deposit,
            ChainEvent::CloseStarted { closes_at, .. } => {
                row.state = "closing".into();
                row.closes_at = Some(*closes_at);
                self.finalize_once(shared, channel, *closes_at);
            }
            ChainEvent::ChannelClosed {
                to_seller,
                to_buyer,
                ..
            } => {
                row.state = "closed".into();
                row.to_seller_wei = Some(*to_seller);
                row.to_buyer_wei = Some(*to_buyer);
            }
            ChainEvent::ChannelOpened(_) => {}
        }
        row.updated_at = unix_now();
        let _ = shared.with_store(|s| s.put_channel(&row));
    }

    /// A `finalize` of `channel` after `closes_at`, unless one is pending already.
    fn finalize_once(&self, shared: &mut Shared, channel: B256, closes_at: u64) {
        let pending = shared
            .with_store(|s| s.actions(channel))
            .unwrap_or_default()
            .iter()
            .any(|a| a.kind == "finalize" && a.state == "pending");
        if !pending {
            let client = self.client.clone();
            let _ = shared.add_action(
                &client,
                channel,
                "finalize",
                serde_json::json!({ "not_before": closes_at }),
                None,
            );
        }
    }
}
