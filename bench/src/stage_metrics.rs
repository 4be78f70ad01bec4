//! The server's own account of a PATCH, read from its `/metrics`: seconds and counts per stage
//! (`livekeep_patch_stage_seconds`), object store requests
//! (`livekeep_object_store_requests_total`).

use std::collections::BTreeMap;

/// The PATCH stages the server times (`livekeep_patch_stage_seconds`), in order.
pub const STAGES: [(&str, &str); 8] = [
    ("lock", "lock"),
    ("check", "row check"),
    ("reconcile", "reconcile"),
    ("body", "body"),
    ("lock_check", "lock check"),
    ("store", "store PUT"),
    ("commit", "commit"),
    ("announce", "announce"),
];

/// Counters read from one `/metrics` text: stage sums (s) and counts, store requests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counters {
    stage_seconds: BTreeMap<String, f64>,
    stage_count: BTreeMap<String, f64>,
    /// Cumulative bucket counts, keyed by `stage/le` (seconds).
    stage_buckets: BTreeMap<String, f64>,
    requests: BTreeMap<String, f64>,
}

impl Counters {
    pub fn parse(text: &str) -> Self {
        let mut counters = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = |prefix: &str| {
                series
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix("\"}"))
                    .map(str::to_owned)
            };
            if let Some(labels) = label("livekeep_patch_stage_seconds_bucket{stage=\"") {
                // `lock",le="0.001` → `lock/0.001`
                counters
                    .stage_buckets
                    .insert(labels.replacen("\",le=\"", "/", 1), value);
            } else if let Some(stage) = label("livekeep_patch_stage_seconds_sum{stage=\"") {
                counters.stage_seconds.insert(stage, value);
            } else if let Some(stage) = label("livekeep_patch_stage_seconds_count{stage=\"") {
                counters.stage_count.insert(stage, value);
            } else if let Some(op) = label("livekeep_object_store_requests_total{operation=\"") {
                counters.requests.insert(op, value);
            }
        }
        counters
    }

    /// What was counted between `earlier` and `self`.
    pub fn minus(&self, earlier: &Self) -> Self {
        let diff = |now: &BTreeMap<String, f64>, then: &BTreeMap<String, f64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0.0)))
                .collect()
        };
        Self {
            stage_seconds: diff(&self.stage_seconds, &earlier.stage_seconds),
            stage_count: diff(&self.stage_count, &earlier.stage_count),
            stage_buckets: diff(&self.stage_buckets, &earlier.stage_buckets),
            requests: diff(&self.requests, &earlier.requests),
        }
    }

    /// PATCHes that reached the upload (each takes the lock once).
    pub fn patches(&self) -> f64 {
        self.stage_count.get("lock").copied().unwrap_or(0.0)
    }

    /// Mean milliseconds per PATCH spent in `stage`.
    pub fn ms_per_patch(&self, stage: &str) -> f64 {
        let seconds = self.stage_seconds.get(stage).copied().unwrap_or(f64::NAN);
        seconds * 1e3 / self.patches()
    }

    /// The bucket bound (ms) under which 99 % of `stage`'s times fell: a coarse p99 (the
    /// buckets are 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000 ms); infinite above them.
    pub fn p99_bound_ms(&self, stage: &str) -> f64 {
        let count = self.stage_count.get(stage).copied().unwrap_or(0.0);
        let prefix = format!("{stage}/");
        let mut bounds: Vec<(f64, f64)> = self
            .stage_buckets
            .iter()
            .filter_map(|(key, n)| Some((key.strip_prefix(&prefix)?.parse::<f64>().ok()?, *n)))
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        bounds
            .into_iter()
            .find(|(_, n)| *n >= 0.99 * count)
            .map_or(f64::INFINITY, |(le, _)| le * 1e3)
    }

    /// Requests of `operation` per PATCH (background compaction included).
    pub fn per_patch(&self, operation: &str) -> f64 {
        self.requests.get(operation).copied().unwrap_or(f64::NAN) / self.patches()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_metrics_text_and_subtracted() {
        let before = Counters::parse(
            "# TYPE livekeep_patch_stage_seconds histogram\n\
             livekeep_patch_stage_seconds_bucket{stage=\"lock\",le=\"0.001\"} 3\n\
             livekeep_patch_stage_seconds_bucket{stage=\"lock\",le=\"0.01\"} 10\n\
             livekeep_patch_stage_seconds_sum{stage=\"lock\"} 0.5\n\
             livekeep_patch_stage_seconds_count{stage=\"lock\"} 10\n\
             livekeep_object_store_requests_total{operation=\"list\"} 20\n",
        );
        let after = Counters::parse(
            "livekeep_patch_stage_seconds_bucket{stage=\"lock\",le=\"0.001\"} 90\n\
             livekeep_patch_stage_seconds_bucket{stage=\"lock\",le=\"0.01\"} 110\n\
             livekeep_patch_stage_seconds_sum{stage=\"lock\"} 1.5\n\
             livekeep_patch_stage_seconds_count{stage=\"lock\"} 110\n\
             livekeep_patch_stage_seconds_sum{stage=\"store\"} 2\n\
             livekeep_object_store_requests_total{operation=\"list\"} 120\n\
             livekeep_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1\n",
        );
        let run = after.minus(&before);
        assert_eq!(run.patches(), 100.0);
        assert_eq!(run.ms_per_patch("lock"), 10.0);
        assert_eq!(run.ms_per_patch("store"), 20.0);
        assert_eq!(run.per_patch("list"), 1.0);
        // 87 of 100 within 1 ms, all within 10 ms.
        assert_eq!(run.p99_bound_ms("lock"), 10.0);
        assert!(run.per_patch("put").is_nan(), "not counted is not zero");
    }
}
