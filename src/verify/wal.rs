//! The WAL side of verify: each snapshot's own WAL (start to stop segment) in its `pg_wal/`,
//! or in the archive for what the backup could not take; per cluster and timeline, the gaps
//! in the archived WAL and the recoverable windows they end.

use std::collections::HashMap;

use crate::archive::read_histories_with;
use crate::archive::window::{self, ClusterWal, WalIndex};
use crate::error::Result;
use crate::pg::wal::{self as walname, parse_segment_name};
use crate::repo::id::SnapshotId;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::{PostgresBackup, Snapshot};
use crate::repo::tree::NodeKind;
use crate::repo::walcat::WalEntry;

use super::check::Verifier;
use super::read_data::wal_object;
use super::report::{self, Gap, GapWarning, Object, Problem, SnapshotRef, WindowCut, WindowRef};

impl Verifier<'_, '_> {
    /// The catalogue as it would be intact: what read intact, and the entries `--read-data`
    /// found damaged (their content is known from the cache), so that what their loss takes
    /// is reported against them rather than as gaps.
    pub(super) fn catalogue_whole(&self) -> Vec<WalEntry> {
        let mut all = self.catalogue.clone();
        all.extend(self.damaged_wal.iter().map(|(entry, _)| entry.clone()));
        all
    }

    pub(super) fn check_wal(&mut self) -> Result<()> {
        self.show("checking WAL", 0, 0);
        let all = self.catalogue_whole();
        let mut failed = Vec::new();
        self.histories = read_histories_with(&self.repo, &all, &mut |entry, e| {
            failed.push((entry.clone(), e));
            Ok(())
        })?;
        for (entry, e) in failed {
            self.history_unreadable(&entry, e)?;
        }
        let clusters = window::clusters(&self.snapshots, &all, &self.histories);
        self.report.wal = clusters.iter().map(cluster_report).collect();
        self.report.warnings = gap_warnings(&clusters);
        self.snapshots_wal(&all)
    }

    /// A history file that does not read: the blob that failed is reported with its pack;
    /// a file that reads but does not parse is a damaged WAL file.
    fn history_unreadable(&mut self, entry: &WalEntry, error: crate::Error) -> Result<()> {
        // A chunk list that does not read was reported by the walk.
        let Ok(chunks) = self.repo.data_chunks(&entry.content) else {
            return Ok(());
        };
        let mut blob_failed = false;
        for chunk in chunks {
            if let Err(e) = self.repo.read_blob(BlobType::Data, &chunk.id) {
                blob_failed = true;
                // Not indexed at all: reported by the walk.
                if let Some(at) = self
                    .repo
                    .with_cache(|c| c.lookup(BlobType::Data, &chunk.id))?
                {
                    self.blob_unreadable(at, e)?;
                }
            }
        }
        if !blob_failed {
            let object = self
                .repo
                .wal_entry_name(entry.system_identifier, &entry.name);
            self.damage(
                wal_object(&object, entry),
                Problem::Damaged,
                format!("not a valid timeline history file: {error}"),
            );
        }
        Ok(())
    }

    /// Each snapshot's WAL: what it does not carry must be archived, what it carries must be
    /// in its `pg_wal/`.
    fn snapshots_wal(&mut self, all: &[WalEntry]) -> Result<()> {
        let archive = WalIndex::new(all);
        for (id, snapshot) in self.snapshots.clone() {
            if let Some(pg) = &snapshot.postgres {
                self.snapshot_wal(&id, &snapshot, pg, &archive);
            }
        }
        Ok(())
    }

    fn snapshot_wal(
        &mut self,
        id: &SnapshotId,
        snapshot: &Snapshot,
        pg: &PostgresBackup,
        archive: &WalIndex,
    ) {
        let who = SnapshotRef::new(id, snapshot);
        for name in window::missing_wal(pg, archive) {
            let n = self.damage(
                Object::WalFile {
                    system_identifier: pg.system_identifier.to_string(),
                    name,
                },
                Problem::Missing,
                "a snapshot needs it to reach consistency (its backup could not take it, see \
                 wal_missing) and the archive does not hold it"
                    .to_string(),
            );
            self.affects_snapshot(n, &who);
        }
        let Some(pg_wal) = self.pg_wal_of(snapshot) else {
            return;
        };
        let lacking: Vec<String> = pg
            .wal_needed()
            .into_iter()
            .filter(|name| !pg.wal_missing.contains(name))
            .filter_map(|name| match pg_wal.get(&name).copied() {
                None => Some(format!("{name} (absent)")),
                Some(size)
                    if walname::is_wal_segment_name(&name) && size != pg.wal_segment_size =>
                {
                    Some(format!("{name} ({size} bytes)"))
                }
                Some(_) => None,
            })
            .collect();
        if !lacking.is_empty() {
            let n = self.damage(
                Object::snapshot(id),
                Problem::WalIncomplete,
                format!(
                    "its pg_wal/ should hold {} .. {} and lacks {}: it cannot reach consistency",
                    pg.start_wal,
                    pg.stop_wal,
                    lacking.join(", ")
                ),
            );
            self.affects_snapshot(n, &who);
        }
    }

    /// The files in a snapshot's `pg_wal/` with their sizes; None when its trees do not read
    /// (the walk reported them).
    fn pg_wal_of(&self, snapshot: &Snapshot) -> Option<HashMap<String, u64>> {
        let root = self.repo.dir_entries(&snapshot.root).ok()?;
        let Some(node) = root.iter().find(|n| n.name == b"pg_wal") else {
            return Some(HashMap::new());
        };
        let NodeKind::Dir { trees } = &node.kind else {
            return Some(HashMap::new());
        };
        let files = self.repo.dir_entries(trees).ok()?;
        Some(
            files
                .into_iter()
                .filter_map(|n| match n.kind {
                    NodeKind::File { size, .. } => {
                        Some((String::from_utf8_lossy(&n.name).into_owned(), size))
                    }
                    _ => None,
                })
                .collect(),
        )
    }

    /// Adds a snapshot to what damage `n` affects, once.
    pub(super) fn affects_snapshot(&mut self, n: usize, who: &SnapshotRef) {
        let snapshots = &mut self.report.damage[n].affects.snapshots;
        if !snapshots.contains(who) {
            snapshots.push(who.clone());
        }
    }
}

fn cluster_report(cluster: &ClusterWal) -> report::ClusterWal {
    report::ClusterWal {
        system_identifier: cluster.system_identifier.to_string(),
        timelines: cluster
            .timelines
            .iter()
            .map(|tl| report::TimelineWal {
                timeline: tl.timeline,
                segments: tl.segments,
                first_segment: tl.first_segment.clone(),
                last_segment: tl.last_segment.clone(),
                gaps: tl.gaps.iter().map(gap_report).collect(),
                windows: tl.windows.iter().map(WindowRef::from).collect(),
            })
            .collect(),
    }
}

fn gap_report(gap: &window::Gap) -> Gap {
    Gap {
        first_missing: gap.first_missing.clone(),
        last_missing: gap.last_missing.clone(),
        segments: gap.segments,
    }
}

/// The gaps that end a recoverable window: the window whose WAL runs up to the gap. A gap
/// that no window reaches (before every restorable snapshot, or after another gap) takes
/// nothing more away.
fn gap_warnings(clusters: &[ClusterWal]) -> Vec<GapWarning> {
    let mut warnings = Vec::new();
    for cluster in clusters {
        let segno = |name: &str| parse_segment_name(name, cluster.segment_size).map(|(_, s)| s);
        for tl in &cluster.timelines {
            for gap in &tl.gaps {
                let Some(first) = segno(&gap.first_missing) else {
                    continue;
                };
                let Some(cut) = tl
                    .windows
                    .iter()
                    .find(|w| segno(&w.last_segment).is_some_and(|last| last + 1 == first))
                else {
                    continue;
                };
                let resumes = tl
                    .windows
                    .iter()
                    .find(|w| w.earliest.lsn > cut.latest.lsn)
                    .map(|w| (&w.earliest).into());
                warnings.push(GapWarning {
                    system_identifier: cluster.system_identifier.to_string(),
                    timeline: tl.timeline,
                    gap: gap_report(gap),
                    window: cut.into(),
                    resumes,
                });
            }
        }
    }
    warnings
}

/// The windows of `before` that `after` no longer has whole, each with what remains of it.
pub(super) fn windows_cut(before: &[ClusterWal], after: &[ClusterWal]) -> Vec<WindowCut> {
    let mut cuts = Vec::new();
    for cluster in before {
        let after_cluster = after
            .iter()
            .find(|c| c.system_identifier == cluster.system_identifier);
        for tl in &cluster.timelines {
            let remaining = after_cluster
                .and_then(|c| c.timelines.iter().find(|t| t.timeline == tl.timeline))
                .map_or(&[][..], |t| t.windows.as_slice());
            for w in &tl.windows {
                if remaining.contains(w) {
                    continue;
                }
                cuts.push(WindowCut {
                    system_identifier: cluster.system_identifier.to_string(),
                    timeline: tl.timeline,
                    before: w.into(),
                    after: remaining
                        .iter()
                        .filter(|r| {
                            r.earliest.lsn <= w.latest.lsn && r.latest.lsn >= w.earliest.lsn
                        })
                        .map(WindowRef::from)
                        .collect(),
                });
            }
        }
    }
    cuts
}
