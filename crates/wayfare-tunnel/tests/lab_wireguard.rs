//! End-to-end tests of the WireGuard data plane in the namespace lab (real veths, TUNs,
//! nftables).

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream, UdpSocket},
};
use wayfare_tunnel::{
    ExitPolicy,
    lab::{INTERNET_IP, Lab, NsRuntime, SELLER_IP, SELLER_UPLINK_IP},
    wireguard::{
        Routing, WgBuyer, WgBuyerConfig, WgClientConfig, WgSeller, WgSellerConfig, exit_table_name,
    },
};

const WG_PORT: u16 = 51820;

fn lab_policy() -> ExitPolicy {
    ExitPolicy::with_allowed(["198.18.0.0/15".parse().expect("cidr")])
}

fn start_seller(rt: &NsRuntime) -> Arc<WgSeller> {
    rt.block_on(async {
        let mut cfg = WgSellerConfig::new(WG_PORT, SocketAddr::from((SELLER_IP, WG_PORT)));
        cfg.exit_policy = lab_policy();
        cfg.dns = vec![INTERNET_IP.into()];
        WgSeller::start(cfg).await.map(Arc::new)
    })
    .expect("seller starts")
}

/// Buyer without kill switch or DNS changes (those have their own test).
fn plain_buyer(rt: &NsRuntime, client: WgClientConfig) -> WgBuyer {
    rt.block_on(async move {
        let mut cfg = WgBuyerConfig::new(client);
        cfg.kill_switch = false;
        cfg.resolv_conf = None;
        WgBuyer::connect(cfg).await
    })
    .expect("buyer connects")
}

fn within_1pct(a: u64, b: u64) -> bool {
    let (hi, lo) = (a.max(b), a.min(b));
    (hi - lo) as f64 <= hi as f64 * 0.01
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tcp_reaches(rt: &NsRuntime, ip: Ipv4Addr, port: u16) -> bool {
    rt.block_on(async move {
        matches!(
            tokio::time::timeout(Duration::from_millis(700), TcpStream::connect((ip, port))).await,
            Ok(Ok(_))
        )
    })
}

#[test]
fn wg_download_50mib_meters_agree_and_cut_stops_within_1s() {
    let Some(lab) = lab_or_skip("wg_download_50mib_meters_agree_and_cut_stops_within_1s") else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    start_internet_servers(&inet);
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    let seller = start_seller(&seller_rt);
    let s = seller.clone();
    let client = seller_rt
        .block_on(async move { s.add_session_generated("s-dl").await })
        .expect("session");
    // The session travels as a wg-quick file, as `wayfare tunnel connect --config` takes it.
    let client = WgClientConfig::from_wg_quick(&client.to_wg_quick()).expect("wg-quick");
    let buyer = plain_buyer(&buyer_rt, client);

    let size: u64 = 50 * 1024 * 1024;
    let out = lab
        .buyer
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "90",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(format!("http://{INTERNET_IP}:{HTTP_PORT}/bytes/{size}"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        size.to_string()
    );

    let sm = seller.meter("s-dl").expect("seller meter");
    let bm = buyer.meter();
    std::thread::sleep(Duration::from_millis(300));
    let (s, b) = (sm.snapshot(), bm.snapshot());
    eprintln!("meters after 50 MiB: seller {s:?} buyer {b:?}");
    assert!(b.down >= size, "buyer counted {} down", b.down);
    assert!(
        within_1pct(s.down, b.down),
        "down: seller {} buyer {}",
        s.down,
        b.down
    );
    assert!(
        within_1pct(s.up, b.up),
        "up: seller {} buyer {}",
        s.up,
        b.up
    );

    // A live stream, then the cut: no byte arrives later than 1 s after remove_session.
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    buyer_rt.spawn(async move {
        let mut st = TcpStream::connect((INTERNET_IP, HTTP_PORT))
            .await
            .expect("connect");
        use tokio::io::AsyncWriteExt;
        st.write_all(b"GET /stream HTTP/1.1\r\n\r\n")
            .await
            .expect("req");
        let mut buf = vec![0u8; 65536];
        let stop = tokio::time::Instant::now() + Duration::from_secs(15);
        while let Ok(Ok(n)) = tokio::time::timeout_at(stop, st.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            g.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let flowing = buyer_rt.block_on({
        let got = got.clone();
        async move {
            eventually(Duration::from_secs(5), || {
                got.load(Ordering::Relaxed) > 200_000
            })
            .await
        }
    });
    assert!(flowing, "stream never flowed");
    let s = seller.clone();
    let snap = seller_rt
        .block_on(async move { s.remove_session("s-dl").await })
        .expect("remove");
    assert!(snap.down > size);
    std::thread::sleep(Duration::from_secs(1));
    let at_1s = got.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        got.load(Ordering::Relaxed),
        at_1s,
        "bytes still arrive >1 s after the cut"
    );
    let s = seller.clone();
    assert_eq!(seller_rt.block_on(async move { s.peer_count().await }), 0);
    assert!(
        !tcp_reaches(&buyer_rt, INTERNET_IP, BANNER_PORT),
        "new flows after the cut"
    );
    drop(buyer);
}

#[test]
fn wg_exit_denies_seller_addresses_and_metadata_and_owns_its_nft_table() {
    let Some(lab) =
        lab_or_skip("wg_exit_denies_seller_addresses_and_metadata_and_owns_its_nft_table")
    else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    start_internet_servers(&inet);
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    // Services on the seller's own addresses that buyers must not reach.
    for ip in [SELLER_IP, SELLER_UPLINK_IP, Ipv4Addr::LOCALHOST] {
        let l = seller_rt
            .block_on(async move { TcpListener::bind((ip, 2600)).await })
            .expect("bind seller service");
        seller_rt.spawn(banner_server(l));
    }
    // A table left by a crashed run is replaced.
    let table = exit_table_name("wf-exit0");
    run_ok(
        lab.seller
            .command("nft")
            .args(["add", "table", "ip", &table]),
    );
    run_ok(
        lab.seller
            .command("nft")
            .args(["add", "chain", "ip", &table, "stale_chain"]),
    );
    let seller = start_seller(&seller_rt);
    let listed = run_ok(
        lab.seller
            .command("nft")
            .args(["list", "table", "ip", &table]),
    );
    assert!(
        !listed.contains("stale_chain"),
        "stale table kept:\n{listed}"
    );
    assert!(listed.contains("masquerade"), "no masquerade:\n{listed}");

    let s = seller.clone();
    let client = seller_rt
        .block_on(async move { s.add_session_generated("s-policy").await })
        .expect("session");
    let buyer_addr = client.address;
    // IPv6 on the buyer's LAN (RFC 5180 benchmark range): it works before connecting...
    let veth = buyer_veth(&lab);
    run_ok(Command::new("ip").args([
        "-n",
        lab.buyer.name(),
        "addr",
        "add",
        "2001:2::2/64",
        "dev",
        &veth,
        "nodad",
    ]));
    assert!(v6_send(&buyer_rt).is_ok(), "IPv6 does not work in the lab");
    let buyer = plain_buyer(&buyer_rt, client);
    // ...and is blocked while connected (the tunnel is IPv4-only), never leaked.
    let err = v6_send(&buyer_rt).expect_err("IPv6 leaves while connected");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(
        tcp_reaches(&buyer_rt, INTERNET_IP, BANNER_PORT),
        "internet unreachable"
    );
    for ip in [
        SELLER_UPLINK_IP,
        seller.gateway(),
        Ipv4Addr::new(169, 254, 169, 254),
    ] {
        assert!(
            !tcp_reaches(&buyer_rt, ip, 2600),
            "{ip} reachable through the exit"
        );
    }

    // Unsolicited packets from the exit side are dropped before the buyer's meter.
    let before = buyer.meter().snapshot().down;
    seller_rt.block_on(async move {
        let u = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .await
            .expect("udp");
        for _ in 0..200 {
            let _ = u.send_to(&[0u8; 1000], (buyer_addr, 9999)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    assert_eq!(
        buyer.meter().snapshot().down,
        before,
        "unsolicited bytes metered"
    );
    assert!(
        buyer.dropped_unsolicited() >= 100 * 1000,
        "unsolicited packets not seen"
    );

    drop(buyer);
    assert!(
        v6_send(&buyer_rt).is_ok(),
        "IPv6 still blocked after disconnect"
    );
    drop(seller);
    let out = lab
        .seller
        .command("nft")
        .args(["list", "table", "ip", &table])
        .stderr(Stdio::null())
        .output()
        .expect("nft");
    assert!(!out.status.success(), "nft table left after shutdown");
}

fn v6_send(rt: &NsRuntime) -> std::io::Result<usize> {
    rt.block_on(async {
        let u = UdpSocket::bind("[::]:0").await?;
        u.send_to(b"v6", "[2001:2::1]:9").await
    })
}

fn buyer_veth(lab: &Lab) -> String {
    let links = run_ok(Command::new("ip").args(["-n", lab.buyer.name(), "-o", "link"]));
    links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .find(|n| n.starts_with("wb"))
        .expect("buyer veth")
}

#[test]
fn wg_kill_switch_dns_and_teardown() {
    let Some(lab) = lab_or_skip("wg_kill_switch_dns_and_teardown") else {
        return;
    };
    let inet = lab.internet.runtime(1).expect("internet rt");
    start_internet_servers(&inet);
    let dns = inet
        .block_on(async { UdpSocket::bind((INTERNET_IP, 53)).await })
        .expect("bind dns 53");
    inet.spawn(dns_server(dns));
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    // A LAN service on the seller host that outlives the WireGuard exit.
    let lan_rt = lab.seller.runtime(1).expect("lan rt");
    let l = lan_rt
        .block_on(async { TcpListener::bind((SELLER_IP, 2600)).await })
        .expect("bind lan service");
    lan_rt.spawn(banner_server(l));
    assert!(
        tcp_reaches(&buyer_rt, SELLER_IP, 2600),
        "LAN unreachable before connect"
    );
    let seller = start_seller(&seller_rt);
    let s = seller.clone();
    let client = seller_rt
        .block_on(async move { s.add_session_generated("s-ks").await })
        .expect("session");
    assert_eq!(client.dns, vec![std::net::IpAddr::V4(INTERNET_IP)]);

    // `ip netns exec` shows /etc/netns/NAME/resolv.conf as /etc/resolv.conf.
    let dir = format!("/etc/netns/{}", lab.buyer.name());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let _cleanup = DirGuard(dir.clone());
    let resolv = format!("{dir}/resolv.conf");
    let original = "nameserver 192.0.2.53\n";
    std::fs::write(&resolv, original).expect("write resolv.conf");

    let buyer = buyer_rt
        .block_on({
            let resolv = resolv.clone();
            async move {
                let mut cfg = WgBuyerConfig::new(client);
                assert_eq!(cfg.routing, Routing::Full);
                cfg.resolv_conf = Some(resolv.into());
                WgBuyer::connect(cfg).await
            }
        })
        .expect("buyer connects");
    // DNS goes through the tunnel (the buyer has no other way to 198.18.2.2).
    let out = run_ok(
        lab.buyer
            .command("getent")
            .args(["hosts", "exit.wayfare.test"]),
    );
    assert!(out.contains(&ANSWER_IP.to_string()), "getent: {out}");
    assert!(buyer.meter().snapshot().down > 0);

    // The seller dies. Nothing but packets to its endpoint leaves the buyer.
    drop(seller_rt);
    drop(seller);
    let veth = buyer_veth(&lab);
    let dump = lab
        .buyer
        .command("timeout")
        .args([
            "4",
            "tcpdump",
            "-i",
            &veth,
            "-Q",
            "out",
            "-n",
            "-l",
            "-p",
            "-q",
            "ip or ip6",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (apt install tcpdump)");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !tcp_reaches(&buyer_rt, SELLER_IP, 2600),
        "kill switch let a connection to the LAN out"
    );
    let _ = lab
        .buyer
        .command("curl")
        .args(["-sS", "--max-time", "1", "-o", "/dev/null"])
        .arg(format!("http://{INTERNET_IP}:{HTTP_PORT}/bytes/1000"))
        .stderr(Stdio::null())
        .status();
    buyer_rt.block_on(async {
        let u = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .await
            .expect("udp");
        let _ = u.send_to(&dns_query(7, "leak.test"), (SELLER_IP, 53)).await;
        let _ = u
            .send_to(
                &dns_query(8, "leak.test"),
                (Ipv4Addr::new(192, 0, 2, 53), 53),
            )
            .await;
    });
    let out = dump.wait_with_output().expect("tcpdump output");
    let text = String::from_utf8_lossy(&out.stdout);
    let endpoint = format!("> {SELLER_IP}.{WG_PORT}:");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !lines.is_empty(),
        "tcpdump saw nothing (not even WireGuard retries)"
    );
    for l in &lines {
        assert!(l.contains(&endpoint), "leaked past the kill switch: {l}");
    }
    assert!(
        std::fs::read_to_string(&resolv)
            .expect("read")
            .contains(&INTERNET_IP.to_string()),
        "DNS changed back before disconnect"
    );

    // The user disconnects: everything is restored.
    buyer.disconnect();
    assert_eq!(std::fs::read_to_string(&resolv).expect("read"), original);
    let routes = run_ok(Command::new("ip").args(["-n", lab.buyer.name(), "route"]));
    assert!(
        !routes.contains("0.0.0.0/1") && !routes.contains("198.18.1.1 "),
        "{routes}"
    );
    let tables = run_ok(lab.buyer.command("nft").args(["list", "tables"]));
    assert!(!tables.contains("wayfare"), "{tables}");
    assert!(
        tcp_reaches(&buyer_rt, SELLER_IP, 2600),
        "LAN unreachable after disconnect"
    );
}

struct DirGuard(String);
impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn twenty_wg_buyers_share_one_seller_port() {
    let Some(lab) = lab_or_skip("twenty_wg_buyers_share_one_seller_port") else {
        return;
    };
    const N: u8 = 20;
    // Each buyer gets its own internet address, routed (split tunnel) through its own TUN.
    let inet_veth = run_ok(Command::new("ip").args(["-n", lab.internet.name(), "-o", "link"]))
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .find(|n| n.starts_with("wi"))
        .expect("internet veth");
    for i in 0..N {
        run_ok(Command::new("ip").args([
            "-n",
            lab.internet.name(),
            "addr",
            "add",
            &format!("198.18.2.{}/24", 10 + i),
            "dev",
            &inet_veth,
        ]));
    }
    let inet = lab.internet.runtime(1).expect("internet rt");
    let l = inet
        .block_on(async { TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8081)).await })
        .expect("bind");
    inet.spawn(http_server(l));
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    let seller = start_seller(&seller_rt);
    let mut buyers = Vec::new();
    for i in 0..N {
        let s = seller.clone();
        let mut client = seller_rt
            .block_on(async move { s.add_session_generated(&format!("b{i}")).await })
            .expect("session");
        let dst = Ipv4Addr::new(198, 18, 2, 10 + i);
        client.allowed_ips = vec![format!("{dst}/32").parse().expect("cidr")];
        let b = buyer_rt
            .block_on(async move {
                let mut cfg = WgBuyerConfig::new(client);
                cfg.tun_name = format!("wfb{i}");
                cfg.kill_switch = false;
                cfg.resolv_conf = None;
                WgBuyer::connect(cfg).await
            })
            .expect("buyer connects");
        buyers.push((dst, b));
    }
    let size = 1024 * 1024 + u64::from(N);
    let handles: Vec<_> = buyers
        .iter()
        .enumerate()
        .map(|(i, (dst, _))| {
            lab.buyer
                .command("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "60",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{size_download}",
                ])
                .arg(format!("http://{dst}:8081/bytes/{}", size - i as u64))
                .stdout(Stdio::piped())
                .spawn()
                .expect("curl")
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.wait_with_output().expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            (size - i as u64).to_string(),
            "buyer {i}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for (i, (_, b)) in buyers.iter().enumerate() {
        let s = seller.meter(&format!("b{i}")).expect("meter").snapshot();
        let m = b.meter().snapshot();
        assert!(m.down >= size - i as u64, "buyer {i} counted {}", m.down);
        assert!(
            m.down < 2 * size,
            "buyer {i} counted others' traffic: {}",
            m.down
        );
        assert!(
            within_1pct(s.down, m.down),
            "buyer {i}: seller {} buyer {}",
            s.down,
            m.down
        );
    }
    let s = seller.clone();
    assert_eq!(
        seller_rt.block_on(async move { s.peer_count().await }),
        usize::from(N)
    );
}

/// `wireguard-go` and `wg` present? Skips (or fails under WAYFARE_REQUIRE_NETNS=1) if not.
fn have_wireguard_go(test: &str) -> bool {
    let ok = ["wireguard-go", "wg"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !ok {
        let require = std::env::var("WAYFARE_REQUIRE_NETNS").is_ok_and(|v| v == "1");
        assert!(
            !require,
            "{test}: wireguard-go/wg missing: apt-get install wireguard-go wireguard-tools"
        );
        eprintln!("skipping {test}: apt-get install wireguard-go wireguard-tools");
    }
    ok
}

/// A `wireguard-go -f IFACE` process in a namespace, killed (and its socket removed) on drop.
struct WgGo {
    child: std::process::Child,
    iface: String,
}

impl WgGo {
    fn start(ns: &wayfare_tunnel::lab::Netns, iface: &str) -> Self {
        let child = ns
            .command("wireguard-go")
            .args(["-f", iface])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wireguard-go");
        let sock = format!("/var/run/wireguard/{iface}.sock");
        for _ in 0..100 {
            if std::path::Path::new(&sock).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            iface: iface.into(),
        }
    }
}

impl Drop for WgGo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.iface));
    }
}

fn curl_bytes(ns: &wayfare_tunnel::lab::Netns, size: u64) -> String {
    let out = ns
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(format!("http://{INTERNET_IP}:{HTTP_PORT}/bytes/{size}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sfx() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

#[test]
fn wireguard_go_buyer_uses_exported_config_through_wayfare_seller() {
    let test = "wireguard_go_buyer_uses_exported_config_through_wayfare_seller";
    let Some(lab) = lab_or_skip(test) else {
        return;
    };
    if !have_wireguard_go(test) {
        return;
    }
    let inet = lab.internet.runtime(1).expect("internet rt");
    start_internet_servers(&inet);
    let seller_rt = lab.seller.runtime(2).expect("seller rt");
    let seller = start_seller(&seller_rt);
    let s = seller.clone();
    let client = seller_rt
        .block_on(async move { s.add_session_generated("s-wggo").await })
        .expect("session");
    let quick = client.to_wg_quick();
    let parsed = WgClientConfig::from_wg_quick(&quick).expect("wg-quick");
    let iface = format!("wgb{}", sfx());
    let _wg = WgGo::start(&lab.buyer, &iface);
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("wg.conf");
    std::fs::write(&conf, parsed.to_wg_setconf()).expect("write conf");
    run_ok(
        lab.buyer
            .command("wg")
            .arg("setconf")
            .arg(&iface)
            .arg(&conf),
    );
    let b = lab.buyer.name();
    run_ok(Command::new("ip").args([
        "-n",
        b,
        "addr",
        "add",
        &format!("{}/32", parsed.address),
        "dev",
        &iface,
    ]));
    run_ok(Command::new("ip").args(["-n", b, "link", "set", &iface, "mtu", "1420", "up"]));
    run_ok(Command::new("ip").args(["-n", b, "route", "add", "198.18.2.0/24", "dev", &iface]));
    let size = 5 * 1024 * 1024;
    assert_eq!(curl_bytes(&lab.buyer, size), size.to_string());
    assert!(seller.meter("s-wggo").expect("meter").snapshot().down >= size);
}

#[test]
fn wayfare_buyer_works_against_wireguard_go_seller() {
    let test = "wayfare_buyer_works_against_wireguard_go_seller";
    let Some(lab) = lab_or_skip(test) else {
        return;
    };
    if !have_wireguard_go(test) {
        return;
    }
    let inet = lab.internet.runtime(1).expect("internet rt");
    start_internet_servers(&inet);
    let seller_key = wayfare_tunnel::wireguard::PrivateKey::generate();
    let buyer_key = wayfare_tunnel::wireguard::PrivateKey::generate();
    let iface = format!("wgs{}", sfx());
    let _wg = WgGo::start(&lab.seller, &iface);
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("wg.conf");
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {WG_PORT}\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 198.19.0.2/32\n",
            seller_key.to_base64(),
            buyer_key.public_key()
        ),
    )
    .expect("write conf");
    run_ok(
        lab.seller
            .command("wg")
            .arg("setconf")
            .arg(&iface)
            .arg(&conf),
    );
    let s = lab.seller.name();
    run_ok(Command::new("ip").args(["-n", s, "addr", "add", "198.19.0.1/16", "dev", &iface]));
    run_ok(Command::new("ip").args(["-n", s, "link", "set", &iface, "mtu", "1420", "up"]));
    run_ok(
        lab.seller
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]),
    );
    run_ok(lab.seller.command("nft").args([
        "add table ip t; add chain ip t p { type nat hook postrouting priority srcnat; }; add rule ip t p ip saddr 198.19.0.0/16 masquerade",
    ]));
    let text = format!(
        "[Interface]\nPrivateKey = {}\nAddress = 198.19.0.2/32\n\n[Peer]\nPublicKey = {}\nEndpoint = {SELLER_IP}:{WG_PORT}\nAllowedIPs = 0.0.0.0/0\n",
        buyer_key.to_base64(),
        seller_key.public_key()
    );
    let client = WgClientConfig::from_wg_quick(&text).expect("config");
    let buyer_rt = lab.buyer.runtime(2).expect("buyer rt");
    let buyer = plain_buyer(&buyer_rt, client);
    let size = 5 * 1024 * 1024;
    assert_eq!(curl_bytes(&lab.buyer, size), size.to_string());
    assert!(buyer.meter().snapshot().down >= size);
    assert!(
        buyer_rt
            .block_on(async move {
                let h = buyer.last_handshake().await;
                drop(buyer);
                h
            })
            .is_some()
    );
}
