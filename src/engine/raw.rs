//! The database opened through DuckDB's C API (`duckdb::ffi`), for what duckdb-rs does not
//! expose: the type DuckDB infers for each parameter of a prepared statement
//! (`duckdb_param_type`). Everything else goes through duckdb-rs connections over this handle.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, CString},
    path::Path,
    ptr,
};

use arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use duckdb::{ffi, Connection};

use crate::error::{Error, Result};

/// An open database. Connections made from it must not outlive it (the [`super::Engine`] owns
/// it for the life of the process).
pub struct RawDb(ffi::duckdb_database);

// SAFETY: a `duckdb_database` is safe to use from any thread; DuckDB synchronizes internally.
unsafe impl Send for RawDb {}
unsafe impl Sync for RawDb {}

/// A parameter of a prepared statement: its name (`$1`, or `$name`) and the Arrow type of the
/// value DuckDB expects, None when DuckDB cannot tell (e.g. `SELECT ?`).
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub ty: Option<DataType>,
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid("the SQL contains a NUL byte"))
}

impl RawDb {
    /// Opens (or creates) the database file at `path` with `options` (DuckDB config names).
    pub fn open(path: &Path, options: &[(&str, String)]) -> Result<Self> {
        let path = c_string(&path.display().to_string())?;
        // SAFETY: every pointer handed to DuckDB is valid for the call; the config is destroyed
        // once the database is open, and the error string is freed with duckdb_free.
        unsafe {
            let mut config: ffi::duckdb_config = ptr::null_mut();
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                return Err(Error::internal("duckdb_create_config failed"));
            }
            for (name, value) in options {
                let (n, v) = (c_string(name)?, c_string(value)?);
                if ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess {
                    ffi::duckdb_destroy_config(&mut config);
                    return Err(Error::invalid(format!("DuckDB refused the setting {name} = {value}")));
                }
            }
            let mut db: ffi::duckdb_database = ptr::null_mut();
            let mut err: *mut std::os::raw::c_char = ptr::null_mut();
            let state = ffi::duckdb_open_ext(path.as_ptr(), &mut db, config, &mut err);
            ffi::duckdb_destroy_config(&mut config);
            if state != ffi::DuckDBSuccess {
                let msg = if err.is_null() {
                    "unknown error".into()
                } else {
                    CStr::from_ptr(err).to_string_lossy().into_owned()
                };
                if !err.is_null() {
                    ffi::duckdb_free(err.cast());
                }
                return Err(Error::internal(format!("cannot open the DuckDB store: {msg}")));
            }
            Ok(RawDb(db))
        }
    }

    /// A duckdb-rs connection to this database.
    pub fn connect(&self) -> Result<Connection> {
        // SAFETY: the handle is open, and stays open while the engine (which owns it) lives.
        Ok(unsafe { Connection::open_from_raw(self.0) }?)
    }

    /// The parameters of `sql` as DuckDB's binder typed them. `sql` must already have passed
    /// the SQL guard: it is prepared here, never executed.
    pub fn parameters(&self, sql: &str) -> Result<Vec<Parameter>> {
        let query = c_string(sql)?;
        // SAFETY: the connection and statement are created, used and destroyed within this call;
        // strings DuckDB returns are copied before they are freed.
        unsafe {
            let mut con: ffi::duckdb_connection = ptr::null_mut();
            if ffi::duckdb_connect(self.0, &mut con) != ffi::DuckDBSuccess {
                return Err(Error::internal("duckdb_connect failed"));
            }
            let mut stmt: ffi::duckdb_prepared_statement = ptr::null_mut();
            let state = ffi::duckdb_prepare(con, query.as_ptr(), &mut stmt);
            let result = if state == ffi::DuckDBSuccess {
                Ok((1..=ffi::duckdb_nparams(stmt)).map(|i| parameter(stmt, i)).collect())
            } else {
                let err = ffi::duckdb_prepare_error(stmt);
                let msg = if err.is_null() {
                    "cannot prepare".into()
                } else {
                    CStr::from_ptr(err).to_string_lossy().into_owned()
                };
                Err(Error::Query(msg))
            };
            ffi::duckdb_destroy_prepare(&mut stmt);
            ffi::duckdb_disconnect(&mut con);
            result
        }
    }
}

/// Parameter `i` (1-based) of a prepared statement.
unsafe fn parameter(stmt: ffi::duckdb_prepared_statement, i: ffi::idx_t) -> Parameter {
    // SAFETY (caller): `stmt` is a successfully prepared statement and `i` is within its count.
    unsafe {
        let raw = ffi::duckdb_parameter_name(stmt, i);
        let name = if raw.is_null() {
            i.to_string()
        } else {
            let n = CStr::from_ptr(raw).to_string_lossy().into_owned();
            ffi::duckdb_free(raw as *mut std::ffi::c_void);
            n
        };
        let mut logical = ffi::duckdb_param_logical_type(stmt, i);
        let ty = if logical.is_null() {
            None
        } else {
            let ty = arrow_type(ffi::duckdb_get_type_id(logical), || {
                (ffi::duckdb_decimal_width(logical), ffi::duckdb_decimal_scale(logical))
            });
            ffi::duckdb_destroy_logical_type(&mut logical);
            ty
        };
        Parameter { name: format!("${name}"), ty }
    }
}

/// The Arrow type Bridge sends for a DuckDB type (as results are mapped), None for types a
/// client cannot bind directly (unknown, nested), which are then taken as text.
fn arrow_type(id: ffi::duckdb_type, decimal: impl FnOnce() -> (u8, u8)) -> Option<DataType> {
    Some(match id {
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => DataType::Boolean,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT => DataType::Int8,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => DataType::Int16,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => DataType::Int32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => DataType::Int64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => DataType::UInt8,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => DataType::UInt16,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => DataType::UInt32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT => DataType::UInt64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT => DataType::Decimal128(38, 0),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => DataType::Float32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => DataType::Float64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => {
            let (width, scale) = decimal();
            DataType::Decimal128(width, scale as i8)
        }
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => DataType::Utf8,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BLOB => DataType::Binary,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_DATE => DataType::Date32,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME => DataType::Time64(TimeUnit::Microsecond),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_S => DataType::Timestamp(TimeUnit::Second, None),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_MS => DataType::Timestamp(TimeUnit::Millisecond, None),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_NS => DataType::Timestamp(TimeUnit::Nanosecond, None),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        _ => return None,
    })
}

impl Drop for RawDb {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by `open` and is closed once, here.
        unsafe { ffi::duckdb_close(&mut self.0) }
    }
}
