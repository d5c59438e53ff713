//! What the archive can recover to: per cluster and timeline, the WAL segments the catalogue
//! holds, their contiguous runs and the gaps between them, and the recoverable windows (from a
//! restorable snapshot's consistency point to the end of the WAL that follows it without a
//! gap). A timeline's windows also start from snapshots of its ancestors taken before it
//! branched off, following its history file as recovery does: each segment is read from the
//! timeline that held it. Pure functions over snapshots, catalogue entries and parsed history
//! files, so they are tested without a server or a repository.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::pg::history::{HistoryEntry, is_on_history, timeline_at};
use crate::pg::wal::{self, Lsn, WalFileName};
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::{PostgresBackup, Snapshot};
use crate::repo::walcat::WalEntry;

/// The segment size assumed for a cluster that has neither snapshots nor a full segment in the
/// catalogue to tell it: PostgreSQL's default.
const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// The catalogue entries by cluster and file name.
pub struct WalIndex<'a> {
    entries: HashMap<(u64, &'a str), &'a WalEntry>,
}

impl<'a> WalIndex<'a> {
    pub fn new(catalogue: &'a [WalEntry]) -> WalIndex<'a> {
        WalIndex {
            entries: catalogue
                .iter()
                .map(|e| ((e.system_identifier, e.name.as_str()), e))
                .collect(),
        }
    }

    pub fn get(&self, system_identifier: u64, name: &str) -> Option<&'a WalEntry> {
        self.entries.get(&(system_identifier, name)).copied()
    }

    pub fn contains(&self, system_identifier: u64, name: &str) -> bool {
        self.entries.contains_key(&(system_identifier, name))
    }

    /// The entries of one cluster, in no particular order.
    pub fn of_cluster(&self, system_identifier: u64) -> impl Iterator<Item = &'a WalEntry> + '_ {
        self.entries
            .iter()
            .filter(move |((sysid, _), _)| *sysid == system_identifier)
            .map(|(_, e)| *e)
    }
}

/// The segments a snapshot does not carry and the archive does not hold either: until they
/// are archived, the snapshot cannot reach consistency. Empty: the snapshot is restorable.
pub fn missing_wal(pg: &PostgresBackup, archive: &WalIndex) -> Vec<String> {
    pg.wal_missing
        .iter()
        .filter(|name| !archive.contains(pg.system_identifier, name))
        .cloned()
        .collect()
}

/// The recoverable window a snapshot lies in: on its timeline, of its cluster, the one that
/// holds its consistency point (stop LSN). None: it is not restorable.
pub fn window_of<'c>(clusters: &'c [ClusterWal], pg: &PostgresBackup) -> Option<&'c Window> {
    clusters
        .iter()
        .find(|c| c.system_identifier == pg.system_identifier)?
        .timelines
        .iter()
        .find(|t| t.timeline == pg.timeline)?
        .windows
        .iter()
        .find(|w| (w.earliest.lsn..=w.latest.lsn).contains(&Lsn(pg.stop_lsn)))
}

/// A stretch of segment numbers the catalogue lacks, between two it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub first_missing: String,
    pub last_missing: String,
    pub segments: u64,
}

/// A point recovery can stop at: a WAL position and a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub lsn: Lsn,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    /// The time is when a file was archived or a backup finished, not a commit's own time.
    pub approximate: bool,
}

/// One stretch of time and WAL that recovery can reach from restorable snapshots on a timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The oldest snapshot the window starts from.
    pub snapshot: SnapshotId,
    /// That snapshot's consistency point: its stop LSN and finish time.
    pub earliest: Point,
    /// The end of the WAL that follows without a gap: the last valid record of the last
    /// segment (its end when the segment was not scanned), and the last commit time there.
    pub latest: Point,
    /// The last segment of the run.
    pub last_segment: String,
}

/// One timeline of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineWal {
    pub timeline: u32,
    /// Segments of this timeline in the catalogue.
    pub segments: usize,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    /// Contiguous runs of archived segments: (first, last) names.
    pub runs: Vec<(String, String)>,
    pub gaps: Vec<Gap>,
    /// Oldest first; several when gaps split what the snapshots can reach.
    pub windows: Vec<Window>,
}

/// One cluster (system identifier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterWal {
    pub system_identifier: u64,
    pub segment_size: u64,
    pub timelines: Vec<TimelineWal>,
}

/// The segment size of a cluster: from its snapshots, else from a full archived segment.
fn segment_size_of(
    system_identifier: u64,
    snapshots: &[&PostgresBackup],
    catalogue: &[&WalEntry],
) -> u64 {
    snapshots
        .iter()
        .map(|pg| pg.wal_segment_size)
        .chain(
            catalogue
                .iter()
                .filter(|e| e.system_identifier == system_identifier)
                .filter(|e| wal::is_wal_segment_name(&e.name))
                .map(|e| e.size),
        )
        .find(|size| wal::is_valid_segment_size(*size))
        .unwrap_or(DEFAULT_SEGMENT_SIZE)
}

/// A snapshot's id, its PostgreSQL part and when it finished (ns).
type SnapshotOf<'a> = (SnapshotId, &'a PostgresBackup, i64);

/// Parsed timeline history files by cluster (system identifier) and timeline: the ancestors of
/// each timeline and where it branched off them. Timelines without an entry have no ancestors
/// known.
pub type Histories = BTreeMap<(u64, u32), Vec<HistoryEntry>>;

/// Windows, runs and gaps for every cluster that has snapshots or archived WAL, by system
/// identifier and timeline; `histories` are the timeline history files of the archive.
pub fn clusters(
    snapshots: &[(SnapshotId, Snapshot)],
    catalogue: &[WalEntry],
    histories: &Histories,
) -> Vec<ClusterWal> {
    let mut by_cluster: BTreeMap<u64, (Vec<SnapshotOf>, Vec<&WalEntry>)> = BTreeMap::new();
    for (id, s) in snapshots {
        if let Some(pg) = &s.postgres {
            by_cluster
                .entry(pg.system_identifier)
                .or_default()
                .0
                .push((*id, pg, s.finished_ns));
        }
    }
    for entry in catalogue {
        by_cluster
            .entry(entry.system_identifier)
            .or_default()
            .1
            .push(entry);
    }
    let archive = WalIndex::new(catalogue);
    by_cluster
        .into_iter()
        .map(|(sysid, (snaps, entries))| {
            let pgs: Vec<&PostgresBackup> = snaps.iter().map(|(_, pg, _)| *pg).collect();
            let size = segment_size_of(sysid, &pgs, &entries);
            cluster(sysid, size, &snaps, &entries, &archive, histories)
        })
        .collect()
}

fn cluster(
    sysid: u64,
    size: u64,
    snapshots: &[SnapshotOf],
    entries: &[&WalEntry],
    archive: &WalIndex,
    histories: &Histories,
) -> ClusterWal {
    let mut segments: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for entry in entries {
        if let Some(WalFileName::Segment { timeline, segno }) =
            wal::parse_wal_file_name(&entry.name, size)
        {
            segments.entry(timeline).or_default().insert(segno);
        }
    }
    for (_, pg, _) in snapshots {
        segments.entry(pg.timeline).or_default();
    }
    for (_, timeline) in histories
        .range((sysid, 0)..=(sysid, u32::MAX))
        .map(|(k, _)| *k)
    {
        segments.entry(timeline).or_default();
    }
    let timelines = segments
        .into_iter()
        .map(|(timeline, archived)| {
            let path = TimelineRoute {
                timeline,
                history: histories
                    .get(&(sysid, timeline))
                    .map_or(&[][..], Vec::as_slice),
            };
            let runs = runs_of(&archived);
            let name = |segno: u64| wal::segment_name(timeline, segno, size);
            let gaps = runs
                .windows(2)
                .map(|pair| Gap {
                    first_missing: name(pair[0].1 + 1),
                    last_missing: name(pair[1].0 - 1),
                    segments: pair[1].0 - pair[0].1 - 1,
                })
                .collect();
            // Snapshots of the timeline, and of its ancestors before they ended.
            let mut on_timeline: Vec<_> = snapshots
                .iter()
                .filter(|(_, pg, _)| path.starts_from(pg))
                .filter(|(_, pg, _)| missing_wal(pg, archive).is_empty())
                .collect();
            on_timeline.sort_by_key(|(_, pg, _)| pg.stop_lsn);
            let mut windows: Vec<Window> = Vec::new();
            for (id, pg, finished_ns) in on_timeline {
                let window = window_from(*id, pg, *finished_ns, &path, archive);
                // From an ancestor's snapshot, a window counts on this timeline only if its WAL
                // reaches the timeline.
                if window.latest.lsn < path.begins() {
                    continue;
                }
                match windows.last_mut() {
                    // A later snapshot inside a window only confirms it, or carries it further
                    // when it ends after the run (its own pg_wal bridges a gap).
                    Some(last) if window.earliest.lsn <= last.latest.lsn => {
                        if window.latest.lsn > last.latest.lsn {
                            last.latest = window.latest;
                            last.last_segment = window.last_segment;
                        }
                    }
                    _ => windows.push(window),
                }
            }
            TimelineWal {
                timeline,
                segments: archived.len(),
                first_segment: archived.first().map(|s| name(*s)),
                last_segment: archived.last().map(|s| name(*s)),
                runs: runs.iter().map(|(a, b)| (name(*a), name(*b))).collect(),
                gaps,
                windows,
            }
        })
        .collect();
    ClusterWal {
        system_identifier: sysid,
        segment_size: size,
        timelines,
    }
}

/// Contiguous runs of segment numbers: (first, last).
fn runs_of(segnos: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &s in segnos {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == s => run.1 = s,
            _ => runs.push((s, s)),
        }
    }
    runs
}

/// The way recovery into one timeline goes: its history.
struct TimelineRoute<'h> {
    timeline: u32,
    /// Its history file, parsed; empty for timeline 1 or when the archive has none.
    history: &'h [HistoryEntry],
}

impl TimelineRoute<'_> {
    /// Whether recovery from the snapshot can head for this timeline: taken on it, or on an
    /// ancestor that had not ended by the snapshot's consistency point.
    fn starts_from(&self, pg: &PostgresBackup) -> bool {
        is_on_history(self.history, self.timeline, pg.timeline, Lsn(pg.stop_lsn))
    }

    /// Where the timeline begins: the last switch point of its history (0 without one).
    fn begins(&self) -> Lsn {
        self.history.last().map_or(Lsn(0), |e| e.switch_point)
    }

    /// The timeline segment `segno` is read from (XLogFileReadAnyTLI: the newest timeline of
    /// the history that began by the segment's end).
    fn timeline_of(&self, segno: u64, size: u64) -> u32 {
        let last_byte = (segno + 1).saturating_mul(size) - 1;
        timeline_at(self.history, self.timeline, Lsn(last_byte))
    }
}

/// The window one restorable snapshot opens on a timeline: its own WAL (start through stop
/// segment, what it does not carry being archived), then archived segments, each from the
/// timeline the route reads it from, for as long as none is missing.
fn window_from(
    id: SnapshotId,
    pg: &PostgresBackup,
    finished_ns: i64,
    route: &TimelineRoute,
    archive: &WalIndex,
) -> Window {
    let size = pg.wal_segment_size;
    let start = wal::segment_of(Lsn(pg.start_lsn), size);
    let stop = wal::prev_segment_of(Lsn(pg.stop_lsn), size).max(start);
    let name = |segno: u64| wal::segment_name(route.timeline_of(segno, size), segno, size);
    let entry = |segno: u64| archive.get(pg.system_identifier, &name(segno));
    let mut last = stop;
    while entry(last + 1).is_some() {
        last += 1;
    }
    let earliest = Point {
        lsn: Lsn(pg.stop_lsn),
        time_us: finished_ns / 1000,
        approximate: false,
    };
    let latest_lsn = match entry(last) {
        Some(e) => e
            .summary
            .as_ref()
            .map_or(Lsn((last + 1) * size), |s| Lsn(s.end_lsn)),
        // The snapshot's own copy of its stop segment: valid only as far as its stop LSN is
        // known to be.
        None => earliest.lsn,
    }
    .max(earliest.lsn);
    let last_commit = (start..=last)
        .rev()
        .filter_map(entry)
        .find_map(|e| e.summary.as_ref().and_then(|s| s.last_commit_us));
    let latest_time = match (last_commit, entry(last)) {
        (Some(us), _) if us >= earliest.time_us => (us, false),
        (_, Some(e)) if last > stop => (e.archived_ns / 1000, true),
        _ => (earliest.time_us, false),
    };
    Window {
        snapshot: id,
        earliest: earliest.clone(),
        latest: Point {
            lsn: latest_lsn,
            time_us: latest_time.0.max(earliest.time_us),
            approximate: latest_time.1,
        },
        last_segment: name(last),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::repo::snapshot::Summary;
    use crate::repo::tree::ChunkList;
    use crate::repo::walcat::WalSummary;

    pub const SYSID: u64 = 7_300_000_000_000_000_001;
    pub const SEG: u64 = 16 << 20;

    /// A snapshot of SYSID on `timeline` from segment `start` to `stop` (LSNs 0x28 into them),
    /// finished at `finished_s` seconds.
    pub fn snapshot(
        n: u8,
        timeline: u32,
        start: u64,
        stop: u64,
        finished_s: i64,
    ) -> (SnapshotId, Snapshot) {
        let pg = PostgresBackup {
            server_version_num: 150_008,
            system_identifier: SYSID,
            pgdata: b"/pg".to_vec(),
            timeline,
            start_lsn: start * SEG + 0x28,
            stop_lsn: stop * SEG + 0x100,
            start_wal: wal::segment_name(timeline, start, SEG),
            stop_wal: wal::segment_name(timeline, stop, SEG),
            wal_segment_size: SEG,
            backup_label: Vec::new(),
            tablespace_map: None,
            data_checksums: true,
            tablespaces: Vec::new(),
            bad_pages: Vec::new(),
            wal_missing: Vec::new(),
            cluster_name: None,
        };
        (
            SnapshotId([n; 32]),
            Snapshot {
                program_version: "test".into(),
                started_ns: (finished_s - 10) * 1_000_000_000,
                finished_ns: finished_s * 1_000_000_000,
                hostname: "db".into(),
                tags: Vec::new(),
                parent: None,
                root: Vec::new(),
                postgres: Some(pg),
                summary: Summary {
                    logical_bytes: 1000,
                    ..Summary::default()
                },
            },
        )
    }

    /// An archived segment; with `last_commit_s`, a scanned one whose last commit was then.
    pub fn segment(timeline: u32, segno: u64, last_commit_s: Option<i64>) -> WalEntry {
        let name = wal::segment_name(timeline, segno, SEG);
        entry(
            &name,
            SEG,
            last_commit_s.map(|s| WalSummary {
                commits: 1,
                first_commit_us: Some(s * 1_000_000),
                last_commit_us: Some(s * 1_000_000),
                restore_points: Vec::new(),
                end_lsn: segno * SEG + 0x800,
                committed_xids: None,
            }),
        )
    }

    pub fn entry(name: &str, size: u64, summary: Option<WalSummary>) -> WalEntry {
        WalEntry {
            system_identifier: SYSID,
            name: name.to_string(),
            size,
            checksum: [0; 32],
            content: ChunkList {
                level: 0,
                entries: Vec::new(),
            },
            archived_ns: 5_000 * 1_000_000_000,
            hostname: "db".into(),
            program_version: "test".into(),
            summary,
        }
    }

    #[test]
    fn runs_gaps_and_windows() {
        struct Case {
            what: &'static str,
            snapshots: Vec<(SnapshotId, Snapshot)>,
            segments: Vec<WalEntry>,
            runs: Vec<(u64, u64)>,
            gaps: Vec<(u64, u64)>,
            /// (snapshot, earliest lsn, latest lsn, latest time s, approximate)
            windows: Vec<(u8, u64, u64, i64, bool)>,
        }
        let cases = [
            Case {
                what: "one snapshot, archive runs on, last segment scanned",
                snapshots: vec![snapshot(1, 1, 2, 3, 100)],
                segments: (2..=6)
                    .map(|s| segment(1, s, Some(100 + s as i64)))
                    .collect(),
                runs: vec![(2, 6)],
                gaps: vec![],
                windows: vec![(1, 3 * SEG + 0x100, 6 * SEG + 0x800, 106, false)],
            },
            Case {
                what: "a gap after the snapshot ends its window; a second snapshot past it opens another",
                snapshots: vec![snapshot(1, 1, 2, 3, 100), snapshot(2, 1, 8, 8, 200)],
                segments: [2, 3, 4, 8, 9]
                    .iter()
                    .map(|s| segment(1, *s, None))
                    .collect(),
                runs: vec![(2, 4), (8, 9)],
                gaps: vec![(5, 7)],
                windows: vec![
                    (1, 3 * SEG + 0x100, 5 * SEG, 5_000, true),
                    (2, 8 * SEG + 0x100, 10 * SEG, 5_000, true),
                ],
            },
            Case {
                what: "nothing archived: the window is the snapshot's consistency point",
                snapshots: vec![snapshot(1, 1, 2, 2, 100)],
                segments: vec![],
                runs: vec![],
                gaps: vec![],
                windows: vec![(1, 2 * SEG + 0x100, 2 * SEG + 0x100, 100, false)],
            },
            Case {
                what: "two snapshots in one run make one window",
                snapshots: vec![snapshot(1, 1, 2, 2, 100), snapshot(2, 1, 4, 4, 150)],
                segments: (2..=5)
                    .map(|s| segment(1, s, Some(90 + 20 * s as i64)))
                    .collect(),
                runs: vec![(2, 5)],
                gaps: vec![],
                windows: vec![(1, 2 * SEG + 0x100, 5 * SEG + 0x800, 190, false)],
            },
        ];
        for case in cases {
            let clusters = clusters(&case.snapshots, &case.segments, &Histories::new());
            assert_eq!(clusters.len(), 1, "{}", case.what);
            let tl = &clusters[0].timelines[0];
            let name = |s: u64| wal::segment_name(1, s, SEG);
            let runs: Vec<_> = case
                .runs
                .iter()
                .map(|(a, b)| (name(*a), name(*b)))
                .collect();
            assert_eq!(tl.runs, runs, "{}", case.what);
            let gaps: Vec<_> = case
                .gaps
                .iter()
                .map(|(a, b)| Gap {
                    first_missing: name(*a),
                    last_missing: name(*b),
                    segments: b - a + 1,
                })
                .collect();
            assert_eq!(tl.gaps, gaps, "{}", case.what);
            let windows: Vec<_> = tl
                .windows
                .iter()
                .map(|w| {
                    (
                        w.snapshot.0[0],
                        w.earliest.lsn.0,
                        w.latest.lsn.0,
                        w.latest.time_us / 1_000_000,
                        w.latest.approximate,
                    )
                })
                .collect();
            assert_eq!(windows, case.windows, "{}", case.what);
        }
    }

    #[test]
    fn a_snapshot_lies_in_the_window_that_holds_its_stop_lsn() {
        let snapshots = vec![snapshot(1, 1, 2, 3, 100), snapshot(2, 1, 8, 8, 200)];
        let segments: Vec<WalEntry> = [2, 3, 4, 8, 9]
            .iter()
            .map(|s| segment(1, *s, None))
            .collect();
        let clusters = clusters(&snapshots, &segments, &Histories::new());
        let pg = |i: usize| snapshots[i].1.postgres.clone().unwrap();
        let of = |pg: &PostgresBackup| window_of(&clusters, pg).map(|w| w.snapshot.0[0]);
        assert_eq!(of(&pg(0)), Some(1));
        assert_eq!(of(&pg(1)), Some(2));
        // Inside the gap, on another timeline, of another cluster: in no window.
        let mut in_gap = pg(0);
        in_gap.stop_lsn = 6 * SEG;
        assert_eq!(of(&in_gap), None);
        let mut other_timeline = pg(1);
        other_timeline.timeline = 2;
        assert_eq!(of(&other_timeline), None);
        let mut other_cluster = pg(1);
        other_cluster.system_identifier += 1;
        assert_eq!(of(&other_cluster), None);
    }

    #[test]
    fn snapshot_with_missing_wal_opens_no_window_until_archived() {
        let (id, mut s) = snapshot(1, 1, 2, 4, 100);
        let pg = s.postgres.as_mut().unwrap();
        pg.wal_missing = vec![wal::segment_name(1, 3, SEG)];
        let snapshots = vec![(id, s)];
        let without = clusters(&snapshots, &[segment(1, 2, None)], &Histories::new());
        assert!(without[0].timelines[0].windows.is_empty());
        let pg = snapshots[0].1.postgres.as_ref().unwrap();
        let catalogue = [segment(1, 2, None)];
        assert_eq!(missing_wal(pg, &WalIndex::new(&catalogue)), pg.wal_missing);
        let catalogue = [segment(1, 3, None)];
        assert!(missing_wal(pg, &WalIndex::new(&catalogue)).is_empty());
        let with = clusters(&snapshots, &catalogue, &Histories::new());
        assert_eq!(with[0].timelines[0].windows.len(), 1);
    }

    #[test]
    fn timelines_and_clusters_apart() {
        let snapshots = vec![snapshot(1, 1, 2, 2, 100), snapshot(2, 2, 6, 6, 300)];
        let mut catalogue: Vec<WalEntry> = (2..=5).map(|s| segment(1, s, None)).collect();
        catalogue.extend((5..=7).map(|s| segment(2, s, None)));
        catalogue.push(entry("00000002.history", 42, None));
        let mut other = segment(1, 9, None);
        other.system_identifier = 1;
        catalogue.push(other);
        let clusters = clusters(&snapshots, &catalogue, &Histories::new());
        assert_eq!(
            clusters
                .iter()
                .map(|c| c.system_identifier)
                .collect::<Vec<_>>(),
            [1, SYSID]
        );
        let ours = &clusters[1];
        assert_eq!(
            ours.timelines
                .iter()
                .map(|t| t.timeline)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(ours.timelines[0].segments, 4);
        assert_eq!(
            ours.timelines[0].windows[0].last_segment,
            wal::segment_name(1, 5, SEG)
        );
        assert_eq!(
            ours.timelines[1].windows[0].last_segment,
            wal::segment_name(2, 7, SEG)
        );
        // The other cluster has WAL and no snapshot: runs, no window.
        assert_eq!(clusters[0].timelines[0].segments, 1);
        assert!(clusters[0].timelines[0].windows.is_empty());
    }

    /// A history with these (parent timeline, switch point) lines.
    fn history(lines: &[(u32, u64)]) -> Vec<HistoryEntry> {
        lines
            .iter()
            .map(|(parent, at)| HistoryEntry {
                parent_timeline: *parent,
                switch_point: Lsn(*at),
                reason: String::new(),
            })
            .collect()
    }

    #[test]
    fn windows_follow_history_into_child_timelines() {
        /// (snapshot, earliest lsn, latest lsn, last segment (tli, segno)).
        type Expected = (u8, u64, u64, (u32, u64));
        struct Case {
            what: &'static str,
            snapshots: Vec<(SnapshotId, Snapshot)>,
            /// (timeline, segments) archived, each scanned.
            segments: Vec<(u32, std::ops::RangeInclusive<u64>)>,
            /// (timeline, its history lines).
            histories: Vec<(u32, Vec<(u32, u64)>)>,
            /// Per timeline, its windows.
            windows: Vec<(u32, Vec<Expected>)>,
        }
        // Timeline 2 branched off 1 in segment 5; timeline 3 off 2 in segment 7.
        let fork_2 = 5 * SEG + 0x500;
        let fork_3 = 7 * SEG + 0x200;
        let snap_1 = || snapshot(1, 1, 2, 3, 100);
        let stop_1 = 3 * SEG + 0x100;
        let end = |segno: u64| segno * SEG + 0x800;
        let cases = [
            Case {
                what: "a child without a snapshot of its own: from the parent's, through the switch",
                snapshots: vec![snap_1()],
                segments: vec![(1, 2..=5), (2, 5..=7)],
                histories: vec![(2, vec![(1, fork_2)])],
                windows: vec![
                    (1, vec![(1, stop_1, end(5), (1, 5))]),
                    (2, vec![(1, stop_1, end(7), (2, 7))]),
                ],
            },
            Case {
                what: "a parent's snapshot after the switch does not reach the child",
                snapshots: vec![snap_1(), snapshot(2, 1, 6, 6, 200)],
                segments: vec![(1, 2..=8), (2, 5..=6)],
                histories: vec![(2, vec![(1, fork_2)])],
                windows: vec![
                    (1, vec![(1, stop_1, end(8), (1, 8))]),
                    (2, vec![(1, stop_1, end(6), (2, 6))]),
                ],
            },
            Case {
                what: "a gap on the parent before the switch: only the child's own snapshot",
                snapshots: vec![snap_1(), snapshot(3, 2, 6, 6, 300)],
                segments: vec![(1, 2..=3), (1, 5..=5), (2, 5..=7)],
                histories: vec![(2, vec![(1, fork_2)])],
                windows: vec![
                    (1, vec![(1, stop_1, end(3), (1, 3))]),
                    (2, vec![(3, 6 * SEG + 0x100, end(7), (2, 7))]),
                ],
            },
            Case {
                what: "a history file and no WAL of the child yet: no window on it",
                snapshots: vec![snap_1()],
                segments: vec![(1, 2..=5)],
                histories: vec![(2, vec![(1, fork_2)])],
                windows: vec![(1, vec![(1, stop_1, end(5), (1, 5))]), (2, vec![])],
            },
            Case {
                what: "a grandchild: through both switches",
                snapshots: vec![snap_1()],
                segments: vec![(1, 2..=5), (2, 5..=7), (3, 7..=8)],
                histories: vec![(2, vec![(1, fork_2)]), (3, vec![(1, fork_2), (2, fork_3)])],
                windows: vec![
                    (1, vec![(1, stop_1, end(5), (1, 5))]),
                    (2, vec![(1, stop_1, end(7), (2, 7))]),
                    (3, vec![(1, stop_1, end(8), (3, 8))]),
                ],
            },
            Case {
                what: "without its history file a child is on its own",
                snapshots: vec![snap_1()],
                segments: vec![(1, 2..=5), (2, 5..=7)],
                histories: vec![],
                windows: vec![(1, vec![(1, stop_1, end(5), (1, 5))]), (2, vec![])],
            },
        ];
        for case in cases {
            let catalogue: Vec<WalEntry> = case
                .segments
                .iter()
                .flat_map(|(tli, range)| range.clone().map(|s| segment(*tli, s, Some(100))))
                .collect();
            let histories: Histories = case
                .histories
                .iter()
                .map(|(tli, lines)| ((SYSID, *tli), history(lines)))
                .collect();
            let clusters = clusters(&case.snapshots, &catalogue, &histories);
            let got: Vec<_> = clusters[0]
                .timelines
                .iter()
                .map(|tl| {
                    let windows = tl
                        .windows
                        .iter()
                        .map(|w| {
                            let (tli, segno) =
                                wal::parse_segment_name(&w.last_segment, SEG).unwrap();
                            (
                                w.snapshot.0[0],
                                w.earliest.lsn.0,
                                w.latest.lsn.0,
                                (tli, segno),
                            )
                        })
                        .collect::<Vec<_>>();
                    (tl.timeline, windows)
                })
                .collect();
            assert_eq!(got, case.windows, "{}", case.what);
        }
    }
}
