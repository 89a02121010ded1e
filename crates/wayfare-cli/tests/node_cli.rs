//! The daemon's client and config, as a user meets them without a running daemon: every
//! mistake is one line that says what to do, with a non-zero exit.

use std::process::{Command, Output};

const WAYFARE: &str = env!("CARGO_BIN_EXE_wayfare");

fn wayfare(args: &[&str]) -> Output {
    Command::new(WAYFARE)
        .args(args)
        .env_remove("WAYFARE_API")
        .env_remove("WAYFARE_DATA_DIR")
        .output()
        .expect("run wayfare")
}

fn fails_with(args: &[&str], needle: &str) {
    let o = wayfare(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "`wayfare {}` succeeded",
        args.join(" ")
    );
    assert!(
        err.contains(needle),
        "`wayfare {}` said {err:?}, expected it to mention {needle:?}",
        args.join(" ")
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one line expected, got {err:?}"
    );
}

#[test]
fn client_without_a_daemon_says_how_to_start_one() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("api-token");
    std::fs::write(&token, "abc").unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    fails_with(
        &[
            "status",
            "--api",
            "127.0.0.1:9",
            "--token-file",
            token.to_str().unwrap(),
        ],
        "the daemon is not running",
    );
    fails_with(
        &[
            "offers",
            "--data-dir",
            tmp.path().join("nope").to_str().unwrap(),
        ],
        "can't read the API token",
    );
}

#[test]
fn bad_configs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    fails_with(
        &[
            "daemon",
            "--config",
            tmp.path().join("missing.toml").to_str().unwrap(),
        ],
        "pass --config PATH",
    );
    let base = "[chain]\nrpc_url = \"http://127.0.0.1:1\"\nmarket = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n";
    let cases = [
        (
            format!("{base}[buyer]\nkeystore = \"b.json\"\ncolour = 1\n"),
            "colour",
        ),
        (base.to_string(), "neither [seller] nor [buyer]"),
        (
            format!("[api]\nlisten = \"0.0.0.0:7767\"\n{base}[buyer]\nkeystore = \"b.json\"\n"),
            "loopback",
        ),
        (
            format!("{base}[buyer]\nkeystore = \"b.json\"\ndeposit = \"ten\"\n"),
            "not an amount",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let p = tmp.path().join(format!("c{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let o = wayfare(&["daemon", "--config", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            err.contains(needle),
            "config {i}: {err:?} should mention {needle:?}"
        );
    }
}

#[test]
fn help_lists_the_node_commands() {
    let o = wayfare(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for c in [
        "daemon",
        "offers",
        "connect",
        "status",
        "disconnect",
        "channels",
        "close",
        "seller",
        "demo",
    ] {
        assert!(out.contains(c), "--help does not list {c}: {out}");
    }
    let o = wayfare(&["connect", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for f in [
        "--seller",
        "--service",
        "--max-price-per-mib",
        "--deposit",
        "--json",
        "--api",
    ] {
        assert!(out.contains(f), "connect --help lacks {f}");
    }
}

#[test]
fn the_client_finds_the_daemon_through_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("wayfare.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"state\"\n[api]\nlisten = \"127.0.0.1:9\"\n[chain]\nrpc_url = \"http://127.0.0.1:1\"\nmarket = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n[buyer]\nkeystore = \"b.json\"\n",
    )
    .unwrap();
    // The token is looked for in the config's data_dir (relative to the config).
    let want = tmp.path().join("state/api-token");
    fails_with(
        &["status", "--config", cfg.to_str().unwrap()],
        &format!("can't read the API token {}", want.display()),
    );
    std::fs::create_dir_all(want.parent().unwrap()).unwrap();
    std::fs::write(&want, "t").unwrap();
    // ... and the API address in its [api] listen.
    fails_with(
        &["status", "--config", cfg.to_str().unwrap()],
        "not running at http://127.0.0.1:9",
    );
    fails_with(
        &[
            "status",
            "--config",
            tmp.path().join("none.toml").to_str().unwrap(),
        ],
        "wayfare init",
    );
}
