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
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use common::{
    Running,
    chain::{WAYFARE, deployer},
};
use wayfare_tunnel::lab::{self, INTERNET_IP, Lab, Netns, SELLER_IP};

const WEB_PORT: u16 = 8080;
/// The chain's RPC on the seller host.
const RPC: &str = "http://127.0.0.1:8545";
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

/// The walk's hosts, files and what earlier steps learned.
struct Walk<'a> {
    seller: &'a Netns,
    buyer: &'a Netns,
    dir: PathBuf,
    market: String,
    block: String,
}

impl Walk<'_> {
    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    fn logs(&self) -> String {
        let log = |n| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        format!(
            "--- seller\n{}\n--- buyer\n{}",
            log("seller.log"),
            log("buyer.log")
        )
    }

    /// `wayfare LINE --json` on `ns`, LINE split at spaces (no path here has one).
    fn run(&self, ns: &Netns, line: &str) -> serde_json::Value {
        let args: Vec<&str> = line.split_whitespace().collect();
        json(ns, &args, &|| self.logs())
    }

    /// Step 1: deploy the market from the seller's host.
    fn deploy(&mut self, keystore: &Path) {
        let d = self.run(self.seller, &format!(
            "chain deploy --rpc-url {RPC} --chain-id 4242 --keystore {} --password-file {} --challenge-period 3600",
            keystore.display(), self.path("password")
        ));
        self.market = d["market"].as_str().unwrap().to_string();
        self.block = d["deploy_block"].as_u64().unwrap().to_string();
    }

    /// Step 2: init the seller, send ETH to both its accounts, init again with --register.
    /// Returns its account and the address buyers bootstrap from.
    fn seller_setup(&self) -> (String, String) {
        let init = format!(
            "init --seller --rpc-url {RPC} --market {} --start-block {} --config {} --data-dir {} --password-file {} --public-host {SELLER_IP} --advertise direct --exit-allow 198.18.2.0/24 --region eu --payment-interval 2",
            self.market,
            self.block,
            self.path("seller/wayfare.toml"),
            self.path("seller/data"),
            self.path("password")
        );
        let first = self.run(self.seller, &init);
        assert!(
            first["next"].as_str().unwrap().contains("send ETH"),
            "{first}"
        );
        for acct in first["accounts"].as_array().unwrap() {
            fund(self.seller, acct["address"].as_str().unwrap());
        }
        let seller = self.run(self.seller, &format!("{init} --register --funds 0.01eth"));
        assert_eq!(seller["registered"], true, "{seller}");
        let bootstrap = seller["p2p_addr"].as_str().expect("the seller's address");
        assert!(
            bootstrap.starts_with(&format!("/ip4/{SELLER_IP}/tcp/4001/p2p/")),
            "{bootstrap}"
        );
        let account = seller["accounts"][0]["address"].as_str().unwrap();
        (account.to_string(), bootstrap.to_string())
    }

    /// Step 3: the buyer, on its own host, joining at the seller's address; send it ETH.
    fn buyer_setup(&self, bootstrap: &str) {
        let buyer = self.run(self.buyer, &format!(
            "init --buyer --rpc-url http://{SELLER_IP}:8545 --market {} --start-block {} --config {} --data-dir {} --password-file {} --bootstrap {bootstrap} --payment-interval 2",
            self.market, self.block, self.path("buyer/wayfare.toml"), self.path("buyer/data"), self.path("password")
        ));
        fund(
            self.seller,
            buyer["accounts"][0]["address"].as_str().unwrap(),
        );
    }

    /// Step 5: connect, fetch 4 MiB from the internet host through SOCKS5, leave closing.
    fn session(&self) {
        let b = format!("--config {}", self.path("buyer/wayfare.toml"));
        wait_for(
            "the seller's offer at the buyer",
            Duration::from_secs(60),
            &|| self.logs(),
            || {
                let v = self.run(self.buyer, &format!("offers {b}"));
                v.as_array().filter(|a| !a.is_empty()).map(|_| ())
            },
        );
        let session = self.run(self.buyer, &format!("connect {b}"));
        assert_eq!(session["live"], true, "{session}\n{}", self.logs());
        let got = self
            .buyer
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
        let got = String::from_utf8_lossy(&got.stdout);
        assert_eq!(got, (4u64 << 20).to_string(), "{}", self.logs());
        // Pay as you go: let an interval's voucher cover the bytes, then leave.
        std::thread::sleep(Duration::from_secs(5));
        self.run(self.buyer, &format!("disconnect --close {b}"));
    }

    /// Step 6 and 7: the channel closed on chain with the seller credited what 4 MiB cost; the
    /// seller withdraws it through its daemon.
    fn settle(&self, account: &str) {
        let on_chain = format!("chain --rpc-url {RPC} --market {}", self.market);
        let earned = wait_for(
            "the close on chain",
            Duration::from_secs(60),
            &|| self.logs(),
            || {
                let v = self.run(self.seller, &format!("{on_chain} balance {account}"));
                let w: u128 = v["withdrawable_wei"].as_str()?.parse().ok()?;
                (w > 0).then_some(w)
            },
        );
        // The last voucher covers the metered bytes (4 MiB and the HTTP exchange), within the
        // protocol's tolerance.
        assert!(
            (3 * X..=5 * X).contains(&earned),
            "earned {earned} wei for 4 MiB at {X} wei/MiB"
        );
        let list = self.run(
            self.seller,
            &format!("{on_chain} channel list --from-block {}", self.block),
        );
        assert_eq!(list[0]["state"], "closed", "{list}");
        self.run(
            self.seller,
            &format!(
                "seller withdraw --config {}",
                self.path("seller/wayfare.toml")
            ),
        );
        let v = self.run(self.seller, &format!("{on_chain} balance {account}"));
        assert_eq!(v["withdrawable_wei"], "0");
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
    let _chain = chain(&lab.seller);
    let tmp = tempfile::tempdir().unwrap();
    let (deployer_ks, _) = deployer(tmp.path());
    let mut walk = Walk {
        seller: &lab.seller,
        buyer: &lab.buyer,
        dir: tmp.path().to_path_buf(),
        market: String::new(),
        block: String::new(),
    };
    walk.deploy(&deployer_ks);
    let (account, bootstrap) = walk.seller_setup();
    walk.buyer_setup(&bootstrap);
    // Step 4: both daemons from the written configs; the CLI finds each through its config.
    let _seller = daemon(
        &lab.seller,
        &tmp.path().join("seller/wayfare.toml"),
        &tmp.path().join("seller.log"),
    );
    let _buyer = daemon(
        &lab.buyer,
        &tmp.path().join("buyer/wayfare.toml"),
        &tmp.path().join("buyer.log"),
    );
    walk.session();
    walk.settle(&account);
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "took {:?}",
        started.elapsed()
    );
}
