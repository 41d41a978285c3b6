//! The recent past, for the status page: the last finished queries, and per ticket kind the
//! answers and their latency in 10-second buckets over the last ten minutes. In memory, bounded.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{LazyLock, Mutex},
};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Finished queries kept.
pub const KEEP_QUERIES: usize = 100;
/// Seconds per latency bucket, and buckets kept.
pub const BUCKET_SECONDS: i64 = 10;
const KEEP_BUCKETS: usize = 60;
/// Latency samples kept per bucket and kind (enough for a p99; the count is exact).
const SAMPLES: usize = 2048;

/// One finished query.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub at: DateTime<Utc>,
    pub rpc: &'static str,
    pub kind: &'static str,
    pub dataset: String,
    pub manifest_version: Option<u64>,
    pub rows: u64,
    pub bytes: u64,
    pub duration_ms: f64,
    /// The gRPC code name (`Ok`, `InvalidArgument`, …).
    pub code: String,
    pub peer: String,
    /// Who asked (None: anonymous).
    pub principal: Option<String>,
    /// The SQL of a `sql` query.
    pub sql: Option<String>,
}

/// Answers of one kind in one bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Unix seconds of the bucket's start.
    pub t: i64,
    pub kind: &'static str,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Default)]
struct Recent {
    queries: VecDeque<Finished>,
    /// (bucket start, kind) → (count, latency samples).
    buckets: BTreeMap<(i64, &'static str), (u64, Vec<f64>)>,
}

static RECENT: LazyLock<Mutex<Recent>> = LazyLock::new(Mutex::default);

/// Records a finished query.
pub fn record(f: Finished) {
    let Ok(mut r) = RECENT.lock() else { return };
    let t = f.at.timestamp() - f.at.timestamp().rem_euclid(BUCKET_SECONDS);
    let (count, samples) = r.buckets.entry((t, f.kind)).or_default();
    *count += 1;
    if samples.len() < SAMPLES {
        samples.push(f.duration_ms);
    }
    let oldest = t - BUCKET_SECONDS * KEEP_BUCKETS as i64;
    r.buckets.retain(|(bt, _), _| *bt > oldest);
    if r.queries.len() == KEEP_QUERIES {
        r.queries.pop_front();
    }
    r.queries.push_back(f);
}

/// The finished queries, newest first.
pub fn queries() -> Vec<Finished> {
    RECENT.lock().map(|r| r.queries.iter().rev().cloned().collect()).unwrap_or_default()
}

/// The latency series: one point per bucket and kind, oldest first.
pub fn series() -> Vec<Point> {
    let Ok(r) = RECENT.lock() else { return Vec::new() };
    r.buckets
        .iter()
        .map(|(&(t, kind), (count, samples))| {
            let mut sorted = samples.clone();
            sorted.sort_by(f64::total_cmp);
            let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
            Point { t, kind, count: *count, p50_ms: at(0.5), p99_ms: at(0.99) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(kind: &'static str, ms: f64) -> Finished {
        Finished {
            at: Utc::now(),
            rpc: "DoGet",
            kind,
            dataset: "yellow".into(),
            manifest_version: Some(1),
            rows: 1,
            bytes: 8,
            duration_ms: ms,
            code: "Ok".into(),
            peer: String::new(),
            principal: None,
            sql: None,
        }
    }

    #[test]
    fn keeps_the_newest_queries_and_their_latency() {
        for i in 0..(KEEP_QUERIES + 5) {
            record(finished("test-kind", i as f64));
        }
        let q: Vec<_> = queries().into_iter().filter(|f| f.kind == "test-kind").collect();
        assert_eq!(q.len(), KEEP_QUERIES);
        assert_eq!(q[0].duration_ms, (KEEP_QUERIES + 4) as f64, "newest first");
        let points: Vec<_> = series().into_iter().filter(|p| p.kind == "test-kind").collect();
        assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), (KEEP_QUERIES + 5) as u64);
    }
}
