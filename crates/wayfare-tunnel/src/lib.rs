//! Wayfare's data plane. Today: the shadowsocks service (a multi-user AEAD-2022 seller with
//! per-session keys, runtime add/remove and live meters; a legacy one-port-per-session
//! `chacha20-ietf-poly1305` seller; a buyer SOCKS5 front end and port forwarder), the exit
//! policy and per-session meters, plus a network-namespace lab for tests; and WireGuard
//! mode ([`wireguard`]: gotatun + tun-rs seller exit with nftables masquerade, buyer VPN with
//! routes, DNS, IPv6 block and kill switch) and the buyer host's [`lockdown`].

pub mod dns;
pub mod error;
pub mod exit_policy;
pub mod lab;
pub mod local_addrs;
pub mod lockdown;
pub mod meter;
mod relay;
pub mod shadowsocks;
pub mod wireguard;

pub use error::TunnelError;
pub use exit_policy::{Cidr, ExitPolicy};
pub use local_addrs::LocalAddrs;
pub use meter::{Meter, MeterSnapshot};
