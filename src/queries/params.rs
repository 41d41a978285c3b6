//! Positional `?` parameters for SQL: Arrow record batches (as Flight SQL's DoPut sends them)
//! carried in a ticket as one Arrow IPC stream, and turned into DuckDB values per row. Each row
//! is one execution of the statement; the results are concatenated.

use arrow::compute::{cast_with_options, CastOptions};
use arrow::{
    array::{
        Array, AsArray, Date32Array, Date64Array, Decimal128Array, Float16Array, Float32Array, Float64Array,
        RecordBatch,
    },
    datatypes::{
        DataType, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit as ArrowUnit, TimestampMicrosecondType,
        TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type,
        UInt8Type,
    },
    ipc::{reader::StreamReader, writer::StreamWriter},
};
use duckdb::types::{TimeUnit, Value};

use crate::{
    engine::Parameter,
    error::{Error, Result},
};

/// Bound parameters larger than this are refused: they travel in every ticket.
pub const MAX_PARAMETER_BYTES: usize = 1 << 20;

/// One execution's values, in `?` order.
pub type Row = Vec<Value>;

/// Batches → one Arrow IPC stream (empty input → empty bytes).
pub fn encode(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let Some(first) = batches.first() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, &first.schema())?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(out)
}

/// An Arrow IPC stream → its parameter batches (validated, not yet converted).
pub fn decode(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() > MAX_PARAMETER_BYTES {
        return Err(Error::invalid(format!(
            "the bound parameters take {} bytes; the limit is {MAX_PARAMETER_BYTES}",
            bytes.len()
        )));
    }
    let reader = StreamReader::try_new(bytes, None)
        .map_err(|e| Error::invalid(format!("the bound parameters are not an Arrow IPC stream: {e}")))?;
    reader.map(|b| b.map_err(|e| Error::invalid(format!("bad parameter batch: {e}")))).collect()
}

/// Parameter batches → one row of DuckDB values per parameter row, each value first cast to the
/// type DuckDB expects for its parameter (`expected`, in order; None: taken as sent). A value
/// that does not cast is refused, naming the parameter and the type.
pub fn rows(batches: &[RecordBatch], expected: &[Parameter]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for batch in batches {
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (i, col) in batch.columns().iter().enumerate() {
            let target = expected.get(i).and_then(|p| p.ty.as_ref()).filter(|t| *t != col.data_type());
            columns.push(match target {
                Some(t) => {
                    cast_with_options(col, t, &CastOptions { safe: false, ..Default::default() }).map_err(|e| {
                        let name = expected.get(i).map_or_else(|| format!("${}", i + 1), |p| p.name.clone());
                        Error::invalid(format!(
                            "parameter {name} expects {t}; the {} value bound to it cannot be cast: {e}",
                            col.data_type()
                        ))
                    })?
                }
                None => col.clone(),
            });
        }
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| value(c.as_ref(), r)).collect::<Result<Row>>()?);
        }
    }
    Ok(rows)
}

/// The value at row `i` of a parameter column.
fn value(a: &dyn Array, i: usize) -> Result<Value> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match a.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Boolean(a.as_boolean().value(i)),
        DataType::Int8 => Value::TinyInt(a.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => Value::SmallInt(a.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::BigInt(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Value::UTinyInt(a.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => Value::USmallInt(a.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => Value::UInt(a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => Value::UBigInt(a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float16 => Value::Float(downcast::<Float16Array>(a)?.value(i).to_f32()),
        DataType::Float32 => Value::Float(downcast::<Float32Array>(a)?.value(i)),
        DataType::Float64 => Value::Double(downcast::<Float64Array>(a)?.value(i)),
        DataType::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::Text(a.as_string_view().value(i).to_string()),
        DataType::Binary => Value::Blob(a.as_binary::<i32>().value(i).to_vec()),
        DataType::LargeBinary => Value::Blob(a.as_binary::<i64>().value(i).to_vec()),
        DataType::Date32 => Value::Date32(downcast::<Date32Array>(a)?.value(i)),
        DataType::Date64 => Value::Date32((downcast::<Date64Array>(a)?.value(i) / 86_400_000) as i32),
        DataType::Timestamp(unit, _) => timestamp(a, *unit, i),
        DataType::Time64(arrow::datatypes::TimeUnit::Microsecond) => {
            Value::Time64(TimeUnit::Microsecond, a.as_primitive::<arrow::datatypes::Time64MicrosecondType>().value(i))
        }
        DataType::Decimal128(width, scale) => {
            let v = downcast::<Decimal128Array>(a)?.value(i);
            let d = duckdb::types::Decimal::new(
                *width,
                u8::try_from(*scale).map_err(|_| Error::invalid("negative decimal scale"))?,
                v,
            )
            .map_err(|e| Error::invalid(format!("parameter decimal: {e}")))?;
            Value::Decimal(d)
        }
        other => {
            return Err(Error::invalid(format!(
                "parameter type {other} is not supported; bind integers, floats, strings, booleans, \
                 dates, timestamps or decimals"
            )))
        }
    })
}

fn timestamp(a: &dyn Array, unit: ArrowUnit, i: usize) -> Value {
    match unit {
        ArrowUnit::Second => Value::Timestamp(TimeUnit::Second, a.as_primitive::<TimestampSecondType>().value(i)),
        ArrowUnit::Millisecond => {
            Value::Timestamp(TimeUnit::Millisecond, a.as_primitive::<TimestampMillisecondType>().value(i))
        }
        ArrowUnit::Microsecond => {
            Value::Timestamp(TimeUnit::Microsecond, a.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        ArrowUnit::Nanosecond => {
            Value::Timestamp(TimeUnit::Nanosecond, a.as_primitive::<TimestampNanosecondType>().value(i))
        }
    }
}

fn downcast<T: 'static>(a: &dyn Array) -> Result<&T> {
    a.as_any().downcast_ref::<T>().ok_or_else(|| Error::internal("parameter array does not match its type"))
}
