//! Process metrics in the Prometheus text format (`GET /metrics`), written by hand: a few
//! counters and histograms do not need a metrics crate.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

/// Upper bounds (seconds) of the PATCH acknowledgment latency buckets.
const PATCH_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds (seconds) of the finalize duration buckets.
const FINALIZE_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0];

/// A cumulative histogram with fixed buckets; the sum is kept in microseconds.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let n = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// What a request is counted under: method, matched route (never the raw path), status.
type RequestKey = (String, String, u16);

/// The server's counters, shared through the application state.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    bytes_ingested: AtomicU64,
    patch_ack: Histogram,
    finalize: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            bytes_ingested: AtomicU64::new(0),
            patch_ack: Histogram::new(&PATCH_BUCKETS),
            finalize: Histogram::new(&FINALIZE_BUCKETS),
        }
    }
}

impl Metrics {
    /// Counts one answered request; `route` is the matched route pattern or `unmatched`.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    /// Counts bytes made durable by an acknowledged PATCH.
    pub fn ingested(&self, bytes: u64) {
        self.bytes_ingested.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records the time from a PATCH's arrival to its acknowledgment.
    pub fn patch_acknowledged(&self, elapsed: Duration) {
        self.patch_ack.observe(elapsed);
    }

    /// Records the time one recording took to finalize.
    pub fn finalized(&self, elapsed: Duration) {
        self.finalize.observe(elapsed);
    }

    /// The exposition text; `active_lives` is read from the database by the caller.
    pub fn render(&self, active_lives: u64) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP livekeep_http_requests_total HTTP requests answered, by method, matched route and status.\n\
             # TYPE livekeep_http_requests_total counter\n",
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((method, route, status), n) in requests.iter() {
            let _ = writeln!(
                out,
                "livekeep_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        drop(requests);
        let ingested = self.bytes_ingested.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP livekeep_bytes_ingested_total Recording bytes made durable by acknowledged PATCHes.\n\
             # TYPE livekeep_bytes_ingested_total counter\nlivekeep_bytes_ingested_total {ingested}"
        );
        let _ = writeln!(
            out,
            "# HELP livekeep_active_lives Lives in progress.\n\
             # TYPE livekeep_active_lives gauge\nlivekeep_active_lives {active_lives}"
        );
        self.patch_ack.write(
            &mut out,
            "livekeep_patch_ack_seconds",
            "Time from a tus PATCH's arrival to its 204 (bytes synced and offset committed).",
        );
        self.finalize.write(
            &mut out,
            "livekeep_finalize_seconds",
            "Time to finalize one recording (seekable WebM or checked MP4).",
        );
        out
    }
}

/// Escapes a label value (backslash, quote, newline) as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.patch_acknowledged(Duration::from_millis(3));
        metrics.patch_acknowledged(Duration::from_secs(2));
        let text = metrics.render(0);
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("livekeep_patch_ack_seconds_count 2"));
    }

    #[test]
    fn requests_are_counted_by_route_not_by_path() {
        let metrics = Metrics::default();
        metrics.request("GET", "/api/posts/{post_id}", 200);
        metrics.request("GET", "/api/posts/{post_id}", 200);
        let text = metrics.render(3);
        assert!(text.contains(
            "livekeep_http_requests_total{method=\"GET\",route=\"/api/posts/{post_id}\",status=\"200\"} 2"
        ));
        assert!(text.contains("livekeep_active_lives 3"));
    }
}
