//! The buyer's on-chain rating of a seller when one of its channels closes, from how the session
//! ended and what the buyer measured of its tunnel runs.

use wayfare_proto::session::ChainEvent;

use super::BuyerRole;
use crate::{actions, node::Shared, quality};

/// The stars a seller gets: 1 when it never revealed, metered more than the buyer saw or broke
/// the terms; 2 when the buyer had to close alone (`disputed`: the seller vanished); otherwise
/// what the measurements are worth, capped at 3 unless the buyer left or paused, and 3 when the
/// tunnel was never used.
fn seller_stars(end_reason: Option<&str>, disputed: bool, measured: Option<f64>) -> u8 {
    match end_reason {
        Some("NoReveal" | "MeterMismatch" | "TermsMismatch") => 1,
        // The seller never answered the close: it vanished.
        _ if disputed => 2,
        Some("UserLeft" | "Paused") => measured.map_or(3, quality::stars),
        _ => measured.map_or(3, |q| quality::stars(q).min(3)),
    }
}

impl BuyerRole {
    /// When one of its channels closes, the buyer rates the seller by how the session went:
    /// 1 when the seller never revealed, metered more than the buyer saw or broke the terms;
    /// 2 when the buyer had to close alone (the seller vanished); otherwise the stars its
    /// measurements are worth ([`quality::stars`]: a tunnel where nothing came back is 1),
    /// capped at 3 when the seller cut the session, and 3 when the tunnel was never used.
    pub fn rate_on_close(&mut self, shared: &mut Shared, ev: &ChainEvent) {
        let ChainEvent::ChannelClosed { channel_id, .. } = ev else {
            return;
        };
        if !self.cfg.rate_sellers {
            return;
        }
        let Ok(Some(row)) = shared.with_store(|s| s.session_by_channel("buyer", *channel_id))
        else {
            return;
        };
        let disputed = shared
            .with_store(|s| s.channel(*channel_id))
            .ok()
            .flatten()
            .is_some_and(|c| c.closes_at.is_some());
        let runs = shared
            .with_store(|s| s.runs_of(&row.id))
            .unwrap_or_default();
        let measured = quality::session_quality(&runs);
        let score = seller_stars(row.end_reason.as_deref(), disputed, measured);
        tracing::info!(channel = %channel_id, score, quality = ?measured, ?runs, "rating the seller");
        let client = self.client.clone();
        let _ = shared.add_action(
            &client,
            *channel_id,
            "rate",
            actions::rate_payload(score, "buyer"),
            None,
        );
    }
}
