//! The README's "Run a seller on a real chain" and "Buy" sections, step by step, on an anvil
//! standing in for a chain the user names (chain id 4242, a block a second): deploy the market
//! with `wayfare chain deploy`, set up the seller with `wayfare init --seller` (funded, then
//! `--register`), the buyer with `wayfare init --buyer`, start both daemons from the written
//! configs, connect, fetch from the internet host through the seller, disconnect with a close
//! that settles on chain, and withdraw the seller's earnings. Every step is the CLI a person
//! would type, on its own host: the namespace lab's seller host (with the chain), buyer host and
//! internet host, each with the default ports.
//!
//! Needs root for the namespaces: skips without, fails under `WAYFARE_REQUIRE_NETNS=1`.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use common::{
    Running,
    chain::{WAYFARE, deployer},
};
use wayfare_tunnel::lab::{self, INTERNET_IP, Lab, Netns, SELLER_IP};

const WEB_PORT: u16 = 8080;
/// The default price per MiB init writes.
const X: u128 = 1_000_000_000_000;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `wayfare ARGS` on host `ns`, with no inherited WAYFARE_* settings.
fn wayfare(ns: &Netns, args: &[&str]) -> Output {
    let mut cmd = ns.command(WAYFARE);
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("WAYFARE_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run wayfare")
}

/// `wayfare ARGS --json` on `ns`, which must succeed.
fn json(ns: &Netns, args: &[&str], logs: &dyn Fn() -> String) -> serde_json::Value {
    let o = wayfare(ns, &[args, &["--json"][..]].concat());
    assert!(
        o.status.success(),
        "`wayfare {}` failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr),
        logs()
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("`wayfare {}`: {e}", args.join(" ")))
}

/// A JSON-RPC call to the chain on the seller host (a wallet's job: sending ETH).
fn rpc(ns: &Netns, method: &str, params: &str) {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let o = ns
        .command("curl")
        .args([
            "-sf",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            "http://127.0.0.1:8545",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("\"result\""),
        "{method}: {out}"
    );
}

fn fund(ns: &Netns, account: &str) {
    rpc(
        ns,
        "anvil_setBalance",
        &format!(r#"["{account}","0xde0b6b3a7640000"]"#),
    ); // 1 ETH
}

/// anvil on the seller host at 0.0.0.0:8545 with its own chain id and a block a second.
fn chain(ns: &Netns) -> Running {
    let anvil = wayfare_chain::toolchain::find_tool("anvil").expect("anvil (make setup)");
    let child = ns
        .command(s(&anvil))
        .args([
            "--host",
            "0.0.0.0",
            "--port",
            "8545",
            "--chain-id",
            "4242",
            "--block-time",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start anvil");
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = ns
            .command("curl")
            .args(["-sf", "-H", "Content-Type: application/json", "-d"])
            .arg(r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#)
            .arg("http://127.0.0.1:8545")
            .output()
            .unwrap();
        if o.status.success() {
            return running;
        }
        assert!(Instant::now() < deadline, "anvil did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `wayfare daemon --config CONFIG` on `ns` until it prints its ready line.
fn daemon(ns: &Netns, config: &Path, log: &Path) -> Running {
    let mut child = ns
        .command(WAYFARE)
        .args(["--log", "info", "daemon", "--config", s(config)])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let out = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("wayfare daemon ready") {
                let _ = tx.send(line);
            }
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "the daemon of {} did not start:\n{}",
                config.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    assert!(
        ready.contains("/p2p/"),
        "the ready line names no dialable address: {ready}"
    );
    running
}

/// The internet host's web server: `GET /bytes/N` answers N bytes.
fn web_server(rt: &lab::NsRuntime) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt.spawn(async {
        let l = tokio::net::TcpListener::bind((INTERNET_IP, WEB_PORT))
            .await
            .unwrap();
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let len: usize = req
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.strip_prefix("/bytes/"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&vec![0x5a; len]).await;
            });
        }
    });
}

fn wait_for<T>(
    what: &str,
    within: Duration,
    logs: &dyn Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn walkthrough_run_a_seller_and_buy_on_a_named_chain() {
    if let Some(why) = lab::unavailable_reason() {
        if std::env::var("WAYFARE_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("the walkthrough needs the namespace lab (WAYFARE_REQUIRE_NETNS=1) but {why}");
        }
        eprintln!("skipping the walkthrough: {why}");
        return;
    }
    let started = Instant::now();
    // Declared first, dropped last: every process below stops before the hosts go.
    let lab = Lab::new().expect("the namespace lab");
    let inet = lab.internet.runtime(1).unwrap();
    web_server(&inet);
    let (seller_host, buyer_host) = (&lab.seller, &lab.buyer);
    let _chain = chain(seller_host);
    let tmp = tempfile::tempdir().unwrap();
    let (deployer_ks, pw) = deployer(tmp.path());
    let seller_log = tmp.path().join("seller.log");
    let buyer_log = tmp.path().join("buyer.log");
    let logs = || {
        format!(
            "--- seller\n{}\n--- buyer\n{}",
            std::fs::read_to_string(&seller_log).unwrap_or_default(),
            std::fs::read_to_string(&buyer_log).unwrap_or_default()
        )
    };
    let rpc_here = "http://127.0.0.1:8545";

    // 1. Deploy the market.
    let d = json(
        seller_host,
        &[
            "chain",
            "deploy",
            "--rpc-url",
            rpc_here,
            "--chain-id",
            "4242",
            "--keystore",
            s(&deployer_ks),
            "--password-file",
            s(&pw),
            "--challenge-period",
            "3600",
        ],
        &logs,
    );
    let market = d["market"].as_str().unwrap().to_string();
    let block = d["deploy_block"].as_u64().unwrap().to_string();

    // 2. The seller: init, send ETH to both accounts, the same again with --register.
    let seller_cfg = tmp.path().join("seller/wayfare.toml");
    let seller_data = tmp.path().join("seller/data");
    let seller_ip = SELLER_IP.to_string();
    let seller_init = |extra: &[&str]| {
        let base = [
            "init",
            "--seller",
            "--rpc-url",
            rpc_here,
            "--market",
            &market,
            "--start-block",
            &block,
            "--config",
            s(&seller_cfg),
            "--data-dir",
            s(&seller_data),
            "--password-file",
            s(&pw),
            "--public-host",
            &seller_ip,
            "--advertise",
            "direct",
            "--exit-allow",
            "198.18.2.0/24",
            "--region",
            "eu",
            "--payment-interval",
            "2",
        ];
        json(seller_host, &[&base[..], extra].concat(), &logs)
    };
    let first = seller_init(&[]);
    assert!(
        first["next"].as_str().unwrap().contains("send ETH"),
        "{first}"
    );
    for acct in first["accounts"].as_array().unwrap() {
        fund(seller_host, acct["address"].as_str().unwrap());
    }
    let seller = seller_init(&["--register", "--funds", "0.01eth"]);
    assert_eq!(seller["registered"], true, "{seller}");
    let bootstrap = seller["p2p_addr"]
        .as_str()
        .expect("the seller's address")
        .to_string();
    assert!(
        bootstrap.starts_with(&format!("/ip4/{seller_ip}/tcp/4001/p2p/")),
        "{bootstrap}"
    );
    let seller_account = seller["accounts"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();

    // 3. The buyer, on its own host: init joining at the seller's address; send it ETH.
    let buyer_cfg = tmp.path().join("buyer/wayfare.toml");
    let buyer_data = tmp.path().join("buyer/data");
    let rpc_there = format!("http://{seller_ip}:8545");
    let buyer = json(
        buyer_host,
        &[
            "init",
            "--buyer",
            "--rpc-url",
            &rpc_there,
            "--market",
            &market,
            "--start-block",
            &block,
            "--config",
            s(&buyer_cfg),
            "--data-dir",
            s(&buyer_data),
            "--password-file",
            s(&pw),
            "--bootstrap",
            &bootstrap,
            "--payment-interval",
            "2",
        ],
        &logs,
    );
    fund(
        seller_host,
        buyer["accounts"][0]["address"].as_str().unwrap(),
    );

    // 4. Both daemons from the written configs; the CLI finds each through its config.
    let _seller = daemon(seller_host, &seller_cfg, &seller_log);
    let _buyer = daemon(buyer_host, &buyer_cfg, &buyer_log);
    let b = ["--config", s(&buyer_cfg)];
    wait_for(
        "the seller's offer at the buyer",
        Duration::from_secs(60),
        &logs,
        || {
            let o = wayfare(buyer_host, &[&["offers", "--json"][..], &b[..]].concat());
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
            v.as_array().filter(|a| !a.is_empty()).map(|_| ())
        },
    );

    // 5. A session: connect, fetch 4 MiB from the internet host through SOCKS5, leave closing.
    let session = json(buyer_host, &[&["connect"][..], &b[..]].concat(), &logs);
    assert_eq!(session["live"], true, "{session}\n{}", logs());
    let got = buyer_host
        .command("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--max-time",
            "60",
        ])
        .args(["--socks5-hostname", "127.0.0.1:1080"])
        .arg(format!("http://{INTERNET_IP}:{WEB_PORT}/bytes/{}", 4 << 20))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        (4u64 << 20).to_string(),
        "{}",
        logs()
    );
    // Pay as you go: let an interval's voucher cover the bytes, then leave.
    std::thread::sleep(Duration::from_secs(5));
    json(
        buyer_host,
        &[&["disconnect", "--close"][..], &b[..]].concat(),
        &logs,
    );

    // 6. The settle on chain: the channel closed, the seller credited what 4 MiB cost.
    let on_chain = ["chain", "--rpc-url", rpc_here, "--market", market.as_str()];
    let earned = wait_for("the close on chain", Duration::from_secs(60), &logs, || {
        let v = json(
            seller_host,
            &[&on_chain[..], &["balance", seller_account.as_str()][..]].concat(),
            &logs,
        );
        let w: u128 = v["withdrawable_wei"].as_str()?.parse().ok()?;
        (w > 0).then_some(w)
    });
    // The final voucher covers the metered bytes (4 MiB and the HTTP exchange), within the
    // protocol's tolerance.
    assert!(
        (3 * X..=5 * X).contains(&earned),
        "earned {earned} wei for 4 MiB at {X} wei/MiB"
    );
    let list = [
        &on_chain[..],
        &["channel", "list", "--from-block", block.as_str()][..],
    ]
    .concat();
    let channels = json(seller_host, &list, &logs);
    assert_eq!(channels[0]["state"], "closed", "{channels}");

    // 7. The seller pulls its earnings through its daemon.
    json(
        seller_host,
        &["seller", "withdraw", "--config", s(&seller_cfg)],
        &logs,
    );
    let v = json(
        seller_host,
        &[&on_chain[..], &["balance", seller_account.as_str()][..]].concat(),
        &logs,
    );
    assert_eq!(v["withdrawable_wei"], "0");
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "took {:?}",
        started.elapsed()
    );
}
