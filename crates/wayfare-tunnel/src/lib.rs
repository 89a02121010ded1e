//! Wayfare's data plane: WireGuard (gotatun + tun-rs) and shadowsocks services, NAT and
//! firewall (nftables), routes, DNS, kill switch and per-session meters.
//!
//! Not built yet: see the WireGuard and shadowsocks data-plane issues. This crate exists so
//! the workspace has its final layout and dependency direction (proto <- tunnel <- node).
