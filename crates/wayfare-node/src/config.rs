//! The daemon's TOML config and the environment overrides. Every key, its default and what it
//! does is in `crates/wayfare-node/config-reference.toml` (see [`crate::config_template`], whose
//! tests hold it to these structs); `wayfare init` writes a copy for its role.
//!
//! Environment overrides (after the file): `WAYFARE_DATA_DIR`, `WAYFARE_API_LISTEN`,
//! `WAYFARE_RPC_URL`, `WAYFARE_MARKET`, `WAYFARE_PASSWORD_FILE`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};
use wayfare_proto::Service;

/// A config that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source} (pass --config PATH or create the file)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config {path}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong (with the line).
        why: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Store, API token and p2p key live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The REST API.
    #[serde(default)]
    pub api: ApiConfig,
    /// The chain.
    pub chain: ChainConfig,
    /// The p2p network.
    #[serde(default)]
    pub p2p: P2pSection,
    /// The seller role.
    pub seller: Option<SellerConfig>,
    /// The buyer role.
    pub buyer: Option<BuyerConfig>,
}

fn default_data_dir() -> PathBuf {
    crate::paths::default_data_dir()
}

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address (loopback).
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
}

/// The API's default address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7767";

fn default_api_listen() -> SocketAddr {
    DEFAULT_API_LISTEN
        .parse()
        .unwrap_or_else(|_| unreachable!())
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
        }
    }
}

/// `[chain]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// The market contract.
    pub market: Address,
    /// Refuse another chain.
    pub chain_id: Option<u64>,
    /// Keystore password file (else the `WAYFARE_PASSWORD` variable).
    pub password_file: Option<PathBuf>,
    /// First block to read events from.
    #[serde(default)]
    pub start_block: u64,
    /// Event poll period.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Blocks the reputation index re-reads below where it stopped, to see reorgs.
    #[serde(default = "default_reorg_depth")]
    pub reorg_depth: u64,
    /// How many blocks deep (1 = the head block) a market event must be before the node acts on
    /// it: the seller reveals only for a `ChannelOpened` this deep. At least 1.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
}

fn default_confirmations() -> u64 {
    3
}

fn default_reorg_depth() -> u64 {
    12
}

fn default_poll_ms() -> u64 {
    500
}

/// `[p2p]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// Listen multiaddrs.
    #[serde(default = "default_p2p_listen")]
    pub listen: Vec<String>,
    /// Peers to join through.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Which of its addresses the node lets others learn: `"relay"` (only relay circuit
    /// addresses, so a seller's IP leaves it only inside a sealed reveal, after a channel is
    /// paid for; the default for a seller) or `"direct"` (its listen addresses; the default
    /// for a buyer or a relay).
    #[serde(default)]
    pub advertise: Option<AdvertiseMode>,
    /// Relays (each `/ip4/…/tcp/…/p2p/<peer id>`): a node advertising `"relay"` reserves a slot on
    /// each; every node tries them to reach a peer it has no address for.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Serve as a circuit relay for others (any node may; a node with no role may only relay).
    #[serde(default)]
    pub relay_server: bool,
    /// When relaying: the longest a circuit stays up, in seconds (a session reopens one when it
    /// lapses).
    #[serde(default = "default_relay_circuit_secs")]
    pub relay_circuit_secs: u64,
    /// When relaying: the most bytes one circuit carries (session messages only).
    #[serde(default = "default_relay_circuit_bytes")]
    pub relay_circuit_bytes: u64,
}

/// `[p2p] advertise`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvertiseMode {
    /// Only relay circuit addresses.
    Relay,
    /// The node's own listen addresses.
    Direct,
}

fn default_relay_circuit_secs() -> u64 {
    60 * 60
}

fn default_relay_circuit_bytes() -> u64 {
    16 * 1024 * 1024
}

fn default_p2p_listen() -> Vec<String> {
    vec!["/ip4/0.0.0.0/tcp/0".into()]
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            listen: default_p2p_listen(),
            bootstrap: Vec::new(),
            advertise: None,
            relays: Vec::new(),
            relay_server: false,
            relay_circuit_secs: default_relay_circuit_secs(),
            relay_circuit_bytes: default_relay_circuit_bytes(),
        }
    }
}

/// A wei amount written as a decimal string (TOML integers stop at 2^63).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wei(pub U256);

impl Serialize for Wei {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Wei {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(u64),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(U256::from(n))),
            Raw::S(s) => wayfare_chain::units::parse_amount(&s)
                .map(Self)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Wei {
    /// As u128, or a config error naming `field`.
    pub fn to_u128(self, field: &str) -> Result<u128, ConfigError> {
        u128::try_from(self.0)
            .map_err(|_| ConfigError::Invalid(format!("{field} is too large (max 2^128-1 wei)")))
    }
}

/// `[seller]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerConfig {
    /// The registered account's keystore (needed to withdraw earnings).
    pub account_keystore: Option<PathBuf>,
    /// The account address (when no account keystore is given).
    pub account: Option<Address>,
    /// The hot signer's keystore.
    pub signer_keystore: PathBuf,
    /// Region announced.
    #[serde(default = "default_region")]
    pub region: String,
    /// Services sold.
    #[serde(default = "default_services")]
    pub services: Vec<ServiceName>,
    /// Host buyers dial (only ever sent inside sealed reveals). Empty: the external address
    /// the home router reports when it maps the ports (`port_mapping`).
    #[serde(default)]
    pub public_host: String,
    /// Ask the home router (UPnP-IGD) to map the service ports, renewed while running and
    /// removed at shutdown; buyers then dial the mapped external address.
    #[serde(default = "default_true")]
    pub port_mapping: bool,
    /// Shadowsocks listen address.
    #[serde(default = "default_ss_listen")]
    pub shadowsocks_listen: SocketAddr,
    /// WireGuard UDP port.
    #[serde(default = "default_wg_port")]
    pub wireguard_port: u16,
    /// WireGuard TUN name.
    #[serde(default = "default_wg_tun")]
    pub wireguard_tun: String,
    /// Tunnel addresses handed to WireGuard buyers (the first host is the seller's).
    #[serde(default = "default_wg_pool")]
    pub wireguard_pool: String,
    /// Destinations the exit may also reach although private (CIDRs), e.g. a lab network.
    #[serde(default)]
    pub exit_allow: Vec<String>,
    /// WireGuard: serve DNS to buyers on the tunnel's gateway address (named in the reveal).
    #[serde(default = "default_true")]
    pub serve_dns: bool,
    /// Where that DNS is resolved (`ip:port`); empty: the nameservers in /etc/resolv.conf.
    #[serde(default)]
    pub dns_upstream: Vec<SocketAddr>,
    /// X.
    pub price_per_mib: Wei,
    /// Y.
    pub price_per_second: Wei,
    /// Z.
    #[serde(default)]
    pub seller_burn: Wei,
    /// W.
    #[serde(default)]
    pub buyer_burn: Wei,
    /// Least deposit.
    #[serde(default)]
    pub min_deposit: Wei,
    /// Seconds between vouchers.
    #[serde(default = "default_interval")]
    pub payment_interval: u32,
    /// Seconds after an interval before a missing voucher ends the session.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
    /// Capacity announced, bits per second.
    #[serde(default = "default_capacity")]
    pub capacity_bps: u64,
    /// Settle once the best voucher reaches this many wei (0: off).
    #[serde(default)]
    pub settle_threshold: Wei,
    /// Settle channels older than this many seconds (0: off).
    #[serde(default)]
    pub settle_max_age_secs: u64,
    /// Settle a paused channel (the buyer disconnected without closing) that is not resumed
    /// within this many seconds.
    #[serde(default = "default_pause_timeout")]
    pub pause_timeout_secs: u64,
    /// Refuse buyers whose score (from chain events) is below this (0: everyone).
    #[serde(default)]
    pub min_buyer_score: f64,
    /// Rate each buyer on chain when its channel closes, by how it paid.
    #[serde(default = "default_true")]
    pub rate_buyers: bool,
}

fn default_region() -> String {
    "unknown".into()
}
fn default_services() -> Vec<ServiceName> {
    vec![ServiceName::Shadowsocks]
}
fn default_ss_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8388))
}
fn default_wg_port() -> u16 {
    51820
}
fn default_wg_pool() -> String {
    "198.19.0.0/16".into()
}
fn default_wg_tun() -> String {
    "wf-exit0".into()
}
fn default_interval() -> u32 {
    15
}
fn default_grace() -> u64 {
    10
}
fn default_pause_timeout() -> u64 {
    3600
}
fn default_capacity() -> u64 {
    1_000_000_000
}

/// A service name in config and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    /// WireGuard.
    Wireguard,
    /// Shadowsocks.
    Shadowsocks,
}

impl ServiceName {
    /// The protocol service.
    pub fn service(self) -> Service {
        match self {
            Self::Wireguard => Service::WireGuard,
            Self::Shadowsocks => Service::Shadowsocks,
        }
    }

    /// From the protocol service.
    pub fn from_service(s: Service) -> Self {
        match s {
            Service::WireGuard => Self::Wireguard,
            Service::Shadowsocks => Self::Shadowsocks,
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wireguard => "wireguard",
            Self::Shadowsocks => "shadowsocks",
        }
    }
}

/// `[buyer]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuyerConfig {
    /// The buyer account's keystore.
    pub keystore: PathBuf,
    /// SOCKS5 address for shadowsocks sessions.
    #[serde(default = "default_socks")]
    pub socks_listen: SocketAddr,
    /// TUN name for WireGuard sessions.
    #[serde(default = "default_vpn_tun")]
    pub wireguard_tun: String,
    /// WireGuard: only these ranges go through the tunnel (empty: everything).
    #[serde(default)]
    pub wireguard_split: Vec<String>,
    /// WireGuard: the kill switch (lockdown). Unset: on for a full tunnel, off for a split one.
    /// On, nothing leaves the host except through the tunnel, to the seller's endpoint and to
    /// the node's own hosts, from `wayfare connect` until `wayfare disconnect`.
    #[serde(default)]
    pub kill_switch: Option<bool>,
    /// When the lockdown goes up: `connect` (at the first `wayfare connect` of a WireGuard
    /// session) or `always` (at daemon start, before any session).
    #[serde(default)]
    pub lockdown: LockdownMode,
    /// The resolver file pointed at the seller's DNS while a WireGuard session is connected
    /// (restored after); `""` leaves DNS alone.
    #[serde(default = "default_resolv_conf")]
    pub resolv_conf: PathBuf,
    /// Deposit per channel.
    #[serde(default = "default_deposit")]
    pub deposit: Wei,
    /// Highest X accepted.
    pub max_price_per_mib: Option<Wei>,
    /// Highest Y accepted.
    pub max_price_per_second: Option<Wei>,
    /// Highest W accepted.
    pub max_buyer_burn: Option<Wei>,
    /// Payment interval proposed.
    #[serde(default = "default_interval")]
    pub payment_interval: u32,
    /// Seconds to wait for the seller's close consent before closing alone.
    #[serde(default = "default_close_timeout")]
    pub close_timeout_secs: u64,
    /// Seconds to wait for the seller's sealed endpoint once the channel is open.
    #[serde(default = "default_reveal_timeout")]
    pub reveal_timeout_secs: u64,
    /// Rate each seller on chain when its channel closes, by how the session went.
    #[serde(default = "default_true")]
    pub rate_sellers: bool,
}

/// `[buyer] lockdown`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockdownMode {
    /// From the first `wayfare connect` of a WireGuard session until `wayfare disconnect`.
    #[default]
    Connect,
    /// From daemon start, before any session.
    Always,
}

impl BuyerConfig {
    /// Whether the kill switch is on: `kill_switch`, or by default on for a full tunnel.
    pub fn kill_switch_on(&self) -> bool {
        self.kill_switch.unwrap_or(self.wireguard_split.is_empty())
    }
}

fn default_resolv_conf() -> PathBuf {
    PathBuf::from("/etc/resolv.conf")
}

fn default_close_timeout() -> u64 {
    30
}
fn default_reveal_timeout() -> u64 {
    120
}

fn default_socks() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1080))
}
fn default_vpn_tun() -> String {
    "wf-vpn0".into()
}
fn default_true() -> bool {
    true
}
fn default_deposit() -> Wei {
    Wei(U256::from(10_000_000_000_000_000u128))
}

impl NodeConfig {
    /// The hosts the node itself talks to outside any tunnel: its chain RPC and its bootstrap
    /// and relay peers (IPv4 literals only; names are not resolved here). A buyer's kill switch
    /// lets these through.
    pub fn own_hosts(&self) -> Vec<std::net::Ipv4Addr> {
        let mut hosts: Vec<std::net::Ipv4Addr> = self
            .p2p
            .bootstrap
            .iter()
            .chain(&self.p2p.relays)
            .filter_map(|a| {
                let rest = a.strip_prefix("/ip4/")?;
                rest.split('/').next()?.parse().ok()
            })
            .collect();
        let rpc_host: Option<std::net::Ipv4Addr> = self
            .chain
            .rpc_url
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', ':']).next())
            .and_then(|h| h.parse().ok());
        hosts.extend(rpc_host);
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// The names among the node's own hosts (`/dns4/NAME/…` peers and an RPC URL's host that
    /// is not an IPv4 literal), with the port to resolve them on; see [`Self::own_hosts`].
    pub fn own_host_names(&self) -> Vec<(String, u16)> {
        let mut names: Vec<(String, u16)> = self
            .p2p
            .bootstrap
            .iter()
            .chain(&self.p2p.relays)
            .filter_map(|a| {
                let rest = a
                    .strip_prefix("/dns4/")
                    .or_else(|| a.strip_prefix("/dns/"))?;
                let mut parts = rest.split('/');
                let name = parts.next()?.to_string();
                let port = parts.nth(1).and_then(|p| p.parse().ok()).unwrap_or(4001);
                Some((name, port))
            })
            .collect();
        if let Some(hostport) = self.chain.rpc_url.split("://").nth(1) {
            let hostport = hostport.split('/').next().unwrap_or("");
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().unwrap_or(443)),
                None => (
                    hostport,
                    if self.chain.rpc_url.starts_with("https") {
                        443
                    } else {
                        80
                    },
                ),
            };
            if !host.is_empty()
                && host.parse::<std::net::IpAddr>().is_err()
                && !host.starts_with('[')
            {
                names.push((host.to_string(), port));
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// `[p2p] advertise`, or its default: relay for a seller, direct otherwise.
    pub fn advertise(&self) -> AdvertiseMode {
        self.p2p.advertise.unwrap_or(if self.seller.is_some() {
            AdvertiseMode::Relay
        } else {
            AdvertiseMode::Direct
        })
    }

    /// Reads `path`, applies the environment overrides and checks the values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|why| ConfigError::Parse {
            path: path.to_path_buf(),
            why,
        })?;
        // Relative paths in the file are relative to the file.
        if let Some(base) = path.parent() {
            cfg.rebase(base);
        }
        cfg.apply_env()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (no env, no checks).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        if let Some(p) = &mut self.chain.password_file {
            fix(p);
        }
        if let Some(s) = &mut self.seller {
            fix(&mut s.signer_keystore);
            if let Some(p) = &mut s.account_keystore {
                fix(p);
            }
        }
        if let Some(b) = &mut self.buyer {
            fix(&mut b.keystore);
        }
    }

    /// Applies `WAYFARE_*` overrides.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("WAYFARE_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("WAYFARE_API_LISTEN") {
            self.api.listen = v.parse().map_err(|_| {
                ConfigError::Invalid(format!("WAYFARE_API_LISTEN={v:?} is not HOST:PORT"))
            })?;
        }
        if let Some(v) = var("WAYFARE_RPC_URL") {
            self.chain.rpc_url = v;
        }
        if let Some(v) = var("WAYFARE_MARKET") {
            self.chain.market = v.parse().map_err(|_| {
                ConfigError::Invalid(format!("WAYFARE_MARKET={v:?} is not an address"))
            })?;
        }
        if let Some(v) = var("WAYFARE_PASSWORD_FILE") {
            self.chain.password_file = Some(v.into());
        }
        Ok(())
    }

    /// Checks values a person could get wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.seller.is_none() && self.buyer.is_none() && !self.p2p.relay_server {
            return Err(ConfigError::Invalid(
                "neither [seller] nor [buyer] is configured: add at least one role (or set [p2p] relay_server = true to run a relay only)".into(),
            ));
        }
        if self.advertise() == AdvertiseMode::Relay && self.p2p.relays.is_empty() {
            return Err(ConfigError::Invalid(
                "[p2p] advertise = \"relay\" (a seller's default) needs at least one relay: add [p2p] relays = [\"/ip4/…/tcp/…/p2p/<peer id>\"] (any Wayfare node with relay_server = true), or set advertise = \"direct\" to publish this host's addresses to everyone".into(),
            ));
        }
        if self.p2p.relay_server
            && (self.p2p.relay_circuit_secs == 0 || self.p2p.relay_circuit_bytes == 0)
        {
            return Err(ConfigError::Invalid(
                "[p2p] relay_circuit_secs and relay_circuit_bytes must be above 0".into(),
            ));
        }
        if !self.api.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "[api] listen = {} is not a loopback address: the API moves money, keep it on 127.0.0.1",
                self.api.listen
            )));
        }
        if self.chain.confirmations == 0 {
            return Err(ConfigError::Invalid(
                "[chain] confirmations must be at least 1 (1 = the head block; 3 by default)"
                    .into(),
            ));
        }
        if let Some(s) = &self.seller {
            if s.payment_interval == 0 {
                return Err(ConfigError::Invalid(
                    "[seller] payment_interval must be at least 1 second".into(),
                ));
            }
            if s.pause_timeout_secs == 0 {
                return Err(ConfigError::Invalid(
                    "[seller] pause_timeout_secs must be at least 1 second (3600 by default)"
                        .into(),
                ));
            }
            if s.services.is_empty() {
                return Err(ConfigError::Invalid(
                    "[seller] services is empty: list shadowsocks and/or wireguard".into(),
                ));
            }
            if s.account_keystore.is_none() && s.account.is_none() {
                return Err(ConfigError::Invalid(
                    "[seller] needs account_keystore (or account = \"0x…\")".into(),
                ));
            }
            for f in [
                ("price_per_mib", s.price_per_mib),
                ("price_per_second", s.price_per_second),
                ("seller_burn", s.seller_burn),
                ("buyer_burn", s.buyer_burn),
                ("min_deposit", s.min_deposit),
            ] {
                f.1.to_u128(&format!("[seller] {}", f.0))?;
            }
        }
        if let Some(b) = &self.buyer
            && b.payment_interval == 0
        {
            return Err(ConfigError::Invalid(
                "[buyer] payment_interval must be at least 1 second".into(),
            ));
        }
        Ok(())
    }

    /// The store file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("node.db")
    }

    /// The API token file.
    pub fn token_path(&self) -> PathBuf {
        self.data_dir.join("api-token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
        [chain]
        rpc_url = "http://127.0.0.1:8545"
        market = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
        [buyer]
        keystore = "b.json"
    "#;

    /// A minimal `[seller]` section.
    const SELLER: &str = r#"
        [seller]
        account_keystore = "s.json"
        signer_keystore = "k.json"
        public_host = "203.0.113.7"
        price_per_mib = "1"
        price_per_second = "1"
        seller_burn = "0"
        buyer_burn = "0"
        min_deposit = "0"
        "#;

    /// A `[p2p]` section naming a relay (a seller's default advertising needs one).
    const RELAYED: &str = r#"
        [p2p]
        relays = ["/ip4/198.51.100.9/tcp/4001/p2p/12D3KooWLyg2YsbtBGufmeoWQkr6GnM7uND6aKn94QoTz6UhR1tq"]
    "#;

    #[test]
    fn defaults_fill_a_minimal_buyer_config() {
        let c = NodeConfig::parse(MIN).unwrap();
        c.validate().unwrap();
        assert_eq!(c.api.listen.to_string(), DEFAULT_API_LISTEN);
        let b = c.buyer.unwrap();
        assert_eq!(b.socks_listen.to_string(), "127.0.0.1:1080");
        assert_eq!(b.payment_interval, 15);
        assert!(b.kill_switch_on());
        assert_eq!(b.lockdown, LockdownMode::Connect);
    }

    #[test]
    fn unknown_keys_and_bad_amounts_are_named() {
        let e = NodeConfig::parse(&format!("{MIN}\nfoo = 1\n")).unwrap_err();
        assert!(e.contains("foo"), "{e}");
        let bad = MIN.replace(
            "keystore = \"b.json\"",
            "keystore = \"b.json\"\ndeposit = \"lots\"",
        );
        let e = NodeConfig::parse(&bad).unwrap_err();
        assert!(e.contains("deposit") || e.contains("lots"), "{e}");
    }

    #[test]
    fn a_public_api_address_is_refused() {
        let mut c = NodeConfig::parse(MIN).unwrap();
        c.api.listen = "0.0.0.0:7767".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn the_seller_pause_timeout_defaults_to_an_hour_and_zero_is_refused() {
        let seller = &format!("{RELAYED}{SELLER}");
        let c = NodeConfig::parse(&format!("{MIN}{seller}")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.seller.as_ref().unwrap().pause_timeout_secs, 3600);
        let c = NodeConfig::parse(&format!(
            "{MIN}{seller}
pause_timeout_secs = 120
"
        ))
        .unwrap();
        assert_eq!(c.seller.as_ref().unwrap().pause_timeout_secs, 120);
        let c = NodeConfig::parse(&format!(
            "{MIN}{seller}
pause_timeout_secs = 0
"
        ))
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("pause_timeout_secs"), "{e}");
    }

    #[test]
    fn a_seller_advertises_through_relays_unless_told_otherwise() {
        let seller = SELLER;
        let no_relay = NodeConfig::parse(&format!("{MIN}{seller}")).unwrap();
        assert_eq!(no_relay.advertise(), AdvertiseMode::Relay);
        let e = no_relay.validate().unwrap_err().to_string();
        assert!(
            e.contains("relays") && e.contains("advertise = \"direct\""),
            "{e}"
        );
        let direct =
            NodeConfig::parse(&format!("[p2p]\nadvertise = \"direct\"\n{MIN}{seller}")).unwrap();
        direct.validate().unwrap();
        assert_eq!(direct.advertise(), AdvertiseMode::Direct);
        // A buyer advertises directly; a node with no role may relay only.
        assert_eq!(
            NodeConfig::parse(MIN).unwrap().advertise(),
            AdvertiseMode::Direct
        );
        let mut relay = NodeConfig::parse(MIN).unwrap();
        relay.buyer = None;
        relay.p2p.relay_server = true;
        relay.validate().unwrap();
        let bad = NodeConfig::parse(&format!("[p2p]\nadvertise = \"loud\"\n{MIN}"));
        assert!(bad.is_err());
    }

    #[test]
    fn own_hosts_are_the_rpc_bootstrap_and_relay_addresses() {
        let c = NodeConfig::parse(&format!(
            "[p2p]\nbootstrap = [\"/ip4/198.18.7.1/tcp/4001/p2p/x\", \"/dns4/a.example/tcp/1\"]\nrelays = [\"/ip4/198.18.7.1/tcp/4001/p2p/x\"]\n{MIN}"
        ))
        .unwrap();
        let hosts: Vec<String> = c.own_hosts().iter().map(|h| h.to_string()).collect();
        assert_eq!(hosts, ["127.0.0.1", "198.18.7.1"]);
        assert_eq!(c.own_host_names(), [("a.example".to_string(), 1)]);
    }

    #[test]
    fn a_config_without_roles_is_refused() {
        let mut c = NodeConfig::parse(MIN).unwrap();
        c.buyer = None;
        assert!(c.validate().unwrap_err().to_string().contains("[seller]"));
    }
}
