//! What a run measured: issuance latencies, errors grouped by kind, and the result line.
//!
//! Invariant: the first field of [`Summary::line`] is `issued=`, and the six fields the
//! comparison script parses (`issued errors elapsed_s certs_per_s p50_ms p99_ms`) always appear,
//! in that order, before any extra field.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Distinct error kinds printed as they first occur; the rest are only counted.
const ERRORS_SHOWN: usize = 5;

#[derive(Default)]
pub struct Stats {
    latencies: Mutex<Vec<Duration>>,
    errors: Mutex<ErrorTally>,
}

#[derive(Default)]
struct ErrorTally {
    total: u64,
    /// kind → (count, first full message), in order of first appearance.
    kinds: Vec<(String, u64, String)>,
    index: HashMap<String, usize>,
}

impl Stats {
    pub fn issued(&self, latency: Duration) {
        self.latencies.lock().expect("stats lock").push(latency);
    }

    pub fn failed(&self, kind: String, message: String) {
        let mut tally = self.errors.lock().expect("stats lock");
        tally.total += 1;
        if let Some(&i) = tally.index.get(&kind) {
            tally.kinds[i].1 += 1;
            return;
        }
        if tally.kinds.len() < ERRORS_SHOWN {
            eprintln!("sceau-bench: error: {message}");
        }
        let i = tally.kinds.len();
        tally.index.insert(kind.clone(), i);
        tally.kinds.push((kind, 1, message));
    }

    /// `(count, kind)` per distinct error, most frequent first.
    pub fn error_kinds(&self) -> Vec<(u64, String)> {
        let tally = self.errors.lock().expect("stats lock");
        let mut kinds: Vec<_> = tally
            .kinds
            .iter()
            .map(|(k, n, _)| (*n, k.clone()))
            .collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.0));
        kinds
    }

    pub fn summary(&self, elapsed: Duration) -> Summary {
        let mut latencies = self.latencies.lock().expect("stats lock").clone();
        latencies.sort();
        Summary {
            issued: latencies.len() as u64,
            errors: self.errors.lock().expect("stats lock").total,
            elapsed,
            p50: percentile(&latencies, 50),
            p99: percentile(&latencies, 99),
        }
    }
}

/// Nearest-rank percentile of sorted samples; zero when there are none.
pub fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub issued: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Summary {
    pub fn certs_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.issued as f64 / secs
        } else {
            0.0
        }
    }

    pub fn line(&self) -> String {
        format!(
            "issued={} errors={} elapsed_s={:.2} certs_per_s={:.1} p50_ms={} p99_ms={}",
            self.issued,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.certs_per_s(),
            self.p50.as_millis(),
            self.p99.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<_> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50), ms(50));
        assert_eq!(percentile(&samples, 99), ms(99));
        assert_eq!(percentile(&[ms(7)], 99), ms(7));
        assert_eq!(percentile(&[ms(1), ms(2), ms(3)], 50), ms(2));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn line_has_the_parsed_fields_in_order() {
        let stats = Stats::default();
        for v in [100, 300, 200] {
            stats.issued(ms(v));
        }
        stats.failed(
            "newOrder: HTTP 429: rateLimited".into(),
            "newOrder: HTTP 429: rateLimited: slow".into(),
        );
        stats.failed(
            "newOrder: HTTP 429: rateLimited".into(),
            "newOrder: HTTP 429: rateLimited: down".into(),
        );
        stats.failed(
            "finalize: connect".into(),
            "finalize: connect refused".into(),
        );
        let line = stats.summary(Duration::from_secs(2)).line();
        assert_eq!(
            line,
            "issued=3 errors=3 elapsed_s=2.00 certs_per_s=1.5 p50_ms=200 p99_ms=300"
        );
        assert_eq!(
            stats.error_kinds(),
            vec![
                (2, "newOrder: HTTP 429: rateLimited".to_owned()),
                (1, "finalize: connect".to_owned())
            ]
        );
    }
}
