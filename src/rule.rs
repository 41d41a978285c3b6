//! The physics rule of the `outliers` ticket, in one place: in Rust for queries and as SQL for the
//! segment build, with the same floating-point operations so both classify every trip alike.
//!
//! A trip is valid iff `min_duration < duration_hours <= max_duration`,
//! `min_speed <= avg_speed_mph <= max_speed` and `min_distance <= trip_distance <= max_distance`;
//! NULLs are outliers. `duration_hours` is `(dropoff − pickup)` in µs divided by 3.6e9;
//! `avg_speed_mph` is `trip_distance / duration_hours`, NULL where the duration is not positive.

/// Microseconds per hour, as the divisor of `duration_hours`.
pub const US_PER_HOUR: f64 = 3.6e9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub min_duration_hours: f64,
    pub max_duration_hours: f64,
    pub min_speed_mph: f64,
    pub max_speed_mph: f64,
    pub min_distance: f64,
    pub max_distance: f64,
}

/// The seed's rule: `0 < hours <= 10`, `2.5 <= mph <= 80`, `0.1 <= miles <= 800`.
pub const DEFAULT: Bounds = Bounds {
    min_duration_hours: 0.0,
    max_duration_hours: 10.0,
    min_speed_mph: 2.5,
    max_speed_mph: 80.0,
    min_distance: 0.1,
    max_distance: 800.0,
};

/// Why a trip is an outlier: the first rule that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Duration,
    Speed,
    Distance,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Duration => "duration",
            Reason::Speed => "speed",
            Reason::Distance => "distance",
        }
    }
}

/// `duration_hours` for pickup/dropoff in µs (`None` for NULL).
pub fn duration_hours(pickup: Option<i64>, dropoff: Option<i64>) -> Option<f64> {
    Some(dropoff?.checked_sub(pickup?)? as f64 / US_PER_HOUR)
}

/// `avg_speed_mph`: NULL unless the duration is positive.
pub fn speed_mph(distance: Option<f64>, hours: Option<f64>) -> Option<f64> {
    hours.filter(|h| *h > 0.0).and_then(|h| Some(distance? / h))
}

impl Bounds {
    /// The first rule the trip breaks, or None when it is plausible.
    pub fn reason(&self, hours: Option<f64>, speed: Option<f64>, distance: Option<f64>) -> Option<Reason> {
        let within = |v: Option<f64>, lo: f64, hi: f64| v.is_some_and(|v| v >= lo && v <= hi);
        if !hours.is_some_and(|h| h > self.min_duration_hours && h <= self.max_duration_hours) {
            Some(Reason::Duration)
        } else if !within(speed, self.min_speed_mph, self.max_speed_mph) {
            Some(Reason::Speed)
        } else if !within(distance, self.min_distance, self.max_distance) {
            Some(Reason::Distance)
        } else {
            None
        }
    }

    /// The same rule as a SQL `CASE` yielding the reason or NULL, over columns or expressions
    /// `hours`, `speed` and `distance` of type DOUBLE.
    pub fn reason_sql(&self, hours: &str, speed: &str, distance: &str) -> String {
        let d = |v: f64| format!("CAST('{v:?}' AS DOUBLE)");
        format!(
            "CASE WHEN {hours} IS NULL OR NOT ({hours} > {d0} AND {hours} <= {d1}) THEN 'duration'
                  WHEN {speed} IS NULL OR isnan({speed}) OR NOT ({speed} >= {s0} AND {speed} <= {s1}) THEN 'speed'
                  WHEN {distance} IS NULL OR NOT ({distance} >= {m0} AND {distance} <= {m1}) THEN 'distance' END",
            d0 = d(self.min_duration_hours),
            d1 = d(self.max_duration_hours),
            s0 = d(self.min_speed_mph),
            s1 = d(self.max_speed_mph),
            m0 = d(self.min_distance),
            m1 = d(self.max_distance),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failing_rule_wins() {
        let hour = 3_600_000_000;
        let h = duration_hours(Some(0), Some(hour));
        assert_eq!(h, Some(1.0));
        assert_eq!(DEFAULT.reason(h, speed_mph(Some(10.0), h), Some(10.0)), None);
        assert_eq!(DEFAULT.reason(h, speed_mph(Some(100.0), h), Some(100.0)), Some(Reason::Speed));
        let neg = duration_hours(Some(hour), Some(0));
        assert_eq!(speed_mph(Some(1.0), neg), None);
        assert_eq!(DEFAULT.reason(neg, None, Some(1.0)), Some(Reason::Duration));
        assert_eq!(DEFAULT.reason(None, None, None), Some(Reason::Duration));
        let day = duration_hours(Some(0), Some(24 * hour));
        assert_eq!(DEFAULT.reason(day, speed_mph(Some(100.0), day), Some(100.0)), Some(Reason::Duration));
        let slow = duration_hours(Some(0), Some(10 * hour));
        assert_eq!(DEFAULT.reason(slow, speed_mph(Some(900.0), slow), Some(900.0)), Some(Reason::Speed));
        let h2 = duration_hours(Some(0), Some(hour / 100));
        assert_eq!(DEFAULT.reason(h2, speed_mph(Some(0.05), h2), Some(0.05)), Some(Reason::Distance));
    }
}
