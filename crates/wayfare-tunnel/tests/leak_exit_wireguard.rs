//! The WireGuard exit's default denials against real services (`cargo test leak_`), and the
//! quarantine and conntrack flush of a released tunnel address, in the namespace lab.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    sync::Arc,
    time::Duration,
};

use common::{targets::*, *};
use wayfare_tunnel::{
    ExitPolicy,
    lab::{INTERNET_IP, NsRuntime, SELLER_IP},
    wireguard::{PrivateKey, WgBuyer, WgBuyerConfig, WgClientConfig, WgSeller, WgSellerConfig},
};

const WG_PORT: u16 = 51820;

fn start_seller(rt: &NsRuntime, quarantine: Duration) -> Arc<WgSeller> {
    start_seller_on(rt, quarantine, "wf-exit0", WG_PORT)
}

fn start_seller_on(rt: &NsRuntime, quarantine: Duration, tun: &str, port: u16) -> Arc<WgSeller> {
    let tun = tun.to_owned();
    rt.block_on(async move {
        let mut cfg = WgSellerConfig::new(port, SocketAddr::from((SELLER_IP, port)));
        cfg.tun_name = tun;
        cfg.exit_policy = ExitPolicy::with_allowed(["198.18.0.0/15".parse().expect("cidr")]);
        cfg.quarantine = quarantine;
        WgSeller::start(cfg).await.map(Arc::new)
    })
    .expect("seller starts")
}

fn plain_buyer(rt: &NsRuntime, client: WgClientConfig) -> WgBuyer {
    rt.block_on(async move {
        let mut cfg = WgBuyerConfig::new(client);
        cfg.kill_switch = false;
        cfg.resolv_conf = None;
        WgBuyer::connect(cfg).await
    })
    .expect("buyer connects")
}

#[test]
fn leak_exit_wireguard_refuses_every_internal_listener_it_can_reach_itself() {
    let Some(lab) = lab_or_skip("leak_exit_wireguard_refuses_every_internal_listener") else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    let mut targets = plant(&lab, &seller_rt, &inet);
    let seller = start_seller(&seller_rt, Duration::from_secs(60));
    targets.push(plant_late(&lab, &seller_rt));
    let gateway = seller.gateway();
    let mut denied: Vec<(IpAddr, &str)> = targets.iter().map(|t| (t.ip, t.what)).collect();
    denied.push((gateway.into(), "the seller's tunnel gateway"));
    // The tunnel address is served too, so every target is live from the seller itself.
    seller_rt.spawn(async move {
        let l = tokio::net::TcpListener::bind((gateway, TARGET_PORT))
            .await
            .expect("bind gw");
        while let Ok((mut s, _)) = l.accept().await {
            let _ = tokio::io::AsyncWriteExt::write_all(&mut s, TARGET_BANNER).await;
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    for (ip, what) in &denied {
        let dst = SocketAddr::new(*ip, TARGET_PORT);
        let tcp = seller_rt.block_on(async move { tcp_banner(dst).await });
        assert!(
            tcp.is_some_and(|b| b.starts_with(TARGET_BANNER)),
            "{what} ({dst}) not served"
        );
    }
    for t in &targets {
        let dst = SocketAddr::new(t.ip, TARGET_PORT);
        assert!(
            seller_rt.block_on(async move { udp_echoes(dst).await }),
            "{} ({dst}) does not echo UDP from the seller",
            t.what
        );
    }
    let s = seller.clone();
    let client = seller_rt
        .block_on(async move { s.add_session_generated("deny").await })
        .expect("session");
    let _buyer = plain_buyer(&buyer_rt, client);
    let control = SocketAddr::from((INTERNET_IP, TARGET_PORT));
    let (tcp, udp) =
        buyer_rt.block_on(async move { (tcp_banner(control).await, udp_echoes(control).await) });
    assert_eq!(
        tcp.as_deref(),
        Some(TARGET_BANNER),
        "the internet host is not reachable"
    );
    assert!(
        udp,
        "the internet host does not echo UDP through the tunnel"
    );
    for (ip, what) in denied {
        // The buyer shares a LAN with 198.18.1.1 in the lab, so that address is reached
        // directly, not through the tunnel: the shadowsocks test covers it.
        if ip == IpAddr::V4(SELLER_IP) {
            continue;
        }
        let dst = SocketAddr::new(ip, TARGET_PORT);
        let (tcp, udp) =
            buyer_rt.block_on(async move { (tcp_banner(dst).await, udp_echoes(dst).await) });
        // The tunnel carries IPv4 only: the NAT64 address has no way in at all.
        assert!(
            tcp.is_none(),
            "{what} ({dst}) reachable over TCP through the tunnel"
        );
        assert!(!udp, "{what} ({dst}) echoes UDP through the tunnel");
    }
}

fn conntrack_lists(ns: &wayfare_tunnel::lab::Netns, addr: Ipv4Addr) -> String {
    let out = ns
        .command("conntrack")
        .args(["-L", "--orig-src", &addr.to_string()])
        .output()
        .expect("run conntrack (Debian package `conntrack`)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn leak_exit_wireguard_released_address_is_quarantined_and_its_conntrack_flushed() {
    let Some(lab) = lab_or_skip("leak_exit_wireguard_released_address_is_quarantined") else {
        return;
    };
    assert!(
        Command::new("conntrack").arg("--version").output().is_ok(),
        "this test needs the `conntrack` tool (make setup installs it)"
    );
    let inet = lab.internet.runtime(1).expect("internet rt");
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    plant(&lab, &seller_rt, &inet);
    let seller = start_seller(&seller_rt, Duration::from_secs(60));
    let a_key = PrivateKey::generate();
    let s = seller.clone();
    let a_pub = a_key.public_key();
    let grant = seller_rt
        .block_on(async move { s.add_session("a", a_pub).await })
        .expect("session a");
    let addr = grant.address;
    let buyer = plain_buyer(&buyer_rt, grant.client_config(a_key));
    let control = SocketAddr::from((INTERNET_IP, TARGET_PORT));
    assert!(
        buyer_rt.block_on(async move { udp_echoes(control).await }),
        "no UDP through the tunnel"
    );
    let live = conntrack_lists(&lab.seller, addr);
    assert!(
        live.contains(&format!("src={addr}")),
        "no conntrack entry for {addr}:\n{live}"
    );

    let s = seller.clone();
    seller_rt
        .block_on(async move { s.remove_session("a").await })
        .expect("remove a");
    drop(buyer);
    let after = conntrack_lists(&lab.seller, addr);
    assert!(
        !after.contains(&format!("src={addr}")),
        "entries of {addr} left:\n{after}"
    );

    // The next buyer does not get the address while it is quarantined...
    let s = seller.clone();
    let b_pub = PrivateKey::generate().public_key();
    let b = seller_rt
        .block_on(async move { s.add_session_at("b", b_pub, Some(addr)).await })
        .expect("session b");
    assert_ne!(
        b.address, addr,
        "a released address went to the next buyer at once"
    );
    // ...but its last holder may have it back (a reconnect keeps its address).
    let s = seller.clone();
    let back = seller_rt
        .block_on(async move { s.add_session("a2", a_pub).await })
        .expect("session a again");
    assert_eq!(back.address, addr);
    drop(seller);

    // Control: with no quarantine the same request gets the address at once.
    let seller = start_seller_on(&seller_rt, Duration::ZERO, "wf-exit1", WG_PORT + 1);
    let s = seller.clone();
    let (first, second) = seller_rt.block_on(async move {
        let g = s
            .add_session("x", PrivateKey::generate().public_key())
            .await
            .expect("x");
        s.remove_session("x").await.expect("remove x");
        let h = s
            .add_session_at("y", PrivateKey::generate().public_key(), Some(g.address))
            .await
            .expect("y");
        (g.address, h.address)
    });
    assert_eq!(
        first, second,
        "with a zero quarantine the address is reused at once"
    );
}
