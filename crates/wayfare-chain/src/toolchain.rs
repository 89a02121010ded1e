//! Finds the pinned Foundry binaries (anvil, cast) that `npm ci` put under `contracts/`.

use std::path::{Path, PathBuf};

/// Where this checkout's npm toolchain lives (known at build time).
const CONTRACTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts");

/// A Foundry binary that can't be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "{tool} not found (looked at {looked}): run `make setup` (npm ci in contracts/), set {env}, or put {tool} on PATH"
)]
pub struct ToolNotFound {
    /// The binary's name.
    pub tool: String,
    /// The variable that overrides its path.
    pub env: String,
    /// The places searched.
    pub looked: String,
}

/// Locates `tool` (`anvil`, `cast`, `forge`): `$WAYFARE_<TOOL>`, then
/// `contracts/node_modules/@foundry-rs/<tool>-linux-amd64/bin/<tool>` in the checkout around the
/// current directory, then in the checkout this was built from, then `PATH`.
pub fn find_tool(tool: &str) -> Result<PathBuf, ToolNotFound> {
    let env = format!("WAYFARE_{}", tool.to_ascii_uppercase());
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os(&env) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(p.display().to_string());
    }
    // The checkout we run in first (a build cache shared between clones may hold a binary
    // built in another checkout, whose build-time path is then someone else's toolchain).
    let here = std::env::current_dir().ok().and_then(|d| {
        d.ancestors()
            .map(|a| a.join("contracts"))
            .find(|c| c.join("package.json").is_file())
    });
    for contracts in here.into_iter().chain([PathBuf::from(CONTRACTS_DIR)]) {
        let npm = contracts
            .join("node_modules/@foundry-rs")
            .join(format!("{tool}-linux-amd64"))
            .join("bin")
            .join(tool);
        if is_executable(&npm) {
            return Ok(npm);
        }
        looked.push(npm.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(tool);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    looked.push("PATH".into());
    Err(ToolNotFound {
        tool: tool.to_string(),
        env,
        looked: looked.join(", "),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
