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

impl Limits {
    /// The limits the flags set.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Limits {
            max_running: config.max_running_queries,
            max_queued: config.max_queued_queries,
            queue_timeout: config.queue_timeout,
            query_timeout: config.query_timeout,
            max_rows: config.max_result_rows,
            max_bytes: config.max_result_bytes,
        }
    }
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
        metrics::changed();
        let waited = tokio::time::timeout(self.limits.queue_timeout, self.slots.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        metrics::QUEUED.dec();
        metrics::changed();
        match waited {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            _ => Err(busy()),
        }
    }

    /// The deadline of a query: the server's timeout or the client's `grpc-timeout`, if sooner.
    pub fn deadline(&self, metadata: &MetadataMap) -> tokio::time::Instant {
        let client = metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let timeout = client.map_or(self.limits.query_timeout, |c| c.min(self.limits.query_timeout));
        let now = tokio::time::Instant::now();
        // An absurd timeout means "no deadline", not an overflow.
        now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
    }
}

/// Why [`guard`] stopped a stream early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Deadline,
    Cancelled,
}

/// Holds a query's resources (`held`: its slot, …) and its result stream until the stream ends,
/// the deadline passes or `cancel` resolves, whichever comes first. On a deadline or cancel a
/// task — not the client, which may have stopped reading — drops the stream (so the query's
/// producer stops and DuckDB is interrupted) and frees the resources; the next poll then yields
/// `stopped(why)`.
pub fn guard<S, H>(
    stream: S,
    held: H,
    deadline: tokio::time::Instant,
    cancel: impl std::future::Future<Output = ()> + Send + 'static,
    stopped: impl Fn(Stop) -> S::Item + Send + 'static,
) -> impl futures::Stream<Item = S::Item> + Send
where
    S: futures::Stream + Unpin + Send + 'static,
    S::Item: Send,
    H: Send + 'static,
{
    use futures::StreamExt;
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let shared = Arc::new(std::sync::Mutex::new(Ok((stream, held, ended_tx))));
    let weak = Arc::downgrade(&shared);
    tokio::spawn(async move {
        let why = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => Stop::Deadline,
            _ = cancel => Stop::Cancelled,
            _ = ended_rx => return,
        };
        if let Some(s) = weak.upgrade() {
            let taken = s.lock().map(|mut g| std::mem::replace(&mut *g, Err(why))).ok();
            drop(taken);
        }
    });
    futures::stream::poll_fn(move |cx| {
        let Ok(mut g) = shared.lock() else { return std::task::Poll::Ready(None) };
        match g.as_mut() {
            Ok((stream, _, _)) => stream.poll_next_unpin(cx),
            Err(why) => std::task::Poll::Ready(Some(stopped(*why))),
        }
    })
}

/// `grpc-timeout` values: digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        // gRPC allows 8 digits; anything larger is refused rather than overflowing.
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
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

    #[tokio::test]
    async fn the_guard_drops_a_stalled_stream_and_frees_its_slot_at_the_deadline() {
        use futures::StreamExt;
        let a = Admission::new(limits(1, 0));
        let (tx, rx) = tokio::sync::mpsc::channel::<u32>(1);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        let mut s = Box::pin(guard(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            a.admit().await.expect("slot"),
            deadline,
            std::future::pending(),
            |_| 0,
        ));
        tx.send(7).await.expect("send");
        assert_eq!(s.next().await, Some(7));
        // The consumer stalls; at the deadline the producer sees its receiver gone...
        tx.closed().await;
        // ...the slot is free again, and the next poll reports the deadline.
        assert!(a.admit().await.is_ok());
        assert_eq!(s.next().await, Some(0));
    }

    #[tokio::test]
    async fn the_guard_drops_a_stream_when_cancelled_even_if_nobody_polls() {
        use futures::StreamExt;
        let a = Admission::new(limits(1, 0));
        let (tx, rx) = tokio::sync::mpsc::channel::<Stop>(1);
        let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        let mut s = Box::pin(guard(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            a.admit().await.expect("slot"),
            deadline,
            async move { drop(cancel_rx.await) },
            |why| why,
        ));
        cancel_tx.send(()).expect("cancel");
        tx.closed().await; // no poll in between: the cancel alone dropped the stream
        assert!(a.admit().await.is_ok());
        assert_eq!(s.next().await, Some(Stop::Cancelled));
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(&format!("{}H", u64::MAX)), None);
        assert_eq!(parse_grpc_timeout("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
