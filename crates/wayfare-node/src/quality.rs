//! The buyer's own measurements of a seller, one tunnel run at a time: time to first byte,
//! peak throughput and message loss. Sans-IO: the shell feeds meter readings with the time
//! they were taken and the outcome of every message sent; this turns them into a quality in
//! `[0, 1]`, a local score per seller and the stars the buyer gives on chain.
//!
//! - **Time to first byte**: from the first byte the buyer sent into the tunnel to the first
//!   byte that came back (so neither the chain's confirmation time nor a user who connects and
//!   waits counts against the seller). Readings come every 100 ms, which is the resolution.
//! - **Peak throughput**: the most bytes that came down within one second.
//! - **Loss**: the share of the buyer's messages (vouchers, closes) the seller did not answer.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// First byte at or under this is perfect.
pub const FIRST_BYTE_GOOD_MS: u64 = 500;
/// First byte at or over this scores nothing.
pub const FIRST_BYTE_BAD_MS: u64 = 5_000;
/// A peak at or over this (bytes per second down) is perfect.
pub const THROUGHPUT_GOOD_BPS: u64 = 1 << 20;
/// Weights of first byte, throughput and loss in a run's quality.
pub const WEIGHTS: (f64, f64, f64) = (0.4, 0.4, 0.2);

/// What one tunnel run measured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurements {
    /// Bytes the buyer sent into the tunnel.
    pub up: u64,
    /// Bytes that came back.
    pub down: u64,
    /// Milliseconds from the first byte up to the first byte down.
    pub first_byte_ms: Option<u64>,
    /// Most bytes down within one second.
    pub peak_down_bps: u64,
    /// Messages the seller answered.
    pub answered: u32,
    /// Messages that got no answer.
    pub lost: u32,
    #[serde(skip)]
    first_up_at: Option<u64>,
    #[serde(skip)]
    window: VecDeque<(u64, u64)>,
}

impl Measurements {
    /// A reading of the tunnel's meters (totals since it came up) at `at_ms` (any monotonic
    /// milliseconds).
    pub fn on_meter(&mut self, at_ms: u64, up: u64, down: u64) {
        if up > self.up && self.first_up_at.is_none() {
            self.first_up_at = Some(at_ms);
        }
        if down > self.down && self.first_byte_ms.is_none() {
            let from = self.first_up_at.unwrap_or(at_ms);
            self.first_byte_ms = Some(at_ms.saturating_sub(from));
        }
        self.up = self.up.max(up);
        self.down = self.down.max(down);
        // Downstream totals of the last second: the peak is the growth across the window.
        self.window.push_back((at_ms, self.down));
        // Keep the newest reading at least a second old: a burst that fell between two
        // readings further apart than a second is measured over their real span (the window
        // holding only the current reading would see nothing).
        while self
            .window
            .get(1)
            .is_some_and(|(t, _)| at_ms.saturating_sub(*t) >= 1_000)
        {
            self.window.pop_front();
        }
        if let Some((t0, d0)) = self.window.front() {
            let span = at_ms.saturating_sub(*t0).max(1_000);
            let bps = (self.down - d0).saturating_mul(1_000) / span;
            self.peak_down_bps = self.peak_down_bps.max(bps);
        }
    }

    /// A message to the seller was answered (`true`) or not.
    pub fn on_reply(&mut self, answered: bool) {
        if answered {
            self.answered += 1;
        } else {
            self.lost += 1;
        }
    }

    /// Whether the buyer used the tunnel at all (nothing can be said of a run without traffic).
    pub fn used(&self) -> bool {
        self.up > 0
    }

    /// Whether the buyer sent traffic and nothing ever came back: the exit is broken.
    pub fn dead(&self) -> bool {
        self.up > 0 && self.down == 0
    }

    /// Share of messages lost.
    pub fn loss(&self) -> f64 {
        let n = self.answered + self.lost;
        if n == 0 {
            0.0
        } else {
            f64::from(self.lost) / f64::from(n)
        }
    }

    /// The run's quality in `[0, 1]`, or `None` when the tunnel was not used:
    /// `0.4·F + 0.4·T + 0.2·(1 − loss)`, F falling linearly from 1 at 0.5 s to 0 at 5 s of first
    /// byte, T = peak / 1 MiB/s capped at 1. A run where nothing came back is 0.
    pub fn quality(&self) -> Option<f64> {
        if !self.used() {
            return None;
        }
        if self.dead() {
            return Some(0.0);
        }
        let f = match self.first_byte_ms {
            Some(ms) if ms > FIRST_BYTE_GOOD_MS => {
                1.0 - ((ms - FIRST_BYTE_GOOD_MS) as f64
                    / (FIRST_BYTE_BAD_MS - FIRST_BYTE_GOOD_MS) as f64)
                    .min(1.0)
            }
            _ => 1.0,
        };
        let t = (self.peak_down_bps as f64 / THROUGHPUT_GOOD_BPS as f64).min(1.0);
        let (wf, wt, wl) = WEIGHTS;
        Some(wf * f + wt * t + wl * (1.0 - self.loss()))
    }
}

/// A session's quality from its runs: the mean over runs that were used (`None` when none was).
pub fn session_quality<'a>(runs: impl IntoIterator<Item = &'a Measurements>) -> Option<f64> {
    let q: Vec<f64> = runs.into_iter().filter_map(Measurements::quality).collect();
    (!q.is_empty()).then(|| q.iter().sum::<f64>() / q.len() as f64)
}

/// The stars (1..=5) a session's quality is worth: `1 + round(4·q)`.
pub fn stars(quality: f64) -> u8 {
    1 + (4.0 * quality.clamp(0.0, 1.0)).round() as u8
}

/// The buyer's local score of a seller from its sessions' qualities (a failed session is 0):
/// `(Σq + 0.5) / (n + 1)`, so a newcomer is 0.5 and one failure brings it to 0.25.
pub fn local_score(qualities: &[f64]) -> f64 {
    (qualities.iter().sum::<f64>() + 0.5) / (qualities.len() as f64 + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_counts_from_the_first_byte_sent() {
        let mut m = Measurements::default();
        m.on_meter(0, 0, 0);
        // The user waits 10 s before using the tunnel: not the seller's fault.
        m.on_meter(10_000, 100, 0);
        m.on_meter(10_100, 200, 0);
        m.on_meter(10_300, 300, 5_000);
        assert_eq!(m.first_byte_ms, Some(300));
        assert_eq!(m.quality().map(|q| q > 0.6), Some(true));
    }

    #[test]
    fn a_burst_between_readings_far_apart_still_counts() {
        let mut m = Measurements::default();
        m.on_meter(0, 0, 0);
        // A request and its 4 MiB answer, all between two readings 1.5 s apart.
        m.on_meter(1_500, 100, 4 << 20);
        assert_eq!(m.peak_down_bps, (4u64 << 20) * 1_000 / 1_500);
        assert_eq!(m.quality().map(|q| q > 0.99), Some(true), "{m:?}");
    }

    #[test]
    fn peak_is_the_best_second_of_downstream() {
        let mut m = Measurements::default();
        let mut down = 0;
        for tick in 0..50u64 {
            // 2 MiB/s for the first 2 s, then 100 KiB/s.
            down += if tick < 20 { 200 * 1024 } else { 10 * 1024 };
            m.on_meter(tick * 100, 1, down);
        }
        let mib = 1024 * 1024;
        assert!(
            m.peak_down_bps >= 19 * mib / 10 && m.peak_down_bps <= 21 * mib / 10,
            "{}",
            m.peak_down_bps
        );
        assert_eq!(stars(m.quality().unwrap()), 5);
    }

    #[test]
    fn nothing_back_is_a_dead_exit_and_one_star() {
        let mut m = Measurements::default();
        for tick in 0..100u64 {
            m.on_meter(tick * 100, tick * 60, 0);
        }
        assert!(m.dead());
        assert_eq!(m.quality(), Some(0.0));
        assert_eq!(stars(0.0), 1);
    }

    #[test]
    fn an_unused_run_says_nothing() {
        let mut m = Measurements::default();
        m.on_meter(0, 0, 0);
        m.on_reply(true);
        assert_eq!(m.quality(), None);
        assert_eq!(session_quality([&m]), None);
    }

    #[test]
    fn slow_first_byte_low_throughput_and_loss_cost_stars() {
        let mut slow = Measurements::default();
        slow.on_meter(0, 100, 0);
        slow.on_meter(4_000, 200, 1_000);
        slow.on_meter(5_000, 300, 60_000);
        slow.on_reply(true);
        slow.on_reply(false);
        slow.on_reply(false);
        let q = slow.quality().unwrap();
        // F = 1 - 3500/4500, T = 59000/1 MiB, loss 2/3.
        let expect = 0.4 * (1.0 - 3500.0 / 4500.0) + 0.4 * (59_000.0 / 1_048_576.0) + 0.2 / 3.0;
        assert!((q - expect).abs() < 1e-9, "{q} vs {expect}");
        assert_eq!(stars(q), 2);
    }

    #[test]
    fn local_score_newcomer_failure_and_good_record() {
        assert_eq!(local_score(&[]), 0.5);
        assert_eq!(local_score(&[0.0]), 0.25);
        assert_eq!(local_score(&[1.0]), 0.75);
        assert!(local_score(&[1.0, 1.0, 1.0, 0.0]) > local_score(&[1.0, 0.0]));
    }
}
