//! Hostile load on real libp2p nodes on loopback: the per-IP connection limit, and a flood of
//! quote requests that must neither delay a session message nor go unanswered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use libp2p::multiaddr::Protocol;
use wayfare_p2p::{
    BUSY_DETAIL, Keypair, MemoryRegistry, Multiaddr, P2pConfig, P2pEvent, P2pEvents, P2pHandle,
    P2pNode, PeerId,
};
use wayfare_proto::Service;
use wayfare_proto::eip712::domain;
use wayfare_proto::messages::{Message, QuoteRequest, Refusal, RefusalReason, SignedVoucher};

const STEP: Duration = Duration::from_secs(20);

fn config(listen: &[&str]) -> P2pConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut c = P2pConfig::new(
        Keypair::generate_ed25519(),
        domain(31337, Address::repeat_byte(0x4d)),
    );
    c.listen = listen.iter().map(|a| a.parse().unwrap()).collect();
    c.reachable = true;
    c.request_timeout = Duration::from_secs(10);
    c
}

/// Starts a node and waits for its listen addresses (each with `/p2p/<id>`).
async fn start(config: P2pConfig) -> (P2pHandle, P2pEvents, Vec<Multiaddr>) {
    let n = config.listen.len();
    let (handle, mut events) = P2pNode::spawn(config, Arc::new(MemoryRegistry::new())).unwrap();
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
    (handle, events, addrs)
}

fn quic(addrs: &[Multiaddr]) -> Multiaddr {
    let is_quic = |a: &&Multiaddr| a.iter().any(|p| matches!(p, Protocol::QuicV1));
    addrs.iter().find(is_quic).cloned().unwrap()
}

fn ping() -> Message {
    Message::Refusal(Refusal {
        reason: RefusalReason::BadRequest,
        detail: "ping".into(),
    })
}

/// Acknowledges every request, forever.
fn ack_all(mut events: P2pEvents) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let P2pEvent::Request { responder, .. } = ev {
                let _ = responder.ack();
            }
        }
    });
}

async fn ask(from: &P2pHandle, to: PeerId, addr: &Multiaddr) -> Result<(), String> {
    from.add_address(to, addr.clone()).unwrap();
    match tokio::time::timeout(STEP, from.request(to, &ping())).await {
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(m))) => Err(format!("unexpected answer {m:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_per_ip_limit_refuses_the_next_connection_but_not_another_ip() {
    let mut tc = config(&["/ip4/127.0.0.1/udp/0/quic-v1"]);
    tc.connection_limits.max_per_ip = 2;
    let (target, events, addrs) = start(tc).await;
    ack_all(events);
    let target_addr = quic(&addrs);

    // Two connections from 127.0.0.1 get in; the third is denied.
    let mut keep = Vec::new();
    for _ in 0..2 {
        let (h, ev, _) = start(config(&["/ip4/127.0.0.1/udp/0/quic-v1"])).await;
        ask(&h, target.peer_id(), &target_addr).await.unwrap();
        keep.push((h, ev));
    }
    let (third, _third_events, _) = start(config(&["/ip4/127.0.0.1/udp/0/quic-v1"])).await;
    let denied = ask(&third, target.peer_id(), &target_addr).await;
    assert!(denied.is_err(), "the third connection from one IP got in");
    let per_ip = target.stats().connections_denied()[0];
    assert_eq!(per_ip.0, "per_ip");
    assert!(per_ip.1 >= 1, "the denial is counted");

    // A peer from another address (QUIC dials from its listening socket: 127.0.0.2) gets in.
    let (other, _other_events, _) = start(config(&["/ip4/127.0.0.2/udp/0/quic-v1"])).await;
    ask(&other, target.peer_id(), &target_addr).await.unwrap();
    drop(keep);
}

fn quote_request(i: u8) -> Message {
    Message::QuoteRequest(QuoteRequest {
        buyer: Address::repeat_byte(i),
        service: Service::Shadowsocks,
        wanted: None,
        buyer_key: [i; 32],
        wireguard_key: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_quote_flood_from_many_peers_neither_delays_a_voucher_nor_goes_unanswered() {
    const FLOODERS: usize = 20;
    const PER_FLOODER: usize = 30;
    let mut sc = config(&["/ip4/127.0.0.1/tcp/0"]);
    sc.queues.quotes = 8;
    let (seller, mut events, addrs) = start(sc).await;
    let seller_id = seller.peer_id();
    let seller_addr = addrs[0].clone();

    // The application as `Node::run` takes it: sessions first; each quote costs it 20 ms.
    let served = tokio::spawn(async move {
        let mut quotes = 0usize;
        loop {
            tokio::select! {
                biased;
                Some(r) = events.sessions.recv() => {
                    let Message::Voucher(v) = &r.message else { panic!("{:?}", r.message) };
                    let _ = r.responder.respond(&Message::Voucher(*v));
                }
                Some(r) = events.quotes.recv() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    quotes += 1;
                    let _ = r.responder.ack();
                }
                Some(_) = events.events.recv() => {}
                else => return quotes,
            }
        }
    });

    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        let (h, ev, _) = start(config(&["/ip4/127.0.0.1/tcp/0"])).await;
        h.add_address(seller_id, seller_addr.clone()).unwrap();
        flooders.push((h, ev));
    }
    let (buyer, _buyer_events, _) = start(config(&["/ip4/127.0.0.1/tcp/0"])).await;
    buyer.add_address(seller_id, seller_addr.clone()).unwrap();
    let voucher = Message::Voucher(SignedVoucher {
        channel_id: B256::repeat_byte(0xc4),
        amount: U256::from(7u64),
        signature: [0x1c; 65],
    });
    // Connected before the flood (a buyer with an open channel is).
    buyer.request(seller_id, &voucher).await.unwrap();

    let mut tasks = Vec::new();
    for (h, _) in &flooders {
        for i in 0..PER_FLOODER {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.request(seller_id, &quote_request(i as u8)).await
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let answer = buyer.request(seller_id, &voucher).await.unwrap();
        worst = worst.max(t.elapsed());
        assert_eq!(answer, Some(voucher.clone()), "the voucher was served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "FIGURE voucher during a flood of {} quote requests: worst {worst:?}",
        FLOODERS * PER_FLOODER
    );
    assert!(worst < Duration::from_secs(1), "voucher delayed {worst:?}");

    // Every flood request got an answer: served, or refused as busy at once. Never silence.
    let (mut acked, mut busy) = (0usize, 0usize);
    for t in tasks {
        match t.await.unwrap() {
            Ok(None) => acked += 1,
            Ok(Some(Message::Refusal(r)))
                if r.reason == RefusalReason::TooManyPending && r.detail == BUSY_DETAIL =>
            {
                busy += 1
            }
            other => panic!("a flood request got {other:?}"),
        }
    }
    assert_eq!(acked + busy, FLOODERS * PER_FLOODER);
    assert!(busy > 0, "the short quote queue filled");
    let dropped = seller.stats().dropped();
    assert_eq!(dropped[1], ("quote", busy as u64));
    assert_eq!(dropped[0], ("session", 0));
    drop(flooders);
    drop(buyer);
    drop(seller);
    let quotes = tokio::time::timeout(STEP, served).await.unwrap().unwrap();
    assert_eq!(quotes, acked);
}
