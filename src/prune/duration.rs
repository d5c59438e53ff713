//! Durations in restic's notation for `--keep-within` (and prune's other time windows):
//! `2y5m7d3h` is two years, five months, seven days and three hours. As in restic, `m` is
//! months; pgcairn adds `w` (weeks), `min` (minutes) and `s` (seconds). A unit is a whole run
//! of letters, so `m` and `min` cannot be confused; someone who writes `90m` meaning minutes
//! gets 90 months, which only ever keeps more.
//!
//! Years, months, weeks and days are calendar units, counted back in a time zone: one day
//! before noon is noon the day before, even across a daylight saving change (23 or 25 hours).
//! Hours, minutes and seconds are exact. This is restic's `AddDate(-y, -m, -d)` followed by
//! `Add(-h)`, with one difference: a month back from 31 March is 28 (or 29) February here,
//! where Go's normalisation gives 3 (or 2) March, so pgcairn's window is never shorter.

use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Shown with every parse error, so that a typo is fixed by example.
const EXAMPLES: &str = "examples: 7d, 36h, 2w, 1y6m, 2y5m7d3h, 90min; \
                        units: y years, m months, w weeks, d days, h hours, min minutes, s seconds";

/// A span of calendar and clock units, as written on the command line.
#[derive(Clone, Copy, Debug)]
pub struct Duration {
    // Only ever built by `parse`, so every field is non-negative and within jiff's limits.
    span: Span,
}

struct Unit {
    symbol: &'static str,
    set: fn(Span, i64) -> Result<Span, jiff::Error>,
    get: fn(&Span) -> i64,
}

/// Largest first: the order `Display` writes them in.
const UNITS: [Unit; 7] = [
    Unit {
        symbol: "y",
        set: Span::try_years::<i64>,
        get: |s| s.get_years().into(),
    },
    Unit {
        symbol: "m",
        set: Span::try_months::<i64>,
        get: |s| s.get_months().into(),
    },
    Unit {
        symbol: "w",
        set: Span::try_weeks::<i64>,
        get: |s| s.get_weeks().into(),
    },
    Unit {
        symbol: "d",
        set: Span::try_days::<i64>,
        get: |s| s.get_days().into(),
    },
    Unit {
        symbol: "h",
        set: Span::try_hours::<i64>,
        get: |s| s.get_hours().into(),
    },
    Unit {
        symbol: "min",
        set: Span::try_minutes::<i64>,
        get: |s| s.get_minutes(),
    },
    Unit {
        symbol: "s",
        set: Span::try_seconds::<i64>,
        get: |s| s.get_seconds(),
    },
];

impl Duration {
    /// Parses `2y5m7d3h` and the like: one or more NUMBER UNIT pairs, each unit at most
    /// once, in any order. Surrounding white space is ignored (restic trims it too).
    pub fn parse(text: &str) -> Result<Duration> {
        let bad =
            |why: String| Error::usage(format!("invalid duration {text:?}: {why} ({EXAMPLES})"));
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let mut span = Span::new();
        let mut seen = [false; UNITS.len()];
        while !rest.is_empty() {
            let digits_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits_end == 0 {
                return Err(bad(format!("expected a number at {rest:?}")));
            }
            let (digits, after) = rest.split_at(digits_end);
            let unit_end = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (symbol, after) = after.split_at(unit_end);
            if symbol.is_empty() {
                return Err(bad(format!("no unit after {digits}")));
            }
            let index = UNITS
                .iter()
                .position(|unit| unit.symbol == symbol)
                .ok_or_else(|| bad(format!("unknown unit {symbol:?}")))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(bad(format!("{symbol:?} is given twice")));
            }
            let too_large = || bad(format!("{digits}{symbol} is too large"));
            let value: i64 = digits.parse().map_err(|_| too_large())?;
            span = (UNITS[index].set)(span, value).map_err(|_| too_large())?;
            rest = after;
        }
        Ok(Duration { span })
    }

    /// `0d` and the like: restic takes a zero duration for a rule not given.
    pub fn is_zero(&self) -> bool {
        self.span.is_zero()
    }

    /// The instant this long before `time`, calendar units counted in `zone`. `None` when
    /// that is before the earliest instant jiff represents (year -9999): the window reaches
    /// back past any snapshot, which callers take as "since forever".
    pub fn before(&self, time: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        time.to_zoned(zone.clone())
            .checked_sub(self.span)
            .ok()
            .map(|zoned| zoned.timestamp())
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        // Unit by unit: `24h` and `1d` differ, and so do the windows they give across a
        // daylight saving change.
        self.span.fieldwise() == other.span.fieldwise()
    }
}

impl Eq for Duration {}

impl FromStr for Duration {
    type Err = Error;

    fn from_str(text: &str) -> Result<Duration> {
        Duration::parse(text)
    }
}

/// The canonical form, largest unit first, zero units left out: `2y5m7d3h`.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = false;
        for unit in &UNITS {
            let value = (unit.get)(&self.span);
            if value != 0 {
                write!(f, "{value}{}", unit.symbol)?;
                written = true;
            }
        }
        if !written {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

/// As its text, the same in `--json` output as on the command line.
impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// From its text, for the config file (`keep_within = "30d"`).
impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        Duration::parse(&text).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use jiff::tz::TimeZoneDatabase;

    fn zone(name: &str) -> TimeZone {
        TimeZoneDatabase::bundled().get(name).unwrap()
    }

    fn d(text: &str) -> Duration {
        Duration::parse(text).unwrap()
    }

    #[test]
    fn parses_restic_notation_and_prints_it_back_canonically() {
        let cases = [
            ("7d", "7d"),
            ("36h", "36h"),
            ("2y5m7d3h", "2y5m7d3h"),
            ("1y", "1y"),
            ("1m14d", "1m14d"),
            ("1y1d1m", "1y1m1d"), // restic's test suite: any order
            ("2w", "2w"),
            ("90min", "90min"),
            ("1h30min", "1h30min"),
            ("45s", "45s"),
            ("2m5min", "2m5min"), // months and minutes side by side
            ("  30d ", "30d"),
            ("0d", "0s"),
            ("007d", "7d"),
            ("1y2m3w4d5h6min7s", "1y2m3w4d5h6min7s"),
        ];
        for (text, shown) in cases {
            let parsed = d(text);
            assert_eq!(parsed.to_string(), shown, "{text:?}");
            assert_eq!(d(shown), parsed, "{text:?} round trip");
        }
        assert_eq!(d("1y1d1m").span.get_months(), 1);
        assert_eq!(d("2m5min").span.get_months(), 2);
        assert_eq!(d("2m5min").span.get_minutes(), 5);
        assert!(d("0h").is_zero());
        assert!(!d("1s").is_zero());
        assert_ne!(d("24h"), d("1d"));
        assert_ne!(d("7d"), d("1w"));
    }

    #[test]
    fn refuses_what_is_not_a_duration_and_shows_examples() {
        let cases = [
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("7", "no unit after 7"),
            ("d", "expected a number at \"d\""),
            ("-1d", "expected a number at \"-1d\""),
            ("1.5d", "no unit after 1"),
            ("7 d", "no unit after 7"),
            ("7D", "unknown unit \"D\""),
            ("7days", "unknown unit \"days\""),
            ("3mo", "unknown unit \"mo\""),
            ("1d2d", "\"d\" is given twice"),
            ("1h30", "no unit after 30"),
            ("20000y", "20000y is too large"),
            (
                "99999999999999999999d",
                "99999999999999999999d is too large",
            ),
        ];
        for (text, why) in cases {
            let err = Duration::parse(text).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Usage, "{text:?}");
            let message = err.to_string();
            assert!(message.contains(why), "{text:?}: {message}");
            assert!(message.contains("examples: 7d, 36h"), "{text:?}: {message}");
            assert!(text.parse::<Duration>().is_err());
        }
    }

    #[test]
    fn calendar_units_follow_the_zone_and_clock_units_are_exact() {
        let berlin = zone("Europe/Berlin");
        let at = |y, m, day, h, min| {
            date(y, m, day)
                .at(h, min, 0, 0)
                .to_zoned(berlin.clone())
                .unwrap()
                .timestamp()
        };
        // Spring forward on 2026-03-29: that day has 23 hours.
        let noon = at(2026, 3, 29, 12, 0);
        assert_eq!(d("1d").before(noon, &berlin), Some(at(2026, 3, 28, 12, 0)));
        assert_eq!(d("24h").before(noon, &berlin), Some(at(2026, 3, 28, 11, 0)));
        // Fall back on 2026-10-25: that day has 25 hours.
        let noon = at(2026, 10, 25, 12, 0);
        assert_eq!(d("1d").before(noon, &berlin), Some(at(2026, 10, 24, 12, 0)));
        assert_eq!(
            d("24h").before(noon, &berlin),
            Some(at(2026, 10, 24, 13, 0))
        );
        // Calendar units first, then clock units (restic's AddDate, then Add).
        assert_eq!(
            d("1d3h").before(at(2026, 3, 29, 12, 0), &berlin),
            Some(at(2026, 3, 28, 9, 0))
        );
        // Months clamp to the end of the shorter month.
        assert_eq!(
            d("1m").before(at(2026, 3, 31, 8, 0), &berlin),
            Some(at(2026, 2, 28, 8, 0))
        );
        assert_eq!(
            d("1y").before(at(2028, 2, 29, 8, 0), &berlin),
            Some(at(2027, 2, 28, 8, 0))
        );
        assert_eq!(
            d("2w").before(at(2026, 1, 10, 8, 0), &berlin),
            Some(at(2025, 12, 27, 8, 0))
        );
        assert_eq!(
            d("90min").before(at(2026, 1, 10, 8, 0), &berlin),
            Some(at(2026, 1, 10, 6, 30))
        );
        // Further back than jiff reaches: since forever.
        assert_eq!(d("19998y").before(at(2026, 1, 1, 0, 0), &berlin), None);
    }

    #[test]
    fn serialises_as_its_text() {
        #[derive(Debug, Deserialize, Serialize)]
        struct Config {
            keep_within: Duration,
        }
        let config: Config = toml::from_str("keep_within = \"2y5m\"").unwrap();
        assert_eq!(config.keep_within, d("2y5m"));
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"keep_within":"2y5m"}"#
        );
        let err = toml::from_str::<Config>("keep_within = \"5 days\"").unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }
}
