//! One place for everything: where the config and the data dir live when no flag names them,
//! so the daemon and every CLI command find each other.
//!
//! ```text
//!              config                                   data dir (store, API token, keys)
//!  root        /etc/wayfare/wayfare.toml                /var/lib/wayfare
//!  a user      $XDG_CONFIG_HOME/wayfare/wayfare.toml    $XDG_DATA_HOME/wayfare
//!              (default ~/.config)                      (default ~/.local/share)
//! ```
//!
//! `--config` / `WAYFARE_CONFIG` and `--data-dir` / `WAYFARE_DATA_DIR` override these; a
//! `data_dir` in the config file wins over the default. The CLI reads the same config the
//! daemon reads to learn its data dir and API address.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::config::{DEFAULT_API_LISTEN, NodeConfig};

/// Which set of places applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// The config file.
    pub config: PathBuf,
    /// The data dir.
    pub data_dir: PathBuf,
}

/// The environment the defaults are computed from (a struct so tests need not set variables).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// Running as root (effective uid 0).
    pub root: bool,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config: Option<PathBuf>,
    /// `$XDG_DATA_HOME`.
    pub xdg_data: Option<PathBuf>,
}

impl Env {
    /// This process's environment.
    pub fn current() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                // The XDG spec ignores relative values.
                .filter(|p| p.is_absolute())
        };
        // SAFETY: geteuid has no preconditions and touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        Self {
            root,
            home: var("HOME"),
            xdg_config: var("XDG_CONFIG_HOME"),
            xdg_data: var("XDG_DATA_HOME"),
        }
    }

    /// The default places for this environment.
    pub fn places(&self) -> Places {
        if self.root {
            return Places {
                config: PathBuf::from("/etc/wayfare/wayfare.toml"),
                data_dir: PathBuf::from("/var/lib/wayfare"),
            };
        }
        // Without $HOME (a bare service account) fall back to the working directory.
        let home = self.home.clone().unwrap_or_else(|| PathBuf::from("."));
        let config = self
            .xdg_config
            .clone()
            .unwrap_or_else(|| home.join(".config"));
        let data = self
            .xdg_data
            .clone()
            .unwrap_or_else(|| home.join(".local/share"));
        Places {
            config: config.join("wayfare").join("wayfare.toml"),
            data_dir: data.join("wayfare"),
        }
    }
}

/// The default config file: `$WAYFARE_CONFIG`, else the standard place.
pub fn default_config() -> PathBuf {
    std::env::var_os("WAYFARE_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Env::current().places().config)
}

/// The default data dir (when the config does not set `data_dir`).
pub fn default_data_dir() -> PathBuf {
    Env::current().places().data_dir
}

/// What a client needs to reach the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonAddress {
    /// The daemon's data dir (its `api-token` is there).
    pub data_dir: PathBuf,
    /// The API address.
    pub api: SocketAddr,
    /// The config it was read from, if one was found.
    pub config: Option<PathBuf>,
}

/// Where the daemon run from `config` (or the default config) keeps its token and listens:
/// the config's `data_dir` and `[api] listen` when the file exists (with the same environment
/// overrides the daemon applies), else the defaults. A config that does not parse is an error:
/// the daemon would refuse it too.
pub fn daemon_address(config: Option<&Path>) -> Result<DaemonAddress, String> {
    let explicit = config.is_some();
    let path = config.map(Path::to_path_buf).unwrap_or_else(default_config);
    let mut found = None;
    let (mut data_dir, mut api) = (default_data_dir(), default_api());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let cfg = NodeConfig::parse(&text)
                .map_err(|why| format!("config {}: {why}", path.display()))?;
            data_dir = if cfg.data_dir.is_relative() {
                path.parent().unwrap_or(Path::new(".")).join(&cfg.data_dir)
            } else {
                cfg.data_dir
            };
            api = cfg.api.listen;
            found = Some(path);
        }
        Err(e) if explicit => {
            return Err(format!(
                "can't read the config {}: {e} (pass the daemon's --config, or create one with `wayfare init`)",
                path.display()
            ));
        }
        Err(_) => {}
    }
    if let Some(v) = std::env::var_os("WAYFARE_DATA_DIR").filter(|v| !v.is_empty()) {
        data_dir = v.into();
    }
    if let Some(v) = std::env::var("WAYFARE_API_LISTEN")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        api = v;
    }
    Ok(DaemonAddress {
        data_dir,
        api,
        config: found,
    })
}

fn default_api() -> SocketAddr {
    DEFAULT_API_LISTEN
        .parse()
        .unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_uses_etc_and_var_lib() {
        let p = Env {
            root: true,
            home: Some("/root".into()),
            xdg_config: Some("/x".into()),
            xdg_data: None,
        }
        .places();
        assert_eq!(p.config, Path::new("/etc/wayfare/wayfare.toml"));
        assert_eq!(p.data_dir, Path::new("/var/lib/wayfare"));
    }

    #[test]
    fn a_user_uses_xdg_with_the_spec_defaults() {
        let mut env = Env {
            root: false,
            home: Some("/home/ana".into()),
            ..Env::default()
        };
        let p = env.places();
        assert_eq!(
            p.config,
            Path::new("/home/ana/.config/wayfare/wayfare.toml")
        );
        assert_eq!(p.data_dir, Path::new("/home/ana/.local/share/wayfare"));
        env.xdg_config = Some("/cfg".into());
        env.xdg_data = Some("/data".into());
        let p = env.places();
        assert_eq!(p.config, Path::new("/cfg/wayfare/wayfare.toml"));
        assert_eq!(p.data_dir, Path::new("/data/wayfare"));
    }

    #[test]
    fn the_client_reads_the_data_dir_and_api_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("wayfare.toml");
        std::fs::write(
            &cfg,
            "data_dir = \"state\"\n[api]\nlisten = \"127.0.0.1:7999\"\n[chain]\nrpc_url = \"http://127.0.0.1:1\"\nmarket = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n",
        )
        .unwrap();
        let a = daemon_address(Some(&cfg)).unwrap();
        if std::env::var_os("WAYFARE_DATA_DIR").is_none() {
            assert_eq!(a.data_dir, dir.path().join("state"));
        }
        assert_eq!(a.config.as_deref(), Some(cfg.as_path()));
        if std::env::var_os("WAYFARE_API_LISTEN").is_none() {
            assert_eq!(a.api.to_string(), "127.0.0.1:7999");
        }
        let e = daemon_address(Some(&dir.path().join("missing.toml"))).unwrap_err();
        assert!(e.contains("wayfare init"), "{e}");
    }
}
