//! The seller's announcement: signed with its terms, region and capacity, published on the p2p
//! network every second until someone listens, then every third of its lifetime.

use std::time::Duration;

use wayfare_p2p::{P2pError, sign_announcement};
use wayfare_proto::{Timestamp, messages::Announcement};

use super::SellerRole;
use crate::node::Shared;

/// How long an announcement is valid; republished every third of it.
const ANNOUNCEMENT_TTL: u64 = 120;

impl SellerRole {
    /// Signs and publishes the announcement, and sets when to publish the next.
    pub(super) fn announce(&mut self, shared: &Shared, now: Timestamp) {
        if !self.reach.reachable {
            // Nobody could reach the services: offering them would only sell dead sessions.
            self.next_announce = now.saturating_add(Duration::from_secs(ANNOUNCEMENT_TTL));
            return;
        }
        let mut a = Announcement {
            seller: self.account,
            peer_id: shared.p2p.peer_id().to_bytes(),
            services: self.services,
            terms: self.terms,
            region: self.cfg.region.clone(),
            capacity_bps: self.cfg.capacity_bps,
            exit_allow: self.exit_allow.clone(),
            valid_until: now.as_secs() + ANNOUNCEMENT_TTL,
            signature: [0; 65],
        };
        sign_announcement(&mut a, &self.signer, &shared.chain.domain());
        let p2p = shared.p2p.clone();
        let flag = self.announce_ok.clone();
        tokio::spawn(async move {
            let ok = match p2p.publish(&a).await {
                Ok(()) => true,
                Err(P2pError::NoPeers) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "announcement not published");
                    false
                }
            };
            flag.store(ok, std::sync::atomic::Ordering::SeqCst);
        });
        // Until someone listens, try every second; then every third of the lifetime.
        let wait = if self.announce_ok.load(std::sync::atomic::Ordering::SeqCst) {
            ANNOUNCEMENT_TTL / 3
        } else {
            1
        };
        self.next_announce = now.saturating_add(Duration::from_secs(wait));
    }
}
