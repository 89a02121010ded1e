//! In-process networks of real libp2p nodes on loopback.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256};
use libp2p::multiaddr::Protocol;
use tokio::sync::mpsc;
use wayfare_p2p::{
    Advertise, AnnouncementError, CheapestFirst, Keypair, MemoryRegistry, Multiaddr, OfferBook,
    OfferFilter, P2pConfig, P2pError, P2pEvent, P2pEvents, P2pHandle, P2pNode, PeerId,
    RelayServerConfig, sign_announcement,
};
use wayfare_proto::eip712::{Eip712Domain, Offer, domain};
use wayfare_proto::keys::SecretKey;
use wayfare_proto::messages::{
    Announcement, CloseReason, CloseRequest, Message, Opened, Quote, QuoteRequest, RefusalReason,
    Reveal, SealedReveal, SignedCloseConsent, SignedVoucher, Usage,
};
use wayfare_proto::{Service, ServiceSet, Terms};

const STEP: Duration = Duration::from_secs(20);

fn dom() -> Eip712Domain {
    domain(31337, Address::repeat_byte(0x4d))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn loopback_tcp() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().unwrap()
}

fn loopback_quic() -> Multiaddr {
    "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()
}

fn config(listen: Vec<Multiaddr>) -> P2pConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut c = P2pConfig::new(Keypair::generate_ed25519(), dom());
    c.listen = listen;
    c.reachable = true;
    c.gossip_heartbeat = Duration::from_millis(100);
    c.request_timeout = Duration::from_secs(10);
    c
}

struct TestNode {
    handle: P2pHandle,
    events: P2pEvents,
    /// Listen addresses, each with `/p2p/<id>`.
    addrs: Vec<Multiaddr>,
}

impl TestNode {
    fn id(&self) -> PeerId {
        self.handle.peer_id()
    }

    fn addr(&self, quic: bool) -> Multiaddr {
        self.addrs
            .iter()
            .find(|a| a.iter().any(|p| matches!(p, Protocol::QuicV1)) == quic)
            .cloned()
            .unwrap()
    }

    /// The next event matching `f`, within [`STEP`].
    async fn next<T>(&mut self, mut f: impl FnMut(P2pEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("timed out waiting for an event")
                .expect("node stopped");
            if let Some(t) = f(ev) {
                return t;
            }
        }
    }
}

async fn start(config: P2pConfig, registry: &Arc<MemoryRegistry>) -> TestNode {
    let n = config.listen.len();
    let (handle, mut events) = P2pNode::spawn(config, registry.clone()).unwrap();
    let mut addrs = Vec::new();
    while addrs.len() < n {
        let ev = tokio::time::timeout(STEP, events.recv())
            .await
            .unwrap()
            .unwrap();
        if let P2pEvent::Listening(a) = ev {
            addrs.push(a.with(Protocol::P2p(handle.peer_id())));
        }
    }
    TestNode {
        handle,
        events,
        addrs,
    }
}

/// Polls `f` until it is true, within [`STEP`].
async fn eventually<F: Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + STEP;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn terms() -> Terms {
    Terms {
        price_per_mib: 1_000,
        price_per_second: 10,
        seller_burn: 100,
        buyer_burn: 50,
        min_deposit: 1_000_000,
        payment_interval: 30,
    }
}

fn announcement(
    seller: Address,
    peer: PeerId,
    valid_until: u64,
    signer: &SecretKey,
) -> Announcement {
    let mut a = Announcement {
        seller,
        peer_id: peer.to_bytes(),
        services: ServiceSet::new(&[Service::WireGuard, Service::Shadowsocks]),
        terms: terms(),
        region: "eu-west".into(),
        capacity_bps: 100_000_000,
        exit_allow: Vec::new(),
        valid_until,
        signature: [0; 65],
    };
    sign_announcement(&mut a, signer, &dom());
    a
}

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes(&[b; 32]).unwrap()
}

/// Publishes, retrying while no peer has subscribed yet.
async fn publish(node: &P2pHandle, a: &Announcement) {
    let deadline = Instant::now() + STEP;
    loop {
        match node.publish(a).await {
            Ok(()) => return,
            Err(P2pError::NoPeers) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publish: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcement_reaches_twenty_nodes() {
    let registry = Arc::new(MemoryRegistry::new());
    let (seller, signer) = (Address::repeat_byte(0x51), key(0x11));
    registry.register(seller, signer.address());

    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..20 {
        let mut c = config(vec![loopback_tcp(), loopback_quic()]);
        if i > 0 {
            // Alternate transports: odd nodes reach the network over QUIC.
            c.bootstrap.push(nodes[0].addr(i % 2 == 1));
        }
        if i > 1 {
            c.bootstrap.push(nodes[i - 1].addr(i % 2 == 1));
            c.bootstrap.push(nodes[i / 2].addr(false));
        }
        if i == 1 {
            // An unreachable bootstrap peer: logged, skipped.
            let ghost = Keypair::generate_ed25519().public().to_peer_id();
            c.bootstrap
                .push(format!("/ip4/127.0.0.1/tcp/1/p2p/{ghost}").parse().unwrap());
        }
        nodes.push(start(c, &registry).await);
    }
    for n in &nodes {
        eventually("every node has a topic peer", || async {
            !n.handle.topic_peers().await.unwrap().is_empty()
        })
        .await;
    }
    // A few heartbeats for the meshes to form.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let publisher = nodes.pop().unwrap();
    let a = announcement(seller, publisher.id(), now() + 600, &signer);
    let t0 = Instant::now();
    publish(&publisher.handle, &a).await;
    let mut waits = Vec::new();
    for mut n in nodes {
        let want = a.clone();
        waits.push(tokio::spawn(async move {
            let got = n
                .next(|ev| match ev {
                    P2pEvent::Announcement { announcement, .. } => Some(announcement),
                    _ => None,
                })
                .await;
            assert_eq!(got, want);
            (t0.elapsed(), n)
        }));
    }
    let mut times = Vec::new();
    let mut kept = Vec::new();
    for w in waits {
        let (t, n) = w.await.unwrap();
        times.push(t);
        kept.push(n);
    }
    times.sort();
    println!(
        "FIGURE announcement reached {}/19 nodes: median {:?}, last {:?} after publish (20 nodes, TCP+QUIC loopback, heartbeat 100 ms)",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
    assert_eq!(times.len(), 19);
    drop(kept);
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unregistered_and_expired_announcements_are_dropped() {
    let registry = Arc::new(MemoryRegistry::new());
    let (seller, signer) = (Address::repeat_byte(0x51), key(0x11));
    registry.register(seller, signer.address());

    let mut buyer = start(config(vec![loopback_tcp()]), &registry).await;
    let mut c = config(vec![loopback_tcp()]);
    c.bootstrap.push(buyer.addr(false));
    let evil = start(c, &registry).await;
    let mut c = config(vec![loopback_tcp()]);
    c.bootstrap.push(buyer.addr(false));
    let honest = start(c, &registry).await;
    eventually("buyer sees both on the topic", || async {
        buyer.handle.topic_peers().await.unwrap().len() == 2
    })
    .await;

    // Forged: a registered seller, signed by someone else.
    let forged = announcement(seller, evil.id(), now() + 600, &key(0x66));
    // Unregistered: a self-signed seller the registry doesn't know.
    let stranger = key(0x77);
    let unregistered = announcement(stranger.address(), evil.id(), now() + 600, &stranger);
    // Expired: properly signed, but stale.
    let expired = announcement(seller, evil.id(), now() - 1, &signer);
    for a in [&forged, &unregistered, &expired] {
        publish(&evil.handle, a).await;
    }
    let mut reasons = Vec::new();
    while reasons.len() < 3 {
        let (from, reason) = buyer
            .next(|ev| match ev {
                P2pEvent::AnnouncementRejected { from, reason } => Some((from, reason)),
                P2pEvent::Announcement { announcement, .. } => {
                    panic!("invalid announcement accepted: {announcement:?}")
                }
                _ => None,
            })
            .await;
        assert_eq!(from, evil.id());
        reasons.push(reason);
    }
    assert!(reasons.contains(&AnnouncementError::BadSignature(seller)));
    assert!(reasons.contains(&AnnouncementError::Unregistered(stranger.address())));
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, AnnouncementError::Expired { .. }))
    );
    let score = buyer.handle.peer_score(evil.id()).await.unwrap().unwrap();
    assert!(score < 0.0, "the forger is penalised (score {score})");

    // The honest seller still gets through, and lands in the offer book.
    let good = announcement(seller, honest.id(), now() + 600, &signer);
    publish(&honest.handle, &good).await;
    let (peer, got) = buyer
        .next(|ev| match ev {
            P2pEvent::Announcement { peer, announcement } => Some((peer, announcement)),
            _ => None,
        })
        .await;
    assert_eq!((peer, &got), (honest.id(), &good));
    let mut book = OfferBook::new();
    assert!(book.insert(got, now()));
    let filter = OfferFilter {
        service: Some(Service::WireGuard),
        region: Some("eu-west".into()),
        ..OfferFilter::default()
    };
    assert_eq!(book.query(&filter, now(), &CheapestFirst).len(), 1);
    let honest_score = buyer.handle.peer_score(honest.id()).await.unwrap().unwrap();
    assert!(honest_score >= 0.0);
}

/// Answers the seller's side of a negotiation until the events end.
fn serve_seller(
    mut seller: TestNode,
    seller_account: Address,
    signer: SecretKey,
) -> tokio::task::JoinHandle<TestNode> {
    tokio::spawn(async move {
        while let Some(ev) = seller.events.recv().await {
            let P2pEvent::Request {
                message, responder, ..
            } = ev
            else {
                continue;
            };
            let r = match message {
                Message::QuoteRequest(q) => {
                    let t = q.wanted.unwrap_or_else(terms);
                    let offer = Offer {
                        seller: seller_account,
                        buyer: q.buyer,
                        service: q.service.code(),
                        pricePerMiB: t.price_per_mib,
                        pricePerSecond: t.price_per_second,
                        sellerBurn: t.seller_burn,
                        buyerBurn: t.buyer_burn,
                        minDeposit: t.min_deposit,
                        paymentInterval: t.payment_interval,
                        nonce: 1,
                        expiry: now() + 300,
                    };
                    let signature =
                        signer.sign_digest(wayfare_proto::eip712::offer_digest(&offer, &dom()));
                    responder.respond(&Message::Quote(Quote { offer, signature }))
                }
                Message::Voucher(v) => responder.respond(&Message::Usage(Usage {
                    channel_id: v.channel_id,
                    run: 0,
                    bytes: 1 << 20,
                    seconds: 30,
                    paid: v.amount,
                    signature: [0x1b; 65],
                })),
                Message::CloseRequest(c) => {
                    responder.respond(&Message::CloseConsent(SignedCloseConsent {
                        channel_id: c.channel_id,
                        amount: U256::from(1_000u64),
                        signature: [0x1b; 65],
                    }))
                }
                _ => responder.ack(),
            };
            r.unwrap();
            if seller.events.is_closed() {
                break;
            }
        }
        seller
    })
}

fn quote_request(buyer: Address) -> Message {
    Message::QuoteRequest(QuoteRequest {
        buyer,
        service: Service::Shadowsocks,
        wanted: None,
        buyer_key: [7; 32],
        wireguard_key: None,
    })
}

fn tcp_udp_ports(addrs: &[Multiaddr]) -> HashSet<u16> {
    addrs
        .iter()
        .flat_map(|a| a.iter())
        .filter_map(|p| match p {
            Protocol::Tcp(port) | Protocol::Udp(port) => Some(port),
            _ => None,
        })
        .collect()
}

fn leaks(addrs: &[Multiaddr], ports: &HashSet<u16>) -> Vec<Multiaddr> {
    addrs
        .iter()
        .filter(|a| !tcp_udp_ports(std::slice::from_ref(a)).is_disjoint(ports))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyer_negotiates_through_a_relay_found_in_the_dht() {
    relayed_negotiation(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyer_negotiates_through_a_configured_relay() {
    relayed_negotiation(false).await;
}

/// A seller that advertises only a relay, a buyer that reaches it only through that relay:
/// found as the seller's circuit record in the DHT (`via_dht`), or as one of the buyer's own
/// configured relays.
async fn relayed_negotiation(via_dht: bool) {
    let registry = Arc::new(MemoryRegistry::new());
    let (seller_account, signer) = (Address::repeat_byte(0x51), key(0x11));
    registry.register(seller_account, signer.address());

    let mut rc = config(vec![loopback_tcp()]);
    rc.relay_server = Some(RelayServerConfig::default());
    let mut relay = start(rc, &registry).await;
    let relay_addr = relay.addr(false);

    // The seller listens on loopback (its "own" addresses) but advertises only the relay.
    let mut sc = config(vec![loopback_tcp(), loopback_quic()]);
    sc.advertise = Advertise::Relay;
    sc.relays.push(relay_addr.clone());
    let mut seller = start(sc, &registry).await;
    let seller_addrs = seller.addrs.clone();
    let seller_ports = tcp_udp_ports(&seller_addrs);
    seller
        .next(|ev| match ev {
            P2pEvent::RelayReservation { relay: r } => Some(r),
            _ => None,
        })
        .await;

    // The buyer knows only the relay (as a plain bootstrap peer when going through the DHT).
    let mut bc = config(vec![loopback_tcp()]);
    if via_dht {
        bc.bootstrap.push(relay_addr.clone());
    } else {
        bc.relays.push(relay_addr.clone());
    }
    let mut buyer = start(bc, &registry).await;
    eventually("seller and buyer meet the relay on the topic", || async {
        !seller.handle.topic_peers().await.unwrap().is_empty()
            && !buyer.handle.topic_peers().await.unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let a = announcement(seller_account, seller.id(), now() + 600, &signer);
    publish(&seller.handle, &a).await;
    let mut identified = Vec::new();
    let (seller_peer, got) = buyer
        .next(|ev| match ev {
            P2pEvent::Announcement { peer, announcement } => Some((peer, announcement)),
            P2pEvent::Identified { peer, listen_addrs } => {
                identified.push((peer, listen_addrs));
                None
            }
            _ => None,
        })
        .await;
    assert_eq!(seller_peer, seller.id());
    assert!(
        !buyer
            .handle
            .connected_peers()
            .await
            .unwrap()
            .contains(&seller.id())
    );

    let seller_id = seller.id();
    let seller_handle = seller.handle.clone();
    let seller_probe = seller.handle.clone();
    // Drain the relay's events in the background, keeping what it learned by identify.
    let relay_task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_secs(3), relay.events.recv()).await
        {
            if let P2pEvent::Identified { peer, listen_addrs } = ev {
                seen.push((peer, listen_addrs));
            }
        }
        (relay, seen)
    });
    let seller_task = serve_seller(seller, seller_account, signer.clone());

    // Negotiate and run a session's messages.
    let buyer_account = Address::repeat_byte(0xb0);
    let t0 = Instant::now();
    let Some(Message::Quote(quote)) = buyer
        .handle
        .request(seller_id, &quote_request(buyer_account))
        .await
        .unwrap()
    else {
        panic!("expected a quote");
    };
    let quote_time = t0.elapsed();
    let paths = buyer.handle.connection_addrs(seller_id).await.unwrap();
    assert!(!paths.is_empty());
    assert!(
        paths
            .iter()
            .all(|a| a.iter().any(|p| p == Protocol::P2pCircuit)),
        "buyer reaches the seller only through the relay: {paths:?}"
    );
    assert_eq!(quote.offer.buyer, buyer_account);
    assert_eq!(quote.offer.seller, seller_account);
    let channel_id = B256::repeat_byte(0xcc);
    let opened = Message::Opened(Opened {
        channel_id,
        tx_hash: B256::repeat_byte(0xdd),
    });
    assert_eq!(
        buyer.handle.request(seller_id, &opened).await.unwrap(),
        None
    );
    // The seller pushes the (sealed) reveal to the buyer over the same relayed path.
    let reveal = Message::Reveal(Reveal {
        channel_id,
        sealed: SealedReveal {
            encapped_key: [3; 32],
            ciphertext: vec![9; 48],
        },
    });
    let buyer_id = buyer.id();
    let reveal_req = tokio::spawn({
        let reveal = reveal.clone();
        async move { seller_handle.request(buyer_id, &reveal).await }
    });
    let got_reveal = buyer
        .next(|ev| match ev {
            P2pEvent::Request {
                message, responder, ..
            } => {
                responder.ack().unwrap();
                Some(message)
            }
            P2pEvent::Identified { peer, listen_addrs } => {
                identified.push((peer, listen_addrs));
                None
            }
            _ => None,
        })
        .await;
    assert_eq!(got_reveal, reveal);
    assert_eq!(reveal_req.await.unwrap().unwrap(), None);
    let voucher = Message::Voucher(SignedVoucher {
        channel_id,
        amount: U256::from(500u64),
        signature: [0x1c; 65],
    });
    let Some(Message::Usage(usage)) = buyer.handle.request(seller_id, &voucher).await.unwrap()
    else {
        panic!("expected usage");
    };
    assert_eq!(usage.paid, U256::from(500u64));
    let close = Message::CloseRequest(CloseRequest {
        channel_id,
        run: 0,
        reason: CloseReason::BuyerDone,
        signature: [0x1b; 65],
    });
    assert!(matches!(
        buyer.handle.request(seller_id, &close).await.unwrap(),
        Some(Message::CloseConsent(_))
    ));
    let session_time = t0.elapsed();
    println!(
        "FIGURE relayed negotiation (relay from {}): QuoteRequest->Quote {quote_time:?} (incl. circuit setup), whole exchange (quote, opened, reveal, voucher/usage, close) {session_time:?}",
        if via_dht { "DHT" } else { "config" }
    );

    // Privacy: the seller's own addresses appear nowhere the buyer or the relay could see them.
    while let Ok(ev) = buyer.events.try_recv() {
        if let P2pEvent::Identified { peer, listen_addrs } = ev {
            identified.push((peer, listen_addrs));
        }
    }
    let (relay, relay_identified) = relay_task.await.unwrap();
    let from_seller: Vec<_> = identified
        .iter()
        .chain(&relay_identified)
        .filter(|(p, _)| *p == seller_id)
        .collect();
    assert!(
        !from_seller.is_empty(),
        "the buyer identified the seller over the relay"
    );
    for (_, addrs) in &from_seller {
        assert!(
            leaks(addrs, &seller_ports).is_empty(),
            "identify leaked {addrs:?}"
        );
        for a in addrs {
            assert!(
                a.iter().any(|p| p == Protocol::P2pCircuit),
                "seller advertises only circuit addresses, got {a}"
            );
        }
    }
    // The seller never dialed anyone but its relay: every connection it has is to the relay or
    // a relayed one.
    for peer in seller_probe.connected_peers().await.unwrap() {
        for a in seller_probe.connection_addrs(peer).await.unwrap() {
            assert!(
                peer == relay.id() || a.iter().any(|p| p == Protocol::P2pCircuit),
                "the seller has a direct connection to {peer} at {a}"
            );
        }
    }
    for node in [&buyer.handle, &relay.handle] {
        let kad = node.kad_addresses().await.unwrap();
        let all: Vec<Multiaddr> = kad.values().flatten().cloned().collect();
        assert!(leaks(&all, &seller_ports).is_empty(), "DHT holds {all:?}");
        assert!(
            !kad.contains_key(&seller_id),
            "a relay-only seller is not a DHT server"
        );
    }
    let record = buyer.handle.find_circuit_addrs(seller_id).await.unwrap();
    assert!(
        !record.is_empty(),
        "the seller's circuit record is in the DHT"
    );
    assert!(
        leaks(&record, &seller_ports).is_empty(),
        "DHT record holds {record:?}"
    );
    let mut wire = Message::Announcement(got).encode();
    wire.extend(Message::Quote(quote).encode());
    for a in &seller_addrs {
        let ip_port = a.to_string();
        assert!(
            !wire
                .windows(a.to_vec().len())
                .any(|w| w == a.to_vec().as_slice())
        );
        assert!(!String::from_utf8_lossy(&wire).contains(&ip_port));
    }
    drop(buyer);
    drop(relay);
    seller_task.abort();
    let _ = seller_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_an_error_reply_and_the_node_keeps_serving() {
    let registry = Arc::new(MemoryRegistry::new());
    let (seller_account, signer) = (Address::repeat_byte(0x51), key(0x11));
    let mut sc = config(vec![loopback_tcp()]);
    sc.strikes_before_ban = 4;
    let mut seller = start(sc, &registry).await;
    let seller_id = seller.id();
    let seller_addr = seller.addr(false);
    let attacker = start(config(vec![loopback_tcp()]), &registry).await;
    let buyer = start(config(vec![loopback_tcp()]), &registry).await;
    attacker
        .handle
        .add_address(seller_id, seller_addr.clone())
        .unwrap();
    buyer.handle.add_address(seller_id, seller_addr).unwrap();

    // Watch penalties while serving.
    let (pen_tx, mut pen_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let mut events = std::mem::replace(&mut seller.events.events, ev_rx);
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                P2pEvent::PeerPenalised { peer, banned, .. } => {
                    let _ = pen_tx.send((peer, banned));
                }
                other => {
                    if ev_tx.send(other).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let seller_task = serve_seller(seller, seller_account, signer);

    // Garbage: an error reply (Refusal BadRequest), a strike.
    for garbage in [vec![0xff, 0x00, 0x13], Vec::new(), vec![1; 100]] {
        let r = attacker
            .handle
            .request_raw(seller_id, garbage)
            .await
            .unwrap();
        let Some(Message::Refusal(refusal)) = r else {
            panic!("expected a refusal, got {r:?}");
        };
        assert_eq!(refusal.reason, RefusalReason::BadRequest);
        assert!(
            refusal.detail.starts_with("malformed request"),
            "{}",
            refusal.detail
        );
    }
    // The fourth blocks it (its reply may or may not make it out before the disconnect).
    let _ = attacker.handle.request_raw(seller_id, vec![0xee; 7]).await;
    let mut banned = false;
    while let Ok(Some((peer, b))) = tokio::time::timeout(STEP, pen_rx.recv()).await {
        assert_eq!(peer, attacker.handle.peer_id());
        if b {
            banned = true;
            break;
        }
    }
    assert!(banned, "the fourth strike blocks the attacker");
    // Blocked: further requests fail.
    assert!(
        attacker
            .handle
            .request(seller_id, &quote_request(Address::ZERO))
            .await
            .is_err()
    );
    // Oversized bytes are refused before anything is sent.
    assert!(
        buyer
            .handle
            .request_raw(seller_id, vec![0; 65 * 1024 + 1])
            .await
            .is_err()
    );

    // Meanwhile the seller keeps serving others.
    let r = buyer
        .handle
        .request(seller_id, &quote_request(Address::repeat_byte(0xb0)))
        .await
        .unwrap();
    assert!(matches!(r, Some(Message::Quote(_))), "{r:?}");
    seller_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_key_file_gives_a_stable_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p2p.key");
    let a = wayfare_p2p::load_or_create_keypair(&path).unwrap();
    let b = wayfare_p2p::load_or_create_keypair(&path).unwrap();
    let registry = Arc::new(MemoryRegistry::new());
    let mut c = config(vec![loopback_tcp()]);
    c.keypair = a.clone();
    let n = start(c, &registry).await;
    assert_eq!(n.id(), b.public().to_peer_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_floods_are_rate_limited_and_the_flooder_blocked() {
    let registry = Arc::new(MemoryRegistry::new());
    let (seller_account, signer) = (Address::repeat_byte(0x51), key(0x11));
    let mut sc = config(vec![loopback_tcp()]);
    sc.request_rate = (1, 5);
    sc.strikes_before_ban = 3;
    let seller = start(sc, &registry).await;
    let seller_id = seller.id();
    let seller_addr = seller.addr(false);
    let flooder = start(config(vec![loopback_tcp()]), &registry).await;
    let buyer = start(config(vec![loopback_tcp()]), &registry).await;
    flooder
        .handle
        .add_address(seller_id, seller_addr.clone())
        .unwrap();
    buyer.handle.add_address(seller_id, seller_addr).unwrap();
    let seller_task = serve_seller(seller, seller_account, signer);

    let (mut served, mut limited, mut failed) = (0, 0, 0);
    for _ in 0..20 {
        match flooder
            .handle
            .request(seller_id, &quote_request(Address::ZERO))
            .await
        {
            Ok(Some(Message::Quote(_))) => served += 1,
            Ok(Some(Message::Refusal(r))) => {
                assert_eq!(r.reason, RefusalReason::Unavailable);
                limited += 1;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => failed += 1,
        }
    }
    println!("flood of 20: {served} served, {limited} rate limited, {failed} failed (blocked)");
    assert!((5..=8).contains(&served), "the burst is served: {served}");
    assert!(limited >= 2, "then refused: {limited}");
    assert!(failed >= 5, "then blocked: {failed}");

    // Others are still served.
    let r = buyer
        .handle
        .request(seller_id, &quote_request(Address::repeat_byte(0xb0)))
        .await
        .unwrap();
    assert!(matches!(r, Some(Message::Quote(_))), "{r:?}");
    seller_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_relay_refuses_a_reservation_and_the_node_keeps_working() {
    let registry = Arc::new(MemoryRegistry::new());
    let mut rc = config(vec![loopback_tcp()]);
    rc.relay_server = Some(RelayServerConfig {
        max_reservations: 1,
        ..RelayServerConfig::default()
    });
    let relay = start(rc, &registry).await;
    let seller_config = || {
        let mut c = config(vec![loopback_tcp()]);
        c.advertise = Advertise::Relay;
        c.relays.push(relay.addr(false));
        c
    };
    let mut first = start(seller_config(), &registry).await;
    first
        .next(|ev| match ev {
            P2pEvent::RelayReservation { relay } => Some(relay),
            _ => None,
        })
        .await;
    let mut second = start(seller_config(), &registry).await;
    let got = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            if let Some(P2pEvent::RelayReservation { .. }) = second.events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(
        got.is_err(),
        "the full relay refused the second reservation"
    );

    // The refused node still works: a peer that knows its address reaches it directly.
    let (account, signer) = (Address::repeat_byte(0x52), key(0x12));
    let second_id = second.id();
    let second_addr = second.addr(false);
    let task = serve_seller(second, account, signer);
    let buyer = start(config(vec![loopback_tcp()]), &registry).await;
    buyer.handle.add_address(second_id, second_addr).unwrap();
    let r = buyer
        .handle
        .request(second_id, &quote_request(Address::repeat_byte(0xb0)))
        .await
        .unwrap();
    assert!(matches!(r, Some(Message::Quote(_))), "{r:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcement_floods_are_rate_limited_and_the_flooder_blocked() {
    let registry = Arc::new(MemoryRegistry::new());
    let (seller, signer) = (Address::repeat_byte(0x51), key(0x11));
    registry.register(seller, signer.address());
    let mut bc = config(vec![loopback_tcp()]);
    bc.gossip_rate = (1, 3);
    bc.strikes_before_ban = 3;
    let mut buyer = start(bc, &registry).await;
    let mut c = config(vec![loopback_tcp()]);
    c.bootstrap.push(buyer.addr(false));
    let flooder = start(c, &registry).await;
    eventually("the flooder is on the topic", || async {
        !buyer.handle.topic_peers().await.unwrap().is_empty()
    })
    .await;
    publish(
        &flooder.handle,
        &announcement(seller, flooder.id(), now() + 600, &signer),
    )
    .await;
    let flood = {
        let handle = flooder.handle.clone();
        let id = flooder.id();
        tokio::spawn(async move {
            for i in 1..200 {
                let a = announcement(seller, id, now() + 600 + i, &signer);
                // Once blocked, publishing fails for lack of peers: that's the point.
                if handle.publish(&a).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let (mut accepted, mut banned) = (0, false);
    while !banned {
        buyer
            .next(|ev| match ev {
                P2pEvent::Announcement { .. } => {
                    accepted += 1;
                    Some(())
                }
                P2pEvent::PeerPenalised {
                    peer, banned: b, ..
                } => {
                    assert_eq!(peer, flooder.id());
                    banned = b;
                    Some(())
                }
                _ => None,
            })
            .await;
    }
    assert!(
        (3..=5).contains(&accepted),
        "the burst gets through: {accepted}"
    );
    flood.abort();
    eventually("the flooder is disconnected", || async {
        !buyer
            .handle
            .connected_peers()
            .await
            .unwrap()
            .contains(&flooder.id())
    })
    .await;
}
