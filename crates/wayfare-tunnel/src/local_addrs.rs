//! The seller host's own addresses on every interface, read at start and re-read every second,
//! so the exit policy can refuse them even when an allow-list covers them.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, Weak},
    time::Duration,
};

use arc_swap::ArcSwap;
use tracing::debug;

/// How often the address set is re-read (addresses added later, DHCP, a new interface).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A shared, refreshed set of this host's addresses (of the namespace it was read in).
#[derive(Clone, Debug, Default)]
pub struct LocalAddrs {
    set: Arc<ArcSwap<Vec<IpAddr>>>,
    /// Addresses that are the seller's without being on an interface (a public address
    /// behind 1:1 NAT): kept across refreshes.
    pinned: Arc<ArcSwap<Vec<IpAddr>>>,
}

impl LocalAddrs {
    /// Read the addresses now (no refresh task: see [`Self::spawn_refresher`]).
    pub fn read() -> Self {
        let me = Self::default();
        me.refresh();
        me
    }

    /// A fixed set (tests).
    pub fn fixed(addrs: Vec<IpAddr>) -> Self {
        let me = Self::default();
        me.pin(addrs);
        me
    }

    /// Also count `addrs` as the host's (kept across refreshes): the public address buyers
    /// dial, which behind a NAT is on no interface of this host.
    pub fn pin(&self, addrs: impl IntoIterator<Item = IpAddr>) {
        let mut p = self.pinned.load().as_ref().clone();
        p.extend(addrs);
        p.sort();
        p.dedup();
        self.pinned.store(Arc::new(p));
    }

    /// Re-read the interface addresses of the calling thread's namespace.
    pub fn refresh(&self) {
        let now = interface_addresses();
        if **self.set.load() != now {
            debug!(addresses = ?now, "the seller's own addresses changed");
            self.set.store(Arc::new(now));
        }
    }

    /// Whether `ip` is one of the host's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.set.load().contains(&ip) || self.pinned.load().contains(&ip)
    }

    /// The current set (interfaces, then pinned).
    pub fn snapshot(&self) -> Vec<IpAddr> {
        let mut v = self.set.load().as_ref().clone();
        v.extend(self.pinned.load().iter().copied());
        v
    }

    /// Re-read every [`REFRESH_EVERY`] on the current tokio runtime until every clone is
    /// dropped (run it from a runtime whose threads are in the seller's namespace).
    pub fn spawn_refresher(&self) {
        let weak: Weak<ArcSwap<Vec<IpAddr>>> = Arc::downgrade(&self.set);
        let pinned = self.pinned.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(set) = weak.upgrade() else { break };
                let pinned = pinned.clone();
                LocalAddrs { set, pinned }.refresh();
            }
        });
    }
}

impl crate::ExitPolicy {
    /// This policy, also refusing the calling thread's host addresses: attaches a fresh
    /// [`LocalAddrs`] (refreshed every second when a tokio runtime is running) unless one is
    /// attached already.
    pub fn guarding_this_host(self) -> Self {
        if self.local_addrs().is_some() {
            return self;
        }
        let own = LocalAddrs::read();
        if tokio::runtime::Handle::try_current().is_ok() {
            own.spawn_refresher();
        }
        self.with_local_addrs(own)
    }
}

/// Every address on every interface (getifaddrs), sorted, without duplicates.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family AF_INET means a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6 means a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loopback_and_refreshes_in_place() {
        let l = LocalAddrs::read();
        assert!(
            l.contains(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{:?}",
            l.snapshot()
        );
        let clone = l.clone();
        l.set.store(Arc::new(Vec::new()));
        assert!(!clone.contains(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        l.refresh();
        assert!(
            clone.contains(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "a clone sees the refresh"
        );
    }
}
