//! Which destinations a seller lets its buyers reach.
//!
//! By default private (RFC 1918, ULA), loopback, link-local (including the 169.254.169.254 and
//! fd00:ec2::254 metadata services), CGNAT, benchmark, NAT64, IPv4-compatible, 6to4,
//! site-local, multicast and unspecified addresses are denied, IPv4-mapped IPv6 addresses are
//! judged by their IPv4 address, and so are the seller host's own addresses on every interface
//! ([`LocalAddrs`]). An allow-list re-opens chosen ranges (the lab allows 198.18.0.0/15), but
//! never the seller's own addresses, loopback, unspecified or metadata.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use crate::{LocalAddrs, TunnelError};

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

/// The seller's exit policy: deny internal destinations unless allow-listed; never the
/// seller's own addresses, loopback, unspecified or metadata, whatever the allow-list says.
#[derive(Clone, Debug, Default)]
pub struct ExitPolicy {
    allow: Vec<Cidr>,
    own: Option<LocalAddrs>,
    /// Loopback opened by an explicit allow (the chain-less `wayfare proxy` tool only).
    open_loopback: bool,
}

/// Why a destination was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// One of the seller host's own addresses (any interface).
    Own(IpAddr),
    /// Loopback, unspecified or a cloud metadata address: no allow-list opens these.
    Never(IpAddr),
    /// An internal range (private, link-local, CGNAT, NAT64, 6to4, ...) not in the allow-list.
    Internal(IpAddr),
}

impl Denied {
    /// The refused address (the embedded IPv4 address for an IPv4-mapped one).
    pub fn addr(&self) -> IpAddr {
        match *self {
            Denied::Own(a) | Denied::Never(a) | Denied::Internal(a) => a,
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Own(a) => write!(f, "destination {a} is one of the seller's own addresses"),
            Denied::Never(a) => write!(
                f,
                "destination {a} is loopback, unspecified or metadata (never allowed)"
            ),
            Denied::Internal(a) => write!(
                f,
                "destination {a} is private, link-local, NAT64, 6to4, multicast or otherwise internal and not in the allow-list"
            ),
        }
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
            own: None,
            open_loopback: false,
        }
    }

    /// Lets allow-listed loopback addresses through (off by default, never set by the daemon):
    /// for a plain proxy whose operator serves only itself, e.g. `wayfare proxy serve --allow
    /// 127.0.0.0/8`. Metadata, unspecified and the host's other addresses stay closed.
    pub fn opening_allowed_loopback(mut self) -> Self {
        self.open_loopback = true;
        self
    }

    /// Also deny the addresses in `own` (the seller host's, kept fresh by its owner).
    pub fn with_local_addrs(mut self, own: LocalAddrs) -> Self {
        self.own = Some(own);
        self
    }

    /// The own-address set this policy refuses, if one is attached.
    pub fn local_addrs(&self) -> Option<&LocalAddrs> {
        self.own.as_ref()
    }

    /// The allow-list.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allow
    }

    /// What the policy lets through, in words: `the public internet`, or `the public internet
    /// plus A, B` for an allow-list.
    pub fn describe(&self) -> String {
        if self.allow.is_empty() {
            return "the public internet".into();
        }
        let list: Vec<String> = self.allow.iter().map(ToString::to_string).collect();
        format!("the public internet plus {}", list.join(", "))
    }

    /// May a buyer reach `ip`? An IPv4-mapped IPv6 address is judged by its IPv4 address.
    pub fn check(&self, ip: IpAddr) -> Result<(), Denied> {
        let orig = ip;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.open_loopback && ip.is_loopback() && self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        if self
            .own
            .as_ref()
            .is_some_and(|o| o.contains(ip) || (orig != ip && o.contains(orig)))
        {
            return Err(Denied::Own(ip));
        }
        if never(ip) {
            return Err(Denied::Never(ip));
        }
        if self.allow.iter().any(|c| c.contains(ip)) || !internal(ip) {
            Ok(())
        } else {
            Err(Denied::Internal(ip))
        }
    }
}

/// Loopback, unspecified and metadata: closed even to an allow-list.
fn never(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_unspecified() || v4 == Ipv4Addr::new(169, 254, 169, 254)
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6 == METADATA_V6,
    }
}

/// The internal IPv4 ranges an exit refuses unless allow-listed (what [`ExitPolicy::check`]
/// calls internal), for a buyer to refuse the same destinations before they reach the tunnel.
pub const INTERNAL_V4: [(Ipv4Addr, u8); 10] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv4 destinations no allow-list opens (loopback, unspecified, metadata).
pub const NEVER_V4: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(0, 0, 0, 0), 32),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 169, 254), 32),
];

/// AWS's IPv6 instance metadata address.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

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
    let bits = u128::from(ip);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
        || bits >> 32 == 0 // ::/96 IPv4-compatible (and ::, ::1)
        || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 // 64:ff9b::/96 NAT64
        || bits >> 80 == 0x0064_ff9b_0001 // 64:ff9b:1::/48 local-use NAT64
        || s[0] == 0x2002 // 2002::/16 6to4
        || ip == METADATA_V6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_ranges_are_what_check_refuses() {
        let policy = ExitPolicy::new();
        for (net, prefix) in INTERNAL_V4.iter().chain(NEVER_V4.iter()) {
            let first = u32::from(*net);
            let last = first | u32::MAX.checked_shr(u32::from(*prefix)).unwrap_or(0);
            for a in [first, first + (last - first) / 2, last] {
                let ip = IpAddr::V4(Ipv4Addr::from(a));
                assert!(
                    policy.check(ip).is_err(),
                    "{ip} in {net}/{prefix} is let through"
                );
            }
        }
        // Just outside each internal range is public (or in the next listed range).
        for (net, prefix) in INTERNAL_V4 {
            let last = u32::from(net) | u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            if let Some(next) = last.checked_add(1) {
                let ip = Ipv4Addr::from(next);
                let listed = INTERNAL_V4.iter().any(|(n, p)| {
                    Cidr::new(IpAddr::V4(*n), *p).is_ok_and(|c| c.contains(IpAddr::V4(ip)))
                });
                assert_eq!(policy.check(IpAddr::V4(ip)).is_err(), listed, "{ip}");
            }
        }
    }

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
    fn every_default_denied_range_in_both_families() {
        let p = ExitPolicy::new();
        let denied = [
            // IPv4: RFC 1918, CGNAT, loopback, link-local + metadata, multicast, unspecified.
            ("10.0.0.1", "rfc1918 10/8"),
            ("172.31.255.254", "rfc1918 172.16/12"),
            ("192.168.0.1", "rfc1918 192.168/16"),
            ("100.64.0.1", "cgnat low"),
            ("100.127.255.254", "cgnat high"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.1", "loopback /8"),
            ("169.254.1.1", "link-local"),
            ("169.254.169.254", "metadata"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast ssdp"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            // IPv6.
            ("::1", "loopback v6"),
            ("::", "unspecified v6"),
            ("fe80::1", "link-local v6"),
            ("fd00:ec2::254", "metadata v6"),
            ("fc00::1", "ula fc"),
            ("fdff:ffff::1", "ula fd"),
            ("fec0::1", "site-local"),
            ("feff::1", "site-local high"),
            ("ff02::1", "multicast v6"),
            ("64:ff9b::a00:1", "nat64 of 10.0.0.1"),
            ("64:ff9b::808:808", "nat64 of a public address"),
            ("64:ff9b:1::1", "local-use nat64"),
            ("64:ff9b:1:ffff::1", "local-use nat64 high"),
            ("::a00:1", "ipv4-compatible of 10.0.0.1"),
            ("::808:808", "ipv4-compatible of 8.8.8.8"),
            ("2002::1", "6to4"),
            ("2002:808:808::1", "6to4 of 8.8.8.8"),
            // IPv4-mapped: judged by the embedded address.
            ("::ffff:127.0.0.1", "mapped loopback"),
            ("::ffff:169.254.169.254", "mapped metadata"),
            ("::ffff:10.1.2.3", "mapped rfc1918"),
            ("::ffff:100.64.0.1", "mapped cgnat"),
        ];
        for (d, why) in denied {
            assert!(p.check(ip(d)).is_err(), "{d} ({why}) should be denied");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "2001:db9::1",
            "64:ff9b:2::1",
            "::1:0:0:1",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.check(ip(a)).is_ok(), "{a} should be allowed");
        }
        assert_eq!(
            p.check(ip("::ffff:10.1.2.3")),
            Err(Denied::Internal(ip("10.1.2.3"))),
            "a mapped address is reported as its IPv4 address"
        );
    }

    #[test]
    fn only_the_plain_proxy_opens_an_allowed_loopback() {
        let allow = vec!["127.0.0.0/8".parse().unwrap()];
        let own = LocalAddrs::fixed(vec![ip("127.0.0.1"), ip("198.18.1.1")]);
        let daemon = ExitPolicy::with_allowed(allow.clone()).with_local_addrs(own.clone());
        assert!(daemon.check(ip("127.0.0.1")).is_err());
        let proxy = ExitPolicy::with_allowed(allow)
            .opening_allowed_loopback()
            .with_local_addrs(own);
        assert_eq!(proxy.check(ip("127.0.0.1")), Ok(()));
        // Not allow-listed, or not loopback: still closed.
        assert!(proxy.check(ip("::1")).is_err());
        assert!(proxy.check(ip("198.18.1.1")).is_err());
        assert!(proxy.check(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn own_addresses_loopback_and_metadata_stay_closed_under_any_allow_list() {
        let own = LocalAddrs::fixed(vec![ip("198.18.1.1"), ip("2001:db8::5"), ip("8.8.4.4")]);
        let p = ExitPolicy::with_allowed([
            "0.0.0.0/0".parse().expect("cidr"),
            "::/0".parse().expect("cidr"),
        ])
        .with_local_addrs(own.clone());
        for (d, want) in [
            ("198.18.1.1", Denied::Own(ip("198.18.1.1"))),
            ("::ffff:198.18.1.1", Denied::Own(ip("198.18.1.1"))),
            ("8.8.4.4", Denied::Own(ip("8.8.4.4"))),
            ("2001:db8::5", Denied::Own(ip("2001:db8::5"))),
            ("127.0.0.1", Denied::Never(ip("127.0.0.1"))),
            ("::1", Denied::Never(ip("::1"))),
            ("::ffff:127.0.0.1", Denied::Never(ip("127.0.0.1"))),
            ("169.254.169.254", Denied::Never(ip("169.254.169.254"))),
            ("fd00:ec2::254", Denied::Never(ip("fd00:ec2::254"))),
            ("0.0.0.0", Denied::Never(ip("0.0.0.0"))),
        ] {
            assert_eq!(p.check(ip(d)), Err(want), "{d}");
        }
        // The allow-list does open the other internal ranges it covers.
        for a in ["10.0.0.1", "198.18.2.2", "64:ff9b::a00:1", "169.254.1.1"] {
            assert!(p.check(ip(a)).is_ok(), "{a} is explicitly allowed");
        }
        // Without the own-address set, the seller's public 8.8.4.4 would be reachable.
        assert!(ExitPolicy::new().check(ip("8.8.4.4")).is_ok());
        // The default policy denies the own public address too.
        let d = ExitPolicy::new().with_local_addrs(own);
        assert_eq!(d.check(ip("8.8.4.4")), Err(Denied::Own(ip("8.8.4.4"))));
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
