//! A buyer's session settings and their `wg-quick` text form.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use super::keys::{PrivateKey, WgPublicKey};
use crate::{Cidr, TunnelError};

/// Everything a buyer needs to reach a seller: what `wg-quick` calls a config file.
#[derive(Clone, Debug)]
pub struct WgClientConfig {
    /// The buyer's private key.
    pub private_key: PrivateKey,
    /// The buyer's tunnel address (a /32 from the seller's pool).
    pub address: Ipv4Addr,
    /// DNS servers to use while connected (reached through the tunnel).
    pub dns: Vec<IpAddr>,
    /// Tunnel MTU.
    pub mtu: u16,
    /// The seller's public key.
    pub peer_public_key: WgPublicKey,
    /// The seller's UDP endpoint.
    pub endpoint: SocketAddr,
    /// What goes through the tunnel (`0.0.0.0/0` = everything).
    pub allowed_ips: Vec<Cidr>,
    /// Persistent keepalive in seconds.
    pub keepalive: Option<u16>,
}

/// Default tunnel MTU (1500 minus IPv6 + UDP + WireGuard overhead).
pub const DEFAULT_MTU: u16 = 1420;

fn bad(msg: impl Into<String>) -> TunnelError {
    TunnelError::BadConfig(msg.into())
}

impl WgClientConfig {
    /// The `wg-quick` config file text.
    pub fn to_wg_quick(&self) -> String {
        let mut s = String::from("[Interface]\n");
        let _ = writeln!(s, "PrivateKey = {}", self.private_key.to_base64());
        let _ = writeln!(s, "Address = {}/32", self.address);
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(|d| d.to_string()).collect();
            let _ = writeln!(s, "DNS = {}", dns.join(", "));
        }
        let _ = writeln!(s, "MTU = {}", self.mtu);
        s.push_str("\n[Peer]\n");
        let _ = writeln!(s, "PublicKey = {}", self.peer_public_key);
        let _ = writeln!(s, "Endpoint = {}", self.endpoint);
        let ips: Vec<String> = self.allowed_ips.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(s, "AllowedIPs = {}", ips.join(", "));
        if let Some(k) = self.keepalive {
            let _ = writeln!(s, "PersistentKeepalive = {k}");
        }
        s
    }

    /// The `[Interface]`/`[Peer]` lines `wg setconf` accepts (no Address/DNS/MTU).
    pub fn to_wg_setconf(&self) -> String {
        self.to_wg_quick()
            .lines()
            .filter(|l| !["Address", "DNS", "MTU"].iter().any(|k| l.starts_with(k)))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Parse a `wg-quick` config with one IPv4 address and one peer.
    pub fn from_wg_quick(text: &str) -> Result<Self, TunnelError> {
        let (mut key, mut addr, mut pk, mut ep) = (None, None, None, None);
        let mut dns = Vec::new();
        let mut allowed = Vec::new();
        let mut mtu = DEFAULT_MTU;
        let mut keepalive = None;
        let mut peers = 0;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if line.eq_ignore_ascii_case("[peer]") {
                peers += 1;
                continue;
            }
            if line.starts_with('[') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(format!("line {line:?} is not KEY = VALUE")));
            };
            // Keys are base64 and may end in '='; split at the first '=' only.
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "privatekey" => key = Some(PrivateKey::from_base64(v)?),
                "address" => {
                    for a in v.split(',') {
                        let c: Cidr = a.trim().parse()?;
                        if let IpAddr::V4(v4) = c.addr() {
                            addr = Some(v4);
                        }
                    }
                }
                "dns" => {
                    for d in v.split(',') {
                        dns.push(
                            d.trim()
                                .parse()
                                .map_err(|_| bad(format!("DNS {d:?} is not an IP address")))?,
                        );
                    }
                }
                "mtu" => mtu = v.parse().map_err(|_| bad(format!("MTU {v:?}")))?,
                "publickey" => pk = Some(WgPublicKey::from_base64(v)?),
                "endpoint" => {
                    ep = Some(
                        v.parse()
                            .map_err(|_| bad(format!("Endpoint {v:?} is not IP:PORT")))?,
                    )
                }
                "allowedips" => {
                    for a in v.split(',') {
                        allowed.push(a.trim().parse()?);
                    }
                }
                "persistentkeepalive" => {
                    keepalive = Some(v.parse().map_err(|_| bad(format!("keepalive {v:?}")))?)
                }
                _ => {}
            }
        }
        if peers != 1 {
            return Err(bad(format!("expected exactly one [Peer], found {peers}")));
        }
        Ok(Self {
            private_key: key.ok_or_else(|| bad("missing PrivateKey"))?,
            address: addr.ok_or_else(|| bad("missing IPv4 Address"))?,
            dns,
            mtu,
            peer_public_key: pk.ok_or_else(|| bad("missing PublicKey"))?,
            endpoint: ep.ok_or_else(|| bad("missing Endpoint"))?,
            allowed_ips: allowed,
            keepalive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wg_quick_round_trip() {
        let c = WgClientConfig {
            private_key: PrivateKey::generate(),
            address: Ipv4Addr::new(198, 19, 0, 2),
            dns: vec!["198.18.2.2".parse().expect("ip")],
            mtu: 1420,
            peer_public_key: PrivateKey::generate().public_key(),
            endpoint: "198.18.1.1:51820".parse().expect("ep"),
            allowed_ips: vec!["0.0.0.0/0".parse().expect("cidr")],
            keepalive: Some(25),
        };
        let text = c.to_wg_quick();
        let d = WgClientConfig::from_wg_quick(&text).expect("parse");
        assert_eq!(d.to_wg_quick(), text);
        assert!(!c.to_wg_setconf().contains("Address"));
        assert!(WgClientConfig::from_wg_quick("[Interface]\nPrivateKey = x\n").is_err());
    }
}
