//! Output queues with the persist-before-acknowledge gate.

use std::collections::VecDeque;

/// Events and transmits of one session. A transmit queued after a persist event is held back
/// until that event has been polled: the shell persists synchronously when it polls a `Persist`,
/// so nothing that acknowledges state (a voucher, a usage ack) leaves before the state is stored.
#[derive(Debug)]
pub(crate) struct Outbox<E> {
    events: VecDeque<(E, u64)>,
    transmits: VecDeque<(Vec<u8>, u64)>,
    persists_queued: u64,
    persists_polled: u64,
}

impl<E> Default for Outbox<E> {
    fn default() -> Self {
        Self {
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            persists_queued: 0,
            persists_polled: 0,
        }
    }
}

impl<E> Outbox<E> {
    /// Queues an event; `persist` marks it as a persist event.
    pub(crate) fn event(&mut self, e: E, persist: bool) {
        if persist {
            self.persists_queued += 1;
            self.events.push_back((e, self.persists_queued));
        } else {
            self.events.push_back((e, 0));
        }
    }

    /// Queues bytes to send, after every persist queued so far.
    pub(crate) fn transmit(&mut self, bytes: Vec<u8>) {
        self.transmits.push_back((bytes, self.persists_queued));
    }

    pub(crate) fn poll_event(&mut self) -> Option<E> {
        let (e, seq) = self.events.pop_front()?;
        if seq != 0 {
            self.persists_polled = self.persists_polled.max(seq);
        }
        Some(e)
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let (_, gate) = self.transmits.front()?;
        if *gate > self.persists_polled {
            return None;
        }
        self.transmits.pop_front().map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmits_wait_for_the_persist_ahead_of_them() {
        let mut o = Outbox::<&str>::default();
        o.transmit(b"early".to_vec());
        o.event("persist", true);
        o.transmit(b"ack".to_vec());
        assert_eq!(o.poll_transmit(), Some(b"early".to_vec()));
        assert_eq!(o.poll_transmit(), None, "held until the persist is polled");
        assert_eq!(o.poll_event(), Some("persist"));
        assert_eq!(o.poll_transmit(), Some(b"ack".to_vec()));
        o.event("plain", false);
        o.transmit(b"free".to_vec());
        assert_eq!(o.poll_transmit(), Some(b"free".to_vec()));
    }
}
