//! Which archived WAL prune expires. Per cluster, with the snapshots the policy keeps:
//!
//! - every kept snapshot keeps its own start..stop segments (its consistency WAL);
//! - *anchors* keep everything after them: by default every kept snapshot is an anchor, so
//!   each can be rolled forward to the end of the archive; with `--keep-wal-within D` only the
//!   kept snapshots from the newest one consistent at or before `now − D` onward are anchors,
//!   so any time in the last D stays reachable and older snapshots keep their consistency WAL;
//! - a segment after an anchor is kept on the anchor's timeline and on every timeline that
//!   branched from it after the anchor's start (as recovery follows history files); a
//!   timeline whose history file is missing is kept whole, since its ancestry is unknown;
//! - history files are always kept (a few bytes each, and recovery needs every one on the way
//!   to its target timeline).
//!
//! A cluster with no kept snapshot is left alone: its WAL may belong to a backup in progress,
//! and nothing here can tell what it is for.

use std::collections::{BTreeSet, HashMap};

use crate::archive::window::Histories;
use crate::pg::history::is_on_history;
use crate::pg::wal::{Lsn, WalFileName, parse_wal_file_name, segment_of};
use crate::repo::snapshot::{PostgresBackup, Snapshot};
use crate::repo::walcat::WalEntry;

/// The entries of `catalogue` to expire. `kept` are the snapshots the policy keeps (all
/// clusters); `cutoff_ns` is `now − D` for `--keep-wal-within D`.
pub fn expire<'a>(
    kept: &[&Snapshot],
    catalogue: &'a [WalEntry],
    histories: &Histories,
    cutoff_ns: Option<i64>,
) -> Vec<&'a WalEntry> {
    let mut by_cluster: HashMap<u64, Vec<&Snapshot>> = HashMap::new();
    for snapshot in kept {
        if let Some(pg) = &snapshot.postgres {
            by_cluster
                .entry(pg.system_identifier)
                .or_default()
                .push(snapshot);
        }
    }
    catalogue
        .iter()
        .filter(|entry| match by_cluster.get(&entry.system_identifier) {
            Some(snapshots) => !needed(entry, snapshots, histories, cutoff_ns),
            None => false,
        })
        .collect()
}

/// Whether some kept snapshot of the entry's cluster needs it.
fn needed(
    entry: &WalEntry,
    snapshots: &[&Snapshot],
    histories: &Histories,
    cutoff_ns: Option<i64>,
) -> bool {
    let mut pgs: Vec<(&Snapshot, &PostgresBackup)> = snapshots
        .iter()
        .filter_map(|s| s.postgres.as_ref().map(|pg| (*s, pg)))
        .collect();
    pgs.sort_by_key(|(s, _)| s.finished_ns);
    let Some(&(_, newest)) = pgs.last() else {
        return true;
    };
    let segment_size = newest.wal_segment_size;
    let Some((timeline, segno)) = segment_position(entry, segment_size) else {
        return true;
    };
    let first_anchor = match cutoff_ns {
        None => 0,
        Some(cutoff) => pgs
            .iter()
            .rposition(|(s, _)| s.finished_ns <= cutoff)
            .unwrap_or(0),
    };
    let own = pgs.iter().any(|(_, pg)| {
        let start = segment_of(Lsn(pg.start_lsn), pg.wal_segment_size);
        let stop = segment_of(Lsn(pg.stop_lsn.saturating_sub(1)), pg.wal_segment_size);
        timeline == pg.timeline && (start..=stop).contains(&segno)
    });
    own || pgs[first_anchor..]
        .iter()
        .any(|(_, pg)| rolls_forward_through(pg, timeline, segno, histories))
}

/// Whether recovery from the snapshot, rolled forward past its consistency point, may read
/// segment `segno` of `timeline`: at or after the snapshot's start segment, on its timeline or
/// on a timeline that branched from it after the snapshot's start (as recovery follows history
/// files). A timeline whose history file is missing counts, since its ancestry is unknown.
pub fn rolls_forward_through(
    pg: &PostgresBackup,
    timeline: u32,
    segno: u64,
    histories: &Histories,
) -> bool {
    let start = segment_of(Lsn(pg.start_lsn), pg.wal_segment_size);
    if segno < start {
        return false;
    }
    if timeline == pg.timeline {
        return true;
    }
    match histories.get(&(pg.system_identifier, timeline)) {
        Some(history) => is_on_history(history, timeline, pg.timeline, Lsn(pg.start_lsn)),
        None => true,
    }
}

/// The timeline and segment number of a segment, `.partial` or backup history file in the
/// cluster's segment size; None for history files (always kept) and names that are not valid
/// for that size (kept: nothing here can place them).
pub fn segment_position(entry: &WalEntry, segment_size: u64) -> Option<(u32, u64)> {
    match parse_wal_file_name(&entry.name, segment_size)? {
        WalFileName::Segment { timeline, segno }
        | WalFileName::Partial { timeline, segno }
        | WalFileName::BackupHistory {
            timeline, segno, ..
        } => Some((timeline, segno)),
        WalFileName::History { .. } => None,
    }
}

/// The clusters of `catalogue` that have no kept snapshot (their WAL is left alone).
pub fn clusters_without_snapshots(kept: &[&Snapshot], catalogue: &[WalEntry]) -> BTreeSet<u64> {
    let with: BTreeSet<u64> = kept
        .iter()
        .filter_map(|s| s.postgres.as_ref().map(|pg| pg.system_identifier))
        .collect();
    catalogue
        .iter()
        .map(|e| e.system_identifier)
        .filter(|id| !with.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::window::tests::{SEG, SYSID, entry, segment, snapshot};
    use crate::pg::history::parse_history;

    /// Segments 1..=30 of timeline 1, 12..=30 of timeline 2 (branched in segment 12), 6..=9
    /// of timeline 3 (branched from timeline 1 in segment 6), the two history files, and a
    /// segment of a cluster with no snapshot.
    fn catalogue() -> Vec<WalEntry> {
        let mut out: Vec<WalEntry> = (1..=30).map(|s| segment(1, s, None)).collect();
        out.extend((12..=30).map(|s| segment(2, s, None)));
        out.extend((6..=9).map(|s| segment(3, s, None)));
        out.push(entry("00000002.history", 40, None));
        out.push(entry("00000003.history", 40, None));
        let mut stranger = segment(1, 1, None);
        stranger.system_identifier = SYSID + 1;
        out.push(stranger);
        out
    }

    fn histories() -> Histories {
        let mut h = Histories::new();
        let at = |seg: u64| format!("0/{:X}", seg * SEG + 0x100);
        h.insert(
            (SYSID, 2),
            parse_history(&format!("1\t{}\tpromoted\n", at(12))).unwrap(),
        );
        h.insert(
            (SYSID, 3),
            parse_history(&format!("1\t{}\tpromoted\n", at(6))).unwrap(),
        );
        h
    }

    /// The expired names, in catalogue order, as `tli:segno` (or the file name).
    fn expired(kept: &[(u64, u64, i64)], cutoff_s: Option<i64>) -> Vec<String> {
        let snapshots: Vec<Snapshot> = kept
            .iter()
            .enumerate()
            .map(|(i, &(start, stop, finished))| snapshot(i as u8, 1, start, stop, finished).1)
            .collect();
        let refs: Vec<&Snapshot> = snapshots.iter().collect();
        let catalogue = catalogue();
        expire(
            &refs,
            &catalogue,
            &histories(),
            cutoff_s.map(|s| s * 1_000_000_000),
        )
        .into_iter()
        .map(|e| match parse_wal_file_name(&e.name, SEG) {
            Some(WalFileName::Segment { timeline, segno }) => format!("{timeline}:{segno}"),
            _ => e.name.clone(),
        })
        .collect()
    }

    fn names(list: &[(u32, std::ops::RangeInclusive<u64>)]) -> Vec<String> {
        list.iter()
            .flat_map(|(tli, r)| r.clone().map(move |s| format!("{tli}:{s}")))
            .collect()
    }

    #[test]
    fn by_default_everything_from_the_oldest_kept_snapshot_on_is_kept() {
        // Kept: segments 3–4, 10–11 and 20 of timeline 1.
        let kept = [(3, 4, 1000), (10, 11, 2000), (20, 20, 3000)];
        // Before segment 3 goes; timeline 3 branched (segment 6) after the oldest snapshot's
        // start, so it stays, as does timeline 2; history files stay; the other cluster,
        // with no snapshot, is not touched.
        assert_eq!(expired(&kept, None), names(&[(1, 1..=2)]));
    }

    #[test]
    fn keep_wal_within_keeps_older_snapshots_consistent_and_the_window_continuous() {
        let kept = [(3, 4, 1000), (10, 11, 2000), (20, 20, 3000)];
        // The cutoff falls after the second snapshot: continuous WAL from it (segment 10);
        // the first keeps only its own segments 3–4. Timeline 3 left timeline 1 before
        // segment 10, so no kept window reaches it.
        let mut want = names(&[(1, 1..=2), (1, 5..=9), (3, 6..=9)]);
        want.sort();
        let mut got = expired(&kept, Some(2500));
        got.sort();
        assert_eq!(got, want);
        // A cutoff before every snapshot: as the default.
        assert_eq!(expired(&kept, Some(10)), names(&[(1, 1..=2)]));
        // A cutoff after the newest: only the newest anchors (timeline 1 from segment 20), the
        // others keep their own. Timeline 2 left timeline 1 at segment 12, before it: its
        // WAL leads nowhere a kept snapshot can go.
        let mut want = names(&[
            (1, 1..=2),
            (1, 5..=9),
            (1, 12..=19),
            (2, 12..=30),
            (3, 6..=9),
        ]);
        want.sort();
        let mut got = expired(&kept, Some(9999));
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn after_a_snapshot_a_timeline_without_its_history_file_is_kept() {
        let snapshots = [snapshot(0, 1, 20, 20, 3000).1];
        let refs: Vec<&Snapshot> = snapshots.iter().collect();
        let catalogue = catalogue();
        // With history files, timeline 2 (branched at 12) is expired after segment 20 too.
        let known = expire(&refs, &catalogue, &histories(), None);
        assert!(known.iter().any(|e| e.name == "000000020000000000000014"));
        // Without, its ancestry is unknown: what lies after the snapshot is kept.
        let unknown = expire(&refs, &catalogue, &Histories::new(), None);
        assert!(
            unknown
                .iter()
                .all(|e| !e.name.starts_with("00000002")
                    || e.name.as_str() < "000000020000000000000014"),
            "WAL of a timeline of unknown ancestry after the snapshot was expired"
        );
    }
}
