//! The pickup-time range `[from, to)`: naive TLC local time in ISO-8601.

use chrono::{NaiveDate, NaiveDateTime};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

const FORMATS: [&str; 4] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];

/// Parses `2023-01-01`, `2023-01-01T08:30:00`, `2023-01-01 08:30`, with optional fractions.
pub fn parse_timestamp(field: &str, s: &str) -> Result<NaiveDateTime> {
    let s = s.trim();
    if s.ends_with('Z') || s.get(19..).is_some_and(|tail| tail.contains(['+', '-'])) {
        return Err(Error::invalid(format!(
            "{field}: {s:?} has a time zone; TLC times are naive local time, so drop the zone (e.g. 2023-01-01T08:00:00)"
        )));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default());
    }
    FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(s, f).ok()).ok_or_else(|| {
        Error::invalid(format!(
            "{field}: {s:?} is not an ISO-8601 date or datetime (e.g. 2023-01-01 or 2023-01-01T08:30:00)"
        ))
    })
}

impl Range {
    pub fn parse(from: &str, to: &str) -> Result<Self> {
        let opt = |field, s: &str| (!s.trim().is_empty()).then(|| parse_timestamp(field, s)).transpose();
        let range = Range { from: opt("from", from)?, to: opt("to", to)? };
        if let (Some(f), Some(t)) = (range.from, range.to) {
            if f >= t {
                return Err(Error::invalid(format!("from ({f}) must be before to ({t}); the range is [from, to)")));
            }
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dates_and_datetimes() {
        let r = Range::parse("2023-01-01", "2023-01-02T12:30:00.5").expect("valid");
        assert_eq!(r.from.map(|f| f.to_string()).as_deref(), Some("2023-01-01 00:00:00"));
        assert_eq!(r.to.map(|t| t.to_string()).as_deref(), Some("2023-01-02 12:30:00.500"));
        assert!(Range::parse("2023-01-01 08:00", "").is_ok());
        assert_eq!(Range::parse("", "").expect("unbounded"), Range::default());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Range::parse("2023-02-01", "2023-01-01").is_err());
        assert!(Range::parse("2023-01-01", "2023-01-01").is_err());
        assert!(Range::parse("yesterday", "").is_err());
        assert!(Range::parse("2023-01-01T00:00:00Z", "").is_err());
        assert!(Range::parse("2023-13-01", "").is_err());
    }
}
