//! The server's counters, rendered as Prometheus text at `GET /metrics`.
//!
//! Plain atomics: recording is one relaxed add, and nothing here allocates
//! after start. The names follow Prometheus conventions (`_total` counters,
//! `_seconds` histograms).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How an execution ended, as `/metrics` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionOutcome {
    /// `success: true`.
    Succeeded,
    /// `success: false`, other than cancelled.
    Failed,
    /// Stopped by a `cancel`.
    Cancelled,
}

impl ExecutionOutcome {
    const ALL: [ExecutionOutcome; 3] = [Self::Succeeded, Self::Failed, Self::Cancelled];

    fn label(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Upper bounds (seconds) of the execution-latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// The store's counters, as `/metrics` shows them.
pub struct StoreCounts {
    /// Transactions committed.
    pub commits: u64,
    /// Writes that failed.
    pub failed_writes: u64,
    /// `RESTART` checkpoints of the WAL.
    pub wal_restarts: u64,
}

impl StoreCounts {
    /// The counters of `store` now.
    pub fn of(store: &crate::store::Store) -> StoreCounts {
        StoreCounts {
            commits: store.commit_count(),
            failed_writes: store.failed_write_count(),
            wal_restarts: store.wal_restart_count(),
        }
    }
}

/// Every counter the server keeps.
#[derive(Default)]
pub struct Metrics {
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    http_requests: AtomicU64,
    handshakes_refused: AtomicU64,
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    messages_rejected: AtomicU64,
    executions: [AtomicU64; 3],
    chat_steps: AtomicU64,
    /// Per bucket (not cumulative); `+Inf` is the last.
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_micros: AtomicU64,
}

impl Metrics {
    /// A WebSocket connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Relaxed);
    }

    /// A WebSocket connection ended.
    pub fn connection_closed(&self) {
        self.connections_closed.fetch_add(1, Relaxed);
    }

    /// An HTTP request (not an upgrade) was answered.
    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Relaxed);
    }

    /// A handshake was refused (401, 403, 503).
    pub fn handshake_refused(&self) {
        self.handshakes_refused.fetch_add(1, Relaxed);
    }

    /// A frame arrived; `rejected` when it was answered with an error.
    pub fn message_received(&self, rejected: bool) {
        self.messages_received.fetch_add(1, Relaxed);
        if rejected {
            self.messages_rejected.fetch_add(1, Relaxed);
        }
    }

    /// A message was queued for a client.
    pub fn message_sent(&self) {
        self.messages_sent.fetch_add(1, Relaxed);
    }

    /// A chat step ran.
    pub fn chat_step(&self) {
        self.chat_steps.fetch_add(1, Relaxed);
    }

    /// An execution ended after `elapsed`.
    pub fn execution(&self, outcome: ExecutionOutcome, elapsed: Duration) {
        let index = ExecutionOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.executions[index].fetch_add(1, Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.fetch_add(micros, Relaxed);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        let opened = self.connections_opened.load(Relaxed);
        opened.saturating_sub(self.connections_closed.load(Relaxed))
    }

    /// The Prometheus text exposition (format 0.0.4), with figures kept
    /// elsewhere: the executions running now and the store's counters.
    pub fn render(&self, running_executions: usize, store: StoreCounts) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "agentwire_connections_open",
            "gauge",
            "WebSocket connections open now.",
            &[("", self.open_connections())],
        );
        metric(
            "agentwire_connections_total",
            "counter",
            "WebSocket connections accepted since start.",
            &[("", self.connections_opened.load(Relaxed))],
        );
        metric(
            "agentwire_http_requests_total",
            "counter",
            "Plain HTTP requests answered (healthz, metrics, others).",
            &[("", self.http_requests.load(Relaxed))],
        );
        metric(
            "agentwire_handshakes_refused_total",
            "counter",
            "WebSocket handshakes refused: bad token (401), origin (403), full (503).",
            &[("", self.handshakes_refused.load(Relaxed))],
        );
        metric(
            "agentwire_messages_received_total",
            "counter",
            "Text frames received from clients.",
            &[("", self.messages_received.load(Relaxed))],
        );
        metric(
            "agentwire_messages_rejected_total",
            "counter",
            "Received frames that did not decode and were answered with an error.",
            &[("", self.messages_rejected.load(Relaxed))],
        );
        metric(
            "agentwire_messages_sent_total",
            "counter",
            "Messages queued to clients.",
            &[("", self.messages_sent.load(Relaxed))],
        );
        metric(
            "agentwire_chat_steps_total",
            "counter",
            "Chat steps run.",
            &[("", self.chat_steps.load(Relaxed))],
        );
        metric(
            "agentwire_executions_running",
            "gauge",
            "Executions running now.",
            &[("", running_executions as u64)],
        );
        metric(
            "agentwire_store_commits_total",
            "counter",
            "Store transactions committed (executions per commit shows the group commit at work).",
            &[("", store.commits)],
        );
        metric(
            "agentwire_store_failed_writes_total",
            "counter",
            "Store writes that failed.",
            &[("", store.failed_writes)],
        );
        metric(
            "agentwire_store_wal_restarts_total",
            "counter",
            "WAL RESTART checkpoints: each copies what is left of the WAL into the database and rewinds it, holding the writer for a few milliseconds.",
            &[("", store.wal_restarts)],
        );
        let labels = ExecutionOutcome::ALL.map(|o| format!("{{outcome=\"{}\"}}", o.label()));
        let by_outcome: Vec<(&str, u64)> = labels
            .iter()
            .zip(&self.executions)
            .map(|(label, count)| (label.as_str(), count.load(Relaxed)))
            .collect();
        metric(
            "agentwire_executions_total",
            "counter",
            "Executions completed, by outcome.",
            &by_outcome,
        );

        let name = "agentwire_execution_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from an execution's start to its completion.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, count) in self.latency_buckets.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.latency_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_every_execution() {
        let metrics = Metrics::default();
        metrics.execution(ExecutionOutcome::Succeeded, Duration::from_millis(3));
        metrics.execution(ExecutionOutcome::Failed, Duration::from_millis(300));
        metrics.execution(ExecutionOutcome::Cancelled, Duration::from_secs(100));
        let store = StoreCounts {
            commits: 7,
            failed_writes: 1,
            wal_restarts: 3,
        };
        let text = metrics.render(2, store);
        assert!(text.contains("agentwire_execution_duration_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("agentwire_execution_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("agentwire_execution_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("agentwire_execution_duration_seconds_bucket{le=\"60\"} 2\n"));
        assert!(text.contains("agentwire_execution_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("agentwire_execution_duration_seconds_count 3\n"));
        assert!(text.contains("agentwire_executions_total{outcome=\"cancelled\"} 1\n"));
        assert!(text.contains("agentwire_executions_running 2\n"));
        assert!(text.contains("agentwire_store_commits_total 7\n"));
        assert!(text.contains("agentwire_store_failed_writes_total 1\n"));
        assert!(text.contains("agentwire_store_wal_restarts_total 3\n"));
    }
}
