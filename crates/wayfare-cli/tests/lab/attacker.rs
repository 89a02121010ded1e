//! A hostile host for the daemon-level tests and the flood benchmark: libp2p nodes built from
//! `wayfare-p2p` on a fourth namespace linked to the buyer and the seller, and the signed
//! messages they forge or replay.

use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use wayfare_chain::keystore::{PasswordSource, load_keystore};
use wayfare_node::{labnet::Daemon, store::Store};
use wayfare_p2p::{
    Keypair, MemoryRegistry, Multiaddr, P2pConfig, P2pError, P2pHandle, P2pNode, PeerId,
};
use wayfare_proto::eip712::{self, Eip712Domain};
use wayfare_proto::keys::SecretKey;
use wayfare_proto::messages::{
    CloseReason, CloseRequest, Message, QuoteRequest, RefusalReason, Resume, SignedCloseConsent,
    SignedVoucher, Usage,
};
use wayfare_proto::types::Service;
use wayfare_tunnel::lab::{BUYER_FROM_ATTACKER_IP, NsRuntime, SELLER_FROM_ATTACKER_IP};

use super::World;

/// The attacker's own key: it signs whatever it forges.
pub fn mallory() -> SecretKey {
    SecretKey::from_bytes(&[0x66; 32]).expect("key")
}

/// A hostile host: libp2p nodes of its own, and where the victims listen.
pub struct Attacker {
    /// Its host's runtime.
    pub rt: NsRuntime,
    /// The market's EIP-712 domain.
    pub domain: Eip712Domain,
    /// The seller daemon's peer id and address from the attacker host.
    pub seller: (PeerId, Multiaddr),
    /// The buyer daemon's.
    pub buyer: (PeerId, Multiaddr),
}

/// Which victim a message goes to.
#[derive(Clone, Copy, Debug)]
pub enum To {
    Seller,
    Buyer,
}

impl Attacker {
    pub fn new(w: &mut World) -> Self {
        let rt = w
            .net
            .attacker_runtime(2)
            .unwrap_or_else(|e| panic!("attacker host: {e}"));
        let at = |ip, d: &Daemon| -> (PeerId, Multiaddr) {
            let peer = d.peer_id.parse().expect("peer id");
            let addr = format!("/ip4/{ip}/tcp/{}/p2p/{peer}", d.p2p_port)
                .parse()
                .expect("multiaddr");
            (peer, addr)
        };
        Attacker {
            rt,
            domain: eip712::domain(w.net.info.chain_id, w.net.info.market),
            seller: at(SELLER_FROM_ATTACKER_IP, &w.sellers[0]),
            buyer: at(BUYER_FROM_ATTACKER_IP, &w.buyer),
        }
    }

    /// A fresh libp2p identity on the attacker host (its events drained and ignored).
    pub fn node(&self) -> P2pHandle {
        let domain = self.domain.clone();
        self.rt.block_on(async move {
            let mut cfg = P2pConfig::new(Keypair::generate_ed25519(), domain);
            cfg.listen = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("multiaddr")];
            let (handle, mut events) =
                P2pNode::spawn(cfg, Arc::new(MemoryRegistry::new())).expect("spawn a p2p node");
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            handle
        })
    }

    /// A node that joins the network at `relay` as any stranger would and writes down all it
    /// hears: every event (identify, announcements, …) in Debug form. It knows the seller's
    /// registration (as anyone reading the chain does), so it takes the seller's announcements.
    pub fn observer(&self, w: &World, relay: Multiaddr) -> (P2pHandle, Heard) {
        let s = &w.net.info.sellers[0];
        let registry = MemoryRegistry::new();
        registry.register(s.account.address, s.signer.address);
        stranger_at_relay(&self.rt, self.domain.clone(), relay, registry)
    }

    /// Sends `bytes` from `node` to a victim and returns its answer.
    pub fn send(
        &self,
        node: &P2pHandle,
        to: To,
        bytes: Vec<u8>,
    ) -> Result<Option<Message>, P2pError> {
        let (peer, addr) = match to {
            To::Seller => self.seller.clone(),
            To::Buyer => self.buyer.clone(),
        };
        let node = node.clone();
        self.rt.block_on(async move {
            let _ = node.dial(addr).await;
            node.request_raw(peer, bytes).await
        })
    }

    /// Sends `message` and asserts the victim refused it with `reason`.
    pub fn expect_refused(
        &self,
        node: &P2pHandle,
        what: &str,
        to: To,
        message: Message,
        reason: RefusalReason,
    ) {
        match self.send(node, to, message.encode()) {
            Ok(Some(Message::Refusal(r))) if r.reason == reason => {
                eprintln!("· {what}: refused by the {to:?} ({reason:?}: {})", r.detail)
            }
            other => panic!("{what}: the {to:?} should refuse it with {reason:?}, got {other:?}"),
        }
    }
}

/// A fresh libp2p identity on `rt`'s host that joins the network at `relay` as any stranger
/// would (bootstrap and relay both), trusting the sellers in `registry`, and writes down every
/// event it hears in Debug form.
pub fn stranger_at_relay(
    rt: &NsRuntime,
    domain: Eip712Domain,
    relay: Multiaddr,
    registry: MemoryRegistry,
) -> (P2pHandle, Heard) {
    let heard = Heard::default();
    let log = heard.clone();
    let handle = rt.block_on(async move {
        let mut cfg = P2pConfig::new(Keypair::generate_ed25519(), domain);
        cfg.listen = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("multiaddr")];
        cfg.bootstrap = vec![relay.clone()];
        cfg.relays = vec![relay];
        let (handle, mut events) =
            P2pNode::spawn(cfg, Arc::new(registry)).expect("spawn a p2p node");
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                log.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{ev:?}"));
            }
        });
        handle
    });
    (handle, heard)
}

/// Everything an observer node heard, in Debug form.
#[derive(Clone, Default)]
pub struct Heard(pub Arc<std::sync::Mutex<Vec<String>>>);

impl Heard {
    /// A copy of what was heard so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The honest parties' keys, as the attacks' replays need them.
pub struct PartyKeys {
    /// The channel's voucher signer (the buyer's, kept in its store).
    pub voucher: SecretKey,
    /// The seller's registered signer.
    pub seller: SecretKey,
}

impl PartyKeys {
    pub fn read(w: &World, channel: B256) -> Self {
        let store = Store::open(&w.buyer.data_dir.join("node.db")).expect("open the buyer store");
        let session = store
            .sessions("buyer")
            .expect("buyer sessions")
            .into_iter()
            .find(|s| s.channel_id == Some(channel))
            .expect("the buyer's session of the channel");
        let bytes = store
            .key(&format!("voucher:{}", session.id))
            .expect("read key")
            .expect("the voucher key");
        let voucher = SecretKey::from_bytes(&bytes.try_into().expect("32 bytes")).expect("key");
        let info = &w.net.info;
        let signer = load_keystore(
            &info.sellers[0].signer.keystore,
            &PasswordSource::File(info.password_file.clone()),
        )
        .expect("the seller's signer keystore");
        let seller = SecretKey::from_bytes(&signer.to_bytes().0).expect("key");
        PartyKeys { voucher, seller }
    }
}

pub fn close(
    d: &Eip712Domain,
    id: B256,
    run: u32,
    reason: CloseReason,
    key: &SecretKey,
) -> Message {
    let digest = eip712::close_request_digest(id, run, reason as u8, d);
    Message::CloseRequest(CloseRequest {
        channel_id: id,
        run,
        reason,
        signature: key.sign_digest(digest),
    })
}

pub fn usage(d: &Eip712Domain, id: B256, run: u32, bytes: u64, key: &SecretKey) -> Message {
    let mut u = Usage {
        channel_id: id,
        run,
        bytes,
        seconds: 10,
        paid: U256::ZERO,
        signature: [0; 65],
    };
    u.signature = key.sign_digest(eip712::usage_digest(&u, d));
    Message::Usage(u)
}

pub fn consent(d: &Eip712Domain, id: B256, amount: U256, key: &SecretKey) -> Message {
    Message::CloseConsent(SignedCloseConsent {
        channel_id: id,
        amount,
        signature: key.sign_digest(eip712::close_consent_digest(id, amount, d)),
    })
}

pub fn voucher(d: &Eip712Domain, id: B256, amount: U256, key: &SecretKey) -> Message {
    Message::Voucher(SignedVoucher {
        channel_id: id,
        amount,
        signature: key.sign_digest(eip712::voucher_digest(id, amount, d)),
    })
}

pub fn resume(d: &Eip712Domain, id: B256, run: u32, key: &SecretKey) -> Message {
    let buyer_key = [7u8; 32];
    let digest = eip712::resume_digest(id, run, buyer_key, None, d);
    Message::Resume(Resume {
        channel_id: id,
        run,
        buyer_key,
        wireguard_key: None,
        signature: key.sign_digest(digest),
    })
}

/// What a flood of quote requests got back.
#[derive(Debug, Default, Clone, Copy)]
pub struct FloodTally {
    /// Quotes the seller signed.
    pub quotes: u64,
    /// Refusals (over a cap, rate limited).
    pub refusals: u64,
    /// Requests that failed (no connection, timeout, banned).
    pub failures: u64,
}

impl Attacker {
    /// Floods the seller with quote requests from `peers` fresh identities for `length`; returns
    /// at once: [`Flood::wait`] collects the tallies.
    pub fn flood_quotes(&self, peers: usize, length: std::time::Duration) -> Flood {
        let nodes: Vec<P2pHandle> = (0..peers).map(|_| self.node()).collect();
        let (peer, addr) = self.seller.clone();
        let tasks = nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                let addr = addr.clone();
                self.rt
                    .spawn(async move { flood_one(node, peer, addr, i as u8, length).await })
            })
            .collect();
        Flood { tasks }
    }
}

/// A flood under way.
pub struct Flood {
    tasks: Vec<tokio::task::JoinHandle<FloodTally>>,
}

impl Flood {
    /// Waits for every flooding node to finish; the sum of their tallies.
    pub fn wait(self, rt: &NsRuntime) -> FloodTally {
        let mut sum = FloodTally::default();
        for t in self.tasks {
            let one = rt.block_on(async move { t.await.expect("flood task") });
            sum.quotes += one.quotes;
            sum.refusals += one.refusals;
            sum.failures += one.failures;
        }
        sum
    }
}

async fn flood_one(
    node: P2pHandle,
    seller: PeerId,
    addr: Multiaddr,
    tag: u8,
    length: std::time::Duration,
) -> FloodTally {
    let _ = node.dial(addr).await;
    let end = tokio::time::Instant::now() + length;
    let mut tally = FloodTally::default();
    let mut n = 0u64;
    while tokio::time::Instant::now() < end {
        n += 1;
        let mut buyer = [0u8; 20];
        buyer[..8].copy_from_slice(&n.to_be_bytes());
        buyer[19] = tag;
        let req = Message::QuoteRequest(QuoteRequest {
            buyer: Address::from(buyer),
            service: Service::Shadowsocks,
            wanted: None,
            buyer_key: [tag; 32],
            wireguard_key: None,
        });
        match node.request(seller, &req).await {
            Ok(Some(Message::Quote(_))) => tally.quotes += 1,
            Ok(_) => tally.refusals += 1,
            Err(_) => {
                tally.failures += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    tally
}
