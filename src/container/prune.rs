//! The `--filter` of `container prune`, as Docker's daemon reads it: `until=` (a
//! time or a duration before now: prune only containers created until then) and
//! `label=` / `label!=` (see [`LabelFilters`]).

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

use super::labels::LabelFilters;
use super::Container;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("bad format of filter (expected name=value): {0:?}")]
    Format(String),
    #[error("invalid filter '{0}'")]
    Unknown(String),
    #[error("more than one until filter specified")]
    ManyUntil,
    #[error("failed to parse value as time or duration: {0:?}")]
    Time(String),
}

/// The filters of one prune, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    until: Option<DateTime<Utc>>,
    labels: LabelFilters,
}

impl PruneFilter {
    /// Parses `key=value` filters as of `now`; an unknown key is refused, as Docker
    /// refuses it.
    pub fn parse(filters: &[String], now: DateTime<Utc>) -> Result<PruneFilter, FilterError> {
        let mut filter = PruneFilter::default();
        for f in filters {
            let short = || f.chars().take(140).collect::<String>();
            let (key, value) = f.split_once('=').ok_or_else(|| FilterError::Format(short()))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "until" => {
                    if filter.until.is_some() {
                        return Err(FilterError::ManyUntil);
                    }
                    filter.until = Some(
                        timestamp(value, now).ok_or_else(|| FilterError::Time(value.chars().take(140).collect()))?,
                    );
                }
                "label" => filter.labels.want(value),
                "label!" => filter.labels.refuse(value),
                _ => return Err(FilterError::Unknown(key.chars().take(140).collect())),
            }
        }
        Ok(filter)
    }

    /// Whether the prune takes `c` (its state is the caller's business).
    pub fn matches(&self, c: &Container) -> bool {
        self.labels.matches(&c.config.labels) && self.until.is_none_or(|until| c.config.created <= until)
    }
}

/// Docker's timestamps: a Go duration before `now` (`10m`, `1h30m`), RFC 3339 with a
/// zone, a date and time in the local zone (`2024-01-02T15:04:05`, `2024-01-02T15:04`,
/// `2024-01-02T15`, `2024-01-02`), or Unix seconds (`1700000000.5`).
pub fn timestamp(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if value != "0" {
        if let Some(nanos) = go_duration(value) {
            return now.checked_sub_signed(chrono::Duration::nanoseconds(nanos));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    let local = |naive: NaiveDateTime| {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    for (format, suffix) in [
        ("%Y-%m-%dT%H:%M:%S%.f", ""),
        ("%Y-%m-%dT%H:%M", ""),
        ("%Y-%m-%dT%H:%M", ":00"),
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&format!("{value}{suffix}"), format) {
            return local(naive);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return local(date.and_hms_opt(0, 0, 0)?);
    }
    unix_seconds(value)
}

/// `1700000000` or `1700000000.123456789`.
fn unix_seconds(value: &str) -> Option<DateTime<Utc>> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !digits(secs) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    DateTime::from_timestamp(secs.parse().ok()?, nanos)
}

/// Go's `time.ParseDuration`, in nanoseconds: a sign, then numbers with units (`ns`,
/// `us`, `µs`, `ms`, `s`, `m`, `h`), such as `1h30m` or `1.5h`.
pub fn go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * scale;
        rest = after;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        assert_eq!(go_duration("10m"), Some(600_000_000_000));
        assert_eq!(go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(go_duration("300ms"), Some(300_000_000));
        assert_eq!(go_duration("-2s"), Some(-2_000_000_000));
        assert_eq!(go_duration("0"), Some(0));
        for bad in ["", "10", "m", "1x", "1.2.3s", "h1", "-", "1h 2m", "999999999999h"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timestamps_take_dockers_forms() {
        let at = |s: &str| timestamp(s, now()).map(|t| t.to_rfc3339());
        assert_eq!(at("1h").as_deref(), Some("2024-06-01T11:00:00+00:00"));
        assert_eq!(at("2024-01-02T03:04:05Z").as_deref(), Some("2024-01-02T03:04:05+00:00"));
        assert_eq!(
            at("2024-01-02T03:04:05+01:00").as_deref(),
            Some("2024-01-02T02:04:05+00:00")
        );
        assert_eq!(at("1700000000").as_deref(), Some("2023-11-14T22:13:20+00:00"));
        assert_eq!(timestamp("1700000000.5", now()).unwrap().timestamp_subsec_millis(), 500);
        assert_eq!(at("0").as_deref(), Some("1970-01-01T00:00:00+00:00"));
        // Local forms: whatever the zone, they parse.
        for local in [
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.25",
            "2024-01-02T03:04",
            "2024-01-02T03",
            "2024-01-02",
        ] {
            assert!(timestamp(local, now()).is_some(), "{local}");
        }
        for bad in ["yesterday", "2024-13-01", "12:00", "1.2.3", "-5", ""] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn filters_are_checked_as_docker_checks_them() {
        let parse = |f: &[&str]| PruneFilter::parse(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>(), now());
        assert_eq!(parse(&["color=red"]), Err(FilterError::Unknown("color".into())));
        assert_eq!(parse(&["until"]), Err(FilterError::Format("until".into())));
        assert_eq!(parse(&["until=1h", "until=2h"]), Err(FilterError::ManyUntil));
        assert_eq!(parse(&["until=soon"]), Err(FilterError::Time("soon".into())));
        assert_eq!(parse(&[]).unwrap(), PruneFilter::default());
        assert_eq!(
            parse(&["until=1h", "label!=a=b"]).unwrap().until,
            Some(now() - chrono::Duration::hours(1))
        );
        let mut wanted = LabelFilters::default();
        wanted.want("a");
        assert_eq!(parse(&["label=a"]).unwrap().labels, wanted);
        assert_eq!(FilterError::Unknown("x".into()).to_string(), "invalid filter 'x'");
    }
}
