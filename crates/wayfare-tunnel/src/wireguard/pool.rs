//! The WireGuard exit's tunnel-address pool: one /32 per session, and an address given up by
//! a session is quarantined (not handed to another buyer) for a while, so packets and
//! conntrack state of the last holder never reach the next one.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use ipnetwork::Ipv4Network;

use super::keys::WgPublicKey;
use crate::{Cidr, TunnelError};

/// Default time an address stays out of use after its session ends.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(60);

/// The pool as an IPv4 network (must be /30 or shorter).
pub(crate) fn pool_v4(pool: &Cidr) -> Result<Ipv4Network, TunnelError> {
    match pool.addr() {
        IpAddr::V4(a) if pool.prefix() <= 30 => Ipv4Network::new(a, pool.prefix())
            .map_err(|e| TunnelError::BadCidr(format!("{pool}: {e}"))),
        _ => Err(TunnelError::BadCidr(format!(
            "{pool}: the pool must be IPv4 with a prefix of /30 or shorter"
        ))),
    }
}

/// Free addresses and the quarantine of released ones; the clock is passed in.
#[derive(Debug)]
pub(crate) struct AddressPool {
    net: Ipv4Network,
    quarantine: Duration,
    /// Released address -> when, and whose it was (its last holder may have it back).
    released: HashMap<Ipv4Addr, (Instant, WgPublicKey)>,
}

impl AddressPool {
    pub(crate) fn new(net: Ipv4Network, quarantine: Duration) -> Self {
        Self {
            net,
            quarantine,
            released: HashMap::new(),
        }
    }

    /// Mark `addr` as given up by `holder` at `now`.
    pub(crate) fn release(&mut self, addr: Ipv4Addr, holder: WgPublicKey, now: Instant) {
        self.released.insert(addr, (now, holder));
    }

    /// Whether `addr` is in quarantine for anyone but its last holder `for_key` at `now`.
    pub(crate) fn quarantined(&self, addr: Ipv4Addr, for_key: &WgPublicKey, now: Instant) -> bool {
        self.released.get(&addr).is_some_and(|(at, holder)| {
            holder != for_key && now.saturating_duration_since(*at) < self.quarantine
        })
    }

    /// An address for `key`: `preferred` when usable, free and not quarantined, else the
    /// first such one. Expired quarantine entries are dropped.
    pub(crate) fn pick(
        &mut self,
        taken: &[Ipv4Addr],
        preferred: Option<Ipv4Addr>,
        key: &WgPublicKey,
        now: Instant,
    ) -> Option<Ipv4Addr> {
        let q = self.quarantine;
        self.released
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < q);
        let blocked: Vec<Ipv4Addr> = taken
            .iter()
            .copied()
            .chain(
                self.released
                    .keys()
                    .copied()
                    .filter(|a| self.quarantined(*a, key, now)),
            )
            .collect();
        let got = pick_address(self.net, &blocked, preferred)?;
        self.released.remove(&got);
        Some(got)
    }
}

/// The address for a new session: `preferred` when it is a host address of the pool (not the
/// network, the gateway or the broadcast address) that nobody holds, else the first free one.
pub(crate) fn pick_address(
    net: Ipv4Network,
    taken: &[Ipv4Addr],
    preferred: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let size = net.size();
    let usable = |a: Ipv4Addr| {
        let off = u32::from(a).wrapping_sub(u32::from(net.network()));
        net.contains(a) && off >= 2 && off < size.saturating_sub(1)
    };
    if let Some(p) = preferred
        && usable(p)
        && !taken.contains(&p)
    {
        return Some(p);
    }
    (2..size.saturating_sub(1))
        .filter_map(|i| net.nth(i))
        .find(|a| !taken.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::PrivateKey;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_preferred_address_is_given_back_when_it_is_free_and_in_the_pool() {
        let net: Ipv4Network = "198.19.3.0/29".parse().unwrap();
        // First free host address: .0 is the network, .1 the gateway.
        assert_eq!(pick_address(net, &[], None), Some(ip("198.19.3.2")));
        assert_eq!(
            pick_address(net, &[ip("198.19.3.2")], Some(ip("198.19.3.5"))),
            Some(ip("198.19.3.5"))
        );
        // Taken, the gateway, the broadcast address or outside the pool: the first free one.
        for bad in [
            "198.19.3.2",
            "198.19.3.1",
            "198.19.3.7",
            "198.19.4.5",
            "198.19.3.0",
        ] {
            assert_eq!(
                pick_address(net, &[ip("198.19.3.2")], Some(ip(bad))),
                Some(ip("198.19.3.3")),
                "{bad}"
            );
        }
        let all: Vec<Ipv4Addr> = (2..7).map(|i| net.nth(i).unwrap()).collect();
        assert_eq!(pick_address(net, &all, Some(ip("198.19.3.4"))), None);
    }

    #[test]
    fn a_released_address_is_quarantined_for_others_until_the_time_is_up() {
        let net: Ipv4Network = "198.19.3.0/30".parse().unwrap(); // one buyer address: .2
        let mut pool = AddressPool::new(net, Duration::from_secs(60));
        let (a, b) = (
            PrivateKey::generate().public_key(),
            PrivateKey::generate().public_key(),
        );
        let t0 = Instant::now();
        assert_eq!(pool.pick(&[], None, &a, t0), Some(ip("198.19.3.2")));
        pool.release(ip("198.19.3.2"), a, t0);
        let t = |s| t0 + Duration::from_secs(s);
        assert!(pool.quarantined(ip("198.19.3.2"), &b, t(59)));
        assert_eq!(pool.pick(&[], None, &b, t(59)), None, "quarantined for b");
        assert_eq!(
            pool.pick(&[], Some(ip("198.19.3.2")), &b, t(30)),
            None,
            "preferring it does not help"
        );
        // Its last holder may have it back at once (a reconnect of the same buyer)...
        assert_eq!(pool.pick(&[], None, &a, t(10)), Some(ip("198.19.3.2")));
        pool.release(ip("198.19.3.2"), a, t(10));
        // ...and anyone else once the quarantine is over.
        assert!(!pool.quarantined(ip("198.19.3.2"), &b, t(70)));
        assert_eq!(pool.pick(&[], None, &b, t(70)), Some(ip("198.19.3.2")));
    }

    #[test]
    fn a_quarantined_address_is_skipped_for_the_next_free_one() {
        let net: Ipv4Network = "198.19.3.0/29".parse().unwrap();
        let mut pool = AddressPool::new(net, DEFAULT_QUARANTINE);
        let (a, b) = (
            PrivateKey::generate().public_key(),
            PrivateKey::generate().public_key(),
        );
        let now = Instant::now();
        pool.release(ip("198.19.3.2"), a, now);
        assert_eq!(pool.pick(&[], None, &b, now), Some(ip("198.19.3.3")));
        let zero = AddressPool::new(net, Duration::ZERO);
        assert!(
            !zero.quarantined(ip("198.19.3.2"), &b, now),
            "0 s disables it"
        );
    }
}
