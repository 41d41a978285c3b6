//! What a running query hands the wire: its schema and a stream of record batches. Produced by the
//! engine (DuckDB results) and by the built-in tickets (segment batches); consumed by Flight and
//! HTTP. Plain types: the leaves that produce them import nothing else through here.

use arrow::{datatypes::SchemaRef, record_batch::RecordBatch};

use crate::error::Result;

/// A query's record batches, in order.
pub type Batches = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RecordBatch>> + Send>>;

/// A running query: its schema (with metadata) and its batches.
pub struct QueryStream {
    pub schema: SchemaRef,
    pub batches: Batches,
    /// Largest Flight message to aim for, by the batches' memory size. `None` sends each batch
    /// whole: for batches that are views into larger buffers (segments), whose memory size
    /// counts the whole buffer and would split them into slivers.
    pub max_message_bytes: Option<usize>,
}
