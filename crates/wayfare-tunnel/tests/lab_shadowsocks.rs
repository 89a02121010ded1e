//! End-to-end tests of the shadowsocks data plane in the namespace lab (real veths).

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};
use wayfare_tunnel::{
    ExitPolicy,
    lab::{BUYER_IP, INTERNET_IP, NsRuntime, SELLER_IP},
    shadowsocks::{Buyer, BuyerConfig, ClientConfig, LegacySeller, Seller, SellerConfig},
};

fn lab_policy() -> ExitPolicy {
    ExitPolicy::with_allowed(["198.18.0.0/15".parse().expect("cidr")])
}

struct World {
    seller_rt: NsRuntime,
    buyer_rt: NsRuntime,
    _internet_rt: NsRuntime,
    seller: Seller,
}

fn world(lab: &wayfare_tunnel::lab::Lab) -> World {
    let internet_rt = lab.internet.runtime(1).expect("internet runtime");
    start_internet_servers(&internet_rt);
    let seller_rt = lab.seller.runtime(2).expect("seller runtime");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer runtime");
    let seller = seller_rt
        .block_on(async {
            let mut cfg = SellerConfig::new(SocketAddr::from((SELLER_IP, 0)));
            cfg.exit_policy = lab_policy();
            Seller::bind(cfg).await
        })
        .expect("seller binds");
    World {
        seller_rt,
        buyer_rt,
        _internet_rt: internet_rt,
        seller,
    }
}

fn start_buyer(rt: &NsRuntime, server: ClientConfig) -> Buyer {
    rt.block_on(async move {
        let mut cfg = BuyerConfig::new(server);
        cfg.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Buyer::start(cfg).await
    })
    .expect("buyer starts")
}

fn within_1pct(a: u64, b: u64) -> bool {
    let (hi, lo) = (a.max(b), a.min(b));
    (hi - lo) as f64 <= hi as f64 * 0.01
}

#[test]
fn curl_downloads_50mib_through_socks_and_meters_agree() {
    let Some(lab) = lab_or_skip("curl_downloads_50mib_through_socks_and_meters_agree") else {
        return;
    };
    let w = world(&lab);
    let creds = w.seller.add_session("s-curl").expect("add session");
    // The session travels as an ss:// URI, as `wayfare proxy connect --uri` would take it.
    let creds = ClientConfig::from_uri(&creds.to_uri()).expect("uri round trip");
    let buyer = start_buyer(&w.buyer_rt, creds);
    let size: u64 = 50 * 1024 * 1024;
    let out = lab
        .buyer
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--socks5-hostname",
            &buyer.local_addr().to_string(),
            &format!("http://{INTERNET_IP}:{HTTP_PORT}/bytes/{size}"),
        ])
        .output()
        .expect("run curl (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        size.to_string()
    );
    let seller_meter = w.seller.meter("s-curl").expect("meter");
    let buyer_meter = buyer.meter();
    let agree = w.seller_rt.block_on(async move {
        eventually(Duration::from_secs(3), || {
            let (s, b) = (seller_meter.snapshot(), buyer_meter.snapshot());
            b.down >= size && within_1pct(s.down, b.down) && within_1pct(s.up, b.up)
        })
        .await
    });
    let (s, b) = (
        w.seller.meter("s-curl").expect("meter").snapshot(),
        buyer.meter().snapshot(),
    );
    assert!(agree, "meters disagree: seller {s:?} buyer {b:?}");
}

#[test]
fn removed_session_is_cut_within_1s_and_others_continue() {
    let Some(lab) = lab_or_skip("removed_session_is_cut_within_1s_and_others_continue") else {
        return;
    };
    let w = world(&lab);
    let a = start_buyer(&w.buyer_rt, w.seller.add_session("a").expect("add a"));
    let b = start_buyer(&w.buyer_rt, w.seller.add_session("b").expect("add b"));
    let (pa, pb) = (a.local_addr(), b.local_addr());
    let (mut sa, mut sb) = w.buyer_rt.block_on(async move {
        let mut sa = http_get_via(pa, "/stream").await.expect("a streams");
        let mut sb = http_get_via(pb, "/stream").await.expect("b streams");
        let mut buf = [0u8; 4096];
        sa.read_exact(&mut buf).await.expect("a gets data");
        sb.read_exact(&mut buf).await.expect("b gets data");
        (sa, sb)
    });
    let removed_at = Instant::now();
    let final_a = w.seller.remove_session("a").expect("remove a");
    assert!(
        final_a.down > 0,
        "meter counted before removal: {final_a:?}"
    );
    let (cut_after, b_ok, new_a) = w.buyer_rt.block_on(async move {
        let r = tokio::time::timeout(Duration::from_secs(3), drain(&mut sa)).await;
        let cut_after = removed_at.elapsed();
        assert!(r.is_ok(), "a's connection still open 3 s after removal");
        let mut buf = [0u8; 64 * 1024];
        let b_ok = tokio::time::timeout(Duration::from_secs(2), sb.read_exact(&mut buf))
            .await
            .is_ok_and(|r| r.is_ok());
        // A new connection with the removed key gets nothing.
        let new_a = match http_get_via(pa, "/bytes/1000").await {
            Ok(mut s) => tokio::time::timeout(Duration::from_secs(3), drain(&mut s))
                .await
                .expect("new connection for a removed session ends"),
            Err(_) => 0,
        };
        (cut_after, b_ok, new_a)
    });
    assert!(cut_after < Duration::from_secs(1), "cut took {cut_after:?}");
    assert!(b_ok, "session b was disturbed by a's removal");
    assert_eq!(new_a, 0, "removed session still reaches the internet");
    assert!(w.seller.meter("a").is_none());
    let e = w.seller.remove_session("a").expect_err("twice");
    assert!(e.to_string().contains("no session"), "{e}");

    // Buyer-side cut: new SOCKS requests get "connection not allowed" (2).
    b.cut("test");
    let code = w.buyer_rt.block_on(async move {
        let (_s, code, _) = socks_request(pb, 1, INTERNET_IP, HTTP_PORT)
            .await
            .expect("socks answers");
        code
    });
    assert_eq!(code, 2);
}

#[test]
fn fifty_sessions_at_once_are_metered_separately() {
    let Some(lab) = lab_or_skip("fifty_sessions_at_once_are_metered_separately") else {
        return;
    };
    let w = world(&lab);
    let buyers: Vec<Buyer> = (0..50)
        .map(|i| {
            let c = w.seller.add_session(&format!("s{i:02}")).expect("add");
            start_buyer(&w.buyer_rt, c)
        })
        .collect();
    assert_eq!(w.seller.sessions().len(), 50);
    let addrs: Vec<SocketAddr> = buyers.iter().map(Buyer::local_addr).collect();
    let sizes: Vec<usize> = (0..50).map(|i| 100_000 + i * 10_000).collect();
    let got = w.buyer_rt.block_on({
        let sizes = sizes.clone();
        async move {
            let tasks: Vec<_> = addrs
                .into_iter()
                .zip(sizes)
                .map(|(p, n)| {
                    tokio::spawn(async move {
                        let mut s = http_get_via(p, &format!("/bytes/{n}")).await.expect("get");
                        drain(&mut s).await
                    })
                })
                .collect();
            let mut got = Vec::new();
            for t in tasks {
                got.push(t.await.expect("task"));
            }
            got
        }
    });
    for (i, (g, n)) in got.iter().zip(&sizes).enumerate() {
        assert!(*g > *n, "session {i}: got {g} of {n} bytes (+headers)");
        let s = w
            .seller
            .meter(&format!("s{i:02}"))
            .expect("meter")
            .snapshot();
        let b = buyers[i].meter().snapshot();
        assert_eq!(s.down as usize, *g, "seller meter of session {i}");
        assert_eq!(b.down as usize, *g, "buyer meter of session {i}");
        assert_eq!(s.up, b.up, "up meters of session {i}");
    }
}

#[test]
fn dns_query_over_udp_associate_is_answered_and_metered() {
    let Some(lab) = lab_or_skip("dns_query_over_udp_associate_is_answered_and_metered") else {
        return;
    };
    let w = world(&lab);
    let buyer = start_buyer(&w.buyer_rt, w.seller.add_session("dns").expect("add"));
    let p = buyer.local_addr();
    let answer = w
        .buyer_rt
        .block_on(async move { dns_via_socks(p).await })
        .expect("DNS over UDP ASSOCIATE");
    assert_eq!(answer, ANSWER_IP);
    let (sm, bm) = (w.seller.meter("dns").expect("meter"), buyer.meter());
    let agree = w.buyer_rt.block_on({
        let (sm, bm) = (sm.clone(), bm.clone());
        async move {
            eventually(Duration::from_secs(2), || {
                let (s, b) = (sm.snapshot(), bm.snapshot());
                s.up > 0 && s.down > 0 && s == b
            })
            .await
        }
    });
    assert!(
        agree,
        "UDP meters: seller {:?} buyer {:?}",
        sm.snapshot(),
        bm.snapshot()
    );

    // Removing the session closes the association: no more answers.
    w.seller.remove_session("dns").expect("remove");
    let again = w.buyer_rt.block_on(async move { dns_via_socks(p).await });
    assert!(again.is_err(), "removed session still resolves: {again:?}");
}

#[test]
fn garbage_clients_and_denied_destinations_do_not_disturb_sessions() {
    let Some(lab) = lab_or_skip("garbage_clients_and_denied_destinations_do_not_disturb_sessions")
    else {
        return;
    };
    let w = world(&lab);
    let buyer = start_buyer(&w.buyer_rt, w.seller.add_session("g").expect("add"));
    let p = buyer.local_addr();
    let port = w.seller.local_addr();
    let (good, denied) = w.buyer_rt.block_on(async move {
        let mut s = http_get_via(p, "/stream").await.expect("stream");
        let mut buf = vec![0u8; 16 * 1024];
        s.read_exact(&mut buf).await.expect("data");
        // Garbage on TCP and UDP to the seller port.
        for i in 0..20u8 {
            if let Ok(mut g) = TcpStream::connect(port).await {
                let junk: Vec<u8> = (0..2000u32).map(|j| (j as u8) ^ i).collect();
                let _ = g.write_all(&junk).await;
            }
            let u = UdpSocket::bind((BUYER_IP, 0)).await.expect("udp");
            let _ = u.send_to(&[i; 300], port).await;
        }
        let good = tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf))
            .await
            .is_ok_and(|r| r.is_ok());
        // The seller's own loopback is not an allowed destination.
        let (mut d, code, _) = socks_request(p, 1, Ipv4Addr::LOCALHOST, 22)
            .await
            .expect("socks");
        assert_eq!(code, 0);
        let _ = d.write_all(b"hello").await;
        let denied = tokio::time::timeout(Duration::from_secs(3), drain(&mut d))
            .await
            .expect("denied connection closes");
        (good, denied)
    });
    assert!(good, "garbage on the port disturbed a live session");
    assert_eq!(denied, 0, "loopback destination was reachable");
}

#[test]
fn ss_local_reaches_the_internet_through_a_legacy_port() {
    let Some(lab) = lab_or_skip("ss_local_reaches_the_internet_through_a_legacy_port") else {
        return;
    };
    let have_ss_local = std::process::Command::new("ss-local")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !have_ss_local {
        let require = std::env::var("WAYFARE_REQUIRE_NETNS").is_ok_and(|v| v == "1");
        assert!(
            !require,
            "ss-local missing: apt-get install shadowsocks-libev"
        );
        eprintln!(
            "skipping ss_local interop: ss-local missing (apt-get install shadowsocks-libev)"
        );
        return;
    }
    let seller_rt = lab.seller.runtime(2).expect("seller runtime");
    let internet_rt = lab.internet.runtime(1).expect("internet runtime");
    start_internet_servers(&internet_rt);
    let legacy = LegacySeller::new(lab_policy(), None);
    let creds = seller_rt.block_on({
        let legacy_ptr = std::sync::Arc::new(legacy);
        let l = legacy_ptr.clone();
        async move {
            let c = l
                .add_session("legacy-1", SocketAddr::from((SELLER_IP, 0)))
                .await;
            (c, l)
        }
    });
    let (creds, legacy) = creds;
    let creds = creds.expect("legacy port");
    let (host, port) = creds
        .server()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .expect("host:port");
    let local_port = "10800";
    let mut child = lab
        .buyer
        .command("ss-local")
        .args([
            "-s",
            &host,
            "-p",
            &port,
            "-k",
            &creds.password(),
            "-m",
            &creds.method(),
            "-b",
            "127.0.0.1",
            "-l",
            local_port,
            "-u",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ss-local");
    let curl = |path: &str| {
        lab.buyer
            .command("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--retry",
                "5",
                "--retry-connrefused",
                "--retry-delay",
                "1",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                "--socks5-hostname",
                &format!("127.0.0.1:{local_port}"),
                &format!("http://{INTERNET_IP}:{HTTP_PORT}{path}"),
            ])
            .output()
            .expect("run curl")
    };
    let out = curl("/bytes/1048576");
    // UDP through ss-local's SOCKS5 UDP ASSOCIATE and the legacy port.
    let buyer_rt = lab.buyer.runtime(1).expect("buyer runtime");
    let proxy = SocketAddr::from((Ipv4Addr::LOCALHOST, 10800));
    let dns = buyer_rt.block_on(async move { dns_via_socks(proxy).await });
    let meter = legacy.meter("legacy-1").expect("meter").snapshot();
    legacy.remove_session("legacy-1").expect("remove");
    let after = curl("/bytes/1000");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "curl via ss-local: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576");
    assert!(meter.down >= 1_048_576, "legacy meter {meter:?}");
    assert_eq!(dns.expect("DNS via ss-local UDP"), ANSWER_IP);
    assert!(
        !after.status.success(),
        "legacy port still works after removal"
    );
}

#[test]
fn server_first_protocol_gets_its_banner() {
    let Some(lab) = lab_or_skip("server_first_protocol_gets_its_banner") else {
        return;
    };
    let w = world(&lab);
    let buyer = start_buyer(&w.buyer_rt, w.seller.add_session("banner").expect("add"));
    let p = buyer.local_addr();
    let got = w.buyer_rt.block_on(async move {
        let (mut s, code, _) = socks_request(p, 1, INTERNET_IP, BANNER_PORT)
            .await
            .expect("socks");
        assert_eq!(code, 0);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut got))
            .await
            .expect("banner arrives without the client sending first")
            .expect("read");
        got
    });
    assert_eq!(got, BANNER);
}
