//! Typed tickets: protobuf (`proto/bridge/v1/ticket.proto`) or the same fields as a JSON object.

use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    error::{Error, Result},
    proto::{ticket::Query, Outliers, Range, Scan, Sql, Ticket, P90},
};

/// Decodes ticket bytes: a JSON object if the first non-blank byte is `{`, else protobuf.
pub fn try_decode(bytes: &[u8]) -> Result<Ticket> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(Error::invalid("empty ticket; send e.g. {\"query\":\"p90\",\"dataset\":\"yellow\"}")),
        Some(b'{') => from_json(bytes),
        Some(_) => {
            let t = Ticket::decode(bytes).map_err(|e| {
                Error::invalid(format!("ticket is neither a JSON object nor a bridge.v1.Ticket protobuf: {e}"))
            })?;
            if t.query.is_none() {
                return Err(Error::invalid("protobuf ticket names no query; set one of p90, outliers, scan, sql"));
            }
            Ok(t)
        }
    }
}

/// Protobuf bytes of a ticket (what GetFlightInfo puts in its endpoint).
pub fn encode(t: &Ticket) -> Vec<u8> {
    t.encode_to_vec()
}

const COMMON: [&str; 2] = ["query", "dataset"];
const RANGE: [&str; 2] = ["from", "to"];
const P90_FIELDS: [&str; 5] = ["percentile", "columns", "limit", "output", "min_version"];
const SCAN_FIELDS: [&str; 3] = ["columns", "limit", "min_version"];
const KINDS: &str = "\"p90\", \"outliers\", \"scan\", \"sql\"";
const OUTLIER_FIELDS: [&str; 10] = [
    "min_version",
    "within_p90",
    "limit",
    "order_by",
    "min_duration_hours",
    "max_duration_hours",
    "min_speed_mph",
    "max_speed_mph",
    "min_distance",
    "max_distance",
];

#[derive(Deserialize, Default)]
struct Fields {
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    percentile: Option<f64>,
    #[serde(default)]
    columns: Vec<String>,
    limit: Option<u64>,
    #[serde(default)]
    output: String,
    #[serde(default)]
    within_p90: bool,
    #[serde(default)]
    order_by: String,
    min_duration_hours: Option<f64>,
    max_duration_hours: Option<f64>,
    min_speed_mph: Option<f64>,
    max_speed_mph: Option<f64>,
    min_distance: Option<f64>,
    max_distance: Option<f64>,
    #[serde(default)]
    sql: String,
    min_version: Option<u64>,
}

fn check_fields(obj: &Map<String, Value>, kind: &str, allowed: &[&str]) -> Result<()> {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(Error::invalid(format!(
                "field {key:?} does not apply to the {kind} query; its fields are: {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn from_json(bytes: &[u8]) -> Result<Ticket> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::invalid(format!("ticket is not valid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| Error::invalid("ticket JSON must be an object"))?;
    let kind = obj
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(format!("ticket JSON needs \"query\": one of {KINDS}")))?;
    let allowed: Vec<&str> = match kind {
        "p90" => COMMON.iter().chain(&RANGE).chain(&P90_FIELDS).copied().collect(),
        "outliers" => COMMON.iter().chain(&RANGE).chain(&OUTLIER_FIELDS).copied().collect(),
        "scan" => COMMON.iter().chain(&RANGE).chain(&SCAN_FIELDS).copied().collect(),
        "sql" => vec!["query", "sql"],
        other => return Err(Error::invalid(format!("unknown query kind {other:?}; use one of {KINDS}"))),
    };
    check_fields(obj, kind, &allowed)?;
    let f: Fields = serde_json::from_value(value.clone())
        .map_err(|e| Error::invalid(format!("bad field in {kind} ticket: {e}")))?;
    let range = Some(Range { from: f.from, to: f.to });
    let query = match kind {
        "p90" => Query::P90(P90 {
            dataset: f.dataset,
            range,
            percentile: f.percentile,
            columns: f.columns,
            limit: f.limit,
            output: f.output,
            min_version: f.min_version,
            slice: None,
        }),
        "outliers" => Query::Outliers(Outliers {
            dataset: f.dataset,
            range,
            within_p90: f.within_p90,
            limit: f.limit,
            order_by: f.order_by,
            min_duration_hours: f.min_duration_hours,
            max_duration_hours: f.max_duration_hours,
            min_speed_mph: f.min_speed_mph,
            max_speed_mph: f.max_speed_mph,
            min_distance: f.min_distance,
            max_distance: f.max_distance,
            min_version: f.min_version,
            slice: None,
        }),
        "scan" => Query::Scan(Scan {
            dataset: f.dataset,
            range,
            columns: f.columns,
            limit: f.limit,
            min_version: f.min_version,
            slice: None,
        }),
        _ => Query::Sql(Sql { sql: f.sql, parameters: Vec::new() }),
    };
    Ok(Ticket { query: Some(query), call_id: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_protobuf_round_trip() {
        let json = br#"{"query":"p90","dataset":"yellow","from":"2023-01-01","to":"2023-02-01","percentile":0.95}"#;
        let t = try_decode(json).expect("json");
        let again = try_decode(&encode(&t)).expect("protobuf");
        assert_eq!(t, again);
        match t.query {
            Some(Query::P90(p)) => {
                assert_eq!(p.dataset, "yellow");
                assert_eq!(p.percentile, Some(0.95));
                assert_eq!(p.range.map(|r| r.to), Some("2023-02-01".into()));
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_tickets_with_reasons() {
        let msg = |b: &[u8]| try_decode(b).expect_err("must fail").to_string();
        assert!(msg(b"").contains("empty"));
        assert!(msg(b"{nope").contains("not valid JSON"));
        assert!(msg(br#"{"query":"p99"}"#).contains("unknown query kind"));
        assert!(msg(br#"{"dataset":"y"}"#).contains("needs \"query\""));
        assert!(msg(br#"{"query":"p90","within_p90":true}"#).contains("does not apply"));
        assert!(msg(br#"{"query":"p90","limit":"ten"}"#).contains("bad field"));
        assert!(msg(&[0xff, 0x01, 0x02]).contains("neither"));
    }

    /// Property test: arbitrary bytes, and mutations and truncations of valid tickets, decode to
    /// a ticket or a clear INVALID_ARGUMENT — never a panic.
    #[test]
    fn decoding_never_panics_on_mutated_input() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let seeds: Vec<Vec<u8>> = [
            br#"{"query":"p90","dataset":"yellow","from":"2023-01-01","to":"2023-02-01","percentile":0.95}"#.to_vec(),
            br#"{"query":"outliers","dataset":"y","within_p90":true,"order_by":"avg_speed_mph desc","limit":10}"#
                .to_vec(),
            br#"{"query":"scan","dataset":"y","columns":["a","b"],"min_version":3}"#.to_vec(),
            br#"{"query":"sql","sql":"SELECT 1"}"#.to_vec(),
        ]
        .into_iter()
        .flat_map(|json| {
            let proto = encode(&try_decode(&json).expect("seed decodes"));
            [json, proto]
        })
        .collect();
        for i in 0..20_000 {
            let mut bytes = seeds[i % seeds.len()].clone();
            match rng.random_range(0..4) {
                0 => bytes.truncate(rng.random_range(0..=bytes.len())),
                1 => {
                    for _ in 0..rng.random_range(1..8) {
                        let at = rng.random_range(0..bytes.len());
                        bytes[at] = rng.random();
                    }
                }
                2 => {
                    let at = rng.random_range(0..=bytes.len());
                    let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                    bytes.splice(at..at, junk);
                }
                _ => bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            }
            if let Err(e) = try_decode(&bytes) {
                assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
}
