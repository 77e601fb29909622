//! RFC 3339 timestamps in UTC with millisecond precision, as findings carry them.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// A point in time, printed as `2026-11-29T12:00:00.123Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// A timestamp that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {given:?}: expected RFC 3339, such as 2026-11-29T12:00:00Z")]
pub struct InvalidTimestamp {
    given: String,
}

impl Timestamp {
    /// The current time, truncated to milliseconds.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a system time, truncated to milliseconds.
    pub fn from_system_time(at: SystemTime) -> Timestamp {
        let millis = match at.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Timestamp::from_unix_millis(millis)
    }

    /// Milliseconds since the Unix epoch, clamped to the years 1970..=9999.
    pub fn from_unix_millis(millis: i64) -> Timestamp {
        const MAX_MILLIS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let millis = millis.clamp(0, MAX_MILLIS);
        let nanos = i128::from(millis) * 1_000_000;
        Timestamp(
            OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        )
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        i64::try_from(self.0.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// This timestamp moved back by `by`, saturating at the epoch.
    pub fn saturating_sub(self, by: Duration) -> Timestamp {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_unix_millis(self.unix_millis().saturating_sub(by))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match self.0.format(&format) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;

    /// Parses RFC 3339 with any offset; the result is in UTC and truncated
    /// to milliseconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| InvalidTimestamp {
            given: s.to_owned(),
        })?;
        let millis = i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).map_err(|_| {
            InvalidTimestamp {
                given: s.to_owned(),
            }
        })?;
        Ok(Timestamp::from_unix_millis(millis))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Option<&str>) {
        let got = input.parse::<Timestamp>().ok().map(|t| t.to_string());
        assert_eq!(got.as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn parses_and_prints_rfc3339_millis_utc() {
        check("2026-11-29T12:00:00Z", Some("2026-11-29T12:00:00.000Z"));
        check(
            "2026-11-29T12:00:00.123456Z",
            Some("2026-11-29T12:00:00.123Z"),
        );
        check(
            "2026-11-29T13:00:00.5+01:00",
            Some("2026-11-29T12:00:00.500Z"),
        );
        check(
            " 2026-01-02T03:04:05.006Z ",
            Some("2026-01-02T03:04:05.006Z"),
        );
        check("2026-11-29", None);
        check("yesterday", None);
        check("", None);
    }

    #[test]
    fn millis_round_trip_and_clamp() {
        let t = Timestamp::from_unix_millis(1_764_417_600_123);
        assert_eq!(t.unix_millis(), 1_764_417_600_123);
        assert_eq!(Timestamp::from_unix_millis(-5).unix_millis(), 0);
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
