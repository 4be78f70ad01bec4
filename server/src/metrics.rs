//! Process metrics in the Prometheus text format (`GET /metrics`), written by hand: a few
//! counters and histograms do not need a metrics crate.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::storage::{requests::Operation, RequestCounts};

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
        self.write_series(out, name, "");
    }

    /// The series of one histogram; `labels` (`k="v"`, or empty) go before `le`.
    fn write_series(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let n = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {count}"
        );
    }
}

/// Requests answered by method, then matched route (never the raw path), then status: looked
/// up with borrowed keys, so counting a request allocates only when its series is new.
type RequestCounters = BTreeMap<String, BTreeMap<String, BTreeMap<u16, u64>>>;

/// The steps of a PATCH, timed apart to show where its acknowledgment time goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStage {
    /// Waiting for the upload's lock (on PostgreSQL, a coordination round trip or more).
    Lock,
    /// Reading the upload's row, checking who may write it, claiming it for this node if
    /// another node wrote it last.
    Check,
    /// Making the stored bytes agree with the committed offset (a listing on an object store).
    Reconcile,
    /// Receiving the body (buffered, or written as it comes on a local disk).
    Body,
    /// Checking the lock is still held before storing (PostgreSQL).
    LockCheck,
    /// Making the body durable: `fdatasync`, or the piece's PUT on an object store.
    Store,
    /// Committing the new offset.
    Commit,
    /// Telling the live's viewers (on this node and through the bus).
    Announce,
}

impl PatchStage {
    /// Every stage, in the order a PATCH goes through them.
    pub const ALL: [Self; 8] = [
        Self::Lock,
        Self::Check,
        Self::Reconcile,
        Self::Body,
        Self::LockCheck,
        Self::Store,
        Self::Commit,
        Self::Announce,
    ];

    /// The `stage` label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Check => "check",
            Self::Reconcile => "reconcile",
            Self::Body => "body",
            Self::Store => "store",
            Self::LockCheck => "lock_check",
            Self::Commit => "commit",
            Self::Announce => "announce",
        }
    }
}

/// What a webhook attempt is counted under: event type, outcome.
type WebhookKey = (String, &'static str);

/// What `/metrics` reads from the database at each scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Lives in progress.
    pub active_lives: u64,
    /// Webhook deliveries still to send.
    pub webhooks_pending: u64,
    /// Webhook deliveries given up on (until redelivered).
    pub webhooks_failed: u64,
    /// Age of the oldest delivery still to send, in seconds (0 when none).
    pub webhooks_oldest_seconds: f64,
}

/// The server's counters, shared through the application state.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<RequestCounters>,
    webhooks: Mutex<BTreeMap<WebhookKey, u64>>,
    bytes_ingested: AtomicU64,
    bytes_sent_by_sendfile: AtomicU64,
    patch_ack: Histogram,
    patch_stages: Vec<Histogram>,
    finalize: Histogram,
    object_requests: Option<Arc<RequestCounts>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// Counters for a server whose object store (if any) counts its requests in `object_requests`.
    pub fn new(object_requests: Option<Arc<RequestCounts>>) -> Self {
        Self {
            requests: Mutex::default(),
            webhooks: Mutex::default(),
            bytes_ingested: AtomicU64::new(0),
            bytes_sent_by_sendfile: AtomicU64::new(0),
            patch_ack: Histogram::new(&PATCH_BUCKETS),
            patch_stages: PatchStage::ALL
                .iter()
                .map(|_| Histogram::new(&PATCH_BUCKETS))
                .collect(),
            finalize: Histogram::new(&FINALIZE_BUCKETS),
            object_requests,
        }
    }

    /// Records how long one step of a PATCH took.
    pub fn patch_stage(&self, stage: PatchStage, elapsed: Duration) {
        self.patch_stages[stage as usize].observe(elapsed);
    }

    /// Counts one answered request; `route` is the matched route pattern or `unmatched`.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let routes = match requests.get_mut(method) {
            Some(routes) => routes,
            None => requests.entry(method.to_owned()).or_default(),
        };
        let statuses = match routes.get_mut(route) {
            Some(statuses) => statuses,
            None => routes.entry(route.to_owned()).or_default(),
        };
        *statuses.entry(status).or_default() += 1;
    }

    /// Counts one webhook attempt of `event_type` by its outcome (`delivered`, `rejected`,
    /// `timeout`, `unreachable`, `error`).
    pub fn webhook_attempt(&self, event_type: &str, outcome: &'static str) {
        let mut webhooks = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        *webhooks
            .entry((event_type.to_owned(), outcome))
            .or_default() += 1;
    }

    /// Counts bytes made durable by an acknowledged PATCH.
    pub fn ingested(&self, bytes: u64) {
        self.bytes_ingested.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts media bytes sent from the page cache with `sendfile` (zero-copy ranges).
    pub fn sent_by_sendfile(&self, bytes: u64) {
        self.bytes_sent_by_sendfile
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records the time from a PATCH's arrival to its acknowledgment.
    pub fn patch_acknowledged(&self, elapsed: Duration) {
        self.patch_ack.observe(elapsed);
    }

    /// Records the time one recording took to finalize.
    pub fn finalized(&self, elapsed: Duration) {
        self.finalize.observe(elapsed);
    }

    /// The exposition text; `gauges` are read from the database by the caller.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP livekeep_http_requests_total HTTP requests answered, by method, matched route and status.\n\
             # TYPE livekeep_http_requests_total counter\n",
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let series = requests.iter().flat_map(|(method, routes)| {
            routes.iter().flat_map(move |(route, statuses)| {
                statuses
                    .iter()
                    .map(move |(status, n)| (method, route, status, n))
            })
        });
        for (method, route, status, n) in series {
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
        let sent = self.bytes_sent_by_sendfile.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP livekeep_media_sendfile_bytes_total Media bytes sent with sendfile, without a copy through the server.\n\
             # TYPE livekeep_media_sendfile_bytes_total counter\nlivekeep_media_sendfile_bytes_total {sent}"
        );
        let _ = writeln!(
            out,
            "# HELP livekeep_active_lives Lives in progress.\n\
             # TYPE livekeep_active_lives gauge\nlivekeep_active_lives {}",
            gauges.active_lives
        );
        out.push_str(
            "# HELP livekeep_webhook_deliveries_total Webhook attempts, by event type and outcome.\n\
             # TYPE livekeep_webhook_deliveries_total counter\n",
        );
        let webhooks = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        for ((event_type, outcome), n) in webhooks.iter() {
            let _ = writeln!(
                out,
                "livekeep_webhook_deliveries_total{{type=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(event_type)
            );
        }
        drop(webhooks);
        let _ = writeln!(
            out,
            "# HELP livekeep_webhook_outbox_size Webhook deliveries not delivered, by state.\n\
             # TYPE livekeep_webhook_outbox_size gauge\n\
             livekeep_webhook_outbox_size{{state=\"pending\"}} {}\n\
             livekeep_webhook_outbox_size{{state=\"failed\"}} {}",
            gauges.webhooks_pending, gauges.webhooks_failed
        );
        let _ = writeln!(
            out,
            "# HELP livekeep_webhook_outbox_oldest_seconds Age of the oldest webhook delivery still to send.\n\
             # TYPE livekeep_webhook_outbox_oldest_seconds gauge\n\
             livekeep_webhook_outbox_oldest_seconds {}",
            gauges.webhooks_oldest_seconds
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
        let name = "livekeep_patch_stage_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time spent in each step of a tus PATCH, stored or not.\n# TYPE {name} histogram"
        );
        for (stage, histogram) in PatchStage::ALL.iter().zip(&self.patch_stages) {
            histogram.write_series(&mut out, name, &format!("stage=\"{}\"", stage.name()));
        }
        if let Some(counts) = &self.object_requests {
            let name = "livekeep_object_store_requests_total";
            let _ = writeln!(
                out,
                "# HELP {name} Requests made to the object store, by operation.\n# TYPE {name} counter"
            );
            for operation in Operation::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{operation=\"{}\"}} {}",
                    operation.name(),
                    counts.get(operation)
                );
            }
        }
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
        let text = metrics.render(&Gauges::default());
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("livekeep_patch_ack_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("livekeep_patch_ack_seconds_count 2"));
    }

    #[test]
    fn patch_stages_are_one_labelled_histogram() {
        let metrics = Metrics::default();
        metrics.patch_stage(PatchStage::Store, Duration::from_millis(20));
        let text = metrics.render(&Gauges::default());
        assert!(
            text.contains("livekeep_patch_stage_seconds_bucket{stage=\"store\",le=\"0.025\"} 1")
        );
        assert!(text.contains("livekeep_patch_stage_seconds_count{stage=\"store\"} 1"));
        assert!(text.contains("livekeep_patch_stage_seconds_count{stage=\"lock\"} 0"));
        assert!(text.contains("livekeep_patch_stage_seconds_sum{stage=\"store\"} 0.02"));
        // Without an object store, no request counters.
        assert!(!text.contains("livekeep_object_store_requests_total"));
        let counts = Arc::new(RequestCounts::default());
        let text = Metrics::new(Some(counts)).render(&Gauges::default());
        assert!(text.contains("livekeep_object_store_requests_total{operation=\"list\"} 0"));
    }

    #[test]
    fn requests_are_counted_by_route_not_by_path() {
        let metrics = Metrics::default();
        metrics.request("GET", "/api/posts/{post_id}", 200);
        metrics.request("GET", "/api/posts/{post_id}", 200);
        let text = metrics.render(&Gauges {
            active_lives: 3,
            ..Gauges::default()
        });
        assert!(text.contains(
            "livekeep_http_requests_total{method=\"GET\",route=\"/api/posts/{post_id}\",status=\"200\"} 2"
        ));
        assert!(text.contains("livekeep_active_lives 3"));
    }

    #[test]
    fn webhook_attempts_are_counted_by_type_and_outcome() {
        let metrics = Metrics::default();
        metrics.webhook_attempt("live.ended", "timeout");
        metrics.webhook_attempt("live.ended", "delivered");
        metrics.webhook_attempt("live.ended", "delivered");
        let text = metrics.render(&Gauges {
            webhooks_pending: 4,
            webhooks_failed: 1,
            webhooks_oldest_seconds: 12.5,
            ..Gauges::default()
        });
        assert!(text.contains(
            "livekeep_webhook_deliveries_total{type=\"live.ended\",outcome=\"delivered\"} 2"
        ));
        assert!(text.contains(
            "livekeep_webhook_deliveries_total{type=\"live.ended\",outcome=\"timeout\"} 1"
        ));
        assert!(text.contains("livekeep_webhook_outbox_size{state=\"pending\"} 4"));
        assert!(text.contains("livekeep_webhook_outbox_size{state=\"failed\"} 1"));
        assert!(text.contains("livekeep_webhook_outbox_oldest_seconds 12.5"));
    }
}
