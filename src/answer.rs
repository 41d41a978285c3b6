//! What a running query hands the wire: its schema and a stream of pieces. Produced by the
//! engine (DuckDB results) and by the built-in tickets (segment batches); consumed by Flight and
//! HTTP. Plain types: the leaves that produce them import nothing else through here.

use arrow::{datatypes::SchemaRef, record_batch::RecordBatch};

use crate::error::Result;

/// What a query sends: a record batch, or a segment batch already in Arrow IPC form (sent as
/// is, with no encoding and no copy until gRPC's own).
pub enum Piece {
    Batch(RecordBatch),
    Encoded(Encoded),
}

/// One record batch as an Arrow IPC message: the flatbuffer header and the body, with the same
/// rows decoded (views into the same bytes) for wires that re-encode (CSV, JSON).
pub struct Encoded {
    pub rows: usize,
    pub header: bytes::Bytes,
    pub body: bytes::Bytes,
    pub batch: RecordBatch,
}

impl Piece {
    pub fn rows(&self) -> usize {
        match self {
            Piece::Batch(b) => b.num_rows(),
            Piece::Encoded(e) => e.rows,
        }
    }
}

pub type Pieces = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Piece>> + Send>>;

/// A running query: its schema (with metadata) and its batches.
pub struct QueryStream {
    pub schema: SchemaRef,
    pub batches: Pieces,
    /// Largest Flight message to aim for, by the batches' memory size. `None` sends each batch
    /// whole: for batches that are views into larger buffers (segments), whose memory size
    /// counts the whole buffer and would split them into slivers.
    pub max_message_bytes: Option<usize>,
}
