//! What a copy takes: which snapshots (and which of them the target already has), and which
//! archived WAL files they need. Pure functions over snapshots and catalogue entries.
//!
//! Snapshot ids are content hashes under each repository's keys, so a snapshot has another id
//! in the target. A copied snapshot is recognised by what identifies the backup itself, which a
//! copy preserves: when it started and finished (to the nanosecond), the host, and for a
//! PostgreSQL backup the cluster, timeline and start and stop LSNs. Two different backups never
//! share all of these; nothing new is stored on disk to tell copies apart.

use std::collections::{BTreeSet, HashMap};

use crate::archive::window::Histories;
use crate::pg::wal::{WalFileName, parse_wal_file_name};
use crate::prune::wal::{rolls_forward_through, segment_position};
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::Snapshot;
use crate::repo::walcat::WalEntry;

/// What identifies a backup across repositories.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupKey {
    started_ns: i64,
    finished_ns: i64,
    hostname: String,
    /// System identifier, timeline, start and stop LSN.
    postgres: Option<(u64, u32, u64, u64)>,
}

impl BackupKey {
    pub fn of(snapshot: &Snapshot) -> BackupKey {
        BackupKey {
            started_ns: snapshot.started_ns,
            finished_ns: snapshot.finished_ns,
            hostname: snapshot.hostname.clone(),
            postgres: snapshot
                .postgres
                .as_ref()
                .map(|pg| (pg.system_identifier, pg.timeline, pg.start_lsn, pg.stop_lsn)),
        }
    }
}

/// For each of `wanted`, the id of the same backup among `present` (the target's snapshots).
pub fn already_present(
    wanted: &[(SnapshotId, Snapshot)],
    present: &[(SnapshotId, Snapshot)],
) -> Vec<Option<SnapshotId>> {
    let by_key: HashMap<BackupKey, SnapshotId> = present
        .iter()
        .map(|(id, s)| (BackupKey::of(s), *id))
        .collect();
    wanted
        .iter()
        .map(|(_, s)| by_key.get(&BackupKey::of(s)).copied())
        .collect()
}

/// The catalogue entries that the snapshots need for point-in-time recovery, in catalogue
/// order: of each snapshot's cluster, every timeline history file and backup history file, and
/// every segment (or `.partial`) from the snapshot's start segment onward on its timeline and on
/// the timelines that branched from it after its start (as prune keeps them, see
/// [`rolls_forward_through`]).
pub fn wal_needed<'a>(
    snapshots: &[&Snapshot],
    catalogue: &'a [WalEntry],
    histories: &Histories,
) -> Vec<&'a WalEntry> {
    let pgs: Vec<_> = snapshots
        .iter()
        .filter_map(|s| s.postgres.as_ref())
        .collect();
    let clusters: BTreeSet<u64> = pgs.iter().map(|pg| pg.system_identifier).collect();
    catalogue
        .iter()
        .filter(|entry| clusters.contains(&entry.system_identifier))
        .filter(|entry| {
            pgs.iter()
                .filter(|pg| pg.system_identifier == entry.system_identifier)
                .any(|pg| {
                    match parse_wal_file_name(&entry.name, pg.wal_segment_size) {
                        Some(WalFileName::History { .. } | WalFileName::BackupHistory { .. }) => {
                            return true;
                        }
                        None => return false,
                        _ => {}
                    }
                    segment_position(entry, pg.wal_segment_size).is_some_and(|(timeline, segno)| {
                        rolls_forward_through(pg, timeline, segno, histories)
                    })
                })
        })
        .collect()
}

/// Whether an entry the target already holds is the same file as the source's.
pub fn same_file(a: &WalEntry, b: &WalEntry) -> bool {
    a.checksum == b.checksum && a.size == b.size
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::window::tests::{SEG, SYSID, entry, segment, snapshot};
    use crate::pg::history::parse_history;

    #[test]
    fn a_copied_snapshot_is_recognised_by_its_backup_not_its_id() {
        let (id, original) = snapshot(1, 1, 3, 4, 1000);
        // The copy: another id, other tree ids, the same backup.
        let mut copy = original.clone();
        copy.root = vec![crate::repo::id::BlobId([9; 32])];
        copy.parent = None;
        let (other_id, other) = snapshot(2, 1, 5, 6, 2000);
        let present = vec![(SnapshotId([7; 32]), copy.clone())];
        assert_eq!(
            already_present(&[(id, original.clone()), (other_id, other)], &present),
            vec![Some(SnapshotId([7; 32])), None]
        );
        // A backup that differs in any identifying field is another backup.
        let mut later = original.clone();
        later.finished_ns += 1;
        let mut elsewhere = original.clone();
        elsewhere.hostname = "standby".into();
        let mut other_lsn = original.clone();
        other_lsn.postgres.as_mut().unwrap().stop_lsn += 1;
        for s in [later, elsewhere, other_lsn] {
            assert_eq!(already_present(&[(id, s)], &present), vec![None]);
        }
    }

    #[test]
    fn wal_from_the_snapshot_on_with_every_history_file() {
        // Timeline 1 segments 1..=10; timeline 2 branched from 1 in segment 6; timeline 3
        // branched from 1 in segment 2, before the snapshot; another cluster's segment.
        let mut catalogue: Vec<WalEntry> = (1..=10).map(|s| segment(1, s, None)).collect();
        catalogue.extend((6..=8).map(|s| segment(2, s, None)));
        catalogue.extend((2..=8).map(|s| segment(3, s, None)));
        catalogue.push(entry("00000002.history", 40, None));
        catalogue.push(entry("00000003.history", 40, None));
        catalogue.push(entry("000000010000000000000001.00000028.backup", 300, None));
        let mut stranger = segment(1, 5, None);
        stranger.system_identifier = SYSID + 1;
        catalogue.push(stranger);
        let mut histories = Histories::new();
        let at = |seg: u64| format!("1\t0/{:X}\tpromoted\n", seg * SEG + 0x100);
        histories.insert((SYSID, 2), parse_history(&at(6)).unwrap());
        histories.insert((SYSID, 3), parse_history(&at(2)).unwrap());

        let (_, s) = snapshot(1, 1, 4, 4, 1000);
        let names: Vec<&str> = wal_needed(&[&s], &catalogue, &histories)
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let mut want: Vec<String> = (4..=10)
            .map(|s| crate::pg::wal::segment_name(1, s, SEG))
            .collect();
        want.extend((6..=8).map(|s| crate::pg::wal::segment_name(2, s, SEG)));
        want.extend([
            "00000002.history".to_string(),
            "00000003.history".to_string(),
            "000000010000000000000001.00000028.backup".to_string(),
        ]);
        assert_eq!(names, want);
        // No snapshot: nothing (the WAL of a cluster is copied for its snapshots only).
        assert!(wal_needed(&[], &catalogue, &histories).is_empty());
    }
}
