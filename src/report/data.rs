//! What is said about a repository, gathered once: the space it takes (what `info` prints),
//! each snapshot's status (what `snapshots` prints), the recoverable windows per cluster and
//! timeline, and, for the report's charts, what each snapshot added to what the repository
//! keeps (one walk of the snapshots' metadata, oldest first).

use super::text::status;
use crate::archive::window::{self, ClusterWal, WalIndex};
use crate::cli::cluster_arg::{ClusterArg, Selection};
use crate::error::Result;
use crate::repo::IndexedRepository;
use crate::repo::cache::BlobTotals;
use crate::repo::id::{RepoId, SnapshotId};
use crate::repo::pack::BlobType;
use crate::repo::reach::{Reach, Unreadable};
use crate::repo::snapshot::Snapshot;

/// The space a repository takes, from the snapshots' logical size down to the packs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// What the snapshots would take as plain copies.
    pub logical: u64,
    /// Distinct data chunks: their plaintext (unique) and stored (compressed, encrypted) bytes.
    pub data: BlobTotals,
    /// Distinct trees and chunk lists.
    pub metadata: BlobTotals,
    pub packs: usize,
    pub pack_bytes: u64,
}

impl Space {
    pub fn measure(
        repo: &IndexedRepository,
        snapshots: &[(SnapshotId, Snapshot)],
    ) -> Result<Space> {
        let (data, trees, lists, packs) = repo.with_cache(|c| -> Result<_> {
            Ok((
                c.blob_totals(BlobType::Data)?,
                c.blob_totals(BlobType::Tree)?,
                c.blob_totals(BlobType::ChunkList)?,
                c.packs()?,
            ))
        })?;
        Ok(Space {
            logical: snapshots.iter().map(|(_, s)| s.summary.logical_bytes).sum(),
            data,
            metadata: BlobTotals {
                blobs: trees.blobs + lists.blobs,
                raw_bytes: trees.raw_bytes + lists.raw_bytes,
                stored_bytes: trees.stored_bytes + lists.stored_bytes,
            },
            packs: packs.len(),
            pack_bytes: packs.iter().map(|(_, size)| size).sum(),
        })
    }

    /// Logical size over unique data.
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical, self.data.raw_bytes)
    }

    /// Unique data over what it takes stored.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.data.raw_bytes, self.data.stored_bytes)
    }
}

/// `a / b`, or 1 when there is nothing to divide by.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// One snapshot and what the report says of it.
pub struct SnapshotFacts {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    /// WAL segments it needs that neither it nor the archive holds.
    pub missing_wal: Vec<String>,
    /// Data chunks no older snapshot references: what it added to what the repository must
    /// keep for the snapshots there are now.
    pub first_referenced: BlobTotals,
}

impl SnapshotFacts {
    pub fn status(&self) -> String {
        status(self.snapshot.postgres.as_ref(), &self.missing_wal)
    }

    pub fn restorable(&self) -> bool {
        self.snapshot.postgres.is_some() && self.missing_wal.is_empty()
    }
}

/// Everything the report shows.
pub struct Overview {
    /// Where the repository is, and its id.
    pub location: String,
    pub repository_id: RepoId,
    pub space: Space,
    /// Oldest first.
    pub snapshots: Vec<SnapshotFacts>,
    /// Archived WAL, gaps and recoverable windows per cluster and timeline.
    pub clusters: Vec<ClusterWal>,
    /// Trees and chunk lists the walk could not read: the ratios over time leave out what is
    /// under them.
    pub unreadable: Vec<Unreadable>,
}

impl Overview {
    /// What a cluster is called: the name its newest named snapshot was taken under
    /// (`backup --cluster`, else the server's `cluster_name`), if any.
    pub fn cluster_name(&self, system_identifier: u64) -> Option<&str> {
        self.snapshots
            .iter()
            .rev()
            .filter_map(|s| s.snapshot.postgres.as_ref())
            .filter(|pg| pg.system_identifier == system_identifier)
            .find_map(|pg| pg.cluster_name.as_deref())
    }

    /// `main (7301234567890123456)`, or the system identifier alone.
    pub fn cluster_label(&self, system_identifier: u64) -> String {
        match self.cluster_name(system_identifier) {
            Some(name) => format!("{name} ({system_identifier})"),
            None => system_identifier.to_string(),
        }
    }
}

/// Gathers the overview of the clusters `select` selects (the space: of the whole
/// repository); `progress(done, total)` is called as the walk goes, snapshot by snapshot.
pub fn gather(
    repo: &IndexedRepository,
    select: &ClusterArg,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Overview> {
    let Selection {
        catalogue,
        all,
        selected: snapshots,
        clusters,
    } = select.read(repo)?;
    let space = Space::measure(repo, &all)?;
    let archive = WalIndex::new(&catalogue);
    let mut unreadable = Vec::new();
    let mut facts = Vec::with_capacity(snapshots.len());
    {
        let mut reach = Reach::counting(repo)?;
        let mut note = |u: Unreadable| {
            unreadable.push(u);
            Ok(())
        };
        let total = snapshots.len();
        for (done, (id, snapshot)) in snapshots.into_iter().enumerate() {
            progress(done, total);
            reach.snapshot(&snapshot, &mut note)?;
            facts.push(SnapshotFacts {
                id,
                missing_wal: snapshot
                    .postgres
                    .as_ref()
                    .map(|pg| window::missing_wal(pg, &archive))
                    .unwrap_or_default(),
                first_referenced: reach.take_first_reached(),
                snapshot,
            });
        }
    }
    Ok(Overview {
        location: repo.storage().location().to_string(),
        repository_id: repo.config().id,
        space,
        snapshots: facts,
        clusters,
        unreadable,
    })
}

/// The ratios of the repository as it stood after one snapshot: over it and every older one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cumulative {
    /// Logical size over unique data (the plaintext of distinct chunks).
    pub dedup: f64,
    /// Unique data over its stored bytes.
    pub compression: f64,
    /// Logical size over stored bytes: the two together.
    pub overall: f64,
}

/// For each snapshot, oldest first, the ratios over it and the older ones; None while they
/// have no data chunk to divide by (none indexed, or their metadata unreadable).
pub fn cumulative(snapshots: &[SnapshotFacts]) -> Vec<Option<Cumulative>> {
    let (mut logical, mut raw, mut stored) = (0u64, 0u64, 0u64);
    snapshots
        .iter()
        .map(|s| {
            logical += s.snapshot.summary.logical_bytes;
            raw += s.first_referenced.raw_bytes;
            stored += s.first_referenced.stored_bytes;
            (raw > 0 && stored > 0).then(|| Cumulative {
                dedup: logical as f64 / raw as f64,
                compression: raw as f64 / stored as f64,
                overall: logical as f64 / stored as f64,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::archive::window::tests::snapshot;

    /// Snapshot `n` of the window tests' cluster: `logical` bytes, of which it was the first to
    /// reference `raw` (stored in `stored`).
    pub fn facts(n: u8, finished_s: i64, logical: u64, raw: u64, stored: u64) -> SnapshotFacts {
        let (id, mut snapshot) = snapshot(n, 1, 2, 3, finished_s);
        snapshot.summary.logical_bytes = logical;
        snapshot.summary.new_stored_bytes = stored;
        SnapshotFacts {
            id,
            snapshot,
            missing_wal: Vec::new(),
            first_referenced: BlobTotals {
                blobs: raw / 8192,
                raw_bytes: raw,
                stored_bytes: stored,
            },
        }
    }

    #[test]
    fn cumulative_ratios_add_up_snapshot_by_snapshot() {
        let snapshots = [
            // Nothing indexed yet: no ratio.
            facts(1, 100, 1000, 0, 0),
            facts(2, 200, 1000, 1000, 500),
            facts(3, 300, 1000, 0, 0),
            facts(4, 400, 1000, 1000, 250),
        ];
        let got = cumulative(&snapshots);
        assert_eq!(got[0], None);
        assert_eq!(
            got[1],
            Some(Cumulative {
                dedup: 2.0,
                compression: 2.0,
                overall: 4.0
            })
        );
        // A snapshot that adds nothing raises dedup alone.
        assert_eq!(got[2].unwrap().dedup, 3.0);
        assert_eq!(got[2].unwrap().compression, 2.0);
        let last = got[3].unwrap();
        assert_eq!((last.dedup, last.compression), (2.0, 2000.0 / 750.0));
        assert!((last.overall - last.dedup * last.compression).abs() < 1e-9);
    }
}
