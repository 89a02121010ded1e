//! A real anvil standing in for "a chain you name" (its own chain id, not the devnet's), with
//! raw JSON-RPC for what a person would do with a wallet (send ETH) and a funded deployer's V3
//! keystore. Shared by the onboarding and walkthrough tests.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use super::Running;

pub const WAYFARE: &str = env!("CARGO_BIN_EXE_wayfare");
/// The password of every keystore these tests make.
pub const PASSWORD: &str = "correct horse battery";
/// anvil's first dev account (funded with 10,000 ETH on any chain id).
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running anvil.
pub struct Chain {
    pub rpc_url: String,
    pub chain_id: u64,
    _anvil: Running,
}

impl Chain {
    /// anvil on a free port with `chain_id`; `block_time` seconds per block (a real chain makes
    /// blocks on its own, so confirmations come without our transactions).
    pub fn start(chain_id: u64, block_time: Option<u64>) -> Self {
        let anvil = wayfare_chain::toolchain::find_tool("anvil").expect("anvil (make setup)");
        let port = free_port();
        let mut cmd = Command::new(anvil);
        cmd.args([
            "--port",
            &port.to_string(),
            "--chain-id",
            &chain_id.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(bt) = block_time {
            cmd.args(["--block-time", &bt.to_string()]);
        }
        let child = Running(cmd.spawn().expect("start anvil"));
        let chain = Self {
            rpc_url: format!("http://127.0.0.1:{port}"),
            chain_id,
            _anvil: child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while chain.try_rpc("eth_chainId", "[]").is_none() {
            assert!(
                Instant::now() < deadline,
                "anvil did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        chain
    }

    fn try_rpc(&self, method: &str, params: &str) -> Option<serde_json::Value> {
        let hostport = self.rpc_url.trim_start_matches("http://");
        let mut s = TcpStream::connect(hostport).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let req = format!(
            "POST / HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let json = out.split("\r\n\r\n").nth(1)?;
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        v.get("result").cloned()
    }

    /// A JSON-RPC call's result.
    pub fn rpc(&self, method: &str, params: &str) -> serde_json::Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|| panic!("{method} {params} failed"))
    }

    /// Gives `account` `eth` ETH (a person would send it from a wallet).
    pub fn fund(&self, account: &str, eth: u64) {
        let wei = alloy_primitives::U256::from(eth)
            * alloy_primitives::U256::from(10u64).pow(alloy_primitives::U256::from(18));
        self.rpc("anvil_setBalance", &format!(r#"["{account}","0x{wei:x}"]"#));
    }

    /// The code at `address`, as hex.
    pub fn code(&self, address: &str) -> String {
        self.rpc("eth_getCode", &format!(r#"["{address}","latest"]"#))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Writes the password file and the funded deployer's keystore into `dir`.
pub fn deployer(dir: &Path) -> (PathBuf, PathBuf) {
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let key = wayfare_chain::keystore::parse_private_key(DEV_KEY).unwrap();
    let ks = wayfare_chain::keystore::write_keystore(dir, "deployer.json", &key, PASSWORD).unwrap();
    (ks, pw)
}

/// `wayfare ARGS` with no inherited WAYFARE_* settings.
pub fn wayfare(args: &[&str]) -> Output {
    let mut cmd = Command::new(WAYFARE);
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("WAYFARE_") && !["WAYFARE_ANVIL", "WAYFARE_CAST"].contains(&k.as_str()) {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run wayfare")
}

/// `wayfare ARGS`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let o = wayfare(args);
    assert!(
        o.status.success(),
        "`wayfare {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `wayfare ARGS --json`, which must succeed.
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("`wayfare {}`: {e}: {out}", a.join(" ")))
}

/// `wayfare ARGS`, which must fail with one line on stderr containing `needle`.
pub fn fails(args: &[&str], needle: &str) -> String {
    let o = wayfare(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "`wayfare {}` succeeded",
        args.join(" ")
    );
    assert!(
        err.contains(needle),
        "`wayfare {}` said {err:?}, expected {needle:?}",
        args.join(" ")
    );
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err:?}");
    err
}
