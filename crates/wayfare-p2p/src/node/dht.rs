//! Circuit address records in the DHT: a relay-only node publishes where it can be reached
//! through its relays; others look them up before dialing it.

use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, kad};
use tracing::debug;

use super::{CIRCUIT_RECORD_TTL, Lookup, MAX_CIRCUIT_ADDRS, Node, peer_of};
use crate::registry::Registry;

/// The DHT key under which a relay-only node publishes its circuit addresses.
pub(super) fn circuit_record_key(peer: &PeerId) -> kad::RecordKey {
    kad::RecordKey::new(&[b"/wayfare/circuit/".as_slice(), &peer.to_bytes()].concat())
}

/// Encodes circuit addresses for the DHT: each a `u16` length then the multiaddr bytes.
fn encode_circuit_addrs(addrs: &[Multiaddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addrs.iter().take(MAX_CIRCUIT_ADDRS) {
        let b = a.to_vec();
        if let Ok(len) = u16::try_from(b.len()) {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&b);
        }
    }
    out
}

/// Decodes a circuit record for `peer`, keeping only relay circuit addresses that end in
/// `/p2p/<peer>` (anyone can write a DHT record; noise authenticates whoever we reach).
fn decode_circuit_addrs(peer: &PeerId, mut bytes: &[u8]) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    while bytes.len() >= 2 && out.len() < MAX_CIRCUIT_ADDRS {
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        let Some(raw) = bytes.get(2..2 + len) else {
            break;
        };
        bytes = &bytes[2 + len..];
        if let Ok(a) = Multiaddr::try_from(raw.to_vec())
            && a.iter().any(|p| p == Protocol::P2pCircuit)
            && peer_of(&a) == Some(*peer)
        {
            out.push(a);
        }
    }
    out
}

impl<R: Registry> Node<R> {
    /// A DHT lookup for a peer's circuit addresses progressed.
    pub(super) fn on_kad_get(
        &mut self,
        id: kad::QueryId,
        result: Result<kad::GetRecordOk, kad::GetRecordError>,
    ) {
        let found = match result {
            Ok(kad::GetRecordOk::FoundRecord(r)) => Some(r.record.value),
            Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => None,
        };
        let Some((peer, lookup)) = self.pending_lookups.remove(&id) else {
            return;
        };
        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            q.finish();
        }
        let addrs = found
            .map(|v| decode_circuit_addrs(&peer, &v))
            .unwrap_or_default();
        debug!(%peer, found = addrs.len(), "DHT lookup for circuit addresses done");
        match lookup {
            Lookup::Request(bytes, reply) => self.send_request(peer, bytes, reply, addrs),
            Lookup::Find(reply) => {
                let _ = reply.send(addrs);
            }
        }
    }

    /// Publishes our relay circuit addresses in the DHT (with [`Advertise::Relay`]).
    pub(super) fn publish_circuits(&mut self) {
        let addrs: Vec<Multiaddr> = self
            .swarm
            .external_addresses()
            .filter(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
            .cloned()
            .collect();
        if addrs.is_empty() {
            return;
        }
        let local = *self.swarm.local_peer_id();
        let record = kad::Record {
            key: circuit_record_key(&local),
            value: encode_circuit_addrs(&addrs),
            publisher: Some(local),
            expires: Some(Instant::now() + CIRCUIT_RECORD_TTL),
        };
        // Stored on our relays only: they know our IP already, nobody else must see us dial.
        let relays: Vec<PeerId> = self.relays.iter().map(|(p, _)| *p).collect();
        self.swarm
            .behaviour_mut()
            .kad
            .put_record_to(record, relays.into_iter(), kad::Quorum::One);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::truncate;

    #[test]
    fn circuit_records_keep_only_circuits_to_the_named_peer() {
        let peer = PeerId::random();
        let relay = PeerId::random();
        let good: Multiaddr = format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}")
            .parse()
            .unwrap();
        let direct: Multiaddr = format!("/ip4/10.0.0.2/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        let other: Multiaddr =
            format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{relay}")
                .parse()
                .unwrap();
        let bytes = encode_circuit_addrs(&[good.clone(), direct, other]);
        assert_eq!(decode_circuit_addrs(&peer, &bytes), vec![good.clone()]);
        // Truncated or garbage input yields what parses, never panics.
        assert!(decode_circuit_addrs(&peer, &bytes[..bytes.len() - 3]).len() <= 1);
        assert!(decode_circuit_addrs(&peer, &[0xff, 0xff, 1, 2]).is_empty());
        assert_eq!(truncate("ab‖c".into(), 3), "ab");
    }
}
