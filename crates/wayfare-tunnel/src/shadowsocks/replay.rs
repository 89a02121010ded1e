//! A sliding replay window for AEAD-2022 UDP packet ids (the shadowsocks crate checks only
//! the packet's timestamp, ±30 s, so a captured datagram could be replayed within that time).

/// Packet ids this far behind the newest one are rejected as too old.
pub const WINDOW_BITS: u64 = 1024;
const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// Which packet ids of one client session have been seen (RFC 6479-style bitmap).
#[derive(Clone, Debug, Default)]
pub struct PacketWindow {
    newest: Option<u64>,
    bits: [u64; WORDS],
}

impl PacketWindow {
    /// Accept `id` once: `false` when it was already seen or is older than the window.
    pub fn accept(&mut self, id: u64) -> bool {
        let Some(newest) = self.newest else {
            self.newest = Some(id);
            self.set(id);
            return true;
        };
        if id > newest {
            let ahead = id - newest;
            if ahead >= WINDOW_BITS {
                self.bits = [0; WORDS];
            } else {
                for skipped in newest + 1..=id {
                    self.clear(skipped);
                }
            }
            self.newest = Some(id);
            self.set(id);
            return true;
        }
        if newest - id >= WINDOW_BITS || self.is_set(id) {
            return false;
        }
        self.set(id);
        true
    }

    fn slot(id: u64) -> (usize, u64) {
        let bit = id % WINDOW_BITS;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn set(&mut self, id: u64) {
        let (w, m) = Self::slot(id);
        self.bits[w] |= m;
    }

    fn clear(&mut self, id: u64) {
        let (w, m) = Self::slot(id);
        self.bits[w] &= !m;
    }

    fn is_set(&self, id: u64) -> bool {
        let (w, m) = Self::slot(id);
        self.bits[w] & m != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_id_is_accepted_once() {
        let mut w = PacketWindow::default();
        assert!(w.accept(0));
        assert!(!w.accept(0), "replay of the first packet");
        assert!(w.accept(1));
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3), "late but inside the window and unseen");
        assert!(!w.accept(3));
        assert!(!w.accept(1));
        assert!(w.accept(2) && w.accept(4));
    }

    #[test]
    fn ids_older_than_the_window_are_rejected_and_slots_are_reused() {
        let mut w = PacketWindow::default();
        assert!(w.accept(10));
        assert!(w.accept(10 + WINDOW_BITS - 1));
        assert!(!w.accept(10), "seen");
        assert!(w.accept(11), "just inside the window");
        assert!(w.accept(10 + WINDOW_BITS + 5));
        assert!(!w.accept(11), "now older than the window");
        // Slots of ids skipped over were cleared, so fresh ids that share them are accepted.
        assert!(w.accept(10 + WINDOW_BITS + 3));
        // A jump past the whole window forgets everything but the newest.
        assert!(w.accept(u64::MAX - 1));
        assert!(!w.accept(u64::MAX - 1));
        assert!(!w.accept(10 + WINDOW_BITS + 5), "far too old");
        assert!(w.accept(u64::MAX));
    }
}
