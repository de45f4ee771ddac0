//! The server's metrics in the Prometheus text exposition format (version 0.0.4, which
//! OpenMetrics parsers read too): what operators graph and alert on.
//!
//! Invariants:
//! - Counting never blocks a request: counters are atomics, and the few labelled families
//!   (problem types, validation outcomes) take a short lock on a small map whose keys come from
//!   fixed sets (problem types, challenge types), never from client input.
//! - Gauges that live in the database (queue depth, database latency) are read at scrape time.
//! - Counters are this process's own since it started (Prometheus's `rate()` handles restarts);
//!   instances are told apart by the scrape target, not by a label here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms: a local signer answers in milliseconds,
/// an upstream CA (RA mode) or an HSM in up to seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// A latency histogram: cumulative buckets, sum and count.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds (an integer, so it can be an atomic).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// A counter family with one label set per key.
#[derive(Default)]
struct Family(Mutex<BTreeMap<Vec<(&'static str, String)>, u64>>);

impl Family {
    fn add(&self, labels: Vec<(&'static str, String)>) {
        *self
            .0
            .lock()
            .expect("metrics lock")
            .entry(labels)
            .or_default() += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (labels, v) in self.0.lock().expect("metrics lock").iter() {
            let text: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {v}", text.join(","));
        }
    }
}

/// A label value in the exposition format (backslash, quote and newline escaped).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every metric of one server process.
#[derive(Default)]
pub struct Metrics {
    /// Certificates issued (committed with their order's `valid`).
    pub issued: AtomicU64,
    /// Orders the queue made `invalid` (refused, or past their deadline).
    pub issuance_failed: AtomicU64,
    /// Validations by challenge type and result.
    validations: Family,
    /// Problem documents answered, by type.
    problems: Family,
    /// Time the signer (local signing process, HSM, upstream CA) took per attempt.
    pub signer_latency: Histogram,
}

/// What is read from the database at scrape time.
pub struct Sampled {
    /// Orders waiting for their certificate (`processing`).
    pub queue_depth: Option<i64>,
    /// How long a trivial query took, or `None` if the database did not answer.
    pub database_latency: Option<Duration>,
    /// The signing service is running.
    pub signer_up: bool,
}

impl Metrics {
    pub fn validation(&self, challenge_type: &str, valid: bool) {
        self.validations.add(vec![
            ("type", challenge_type.to_owned()),
            ("result", if valid { "valid" } else { "invalid" }.to_owned()),
        ]);
    }

    /// A problem answered; `kind` is the problem type's short name (`badNonce`).
    pub fn problem(&self, kind: &str) {
        self.problems.add(vec![("type", kind.to_owned())]);
    }

    /// The exposition text.
    pub fn render(&self, sampled: &Sampled) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {v}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP sceau_build_info The running version.\n# TYPE sceau_build_info gauge\nsceau_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        counter(
            &mut out,
            "sceau_certificates_issued_total",
            "Certificates issued by this process's issuance queue.",
            self.issued.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sceau_issuance_failures_total",
            "Orders the issuance queue made invalid (refused by the signer or past their deadline).",
            self.issuance_failed.load(Ordering::Relaxed),
        );
        self.validations.render(
            &mut out,
            "sceau_validations_total",
            "Challenge validations by type and result (CAA included).",
        );
        self.problems.render(
            &mut out,
            "sceau_problems_total",
            "RFC 7807 problem documents answered, by ACME problem type.",
        );
        self.signer_latency.render(
            &mut out,
            "sceau_signer_duration_seconds",
            "Time the signer took per issuance attempt.",
        );
        if let Some(depth) = sampled.queue_depth {
            gauge(
                &mut out,
                "sceau_issuance_queue_depth",
                "Orders waiting for their certificate (processing).",
                depth as f64,
            );
        }
        gauge(
            &mut out,
            "sceau_database_up",
            "1 when the database answered the scrape's query.",
            if sampled.database_latency.is_some() {
                1.0
            } else {
                0.0
            },
        );
        if let Some(d) = sampled.database_latency {
            gauge(
                &mut out,
                "sceau_database_latency_seconds",
                "Time a trivial query took at scrape time.",
                d.as_secs_f64(),
            );
        }
        gauge(
            &mut out,
            "sceau_signer_up",
            "1 when the signing service is running.",
            if sampled.signer_up { 1.0 } else { 0.0 },
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 0\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("x_sum 0.303\n"), "{out}");
        assert!(out.contains("x_count 2\n"), "{out}");
    }

    #[test]
    fn labels_are_escaped() {
        let m = Metrics::default();
        m.problem("a\"b");
        let out = m.render(&Sampled {
            queue_depth: Some(0),
            database_latency: None,
            signer_up: true,
        });
        assert!(
            out.contains("sceau_problems_total{type=\"a\\\"b\"} 1"),
            "{out}"
        );
        assert!(out.contains("sceau_database_up 0"), "{out}");
    }
}
