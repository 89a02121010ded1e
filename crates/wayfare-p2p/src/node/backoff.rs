//! Backoff for dialing a peer that could not be reached: each failure doubles the wait before
//! the next dial (1 s up to 30 s), and a connection clears it. Without it, a session retrying
//! a vanished seller every second would dial through the relay every second, use up the
//! relay's per-peer circuit budget (libp2p's default: 30 circuits in 2 minutes) and so cut this
//! node off from every other peer behind that relay.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;

/// The longest wait between two dials of an unreachable peer.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Peers remembered (beyond it, the ones whose wait is over are forgotten first).
const MAX_PEERS: usize = 4096;

/// Unreachable peers and when each may be dialed again.
#[derive(Default)]
pub(crate) struct DialBackoff {
    peers: HashMap<PeerId, (u32, Instant)>,
}

impl DialBackoff {
    /// How long until `peer` may be dialed again, if it must wait.
    pub(crate) fn wait(&self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let (_, next) = self.peers.get(peer)?;
        (*next > now).then(|| *next - now)
    }

    /// A dial of `peer` failed.
    pub(crate) fn failed(&mut self, peer: PeerId, now: Instant) {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&peer) {
            self.peers.retain(|_, (_, next)| *next > now);
            if self.peers.len() >= MAX_PEERS {
                return; // every entry still waiting: this one just is not remembered
            }
        }
        let e = self.peers.entry(peer).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        let wait = Duration::from_secs(1u64 << (e.0 - 1).min(5)).min(MAX_BACKOFF);
        e.1 = now + wait;
    }

    /// A connection to `peer` is up.
    pub(crate) fn connected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_the_wait_up_to_the_cap_and_a_connection_clears_it() {
        let mut b = DialBackoff::default();
        let p = PeerId::random();
        let t = Instant::now();
        assert_eq!(b.wait(&p, t), None);
        let mut waits = Vec::new();
        for _ in 0..8 {
            b.failed(p, t);
            waits.push(b.wait(&p, t).unwrap().as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            b.wait(&p, t + MAX_BACKOFF),
            None,
            "after the wait it may dial again"
        );
        b.connected(&p);
        b.failed(p, t);
        assert_eq!(b.wait(&p, t), Some(Duration::from_secs(1)));
        // Another peer is not affected.
        assert_eq!(b.wait(&PeerId::random(), t), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut b = DialBackoff::default();
        let t = Instant::now();
        for _ in 0..MAX_PEERS + 100 {
            b.failed(PeerId::random(), t);
        }
        assert!(b.peers.len() <= MAX_PEERS);
    }
}
