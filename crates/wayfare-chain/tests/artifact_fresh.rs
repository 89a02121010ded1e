//! The ABI and bytecode compiled into this crate are those of `contracts/src/WayfareMarket.sol`:
//! `contracts/export-artifact --check` rebuilds the contract and compares.

use std::{path::Path, process::Command};

#[test]
fn committed_artifact_matches_the_solidity_source() {
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    assert!(
        contracts.join("node_modules").is_dir(),
        "contracts/node_modules is missing: run `make setup` (npm ci in contracts/) first"
    );
    let out = Command::new(contracts.join("export-artifact"))
        .arg("--check")
        .output()
        .expect("run contracts/export-artifact --check");
    assert!(
        out.status.success(),
        "artifact is stale or the check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn artifact_has_abi_and_bytecode() {
    let v: serde_json::Value =
        serde_json::from_str(wayfare_chain::bindings::ARTIFACT_JSON).expect("artifact is JSON");
    assert!(v["abi"].as_array().is_some_and(|a| !a.is_empty()), "no ABI");
    let code = v["bytecode"]["object"].as_str().unwrap_or_default();
    assert!(code.len() > 1000 && code.starts_with("0x"), "no bytecode");
}
