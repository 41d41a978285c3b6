//! What Bridge tells Flight SQL clients about itself: GetSqlInfo and GetXdbcTypeInfo. Built once.

use std::sync::OnceLock;

use arrow_flight::sql::{
    metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder},
    Nullable, Searchable, SqlInfo, XdbcDataType, XdbcDatetimeSubcode,
};

/// SQL_SUPPORTED_TRANSACTION_NONE.
const NO_TRANSACTIONS: i32 = 0;
/// SQL_MINIMUM_GRAMMAR and SQL_CORE_GRAMMAR, as bits of the SqlSupportedGrammar bitmask.
const CORE_GRAMMAR: i32 = (1 << 0) | (1 << 1);
/// ANSI92_ENTRY_SQL, as a bit of the SqlAnsi92SupportedLevel bitmask.
const ANSI92_ENTRY: i32 = 1 << 0;
/// SQL_CASE_INSENSITIVE.
const CASE_INSENSITIVE: i32 = 1;
/// SQL_NULLS_SORTED_AT_END: DuckDB sorts NULLs last in both directions.
const NULLS_AT_END: i32 = 3;

pub fn sql_info() -> &'static SqlInfoData {
    static DATA: OnceLock<SqlInfoData> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Bridge");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, NO_TRANSACTIONS);
        b.append(SqlInfo::FlightSqlServerCancel, true);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlIdentifierCase, CASE_INSENSITIVE);
        b.append(SqlInfo::SqlQuotedIdentifierCase, CASE_INSENSITIVE);
        b.append(SqlInfo::SqlAllTablesAreSelectable, true);
        b.append(SqlInfo::SqlNullOrdering, NULLS_AT_END);
        b.append(SqlInfo::SqlSupportedGrammar, CORE_GRAMMAR);
        b.append(SqlInfo::SqlAnsi92SupportedLevel, ANSI92_ENTRY);
        b.append(SqlInfo::SqlSchemaTerm, "schema");
        b.append(SqlInfo::SqlCatalogTerm, "catalog");
        b.append(SqlInfo::SqlProcedureTerm, "procedure");
        b.append(SqlInfo::SqlCatalogAtStart, true);
        b.append(SqlInfo::SqlSelectForUpdateSupported, false);
        b.append(SqlInfo::SqlStoredProceduresSupported, false);
        b.append(SqlInfo::SqlTransactionsSupported, false);
        b.append(SqlInfo::SqlBatchUpdatesSupported, false);
        b.append(SqlInfo::SqlMaxColumnsInTable, 0i64); // 0: no fixed limit
        b.build().expect("static SqlInfo builds")
    })
}

/// A DuckDB type as an XDBC type row.
fn xdbc(name: &str, ty: XdbcDataType, size: Option<i32>) -> XdbcTypeInfo {
    let numeric = matches!(
        ty,
        XdbcDataType::XdbcTinyint
            | XdbcDataType::XdbcSmallint
            | XdbcDataType::XdbcInteger
            | XdbcDataType::XdbcBigint
            | XdbcDataType::XdbcReal
            | XdbcDataType::XdbcFloat
            | XdbcDataType::XdbcDouble
            | XdbcDataType::XdbcDecimal
    );
    let quoted = matches!(
        ty,
        XdbcDataType::XdbcVarchar
            | XdbcDataType::XdbcVarbinary
            | XdbcDataType::XdbcDate
            | XdbcDataType::XdbcTime
            | XdbcDataType::XdbcTimestamp
    );
    let subcode = match ty {
        XdbcDataType::XdbcDate => Some(XdbcDatetimeSubcode::XdbcSubcodeYear), // 1: SQL_CODE_DATE (an alias of YEAR),
        XdbcDataType::XdbcTime => Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
        XdbcDataType::XdbcTimestamp => Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        _ => None,
    };
    let sql_data_type = if subcode.is_some() { XdbcDataType::XdbcDatetime } else { ty };
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type: ty,
        column_size: size,
        literal_prefix: quoted.then(|| "'".to_string()),
        literal_suffix: quoted.then(|| "'".to_string()),
        create_params: (ty == XdbcDataType::XdbcDecimal).then(|| vec!["precision".into(), "scale".into()]),
        nullable: Nullable::NullabilityNullable,
        case_sensitive: ty == XdbcDataType::XdbcVarchar,
        searchable: if ty == XdbcDataType::XdbcVarchar { Searchable::Full } else { Searchable::Basic },
        unsigned_attribute: numeric.then_some(false),
        fixed_prec_scale: false,
        auto_increment: numeric.then_some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: (ty == XdbcDataType::XdbcDecimal).then_some(0),
        maximum_scale: (ty == XdbcDataType::XdbcDecimal).then_some(38),
        sql_data_type,
        datetime_subcode: subcode,
        num_prec_radix: numeric.then_some(if ty == XdbcDataType::XdbcDecimal { 10 } else { 2 }),
        interval_precision: None,
    }
}

/// The DuckDB types user SQL can produce, as XDBC types.
pub fn xdbc_types() -> &'static XdbcTypeInfoData {
    static DATA: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    DATA.get_or_init(|| {
        use XdbcDataType::*;
        let mut b = XdbcTypeInfoDataBuilder::new();
        for (name, ty, size) in [
            ("BOOLEAN", XdbcBit, Some(1)),
            ("TINYINT", XdbcTinyint, Some(8)),
            ("SMALLINT", XdbcSmallint, Some(16)),
            ("INTEGER", XdbcInteger, Some(32)),
            ("BIGINT", XdbcBigint, Some(64)),
            ("FLOAT", XdbcReal, Some(24)),
            ("DOUBLE", XdbcDouble, Some(53)),
            ("DECIMAL", XdbcDecimal, Some(38)),
            ("VARCHAR", XdbcVarchar, None),
            ("BLOB", XdbcVarbinary, None),
            ("DATE", XdbcDate, Some(10)),
            ("TIME", XdbcTime, Some(15)),
            ("TIMESTAMP", XdbcTimestamp, Some(26)),
        ] {
            b.append(xdbc(name, ty, size));
        }
        b.build().expect("static XDBC type info builds")
    })
}
