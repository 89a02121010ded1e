//! A new operator's first commands on a chain they name (a real anvil with its own chain id):
//! `wayfare chain deploy`, `wayfare init --seller | --buyer` (keys and config written once and
//! atomically, the chain checked, a seller registered and funded), every seller action by hand
//! (`reactivate`), and the systemd unit. Each mistake is one line naming the fix.

mod common;

use std::path::Path;

use common::chain::{Chain, PASSWORD, deployer, fails, ok, ok_json};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Deploys a market on `chain`; returns (address, deployment block).
fn deploy(chain: &Chain, dir: &Path) -> (String, u64) {
    let (ks, pw) = deployer(dir);
    let d = ok_json(&[
        "chain",
        "deploy",
        "--rpc-url",
        &chain.rpc_url,
        "--keystore",
        s(&ks),
        "--password-file",
        s(&pw),
        "--challenge-period",
        "120",
    ]);
    (
        d["market"].as_str().unwrap().to_string(),
        d["deploy_block"].as_u64().unwrap(),
    )
}

#[test]
fn chain_deploy_prints_a_market_with_code_and_names_each_mistake() {
    let chain = Chain::start(4201, None);
    let tmp = tempfile::tempdir().unwrap();
    let (ks, pw) = deployer(tmp.path());
    let rpc = chain.rpc_url.as_str();
    let d = ok_json(&[
        "chain",
        "deploy",
        "--rpc-url",
        rpc,
        "--keystore",
        s(&ks),
        "--password-file",
        s(&pw),
        "--challenge-period",
        "120",
        "--chain-id",
        "4201",
    ]);
    let market = d["market"].as_str().unwrap();
    assert_eq!(d["chain_id"], 4201);
    assert!(d["deploy_block"].as_u64().unwrap() >= 1, "{d}");
    assert!(chain.code(market).len() > 1000, "no code at {market}");
    // The market works with the other chain commands.
    let info = ok_json(&["chain", "info", "--rpc-url", rpc, "--market", market]);
    assert_eq!(info["challenge_period"], 120);
    // Human output names the next step.
    let text = ok(&[
        "chain",
        "deploy",
        "--rpc-url",
        rpc,
        "--keystore",
        s(&ks),
        "--password-file",
        s(&pw),
    ]);
    assert!(
        text.contains("deployment block") && text.contains("next: wayfare init --seller"),
        "{text}"
    );

    // Mistakes, one line each.
    let base = |extra: &[&str]| {
        let mut v = vec![
            "chain",
            "deploy",
            "--keystore",
            s(&ks),
            "--password-file",
            s(&pw),
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, needle: &str| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&a, needle);
    };
    run(
        base(&["--rpc-url", "http://127.0.0.1:9"]),
        "check --rpc-url",
    );
    run(base(&["--rpc-url", "ftp://x"]), "not a JSON-RPC URL");
    run(base(&["--rpc-url", rpc, "--chain-id", "1"]), "not chain 1");
    run(
        base(&["--rpc-url", rpc, "--challenge-period", "5"]),
        "out of range",
    );
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    fails(
        &[
            "chain",
            "deploy",
            "--rpc-url",
            rpc,
            "--keystore",
            s(&ks),
            "--password-file",
            s(&wrong),
        ],
        "wrong password",
    );
    // An account without ETH.
    let poor = wayfare_chain::keystore::write_keystore(
        tmp.path(),
        "poor.json",
        &wayfare_chain::keystore::PrivateKeySigner::random(),
        PASSWORD,
    )
    .unwrap();
    fails(
        &[
            "chain",
            "deploy",
            "--rpc-url",
            rpc,
            "--keystore",
            s(&poor),
            "--password-file",
            s(&pw),
        ],
        "send it ETH",
    );
    fails(&["chain", "deploy", "--rpc-url", rpc], "--keystore");
}

#[test]
fn init_seller_writes_keys_and_config_once_then_registers_and_reactivates() {
    let chain = Chain::start(4202, None);
    let tmp = tempfile::tempdir().unwrap();
    let (market, block) = deploy(&chain, tmp.path());
    let pw = tmp.path().join("password");
    let cfg = tmp.path().join("etc/wayfare.toml");
    let data = tmp.path().join("data");
    let block = block.to_string();
    let init = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "init",
            "--seller",
            "--rpc-url",
            &chain.rpc_url,
            "--market",
            &market,
            "--start-block",
            &block,
            "--config",
            s(&cfg),
            "--data-dir",
            s(&data),
            "--password-file",
            s(&pw),
            "--public-host",
            "203.0.113.7",
            "--advertise",
            "direct",
            "--region",
            "eu",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };

    // A market address without code, or the wrong chain: nothing is written.
    let mut bad = init(&[]);
    let at = bad.iter().position(|a| a == &market).unwrap();
    bad[at] = "0x000000000000000000000000000000000000bEEF".into();
    fails(&strs(&bad), "no contract");
    fails(&strs(&init(&["--chain-id", "1"])), "not chain 1");
    assert!(!cfg.exists() && !data.exists(), "a failed init wrote files");
    // A seller must say how it advertises.
    let mut no_adv = init(&[]);
    let at = no_adv.iter().position(|a| a == "--advertise").unwrap();
    no_adv.drain(at..at + 2);
    fails(&strs(&no_adv), "--relay");

    let r = ok_json(&strs(&init(&[])));
    assert_eq!(r["config_written"], true);
    assert_eq!(r["chain_id"], 4202);
    assert_eq!(r["registered"], false);
    assert!(r["next"].as_str().unwrap().contains("send ETH"), "{r}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    for k in [
        "capacity_bps",
        "exit_allow",
        "min_deposit",
        "pause_timeout_secs",
        "chain_id = 4202",
    ] {
        assert!(text.contains(k), "the written config lacks {k}:\n{text}");
    }
    assert!(!text.contains("[buyer]"), "{text}");
    let account = r["accounts"][0]["address"].as_str().unwrap().to_string();
    let signer = r["accounts"][1]["address"].as_str().unwrap().to_string();
    let keys = [
        "keystores/seller.json",
        "keystores/seller-signer.json",
        "p2p.key",
    ];
    let before: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| std::fs::read(data.join(k)).unwrap())
        .collect();

    // Without ETH it can't register, and says so.
    fails(&strs(&init(&["--register"])), "send it ETH");
    chain.fund(&account, 5);
    chain.fund(&signer, 1);
    let r = ok_json(&strs(&init(&["--register", "--funds", "0.1eth"])));
    assert_eq!(r["registered"], true, "{r}");
    assert_eq!(r["active"], true);
    assert_eq!(r["seller_funds_wei"], "100000000000000000");
    assert_eq!(r["config_written"], false);
    assert!(
        r["next"]
            .as_str()
            .unwrap()
            .starts_with("wayfare daemon --config"),
        "{r}"
    );
    // Re-running kept every key and the config.
    let after: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| std::fs::read(data.join(k)).unwrap())
        .collect();
    assert_eq!(before, after, "a key changed on re-run");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let mut w = init(&[]);
    let at = w.iter().position(|a| a == s(&pw)).unwrap();
    w[at] = s(&wrong).into();
    fails(&strs(&w), "wrong password");

    // Deactivate and undo it by hand.
    let ks = data.join("keystores/seller.json");
    let conn = [
        "--rpc-url",
        &chain.rpc_url,
        "--market",
        &market,
        "--keystore",
        s(&ks),
        "--password-file",
        s(&pw),
    ];
    let by_hand = |cmd: &[&str]| {
        let mut v = vec!["chain"];
        v.extend_from_slice(&conn);
        v.extend_from_slice(cmd);
        ok_json(&v)
    };
    by_hand(&["seller", "deactivate"]);
    assert_eq!(by_hand(&["seller", "show"])["active"], false);
    by_hand(&["seller", "reactivate"]);
    assert_eq!(by_hand(&["seller", "show"])["active"], true);
}

#[test]
fn init_buyer_writes_a_buyer_config_the_daemon_accepts() {
    let chain = Chain::start(4203, None);
    let tmp = tempfile::tempdir().unwrap();
    let (market, _) = deploy(&chain, tmp.path());
    let pw = tmp.path().join("password");
    let cfg = tmp.path().join("buyer.toml");
    let data = tmp.path().join("buyer");
    let r = ok_json(&[
        "init",
        "--buyer",
        "--rpc-url",
        &chain.rpc_url,
        "--market",
        &market,
        "--config",
        s(&cfg),
        "--data-dir",
        s(&data),
        "--password-file",
        s(&pw),
        "--deposit",
        "0.02eth",
    ]);
    assert_eq!(r["accounts"].as_array().unwrap().len(), 1);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("deposit = \"20000000000000000\""), "{text}");
    assert!(!text.contains("[seller]"));
    let parsed = wayfare_node::NodeConfig::load(&cfg).expect("the daemon accepts it");
    assert_eq!(parsed.data_dir, data);
    assert_eq!(parsed.chain.chain_id, Some(4203));
    // An existing keystore of the same name is opened, never replaced.
    let ks = data.join("keystores/buyer.json");
    let before = std::fs::read(&ks).unwrap();
    std::fs::remove_file(&cfg).unwrap();
    ok(&[
        "init",
        "--buyer",
        "--rpc-url",
        &chain.rpc_url,
        "--market",
        &market,
        "--config",
        s(&cfg),
        "--data-dir",
        s(&data),
        "--password-file",
        s(&pw),
    ]);
    assert_eq!(std::fs::read(&ks).unwrap(), before);
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipping: systemd-analyze is not installed (apt-get install systemd)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let unit = tmp.path().join("wayfare.service");
    // The unit as installed, running this build's binary.
    let text = ok(&["service", "unit", "--bin", common::chain::WAYFARE]);
    for must in [
        "User=wayfare",
        "AmbientCapabilities=CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_ADMIN\n",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        // Only the state dir, and resolv.conf for a WireGuard buyer's DNS.
        "ReadWritePaths=/var/lib/wayfare -/etc/resolv.conf\n",
        "Environment=WAYFARE_DATA_DIR=/var/lib/wayfare",
    ] {
        assert!(text.contains(must), "the unit lacks {must:?}");
    }
    assert!(text.contains(&format!("ExecStart={} ", common::chain::WAYFARE)));
    std::fs::write(&unit, &text).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Only complaints about this unit count (the host's own units may be odd in a container).
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("wayfare.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {err}"
    );
}

#[test]
fn service_install_dry_run_lists_the_steps_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin/wayfare");
    let units = tmp.path().join("units");
    let out = ok(&[
        "service",
        "install",
        "--dry-run",
        "--bin",
        s(&bin),
        "--unit-dir",
        s(&units),
    ]);
    for step in [
        "copy",
        "/etc/wayfare",
        "/var/lib/wayfare",
        "units/wayfare.service",
        "daemon-reload",
        "systemctl enable --now wayfare",
    ] {
        assert!(out.contains(step), "dry run lacks {step}: {out}");
    }
    assert!(!bin.exists() && !units.exists(), "a dry run wrote files");
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}
