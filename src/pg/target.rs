//! Recovery targets as a DBA writes them on the command line: a time, a transaction id or a
//! restore point name (an LSN is [`Lsn`](crate::pg::wal::Lsn)'s `FromStr`). Each is checked
//! here, before restore writes anything, against what the server accepts for
//! `recovery_target_time`, `recovery_target_xid` and `recovery_target_name`; a time is turned
//! into an instant, so that pgcairn (choosing the snapshot and the WAL to reach it) and the
//! server (stopping replay) mean the same moment.

use crate::error::{Error, Result};

/// A recovery target time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetTime {
    /// Microseconds since the Unix epoch.
    pub unix_micros: i64,
    /// The same instant in UTC with an explicit offset, `2026-11-21 12:00:00.123456+00` (the
    /// fraction only when there is one): what restore writes into `recovery_target_time`, so
    /// the server's `timezone` setting cannot change its meaning.
    pub text: String,
}

const TIME_EXAMPLES: &str = "e.g. \"2026-11-21 12:00:00\" (local time), \"2026-11-21T12:00:00.5Z\", \
     \"2026-11-21 12:00:00 UTC\", \"2026-11-21 12:00:00+05:30\" or \"2026-11-21 12:00-0800\"";

/// Parses a timestamp with optional time zone: `YYYY-MM-DD`, a space or `T`, `HH:MM`, then
/// optionally `:SS` and a fraction of 1 to 6 digits, then optionally (after a space or not) a
/// zone: `Z`, `UTC` or `GMT` (any case), or an offset `+HH`, `+HH:MM`, `+HHMM` (or `-`).
/// Years 1970 to 9999.
///
/// Without a zone the time is local time on this machine: the zone libc's `mktime` uses,
/// which is `$TZ` when set, else /etc/localtime. That is pgcairn's machine, not the server's,
/// whose `timezone` setting PostgreSQL would use; the normalized [`TargetTime::text`] is what
/// makes the two agree. A local time that does not exist (skipped by a daylight saving change)
/// or exists twice (repeated by one) is refused with a request for an explicit offset.
pub fn parse_target_time(text: &str) -> Result<TargetTime> {
    let fields = TimeFields::parse(text.trim()).ok_or_else(|| {
        Error::usage(format!(
            "invalid recovery target time {text:?}: expected a date and time, {TIME_EXAMPLES}"
        ))
    })?;
    let secs = match fields.offset_secs {
        Some(offset) => fields.utc_secs() - offset,
        None => fields.local_secs().map_err(|why| {
            Error::usage(format!(
                "recovery target time {text:?} {why} in this machine's time zone; give an \
                 offset, e.g. \"{}+01\"",
                text.trim()
            ))
        })?,
    };
    let unix_micros = secs * 1_000_000 + i64::from(fields.micros);
    let mut normalized = crate::clock::format_utc(secs);
    if fields.micros != 0 {
        normalized.push_str(&format!(".{:06}", fields.micros));
    }
    normalized.push_str("+00");
    Ok(TargetTime {
        unix_micros,
        text: normalized,
    })
}

/// The parts of a written timestamp.
struct TimeFields {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    micros: u32,
    /// East of UTC; None: local time.
    offset_secs: Option<i64>,
}

impl TimeFields {
    fn parse(text: &str) -> Option<TimeFields> {
        let mut s = Scan(text.as_bytes());
        let year = s.digits(4)?;
        s.byte(b'-')?;
        let month = s.digits(2)?;
        s.byte(b'-')?;
        let day = s.digits(2)?;
        s.one_of(b" Tt")?;
        let hour = s.digits(2)?;
        s.byte(b':')?;
        let minute = s.digits(2)?;
        let mut second = 0;
        let mut micros = 0;
        if s.byte(b':').is_some() {
            second = s.digits(2)?;
            if s.byte(b'.').is_some() {
                let digits = s.0.iter().take_while(|b| b.is_ascii_digit()).count();
                if !(1..=6).contains(&digits) {
                    return None;
                }
                let fraction = s.digits(digits)?;
                micros = u32::try_from(fraction * 10i64.pow(6 - digits as u32)).ok()?;
            }
        }
        let zone = s.0.strip_prefix(b" ").unwrap_or(s.0);
        let offset_secs = parse_zone(zone)?;
        let valid = (1970..=9999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(TimeFields {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
            offset_secs,
        })
    }

    /// The fields read as UTC, in seconds since the epoch.
    fn utc_secs(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + self.hour * 3600
            + self.minute * 60
            + self.second
    }

    /// The fields read as local time (`mktime`), if they name exactly one instant. Both
    /// daylight-saving states are tried; an instant counts when `localtime_r` gives the same
    /// fields back.
    fn local_secs(&self) -> std::result::Result<i64, &'static str> {
        let mut found: Option<i64> = None;
        for isdst in [0, 1] {
            // SAFETY: tm is plain data; all-zero is a valid value for every field (tm_zone a
            // null pointer, which mktime does not read).
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = (self.year - 1900) as i32;
            tm.tm_mon = (self.month - 1) as i32;
            tm.tm_mday = self.day as i32;
            tm.tm_hour = self.hour as i32;
            tm.tm_min = self.minute as i32;
            tm.tm_sec = self.second as i32;
            tm.tm_isdst = isdst;
            // SAFETY: tm is a valid, exclusively borrowed struct tm. mktime reads the time
            // zone (as tzset does) and normalizes tm in place.
            let secs = unsafe { libc::mktime(&mut tm) };
            // SAFETY: both pointers are to valid, distinct locals.
            let mut back: libc::tm = unsafe { std::mem::zeroed() };
            if unsafe { libc::localtime_r(&secs, &mut back) }.is_null() {
                continue;
            }
            let same = i64::from(back.tm_year) + 1900 == self.year
                && i64::from(back.tm_mon) + 1 == self.month
                && i64::from(back.tm_mday) == self.day
                && i64::from(back.tm_hour) == self.hour
                && i64::from(back.tm_min) == self.minute
                && i64::from(back.tm_sec) == self.second;
            if !same {
                continue;
            }
            match found {
                Some(other) if other != secs => return Err("is ambiguous (it occurs twice)"),
                _ => found = Some(secs),
            }
        }
        found.ok_or("does not exist (skipped by a daylight saving change)")
    }
}

/// The offset east of UTC in seconds of a zone suffix; Some(None) when there is none.
fn parse_zone(zone: &[u8]) -> Option<Option<i64>> {
    if zone.is_empty() {
        return Some(None);
    }
    for name in ["Z", "UTC", "GMT"] {
        if zone.eq_ignore_ascii_case(name.as_bytes()) {
            return Some(Some(0));
        }
    }
    let (sign, rest) = match zone.split_first()? {
        (b'+', rest) => (1, rest),
        (b'-', rest) => (-1, rest),
        _ => return None,
    };
    let mut s = Scan(rest);
    let hours = s.digits(2)?;
    let minutes = match s.0 {
        [] => 0,
        [b':', ..] => {
            s.byte(b':')?;
            s.digits(2)?
        }
        _ => s.digits(2)?,
    };
    // PostgreSQL takes offsets up to 15:59.
    (s.0.is_empty() && hours <= 15 && minutes < 60)
        .then_some(Some(sign * (hours * 3600 + minutes * 60)))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (days-from-civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads a text front to back.
struct Scan<'a>(&'a [u8]);

impl Scan<'_> {
    fn byte(&mut self, want: u8) -> Option<()> {
        self.one_of(&[want])
    }

    fn one_of(&mut self, set: &[u8]) -> Option<()> {
        let (&first, rest) = self.0.split_first()?;
        set.contains(&first).then(|| self.0 = rest)
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let head = self.0.get(..n)?;
        if !head.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[n..];
        Some(head.iter().fold(0, |acc, b| acc * 10 + i64::from(b - b'0')))
    }
}

/// A recovery target transaction id: the 32-bit xid, or a 64-bit full xid (epoch in the high
/// half, as `pg_current_xact_id()` shows it), which the server accepts and cuts to its low 32
/// bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetXid {
    pub xid: u32,
    /// The high half of a full xid; 0 for a plain xid.
    pub epoch: u32,
}

impl TargetXid {
    /// The decimal text restore writes into `recovery_target_xid`.
    pub fn text(&self) -> String {
        ((u64::from(self.epoch) << 32) | u64::from(self.xid)).to_string()
    }
}

/// Parses a transaction id in decimal. The server reads the setting with `strtoul(…, 0)`, so
/// it would take a leading `0` as octal and `0x` as hex; such forms are refused here rather than
/// risk the two readings differing. Ids 0 to 2 are the server's special xids, never a
/// transaction's.
pub fn parse_target_xid(text: &str) -> Result<TargetXid> {
    let bad = |why: &str| {
        Error::usage(format!(
            "invalid recovery target xid {text:?}: {why}; expected a transaction id in decimal, \
             e.g. 7461, or a full 64-bit one as pg_current_xact_id() shows, e.g. 4294974757"
        ))
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a decimal number"));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(bad("leading zero (the server would read it as octal)"));
    }
    let full: u64 = text.parse().map_err(|_| bad("larger than 64 bits"))?;
    let xid = full as u32;
    if xid < 3 {
        return Err(bad("0, 1 and 2 are not ids of transactions"));
    }
    Ok(TargetXid {
        xid,
        epoch: (full >> 32) as u32,
    })
}

/// Longest restore point name: `MAXFNAMELEN` (64) less the terminating NUL.
pub const MAX_TARGET_NAME_LEN: usize = 63;

/// Checks a restore point name: 1 to 63 bytes (a longer one could never match, as
/// pg_create_restore_point refuses them) and no NUL (the server reads the setting as a C string).
pub fn parse_target_name(text: &str) -> Result<&str> {
    if text.is_empty() || text.len() > MAX_TARGET_NAME_LEN {
        return Err(Error::usage(format!(
            "invalid recovery target name {text:?}: must be 1 to {MAX_TARGET_NAME_LEN} bytes, \
             the name given to pg_create_restore_point, e.g. \"before upgrade\""
        )));
    }
    if text.contains('\0') {
        return Err(Error::usage(format!(
            "invalid recovery target name {text:?}: contains a NUL character"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// 2026-11-21 12:00:00 UTC.
    const NOON: i64 = 1_795_262_400;

    fn utc(text: &str) -> TargetTime {
        parse_target_time(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn times_with_a_zone() {
        for text in [
            "2026-11-21 12:00:00Z",
            "2026-11-21T12:00:00Z",
            "2026-11-21t12:00:00z",
            "2026-11-21 12:00:00 UTC",
            "2026-11-21 12:00:00 utc",
            "2026-11-21 12:00:00 GMT",
            "2026-11-21 12:00:00+00",
            "2026-11-21 12:00:00 +00:00",
            "2026-11-21 12:00Z",
            "2026-11-21 17:30:00+05:30",
            "2026-11-21 17:30:00+0530",
            "2026-11-21 04:00:00-0800",
            "2026-11-21 04:00-08",
            "2026-11-22 03:00:00+15",
            "  2026-11-21 12:00:00Z\n",
        ] {
            let time = utc(text);
            assert_eq!(time.unix_micros, NOON * 1_000_000, "{text}");
            assert_eq!(time.text, "2026-11-21 12:00:00+00", "{text}");
        }
    }

    #[test]
    fn fractions_up_to_microseconds() {
        let time = utc("2026-11-21 12:00:00.123456+00");
        assert_eq!(time.unix_micros, NOON * 1_000_000 + 123_456);
        assert_eq!(time.text, "2026-11-21 12:00:00.123456+00");
        let time = utc("2026-11-21T12:00:00.5Z");
        assert_eq!(time.unix_micros, NOON * 1_000_000 + 500_000);
        assert_eq!(time.text, "2026-11-21 12:00:00.500000+00");
        assert_eq!(
            utc("2026-11-21 12:00:00.000000Z").text,
            "2026-11-21 12:00:00+00"
        );
        // The form pg_waldump prints.
        assert_eq!(
            utc("2026-11-21 12:00:00.000042 UTC").unix_micros,
            NOON * 1_000_000 + 42
        );
    }

    #[test]
    fn calendar_edges() {
        assert_eq!(utc("1970-01-01 00:00:00Z").unix_micros, 0);
        assert_eq!(utc("2000-01-01 00:00:00Z").unix_micros, 946_684_800_000_000);
        assert_eq!(utc("2024-02-29 23:59:59Z").text, "2024-02-29 23:59:59+00");
        assert_eq!(utc("2000-02-29 00:00:00Z").text, "2000-02-29 00:00:00+00");
        // Offsets move the date.
        assert_eq!(utc("2026-01-01 01:00:00+02").text, "2025-12-31 23:00:00+00");
        assert_eq!(
            utc("9999-12-31 23:59:59.999999Z").text,
            "9999-12-31 23:59:59.999999+00"
        );
    }

    #[test]
    fn bad_times_are_usage_errors_with_examples() {
        for text in [
            "",
            "now",
            "2026-11-21",
            "2026-11-21 12",
            "2026-11-21 12:00:00.",
            "2026-11-21 12:00:00.1234567Z",
            "2026-11-21  12:00:00Z",
            "2026/11/21 12:00:00Z",
            "26-11-21 12:00:00Z",
            "2026-13-01 12:00:00Z",
            "2026-00-01 12:00:00Z",
            "2026-02-29 12:00:00Z",
            "1900-02-29 12:00:00Z",
            "2026-04-31 12:00:00Z",
            "2026-11-21 24:00:00Z",
            "2026-11-21 12:60:00Z",
            "2026-11-21 12:00:60Z",
            "1969-12-31 23:59:59Z",
            "2026-11-21 12:00:00+16",
            "2026-11-21 12:00:00+05:60",
            "2026-11-21 12:00:00+5",
            "2026-11-21 12:00:00+05:3",
            "2026-11-21 12:00:00+053",
            "2026-11-21 12:00:00 CET",
            "2026-11-21 12:00:00 Europe/Paris",
            "2026-11-21 12:00:00ZZ",
            "2026-11-21 12:00:00  Z",
            "2026-11-21 12:00:00 +",
            "2026-11-21 １２:00:00Z",
        ] {
            let err = parse_target_time(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage, "{text}");
            assert!(err.to_string().contains("2026-11-21T12:00:00.5Z"), "{err}");
        }
    }

    #[test]
    fn local_time_is_this_machine_s() {
        // Whatever TZ this runs in: the instant found must show as the same wall-clock time.
        let time = utc("2026-07-01 09:30:15.25");
        let secs = time.unix_micros.div_euclid(1_000_000);
        assert_eq!(time.unix_micros.rem_euclid(1_000_000), 250_000);
        // SAFETY: valid pointers to locals.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        assert!(!unsafe { libc::localtime_r(&secs, &mut tm) }.is_null());
        assert_eq!(
            (
                tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
            ),
            (126, 6, 1, 9, 30, 15)
        );
        assert!(time.text.ends_with(".250000+00"), "{}", time.text);
        // The normalized text means the same instant.
        assert_eq!(utc(&time.text), time);
    }

    #[test]
    fn xids() {
        assert_eq!(
            parse_target_xid("7461").unwrap(),
            TargetXid {
                xid: 7461,
                epoch: 0
            }
        );
        assert_eq!(parse_target_xid("7461").unwrap().text(), "7461");
        assert_eq!(parse_target_xid("3").unwrap().xid, 3);
        assert_eq!(parse_target_xid("4294967295").unwrap().xid, u32::MAX);
        let full = parse_target_xid("4294974757").unwrap();
        assert_eq!(
            full,
            TargetXid {
                xid: 7461,
                epoch: 1
            }
        );
        assert_eq!(full.text(), "4294974757");
        assert_eq!(
            parse_target_xid("18446744073709551615").unwrap(),
            TargetXid {
                xid: u32::MAX,
                epoch: u32::MAX
            }
        );
        for (text, says) in [
            ("", "not a decimal"),
            ("12a", "not a decimal"),
            ("-5", "not a decimal"),
            ("+5", "not a decimal"),
            ("0x1d25", "not a decimal"),
            (" 7461", "not a decimal"),
            ("07461", "leading zero"),
            ("18446744073709551616", "larger than 64 bits"),
            ("0", "not ids of transactions"),
            ("2", "not ids of transactions"),
            ("4294967298", "not ids of transactions"),
        ] {
            let err = parse_target_xid(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage);
            assert!(err.to_string().contains(says), "{text}: {err}");
            assert!(err.to_string().contains("e.g. 7461"), "{err}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_target_name("before upgrade").unwrap(),
            "before upgrade"
        );
        assert_eq!(parse_target_name(&"n".repeat(63)).unwrap().len(), 63);
        // 63 bytes, fewer characters.
        let accented = "é".repeat(31);
        assert!(parse_target_name(&accented).is_ok());
        assert!(parse_target_name(&format!("{accented}é")).is_err());
        for bad in ["", &"n".repeat(64), "a\0b"] {
            assert_eq!(parse_target_name(bad).unwrap_err().kind(), ErrorKind::Usage);
        }
    }
}
