//! What a DoGet stream carries before it reaches the wire: ready Flight data (schemas, compressed
//! or split messages, Flight SQL answers) or a record batch written straight into the gRPC
//! buffer as an Arrow IPC message.
//!
//! Profiled (`perf`, 64 clients asking `p90` for a day): arrow-ipc's encoder copies every buffer
//! into a body `Vec` that grows by doubling (a copy and a half of the answer), and prost then
//! copies that body into tonic's buffer: together 17 % of the server's CPU. [`Frame::chunks`]
//! lays a batch out as the protobuf message once: a message up to [`COPY_BODY_BYTES`] is copied
//! into one chunk (one `writev` for h2, not one per buffer), a larger one lends the batch's own
//! large buffers as its body. The header is padded so that the body starts 64-byte aligned in
//! the message, where pyarrow (which reads a message into one allocation) finds its buffers
//! aligned: its CPU reading a month as 16 MiB messages measured 0.22-0.28 → 0.19-0.23 s, with
//! the copied chunks. Types it does not know go through arrow-ipc as before.

use arrow::{
    array::{ArrayData, BooleanBufferBuilder, RecordBatch},
    buffer::{BooleanBuffer, Buffer},
    compute::concat_batches,
    datatypes::DataType,
    ipc::{
        writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions},
        Buffer as IpcBuffer, FieldNode, MessageBuilder, MessageHeader, MetadataVersion, RecordBatchBuilder,
    },
};
use arrow_flight::FlightData;
use bytes::{BufMut, Bytes, BytesMut};
use prost::{
    encoding::{encode_key, encode_varint, WireType},
    Message,
};
use tonic::Status;

use crate::error::Error;

/// One message of a DoGet answer.
#[derive(Debug)]
pub enum Frame {
    Data(FlightData),
    /// Rows laid out as one uncompressed IPC record batch on their own buffers (see
    /// [`Frame::batches`]).
    Laid(Layout),
}

impl Frame {
    /// One or more batches of one schema (no dictionaries) as one message, joined as they are
    /// written, and laid out once, here. Types [`Layout`] does not know are encoded by arrow-ipc.
    pub fn batches(batches: Vec<RecordBatch>) -> Result<Frame, Status> {
        match Layout::of(&batches) {
            Some(layout) => Ok(Frame::Laid(layout)),
            None => Ok(Frame::Data(ipc_encode(&batches)?)),
        }
    }

    /// The message's body bytes (what byte caps and `bridge_bytes_sent_total` count).
    pub fn body_len(&self) -> usize {
        match self {
            Frame::Data(d) => d.data_body.len(),
            Frame::Laid(l) => l.body_len,
        }
    }

    /// As Flight data, for the paths that need it whole (the `FlightService` trait, HTTP).
    pub fn into_data(self) -> FlightData {
        match self {
            Frame::Data(d) => d,
            Frame::Laid(l) => l.into_data(),
        }
    }

    /// The message as a gRPC length-prefixed protobuf `FlightData`, in pieces to send one after
    /// another: one piece up to [`COPY_BODY_BYTES`]; above it, the large buffers of a batch are
    /// the batch's own memory, not copies.
    pub fn chunks(self) -> Vec<Bytes> {
        let data = match self {
            Frame::Data(d) => d,
            Frame::Laid(layout) => return layout.chunks(),
        };
        let mut out = BytesMut::with_capacity(GRPC_PREFIX + data.encoded_len());
        grpc_prefix(&mut out, data.encoded_len());
        data.encode_raw(&mut out);
        vec![out.freeze()]
    }
}

/// The gRPC message prefix: not compressed, then the length (big-endian).
const GRPC_PREFIX: usize = 5;

fn grpc_prefix(out: &mut BytesMut, len: usize) {
    out.put_u8(0);
    out.put_u32(len as u32);
}

/// In a message over [`COPY_BODY_BYTES`], buffers at least this large are sent as they are;
/// smaller ones are copied into the chunk being built, up to [`CHUNK_BYTES`] a chunk. h2 writes
/// each chunk with a `writev` of its own: lent one by one, a 16 MiB message of a scan's column
/// pieces (~86 KB, one per row group) took ~330 writes, ~9,200 for the month. A scan for such a
/// client now decodes runs of row groups as one batch (`Mapped::scan_rows`), whose columns
/// (0.25-0.5 MB) are lent.
const SHARE_BYTES: usize = 128 << 10;

/// The size a chunk of copied pieces grows to before the next one starts.
const CHUNK_BYTES: usize = 1 << 20;

/// Messages up to this size are copied into one chunk. h2 writes each chunk as a DATA frame with
/// a `writev` of its own, and each write to a socket wakes the reader and runs the loopback's
/// receive path: measured with 64 clients asking `p90` for a day (~1.3 MB answers, ~28 buffers),
/// one copy cost less than the writes it saves (README Design, "Under load, profiled"). Copying
/// 16 MiB messages into one chunk made a cached scan's server CPU 0.23 → 0.41 s (the copy reads
/// DRAM and fills fresh pages): a large message lends its large buffers and copies the rest into
/// chunks of [`CHUNK_BYTES`].
const COPY_BODY_BYTES: usize = 4 << 20;

/// An Arrow buffer lent to the wire.
struct Lent(Buffer);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

fn ipc_encode(batches: &[RecordBatch]) -> Result<FlightData, Status> {
    let internal = |e: arrow::error::ArrowError| Status::from(Error::internal(e));
    let joined;
    let b = match batches {
        [one] => one,
        _ => {
            let first = batches.first().ok_or_else(|| Status::from(Error::internal("a message without rows")))?;
            joined = concat_batches(&first.schema(), batches).map_err(internal)?;
            &joined
        }
    };
    let options = IpcWriteOptions::default();
    let (_, data) = IpcDataGenerator::default()
        .encode(b, &mut DictionaryTracker::new(false), &options, &mut Default::default())
        .map_err(|e| Status::from(Error::internal(e)))?;
    Ok(FlightData::from(data))
}

/// Body buffers start at multiples of this (Arrow's recommended alignment).
const ALIGN: usize = 64;
/// `FlightData` fields (arrow-flight's `Flight.proto`).
const DATA_HEADER: u32 = 2;
const DATA_BODY: u32 = 1000;

/// Batches as one IPC record batch message: the flatbuffer header and the body's buffers, each
/// made of pieces (one per batch) written one after the other.
#[derive(Debug)]
pub struct Layout {
    header: Vec<u8>,
    buffers: Vec<Vec<Buffer>>,
    body_len: usize,
}

impl Layout {
    /// None when a column has a type this writer does not lay out (arrow-ipc encodes those).
    fn of(batches: &[RecordBatch]) -> Option<Layout> {
        let (mut nodes, mut buffers) = (Vec::new(), Vec::new());
        let rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        for i in 0..batches.first()?.num_columns() {
            let column: Vec<ArrayData> = batches.iter().map(|b| b.column(i).to_data()).collect();
            let nulls = column.iter().map(ArrayData::null_count).sum::<usize>();
            nodes.push(FieldNode::new(rows as i64, nulls as i64));
            buffers.push(validity(&column, nulls));
            buffers.extend(values(&column)?);
        }
        let (mut specs, mut offset) = (Vec::with_capacity(buffers.len()), 0usize);
        for pieces in &buffers {
            let len = pieces.iter().map(Buffer::len).sum::<usize>();
            specs.push(IpcBuffer::new(offset as i64, len as i64));
            offset += len.next_multiple_of(ALIGN);
        }
        let mut header = header(rows, &nodes, &specs, offset);
        header.resize(header.len() + body_pad(header.len(), offset), 0);
        Some(Layout { header, buffers, body_len: offset })
    }

    /// The message as Flight data, its body copied together.
    fn into_data(self) -> FlightData {
        let mut body = Vec::with_capacity(self.body_len);
        for pieces in &self.buffers {
            let len = pieces.iter().map(Buffer::len).sum::<usize>();
            pieces.iter().for_each(|p| body.extend_from_slice(p.as_slice()));
            body.resize(body.len() + len.next_multiple_of(ALIGN) - len, 0);
        }
        FlightData { data_header: self.header.into(), data_body: body.into(), ..Default::default() }
    }

    /// The gRPC message `FlightData { data_header, data_body }`: copied into one chunk, or, past
    /// [`COPY_BODY_BYTES`], with the body's large buffers shared.
    fn chunks(self) -> Vec<Bytes> {
        let mut proto = Vec::with_capacity(self.header.len() + 16);
        encode_key(DATA_HEADER, WireType::LengthDelimited, &mut proto);
        encode_varint(self.header.len() as u64, &mut proto);
        proto.extend_from_slice(&self.header);
        if self.body_len > 0 {
            encode_key(DATA_BODY, WireType::LengthDelimited, &mut proto);
            encode_varint(self.body_len as u64, &mut proto);
        }
        // A message up to COPY_BODY_BYTES goes out as one chunk; a larger one lends its buffers.
        let (share, chunk) = match self.body_len > COPY_BODY_BYTES {
            true => (SHARE_BYTES, CHUNK_BYTES),
            false => (usize::MAX, usize::MAX),
        };
        let reserve = chunk.min(self.body_len);
        let mut open = BytesMut::with_capacity(GRPC_PREFIX + proto.len() + reserve);
        grpc_prefix(&mut open, proto.len() + self.body_len);
        open.put_slice(&proto);
        let mut out = Vec::new();
        for pieces in self.buffers {
            let len = pieces.iter().map(Buffer::len).sum::<usize>();
            for p in pieces {
                if p.len() < share {
                    if open.len() + p.len() > chunk && !open.is_empty() {
                        out.push(open.split().freeze());
                        open.reserve(chunk);
                    }
                    open.put_slice(p.as_slice());
                    continue;
                }
                if !open.is_empty() {
                    out.push(open.split().freeze());
                }
                out.push(Bytes::from_owner(Lent(p)));
            }
            open.put_bytes(0, len.next_multiple_of(ALIGN) - len);
        }
        if !open.is_empty() {
            out.push(open.freeze());
        }
        out
    }
}

/// Zeros to add after a flatbuffer header of `header` bytes so that the body starts at a
/// multiple of [`ALIGN`] in the protobuf message, as its buffers do within it: a client that
/// reads the message into one allocation then finds every buffer aligned and need not copy it.
fn body_pad(header: usize, body: usize) -> usize {
    let varint = |n: usize| prost::encoding::encoded_len_varint(n as u64);
    let at = |pad: usize| {
        let key = |tag| prost::encoding::key_len(tag);
        key(DATA_HEADER) + varint(header + pad) + header + pad + key(DATA_BODY) + varint(body)
    };
    (0..2 * ALIGN).find(|pad| at(*pad) % ALIGN == 0).unwrap_or(0)
}

/// A column's validity bitmap (one piece), empty when there are no NULLs (IPC allows it;
/// arrow-ipc writes all ones).
fn validity(column: &[ArrayData], nulls: usize) -> Vec<Buffer> {
    if nulls == 0 {
        return vec![];
    }
    if let [one] = column {
        return one.nulls().map(|n| n.inner().sliced()).into_iter().collect();
    }
    bits(column, |d| d.nulls().map(|n| n.inner().clone()))
}

/// Bit-packed pieces joined into one bitmap (a bit per row: small beside the values).
fn bits(column: &[ArrayData], piece: impl Fn(&ArrayData) -> Option<BooleanBuffer>) -> Vec<Buffer> {
    let mut joined = BooleanBufferBuilder::new(column.iter().map(ArrayData::len).sum());
    for d in column {
        match piece(d) {
            Some(b) => joined.append_buffer(&b),
            None => joined.append_n(d.len(), true),
        }
    }
    vec![joined.finish().into_inner()]
}

/// The value buffers of a flat column, as pieces cut to each batch's slice; None for other types.
fn values(column: &[ArrayData]) -> Option<Vec<Vec<Buffer>>> {
    let data_type = column.first()?.data_type();
    match data_type {
        DataType::Boolean => {
            Some(vec![bits(column, |d| Some(BooleanBuffer::new(d.buffers()[0].clone(), d.offset(), d.len())))])
        }
        DataType::Utf8 | DataType::Binary => {
            let (mut offsets, mut bytes, mut base) = (vec![0i32], Vec::new(), 0i32);
            for d in column {
                let o = &d.buffers()[0].typed_data::<i32>()[d.offset()..d.offset() + d.len() + 1];
                let (first, last) = (o[0], o[d.len()]);
                offsets.extend(o[1..].iter().map(|x| x - first + base));
                bytes.push(d.buffers()[1].slice_with_length(first as usize, (last - first) as usize));
                base += last - first;
            }
            Some(vec![vec![Buffer::from_vec(offsets)], bytes])
        }
        t if t.is_primitive() => {
            let width = t.primitive_width()?;
            let piece = |d: &ArrayData| d.buffers()[0].slice_with_length(d.offset() * width, d.len() * width);
            Some(vec![column.iter().map(piece).collect()])
        }
        _ => None,
    }
}

/// The IPC `Message` flatbuffer of a record batch.
fn header(rows: usize, nodes: &[FieldNode], specs: &[IpcBuffer], body_len: usize) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let nodes = fbb.create_vector(nodes);
    let buffers = fbb.create_vector(specs);
    let mut batch = RecordBatchBuilder::new(&mut fbb);
    batch.add_length(rows as i64);
    batch.add_nodes(nodes);
    batch.add_buffers(buffers);
    let batch = batch.finish().as_union_value();
    let mut message = MessageBuilder::new(&mut fbb);
    message.add_version(MetadataVersion::V5);
    message.add_header_type(MessageHeader::RecordBatch);
    message.add_bodyLength(body_len as i64);
    message.add_header(batch);
    let message = message.finish();
    fbb.finish(message, None);
    fbb.finished_data().to_vec()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{BooleanArray, Float64Array, Int32Array, StringArray, TimestampMicrosecondArray},
        datatypes::{Field, Schema},
        ipc::convert::fb_to_schema,
    };
    use arrow_flight::{utils::flight_data_to_arrow_batch, SchemaAsIpc};

    use super::*;

    fn batch() -> RecordBatch {
        batch_of(1000)
    }

    fn batch_of(n: i32) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("f", DataType::Float64, false),
            Field::new("t", DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None), true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from_iter((0..n).map(|i| (i % 7 != 0).then_some(i)))),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64 / 3.0))),
                Arc::new(TimestampMicrosecondArray::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i as i64 * 1000)))),
                Arc::new(StringArray::from_iter((0..n).map(|i| (i % 3 != 0).then(|| "x".repeat(i as usize % 5))))),
                Arc::new(BooleanArray::from_iter((0..n).map(|i| (i % 11 != 0).then_some(i % 2 == 0)))),
            ],
        )
        .expect("a valid batch")
    }

    /// The gRPC message's chunks joined, its prefix checked and stripped, decoded.
    fn decode(frame: Frame) -> FlightData {
        let joined: Vec<u8> = frame.chunks().iter().flat_map(|c| c.to_vec()).collect();
        assert_eq!(joined[0], 0, "not compressed");
        assert_eq!(u32::from_be_bytes(joined[1..5].try_into().expect("four bytes")) as usize, joined.len() - 5);
        let data = FlightData::decode(&joined[5..]).expect("a FlightData message");
        // The body is the message's last field: it starts aligned, as its buffers do within it.
        assert_eq!((joined.len() - 5 - data.data_body.len()) % ALIGN, 0, "the body starts aligned");
        data
    }

    /// Written directly, read back with arrow-flight's reader: equal to the batch, for slices
    /// at bit offsets that are not byte-aligned too.
    #[test]
    fn direct_messages_read_back_equal() {
        let whole = batch();
        let options = IpcWriteOptions::default();
        let schema_data = FlightData::from(SchemaAsIpc::new(&whole.schema(), &options));
        let message = arrow::ipc::root_as_message(&schema_data.data_header[..]).expect("a schema message");
        let schema = Arc::new(fb_to_schema(message.header_as_schema().expect("a schema header")));
        for (offset, len) in [(0, 1000), (3, 500), (8, 64), (13, 1), (999, 1), (0, 0)] {
            let slice = whole.slice(offset, len);
            let frame = Frame::batches(vec![slice.clone()]).expect("laid out");
            assert!(matches!(frame, Frame::Laid(_)));
            let whole = Frame::batches(vec![slice.clone()]).expect("laid out").into_data();
            assert_eq!(whole, decode(Frame::batches(vec![slice.clone()]).expect("laid out")), "into_data = chunks");
            let body_len = frame.body_len();
            let data = decode(frame);
            assert_eq!(data.data_body.len(), body_len);
            let back = flight_data_to_arrow_batch(&data, schema.clone(), &Default::default()).expect("a record batch");
            assert_eq!(back, slice, "slice at {offset}, {len} rows");
        }
    }

    /// A message up to COPY_BODY_BYTES is one chunk; a larger one lends its large buffers (more
    /// chunks); both read back equal.
    #[test]
    fn small_messages_are_one_chunk_and_large_ones_share_their_buffers() {
        // ~2.2 MB (one chunk, over CHUNK_BYTES) and ~5.5 MB.
        for (rows, one_chunk) in [(1000, true), (100_000, true), (250_000, false)] {
            let b = batch_of(rows);
            let frame = Frame::batches(vec![b.clone()]).expect("laid out");
            assert_eq!(frame.body_len() <= COPY_BODY_BYTES, one_chunk, "{rows} rows");
            assert!(rows != 100_000 || frame.body_len() > CHUNK_BYTES, "the case over CHUNK_BYTES");
            assert_eq!(Frame::batches(vec![b.clone()]).expect("laid out").chunks().len() == 1, one_chunk);
            let data = decode(frame);
            let back = flight_data_to_arrow_batch(&data, b.schema(), &Default::default()).expect("a record batch");
            assert_eq!(back, b, "{rows} rows");
        }
    }

    /// Several slices written as one message read back as their concatenation.
    #[test]
    fn joined_messages_read_back_as_the_concatenation() {
        let whole = batch();
        let schema = whole.schema();
        for cuts in [vec![(0, 1000)], vec![(3, 500), (600, 13)], vec![(0, 8), (8, 64), (77, 1), (900, 100)]] {
            let pieces: Vec<RecordBatch> = cuts.iter().map(|(o, n)| whole.slice(*o, *n)).collect();
            let want = concat_batches(&schema, &pieces).expect("one schema");
            let data = decode(Frame::batches(pieces).expect("laid out"));
            let back = flight_data_to_arrow_batch(&data, schema.clone(), &Default::default()).expect("a record batch");
            assert_eq!(back, want, "pieces {cuts:?}");
        }
    }
}
