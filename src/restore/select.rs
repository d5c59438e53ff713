//! Which snapshot a restore starts from, and which WAL recovery then replays: pure functions
//! over the snapshots and the WAL catalogue, so that `restore --preview` and the restore itself
//! make the same choice and tests can check it without a server.

use crate::archive::window::WalIndex;
use crate::clock::format_utc;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::wal::{self, Lsn};
use crate::pg::walscan::XidRange;
use crate::repo::cluster::{ClusterSelector, Clusters};
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::{PostgresBackup, Snapshot};

/// What the choice of snapshot compares consistency points with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aim {
    /// A time target, microseconds since the Unix epoch: the snapshot must have finished by then.
    Time(i64),
    /// An LSN target: the snapshot must be consistent (its stop LSN) at or before it.
    Lsn(Lsn),
    /// A target whose position is not known beforehand (xid, restore point), or none: the
    /// newest snapshot.
    Newest,
}

/// A snapshot of a PostgreSQL cluster.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub id: SnapshotId,
    pub snapshot: &'a Snapshot,
    pub pg: &'a PostgresBackup,
}

/// `2026-11-21 12:00:00 UTC` for microseconds since the epoch.
pub fn format_time_us(us: i64) -> String {
    format!("{} UTC", format_utc(us.div_euclid(1_000_000)))
}

/// When a snapshot is consistent: its stop LSN, and the time it finished (microseconds).
pub fn consistency_point(candidate: &Candidate) -> (Lsn, i64) {
    (
        Lsn(candidate.pg.stop_lsn),
        candidate.snapshot.finished_ns / 1000,
    )
}

fn describe_point(candidate: &Candidate) -> String {
    let (lsn, us) = consistency_point(candidate);
    format!("LSN {lsn}, finished {}", format_time_us(us))
}

/// Whether `aim` lies at or after the snapshot's consistency point.
fn is_after(candidate: &Candidate, aim: Aim) -> bool {
    let (lsn, us) = consistency_point(candidate);
    match aim {
        Aim::Time(t) => us <= t,
        Aim::Lsn(l) => lsn <= l,
        Aim::Newest => true,
    }
}

fn describe_aim(aim: Aim) -> String {
    match aim {
        Aim::Time(t) => format!("time {}", format_time_us(t)),
        Aim::Lsn(l) => format!("LSN {l}"),
        Aim::Newest => "target".to_string(),
    }
}

/// The snapshots of PostgreSQL clusters, oldest first as given.
pub fn candidates(snapshots: &[(SnapshotId, Snapshot)]) -> Vec<Candidate<'_>> {
    snapshots
        .iter()
        .filter_map(|(id, snapshot)| {
            snapshot.postgres.as_ref().map(|pg| Candidate {
                id: *id,
                snapshot,
                pg,
            })
        })
        .collect()
}

/// The cluster a restore without SNAPSHOT is of: the one `selector` names (it must have
/// snapshots, and a name carried by several clusters is refused), else the only cluster the
/// repository holds.
pub fn cluster_to_restore(
    candidates: &[Candidate],
    selector: Option<&ClusterSelector>,
) -> Result<u64> {
    let backups = candidates.iter().map(|c| c.pg);
    if let Some(selector) = selector {
        return selector.resolve(backups);
    }
    let clusters = Clusters::of(backups);
    match clusters.names.keys().collect::<Vec<_>>().as_slice() {
        [] => Err(Error::usage("the repository has no snapshots yet")),
        [only] => Ok(**only),
        many => Err(Error::usage(format!(
            "the repository holds snapshots of {} clusters ({}); say which with --cluster \
             NAME|SYSTEM_ID, or name a SNAPSHOT",
            many.len(),
            clusters.describe()
        ))),
    }
}

/// Refuses a SNAPSHOT named together with a `--cluster` it is not of.
pub fn check_cluster(
    candidates: &[Candidate],
    selector: Option<&ClusterSelector>,
    chosen: &Candidate,
) -> Result<()> {
    let Some(selector) = selector else {
        return Ok(());
    };
    let sysid = chosen.pg.system_identifier;
    if selector
        .system_ids(candidates.iter().map(|c| c.pg))?
        .contains(&sysid)
    {
        return Ok(());
    }
    Err(Error::usage(format!(
        "snapshot {} is of cluster {}, not of --cluster {selector}",
        chosen.id.short(),
        Clusters::of([chosen.pg]).describe()
    )))
}

/// The newest snapshot of cluster `system_id` that is restorable, can recover into the target
/// timeline (`reaches`), and is consistent at or before `aim`.
pub fn choose<'a>(
    candidates: &[Candidate<'a>],
    system_id: u64,
    aim: Aim,
    archive: &WalIndex,
    reaches: &dyn Fn(&PostgresBackup) -> bool,
) -> Result<Candidate<'a>> {
    let of_cluster: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.pg.system_identifier == system_id)
        .collect();
    let restorable: Vec<&Candidate> = of_cluster
        .iter()
        .copied()
        .filter(|c| crate::archive::window::missing_wal(c.pg, archive).is_empty())
        .collect();
    if restorable.is_empty() {
        let newest = of_cluster.last().ok_or_else(|| {
            Error::usage(format!(
                "the repository has no snapshot of cluster {system_id}"
            ))
        })?;
        return Err(not_restorable(newest, archive));
    }
    let on_history: Vec<&Candidate> = restorable
        .iter()
        .copied()
        .filter(|c| reaches(c.pg))
        .collect();
    if on_history.is_empty() {
        return Err(Error::new(
            ErrorKind::Refused,
            "no restorable snapshot lies on the history of the target timeline (each was taken \
             on a timeline that had ended before it, or on another branch); give \
             --target-timeline current, or the timeline of a snapshot",
        ));
    }
    // Snapshots are ordered by start; the newest consistency point is what counts.
    let mut fitting: Vec<&Candidate> = on_history
        .iter()
        .copied()
        .filter(|c| is_after(c, aim))
        .collect();
    fitting.sort_by_key(|c| (c.snapshot.finished_ns, c.pg.stop_lsn));
    match fitting.last() {
        Some(c) => Ok(**c),
        None => {
            let oldest = on_history
                .iter()
                .min_by_key(|c| (c.snapshot.finished_ns, c.pg.stop_lsn))
                .expect("not empty");
            Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "the target {} is before every snapshot that could reach it: the oldest, {}, \
                     is consistent only at {}; recovery cannot stop before that",
                    describe_aim(aim),
                    oldest.id.short(),
                    describe_point(oldest)
                ),
            ))
        }
    }
}

/// The error for a snapshot whose WAL is not all in the repository.
pub fn not_restorable(candidate: &Candidate, archive: &WalIndex) -> Error {
    let missing = crate::archive::window::missing_wal(candidate.pg, archive);
    Error::new(
        ErrorKind::Refused,
        format!(
            "snapshot {} cannot reach consistency: WAL it needs is neither in the snapshot nor \
             in the archive: {}; archive it (archive-push) or choose another snapshot",
            candidate.id.short(),
            missing.join(", ")
        ),
    )
}

/// Checks a snapshot named on the command line: restorable, and not consistent after `aim`.
pub fn check_chosen(candidate: &Candidate, aim: Aim, archive: &WalIndex) -> Result<()> {
    if !crate::archive::window::missing_wal(candidate.pg, archive).is_empty() {
        return Err(not_restorable(candidate, archive));
    }
    if !is_after(candidate, aim) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "the target {} is before the consistency point of snapshot {} ({}): recovery \
                 from it cannot stop that early; restore an older snapshot (see `pgcairn \
                 snapshots`), or leave out SNAPSHOT and pgcairn picks one",
                describe_aim(aim),
                candidate.id.short(),
                describe_point(candidate)
            ),
        ));
    }
    Ok(())
}

/// Where the restore point `name` lies, by what the scans of cluster `system_id`'s archived
/// segments found: the newest LSN of a restore point of that name whose segment `on_path`
/// accepts (the segment's timeline and the point's LSN: whether recovery into the target
/// timeline reads that WAL from that timeline). None when no scan found one.
///
/// Recovery stops at the first restore point of the name it replays; with several of one name,
/// the newest is aimed at, so that a snapshot consistent before some occurrence is chosen.
pub fn restore_point_lsn(
    archive: &WalIndex,
    system_id: u64,
    name: &str,
    on_path: &dyn Fn(u32, Lsn) -> bool,
) -> Option<Lsn> {
    archive
        .of_cluster(system_id)
        .filter_map(|e| {
            let (timeline, _) = wal::parse_segment_name(&e.name, e.size)?;
            let summary = e.summary.as_ref()?;
            Some((timeline, summary))
        })
        .flat_map(|(timeline, summary)| {
            summary
                .restore_points
                .iter()
                .filter(move |p| p.name == name && on_path(timeline, Lsn(p.lsn)))
        })
        .map(|p| Lsn(p.lsn))
        .max()
}

/// The earliest point where transaction `xid` (its low 32 bits, as WAL records carry it) may
/// have committed: the start of the first archived segment on the path whose commit records
/// span it. A snapshot consistent there is consistent before the commit. `None` when no
/// segment's summary covers it (a prepared transaction, or WAL scanned by no summary).
pub fn xid_commit_lsn(
    archive: &WalIndex,
    system_id: u64,
    xid: u32,
    on_path: &dyn Fn(u32, Lsn) -> bool,
) -> Option<Lsn> {
    archive
        .of_cluster(system_id)
        .filter_map(|e| {
            let (timeline, segno) = wal::parse_segment_name(&e.name, e.size)?;
            let (low, high) = e.summary.as_ref()?.committed_xids?;
            let start = Lsn(segno * e.size);
            (XidRange { low, high }.contains(xid) && on_path(timeline, start)).then_some(start)
        })
        .min()
}

/// Where replay is expected to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEnd {
    /// At the snapshot's consistency point (`--target-immediate`).
    Consistency,
    /// In the segment holding this LSN.
    Lsn(Lsn),
    /// At the first commit after this time (microseconds).
    Time(i64),
    /// At the restore point of this name.
    RestorePoint(String),
    /// Where the WAL ends (no target, an xid target).
    EndOfArchive,
}

/// One segment of the replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSegment {
    pub name: String,
    /// Bytes of the archived copy; None when the archive lacks it.
    pub archived: Option<u64>,
    /// The snapshot carries it in its pg_wal.
    pub in_snapshot: bool,
}

/// The WAL recovery replays from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalPlan {
    pub segments: Vec<PlannedSegment>,
    /// Segments of the range that neither the archive nor the snapshot has: recovery stops at
    /// the first.
    pub missing: Vec<String>,
    /// Archived bytes of the range: what restore_command fetches.
    pub archived_bytes: u64,
    /// Whether the segment where the target lies is known; false: the range runs to the end
    /// of the contiguous WAL and the target was not found in it (or is not looked for).
    pub target_found: bool,
}

impl WalPlan {
    pub fn first(&self) -> Option<&str> {
        self.segments.first().map(|s| s.name.as_str())
    }

    pub fn last(&self) -> Option<&str> {
        self.segments.last().map(|s| s.name.as_str())
    }
}

/// The segments recovery from `pg` replays to reach `end`: from the snapshot's start segment to
/// the one where the target lies, or to the end of the contiguous WAL. `timeline_of` names the
/// timeline a segment number is read from (the target timeline's history decides).
pub fn wal_plan(
    pg: &PostgresBackup,
    end: &WalEnd,
    archive: &WalIndex,
    timeline_of: &dyn Fn(u64) -> u32,
) -> WalPlan {
    let size = pg.wal_segment_size;
    let start = wal::segment_of(Lsn(pg.start_lsn), size);
    let stop = wal::prev_segment_of(Lsn(pg.stop_lsn), size).max(start);
    let carried = |segno: u64, name: &str| {
        (start..=stop).contains(&segno)
            && timeline_of(segno) == pg.timeline
            && !pg.wal_missing.iter().any(|m| m == name)
    };
    let segment = |segno: u64| {
        let name = wal::segment_name(timeline_of(segno), segno, size);
        PlannedSegment {
            archived: archive.get(pg.system_identifier, &name).map(|e| e.size),
            in_snapshot: carried(segno, &name),
            name,
        }
    };
    // Whether the target lies in this segment, by what its scan found.
    let holds_target = |segno: u64| -> bool {
        let name = wal::segment_name(timeline_of(segno), segno, size);
        let summary = archive
            .get(pg.system_identifier, &name)
            .and_then(|e| e.summary.as_ref());
        match (end, summary) {
            (WalEnd::Time(t), Some(s)) => s.last_commit_us.is_some_and(|c| c > *t),
            (WalEnd::RestorePoint(n), Some(s)) => s.restore_points.iter().any(|p| &p.name == n),
            _ => false,
        }
    };
    let mut plan = WalPlan {
        segments: Vec::new(),
        missing: Vec::new(),
        archived_bytes: 0,
        target_found: false,
    };
    let known_last = match end {
        WalEnd::Consistency => Some(stop),
        WalEnd::Lsn(l) => Some(wal::segment_of(*l, size).max(stop)),
        _ => None,
    };
    let mut segno = start;
    loop {
        let s = segment(segno);
        let present = s.archived.is_some() || s.in_snapshot;
        match known_last {
            // A known end: the whole range is listed, missing segments too.
            Some(last) => {
                if !present {
                    plan.missing.push(s.name.clone());
                }
                plan.segments.push(s);
                if segno >= last {
                    plan.target_found = true;
                    break;
                }
            }
            // Otherwise: on while the WAL goes on; the snapshot's own range always counts.
            None => {
                if !present {
                    if segno <= stop {
                        plan.missing.push(s.name.clone());
                        plan.segments.push(s);
                        segno += 1;
                        continue;
                    }
                    break;
                }
                plan.segments.push(s);
                if segno >= stop && holds_target(segno) {
                    plan.target_found = true;
                    break;
                }
            }
        }
        segno += 1;
    }
    plan.archived_bytes = plan.segments.iter().filter_map(|s| s.archived).sum();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::window::tests::{SEG, SYSID, segment, snapshot};
    use crate::repo::walcat::{RestorePoint, WalEntry};

    fn lsn(segno: u64, offset: u64) -> Lsn {
        Lsn(segno * SEG + offset)
    }

    /// Three snapshots on timeline 1 (segments 2, 5, 8; finished at 100, 200, 300 s) and one on
    /// timeline 2 (segment 12, 400 s); a second cluster with one snapshot.
    fn repository() -> Vec<(SnapshotId, Snapshot)> {
        let mut other = snapshot(9, 1, 1, 1, 50);
        other.1.postgres.as_mut().unwrap().system_identifier = 42;
        vec![
            other,
            snapshot(1, 1, 2, 2, 100),
            snapshot(2, 1, 5, 5, 200),
            snapshot(3, 1, 8, 8, 300),
            snapshot(4, 2, 12, 12, 400),
        ]
    }

    #[test]
    fn chooses_the_newest_snapshot_consistent_before_the_target() {
        let snapshots = repository();
        let all = candidates(&snapshots);
        let catalogue: Vec<WalEntry> = Vec::new();
        let archive = WalIndex::new(&catalogue);
        let any = |_: &PostgresBackup| true;
        let timeline_1 = |pg: &PostgresBackup| pg.timeline == 1;
        let s = 1_000_000;
        // (aim, reaches timeline 2 too, expected snapshot or None for refused)
        let cases: [(Aim, bool, Option<u8>); 12] = [
            (Aim::Time(99 * s), true, None),
            (Aim::Time(100 * s), true, Some(1)),
            (Aim::Time(150 * s), true, Some(1)),
            (Aim::Time(250 * s), true, Some(2)),
            (Aim::Time(10_000 * s), true, Some(4)),
            (Aim::Time(10_000 * s), false, Some(3)),
            (Aim::Lsn(lsn(2, 0x100)), true, Some(1)),
            (Aim::Lsn(lsn(2, 0xFF)), true, None),
            (Aim::Lsn(lsn(6, 0)), true, Some(2)),
            (Aim::Lsn(lsn(100, 0)), false, Some(3)),
            (Aim::Newest, true, Some(4)),
            (Aim::Newest, false, Some(3)),
        ];
        for (aim, tl2, expected) in cases {
            let reaches: &dyn Fn(&PostgresBackup) -> bool = if tl2 { &any } else { &timeline_1 };
            let got = choose(&all, SYSID, aim, &archive, reaches);
            match expected {
                Some(n) => assert_eq!(got.unwrap().id.0[0], n, "{aim:?}"),
                None => {
                    let err = got.unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::Refused, "{aim:?}");
                    assert!(err.to_string().contains("01010101"), "{err}");
                }
            }
        }
    }

    #[test]
    fn snapshots_missing_wal_are_passed_over() {
        let mut snapshots = repository();
        let missing = wal::segment_name(2, 12, SEG);
        snapshots[4].1.postgres.as_mut().unwrap().wal_missing = vec![missing.clone()];
        let all = candidates(&snapshots);
        let empty: Vec<WalEntry> = Vec::new();
        let any = |_: &PostgresBackup| true;
        let got = choose(&all, SYSID, Aim::Newest, &WalIndex::new(&empty), &any).unwrap();
        assert_eq!(got.id.0[0], 3);
        let err = check_chosen(&all[4], Aim::Newest, &WalIndex::new(&empty)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused);
        assert!(err.to_string().contains(&missing), "{err}");
        // Once archived, it is the newest again.
        let archived = vec![segment(2, 12, None)];
        let got = choose(&all, SYSID, Aim::Newest, &WalIndex::new(&archived), &any).unwrap();
        assert_eq!(got.id.0[0], 4);
        // Only unrestorable snapshots: refused, naming the segment.
        let only = &all[4..];
        let err = choose(only, SYSID, Aim::Newest, &WalIndex::new(&empty), &any).unwrap_err();
        assert!(err.to_string().contains(&missing), "{err}");
    }

    #[test]
    fn restore_points_are_found_on_the_way_to_the_target_timeline() {
        let point = |tli: u32, segno: u64, name: &str, offset: u64| {
            let mut e = segment(tli, segno, Some(100));
            e.summary
                .as_mut()
                .unwrap()
                .restore_points
                .push(RestorePoint {
                    name: name.into(),
                    time_us: 0,
                    lsn: segno * SEG + offset,
                });
            e
        };
        // Timeline 2 forked from 1 at segment 6, offset 0x500: "p" on 1 before the fork, again
        // on 1 after it (that branch is not timeline 2's), and on 2; "q" twice on 1.
        let mut other = point(1, 4, "p", 0x10);
        other.system_identifier = 42;
        let catalogue = vec![
            point(1, 3, "p", 0x40),
            point(1, 6, "p", 0x600),
            point(2, 7, "p", 0x80),
            point(1, 2, "q", 0x40),
            point(1, 5, "q", 0x400),
            segment(1, 8, None),
            other,
        ];
        let archive = WalIndex::new(&catalogue);
        let fork = lsn(6, 0x500);
        let into_2 = |tli: u32, at: Lsn| tli == if at < fork { 1 } else { 2 };
        let into_1 = |tli: u32, _: Lsn| tli == 1;
        let anywhere = |_: u32, _: Lsn| true;
        type OnPath<'a> = &'a dyn Fn(u32, Lsn) -> bool;
        let cases: [(&str, OnPath, Option<Lsn>); 7] = [
            ("p", &into_2, Some(lsn(7, 0x80))),
            ("p", &into_1, Some(lsn(6, 0x600))),
            ("p", &anywhere, Some(lsn(7, 0x80))),
            ("q", &into_2, Some(lsn(5, 0x400))),
            (
                "q",
                &|tli, at| into_2(tli, at) && at < lsn(4, 0),
                Some(lsn(2, 0x40)),
            ),
            ("r", &anywhere, None),
            ("P", &anywhere, None),
        ];
        for (name, on_path, expected) in cases {
            assert_eq!(
                restore_point_lsn(&archive, SYSID, name, on_path),
                expected,
                "{name}"
            );
        }
        assert_eq!(
            restore_point_lsn(&archive, 42, "p", &anywhere),
            Some(lsn(4, 0x10))
        );
        // Aimed at, it picks the snapshot consistent before it (segments 2, 5, 8 on timeline 1).
        let snapshots = repository();
        let all = candidates(&snapshots);
        let aim = Aim::Lsn(restore_point_lsn(&archive, SYSID, "q", &into_1).unwrap());
        let got = choose(&all, SYSID, aim, &archive, &|pg| pg.timeline == 1).unwrap();
        assert_eq!(got.id.0[0], 2);
    }

    #[test]
    fn an_xid_target_aims_at_the_first_segment_whose_commits_span_it() {
        let span = |tli: u32, segno: u64, low: u32, high: u32| {
            let mut e = segment(tli, segno, Some(100));
            e.summary.as_mut().unwrap().committed_xids = Some((low, high));
            e
        };
        // Commit order is not xid order: spans overlap. Segment 7 wraps around 2^32.
        let catalogue = vec![
            span(1, 3, 100, 200),
            span(1, 4, 150, 300),
            span(1, 6, 290, 400),
            span(2, 7, u32::MAX - 10, 20),
            segment(1, 8, None),
        ];
        let archive = WalIndex::new(&catalogue);
        let anywhere = |_: u32, _: Lsn| true;
        let into_1 = |tli: u32, _: Lsn| tli == 1;
        type OnPath<'a> = &'a dyn Fn(u32, Lsn) -> bool;
        let cases: [(u32, OnPath, Option<Lsn>); 7] = [
            (120, &anywhere, Some(lsn(3, 0))),
            (180, &anywhere, Some(lsn(3, 0))),
            (250, &anywhere, Some(lsn(4, 0))),
            (350, &anywhere, Some(lsn(6, 0))),
            (5, &anywhere, Some(lsn(7, 0))),
            (5, &into_1, None),
            (1000, &anywhere, None),
        ];
        for (xid, on_path, expected) in cases {
            assert_eq!(
                xid_commit_lsn(&archive, SYSID, xid, on_path),
                expected,
                "{xid}"
            );
        }
        // Aimed at, it picks the snapshot consistent before that segment: the one ending in
        // segment 5 (snapshot 2), not the newer one ending in segment 8.
        let snapshots = repository();
        let all = candidates(&snapshots);
        let aim = Aim::Lsn(xid_commit_lsn(&archive, SYSID, 350, &into_1).unwrap());
        let got = choose(&all, SYSID, aim, &archive, &|pg| pg.timeline == 1).unwrap();
        assert_eq!(got.id.0[0], 2);
    }

    #[test]
    fn explicit_snapshot_after_the_target_is_refused() {
        let snapshots = repository();
        let all = candidates(&snapshots);
        let empty: Vec<WalEntry> = Vec::new();
        let archive = WalIndex::new(&empty);
        let second = &all[2];
        check_chosen(second, Aim::Time(200 * 1_000_000), &archive).unwrap();
        let err = check_chosen(second, Aim::Time(199 * 1_000_000), &archive).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused);
        assert!(err.to_string().contains("LSN 0/5000100"), "{err}");
        assert!(err.to_string().contains("older snapshot"), "{err}");
        assert!(check_chosen(second, Aim::Lsn(lsn(5, 0)), &archive).is_err());
    }

    #[test]
    fn cluster_is_given_or_the_only_one() {
        let snapshots = repository();
        let all = candidates(&snapshots);
        let select = |text: &str| -> ClusterSelector { text.parse().unwrap() };
        assert_eq!(cluster_to_restore(&all, Some(&select("42"))).unwrap(), 42);
        let err = cluster_to_restore(&all, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().contains("--cluster"), "{err}");
        assert_eq!(
            cluster_to_restore(&all, Some(&select("7")))
                .unwrap_err()
                .kind(),
            ErrorKind::Usage
        );
        assert!(check_cluster(&all, Some(&select("42")), &all[0]).is_ok());
        assert!(check_cluster(&all, Some(&select("42")), &all[1]).is_err());
        assert!(check_cluster(&all, None, &all[1]).is_ok());
        assert_eq!(cluster_to_restore(&all[1..], None).unwrap(), SYSID);
        assert!(cluster_to_restore(&[], None).is_err());
    }

    #[test]
    fn wal_ranges() {
        let (_, s) = snapshot(1, 1, 2, 3, 100);
        let pg = s.postgres.as_ref().unwrap();
        let mut catalogue: Vec<WalEntry> = [2, 3, 4, 5, 7]
            .iter()
            .map(|n| segment(1, *n, Some(100 + 10 * *n as i64)))
            .collect();
        catalogue[3]
            .summary
            .as_mut()
            .unwrap()
            .restore_points
            .push(RestorePoint {
                name: "before upgrade".into(),
                time_us: 0,
                lsn: 5 * SEG + 8,
            });
        let archive = WalIndex::new(&catalogue);
        let tl1 = |_: u64| 1;
        let names = |plan: &WalPlan| -> Vec<u64> {
            plan.segments
                .iter()
                .map(|s| u64::from_str_radix(&s.name[16..], 16).unwrap())
                .collect()
        };
        let s = 1_000_000;
        // (end, segments, missing, target found)
        let cases: Vec<(WalEnd, Vec<u64>, Vec<u64>, bool)> = vec![
            (WalEnd::Consistency, vec![2, 3], vec![], true),
            (WalEnd::Lsn(lsn(4, 8)), vec![2, 3, 4], vec![], true),
            (
                WalEnd::Lsn(lsn(7, 8)),
                vec![2, 3, 4, 5, 6, 7],
                vec![6],
                true,
            ),
            (WalEnd::Time(135 * s), vec![2, 3, 4], vec![], true),
            (WalEnd::Time(145 * s), vec![2, 3, 4, 5], vec![], true),
            (WalEnd::Time(999 * s), vec![2, 3, 4, 5], vec![], false),
            (
                WalEnd::RestorePoint("before upgrade".into()),
                vec![2, 3, 4, 5],
                vec![],
                true,
            ),
            (WalEnd::EndOfArchive, vec![2, 3, 4, 5], vec![], false),
        ];
        for (end, segments, missing, found) in cases {
            let plan = wal_plan(pg, &end, &archive, &tl1);
            assert_eq!(names(&plan), segments, "{end:?}");
            let missing: Vec<String> = missing
                .iter()
                .map(|n| wal::segment_name(1, *n, SEG))
                .collect();
            assert_eq!(plan.missing, missing, "{end:?}");
            assert_eq!(plan.target_found, found, "{end:?}");
            let archived = plan
                .segments
                .iter()
                .filter(|s| s.archived.is_some())
                .count() as u64;
            assert_eq!(plan.archived_bytes, archived * SEG, "{end:?}");
        }
        // The snapshot's own WAL counts though not archived.
        let empty: Vec<WalEntry> = Vec::new();
        let plan = wal_plan(pg, &WalEnd::EndOfArchive, &WalIndex::new(&empty), &tl1);
        assert_eq!(names(&plan), [2, 3]);
        assert!(plan.missing.is_empty());
        assert!(plan.segments.iter().all(|s| s.in_snapshot));
        // A timeline switch at segment 4: from there, segments are read from timeline 2.
        let mut catalogue = catalogue.clone();
        catalogue.extend([
            segment(2, 4, None),
            segment(2, 5, None),
            segment(2, 6, None),
        ]);
        let archive = WalIndex::new(&catalogue);
        let switch = |segno: u64| if segno >= 4 { 2 } else { 1 };
        let plan = wal_plan(pg, &WalEnd::EndOfArchive, &archive, &switch);
        let got: Vec<&str> = plan.segments.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            got,
            [
                wal::segment_name(1, 2, SEG),
                wal::segment_name(1, 3, SEG),
                wal::segment_name(2, 4, SEG),
                wal::segment_name(2, 5, SEG),
                wal::segment_name(2, 6, SEG),
            ]
        );
    }
}
