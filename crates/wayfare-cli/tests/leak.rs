//! Fail-closed tests of the buyer daemon as a user runs it (`cargo test leak_`): a full-tunnel
//! WireGuard session with the default config, on a buyer host that has a way out of its own
//! (a default route via its "ISP", so anything the kill switch let through would really reach
//! the internet host), with `tcpdump` on each of the buyer's links.

mod lab;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use alloy_primitives::U256;
use lab::{DEPOSIT, WAYFARE, dns_server, lab_available, spec};
use wayfare_node::{
    config::ServiceName,
    labnet::{Daemon, Host, LabNet},
};
use wayfare_tunnel::lab::{BUYER_RESOLV_CONF, INTERNET_IP, INTERNET_IP6, RELAY_IP, SELLER_IP};

/// A `tcpdump` per buyer link, recording every packet leaving the buyer host that matches.
struct Capture {
    dumps: Vec<(Child, PathBuf)>,
}

impl Capture {
    /// Starts capturing outgoing packets matching `filter` on every buyer link; returns once
    /// each tcpdump is listening.
    fn start(net: &LabNet, dir: &Path, tag: &str, filter: &str) -> Capture {
        let l = net.lab().expect("namespace lab");
        let mut dumps = Vec::new();
        for link in l.buyer_links() {
            let out = dir.join(format!("tcpdump-{tag}-{link}.txt"));
            let err = dir.join(format!("tcpdump-{tag}-{link}.err"));
            let child = l
                .buyer
                .command("tcpdump")
                .args([
                    "-i",
                    &link,
                    "-Q",
                    "out",
                    "-n",
                    "-l",
                    "-U",
                    "--immediate-mode",
                ])
                .arg(filter)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(&err).unwrap())
                .spawn()
                .expect("tcpdump (make setup installs it)");
            let t0 = Instant::now();
            while !std::fs::read_to_string(&err)
                .unwrap_or_default()
                .contains("listening on")
            {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "tcpdump on {link} did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            dumps.push((child, out));
        }
        assert!(
            dumps.len() >= 2,
            "the buyer has links to the seller and the relay"
        );
        Capture { dumps }
    }

    /// Stops it; every captured line.
    fn stop(self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        let mut lines = Vec::new();
        for (mut child, out) in self.dumps {
            // `ip netns exec` execs tcpdump, so the child is tcpdump: SIGINT flushes it.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
            let mut text = String::new();
            std::fs::File::open(&out)
                .and_then(|mut f| f.read_to_string(&mut text))
                .unwrap();
            // tcpdump ends its output with an empty line when interrupted.
            lines.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
        }
        lines
    }
}

/// Anything leaving the buyer host that is not ARP and not to an allowed host (the seller
/// host, which is also its chain RPC, and the relay).
fn leak_filter() -> String {
    format!("not arp and not (ip and (dst host {SELLER_IP} or dst host {RELAY_IP}))")
}

struct Leak {
    net: LabNet,
    sellers: Vec<Daemon>,
    buyer: Daemon,
    tmp: tempfile::TempDir,
}

impl Drop for Leak {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the daemons' logs and the captures for whoever reads the failure.
            let keep = tempfile::TempDir::new().unwrap();
            let dir = std::mem::replace(&mut self.tmp, keep);
            eprintln!("lab files kept in {}", dir.keep().display());
        }
    }
}

impl Leak {
    /// WireGuard sellers behind the relay and a buyer with the default full tunnel.
    fn new(sellers: usize) -> Leak {
        Self::selling(sellers, ServiceName::Wireguard)
    }

    /// `sellers` sellers of `service` and the buyer.
    fn selling(sellers: usize, service: ServiceName) -> Leak {
        let tmp = tempfile::Builder::new()
            .prefix("wayfare-leak")
            .tempdir()
            .unwrap();
        let net = LabNet::start(
            Path::new(WAYFARE),
            tmp.path(),
            true,
            sellers,
            60,
            &mut |m| eprintln!("· {m}"),
        )
        .expect("start the lab network");
        net.lab().unwrap().add_buyer_uplink().expect("buyer uplink");
        let mut ds = Vec::new();
        for i in 1..=sellers {
            let mut s = spec(vec![service]);
            s.index = i;
            s.grace = 20;
            ds.push(net.start_seller(&s).expect("start a seller"));
        }
        let buyer = net
            .start_buyer_with(U256::from(DEPOSIT), "")
            .expect("start the buyer");
        let w = Leak {
            net,
            sellers: ds,
            buyer,
            tmp,
        };
        w.net
            .wait_for("every seller's offer", Duration::from_secs(90), || {
                w.net
                    .cli_json(&w.buyer, &["offers"])
                    .ok()
                    .filter(|v| v.as_array().is_some_and(|a| a.len() == sellers))
            })
            .expect("offers");
        w
    }

    fn logs(&self) -> String {
        let mut out = format!("(lab files in {})\n", self.tmp.path().display());
        for d in self.sellers.iter().chain([&self.buyer]) {
            let text = std::fs::read_to_string(&d.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {} log\n", d.name));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn seller_account(&self, i: usize) -> String {
        self.net.info.sellers[i].account.address.to_string()
    }

    /// Waits until the buyer sees seller `i`'s offer (a restarted buyer learns them anew).
    fn wait_offer(&self, i: usize) {
        let account = self.seller_account(i).to_lowercase();
        self.net
            .wait_for("the seller's offer", Duration::from_secs(90), || {
                self.net
                    .cli_json(&self.buyer, &["offers"])
                    .ok()
                    .filter(|v| {
                        v.as_array().is_some_and(|a| {
                            a.iter().any(|o| {
                                o["seller"].as_str().unwrap_or("").to_lowercase() == account
                            })
                        })
                    })
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    fn connect(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["connect", "--service", "wireguard"];
        a.extend(args);
        self.net
            .cli_json(&self.buyer, &a)
            .unwrap_or_else(|e| panic!("connect {args:?}: {e}\n{}", self.logs()))
    }

    fn status(&self) -> serde_json::Value {
        self.net
            .cli_json(&self.buyer, &["status"])
            .unwrap_or_else(|e| panic!("status: {e}\n{}", self.logs()))
    }

    fn lockdown_engaged(&self) -> bool {
        self.status()["lockdown"]["engaged"]
            .as_bool()
            .unwrap_or(false)
    }

    /// A download from the internet host, straight from the buyer host (the routes decide).
    fn download_works(&self) -> bool {
        self.net
            .download_within(None, 200_000, Duration::from_secs(4))
            .is_ok_and(|n| n == 200_000)
    }

    fn wait_download(&self, what: &str) {
        self.net
            .wait_for(what, Duration::from_secs(60), || {
                self.download_works().then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    fn live_sessions(&self) -> Vec<serde_json::Value> {
        self.status()["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["role"] == "buyer" && s["live"] == true)
            .collect()
    }
}

/// (a) The kill switch holds across every way a session ends: a switch to another seller, the
/// buyer daemon killed -9 (and restarted), the seller killed -9, the seller cutting the
/// session. tcpdump on every buyer link sees nothing leave except to the allowed hosts; a
/// download fails whenever no tunnel carries it, and works in the clear after `disconnect`.
#[test]
fn leak_full_tunnel_lockdown_holds_through_every_end() {
    if !lab_available("leak_full_tunnel_lockdown_holds_through_every_end") {
        return;
    }
    let mut w = Leak::new(2);
    // Control: the buyer's own way out works before any session.
    assert!(
        w.download_works(),
        "the buyer's uplink reaches the internet host"
    );
    assert!(!w.lockdown_engaged());

    w.connect(&["--seller", &w.seller_account(0)]);
    assert!(w.lockdown_engaged(), "connect puts the lockdown up");
    let cap = Capture::start(&w.net, w.tmp.path(), "locked", &leak_filter());
    w.wait_download("a download through seller 1's tunnel");

    // A switch: the new tunnel comes up before the old goes.
    w.connect(&["--switch", "--seller", &w.seller_account(1)]);
    w.wait_download("a download through seller 2's tunnel");
    w.net
        .wait_for("the old session left", Duration::from_secs(30), || {
            (w.live_sessions().len() == 1).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));

    // The buyer daemon dies: its TUN goes with it, the lockdown stays in the kernel.
    w.buyer.kill();
    assert!(
        !w.download_works(),
        "no download while the buyer daemon is dead"
    );
    w.net.restart(&mut w.buyer).expect("restart the buyer");
    assert!(
        w.lockdown_engaged(),
        "the restarted daemon finds and keeps the lockdown"
    );
    w.wait_download("a download through the restored tunnel");

    // The seller dies: the tunnel is dead, nothing goes around it.
    w.sellers[1].kill();
    assert!(!w.download_works(), "no download while the seller is dead");

    // Back to seller 1, which then cuts the session.
    w.wait_offer(0);
    w.connect(&["--switch", "--seller", &w.seller_account(0)]);
    w.wait_download("a download through seller 1 again");
    let live = w.live_sessions();
    let channel = live[0]["channel_id"].as_str().expect("channel").to_string();
    w.net
        .cli(&w.sellers[0], &["close", &channel])
        .unwrap_or_else(|e| panic!("seller close: {e}"));
    w.net
        .wait_for("the cut session ended", Duration::from_secs(30), || {
            w.live_sessions().is_empty().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert!(
        !w.download_works(),
        "no download after the seller cut the session"
    );
    assert!(w.lockdown_engaged());

    let leaked = cap.stop();
    assert!(
        leaked.is_empty(),
        "packets left the buyer outside the tunnel to hosts not allowed:\n{}",
        leaked.join("\n")
    );

    // `wayfare disconnect` lifts it: the same download now goes out in the clear, and the
    // same capture sees it (so the capture above could see a leak).
    let out = w.net.cli(&w.buyer, &["disconnect"]).expect("disconnect");
    assert!(out.contains("lockdown: off"), "{out}");
    assert!(!w.lockdown_engaged());
    let control = Capture::start(&w.net, w.tmp.path(), "clear", &leak_filter());
    assert!(
        w.download_works(),
        "the download works again after disconnect"
    );
    let seen = control.stop();
    assert!(
        seen.iter().any(|l| l.contains(&INTERNET_IP.to_string())),
        "the capture sees clear traffic to the internet host: {seen:?}"
    );
}

/// (b) DNS goes to the seller's resolver inside the tunnel: the buyer's resolv.conf names it,
/// a name resolves through it (the seller's upstream answers), the buyer's LAN resolver sees
/// no query (not even one sent to it on purpose), and resolv.conf comes back byte for byte.
/// (c) No IPv6 packet leaves the buyer while connected, though its uplink has IPv6 to the
/// internet host (which answers in the clear after `disconnect`).
#[test]
fn leak_dns_goes_to_the_sellers_resolver_and_no_ipv6_leaves() {
    if !lab_available("leak_dns_goes_to_the_sellers_resolver_and_no_ipv6_leaves") {
        return;
    }
    let w = Leak::new(1);
    let l = w.net.lab().unwrap();
    // The seller's upstream (its /etc/resolv.conf names the internet host) and the buyer's LAN
    // resolver (its home router, the seller host's LAN address).
    let upstream = dns_server(
        &w.net,
        Host::Internet,
        (INTERNET_IP, 53).into(),
        INTERNET_IP,
    );
    let lan = dns_server(
        &w.net,
        Host::Seller,
        (SELLER_IP, 53).into(),
        std::net::Ipv4Addr::new(192, 0, 2, 66),
    );
    let web6 = w
        .net
        .serve_http_at(format!("[{INTERNET_IP6}]:0").parse().unwrap())
        .expect("IPv6 web server");
    let resolv = format!("/etc/netns/{}/resolv.conf", l.buyer.name());
    let curl6 = || {
        l.buyer
            .command("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "3"])
            .arg(format!("http://{web6}/bytes/1000"))
            .status()
            .is_ok_and(|s| s.success())
    };
    // Control: IPv6 reaches the internet host from the buyer before any session.
    assert!(
        curl6(),
        "the buyer's uplink carries IPv6 to the internet host"
    );

    w.connect(&[]);
    let cap = Capture::start(&w.net, w.tmp.path(), "dns", &leak_filter());
    let written = std::fs::read_to_string(&resolv).unwrap();
    let gw = written
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .unwrap_or_else(|| panic!("resolv.conf names no resolver: {written}"))
        .to_string();
    assert!(
        gw.starts_with("198.19."),
        "the seller's tunnel gateway: {written}"
    );
    let getent = |name: &str| {
        let out = l
            .buyer
            .command("getent")
            .args(["ahostsv4", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let answer = getent("web.example");
    assert!(
        answer.contains(&INTERNET_IP.to_string()),
        "a name resolves through the seller's resolver: {answer:?}\n{}",
        w.logs()
    );
    assert!(upstream.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // An app that asks the LAN resolver directly gets nothing through.
    let rt = l.buyer.runtime(1).expect("a runtime in the buyer host");
    let answered = rt.block_on(async move {
        let s = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let q = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 6, b'f', b'o', b'r', b'c', b'e', b'd', 0, 0,
            1, 0, 1,
        ];
        // The lockdown may refuse the send outright (EPERM); either way nothing arrives.
        let _ = s.send_to(&q, (SELLER_IP, 53)).await;
        let mut b = [0u8; 512];
        tokio::time::timeout(Duration::from_secs(2), s.recv(&mut b))
            .await
            .is_ok()
    });
    assert!(
        !answered,
        "a query straight to the LAN resolver was answered"
    );
    assert_eq!(
        lan.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the buyer's LAN resolver saw a query while connected"
    );
    // IPv6 is blocked while connected.
    assert!(!curl6(), "IPv6 got out while connected");
    let leaked = cap.stop();
    assert!(leaked.is_empty(), "leaked while connected: {leaked:?}");

    w.net.cli(&w.buyer, &["disconnect"]).expect("disconnect");
    w.net
        .wait_for("resolv.conf restored", Duration::from_secs(20), || {
            (std::fs::read_to_string(&resolv).ok()? == BUYER_RESOLV_CONF).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", std::fs::read_to_string(&resolv)));
    // After disconnect the LAN resolver answers again and IPv6 works: both were really there.
    assert!(getent("after.example").contains("192.0.2.66"));
    assert!(lan.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(curl6(), "IPv6 works again after disconnect");
}

/// In shadowsocks mode a name given to the SOCKS5 server (`socks5h`) is resolved at the seller:
/// `web.lab` exists only in the seller host's /etc/hosts, the download by name works, and the
/// buyer's LAN resolver is never asked; resolving it on the buyer (`--socks5`) fails.
#[test]
fn leak_socks_names_resolve_at_the_seller() {
    if !lab_available("leak_socks_names_resolve_at_the_seller") {
        return;
    }
    let w = Leak::selling(1, ServiceName::Shadowsocks);
    let lan = dns_server(
        &w.net,
        Host::Seller,
        (SELLER_IP, 53).into(),
        std::net::Ipv4Addr::new(192, 0, 2, 66),
    );
    let c = w
        .net
        .cli_json(&w.buyer, &["connect", "--service", "shadowsocks"])
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", w.logs()));
    // `connect --json` waits for the tunnel and prints the session, with its SOCKS5 address.
    let socks = c["socks"]
        .as_str()
        .unwrap_or_else(|| panic!("no SOCKS5 address in {c}"))
        .to_string();
    let port = w.net.http().port();
    let l = w.net.lab().unwrap();
    let fetch = |proxy_flag: &str| {
        l.buyer
            .command("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                proxy_flag,
                &socks,
            ])
            .arg(format!("http://web.lab:{port}/bytes/1000"))
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        fetch("--socks5-hostname"),
        "a name resolves at the seller\n{}",
        w.logs()
    );
    assert_eq!(
        lan.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the buyer's resolver was asked for a name the seller resolves"
    );
    assert!(
        !fetch("--socks5"),
        "the buyer itself cannot resolve web.lab"
    );
    assert!(
        lan.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the control did ask it"
    );
}
