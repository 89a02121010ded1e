//! A buyer whose DNS systemd-resolved manages (`cargo test leak_`): the lab's buyer host runs
//! Debian's systemd-resolved (unpacked by `make setup`, not installed) on a private system bus,
//! its resolv.conf points at resolved's stub, and resolved's own upstream is the buyer's LAN
//! resolver. While a WireGuard session is up every name goes through the tunnel to the
//! seller's resolver and the LAN resolver hears nothing; resolv.conf is never written; after
//! `disconnect` the LAN resolver answers again.
//!
//! The buyer runs a split tunnel (no kill switch), so a query resolved sent to the LAN would
//! arrive there and be counted: only the routing of DNS keeps it in the tunnel.

mod lab;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::Ordering,
    time::Duration,
};

use alloy_primitives::U256;
use lab::{DEPOSIT, WAYFARE, dns_server, lab_available, spec};
use wayfare_node::{
    config::ServiceName,
    labnet::{Host, LabNet},
};
use wayfare_tunnel::lab::{INTERNET_IP, SELLER_IP};

/// Where `make setup` unpacks systemd-resolved.
fn resolved_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("WAYFARE_RESOLVED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/wayfare/tools/systemd-resolved"));
    if dir.join("lib/systemd/systemd-resolved").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("WAYFARE_REQUIRE_NETNS").is_none(),
        "systemd-resolved is not unpacked in {}: run `make setup`",
        dir.display()
    );
    None
}

/// A dbus-daemon and systemd-resolved in the buyer's namespace, killed on drop.
struct Resolved {
    children: Vec<Child>,
    bus: String,
}

impl Drop for Resolved {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// In `ns` with its own mount namespace: `passwd` and `group` (with resolved's user) and
/// `resolv` over /etc, a tmpfs on /run/systemd, then `program`.
fn spawn_in(ns: &str, dir: &Path, env: &[(&str, &str)], program: &str, log: &Path) -> Child {
    let script = format!(
        "mount --bind {d}/passwd /etc/passwd && mount --bind {d}/group /etc/group && \
         mount --bind {d}/resolv.conf /etc/resolv.conf && mkdir -p /run/systemd && \
         mount -t tmpfs tmpfs /run/systemd && exec {program}",
        d = dir.display()
    );
    let log = std::fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, "unshare", "-m", "sh", "-c", &script])
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("ip netns exec unshare")
}

impl Resolved {
    fn start(ns: &str, dir: &Path, unpacked: &Path, upstream: std::net::Ipv4Addr) -> Resolved {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let group = std::fs::read_to_string("/etc/group").unwrap();
        std::fs::write(
            dir.join("passwd"),
            format!("{passwd}systemd-resolve:x:64990:64990:resolve:/:/usr/sbin/nologin\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("group"),
            format!("{group}systemd-resolve:x:64990:\n"),
        )
        .unwrap();
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {upstream}\n")).unwrap();
        let socket = dir.join("system_bus_socket");
        std::fs::write(
            dir.join("bus.conf"),
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\
                 <type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>\
                 <allow send_destination=\"*\"/><allow receive_sender=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let bus = format!("unix:path={}", socket.display());
        let mut r = Resolved {
            children: Vec::new(),
            bus: bus.clone(),
        };
        r.children.push(spawn_in(
            ns,
            dir,
            &[],
            &format!(
                "dbus-daemon --nofork --nopidfile --config-file={}",
                dir.join("bus.conf").display()
            ),
            &dir.join("dbus.log"),
        ));
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(socket.exists(), "the private system bus did not start");
        r.children.push(spawn_in(
            ns,
            dir,
            &[("DBUS_SYSTEM_BUS_ADDRESS", bus.as_str())],
            &unpacked
                .join("lib/systemd/systemd-resolved")
                .display()
                .to_string(),
            &dir.join("resolved.log"),
        ));
        r
    }

    /// `resolvectl ARGS` in `ns` on the private bus.
    fn ctl(&self, ns: &str, unpacked: &Path, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(unpacked.join("usr/bin/resolvectl"))
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn leak_dns_goes_through_systemd_resolved_to_the_sellers_resolver() {
    if !lab_available("leak_dns_goes_through_systemd_resolved_to_the_sellers_resolver") {
        return;
    }
    let Some(unpacked) = resolved_dir() else {
        eprintln!("skipping: systemd-resolved is not unpacked (make setup)");
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("wayfare-resolved")
        .tempdir()
        .unwrap();
    let mut net = LabNet::start(Path::new(WAYFARE), tmp.path(), true, 1, 60, &mut |m| {
        eprintln!("· {m}")
    })
    .expect("start the lab network");
    let seller = net
        .start_seller(&spec(vec![ServiceName::Wireguard]))
        .expect("start the seller");
    // The seller's upstream answers with the internet host, the buyer's LAN resolver (on the
    // seller host's LAN address) with 192.0.2.66.
    let upstream = dns_server(&net, Host::Internet, (INTERNET_IP, 53).into(), INTERNET_IP);
    let lan_answer = std::net::Ipv4Addr::new(192, 0, 2, 66);
    let lan = dns_server(&net, Host::Seller, (SELLER_IP, 53).into(), lan_answer);

    let ns = net.lab().unwrap().buyer.name().to_string();
    let rdir = tmp.path().join("resolved");
    std::fs::create_dir_all(&rdir).unwrap();
    let resolved = Resolved::start(&ns, &rdir, &unpacked, SELLER_IP);
    // The buyer host's resolv.conf hands every name to resolved's stub.
    let resolv = format!("/etc/netns/{ns}/resolv.conf");
    let stub = "# managed by systemd-resolved\nnameserver 127.0.0.53\n";
    std::fs::write(&resolv, stub).unwrap();
    let getent = |name: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "getent", "ahostsv4", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let logs = |extra: &str| {
        format!(
            "{extra}\nresolved: {}\nbuyer: {}",
            std::fs::read_to_string(rdir.join("resolved.log")).unwrap_or_default(),
            std::fs::read_to_string(tmp.path().join("buyer.log")).unwrap_or_default()
        )
    };
    // Control: resolved answers through the LAN before any session.
    let before = net
        .wait_for("resolved to answer", Duration::from_secs(20), || {
            let a = getent("before.example");
            a.contains("192.0.2.66").then_some(a)
        })
        .unwrap_or_else(|e| panic!("{}", logs(&e.to_string())));
    assert!(before.contains("192.0.2.66"));
    assert!(lan.load(Ordering::SeqCst) >= 1);

    // The daemon finds resolvectl and the bus as a host's daemon would.
    let path = format!(
        "{}:{}",
        unpacked.join("usr/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    net.set_daemon_env("PATH", &path);
    net.set_daemon_env("DBUS_SYSTEM_BUS_ADDRESS", &resolved.bus);
    let buyer = net.start_buyer(U256::from(DEPOSIT)).expect("the buyer");
    net.wait_for("the seller's offer", Duration::from_secs(60), || {
        net.cli_json(&buyer, &["offers"])
            .ok()
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    })
    .expect("offer");
    net.cli_json(&buyer, &["connect", "--service", "wireguard"])
        .unwrap_or_else(|e| panic!("{}", logs(&e.to_string())));
    // The lab buyer's TUN is `wfv0` (`[buyer] wireguard_tun`).
    let (ok, link) = resolved.ctl(&ns, &unpacked, &["dns", "wfv0"]);
    assert!(ok && link.contains("198.19."), "{}", logs(&link));
    let (_, domain) = resolved.ctl(&ns, &unpacked, &["domain", "wfv0"]);
    assert!(domain.contains("~."), "{domain}");
    let lan_before = lan.load(Ordering::SeqCst);
    let up_before = upstream.load(Ordering::SeqCst);
    for name in ["web.example", "second.example", "third.example"] {
        let a = getent(name);
        assert!(
            a.contains(&INTERNET_IP.to_string()),
            "{name} resolved to {a:?}, not through the seller's resolver\n{}",
            logs("")
        );
    }
    assert!(upstream.load(Ordering::SeqCst) > up_before);
    assert_eq!(
        lan.load(Ordering::SeqCst),
        lan_before,
        "systemd-resolved asked the LAN resolver while the tunnel was up"
    );
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        stub,
        "resolv.conf was written although systemd-resolved manages it"
    );

    net.cli(&buyer, &["disconnect"]).expect("disconnect");
    net.wait_for("the LAN resolver again", Duration::from_secs(20), || {
        getent("after.example").contains("192.0.2.66").then_some(())
    })
    .unwrap_or_else(|e| panic!("{}", logs(&e.to_string())));
    let (_, after) = resolved.ctl(&ns, &unpacked, &["status"]);
    assert!(!after.contains("wfv0"), "the link's DNS stayed: {after}");
    drop(seller);
}
