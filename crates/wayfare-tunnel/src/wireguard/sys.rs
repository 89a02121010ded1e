//! Thin wrappers over `ip`, `nft` and sysctl. Commands run in the calling thread's network
//! namespace (a child inherits it), so a namespace-bound runtime configures its namespace.

use std::{
    io::Write,
    net::Ipv4Addr,
    process::{Command, Stdio},
};

use crate::TunnelError;

/// Run `program args`; error with its stderr when it fails.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, TunnelError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TunnelError::System(format!("run {program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(TunnelError::System(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Load an nft script (`nft -f -`).
pub(crate) fn nft_script(script: &str) -> Result<(), TunnelError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TunnelError::System(format!("run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| TunnelError::System(format!("write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| TunnelError::System(format!("nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        // One line for the person; the ruleset goes to the debug log.
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.contains("Error"))
            .unwrap_or(err.trim());
        tracing::debug!(%script, "nft rejected this ruleset");
        Err(TunnelError::System(format!(
            "nft rejected the ruleset: {}",
            first.trim()
        )))
    }
}

/// Delete an nft table if it exists (no error when it does not).
pub(crate) fn nft_delete_table(family: &str, name: &str) {
    let _ = Command::new("nft")
        .args(["delete", "table", family, name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Write a sysctl under /proc/sys (in this thread's namespace).
pub(crate) fn sysctl(key: &str, value: &str) -> Result<(), TunnelError> {
    run("sysctl", &["-qw", &format!("{key}={value}")]).map(|_| ())
}

/// `ip route get DST`: the gateway (if any) and device used to reach `dst` now.
pub(crate) fn route_to(dst: Ipv4Addr) -> Result<(Option<Ipv4Addr>, String), TunnelError> {
    let out = run("ip", &["-4", "route", "get", &dst.to_string()])?;
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |k: &str| {
        words
            .iter()
            .position(|w| *w == k)
            .and_then(|i| words.get(i + 1))
    };
    let dev = after("dev")
        .ok_or_else(|| TunnelError::System(format!("no route to {dst}: {out}")))?
        .to_string();
    Ok((after("via").and_then(|v| v.parse().ok()), dev))
}

/// The network namespace of the thread that created it, so teardown in `Drop` (which may
/// run on any thread) configures the same namespace.
#[derive(Debug)]
pub(crate) struct NetnsHandle(std::fs::File);

impl NetnsHandle {
    pub(crate) fn current() -> Result<Self, TunnelError> {
        std::fs::File::open("/proc/thread-self/ns/net")
            .map(Self)
            .map_err(|e| TunnelError::System(format!("open own netns: {e}")))
    }

    /// Run `f` on a helper thread inside this namespace and wait for it.
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Option<T> {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid netns fd changes only this helper thread.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return None;
                }
                Some(f())
            })
            .join()
            .ok()
            .flatten()
        })
    }
}
