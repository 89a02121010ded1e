//! Counters for `GET /metrics` (Prometheus text format).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
}

impl Metrics {
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
        for (name, help, v) in gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        }
        out
    }
}
