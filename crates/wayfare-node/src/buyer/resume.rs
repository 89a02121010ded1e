//! Paused sessions in the store, and a stored session rebuilt in memory: restored as it was
//! after a restart, or resumed on its open channel with fresh reveal and WireGuard keys.

use alloy_primitives::{Address, B256};
use wayfare_p2p::PeerId;
use wayfare_proto::{
    Service,
    keys::SecretKey,
    messages::Quote,
    session::{BuyerParams, BuyerSession, BuyerSnapshot},
};
use wayfare_tunnel::wireguard::PrivateKey as WgPrivateKey;

use super::{BuyerRole, Entry};
use crate::{
    api_types::{ConnectAnswer, ConnectRequest},
    error::NodeError,
    node::{Shared, now, unix_now},
};

/// The seller signer that signed `quote` (the buyer checks close consents against it).
fn quote_signer(shared: &Shared, quote: &Quote) -> Address {
    let domain = wayfare_proto::eip712::domain(shared.chain.chain_id(), shared.chain.address());
    let digest = wayfare_proto::eip712::offer_digest(&quote.offer, &domain);
    wayfare_proto::eip712::recover_signer(digest, &quote.signature).unwrap_or(quote.offer.seller)
}

/// The stored voucher key of session `id`.
fn stored_voucher_key(shared: &Shared, id: &str) -> Result<SecretKey, NodeError> {
    let key = shared
        .with_store(|s| s.key(&format!("voucher:{id}")))?
        .ok_or_else(|| NodeError::Invalid(format!("session {id}: its voucher key is missing")))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| NodeError::Invalid(format!("session {id}: bad voucher key")))?;
    SecretKey::from_bytes(&key).map_err(|e| NodeError::Invalid(format!("voucher key: {e}")))
}

impl BuyerRole {
    /// The stored paused session with `seller` for `service`, if any.
    pub(super) fn paused_with(
        &self,
        shared: &Shared,
        seller: Address,
        service: Service,
    ) -> Option<String> {
        let rows = shared.with_store(|s| s.live_sessions("buyer")).ok()?;
        rows.into_iter()
            .rev()
            .find(|r| {
                r.phase == "paused"
                    && r.service == service.code()
                    && r.counterparty.parse::<Address>().ok() == Some(seller)
            })
            .map(|r| r.id)
    }

    /// The stored paused session on `channel`, if any.
    pub(super) fn paused_on_channel(
        &self,
        shared: &Shared,
        channel: B256,
    ) -> Result<Option<String>, NodeError> {
        let rows = shared.with_store(|s| s.live_sessions("buyer"))?;
        Ok(rows
            .into_iter()
            .find(|r| r.phase == "paused" && r.channel_id == Some(channel))
            .map(|r| r.id))
    }

    /// Rebuilds a stored session in memory: restored as it was (`resume = false`) or resumed
    /// with fresh reveal and WireGuard keys (`resume = true`).
    pub(super) fn bring_back(
        &mut self,
        shared: &mut Shared,
        id: &str,
        resume: bool,
    ) -> Result<(), NodeError> {
        let row = shared
            .with_store(|s| s.session(id))?
            .ok_or_else(|| NodeError::NoSuchSession(id.to_string()))?;
        let snap = BuyerSnapshot::from_bytes(row.snapshot.as_deref().unwrap_or_default()).map_err(
            |e| NodeError::Invalid(format!("session {id}: stored state does not decode: {e}")),
        )?;
        let voucher_key = stored_voucher_key(shared, id)?;
        let peer: PeerId = row
            .peer
            .parse()
            .map_err(|_| NodeError::Invalid(format!("session {id}: bad peer id")))?;
        let seller: Address = row.counterparty.parse().unwrap_or_default();
        let service = Service::from_code(row.service).unwrap_or(Service::Shadowsocks);
        let wireguard_key = if resume && service == Service::WireGuard {
            let k = WgPrivateKey::generate();
            shared.with_store(|s| {
                s.replace_key(&format!("wg:{id}"), k.to_base64().as_bytes(), unix_now())
            })?;
            Some(k.public_key().to_bytes())
        } else {
            snap.request.wireguard_key
        };
        let params = BuyerParams {
            chain_id: shared.chain.chain_id(),
            market: shared.chain.address(),
            buyer: self.account,
            seller,
            seller_signer: quote_signer(shared, &snap.quote),
            service,
            wanted: None,
            voucher_key,
            reveal_seed: rand::random(),
            wireguard_key,
        };
        let deposit = snap
            .channel
            .map(|c| c.deposit)
            .unwrap_or(self.cfg.deposit.0);
        let config = self.session_config(deposit, self.limits(&ConnectRequest::default())?);
        let quote = snap.quote.clone();
        let session = if resume {
            BuyerSession::resume(snap, params, config, now())
                .map_err(|e| NodeError::Invalid(format!("can't resume session {id}: {e}")))?
        } else {
            BuyerSession::restore(snap, params, config, now())
        };
        if let Some(c) = row.channel_id {
            self.by_channel.insert(c, id.to_string());
        }
        let out = shared.spawn_sender(peer, id.to_string());
        let phase = if resume {
            "awaiting-reveal".into()
        } else {
            row.phase.clone()
        };
        self.sessions.insert(
            id.to_string(),
            Entry::new(
                session,
                peer,
                seller,
                service,
                out,
                row.created_at,
                phase,
                Some(quote),
            ),
        );
        Ok(())
    }

    /// Resumes a paused channel with `seller`, if there is one.
    pub(super) fn try_resume(
        &mut self,
        shared: &mut Shared,
        seller: Address,
        service: Service,
    ) -> Result<Option<ConnectAnswer>, NodeError> {
        let Some(id) = self.paused_with(shared, seller, service) else {
            return Ok(None);
        };
        self.sessions.remove(&id);
        self.bring_back(shared, &id, true)?;
        tracing::info!(session = %id, %seller, "reconnecting on the open channel");
        self.drain(shared, &id, None);
        let channel = self
            .sessions
            .get(&id)
            .and_then(|e| e.session.channel_id())
            .map(|c| c.to_string());
        Ok(Some(ConnectAnswer {
            session: id,
            seller: seller.to_string(),
            reused_channel: channel,
        }))
    }
}
