//! `pgcairn metrics`: the repository's state in Prometheus text format, for node_exporter's
//! textfile collector (or any scraper of that format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::GlobalOptions;
use super::cluster_arg::{ClusterArg, Selection};
use super::output::write_atomically;
use crate::archive::window::ClusterWal;
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::{PostgresBackup, Snapshot};
use crate::repo::walcat::WalEntry;
use crate::report::data::Space;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pgcairn metrics
  pgcairn metrics --output /var/lib/node_exporter/textfile/pgcairn.prom

With --output the file is replaced atomically (written beside it, then renamed), as the
textfile collector requires. A run that cannot read the repository still writes the file,
with pgcairn_up 0 and pgcairn_error_exit_code, then exits with that code: alert on
pgcairn_up == 0 or on the file's age (node_textfile_mtime_seconds).

Alert examples: pgcairn_last_backup_age_seconds > 90000 (no backup for a day);
pgcairn_archive_lag_seconds > 900 (nothing archived for 15 minutes on a busy cluster);
pgcairn_recoverable_latest_age_seconds > 900 (the newest point a restore reaches is old).
Every metric is described in docs/monitoring.md.")]
pub struct MetricsArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,

    /// Write the metrics to this file (atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(global: &GlobalOptions, args: &MetricsArgs) -> Result<()> {
    let now = now_ns();
    let (text, outcome) = match exposition(global, args, now) {
        Ok(text) => (text, Ok(())),
        Err(e) => {
            let mut text = Exposition::default();
            text.gauge("pgcairn_up", UP_HELP, &[], 0.0);
            text.gauge(
                "pgcairn_error_exit_code",
                "The exit code of the failed run (see pgcairn --help).",
                &[],
                f64::from(e.kind().exit_code()),
            );
            text.gauge(
                "pgcairn_metrics_timestamp_seconds",
                GENERATED_HELP,
                &[],
                secs(now),
            );
            (text.text(), Err(e))
        }
    };
    match &args.output {
        Some(path) => write_atomically(path, text.as_bytes())?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| Error::local(format!("writing metrics to stdout: {e}")))?,
    }
    outcome
}

const UP_HELP: &str = "Whether pgcairn read the repository (1) or failed (0).";
const GENERATED_HELP: &str = "When these metrics were computed, seconds since the Unix epoch.";

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn exposition(global: &GlobalOptions, args: &MetricsArgs, now: i64) -> Result<String> {
    let repo = global.open_indexed()?;
    let Selection {
        catalogue,
        all: snapshots,
        selected,
        clusters: wal,
    } = args.cluster.read(&repo)?;
    let totals = Space::measure(&repo, &snapshots)?;

    let mut out = Exposition::default();
    out.gauge("pgcairn_up", UP_HELP, &[], 1.0);
    out.gauge(
        "pgcairn_metrics_timestamp_seconds",
        GENERATED_HELP,
        &[],
        secs(now),
    );
    repository_metrics(&mut out, &totals, snapshots.len());
    let names = cluster_names(&selected);
    for cluster in &wal {
        let sysid = cluster.system_identifier.to_string();
        let name = names
            .get(&cluster.system_identifier)
            .cloned()
            .unwrap_or_default();
        let labels = [
            ("cluster", name.as_str()),
            ("system_identifier", sysid.as_str()),
        ];
        let backups: Vec<&(SnapshotId, Snapshot)> = selected
            .iter()
            .filter(|(_, s)| {
                s.postgres
                    .as_ref()
                    .is_some_and(|pg| pg.system_identifier == cluster.system_identifier)
            })
            .collect();
        backup_metrics(&mut out, &labels, &backups, cluster, now);
        let entries: Vec<&WalEntry> = catalogue
            .iter()
            .filter(|e| e.system_identifier == cluster.system_identifier)
            .collect();
        archive_metrics(&mut out, &labels, &entries, cluster, now);
    }
    Ok(out.text())
}

fn repository_metrics(out: &mut Exposition, totals: &Space, snapshots: usize) {
    out.gauge(
        "pgcairn_repository_snapshots",
        "Snapshots in the repository.",
        &[],
        snapshots as f64,
    );
    out.gauge(
        "pgcairn_repository_packs",
        "Pack files in the repository.",
        &[],
        totals.packs as f64,
    );
    out.gauge(
        "pgcairn_repository_size_bytes",
        "Bytes of all pack files on storage: what the repository costs.",
        &[],
        totals.pack_bytes as f64,
    );
    out.gauge(
        "pgcairn_repository_logical_bytes",
        "Bytes all snapshots would take as plain copies.",
        &[],
        totals.logical as f64,
    );
    out.gauge(
        "pgcairn_repository_unique_bytes",
        "Bytes of distinct data chunks, before compression.",
        &[],
        totals.data.raw_bytes as f64,
    );
    out.gauge(
        "pgcairn_repository_dedup_ratio",
        "Logical bytes over unique bytes.",
        &[],
        totals.dedup_ratio(),
    );
    out.gauge(
        "pgcairn_repository_compression_ratio",
        "Unique bytes over their stored (compressed, encrypted) size.",
        &[],
        totals.compression_ratio(),
    );
}

/// The name each cluster was last backed up under.
fn cluster_names(snapshots: &[(SnapshotId, Snapshot)]) -> BTreeMap<u64, String> {
    let mut names = BTreeMap::new();
    let mut newest: Vec<&(SnapshotId, Snapshot)> = snapshots.iter().collect();
    newest.sort_by_key(|(_, s)| s.started_ns);
    for (_, s) in newest {
        if let Some(PostgresBackup {
            system_identifier,
            cluster_name: Some(name),
            ..
        }) = &s.postgres
        {
            names.insert(*system_identifier, name.clone());
        }
    }
    names
}

fn backup_metrics(
    out: &mut Exposition,
    labels: &[(&str, &str)],
    backups: &[&(SnapshotId, Snapshot)],
    cluster: &ClusterWal,
    now: i64,
) {
    out.gauge(
        "pgcairn_snapshots",
        "Snapshots of the cluster.",
        labels,
        backups.len() as f64,
    );
    let Some((_, last)) = backups.iter().max_by_key(|(_, s)| s.finished_ns) else {
        return;
    };
    out.gauge(
        "pgcairn_last_backup_timestamp_seconds",
        "When the newest backup finished.",
        labels,
        secs(last.finished_ns),
    );
    out.gauge(
        "pgcairn_last_backup_age_seconds",
        "Seconds since the newest backup finished.",
        labels,
        secs(now - last.finished_ns),
    );
    out.gauge(
        "pgcairn_last_backup_duration_seconds",
        "How long the newest backup took.",
        labels,
        secs(last.finished_ns - last.started_ns),
    );
    out.gauge(
        "pgcairn_last_backup_logical_bytes",
        "Bytes of file content in the newest backup.",
        labels,
        last.summary.logical_bytes as f64,
    );
    out.gauge(
        "pgcairn_last_backup_added_bytes",
        "Bytes the newest backup added to the repository (after dedup and compression).",
        labels,
        last.summary.new_stored_bytes as f64,
    );
    out.gauge(
        "pgcairn_last_backup_restorable",
        "1 when the newest backup lies in a recoverable window: the WAL it needs is all there.",
        labels,
        if in_a_window(cluster, last) { 1.0 } else { 0.0 },
    );
}

/// Whether a recoverable window on the backup's timeline holds its consistency point.
fn in_a_window(cluster: &ClusterWal, backup: &Snapshot) -> bool {
    let Some(pg) = &backup.postgres else {
        return false;
    };
    cluster
        .timelines
        .iter()
        .filter(|t| t.timeline == pg.timeline)
        .flat_map(|t| &t.windows)
        .any(|w| (w.earliest.lsn.0..=w.latest.lsn.0).contains(&pg.stop_lsn))
}

fn archive_metrics(
    out: &mut Exposition,
    labels: &[(&str, &str)],
    entries: &[&WalEntry],
    cluster: &ClusterWal,
    now: i64,
) {
    out.gauge(
        "pgcairn_archive_files",
        "WAL files (segments, partial segments, history files) archived for the cluster.",
        labels,
        entries.len() as f64,
    );
    if let Some(newest) = entries.iter().map(|e| e.archived_ns).max() {
        out.gauge(
            "pgcairn_archive_last_archived_timestamp_seconds",
            "When the newest WAL file was archived.",
            labels,
            secs(newest),
        );
        out.gauge(
            "pgcairn_archive_lag_seconds",
            "Seconds since the newest WAL file was archived.",
            labels,
            secs(now - newest),
        );
    }
    // The newest timeline is where the cluster writes now; older ones are history.
    let Some(current) = cluster.timelines.iter().max_by_key(|t| t.timeline) else {
        return;
    };
    let timeline = current.timeline.to_string();
    let mut labels = labels.to_vec();
    labels.push(("timeline", &timeline));
    out.gauge(
        "pgcairn_archive_gaps",
        "Stretches of missing WAL segments on the cluster's newest timeline.",
        &labels,
        current.gaps.len() as f64,
    );
    let Some(window) = current.windows.last() else {
        out.gauge(
            "pgcairn_recoverable",
            "1 when some point of the newest timeline can be recovered to.",
            &labels,
            0.0,
        );
        return;
    };
    out.gauge(
        "pgcairn_recoverable",
        "1 when some point of the newest timeline can be recovered to.",
        &labels,
        1.0,
    );
    let (start, end) = (window.earliest.time_us * 1000, window.latest.time_us * 1000);
    out.gauge(
        "pgcairn_recoverable_window_start_timestamp_seconds",
        "The earliest time the newest recoverable window reaches.",
        &labels,
        secs(start),
    );
    out.gauge(
        "pgcairn_recoverable_window_end_timestamp_seconds",
        "The latest time the newest recoverable window reaches (last commit found, or when its \
         last segment was archived).",
        &labels,
        secs(end),
    );
    out.gauge(
        "pgcairn_recoverable_window_seconds",
        "Length of the newest recoverable window.",
        &labels,
        secs(end - start),
    );
    out.gauge(
        "pgcairn_recoverable_latest_age_seconds",
        "Seconds between the latest recoverable time and now: the data a restore now would lose.",
        &labels,
        secs(now - end),
    );
}

/// Prometheus text format: each metric's HELP and TYPE once, then all its samples together
/// (the format wants a family's lines as one group, also when clusters interleave them).
#[derive(Default)]
struct Exposition {
    /// Metric families in the order first met: name, HELP line text, sample lines.
    families: Vec<(String, String, Vec<String>)>,
}

impl Exposition {
    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let index = match self.families.iter().position(|(n, _, _)| n == name) {
            Some(index) => index,
            None => {
                let help = help.replace('\\', "\\\\");
                self.families.push((name.to_owned(), help, Vec::new()));
                self.families.len() - 1
            }
        };
        let mut sample = name.to_owned();
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(sample, "{{{}}}", pairs.join(","));
        }
        let _ = write!(sample, " {}", number(value));
        self.families[index].2.push(sample);
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for (name, help, samples) in &self.families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for sample in samples {
                let _ = writeln!(out, "{sample}");
            }
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Integers without a fraction, others as Rust prints them (which Prometheus parses).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_type_come_once_samples_group_and_labels_are_escaped() {
        let mut out = Exposition::default();
        out.gauge("m", "a metric", &[("cluster", "a\"b\\c\nd")], 1.0);
        out.gauge("n", "another", &[], 3.0);
        out.gauge("m", "a metric", &[("cluster", "x")], 2.5);
        assert_eq!(
            out.text(),
            "# HELP m a metric\n# TYPE m gauge\nm{cluster=\"a\\\"b\\\\c\\nd\"} 1\nm{cluster=\"x\"} 2.5\n\
             # HELP n another\n# TYPE n gauge\nn 3\n"
        );
    }

    #[test]
    fn numbers_read_as_prometheus_floats() {
        assert_eq!(number(1_790_000_000.0), "1790000000");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1_790_000_000.123), "1790000000.123");
    }
}
