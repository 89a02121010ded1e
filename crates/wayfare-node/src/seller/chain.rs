//! Chain facts about the seller's channels: the stored channel row, the event fed to the
//! channel's session, the watchtower for a close started on a channel with no session, and the
//! buyer's on-chain rating when a channel closes.

use alloy_primitives::{B256, U256};
use wayfare_chain::MarketClient;
use wayfare_proto::session::ChainEvent as E;

use super::SellerRole;
use crate::{
    actions,
    node::{Shared, now, unix_now},
    store::ChannelRow,
};

/// The channel an event is about.
fn channel_of(ev: &E) -> B256 {
    match ev {
        E::ChannelOpened(o) => o.channel_id,
        E::ToppedUp { channel_id, .. }
        | E::CloseStarted { channel_id, .. }
        | E::ChannelClosed { channel_id, .. } => *channel_id,
    }
}

/// The row of a seller's channel first seen opening.
fn opened_row(o: &wayfare_proto::session::ChannelOpened) -> ChannelRow {
    ChannelRow {
        id: o.channel_id,
        role: "seller".into(),
        seller: o.seller.to_string(),
        buyer: o.buyer.to_string(),
        service: o.service,
        deposit_wei: o.deposit,
        state: "open".into(),
        open_tx: Some(o.tx_hash.to_string()),
        to_seller_wei: None,
        to_buyer_wei: None,
        closes_at: None,
        opened_at: unix_now(),
        updated_at: unix_now(),
    }
}

/// What `ev` changes in the channel's stored row.
fn apply(row: &mut ChannelRow, ev: &E) {
    match ev {
        E::ChannelOpened(_) => {}
        E::ToppedUp { deposit, .. } => row.deposit_wei = *deposit,
        E::CloseStarted { closes_at, .. } => {
            row.state = "closing".into();
            row.closes_at = Some(*closes_at);
        }
        E::ChannelClosed {
            to_seller,
            to_buyer,
            ..
        } => {
            row.state = "closed".into();
            row.to_seller_wei = Some(*to_seller);
            row.to_buyer_wei = Some(*to_buyer);
        }
    }
    row.updated_at = unix_now();
}

impl SellerRole {
    /// A chain fact: fed to the channel's session; a close started on a channel whose session
    /// is gone is answered with the best stored voucher (watchtower).
    pub fn on_chain_event(&mut self, shared: &mut Shared, ev: &E) {
        let now = now();
        if let E::ChannelOpened(o) = ev
            && o.seller != self.account
        {
            return;
        }
        let channel = channel_of(ev);
        self.record_channel_event(shared, ev);
        if let Some(id) = self.by_channel.get(&channel).cloned()
            && let Some(entry) = self.sessions.get_mut(&id)
        {
            if let Err(e) = entry.session.handle_chain_event(*ev, now) {
                entry.last_error = Some(e.to_string());
            }
            self.drain(shared, &id, None);
            return;
        }
        if let E::CloseStarted {
            channel_id,
            closes_at,
        } = ev
        {
            let best = shared
                .with_store(|s| s.best_voucher(*channel_id))
                .ok()
                .flatten();
            let ours = shared
                .with_store(|s| s.channel(*channel_id))
                .ok()
                .flatten()
                .is_some_and(|c| c.role == "seller");
            if ours && let Some((amount, sig)) = best {
                let client = self.client.clone();
                watchtower(shared, &client, *channel_id, amount, &sig, *closes_at);
            }
        }
    }

    /// When one of its channels closes, the seller rates the buyer by how it paid: 1 after a
    /// missing or short payment, 2 after a buyer-started close (a dispute), else 5.
    pub fn rate_on_close(&mut self, shared: &mut Shared, ev: &E) {
        let E::ChannelClosed { channel_id, .. } = ev else {
            return;
        };
        if !self.cfg.rate_buyers {
            return;
        }
        let Ok(Some(row)) = shared.with_store(|s| s.session_by_channel("seller", *channel_id))
        else {
            return;
        };
        let disputed = shared
            .with_store(|s| s.channel(*channel_id))
            .ok()
            .flatten()
            .is_some_and(|c| c.closes_at.is_some());
        let score = match row.end_reason.as_deref() {
            Some("MissingPayment" | "ShortPayment" | "MaxDebt") => 1,
            _ if disputed => 2,
            _ => 5,
        };
        tracing::info!(channel = %channel_id, score, "rating the buyer");
        let client = self.client.clone();
        let _ = shared.add_action(
            &client,
            *channel_id,
            "rate",
            actions::rate_payload(score, "seller"),
            None,
        );
    }

    /// Stores what `ev` changes in the seller's channel row (created when it opens).
    fn record_channel_event(&self, shared: &Shared, ev: &E) {
        let res = shared.with_store(|s| {
            let id = channel_of(ev);
            let mut row = match s.channel(id)? {
                Some(r) if r.role == "seller" => r,
                Some(_) => return Ok(()),
                None => match ev {
                    E::ChannelOpened(o) => opened_row(o),
                    _ => return Ok(()),
                },
            };
            apply(&mut row, ev);
            s.put_channel(&row)
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "could not record a channel event");
        }
    }
}

/// The watchtower's answer to a buyer's `startClose`: record the best voucher on chain at once
/// (`submitVoucher`, valid until `closes_at`), then `finalize` once the challenge period is over
/// (the buyer usually finalizes first; the seller's then reverts, which changes nothing).
pub(super) fn watchtower(
    shared: &mut Shared,
    client: &MarketClient,
    channel: B256,
    amount: U256,
    sig: &[u8],
    closes_at: u64,
) {
    tracing::info!(%channel, %amount, closes_at, "buyer started a close: submitting the best voucher (watchtower)");
    let submit = shared.add_action(
        client,
        channel,
        "submit_voucher",
        actions::voucher_payload(amount, sig),
        None,
    );
    let finalize = shared.add_action(
        client,
        channel,
        "finalize",
        serde_json::json!({ "not_before": closes_at, "side": "seller" }),
        None,
    );
    if let Err(e) = submit.and(finalize) {
        tracing::error!(%channel, error = %e, "could not record the watchtower's actions");
    }
}
