//! Announcements from gossip: rate limit, precheck, the seller's signer from the registry
//! (cached; lookups batched per seller), signature, then accept or reject (a peer penalty).

use std::time::Instant;

use alloy_primitives::Address;
use libp2p::PeerId;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use tracing::{debug, warn};
use wayfare_proto::messages::Announcement;

use super::{MAX_PENDING_VALIDATIONS, Node, REGISTRY_TIMEOUT, unix_now};
use crate::announce::{self, AnnouncementError};
use crate::events::P2pEvent;
use crate::registry::{Registry, RegistryError};

impl<R: Registry> Node<R> {
    pub(super) fn on_gossip(&mut self, source: PeerId, id: MessageId, msg: gossipsub::Message) {
        if !self.gossip_limit.allow(&source, Instant::now()) {
            self.report(&id, &source, MessageAcceptance::Ignore);
            self.strike(source, "announcement flood");
            return;
        }
        let origin = msg.source.map(|p| p.to_bytes());
        let ttl = self.config.max_announcement_ttl.as_secs();
        match announce::precheck(&msg.data, origin.as_deref(), unix_now(), ttl) {
            Err(e) => self.reject(id, source, e),
            Ok(a) => match self.cache.get(&a.seller, Instant::now()) {
                Some(signer) => self.finish_validation(id, source, a, signer),
                None if self.pending_count >= MAX_PENDING_VALIDATIONS => {
                    debug!("too many announcements awaiting the registry; ignoring one");
                    self.report(&id, &source, MessageAcceptance::Ignore);
                }
                None => {
                    let seller = a.seller;
                    let queue = self.pending_validations.entry(seller).or_default();
                    let first = queue.is_empty();
                    queue.push((id, source, a));
                    self.pending_count += 1;
                    if first {
                        let registry = self.registry.clone();
                        let tx = self.lookup_tx.clone();
                        tokio::spawn(async move {
                            let r =
                                tokio::time::timeout(REGISTRY_TIMEOUT, registry.signer_of(seller))
                                    .await
                                    .unwrap_or_else(|_| Err(RegistryError("timed out".into())));
                            let _ = tx.send((seller, r));
                        });
                    }
                }
            },
        }
    }

    pub(super) fn on_lookup(
        &mut self,
        seller: Address,
        result: Result<Option<Address>, RegistryError>,
    ) {
        let waiting = self.pending_validations.remove(&seller).unwrap_or_default();
        self.pending_count = self.pending_count.saturating_sub(waiting.len());
        match result {
            Ok(signer) => {
                self.cache.insert(seller, signer, Instant::now());
                for (id, source, a) in waiting {
                    self.finish_validation(id, source, a, signer);
                }
            }
            Err(e) => {
                warn!(%seller, error = %e, "registry lookup failed; ignoring that seller's announcements for now");
                for (id, source, _) in waiting {
                    self.report(&id, &source, MessageAcceptance::Ignore);
                }
            }
        }
    }

    fn finish_validation(
        &mut self,
        id: MessageId,
        source: PeerId,
        a: Announcement,
        signer: Option<Address>,
    ) {
        match announce::check_signature(&a, signer, &self.config.domain) {
            Ok(()) => {
                self.report(&id, &source, MessageAcceptance::Accept);
                match PeerId::from_bytes(&a.peer_id) {
                    Ok(peer) => self.emit(P2pEvent::Announcement {
                        peer,
                        announcement: a,
                    }),
                    Err(_) => debug!("announcement names an unparsable peer id"),
                }
            }
            Err(e) => self.reject(id, source, e),
        }
    }

    fn report(&mut self, id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    fn reject(&mut self, id: MessageId, source: PeerId, reason: AnnouncementError) {
        warn!(peer = %source, %reason, "dropped invalid announcement; peer penalised");
        self.report(&id, &source, MessageAcceptance::Reject);
        self.emit(P2pEvent::AnnouncementRejected {
            from: source,
            reason,
        });
    }
}
