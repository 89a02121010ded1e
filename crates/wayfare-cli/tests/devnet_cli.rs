//! `wayfare devnet --sellers 3 --json` as a user runs it: the printed description is right,
//! `cast` (the real Foundry client) sees the registered sellers, `wayfare chain` acts on it,
//! bad input is one clear line with a non-zero exit, and Ctrl-C (SIGTERM) cleans up.

mod common;

use common::Running;
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const WAYFARE: &str = env!("CARGO_BIN_EXE_wayfare");

fn cast() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contracts/node_modules/@foundry-rs/cast-linux-amd64/bin/cast")
}

fn wayfare(args: &[&str]) -> Output {
    Command::new(WAYFARE)
        .args(args)
        .output()
        .expect("run wayfare")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads stdout until one whole JSON document has arrived.
fn read_json(child: &mut Child) -> serde_json::Value {
    let out = child.stdout.as_mut().expect("stdout");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match out.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                buf.push(byte[0]);
                if byte[0] == b'\n'
                    && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&buf)
                {
                    return v;
                }
            }
            Err(e) => panic!("reading devnet output: {e}"),
        }
    }
    panic!("devnet printed no JSON: {}", String::from_utf8_lossy(&buf));
}

#[test]
fn devnet_json_cast_chain_commands_and_cleanup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let dir_s = dir.to_str().unwrap();
    let child = Command::new(WAYFARE)
        .args([
            "devnet",
            "--sellers",
            "3",
            "--buyers",
            "1",
            "--json",
            "--dir",
            dir_s,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start devnet");
    let mut dn = Running(child);
    let info = read_json(&mut dn.0);

    let rpc = info["rpc_url"].as_str().expect("rpc_url").to_string();
    let market = info["market"].as_str().expect("market").to_string();
    assert_eq!(info["chain_id"], 31337);
    let sellers = info["sellers"].as_array().expect("sellers");
    assert_eq!(sellers.len(), 3);
    assert_eq!(info["buyers"].as_array().map(Vec::len), Some(1));
    for s in sellers {
        assert!(Path::new(s["account"]["keystore"].as_str().unwrap()).is_file());
        assert!(Path::new(s["signer"]["keystore"].as_str().unwrap()).is_file());
    }

    // cast sees every seller registered, active, with its signer and 1 ETH of funds.
    for s in sellers {
        let account = s["account"]["address"].as_str().unwrap();
        let out = Command::new(cast())
            .args(["call", "--rpc-url", &rpc, &market])
            .arg("seller(address)((address,address,bytes32,uint256,bool,bool,string))")
            .arg(account)
            .output()
            .expect("run cast");
        assert!(out.status.success(), "cast failed: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        let signer = s["signer"]["address"].as_str().unwrap().to_lowercase();
        assert!(text.contains(&signer), "cast shows the signer: {text}");
        assert!(
            text.contains("1000000000000000000"),
            "cast shows 1 ETH of funds: {text}"
        );
        assert!(text.contains("true, true"), "registered and active: {text}");
    }

    // wayfare chain reads the same through --devnet.
    let out = wayfare(&[
        "chain", "--devnet", dir_s, "--as", "seller-2", "seller", "show", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["signer"].as_str().map(str::to_lowercase),
        sellers[1]["signer"]["address"]
            .as_str()
            .map(str::to_lowercase)
    );
    assert_eq!(shown["funds_wei"], "1000000000000000000");

    // A seller adds funds and takes them back; the record follows.
    let out = wayfare(&[
        "chain", "--devnet", dir_s, "--as", "seller-1", "seller", "fund", "0.5eth",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wayfare(&[
        "chain", "--devnet", dir_s, "--as", "seller-1", "seller", "show", "--json",
    ]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["funds_wei"], "1500000000000000000");

    // Bad input: one clear line on stderr, non-zero exit, nothing done.
    let pw = tmp.path().join("wrong-password");
    std::fs::write(&pw, "not it\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "chain",
                "--devnet",
                dir_s,
                "--as",
                "buyer-1",
                "--password-file",
                pw.to_str().unwrap(),
                "withdraw",
            ],
            "wrong password",
        ),
        (
            vec![
                "chain",
                "--rpc-url",
                "http://127.0.0.1:9",
                "--market",
                &market,
                "info",
            ],
            "can't reach the Ethereum node",
        ),
        (
            vec!["chain", "--devnet", dir_s, "--chain-id", "5", "info"],
            "is on chain 31337, not chain 5",
        ),
        (
            vec![
                "chain",
                "--devnet",
                dir_s,
                "--as",
                "buyer-1",
                "seller",
                "deactivate",
            ],
            "is not a registered seller",
        ),
        (
            vec![
                "chain", "--devnet", dir_s, "--as", "seller-1", "seller", "withdraw", "7eth",
            ],
            "less than the 7 ETH asked",
        ),
        (
            vec!["chain", "--devnet", dir_s, "--as", "nobody", "withdraw"],
            "has no account named `nobody`",
        ),
        (
            vec![
                "chain", "--devnet", dir_s, "--as", "seller-1", "seller", "fund", "1.5",
            ],
            "wei has no fractions",
        ),
        (
            vec![
                "chain",
                "--rpc-url",
                &rpc,
                "--market",
                &market,
                "--private-key",
                "0x1234",
                "withdraw",
            ],
            "private key is not 32 bytes",
        ),
    ];
    for (args, expect) in cases {
        let out = wayfare(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.contains(expect),
            "{args:?}: expected `{expect}` in: {err}"
        );
        let error_lines = err.lines().filter(|l| l.starts_with("error")).count();
        assert_eq!(error_lines, 1, "{args:?}: one error line, got: {err}");
    }
    let out = wayfare(&[
        "chain", "--devnet", dir_s, "--as", "seller-1", "seller", "show", "--json",
    ]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["funds_wei"], "1500000000000000000",
        "failed withdrawal took nothing"
    );

    // SIGTERM (as Ctrl-C) stops anvil and removes the directory.
    dn.terminate();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = dn.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "devnet did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "devnet exit status {status}");
    assert!(!dir.exists(), "devnet dir removed");
    let out = wayfare(&["chain", "--rpc-url", &rpc, "--market", &market, "info"]);
    assert!(!out.status.success(), "anvil is gone");
}

#[test]
fn help_is_complete() {
    let out = wayfare(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("devnet") && text.contains("chain"), "{text}");
    let out = wayfare(&["chain", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "seller",
        "channel",
        "settle",
        "start-close",
        "finalize",
        "withdraw",
        "rate",
        "sweep-burns",
        "--json",
        "--keystore",
        "--private-key",
    ] {
        assert!(text.contains(sub), "chain --help lacks {sub}: {text}");
    }
}
