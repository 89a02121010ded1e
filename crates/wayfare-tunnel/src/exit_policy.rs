//! Which destinations a seller lets its buyers reach.
//!
//! By default private, loopback, link-local (including the 169.254.169.254 cloud metadata
//! service), CGNAT, benchmark, multicast and unspecified addresses are denied, so a buyer
//! cannot reach the seller's own machine or LAN. An allow-list re-opens chosen ranges (the
//! lab allows 198.18.0.0/15).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use crate::TunnelError;

/// An address range such as `198.18.0.0/15`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Build a range; the prefix must fit the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, TunnelError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(TunnelError::BadCidr(format!("{addr}/{prefix}")));
        }
        Ok(Self { addr, prefix })
    }

    /// The range's address as written.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = TunnelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TunnelError::BadCidr(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                p.parse::<u8>().map_err(|_| bad())?,
            ),
            None => {
                let a = s.parse::<IpAddr>().map_err(|_| bad())?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        Self::new(addr, prefix).map_err(|_| bad())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The seller's exit policy: deny internal destinations unless allow-listed.
#[derive(Clone, Debug, Default)]
pub struct ExitPolicy {
    allow: Vec<Cidr>,
}

/// Why a destination was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied(pub IpAddr);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "destination {} is private, loopback, link-local or metadata and not in the allow-list",
            self.0
        )
    }
}

impl ExitPolicy {
    /// Deny internal ranges, allow everything else.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deny internal ranges except those in `allow`.
    pub fn with_allowed(allow: impl IntoIterator<Item = Cidr>) -> Self {
        Self {
            allow: allow.into_iter().collect(),
        }
    }

    /// The allow-list.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allow
    }

    /// May a buyer reach `ip`?
    pub fn check(&self, ip: IpAddr) -> Result<(), Denied> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allow.iter().any(|c| c.contains(ip)) || !internal(ip) {
            Ok(())
        } else {
            Err(Denied(ip))
        }
    }
}

fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // includes 169.254.169.254 (metadata)
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarks
        || o[0] >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS IPv6 metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn default_denies_internal_and_metadata() {
        let p = ExitPolicy::new();
        for d in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.2.2",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(p.check(ip(d)).is_err(), "{d} should be denied");
        }
        for a in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(p.check(ip(a)).is_ok(), "{a} should be allowed");
        }
    }

    #[test]
    fn allow_list_reopens_only_its_range() {
        let p = ExitPolicy::with_allowed(["198.18.0.0/15".parse().expect("cidr")]);
        assert!(p.check(ip("198.18.2.2")).is_ok());
        assert!(p.check(ip("198.19.255.1")).is_ok());
        assert!(p.check(ip("198.20.0.1")).is_ok(), "public anyway");
        assert!(p.check(ip("127.0.0.1")).is_err());
        assert!(p.check(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn bad_cidr_is_a_clear_error() {
        for s in ["nope", "10.0.0.0/33", "10.0.0.0/x", "::/129"] {
            let e = s.parse::<Cidr>().expect_err(s);
            assert!(e.to_string().contains("expected ADDRESS/PREFIX"), "{e}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().expect("cidr").to_string(),
            "10.0.0.0/8"
        );
    }
}
