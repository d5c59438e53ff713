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
    own || pgs[first_anchor..].iter().any(|(_, pg)| {
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
    })
}

/// The timeline and segment number of a segment, `.partial` or backup history file in the
/// cluster's segment size; None for history files (always kept) and names that are not valid
/// for that size (kept: nothing here can place them).
fn segment_position(entry: &WalEntry, segment_size: u64) -> Option<(u32, u64)> {
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
