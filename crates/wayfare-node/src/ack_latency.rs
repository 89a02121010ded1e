//! How long the other side takes to answer our vouchers, over a sliding window: the figure that
//! says whether a flood at the seller is delaying a paying buyer (`/metrics`
//! `wayfare_voucher_ack_seconds{quantile=…}`, read by `make bench-flood`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window quantiles are taken over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most samples kept (one voucher a second fills a minute with 60).
const MAX_SAMPLES: usize = 4096;

/// Voucher round trips of the last [`WINDOW`] (time is a parameter).
#[derive(Debug, Default)]
pub struct AckLatency {
    samples: Mutex<VecDeque<(Instant, Duration)>>,
}

impl AckLatency {
    /// Records one answered voucher that took `took`, at `now`.
    pub fn record(&self, now: Instant, took: Duration) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= MAX_SAMPLES {
            s.pop_front();
        }
        s.push_back((now, took));
    }

    /// The `q` quantile (0..=1, nearest rank) of the window ending at `now`, and the count.
    pub fn quantile(&self, now: Instant, q: f64) -> (Option<Duration>, usize) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        while s
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
        {
            s.pop_front();
        }
        let mut v: Vec<Duration> = s.iter().map(|(_, d)| *d).collect();
        if v.is_empty() {
            return (None, 0);
        }
        v.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        (Some(v[rank - 1]), v.len())
    }

    /// The Prometheus summary lines (quantiles 0.5 and 0.99 of the window, and its count).
    pub fn render(&self, now: Instant) -> String {
        let name = "wayfare_voucher_ack_seconds";
        let mut out = format!(
            "# HELP {name} Round trip of our vouchers to the seller's answer, over the last {} s\n# TYPE {name} summary\n",
            WINDOW.as_secs()
        );
        let mut count = 0;
        for q in [0.5, 0.99] {
            let (d, n) = self.quantile(now, q);
            count = n;
            if let Some(d) = d {
                out.push_str(&format!(
                    "{name}{{quantile=\"{q}\"}} {:.6}\n",
                    d.as_secs_f64()
                ));
            }
        }
        out.push_str(&format!("{name}_count {count}\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_cover_the_window_only() {
        let a = AckLatency::default();
        let t0 = Instant::now();
        for i in 1..=100u64 {
            a.record(t0, Duration::from_millis(i));
        }
        assert_eq!(a.quantile(t0, 0.5), (Some(Duration::from_millis(50)), 100));
        assert_eq!(a.quantile(t0, 0.99), (Some(Duration::from_millis(99)), 100));
        // A minute later the old samples are gone; a new slow one is all there is.
        let t1 = t0 + WINDOW + Duration::from_secs(1);
        a.record(t1, Duration::from_secs(2));
        assert_eq!(a.quantile(t1, 0.99), (Some(Duration::from_secs(2)), 1));
        assert!(
            a.render(t1)
                .contains("wayfare_voucher_ack_seconds{quantile=\"0.99\"} 2.000000")
        );
        // Bounded whatever is recorded.
        for _ in 0..(MAX_SAMPLES + 10) {
            a.record(t1, Duration::ZERO);
        }
        assert!(a.samples.lock().unwrap().len() <= MAX_SAMPLES);
    }
}
