//! How the repository is described in words, the same by `info`, `snapshots` and the report:
//! a snapshot's status, a recoverable point, a cluster's archived WAL and windows.

use crate::archive::window::{ClusterWal, Point};
use crate::repo::snapshot::PostgresBackup;
use crate::restore::select::format_time_us;

/// A snapshot's status as `snapshots` shows it: `ok` when restorable, else the WAL it misses
/// (neither in it nor archived); `-` for a snapshot of no PostgreSQL cluster.
pub fn status(pg: Option<&PostgresBackup>, missing: &[String]) -> String {
    match (pg, missing) {
        (None, _) => "-".into(),
        (Some(_), []) => "ok".into(),
        (Some(_), [first]) => format!("missing WAL {first}"),
        (Some(_), [first, rest @ ..]) => format!("missing WAL {first} (+{} more)", rest.len()),
    }
}

/// `0/5000100 at 2026-11-21 12:00:00 UTC` (with `~` before an approximate time).
pub fn point_text(point: &Point) -> String {
    format!(
        "{} at {}{}",
        point.lsn,
        if point.approximate { "~" } else { "" },
        format_time_us(point.time_us)
    )
}

/// The lines `info`, `snapshots` and the report print for a cluster's WAL: per timeline, the archived
/// segments, the gaps between them and the recoverable windows.
pub fn wal_lines(cluster: &ClusterWal) -> Vec<String> {
    let mut lines = Vec::new();
    for tl in &cluster.timelines {
        let archived = match (&tl.first_segment, &tl.last_segment) {
            (Some(a), Some(b)) => format!("{} segments archived, {a} .. {b}", tl.segments),
            _ => "no segments archived".to_string(),
        };
        lines.push(format!("  timeline {}: {archived}", tl.timeline));
        for gap in &tl.gaps {
            lines.push(format!(
                "    gap: {} .. {} ({} segments missing)",
                gap.first_missing, gap.last_missing, gap.segments
            ));
        }
        if tl.windows.is_empty() {
            lines.push(
                "    recoverable: nothing (no restorable snapshot on this timeline, or on an \
                 ancestor before it branched off, whose WAL reaches it)"
                    .into(),
            );
        }
        for w in &tl.windows {
            lines.push(format!(
                "    recoverable: {} .. {} (from snapshot {}, WAL to {})",
                point_text(&w.earliest),
                point_text(&w.latest),
                w.snapshot.short(),
                w.last_segment
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::window::tests::snapshot;

    #[test]
    fn status_names_the_first_missing_segment_and_counts_the_rest() {
        let (_, s) = snapshot(1, 1, 2, 3, 100);
        let pg = s.postgres.as_ref();
        assert_eq!(status(pg, &[]), "ok");
        assert_eq!(status(None, &[]), "-");
        let names = [
            "000000010000000000000002".to_string(),
            "000000010000000000000003".into(),
        ];
        assert_eq!(
            status(pg, &names[..1]),
            "missing WAL 000000010000000000000002"
        );
        assert_eq!(
            status(pg, &names),
            "missing WAL 000000010000000000000002 (+1 more)"
        );
    }
}
