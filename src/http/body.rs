//! Answer bodies: the format chosen by `Accept` (or `format=`), and each format's encoder.
//!
//! * Arrow IPC stream: the Flight messages of the same answer, framed as the IPC stream format
//!   (continuation marker, metadata length, flatbuffer, body) and ended by the end-of-stream
//!   marker. Segment batches go out as their mapped bytes, as on Flight.
//! * CSV: a header line, then each batch as it comes.
//! * JSON: an array of row objects, built whole (so bounded by `--http-json-max-rows`).

use arrow::{
    csv::WriterBuilder,
    json::{writer::JsonArray, WriterBuilder as JsonWriterBuilder},
    record_batch::RecordBatch,
};
use arrow_flight::FlightData;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tonic::Status;

use crate::error::Error;

pub const ARROW: &str = "application/vnd.apache.arrow.stream";
pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv";

/// An answer format, as `format=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Arrow,
    Json,
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Arrow => ARROW,
            Format::Json => JSON,
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The best format an `Accept` header allows (highest `q`, then Arrow, JSON, CSV); Arrow
    /// when there is no header. None when it allows none of them.
    pub fn negotiate(accept: Option<&str>) -> Option<Format> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Some(Format::Arrow) };
        let mut best: Option<(f32, usize, Format)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()))
                .next_back()
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            let matches: &[Format] = match media.as_str() {
                "*/*" | "application/*" => &[Format::Arrow],
                ARROW => &[Format::Arrow],
                JSON => &[Format::Json],
                CSV | "text/*" => &[Format::Csv],
                _ => &[],
            };
            for &f in matches {
                let rank = f as usize;
                if best.is_none_or(|(bq, br, _)| q > bq || (q == bq && rank < br)) {
                    best = Some((q, rank, f));
                }
            }
        }
        best.map(|(_, _, f)| f)
    }
}

/// `[0xFFFFFFFF][i32 length][flatbuffer, padded to 8]`: an IPC stream message's prefix.
fn frame(header: &[u8]) -> Bytes {
    let padded = (8 + header.len()).div_ceil(8) * 8 - 8;
    let mut out = BytesMut::with_capacity(8 + padded);
    out.put_u32_le(0xFFFF_FFFF);
    out.put_i32_le(padded as i32);
    out.put_slice(header);
    out.put_bytes(0, padded - header.len());
    out.freeze()
}

/// The end-of-stream marker.
const EOS: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// An Arrow IPC stream from Flight messages: each message's framed header, then its body
/// (shared, not copied), then the end-of-stream marker.
pub fn arrow_stream(
    data: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static {
    let messages = data.flat_map(|r| {
        let chunks: Vec<Result<Bytes, Status>> = match r {
            Ok(d) if d.data_body.is_empty() => vec![Ok(frame(&d.data_header))],
            Ok(d) => vec![Ok(frame(&d.data_header)), Ok(d.data_body)],
            Err(s) => vec![Err(s)],
        };
        futures::stream::iter(chunks)
    });
    messages.chain(futures::stream::once(async { Ok(Bytes::from_static(&EOS)) }))
}

/// CSV with a header line, a chunk per batch.
pub fn csv_stream(
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static {
    let mut header = true;
    batches.map(move |r| {
        let b = r?;
        let mut out = Vec::new();
        let mut w = WriterBuilder::new().with_header(header).build(&mut out);
        header = false;
        w.write(&b).map_err(|e| Status::from(Error::from(e)))?;
        drop(w);
        Ok(Bytes::from(out))
    })
}

/// A JSON array of row objects (NULLs written as `null`).
pub fn json_array(batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut w = JsonWriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(&mut out);
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    if out.is_empty() {
        out.extend_from_slice(b"[]");
    }
    Ok(out)
}

/// Collects the rows of a JSON answer, or refuses past `max_rows`.
pub async fn collect_for_json(
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
    max_rows: u64,
) -> Result<Vec<RecordBatch>, Status> {
    let mut batches = std::pin::pin!(batches);
    let (mut out, mut rows) = (Vec::new(), 0u64);
    while let Some(b) = batches.next().await {
        let b = b?;
        rows += b.num_rows() as u64;
        if rows > max_rows {
            return Err(Status::invalid_argument(format!(
                "the answer has more than {max_rows} rows, the JSON limit (--http-json-max-rows); add limit=, \
                 narrow the range, or ask for Arrow (Accept: {ARROW}) or CSV, which stream"
            )));
        }
        out.push(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_best_supported_type() {
        assert_eq!(Format::negotiate(None), Some(Format::Arrow));
        assert_eq!(Format::negotiate(Some("*/*")), Some(Format::Arrow));
        assert_eq!(Format::negotiate(Some("text/csv")), Some(Format::Csv));
        assert_eq!(Format::negotiate(Some("application/json, text/csv;q=0.5")), Some(Format::Json));
        assert_eq!(Format::negotiate(Some("application/json;q=0.2, text/csv")), Some(Format::Csv));
        assert_eq!(Format::negotiate(Some("text/html")), None);
        assert_eq!(Format::negotiate(Some("application/json;q=0")), None);
    }

    #[test]
    fn frames_pad_the_header_to_eight_bytes() {
        for len in 0..20 {
            let f = frame(&vec![7u8; len]);
            assert_eq!(f.len() % 8, 0);
            let length = <[u8; 4]>::try_from(&f[4..8]).map(i32::from_le_bytes);
            assert_eq!(length.ok(), Some((f.len() - 8) as i32));
        }
    }
}
