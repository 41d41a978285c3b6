//! Admission control and per-query limits.
//!
//! * At most `max_running` queries stream at once. Others wait in a queue of at most `max_queued`
//!   for up to `queue_timeout`, then get UNAVAILABLE (retriable) — quickly, never a hang. The permit
//!   lives as long as the response stream, not just until its headers.
//! * Each query has a deadline covering the whole streamed body: the server's `query_timeout`, or
//!   the client's `grpc-timeout` when that is sooner.
//! * A result may not exceed `max_rows` rows or `max_bytes` bytes.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{metadata::MetadataMap, Status};

use crate::metrics;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_running: usize,
    pub max_queued: usize,
    pub queue_timeout: Duration,
    pub query_timeout: Duration,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// The running-query slots and the wait queue.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
}

/// A running query's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_running.max(1)));
        Admission { limits, slots, queued: AtomicUsize::new(0) }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A slot now, or after waiting in the queue; UNAVAILABLE when the queue is full or the wait
    /// times out.
    pub async fn admit(&self) -> Result<Slot, Status> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let busy = || {
            Status::unavailable(format!(
                "server busy: {} queries running and {} waiting; retry shortly",
                self.limits.max_running,
                self.queued.load(Ordering::Relaxed)
            ))
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limits.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(busy());
        }
        metrics::QUEUED.inc();
        let waited = tokio::time::timeout(self.limits.queue_timeout, self.slots.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        metrics::QUEUED.dec();
        match waited {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            _ => Err(busy()),
        }
    }

    /// The deadline of a query: the server's timeout or the client's `grpc-timeout`, if sooner.
    pub fn deadline(&self, metadata: &MetadataMap) -> tokio::time::Instant {
        let client = metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let timeout = client.map_or(self.limits.query_timeout, |c| c.min(self.limits.query_timeout));
        tokio::time::Instant::now() + timeout
    }
}

/// `grpc-timeout` values: digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_running: usize, max_queued: usize) -> Limits {
        Limits {
            max_running,
            max_queued,
            queue_timeout: Duration::from_millis(50),
            query_timeout: Duration::from_secs(60),
            max_rows: None,
            max_bytes: None,
        }
    }

    #[tokio::test]
    async fn the_next_query_waits_then_gets_unavailable() {
        let a = Admission::new(limits(1, 1));
        let first = a.admit().await.expect("a slot");
        let second = a.admit().await.expect_err("no slot within the queue timeout");
        assert_eq!(second.code(), tonic::Code::Unavailable);
        drop(first);
        assert!(a.admit().await.is_ok(), "the slot comes back when the stream ends");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let a = Arc::new(Admission::new(limits(1, 0)));
        let _running = a.admit().await.expect("a slot");
        let started = std::time::Instant::now();
        assert_eq!(a.admit().await.expect_err("queue full").code(), tonic::Code::Unavailable);
        assert!(started.elapsed() < Duration::from_millis(40), "refused without waiting");
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
