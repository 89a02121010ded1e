//! Request-response, both ways: our requests out (and their answers back to the caller), and
//! peers' requests in (rate limit, decode, then the application's queues, or a refusal).

use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tracing::debug;
use wayfare_proto::messages::{Message, Refusal, RefusalReason};

use super::{Node, truncate};
use crate::events::{InboundRequest, Responder};
use crate::handle::{P2pError, Reply};
use crate::registry::Registry;

impl<R: Registry> Node<R> {
    /// Sends a request, dialing through `found` (DHT circuit addresses), the configured relays
    /// and whatever the behaviours know if we are not connected.
    pub(super) fn send_request(
        &mut self,
        peer: PeerId,
        bytes: Vec<u8>,
        reply: Reply<Result<Option<Message>, P2pError>>,
        mut addrs: Vec<Multiaddr>,
    ) {
        if !self.swarm.is_connected(&peer) {
            addrs.extend(
                self.relays
                    .iter()
                    .filter(|(relay, _)| *relay != peer)
                    .map(|(_, a)| {
                        a.clone()
                            .with(Protocol::P2pCircuit)
                            .with(Protocol::P2p(peer))
                    }),
            );
        }
        let id = self
            .swarm
            .behaviour_mut()
            .rr
            .send_request_with_addresses(&peer, bytes, addrs);
        self.pending_requests.insert(id, (peer, reply));
    }

    pub(super) fn on_rr(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message as RrMessage};
        match ev {
            Event::Message {
                peer,
                message:
                    RrMessage::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_request(peer, request, channel),
            Event::Message {
                peer,
                message:
                    RrMessage::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some((_, reply)) = self.pending_requests.remove(&request_id) else {
                    return;
                };
                let r = if response.is_empty() {
                    Ok(None)
                } else {
                    match Message::decode(&response) {
                        Ok(m) => Ok(Some(m)),
                        Err(error) => {
                            self.strike(peer, "malformed reply");
                            Err(P2pError::BadReply {
                                peer,
                                error: Box::new(error),
                            })
                        }
                    }
                };
                let _ = reply.send(r);
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, request: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let refuse = |reason, detail: String| Message::Refusal(Refusal { reason, detail }).encode();
        if !self.request_limit.allow(&peer, Instant::now()) {
            let bytes = refuse(RefusalReason::Unavailable, "rate limited: slow down".into());
            let _ = self.swarm.behaviour_mut().rr.send_response(channel, bytes);
            self.stats.count_refused(false);
            self.strike(peer, "request flood");
            return;
        }
        match Message::decode(&request) {
            Ok(Message::Announcement(_)) => {
                let bytes = refuse(
                    RefusalReason::BadRequest,
                    "announcements go on the gossip topic".into(),
                );
                let _ = self.swarm.behaviour_mut().rr.send_response(channel, bytes);
                self.stats.count_refused(true);
                self.strike(peer, "announcement sent as a request");
            }
            Ok(message) => {
                debug!(%peer, kind = message.name(), "inbound request");
                let responder = Responder {
                    channel,
                    cmd: self.cmd_tx.clone(),
                };
                let request = InboundRequest {
                    peer,
                    message,
                    responder,
                };
                // No room: the requester learns at once (cheap, no state) and may retry.
                if let Err(busy) = self.queues.request(request) {
                    let bytes = busy.refusal();
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_response(busy.channel, bytes);
                }
            }
            Err(e) => {
                let detail = truncate(
                    format!("malformed request: {e}"),
                    wayfare_proto::messages::MAX_DETAIL_LEN,
                );
                let bytes = refuse(RefusalReason::BadRequest, detail);
                let _ = self.swarm.behaviour_mut().rr.send_response(channel, bytes);
                self.stats.count_refused(true);
                self.strike(peer, "malformed request");
            }
        }
    }
}
