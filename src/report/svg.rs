//! What the charts are drawn with: scales that map data onto pixels, axis ticks a person reads
//! at a glance (1-2-5 steps, one binary byte unit per axis, calendar-aligned UTC times), and
//! escaping for text that goes into HTML or SVG (tags and hostnames are user input).

use jiff::civil::date;
use jiff::tz::TimeZone;

use crate::clock::format_utc;

/// `text` safe inside an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML (SVG), and a hostname or tag could
            // carry one; the replacement character shows that something was there.
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A number for an SVG attribute: two decimals at most, no `-0`.
pub fn num(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    if rounded == 0.0 {
        "0".into()
    } else {
        format!("{rounded}")
    }
}

/// Maps a data interval linearly onto a pixel interval. A domain of one value (one snapshot,
/// one size) maps to the middle of the range instead of dividing by zero.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Linear {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Linear {
        Linear {
            d0: domain.0,
            d1: domain.1,
            r0: range.0,
            r1: range.1,
        }
    }

    pub fn map(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span.abs() < f64::EPSILON || !span.is_finite() {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / span * (self.r1 - self.r0)
    }
}

/// A logarithmic scale (base 10) for ratios: 2x and 20x are as far apart as 10x and 100x, and
/// a product of two ratios is the sum of their heights.
#[derive(Clone, Copy, Debug)]
pub struct Log(Linear);

impl Log {
    /// `domain` must be positive.
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Log {
        Log(Linear::new((domain.0.log10(), domain.1.log10()), range))
    }

    pub fn map(&self, v: f64) -> f64 {
        self.0.map(v.log10())
    }
}

/// A tick: where (in data units) and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub value: f64,
    pub label: String,
}

/// The smallest step of 1, 2 or 5 times a power of ten that covers `span` in at most `max`
/// steps.
pub fn nice_step(span: f64, max: usize) -> f64 {
    let max = max.max(1) as f64;
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / max;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| span / step <= max + 1e-9)
        .unwrap_or(10.0 * power)
}

/// Ticks for a byte axis from 0 to at least `max`: in the one binary unit that `max` needs
/// (KiB, MiB, GiB...), at 1-2-5 steps of that unit, at most `count` + 1 of them. Returns the
/// ticks and the axis's top (the last tick, at or above `max`).
pub fn byte_ticks(max: u64, count: usize) -> (Vec<Tick>, f64) {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && max as f64 >= 1024f64.powi(unit as i32 + 1) {
        unit += 1;
    }
    let scale = 1024f64.powi(unit as i32);
    let top_in_unit = (max as f64 / scale).max(1.0);
    let mut step = nice_step(top_in_unit, count);
    if unit == 0 {
        // No fractions of a byte.
        step = step.max(1.0);
    }
    let steps = (top_in_unit / step - 1e-9).ceil().max(1.0) as usize;
    let decimals = decimals_of(step);
    let ticks = (0..=steps)
        .map(|i| {
            let v = i as f64 * step;
            Tick {
                value: v * scale,
                label: format!("{v:.decimals$} {}", UNITS[unit]),
            }
        })
        .collect();
    (ticks, steps as f64 * step * scale)
}

/// Decimals that show a 1-2-5 step exactly (0.5 needs one, 0.02 two).
fn decimals_of(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    }
}

/// Ticks for a ratio axis on a log scale over `[lo, hi]` (positive): 1, 2 and 5 times powers of
/// ten, or only the powers when those would be more than `max`.
pub fn ratio_ticks(lo: f64, hi: f64, max: usize) -> Vec<Tick> {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let with = |multiples: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|p| multiples.iter().map(move |m| m * 10f64.powi(p)))
            .filter(within)
            .collect()
    };
    let mut values = with(&[1.0, 2.0, 5.0]);
    if values.len() > max {
        values = with(&[1.0]);
    }
    // Over many decades even the powers of ten crowd: keep every k-th.
    let keep = values.len().div_ceil(max.max(1)).max(1);
    values
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % keep == 0)
        .map(|(_, v)| Tick {
            value: v,
            label: ratio_label(v),
        })
        .collect()
}

/// `0.5x`, `2x`, `1000x`.
pub fn ratio_label(v: f64) -> String {
    format!("{}x", num_short(v))
}

/// A ratio in at most three significant digits, without trailing zeros: `1.5`, `12.3`, `250`.
pub fn num_short(v: f64) -> String {
    let text = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// A step of a time axis: a fixed number of seconds, or calendar months (whose lengths vary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeStep {
    Seconds(i64),
    Months(i64),
}

/// The steps a time axis may take, finest first.
const TIME_STEPS: [TimeStep; 29] = [
    TimeStep::Seconds(1),
    TimeStep::Seconds(2),
    TimeStep::Seconds(5),
    TimeStep::Seconds(10),
    TimeStep::Seconds(15),
    TimeStep::Seconds(30),
    TimeStep::Seconds(MINUTE),
    TimeStep::Seconds(2 * MINUTE),
    TimeStep::Seconds(5 * MINUTE),
    TimeStep::Seconds(10 * MINUTE),
    TimeStep::Seconds(15 * MINUTE),
    TimeStep::Seconds(30 * MINUTE),
    TimeStep::Seconds(HOUR),
    TimeStep::Seconds(2 * HOUR),
    TimeStep::Seconds(3 * HOUR),
    TimeStep::Seconds(6 * HOUR),
    TimeStep::Seconds(12 * HOUR),
    TimeStep::Seconds(DAY),
    TimeStep::Seconds(2 * DAY),
    TimeStep::Seconds(7 * DAY),
    TimeStep::Seconds(14 * DAY),
    TimeStep::Months(1),
    TimeStep::Months(2),
    TimeStep::Months(3),
    TimeStep::Months(6),
    TimeStep::Months(12),
    TimeStep::Months(24),
    TimeStep::Months(60),
    TimeStep::Months(120),
];

/// Ticks for a time axis over `[lo, hi]` (seconds since the epoch, UTC): at most `max` ticks,
/// on round times (whole minutes, midnights, Mondays, the first of a month, New Year), labelled
/// with as much of the date and time as the step needs. A span too long for every step gets
/// ticks every ten years, thinned to `max`.
pub fn time_ticks(lo: i64, hi: i64, max: usize) -> Vec<Tick> {
    let span = (hi - lo).max(1);
    let max = max.max(2) as i64;
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| match s {
            TimeStep::Seconds(n) => span / n < max,
            TimeStep::Months(n) => span / (n * 30 * DAY) < max,
        })
        .unwrap_or(TimeStep::Months(120));
    let values = match step {
        TimeStep::Seconds(n) => {
            // Weeks start on Mondays; the epoch was a Thursday.
            let offset = if n % (7 * DAY) == 0 { 4 * DAY } else { 0 };
            let first = (lo - offset).div_euclid(n) * n + offset;
            let first = if first < lo { first + n } else { first };
            (0..)
                .map(|i| first + i * n)
                .take_while(|t| *t <= hi)
                .collect()
        }
        TimeStep::Months(n) => month_ticks(lo, hi, n),
    };
    let spans_days = format_utc(lo)[..10] != format_utc(hi)[..10];
    let mut ticks: Vec<Tick> = values
        .into_iter()
        .map(|t| Tick {
            value: t as f64,
            label: time_label(t, step, spans_days),
        })
        .collect();
    let keep = ticks.len().div_ceil(max as usize).max(1);
    if keep > 1 {
        ticks = ticks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % keep == 0)
            .map(|(_, t)| t)
            .collect();
    }
    ticks
}

/// The first of every `n`th month (counted from January) in `[lo, hi]`.
fn month_ticks(lo: i64, hi: i64, n: i64) -> Vec<i64> {
    let (mut year, mut month) = year_month(lo);
    // Back to a month the step lands on, then forward until inside the span.
    month -= (month - 1) % n.min(12);
    if n > 12 {
        year -= year.rem_euclid(n / 12);
    }
    let mut out = Vec::new();
    while let Some(t) = first_of_month(year, month) {
        if t > hi {
            break;
        }
        if t >= lo {
            out.push(t);
        }
        month += n;
        year += (month - 1) / 12;
        month = (month - 1) % 12 + 1;
    }
    out
}

fn year_month(secs: i64) -> (i64, i64) {
    let text = format_utc(secs);
    let year = text[..4].parse().unwrap_or(1970);
    let month = text[5..7].parse().unwrap_or(1);
    (year, month)
}

/// Midnight UTC on the first of a month; None outside the years jiff represents.
fn first_of_month(year: i64, month: i64) -> Option<i64> {
    let day = date(i16::try_from(year).ok()?, i8::try_from(month).ok()?, 1);
    Some(day.to_zoned(TimeZone::UTC).ok()?.timestamp().as_second())
}

/// `2026-11`, `2026-11-21`, `11-21 14:30`, `14:30`, `14:30:05`: what a tick at `t` says.
fn time_label(t: i64, step: TimeStep, spans_days: bool) -> String {
    let text = format_utc(t);
    match step {
        TimeStep::Months(n) if n % 12 == 0 => text[..4].to_string(),
        TimeStep::Months(_) => text[..7].to_string(),
        TimeStep::Seconds(n) if n >= DAY => text[..10].to_string(),
        TimeStep::Seconds(n) if n >= MINUTE && spans_days => text[5..16].to_string(),
        TimeStep::Seconds(n) if n >= MINUTE => text[11..16].to_string(),
        TimeStep::Seconds(_) => text[11..19].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ticks: &[Tick]) -> Vec<&str> {
        ticks.iter().map(|t| t.label.as_str()).collect()
    }

    #[test]
    fn escaping_leaves_no_markup_and_no_control_characters() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("db\u{1b}[31m1"), "db\u{fffd}[31m1");
        assert_eq!(escape("plain host-1.example"), "plain host-1.example");
    }

    #[test]
    fn linear_scale_maps_ends_and_a_single_value_to_the_middle() {
        let s = Linear::new((10.0, 20.0), (0.0, 100.0));
        assert_eq!(s.map(10.0), 0.0);
        assert_eq!(s.map(15.0), 50.0);
        assert_eq!(s.map(20.0), 100.0);
        // An inverted range, as a y axis has (0 at the bottom).
        let y = Linear::new((0.0, 4.0), (200.0, 0.0));
        assert_eq!(y.map(1.0), 150.0);
        let one = Linear::new((5.0, 5.0), (0.0, 100.0));
        assert_eq!(one.map(5.0), 50.0);
    }

    #[test]
    fn log_scale_puts_each_decade_at_the_same_distance() {
        let s = Log::new((1.0, 100.0), (0.0, 200.0));
        assert!((s.map(1.0) - 0.0).abs() < 1e-9);
        assert!((s.map(10.0) - 100.0).abs() < 1e-9);
        assert!((s.map(100.0) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(7.0, 5), 2.0);
        assert_eq!(nice_step(1000.0, 4), 500.0);
        assert_eq!(nice_step(0.3, 5), 0.1);
        assert_eq!(nice_step(0.0, 5), 1.0);
    }

    #[test]
    fn byte_axes_use_one_binary_unit_and_end_at_or_above_the_maximum() {
        let (ticks, top) = byte_ticks(900 << 20, 5);
        assert_eq!(
            labels(&ticks),
            [
                "0 MiB", "200 MiB", "400 MiB", "600 MiB", "800 MiB", "1000 MiB"
            ]
        );
        assert_eq!(top, (1000u64 << 20) as f64);
        let (ticks, top) = byte_ticks(3 << 29, 4);
        assert_eq!(labels(&ticks), ["0.0 GiB", "0.5 GiB", "1.0 GiB", "1.5 GiB"]);
        assert_eq!(top, (3u64 << 29) as f64);
        // Nothing stored yet still gives an axis.
        let (ticks, top) = byte_ticks(0, 5);
        assert_eq!(labels(&ticks), ["0 B", "1 B"]);
        assert_eq!(top, 1.0);
        let (ticks, _) = byte_ticks(3, 5);
        assert_eq!(labels(&ticks), ["0 B", "1 B", "2 B", "3 B"]);
    }

    #[test]
    fn ratio_ticks_thin_to_powers_of_ten_over_many_decades() {
        assert_eq!(
            labels(&ratio_ticks(1.0, 30.0, 8)),
            ["1x", "2x", "5x", "10x", "20x"]
        );
        assert_eq!(
            labels(&ratio_ticks(0.8, 5000.0, 6)),
            ["1x", "10x", "100x", "1000x"]
        );
        assert_eq!(labels(&ratio_ticks(1.0, 1e12, 4)).len(), 4);
        assert_eq!(ratio_label(2.5), "2.5x");
        assert_eq!(ratio_label(1.0), "1x");
        assert_eq!(num_short(12.34), "12.3");
        assert_eq!(num_short(1234.6), "1235");
    }

    /// 2026-11-21 00:00:00 UTC.
    const DAY0: i64 = 1_795_219_200;

    #[test]
    fn time_ticks_fall_on_round_times_with_labels_for_the_step() {
        assert_eq!(format_utc(DAY0), "2026-11-21 00:00:00");
        // Seconds: a test's backups.
        let ticks = time_ticks(DAY0 + 3, DAY0 + 40, 8);
        assert_eq!(
            labels(&ticks),
            [
                "00:00:05", "00:00:10", "00:00:15", "00:00:20", "00:00:25", "00:00:30", "00:00:35",
                "00:00:40"
            ]
        );
        // Hours within a day, then across days (the date is needed).
        let ticks = time_ticks(DAY0 + 600, DAY0 + 10 * HOUR, 6);
        assert_eq!(
            labels(&ticks),
            ["02:00", "04:00", "06:00", "08:00", "10:00"]
        );
        let ticks = time_ticks(DAY0 + 20 * HOUR, DAY0 + 30 * HOUR, 6);
        assert_eq!(
            labels(&ticks)[..3],
            ["11-21 20:00", "11-21 22:00", "11-22 00:00"]
        );
        // Days, weeks on Mondays (2026-11-23 is a Monday), months on the first.
        let ticks = time_ticks(DAY0, DAY0 + 6 * DAY, 8);
        assert_eq!(labels(&ticks)[0], "2026-11-21");
        let ticks = time_ticks(DAY0, DAY0 + 60 * DAY, 6);
        assert_eq!(labels(&ticks)[0], "2026-11-23");
        assert!(
            ticks
                .iter()
                .all(|t| (t.value as i64 - (DAY0 + 2 * DAY)) % (7 * DAY) == 0)
        );
        let ticks = time_ticks(DAY0, DAY0 + 400 * DAY, 6);
        assert_eq!(labels(&ticks), ["2027-01", "2027-04", "2027-07", "2027-10"]);
        let ticks = time_ticks(DAY0, DAY0 + 3000 * DAY, 6);
        assert_eq!(labels(&ticks), ["2028", "2030", "2032", "2034"]);
    }

    #[test]
    fn time_ticks_never_exceed_the_maximum() {
        for span in [
            1,
            59,
            3601,
            86_399,
            86_401,
            40 * DAY,
            800 * DAY,
            40_000 * DAY,
        ] {
            for max in [2, 5, 9] {
                let ticks = time_ticks(DAY0, DAY0 + span, max);
                assert!(ticks.len() <= max, "{span} s, {max}: {:?}", labels(&ticks));
                assert!(
                    ticks
                        .iter()
                        .all(|t| t.value >= DAY0 as f64 && t.value <= (DAY0 + span) as f64)
                );
            }
        }
    }
}
