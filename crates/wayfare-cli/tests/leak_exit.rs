//! Daemon level (`cargo test leak_`): a real `wayfare daemon` seller in the namespace lab, with
//! the lab's default `exit_allow` (its internet, 198.18.0.0/15, which also covers the seller's
//! own addresses), refuses a connected buyer's shadowsocks CONNECTs to live services on the
//! seller host — its loopback, its address buyers dial (where anvil also listens), its uplink
//! and 169.254.169.254 — that the seller host itself reaches. Loopback and metadata are refused
//! by the buyer before they leave (the announced policy never opens them); the seller's own
//! addresses, inside the announced allow-list, by the seller's exit.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use alloy_primitives::U256;
use wayfare_node::{
    config::ServiceName,
    labnet::{Host, LabNet, SellerSpec},
};

const WAYFARE: &str = env!("CARGO_BIN_EXE_wayfare");
const DEPOSIT: u128 = 50_000_000_000_000_000;
const PORT: u16 = 2600;
const BODY: &str = "seller-side service";

/// TCP (HTTP-ish) services on each address given, until killed.
const SERVER: &str = r#"
import socket, sys, threading
def serve(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, int(sys.argv[1]))); s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            c.settimeout(2); c.recv(4096)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 19\r\n\r\nseller-side service")
        except Exception:
            pass
        c.close()
for ip in sys.argv[2:]:
    threading.Thread(target=serve, args=(ip,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lab_available(test: &str) -> bool {
    match LabNet::namespaces_unavailable() {
        None => true,
        Some(why) => {
            assert!(
                std::env::var("WAYFARE_REQUIRE_NETNS").as_deref() != Ok("1"),
                "{test}: the namespace lab is required (WAYFARE_REQUIRE_NETNS=1) but {why}"
            );
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

fn run_ok(net: &LabNet, host: Host, program: &str, args: &[&str]) {
    let out = net
        .command(host, Path::new(program))
        .args(args)
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `curl http://IP:PORT/` on `host`, through SOCKS5 at `socks` when given: the body.
fn fetch(net: &LabNet, host: Host, ip: &str, socks: Option<u16>) -> String {
    let mut c = net.command(host, Path::new("curl"));
    c.args(["-s", "--max-time", "5"]);
    if let Some(p) = socks {
        c.arg("--socks5").arg(format!("127.0.0.1:{p}"));
    }
    let out = c
        .arg(format!("http://{ip}:{PORT}/"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn leak_exit_daemon_shadowsocks_refuses_the_sellers_own_services() {
    let test = "leak_exit_daemon_shadowsocks_refuses_the_sellers_own_services";
    if !lab_available(test) {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("wayfare-leak-exit")
        .tempdir()
        .expect("tempdir");
    let net = LabNet::start(Path::new(WAYFARE), tmp.path(), true, 1, 60, &mut |m| {
        eprintln!("· {m}")
    })
    .expect("start the lab network");
    let mut spec = SellerSpec::new(1);
    spec.services = vec![ServiceName::Shadowsocks];
    spec.price_per_mib = 1_000_000_000_000;
    spec.price_per_second = 0;
    spec.interval = 1;
    spec.grace = 4;
    let _seller = net.start_seller(&spec).expect("start the seller");
    let buyer = net
        .start_buyer(U256::from(DEPOSIT))
        .expect("start the buyer");
    net.wait_for("the seller's offer", Duration::from_secs(60), || {
        net.cli_json(&buyer, &["offers"])
            .ok()
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    })
    .expect("offer");

    // 169.254.169.254 on an interface of its own on the seller host (a veth pair: the
    // kernel may lack the dummy module).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let sfx = format!("{:06x}", (nanos ^ std::process::id()) & 0xff_ffff);
    let (meta, peer) = (format!("wfmd{sfx}"), format!("wfmp{sfx}"));
    run_ok(
        &net,
        Host::Seller,
        "ip",
        &["link", "add", &meta, "type", "veth", "peer", "name", &peer],
    );
    run_ok(
        &net,
        Host::Seller,
        "ip",
        &["addr", "add", "169.254.169.254/32", "dev", &meta],
    );
    run_ok(&net, Host::Seller, "ip", &["link", "set", &meta, "up"]);
    run_ok(&net, Host::Seller, "ip", &["link", "set", &peer, "up"]);
    let targets = ["127.0.0.1", "198.18.1.1", "198.18.2.1", "169.254.169.254"];
    let mut child = net
        .command(Host::Seller, Path::new("python3"))
        .args(["-c", SERVER, &PORT.to_string()])
        .args(targets)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 on the seller host");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("server output");
    let _server = Killed(child);
    assert_eq!(ready.trim(), "ready");
    for ip in targets {
        assert_eq!(
            fetch(&net, Host::Seller, ip, None),
            BODY,
            "{ip} not served on the seller host"
        );
    }

    let session = net
        .cli_json(&buyer, &["connect", "--service", "shadowsocks"])
        .expect("connect");
    assert_eq!(session["live"], true, "{session}");
    let socks = buyer.service_port;
    assert_eq!(
        net.download(Some(socks), 1 << 20)
            .expect("download through the exit"),
        1 << 20
    );
    for ip in targets {
        let got = fetch(&net, Host::Buyer, ip, Some(socks));
        assert!(
            !got.contains(BODY),
            "{ip} reachable through the seller daemon's exit: {got:?}"
        );
    }
    // Loopback and metadata are refused already by the buyer (the announced policy never opens
    // them); the seller's own addresses lie in the announced allow-list, so only the seller's
    // exit refused those two.
    let st = net.cli_json(&buyer, &["status"]).expect("status");
    let live = st["sessions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["live"] == true).cloned())
        .expect("the live session");
    assert_eq!(live["exit_refused"], 2, "{live}");
    let _ = net.cli(&buyer, &["disconnect"]);
}
