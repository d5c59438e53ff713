//! The report page: one HTML file with its style and charts inline, no script, no link to
//! anything outside it, so that it opens offline, from a mail attachment or a ticket, as it was
//! written. Every piece of text from the repository is escaped.

use super::charts::{self, PALETTE, RATIO_SERIES, TimeSpan};
use super::data::Overview;
use super::svg::{escape, ratio_label};
use super::text::wal_lines;
use crate::cli::format;
use crate::clock::format_utc;
use crate::pg::wal::Lsn;

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif;
       margin: 1.5rem auto; max-width: 1000px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 0.3rem; border-bottom: 1px solid #ddd; }
p.meta { color: #555; margin-top: 0; }
p.explain { color: #444; max-width: 60rem; font-size: 0.92rem; line-height: 1.4; }
p.empty { font-size: 1.1rem; padding: 1rem; background: #f6f6f6; border-left: 4px solid #999; }
p.warning { padding: 0.6rem 1rem; background: #fdf0e6; border-left: 4px solid #d55e00; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dl.summary dt { color: #555; }
dl.summary dd { margin: 0; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg.chart text { font-size: 11px; fill: #444; }
svg.chart .unit, svg.chart .row { font-size: 12px; fill: #222; }
svg.chart .note { font-style: italic; fill: #777; }
svg.chart .grid { stroke: #e8e8e8; }
svg.chart .axis { stroke: #888; }
ul.legend { list-style: none; padding: 0; margin: 0.3rem 0; font-size: 0.9rem; }
ul.legend li { display: inline-block; margin-right: 1.2rem; }
ul.legend .swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.35em;
                    vertical-align: -0.1em; border-radius: 2px; }
ul.legend .dashed { background: repeating-linear-gradient(90deg, #333 0 5px, transparent 5px 8px);
                    height: 0.2em; vertical-align: 0.2em; }
ul.legend .hatched { background: repeating-linear-gradient(45deg, #c0392b 0 2px, #fbeaea 2px 5px); }
pre.wal { background: #f7f7f7; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
div.scroll { overflow-x: auto; }
table.snapshots { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
table.snapshots th, table.snapshots td { padding: 0.2rem 0.45rem; border-bottom: 1px solid #e6e6e6;
                                         text-align: left; white-space: nowrap; }
table.snapshots td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.snapshots td.mono { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }
table.snapshots td.bad { color: #c0392b; font-weight: 600; }
table.snapshots tr:nth-child(even) { background: #fafafa; }
";

/// The whole page; `generated_s` is when (seconds since the epoch, for the page's header).
pub fn render(overview: &Overview, generated_s: i64) -> String {
    let mut out = String::with_capacity(64 * 1024 + overview.snapshots.len() * 1024);
    out.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>pgcairn report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&overview.location)
    ));
    out.push_str(&format!(
        "<h1>pgcairn repository report</h1>\n<p class=\"meta\">Repository {} (id {}), \
         as of {} UTC, by pgcairn {}.</p>\n",
        escape(&overview.location),
        overview.repository_id.short(),
        format_utc(generated_s),
        env!("CARGO_PKG_VERSION")
    ));
    summary(&mut out, overview);
    if !overview.unreadable.is_empty() {
        let first = &overview.unreadable[0];
        out.push_str(&format!(
            "<p class=\"warning\">{} trees or chunk lists could not be read (first: {:?} {}: {}): \
             the dedup and compression over time leave out what is under them. Run \
             <code>pgcairn verify</code>.</p>\n",
            overview.unreadable.len(),
            first.blob_type,
            first.id,
            escape(&first.error.to_string())
        ));
    }
    match TimeSpan::of(overview) {
        Some(span) if !overview.snapshots.is_empty() => charts_sections(&mut out, overview, &span),
        _ => out.push_str(
            "<p class=\"empty\" id=\"no-snapshots\">This repository holds no snapshots yet, so \
             there is nothing to chart: nothing can be restored from it. Take one with \
             <code>pgcairn backup</code>.</p>\n",
        ),
    }
    wal_section(&mut out, overview);
    table(&mut out, overview);
    out.push_str("</body>\n</html>\n");
    out
}

fn summary(out: &mut String, overview: &Overview) {
    let space = &overview.space;
    let mut rows = vec![
        ("Snapshots", overview.snapshots.len().to_string()),
        (
            "On storage",
            format!(
                "{} in {} packs",
                format::bytes(space.pack_bytes),
                space.packs
            ),
        ),
        (
            "Logical → unique → stored",
            format!(
                "{} → {} (dedup {}) → {} (compression {})",
                format::bytes(space.logical),
                format::bytes(space.data.raw_bytes),
                ratio_label(space.dedup_ratio()),
                format::bytes(space.data.stored_bytes),
                ratio_label(space.compression_ratio())
            ),
        ),
    ];
    for cluster in &overview.clusters {
        let of_cluster: Vec<_> = overview
            .snapshots
            .iter()
            .filter(|s| {
                s.snapshot
                    .postgres
                    .as_ref()
                    .is_some_and(|pg| pg.system_identifier == cluster.system_identifier)
            })
            .collect();
        let mut versions: Vec<String> = of_cluster
            .iter()
            .filter_map(|s| s.snapshot.postgres.as_ref())
            .map(|pg| format::pg_version(pg.server_version_num))
            .collect();
        versions.sort();
        versions.dedup();
        let windows = cluster
            .timelines
            .iter()
            .map(|t| t.windows.len())
            .sum::<usize>();
        rows.push((
            "Cluster",
            format!(
                "{} (PostgreSQL {}): {}, {}, {}",
                overview.cluster_label(cluster.system_identifier),
                if versions.is_empty() {
                    "?".into()
                } else {
                    versions.join(", ")
                },
                count(of_cluster.len(), "snapshot"),
                count(cluster.timelines.len(), "timeline"),
                count(windows, "recoverable window")
            ),
        ));
    }
    out.push_str("<dl class=\"summary\">\n");
    for (term, value) in rows {
        out.push_str(&format!(
            "<dt>{}</dt><dd>{}</dd>\n",
            escape(term),
            escape(&value)
        ));
    }
    out.push_str("</dl>\n");
}

/// `1 snapshot`, `3 snapshots`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A legend of the clusters' colours, for the charts drawn per cluster.
fn cluster_legend(overview: &Overview) -> String {
    let items: Vec<String> = overview
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "<li><span class=\"swatch\" style=\"background:{}\"></span>cluster {}</li>",
                PALETTE[i % PALETTE.len()],
                escape(&overview.cluster_label(c.system_identifier))
            )
        })
        .collect();
    format!("<ul class=\"legend\">{}</ul>\n", items.join(""))
}

fn charts_sections(out: &mut String, overview: &Overview, span: &TimeSpan) {
    let legend = cluster_legend(overview);
    out.push_str(&format!(
        "<section id=\"sizes\">\n<h2>Logical size per snapshot</h2>\n<p class=\"explain\">What \
         each snapshot would take as a plain copy: the data directory, and the WAL from the \
         backup's start to its stop. This is the database growing; the repository grows by far \
         less (next chart).</p>\n{legend}{}\n</section>\n",
        charts::sizes(overview, span)
    ));
    out.push_str(&format!(
        "<section id=\"added\">\n<h2>Bytes added per backup</h2>\n<p class=\"explain\">What \
         each backup stored after deduplication against everything already in the repository, \
         compression and encryption: what it costs to keep. A tall bar after quiet ones is the \
         first backup of a cluster or a rewrite (VACUUM FULL, CLUSTER, pg_repack, a bulk load, \
         REINDEX). WAL archived between backups is not in it.</p>\n{legend}{}\n</section>\n",
        charts::added(overview, span)
    ));
    let series: Vec<String> = RATIO_SERIES
        .iter()
        .map(|(name, colour, dash)| {
            let class = if dash.is_empty() {
                "swatch"
            } else {
                "swatch dashed"
            };
            let style = if dash.is_empty() {
                format!(" style=\"background:{colour}\"")
            } else {
                String::new()
            };
            format!("<li><span class=\"{class}\"{style}></span>{name}</li>")
        })
        .collect();
    out.push_str(&format!(
        "<section id=\"ratios\">\n<h2>Dedup and compression ratios over time</h2>\n<p \
         class=\"explain\">Over all snapshots up to each point, as the repository holds them \
         now (pruned snapshots are not counted). <b>Dedup</b>: their logical size over the \
         distinct data they reference; it climbs by about one with every backup of a quiet \
         cluster, and a flat stretch means backups that brought much new data. \
         <b>Compression</b>: that distinct data over what it takes stored; it falls when new \
         data compresses worse (already compressed columns, TOAST). <b>Overall</b>: the two \
         multiplied, how many times less the repository takes than plain copies would. On this \
         log scale overall is the sum of the other two's heights. Metadata and archived WAL \
         are left out; the summary above gives the whole repository's.</p>\n\
         <ul class=\"legend\">{}</ul>\n{}\n</section>\n",
        series.join(""),
        charts::ratios(overview, span)
    ));
    out.push_str(&format!(
        "<section id=\"windows\">\n<h2>Recoverable window over time</h2>\n<p \
         class=\"explain\">Per cluster (its name, else the last digits of its system identifier) \
         and timeline: \
         the times a point-in-time restore can reach, from the oldest restorable snapshot's \
         consistency point to the end of the WAL that follows it without a gap. Between two \
         windows WAL is missing: no point there can be recovered. Ticks are snapshots; a red \
         one is not restorable until its missing WAL is archived. Point at a band for its LSNs \
         and WAL segments; a time marked ~ is when the last segment was archived.</p>\n\
         <ul class=\"legend\"><li><span class=\"swatch\" style=\"background:#2e8b57\"></span>\
         recoverable</li><li><span class=\"swatch hatched\"></span>not recoverable (WAL \
         gap)</li><li><span class=\"swatch\" style=\"background:#1b4d30;width:3px\"></span>\
         snapshot</li><li><span class=\"swatch\" style=\"background:#c0392b;width:3px\"></span>\
         snapshot not restorable</li></ul>\n{}\n</section>\n",
        charts::windows(overview, span)
    ));
}

/// Archived WAL, gaps and windows per cluster, in the words `info` uses.
fn wal_section(out: &mut String, overview: &Overview) {
    if overview.clusters.is_empty() {
        return;
    }
    out.push_str("<section id=\"wal\">\n<h2>Archived WAL</h2>\n<pre class=\"wal\">");
    for cluster in &overview.clusters {
        out.push_str(&format!(
            "cluster {}:\n",
            escape(&overview.cluster_label(cluster.system_identifier))
        ));
        for line in wal_lines(cluster) {
            out.push_str(&escape(&line));
            out.push('\n');
        }
    }
    out.push_str("</pre>\n</section>\n");
}

fn table(out: &mut String, overview: &Overview) {
    if overview.snapshots.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"snapshots\">\n<h2>Snapshots, newest first</h2>\n<div class=\"scroll\"><table class=\"snapshots\">\n<thead><tr>\
         <th>ID</th><th>Time (UTC)</th><th>Host</th><th>Cluster</th><th>PG</th>\
         <th>TLI</th><th>LSN start..stop</th><th>Size</th><th>Added</th><th>Status</th>\
         <th>Tags</th></tr></thead>\n<tbody>\n",
    );
    for s in overview.snapshots.iter().rev() {
        let pg = s.snapshot.postgres.as_ref();
        let status = s.status();
        out.push_str(&format!(
            "<tr><td class=\"mono\" title=\"{}\">{}</td><td>{}</td><td>{}</td><td \
             class=\"mono\">{}</td><td>{}</td><td class=\"num\">{}</td><td \
             class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td \
             class=\"{}\">{}</td><td>{}</td></tr>\n",
            s.id.to_hex(),
            s.id.short(),
            format_utc(s.snapshot.started_ns / 1_000_000_000),
            escape(&s.snapshot.hostname),
            escape(&pg.map(format::cluster).unwrap_or_default()),
            pg.map(|pg| format::pg_version(pg.server_version_num))
                .unwrap_or_default(),
            pg.map(|pg| pg.timeline.to_string()).unwrap_or_default(),
            pg.map(|pg| format!("{}..{}", Lsn(pg.start_lsn), Lsn(pg.stop_lsn)))
                .unwrap_or_default(),
            format::bytes(s.snapshot.summary.logical_bytes),
            format::bytes(s.snapshot.summary.new_stored_bytes),
            if s.restorable() { "ok" } else { "bad" },
            escape(&status),
            escape(&s.snapshot.tags.join(", "))
        ));
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::window::tests::{segment, snapshot};
    use crate::archive::window::{self, Histories};
    use crate::repo::cache::BlobTotals;
    use crate::repo::id::{RepoId, SnapshotId};
    use crate::repo::snapshot::Snapshot;
    use crate::repo::walcat::WalEntry;
    use crate::report::data::{SnapshotFacts, Space};

    /// 2026-11-21 00:00:00 UTC.
    const DAY0: i64 = 1_795_219_200;

    fn overview(snapshots: Vec<(SnapshotId, Snapshot)>, segments: &[WalEntry]) -> Overview {
        let clusters = window::clusters(&snapshots, segments, &Histories::new());
        Overview {
            location: "/backup/pgcairn".into(),
            repository_id: RepoId([7; 32]),
            space: Space::default(),
            snapshots: snapshots
                .into_iter()
                .map(|(id, snapshot)| SnapshotFacts {
                    id,
                    first_referenced: BlobTotals {
                        blobs: 10,
                        raw_bytes: snapshot.summary.logical_bytes / 4,
                        stored_bytes: snapshot.summary.logical_bytes / 8,
                    },
                    snapshot,
                    missing_wal: Vec::new(),
                })
                .collect(),
            clusters,
            unreadable: Vec::new(),
        }
    }

    /// The `<svg>` element with this id, whole.
    fn chart<'p>(page: &'p str, id: &str) -> &'p str {
        let start = page
            .find(&format!("<svg class=\"chart\" id=\"{id}\""))
            .unwrap_or_else(|| panic!("no chart {id}"));
        let end = start + page[start..].find("</svg>").unwrap();
        &page[start..end]
    }

    /// A page stands alone: no script, nothing fetched from elsewhere.
    fn assert_self_contained(page: &str) {
        for outside in [
            "<script", "http://", "https://", "<img", "<link", "@import", "src=\"", "href=\"",
        ] {
            assert!(!page.contains(outside), "the page has {outside}");
        }
        assert_eq!(
            page.matches("url(").count(),
            page.matches("url(#hatch)").count()
        );
    }

    #[test]
    fn an_empty_repository_gets_a_page_that_says_so() {
        let page = render(&overview(Vec::new(), &[]), DAY0);
        assert!(page.contains("id=\"no-snapshots\""), "{page}");
        assert!(!page.contains("<svg"));
        assert!(!page.contains("<table"));
        assert_self_contained(&page);
        // Archived WAL without a snapshot: no chart either, the WAL in words.
        let page = render(&overview(Vec::new(), &[segment(1, 2, None)]), DAY0);
        assert!(page.contains("id=\"no-snapshots\""));
        assert!(page.contains("recoverable: nothing"), "{page}");
    }

    #[test]
    fn one_snapshot_draws_each_chart_with_one_mark() {
        let snapshots = vec![snapshot(1, 1, 2, 3, DAY0 + 100)];
        let segments: Vec<WalEntry> = (2..=5).map(|s| segment(1, s, Some(DAY0 + 200))).collect();
        let page = render(&overview(snapshots, &segments), DAY0 + 300);
        assert_self_contained(&page);
        for (id, mark, count) in [
            ("chart-sizes", "<circle class=\"point\"", 1),
            ("chart-added", "<rect class=\"bar\"", 1),
            ("chart-ratios", "<circle class=\"point\"", 3),
            ("chart-windows", "<rect class=\"window\"", 1),
            ("chart-windows", "<line class=\"snap\"", 1),
        ] {
            let svg = chart(&page, id);
            assert_eq!(svg.matches(mark).count(), count, "{id} {mark}\n{svg}");
            assert!(svg.contains(&format!("<title id=\"{id}-title\">")), "{id}");
            assert!(svg.contains(&format!("<desc id=\"{id}-desc\">")), "{id}");
            assert!(svg.contains(&format!("aria-labelledby=\"{id}-title {id}-desc\"")));
            assert!(
                svg.contains("<text class=\"tick\""),
                "{id} has no axis labels"
            );
        }
        assert!(!chart(&page, "chart-windows").contains("class=\"gap\""));
        // The table: one row, with its LSNs and status.
        assert_eq!(page.matches("<tr><td class=\"mono\"").count(), 1);
        assert!(page.contains("0/3000100"), "{page}");
    }

    #[test]
    fn a_wal_gap_splits_the_window_and_is_drawn_between_the_two() {
        let snapshots = vec![
            snapshot(1, 1, 2, 3, DAY0 + 100),
            snapshot(2, 1, 8, 8, DAY0 + 900),
        ];
        let segments: Vec<WalEntry> = [2, 3, 4, 8, 9]
            .iter()
            .map(|s| segment(1, *s, Some(DAY0 + 50 * *s as i64)))
            .collect();
        let page = render(&overview(snapshots, &segments), DAY0);
        let svg = chart(&page, "chart-windows");
        assert_eq!(svg.matches("<rect class=\"window\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("<rect class=\"gap\"").count(), 1, "{svg}");
        assert!(
            svg.contains(
                "WAL gap 000000010000000000000005 .. 000000010000000000000007 (3 segments missing)"
            ),
            "{svg}"
        );
    }

    #[test]
    fn hundreds_of_snapshots_draw_a_mark_each_and_few_labels() {
        let snapshots: Vec<(SnapshotId, Snapshot)> = (0..400u32)
            .map(|i| {
                let (_, mut s) = snapshot(1, 1, 2, 3, DAY0 + i64::from(i) * 86_400);
                s.summary.logical_bytes = (10u64 << 30) + u64::from(i) * (50 << 20);
                s.summary.new_stored_bytes = if i % 30 == 0 { 4 << 30 } else { 300 << 20 };
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                (SnapshotId(id), s)
            })
            .collect();
        let segments: Vec<WalEntry> = (2..=3).map(|s| segment(1, s, None)).collect();
        let page = render(&overview(snapshots, &segments), DAY0);
        assert_self_contained(&page);
        for id in ["chart-sizes", "chart-added", "chart-ratios"] {
            let svg = chart(&page, id);
            let labels = svg.matches("<text class=\"tick\"").count();
            assert!(labels <= 8 + 8, "{id}: {labels} tick labels");
        }
        assert_eq!(
            chart(&page, "chart-sizes")
                .matches("class=\"point\"")
                .count(),
            400
        );
        assert_eq!(
            chart(&page, "chart-added").matches("class=\"bar\"").count(),
            400
        );
        // Big sizes in GiB, dates on the time axis.
        assert!(chart(&page, "chart-sizes").contains(" GiB</text>"));
        assert!(
            chart(&page, "chart-sizes").contains(">2027-"),
            "dates on the time axis"
        );
        assert_eq!(page.matches("<tr><td class=\"mono\"").count(), 400);
    }

    #[test]
    fn text_from_the_repository_is_escaped_everywhere() {
        let (id, mut s) = snapshot(1, 1, 2, 3, DAY0 + 100);
        s.hostname = "<script>alert('host')</script>".into();
        s.tags = vec!["\"><img src=x onerror=alert(1)>".into(), "a&b".into()];
        s.postgres.as_mut().unwrap().cluster_name = Some("<i>main</i>".into());
        let mut o = overview(vec![(id, s)], &[]);
        o.location = "/backup/<b>repo</b>".into();
        let page = render(&o, DAY0);
        assert_self_contained(&page);
        assert!(page.contains("&lt;script&gt;alert(&#39;host&#39;)&lt;/script&gt;"));
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;, a&amp;b"));
        assert!(page.contains("/backup/&lt;b&gt;repo&lt;/b&gt;"));
        assert!(!page.contains("<b>repo"));
        // The cluster's name: in the legend, the table, the WAL lines and the row label.
        assert!(!page.contains("<i>main"));
        assert!(
            page.matches("&lt;i&gt;main&lt;/i&gt; (7300000000000000001)")
                .count()
                >= 4
        );
        assert!(chart(&page, "chart-windows").contains("&lt;i&gt;main&lt;/i&gt; TL 1</text>"));
    }
}
