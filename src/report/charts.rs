//! The report's four charts as inline SVG, drawn on one time axis so that they line up on the
//! page: logical size per snapshot, bytes each backup added, dedup and compression over time,
//! and the recoverable windows per cluster and timeline. Every mark carries a `<title>` (the
//! browser shows it on hover, screen readers read it) and every chart a `<title>` and a
//! `<desc>` that says in words what it shows. Nothing is labelled per snapshot, so hundreds of
//! snapshots draw as many marks and no more text.

use super::data::{Overview, SnapshotFacts, cumulative};
use super::svg::{
    Linear, Log, Tick, byte_ticks, escape, num, ratio_label, ratio_ticks, time_ticks,
};
use super::text::point_text;
use crate::archive::window::{ClusterWal, TimelineWal, Window};
use crate::cli::format;
use crate::clock::format_utc;
use crate::restore::select::format_time_us;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 260.0;
/// Wide enough for a row label of the windows chart; the same on every chart so that their
/// time axes line up.
const LEFT: f64 = 150.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;
/// Height of one cluster/timeline row of the windows chart.
const ROW: f64 = 30.0;
/// Ticks per axis at most: enough to read a value off, few enough to stay legible.
const X_TICKS: usize = 8;
const Y_TICKS: usize = 5;

/// Colours per cluster (Okabe and Ito's, told apart with the common colour blindnesses).
pub const PALETTE: [&str; 6] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00",
];
const OK: &str = "#2e8b57";
const BAD: &str = "#c0392b";

/// The ratio series of the dedup chart: name, colour, dash pattern.
pub const RATIO_SERIES: [(&str, &str, &str); 3] = [
    ("dedup", "#0072b2", ""),
    ("compression", "#e69f00", ""),
    ("overall", "#333333", "5 3"),
];

/// The time span all charts share, in seconds since the epoch: every snapshot and every
/// recoverable window, with a margin so that marks at the ends are not cut in half.
#[derive(Clone, Copy, Debug)]
pub struct TimeSpan {
    pub lo: f64,
    pub hi: f64,
}

impl TimeSpan {
    pub fn of(overview: &Overview) -> Option<TimeSpan> {
        let snapshots = overview
            .snapshots
            .iter()
            .flat_map(|s| [s.snapshot.started_ns, s.snapshot.finished_ns])
            .map(|ns| ns as f64 / 1e9);
        let windows = all_windows(&overview.clusters)
            .flat_map(|(_, _, w)| [w.earliest.time_us, w.latest.time_us])
            .map(|us| us as f64 / 1e6);
        let (lo, hi) =
            snapshots
                .chain(windows)
                .fold(None, |acc: Option<(f64, f64)>, t| match acc {
                    None => Some((t, t)),
                    Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
                })?;
        // One instant (one snapshot, no WAL after it): an hour either side.
        let pad = if hi - lo < 1.0 {
            3600.0
        } else {
            (hi - lo) * 0.03
        };
        Some(TimeSpan {
            lo: lo - pad,
            hi: hi + pad,
        })
    }

    fn scale(&self) -> Linear {
        Linear::new((self.lo, self.hi), (LEFT, WIDTH - RIGHT))
    }
}

/// Every window with its cluster and timeline.
fn all_windows(clusters: &[ClusterWal]) -> impl Iterator<Item = (u64, u32, &Window)> {
    clusters.iter().flat_map(|c| {
        c.timelines.iter().flat_map(move |t| {
            t.windows
                .iter()
                .map(move |w| (c.system_identifier, t.timeline, w))
        })
    })
}

/// The colour of a cluster: by its place among the repository's clusters.
pub fn cluster_colour(clusters: &[ClusterWal], system_identifier: Option<u64>) -> &'static str {
    system_identifier
        .and_then(|id| clusters.iter().position(|c| c.system_identifier == id))
        .map_or("#777777", |i| PALETTE[i % PALETTE.len()])
}

/// `a1b2c3d4 at 2026-11-21 12:00:00 UTC`: which snapshot a mark is.
fn snapshot_name(s: &SnapshotFacts) -> String {
    format!(
        "snapshot {} at {} UTC",
        s.id.short(),
        format_utc(s.snapshot.started_ns / 1_000_000_000)
    )
}

fn started_s(s: &SnapshotFacts) -> f64 {
    s.snapshot.started_ns as f64 / 1e9
}

/// An `<svg>` with its title and description, ready for marks.
struct Canvas {
    id: &'static str,
    height: f64,
    body: String,
}

impl Canvas {
    fn new(id: &'static str, height: f64) -> Canvas {
        Canvas {
            id,
            height,
            body: String::new(),
        }
    }

    fn add(&mut self, markup: &str) {
        self.body.push_str(markup);
        self.body.push('\n');
    }

    /// Vertical grid lines and labels of the time axis, at the bottom of the plot.
    fn time_axis(&mut self, span: &TimeSpan, bottom: f64) {
        let x = span.scale();
        for tick in time_ticks(span.lo.ceil() as i64, span.hi.floor() as i64, X_TICKS) {
            let px = num(x.map(tick.value));
            self.add(&format!(
                r#"<line class="grid" x1="{px}" x2="{px}" y1="{}" y2="{}"/><text class="tick" x="{px}" y="{}" text-anchor="middle">{}</text>"#,
                num(TOP),
                num(bottom),
                num(bottom + 16.0),
                escape(&tick.label)
            ));
        }
        // Ticks within one day show the time alone: the date goes with the unit.
        let (first, last) = (format_utc(span.lo as i64), format_utc(span.hi as i64));
        let unit = if first[..10] == last[..10] {
            format!("{} UTC", &first[..10])
        } else {
            "UTC".into()
        };
        self.add(&format!(
            r#"<line class="axis" x1="{}" x2="{}" y1="{b}" y2="{b}"/><text class="unit" x="{}" y="{}" text-anchor="end">{unit}</text>"#,
            num(LEFT),
            num(WIDTH - RIGHT),
            num(WIDTH - RIGHT),
            num(bottom + 30.0),
            b = num(bottom),
        ));
    }

    /// Horizontal grid lines and labels of a value axis.
    fn value_axis(&mut self, ticks: &[Tick], map: impl Fn(f64) -> f64, title: &str) {
        for tick in ticks {
            let py = num(map(tick.value));
            self.add(&format!(
                r#"<line class="grid" x1="{}" x2="{}" y1="{py}" y2="{py}"/><text class="tick" x="{}" y="{py}" dy="4" text-anchor="end">{}</text>"#,
                num(LEFT),
                num(WIDTH - RIGHT),
                num(LEFT - 6.0),
                escape(&tick.label)
            ));
        }
        self.add(&format!(
            r#"<text class="unit" x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
            num((TOP + HEIGHT - BOTTOM) / 2.0),
            num((TOP + HEIGHT - BOTTOM) / 2.0),
            escape(title)
        ));
    }

    fn finish(self, title: &str, desc: &str) -> String {
        format!(
            r#"<svg class="chart" id="{id}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-labelledby="{id}-title {id}-desc">
<title id="{id}-title">{title}</title>
<desc id="{id}-desc">{desc}</desc>
{body}</svg>"#,
            id = self.id,
            w = num(WIDTH),
            h = num(self.height),
            title = escape(title),
            desc = escape(desc),
            body = self.body
        )
    }
}

/// The y range of the plots of charts 1 to 3.
fn plot_y() -> (f64, f64) {
    (HEIGHT - BOTTOM, TOP)
}

/// Chart 1: each snapshot's logical size, a line per cluster.
pub fn sizes(overview: &Overview, span: &TimeSpan) -> String {
    let snapshots = &overview.snapshots;
    let max = snapshots
        .iter()
        .map(|s| s.snapshot.summary.logical_bytes)
        .max()
        .unwrap_or(0);
    let (ticks, top) = byte_ticks(max, Y_TICKS);
    let x = span.scale();
    let y = Linear::new((0.0, top), plot_y());
    let mut canvas = Canvas::new("chart-sizes", HEIGHT);
    canvas.value_axis(&ticks, |v| y.map(v), "logical size");
    canvas.time_axis(span, HEIGHT - BOTTOM);
    let radius = point_radius(snapshots.len());
    for cluster in cluster_ids(snapshots) {
        let colour = cluster_colour(&overview.clusters, cluster);
        let members: Vec<&SnapshotFacts> = snapshots
            .iter()
            .filter(|s| system_id(s) == cluster)
            .collect();
        let points: Vec<String> = members
            .iter()
            .map(|s| {
                format!(
                    "{},{}",
                    num(x.map(started_s(s))),
                    num(y.map(s.snapshot.summary.logical_bytes as f64))
                )
            })
            .collect();
        canvas.add(&format!(
            r#"<polyline class="series" fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        ));
        for s in members {
            canvas.add(&format!(
                r#"<circle class="point" cx="{}" cy="{}" r="{}" fill="{colour}"><title>{}: {}</title></circle>"#,
                num(x.map(started_s(s))),
                num(y.map(s.snapshot.summary.logical_bytes as f64)),
                num(radius),
                escape(&snapshot_name(s)),
                format::bytes(s.snapshot.summary.logical_bytes)
            ));
        }
    }
    let desc = match (snapshots.first(), snapshots.last()) {
        (Some(first), Some(last)) => format!(
            "{} snapshots from {} to {}; logical size from {} to {}, largest {}.",
            snapshots.len(),
            format_utc(first.snapshot.started_ns / 1_000_000_000),
            format_utc(last.snapshot.started_ns / 1_000_000_000),
            format::bytes(first.snapshot.summary.logical_bytes),
            format::bytes(last.snapshot.summary.logical_bytes),
            format::bytes(max)
        ),
        _ => "No snapshots.".into(),
    };
    canvas.finish("Logical size per snapshot", &desc)
}

/// Chart 2: what each backup stored after deduplication and compression, a bar each.
pub fn added(overview: &Overview, span: &TimeSpan) -> String {
    let snapshots = &overview.snapshots;
    let max = snapshots
        .iter()
        .map(|s| s.snapshot.summary.new_stored_bytes)
        .max()
        .unwrap_or(0);
    let (ticks, top) = byte_ticks(max, Y_TICKS);
    let x = span.scale();
    let y = Linear::new((0.0, top), plot_y());
    let mut canvas = Canvas::new("chart-added", HEIGHT);
    canvas.value_axis(&ticks, |v| y.map(v), "added (stored)");
    canvas.time_axis(span, HEIGHT - BOTTOM);
    let centres: Vec<f64> = snapshots.iter().map(|s| x.map(started_s(s))).collect();
    let width = bar_width(&centres);
    for (s, centre) in snapshots.iter().zip(&centres) {
        let bytes = s.snapshot.summary.new_stored_bytes;
        let top_px = y.map(bytes as f64);
        // A backup that added almost nothing still shows as a hairline on the axis.
        let height = (y.map(0.0) - top_px).max(1.0);
        canvas.add(&format!(
            r#"<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: added {} ({} logical)</title></rect>"#,
            num(centre - width / 2.0),
            num(y.map(0.0) - height),
            num(width),
            num(height),
            cluster_colour(&overview.clusters, system_id(s)),
            escape(&snapshot_name(s)),
            format::bytes(bytes),
            format::bytes(s.snapshot.summary.logical_bytes)
        ));
    }
    let total: u64 = snapshots
        .iter()
        .map(|s| s.snapshot.summary.new_stored_bytes)
        .sum();
    let desc = match snapshots
        .iter()
        .max_by_key(|s| s.snapshot.summary.new_stored_bytes)
    {
        Some(largest) => format!(
            "{} backups added {} in all; the largest, {}, added {}.",
            snapshots.len(),
            format::bytes(total),
            snapshot_name(largest),
            format::bytes(largest.snapshot.summary.new_stored_bytes)
        ),
        None => "No snapshots.".into(),
    };
    canvas.finish("Bytes added per backup", &desc)
}

/// Chart 3: dedup, compression and both together over the snapshots up to each one, on a log
/// scale (where the overall ratio is the sum of the other two's heights).
pub fn ratios(overview: &Overview, span: &TimeSpan) -> String {
    let snapshots = &overview.snapshots;
    let points: Vec<(&SnapshotFacts, [f64; 3])> = snapshots
        .iter()
        .zip(cumulative(snapshots))
        .filter_map(|(s, c)| Some((s, c?)))
        .map(|(s, c)| (s, [c.dedup, c.compression, c.overall]))
        .collect();
    let values = points.iter().flat_map(|(_, v)| v.iter().copied());
    let lo = values.clone().fold(1.0f64, f64::min).max(1e-3);
    let hi = values.fold(2.0f64, f64::max) * 1.15;
    let x = span.scale();
    let y = Log::new((lo, hi), plot_y());
    let mut canvas = Canvas::new("chart-ratios", HEIGHT);
    canvas.value_axis(&ratio_ticks(lo, hi, 7), |v| y.map(v), "ratio (log scale)");
    canvas.time_axis(span, HEIGHT - BOTTOM);
    let radius = point_radius(points.len());
    for (i, (name, colour, dash)) in RATIO_SERIES.iter().enumerate() {
        let line: Vec<String> = points
            .iter()
            .map(|(s, v)| format!("{},{}", num(x.map(started_s(s))), num(y.map(v[i]))))
            .collect();
        canvas.add(&format!(
            r#"<polyline class="series" data-series="{name}" fill="none" stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}" points="{}"/>"#,
            line.join(" ")
        ));
        for (s, v) in &points {
            canvas.add(&format!(
                r#"<circle class="point" data-series="{name}" cx="{}" cy="{}" r="{}" fill="{colour}"><title>{}: {name} {}</title></circle>"#,
                num(x.map(started_s(s))),
                num(y.map(v[i])),
                num(radius),
                escape(&snapshot_name(s)),
                ratio_label(v[i])
            ));
        }
    }
    let desc = match points.last() {
        Some((s, [dedup, compression, overall])) => format!(
            "Over the snapshots up to each one: after the last, {}, dedup {}, compression {}, \
             overall {}.",
            snapshot_name(s),
            ratio_label(*dedup),
            ratio_label(*compression),
            ratio_label(*overall)
        ),
        None => "No snapshot references indexed data yet.".into(),
    };
    canvas.finish("Dedup and compression ratios over time", &desc)
}

/// Chart 4: per cluster and timeline, the recoverable windows as bands, the stretches between
/// them (lost to WAL gaps) hatched, and a tick per snapshot (red: not restorable).
pub fn windows(overview: &Overview, span: &TimeSpan) -> String {
    let rows: Vec<(&ClusterWal, &TimelineWal)> = overview
        .clusters
        .iter()
        .flat_map(|c| c.timelines.iter().map(move |t| (c, t)))
        .collect();
    let bottom = TOP + ROW * rows.len().max(1) as f64 + 8.0;
    let mut canvas = Canvas::new("chart-windows", bottom + BOTTOM);
    canvas.add(
        r##"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fbeaea"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c0392b" stroke-width="2"/></pattern></defs>"##,
    );
    canvas.time_axis(span, bottom);
    let x = span.scale();
    let clamp = |t: f64| x.map(t).clamp(LEFT, WIDTH - RIGHT);
    let mut bands = 0;
    let mut lost = 0;
    for (i, (cluster, timeline)) in rows.iter().enumerate() {
        let top = TOP + 4.0 + ROW * i as f64;
        let band = ROW - 10.0;
        let middle = top + band / 2.0;
        canvas.add(&format!(
            r#"<text class="row" x="{}" y="{}" dy="4" text-anchor="end"><title>cluster {}, timeline {}</title>{} TL {}</text>"#,
            num(LEFT - 8.0),
            num(middle),
            escape(&overview.cluster_label(cluster.system_identifier)),
            timeline.timeline,
            escape(&row_name(overview, cluster.system_identifier)),
            timeline.timeline
        ));
        for pair in timeline.windows.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            // The window ended at the first segment missing after it.
            let why = match timeline
                .gaps
                .iter()
                .find(|g| g.first_missing > before.last_segment)
            {
                Some(g) => format!(
                    "; WAL gap {} .. {} ({} segments missing)",
                    g.first_missing, g.last_missing, g.segments
                ),
                None => format!("; no WAL archived after {}", before.last_segment),
            };
            let (x0, x1) = (
                clamp(before.latest.time_us as f64 / 1e6),
                clamp(after.earliest.time_us as f64 / 1e6),
            );
            lost += 1;
            canvas.add(&format!(
                r#"<rect class="gap" x="{}" y="{}" width="{}" height="{}" fill="url(#hatch)"><title>not recoverable from {} to {}{}</title></rect>"#,
                num(x0),
                num(top),
                num((x1 - x0).max(2.0)),
                num(band),
                format_time_us(before.latest.time_us),
                format_time_us(after.earliest.time_us),
                escape(&why)
            ));
        }
        for w in &timeline.windows {
            let (x0, x1) = (
                clamp(w.earliest.time_us as f64 / 1e6),
                clamp(w.latest.time_us as f64 / 1e6),
            );
            bands += 1;
            canvas.add(&format!(
                r#"<rect class="window" x="{}" y="{}" width="{}" height="{}" fill="{OK}" fill-opacity="0.75"><title>recoverable from {} to {} (from snapshot {}, WAL to {})</title></rect>"#,
                num(x0),
                num(top),
                num((x1 - x0).max(2.0)),
                num(band),
                escape(&point_text(&w.earliest)),
                escape(&point_text(&w.latest)),
                w.snapshot.short(),
                escape(&w.last_segment)
            ));
        }
        if timeline.windows.is_empty() {
            canvas.add(&format!(
                r#"<text class="note" x="{}" y="{}" dy="4">nothing recoverable on this timeline</text>"#,
                num(LEFT + 8.0),
                num(middle)
            ));
        }
        for s in overview.snapshots.iter().filter(|s| {
            s.snapshot.postgres.as_ref().is_some_and(|pg| {
                pg.system_identifier == cluster.system_identifier
                    && pg.timeline == timeline.timeline
            })
        }) {
            let px = num(clamp(s.snapshot.finished_ns as f64 / 1e9));
            let colour = if s.restorable() { "#1b4d30" } else { BAD };
            canvas.add(&format!(
                r#"<line class="snap" x1="{px}" x2="{px}" y1="{}" y2="{}" stroke="{colour}" stroke-width="1.5"><title>{}: {}</title></line>"#,
                num(top - 3.0),
                num(top + band + 3.0),
                escape(&snapshot_name(s)),
                escape(&s.status())
            ));
        }
    }
    let desc = if rows.is_empty() {
        "No WAL archived and no snapshots: nothing is recoverable.".to_string()
    } else {
        format!(
            "{} recoverable windows on {} cluster timelines, {} stretches between them not \
             recoverable.",
            bands,
            rows.len(),
            lost
        )
    };
    canvas.finish("Recoverable window over time", &desc)
}

/// A cluster in the little room a row label has: its name, else the last digits of its
/// system identifier (the whole of either is in the row's tooltip).
fn row_name(overview: &Overview, system_identifier: u64) -> String {
    const ROOM: usize = 14;
    match overview.cluster_name(system_identifier) {
        Some(name) if name.chars().count() <= ROOM => name.to_string(),
        Some(name) => format!("{}…", name.chars().take(ROOM - 1).collect::<String>()),
        None => {
            let digits = system_identifier.to_string();
            format!("…{}", &digits[digits.len().saturating_sub(8)..])
        }
    }
}

fn system_id(s: &SnapshotFacts) -> Option<u64> {
    s.snapshot.postgres.as_ref().map(|pg| pg.system_identifier)
}

/// The clusters among the snapshots, in order of first appearance.
fn cluster_ids(snapshots: &[SnapshotFacts]) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for s in snapshots {
        if !out.contains(&system_id(s)) {
            out.push(system_id(s));
        }
    }
    out
}

/// Dots small enough not to merge into a smear when there are hundreds.
fn point_radius(points: usize) -> f64 {
    ((WIDTH - LEFT - RIGHT) / points.max(1) as f64 / 3.0).clamp(1.5, 3.5)
}

/// Bars as wide as the closest two snapshots allow (1 to 18 pixels).
fn bar_width(centres: &[f64]) -> f64 {
    let mut sorted = centres.to_vec();
    sorted.sort_by(f64::total_cmp);
    let closest = sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0.5)
        .fold(f64::INFINITY, f64::min);
    (closest * 0.7).clamp(1.0, 18.0)
}
