//! `--cluster NAME|SYSTEM_ID`, shared by the commands that list or prune snapshots.

use clap::Args;

use crate::archive::window::{self, ClusterWal};
use crate::error::Result;
use crate::repo::IndexedRepository;
use crate::repo::cluster::ClusterSelector;
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::Snapshot;
use crate::repo::walcat::WalEntry;

/// What the commands that describe the repository read, and the part `--cluster` selects.
pub struct Selection {
    /// The whole WAL catalogue.
    pub catalogue: Vec<WalEntry>,
    /// Every snapshot of the repository, oldest first.
    pub all: Vec<(SnapshotId, Snapshot)>,
    /// The snapshots of the selected clusters.
    pub selected: Vec<(SnapshotId, Snapshot)>,
    /// The archived WAL, gaps and recoverable windows of the selected clusters (a cluster that
    /// only archived WAL is selected by its system identifier).
    pub clusters: Vec<ClusterWal>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArg {
    /// Only the cluster with this name (backup --cluster, else its cluster_name setting) or
    /// this system identifier, when several clusters share the repository.
    #[arg(long, value_name = "NAME|SYSTEM_ID")]
    pub cluster: Option<ClusterSelector>,
}

impl ClusterArg {
    /// Reads the snapshots and the WAL catalogue of `repo`, and selects.
    pub fn read(&self, repo: &IndexedRepository) -> Result<Selection> {
        let catalogue = repo.wal_catalogue()?;
        let all = repo.load_snapshots()?;
        let histories = crate::archive::read_histories(repo, &catalogue)?;
        let selected = self.filter(all.clone())?;
        let mut clusters = window::clusters(&all, &catalogue, &histories);
        clusters.retain(|c| self.includes_wal_of(c.system_identifier, &selected));
        Ok(Selection {
            catalogue,
            all,
            selected,
            clusters,
        })
    }

    /// The snapshots of the selected clusters, all without --cluster; a selector that names
    /// no cluster is a usage error listing the clusters there are.
    fn filter(
        &self,
        snapshots: Vec<(SnapshotId, Snapshot)>,
    ) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let Some(selector) = &self.cluster else {
            return Ok(snapshots);
        };
        let ids = selector.system_ids(snapshots.iter().filter_map(|(_, s)| s.postgres.as_ref()))?;
        Ok(snapshots
            .into_iter()
            .filter(|(_, s)| {
                s.postgres
                    .as_ref()
                    .is_some_and(|pg| ids.contains(&pg.system_identifier))
            })
            .collect())
    }

    /// Whether WAL of cluster `system_identifier` belongs in the output.
    fn includes_wal_of(&self, system_identifier: u64, selected: &[(SnapshotId, Snapshot)]) -> bool {
        match &self.cluster {
            None => true,
            Some(selector) => {
                selector.matches_system_id(system_identifier)
                    || selected.iter().any(|(_, s)| {
                        s.postgres
                            .as_ref()
                            .is_some_and(|pg| pg.system_identifier == system_identifier)
                    })
            }
        }
    }
}
