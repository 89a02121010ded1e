//! The shadowsocks exit's default denials against real services (`cargo test leak_`), its UDP
//! replay window and its cap on UDP associations per session, in the namespace lab.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use common::{targets::*, *};
use shadowsocks::{
    config::ServerType,
    context::Context,
    crypto::CipherKind,
    relay::{
        Address,
        udprelay::{
            crypto_io::{decrypt_server_payload, encrypt_client_payload},
            options::UdpSocketControlData,
        },
    },
};
use tokio::net::UdpSocket;
use wayfare_tunnel::{
    ExitPolicy,
    lab::{BUYER_IP, INTERNET_IP, NsRuntime, SELLER_IP},
    shadowsocks::{Buyer, BuyerConfig, ClientConfig, Seller, SellerConfig, SessionKey},
};

fn lab_policy() -> ExitPolicy {
    ExitPolicy::with_allowed(["198.18.0.0/15".parse().expect("cidr")])
}

fn start_buyer(rt: &NsRuntime, server: ClientConfig) -> Buyer {
    rt.block_on(async move {
        let mut cfg = BuyerConfig::new(server);
        cfg.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Buyer::start(cfg).await
    })
    .expect("buyer starts")
}

#[test]
fn leak_exit_shadowsocks_refuses_every_internal_listener_it_can_reach_itself() {
    let Some(lab) = lab_or_skip("leak_exit_shadowsocks_refuses_every_internal_listener") else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    let mut targets = plant(&lab, &seller_rt, &inet);
    // Each service is live: the seller itself reaches it over TCP and UDP.
    for t in &targets {
        let dst = SocketAddr::new(t.ip, TARGET_PORT);
        let (tcp, udp) =
            seller_rt.block_on(async move { (tcp_banner(dst).await, udp_echoes(dst).await) });
        assert_eq!(
            tcp.as_deref(),
            Some(TARGET_BANNER),
            "{} ({dst}) not served",
            t.what
        );
        assert!(udp, "{} ({dst}) does not echo UDP from the seller", t.what);
    }
    // The lab's allow-list (198.18.0.0/15) covers the seller's own 198.18 addresses: it must
    // not open them.
    let seller = seller_rt
        .block_on(async {
            let mut cfg = SellerConfig::new(SocketAddr::from((SELLER_IP, 0)));
            cfg.exit_policy = lab_policy();
            Seller::bind(cfg).await
        })
        .expect("seller binds");
    targets.push(plant_late(&lab, &seller_rt));
    let late = SocketAddr::new(targets[targets.len() - 1].ip, TARGET_PORT);
    let served = seller_rt.block_on(async move { tcp_banner(late).await });
    assert_eq!(
        served.as_deref(),
        Some(TARGET_BANNER),
        "late address not served"
    );
    let buyer = start_buyer(&buyer_rt, seller.add_session("deny").expect("add"));
    let p = buyer.local_addr();
    let control = SocketAddr::from((INTERNET_IP, TARGET_PORT));
    let (tcp, udp) = buyer_rt.block_on(async move {
        (
            socks_banner(p, control).await,
            socks_udp_echoes(p, control).await,
        )
    });
    assert_eq!(
        tcp, TARGET_BANNER,
        "the allowed internet host is not reachable"
    );
    assert!(
        udp,
        "the allowed internet host does not echo UDP through the exit"
    );
    let mut all: Vec<(SocketAddr, &str)> = targets
        .iter()
        .map(|t| (SocketAddr::new(t.ip, TARGET_PORT), t.what))
        .collect();
    // An IPv4-mapped IPv6 address is judged by its IPv4 address.
    all.push((
        "[::ffff:127.0.0.1]:2600".parse().expect("sa"),
        "mapped loopback",
    ));
    all.push((
        format!("[::ffff:{SELLER_IP}]:2600").parse().expect("sa"),
        "mapped own address",
    ));
    for (dst, what) in all {
        let (tcp, udp) = buyer_rt
            .block_on(async move { (socks_banner(p, dst).await, socks_udp_echoes(p, dst).await) });
        assert!(
            tcp.is_empty(),
            "{what} ({dst}) reachable over TCP through the exit: {tcp:?}"
        );
        assert!(!udp, "{what} ({dst}) echoes UDP through the exit");
    }
}

/// An AEAD-2022 UDP datagram from a client session, as the buyer would send it.
fn client_packet(
    ctx: &Context,
    keys: (&SessionKey, &SessionKey),
    client_session_id: u64,
    packet_id: u64,
    dst: SocketAddr,
    payload: &[u8],
) -> Bytes {
    let (ipsk, upsk) = keys;
    let mut ctrl = UdpSocketControlData::default();
    ctrl.client_session_id = client_session_id;
    ctrl.packet_id = packet_id;
    let mut out = BytesMut::new();
    encrypt_client_payload(
        ctx,
        CipherKind::AEAD2022_BLAKE3_AES_256_GCM,
        upsk.as_bytes(),
        &Address::SocketAddress(dst),
        &ctrl,
        &[Bytes::copy_from_slice(ipsk.as_bytes())],
        payload,
        &mut out,
    );
    out.freeze()
}

/// Send `pkt` to the seller port and wait briefly for an answer that decrypts.
async fn answered(sock: &UdpSocket, port: SocketAddr, upsk: &SessionKey, pkt: &[u8]) -> bool {
    let ctx = Context::new(ServerType::Local);
    sock.send_to(pkt, port).await.expect("send");
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(800), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => decrypt_server_payload(
            &ctx,
            CipherKind::AEAD2022_BLAKE3_AES_256_GCM,
            upsk.as_bytes(),
            &mut buf[..n],
        )
        .is_ok(),
        _ => false,
    }
}

/// A counting UDP echo on the internet host.
fn counting_echo(rt: &NsRuntime, port: u16) -> Arc<AtomicUsize> {
    let seen = Arc::new(AtomicUsize::new(0));
    let u = rt
        .block_on(async move { UdpSocket::bind((INTERNET_IP, port)).await })
        .expect("bind echo");
    let s = seen.clone();
    rt.spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = u.recv_from(&mut buf).await {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = u.send_to(&buf[..n], from).await;
        }
    });
    seen
}

fn keyed_seller(rt: &NsRuntime, ipsk: &SessionKey, cap: usize) -> Seller {
    let ipsk = SessionKey::from_base64(&ipsk.to_base64()).expect("key");
    rt.block_on(async move {
        let mut cfg = SellerConfig::new(SocketAddr::from((SELLER_IP, 0)));
        cfg.exit_policy = lab_policy();
        cfg.identity_key = Some(ipsk);
        cfg.max_udp_assocs_per_session = cap;
        Seller::bind(cfg).await
    })
    .expect("seller binds")
}

fn copy(k: &SessionKey) -> SessionKey {
    SessionKey::from_base64(&k.to_base64()).expect("key")
}

#[test]
fn leak_exit_shadowsocks_udp_replayed_packet_is_dropped() {
    let Some(lab) = lab_or_skip("leak_exit_shadowsocks_udp_replayed_packet_is_dropped") else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(1).expect("buyer rt");
    let seen = counting_echo(&inet, 7007);
    let (ipsk, upsk) = (SessionKey::generate(), SessionKey::generate());
    let seller = keyed_seller(&seller_rt, &ipsk, 16);
    seller.add_session_with_key("r", copy(&upsk)).expect("add");
    let port = seller.local_addr();
    let echo = SocketAddr::from((INTERNET_IP, 7007));
    let ctx = Context::new(ServerType::Local);
    let sid = rand::random::<u64>();
    let p1 = client_packet(&ctx, (&ipsk, &upsk), sid, 1, echo, b"one");
    let p2 = client_packet(&ctx, (&ipsk, &upsk), sid, 2, echo, b"two");
    let far = client_packet(&ctx, (&ipsk, &upsk), sid, 5000, echo, b"far");
    let old = client_packet(&ctx, (&ipsk, &upsk), sid, 3, echo, b"old");
    let (first, replay, replay_elsewhere, second, jump, too_old) = buyer_rt.block_on(async move {
        let a = UdpSocket::bind((BUYER_IP, 0)).await.expect("udp");
        let b = UdpSocket::bind((BUYER_IP, 0)).await.expect("udp");
        (
            answered(&a, port, &upsk, &p1).await,
            answered(&a, port, &upsk, &p1).await,
            // The same datagram replayed from another address meets the same window.
            answered(&b, port, &upsk, &p1).await,
            answered(&a, port, &upsk, &p2).await,
            answered(&a, port, &upsk, &far).await,
            // Never seen, but more than the window (1024) behind the newest.
            answered(&a, port, &upsk, &old).await,
        )
    });
    assert!(first, "the first packet was not answered");
    assert!(!replay, "a replayed packet was answered");
    assert!(
        !replay_elsewhere,
        "a packet replayed from another address was answered"
    );
    assert!(second, "the next packet id was not answered");
    assert!(jump, "a packet id far ahead was not answered");
    assert!(!too_old, "a packet id older than the window was answered");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "the internet host saw a replay"
    );
}

#[test]
fn leak_exit_shadowsocks_udp_associations_are_capped_per_session() {
    let Some(lab) = lab_or_skip("leak_exit_shadowsocks_udp_associations_are_capped_per_session")
    else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(1).expect("buyer rt");
    let _seen = counting_echo(&inet, 7007);
    let (ipsk, a_key, b_key) = (
        SessionKey::generate(),
        SessionKey::generate(),
        SessionKey::generate(),
    );
    let seller = keyed_seller(&seller_rt, &ipsk, 3);
    seller
        .add_session_with_key("a", copy(&a_key))
        .expect("add a");
    seller
        .add_session_with_key("b", copy(&b_key))
        .expect("add b");
    let port = seller.local_addr();
    let echo = SocketAddr::from((INTERNET_IP, 7007));
    let ctx = Context::new(ServerType::Local);
    let (a_answers, b_answers, a_old_still) = buyer_rt.block_on(async move {
        let sock = UdpSocket::bind((BUYER_IP, 0)).await.expect("udp");
        let mut a_answers = Vec::new();
        // Five client sessions of session a: one association each.
        for sid in 1..=5u64 {
            let pkt = client_packet(&ctx, (&ipsk, &a_key), sid, 1, echo, b"a");
            a_answers.push(answered(&sock, port, &a_key, &pkt).await);
        }
        let pkt = client_packet(&ctx, (&ipsk, &b_key), 1, 1, echo, b"b");
        let b = answered(&sock, port, &b_key, &pkt).await;
        let pkt = client_packet(&ctx, (&ipsk, &a_key), 1, 2, echo, b"a again");
        let a_old = answered(&sock, port, &a_key, &pkt).await;
        (a_answers, b, a_old)
    });
    assert_eq!(
        a_answers,
        [true, true, true, false, false],
        "cap of 3 associations"
    );
    assert!(b_answers, "another session is not limited by a's cap");
    assert!(a_old_still, "an association under the cap stops working");
}
