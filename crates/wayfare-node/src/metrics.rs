//! Counters for `GET /metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use wayfare_p2p::P2pStats;

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    bytes: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    persists: AtomicU64,
    persist_failures: AtomicU64,
    txs: AtomicU64,
    tx_failures: AtomicU64,
    /// Refused peer messages, by reason (and the once-per-peer log).
    pub refused: crate::inbound::RefusalLog,
    /// How long the seller takes to answer our vouchers.
    pub voucher_acks: crate::ack_latency::AckLatency,
    /// The p2p node's queue and connection-limit counters.
    p2p: Option<Arc<P2pStats>>,
}

impl Metrics {
    /// Counters that also show the p2p node's (`wayfare_p2p_…`).
    pub fn with_p2p(stats: Arc<P2pStats>) -> Self {
        Self {
            p2p: Some(stats),
            ..Self::default()
        }
    }

    /// Bytes metered through sessions.
    pub fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }
    /// A protocol message received.
    pub fn message_in(&self) {
        self.messages_in.fetch_add(1, Relaxed);
    }
    /// A protocol message sent.
    pub fn message_out(&self) {
        self.messages_out.fetch_add(1, Relaxed);
    }
    /// A persist, and whether it worked.
    pub fn persist(&self, ok: bool) {
        self.persists.fetch_add(1, Relaxed);
        if !ok {
            self.persist_failures.fetch_add(1, Relaxed);
        }
    }
    /// A transaction attempt, and whether it was mined.
    pub fn tx(&self, ok: bool) {
        self.txs.fetch_add(1, Relaxed);
        if !ok {
            self.tx_failures.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus exposition, with the gauges the caller adds.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let counters = [
            (
                "wayfare_session_bytes_total",
                "Bytes metered through sessions",
                &self.bytes,
            ),
            (
                "wayfare_messages_received_total",
                "Protocol messages received",
                &self.messages_in,
            ),
            (
                "wayfare_messages_sent_total",
                "Protocol messages sent",
                &self.messages_out,
            ),
            (
                "wayfare_persists_total",
                "Session states written to the store",
                &self.persists,
            ),
            (
                "wayfare_persist_failures_total",
                "Store writes that failed",
                &self.persist_failures,
            ),
            (
                "wayfare_chain_tx_total",
                "Chain transactions attempted",
                &self.txs,
            ),
            (
                "wayfare_chain_tx_failures_total",
                "Chain transactions that failed",
                &self.tx_failures,
            ),
        ];
        for (name, help, v) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Relaxed)
            ));
        }
        out.push_str(&self.refused.render());
        out.push_str(&self.voucher_acks.render(std::time::Instant::now()));
        if let Some(p2p) = &self.p2p {
            labelled(
                &mut out,
                "wayfare_p2p_dropped_total",
                "Peer requests answered busy (session, quote) and events dropped (event) because the node was behind",
                "class",
                &p2p.dropped(),
            );
            labelled(
                &mut out,
                "wayfare_p2p_connections_denied_total",
                "Incoming connections denied by a limit (per_ip; limits: total, pending, per peer)",
                "limit",
                &p2p.connections_denied(),
            );
            labelled(
                &mut out,
                "wayfare_p2p_requests_refused_total",
                "Peer requests refused before the node saw them (malformed, rate_limited)",
                "reason",
                &p2p.requests_refused(),
            );
        }
        for (name, help, v) in gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        }
        out
    }
}

/// Appends one counter with a label.
fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
    for (v, n) in values {
        out.push_str(&format!("{name}{{{label}=\"{v}\"}} {n}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_p2p_drops_by_class() {
        let m = Metrics::with_p2p(Arc::new(P2pStats::default()));
        let text = m.render(&[]);
        for class in ["session", "quote", "event"] {
            assert!(
                text.contains(&format!(
                    "wayfare_p2p_dropped_total{{class=\"{class}\"}} 0\n"
                )),
                "{text}"
            );
        }
        assert!(text.contains("wayfare_p2p_connections_denied_total{limit=\"per_ip\"} 0\n"));
        assert!(!Metrics::default().render(&[]).contains("wayfare_p2p"));
    }
}
