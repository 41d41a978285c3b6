//! The values flags parse into: plain types, so that the modules using them depend on `config`
//! and `config` on none of them.

use chrono::{NaiveDate, NaiveDateTime};

/// `name=glob` from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub name: String,
    pub url: String,
}

impl std::str::FromStr for DatasetSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, url) = s.split_once('=').ok_or_else(|| format!("dataset {s:?} is not NAME=GLOB"))?;
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("dataset name {name:?} must be letters, digits and _ (starting with a letter)"));
        }
        if url.is_empty() {
            return Err(format!("dataset {name} has an empty location"));
        }
        Ok(DatasetSpec { name: name.to_string(), url: url.to_string() })
    }
}

/// A user's rename, `[DATASET.]FROM=TO` (`--column-alias`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnAlias {
    pub dataset: Option<String>,
    pub from: String,
    pub to: String,
}

impl std::str::FromStr for ColumnAlias {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (lhs, to) = s.split_once('=').ok_or_else(|| format!("column alias {s:?} is not [DATASET.]FROM=TO"))?;
        let (dataset, from) = match lhs.split_once('.') {
            Some((d, f)) => (Some(d.to_string()), f),
            None => (None, lhs),
        };
        if from.is_empty() || to.is_empty() {
            return Err(format!("column alias {s:?} needs both a FROM and a TO name"));
        }
        Ok(ColumnAlias { dataset, from: from.to_string(), to: to.to_string() })
    }
}

/// A calendar month, parsed from `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("month {s:?} is not YYYY-MM");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        let month = Month { year: y.parse().map_err(|_| bad())?, month: m.parse().map_err(|_| bad())? };
        NaiveDate::from_ymd_opt(month.year, month.month, 1).ok_or_else(bad)?;
        Ok(month)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Month {
    /// Midnight of the month's first day.
    pub fn start(self) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default()
    }
    /// The month after.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }
    /// The TLC file name for this month.
    pub fn file_name(self) -> String {
        format!("yellow_tripdata_{self}.parquet")
    }
}
