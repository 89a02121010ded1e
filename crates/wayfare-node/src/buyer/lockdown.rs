//! The buyer's lockdown as the daemon runs it: when it goes up (the first `wayfare connect` of
//! a WireGuard session with the kill switch on, daemon start with `[buyer] lockdown =
//! "always"`, or found from an earlier run that crashed), what it lets out (the live tunnels,
//! their sellers' endpoints, the node's own hosts) and when it comes off (`wayfare disconnect`,
//! `wayfare lockdown off`). Sessions ending, sellers vanishing and switches happen under it.
//!
//! The marker file in the data dir is written before the rules go in and removed after they
//! come out, so a restart after a crash finds the lockdown and keeps it.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use wayfare_tunnel::lockdown::{self, LockdownRules};

use crate::{api_types::LockdownView, config::LockdownMode, error::NodeError};

/// The daemon's lockdown state.
pub(crate) struct Lockdown {
    /// The kill switch is on in the config (a WireGuard `connect` engages the lockdown).
    kill_switch: bool,
    mode: LockdownMode,
    marker: PathBuf,
    engaged: bool,
    hosts: Vec<Ipv4Addr>,
    rules: LockdownRules,
    last_error: Option<String>,
}

fn marker_in(data_dir: &Path) -> PathBuf {
    data_dir.join("lockdown.engaged")
}

impl Lockdown {
    /// The state at daemon start, before anything is installed.
    pub(crate) fn new(
        kill_switch: bool,
        mode: LockdownMode,
        data_dir: &Path,
        hosts: Vec<Ipv4Addr>,
    ) -> Self {
        Self {
            kill_switch,
            mode,
            marker: marker_in(data_dir),
            engaged: false,
            rules: LockdownRules {
                hosts: hosts.clone(),
                ..LockdownRules::default()
            },
            hosts,
            last_error: None,
        }
    }

    /// At daemon start: a lockdown left by an earlier run (its marker, or its table still in
    /// the kernel) is kept and repaired; `lockdown = "always"` installs it now.
    pub(crate) fn start(&mut self) -> Result<(), NodeError> {
        let left = self.marker.exists() || lockdown::installed();
        let always = self.kill_switch && self.mode == LockdownMode::Always;
        if left || always {
            if left {
                tracing::warn!(
                    "the lockdown from an earlier run is still up: kept (nothing leaves outside the tunnel until `wayfare disconnect` or `wayfare lockdown off`)"
                );
            }
            self.engage()?;
        }
        Ok(())
    }

    /// Whether a WireGuard `connect` engages it.
    pub(crate) fn applies_to_wireguard(&self) -> bool {
        self.kill_switch
    }

    /// Whether it is up.
    pub(crate) fn engaged(&self) -> bool {
        self.engaged
    }

    /// Puts it up (or keeps it up) with the current rules. The marker goes first.
    pub(crate) fn engage(&mut self) -> Result<(), NodeError> {
        std::fs::write(&self.marker, b"engaged\n").map_err(|e| {
            NodeError::Invalid(format!(
                "can't record the lockdown in {}: {e}; fix the data dir's permissions",
                self.marker.display()
            ))
        })?;
        self.engaged = true;
        self.apply()
    }

    /// The live tunnels and endpoints changed: the rules follow (if it is up).
    pub(crate) fn update(
        &mut self,
        tunnels: Vec<String>,
        endpoints: Vec<Ipv4Addr>,
    ) -> Result<(), NodeError> {
        self.rules = LockdownRules {
            tunnels,
            endpoints,
            hosts: self.hosts.clone(),
        };
        if self.engaged { self.apply() } else { Ok(()) }
    }

    fn apply(&mut self) -> Result<(), NodeError> {
        match lockdown::install(&self.rules) {
            Ok(()) => {
                self.last_error = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "lockdown not updated; the previous rules stay");
                self.last_error = Some(e.to_string());
                Err(e.into())
            }
        }
    }

    /// Takes it off: the rules go, then the marker.
    pub(crate) fn lift(&mut self) {
        if !self.engaged && !self.marker.exists() && !lockdown::installed() {
            return;
        }
        lockdown::remove();
        let _ = std::fs::remove_file(&self.marker);
        self.engaged = false;
        tracing::info!("lockdown lifted: traffic leaves this host normally again");
    }

    /// After `wayfare disconnect` left every live session: lifted, unless `always`.
    pub(crate) fn after_disconnect(&mut self) {
        if self.mode != LockdownMode::Always {
            self.lift();
        }
    }

    /// As the API shows it.
    pub(crate) fn view(&self) -> LockdownView {
        LockdownView {
            engaged: self.engaged,
            kill_switch: self.kill_switch,
            mode: match self.mode {
                LockdownMode::Connect => "connect".into(),
                LockdownMode::Always => "always".into(),
            },
            tunnels: self.rules.tunnels.clone(),
            endpoints: self.rules.endpoints.iter().map(|e| e.to_string()).collect(),
            hosts: self.hosts.iter().map(|h| h.to_string()).collect(),
            last_error: self.last_error.clone(),
        }
    }
}
