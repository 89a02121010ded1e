//! Flushing a tunnel address's conntrack entries when its session ends (`conntrack -D`, from
//! Debian's `conntrack` package), so no NAT state of the last buyer outlives its session.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use tracing::{debug, warn};

static MISSING_LOGGED: AtomicBool = AtomicBool::new(false);

/// What a flush did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Entries whose original source or destination was the address were deleted.
    Done,
    /// The `conntrack` tool is not installed (logged once per process).
    NoTool,
    /// The tool ran and failed (no conntrack support in the kernel, ...).
    Failed(String),
}

/// Delete the conntrack entries of `addr` (both directions) in the calling thread's namespace.
pub(crate) fn flush(addr: Ipv4Addr) -> Flush {
    let a = addr.to_string();
    for dir in ["--orig-src", "--orig-dst"] {
        let out = Command::new("conntrack")
            .args(["-D", dir, &a])
            .stdin(Stdio::null())
            .output();
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !MISSING_LOGGED.swap(true, Ordering::Relaxed) {
                    warn!(
                        "cannot flush a released tunnel address's conntrack entries: the `conntrack` tool is missing (install the Debian package `conntrack`); sessions are unaffected"
                    );
                }
                return Flush::NoTool;
            }
            Err(e) => return Flush::Failed(e.to_string()),
            // Exit status 1 with "0 flow entries have been deleted" means nothing to flush.
            Ok(o) if o.status.success() || nothing_to_flush(&o) => {}
            Ok(o) => {
                let msg = String::from_utf8_lossy(&o.stderr).trim().to_owned();
                debug!(%addr, error = %msg, "conntrack flush failed");
                return Flush::Failed(msg);
            }
        }
    }
    debug!(%addr, "conntrack entries flushed");
    Flush::Done
}

fn nothing_to_flush(o: &std::process::Output) -> bool {
    [&o.stderr, &o.stdout]
        .iter()
        .any(|b| String::from_utf8_lossy(b).contains("0 flow entries"))
}
