//! Wall-clock time as pgcairn records and shows it.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> i64 {
    now_ns() / 1_000_000_000
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

pub fn to_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, from seconds since the epoch (civil-from-days algorithm).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Runs `work`, calling `tick` every `period` on another thread until it returns (for a
/// progress display). The ticker is woken when the work ends, so it never delays the result.
pub fn while_ticking<T: Send>(
    period: Duration,
    tick: impl Fn() + Sync,
    work: impl FnOnce() -> T + Send,
) -> T {
    let done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let (flag, wake) = &done;
            let mut finished = flag.lock().unwrap_or_else(|p| p.into_inner());
            while !*finished {
                tick();
                finished = wake
                    .wait_timeout(finished, period)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        });
        let result = work();
        let (flag, wake) = &done;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        result
    })
}

#[cfg(test)]
mod tests {
    use super::{format_utc, while_ticking};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn ticker_ticks_while_working_and_ends_with_the_work() {
        let ticks = AtomicU32::new(0);
        let began = Instant::now();
        let out = while_ticking(
            Duration::from_secs(3600),
            || {
                ticks.fetch_add(1, Ordering::Relaxed);
            },
            || {
                std::thread::sleep(Duration::from_millis(50));
                7
            },
        );
        assert_eq!(out, 7);
        assert!(ticks.load(Ordering::Relaxed) >= 1);
        // Not an hour: the ticker was woken when the work ended.
        assert!(began.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
    }
}
