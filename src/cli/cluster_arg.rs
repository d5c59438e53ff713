//! `--cluster NAME|SYSTEM_ID`, shared by the commands that list or prune snapshots.

use clap::Args;

use crate::error::Result;
use crate::repo::cluster::ClusterSelector;
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::Snapshot;

#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArg {
    /// Only the cluster with this name (backup --cluster, else its cluster_name setting) or
    /// this system identifier, when several clusters share the repository.
    #[arg(long, value_name = "NAME|SYSTEM_ID")]
    pub cluster: Option<ClusterSelector>,
}

impl ClusterArg {
    /// The snapshots of the selected clusters, all without --cluster; a selector that names
    /// no cluster is a usage error listing the clusters there are.
    pub fn filter(
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
    pub fn includes_wal_of(
        &self,
        system_identifier: u64,
        selected: &[(SnapshotId, Snapshot)],
    ) -> bool {
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
