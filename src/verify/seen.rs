//! The snapshots the previous verify on this host saw. Nothing references a snapshot, so a
//! snapshot object deleted from storage leaves no trace a reader could find, and prune deletes
//! snapshots it forgets: what verify can say is which snapshots it saw last time and no longer
//! finds (info, not damage). Kept in the repository's directory of the local cache.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::id::SnapshotId;

pub struct SeenSnapshots {
    path: PathBuf,
}

impl SeenSnapshots {
    pub fn new(repo_cache_dir: &Path) -> SeenSnapshots {
        SeenSnapshots {
            path: repo_cache_dir.join("verify-snapshots"),
        }
    }

    /// The snapshots the previous run saw; none the first time (or if the file is unreadable:
    /// then nothing is reported gone).
    pub fn previous(&self) -> BTreeSet<SnapshotId> {
        std::fs::read_to_string(&self.path)
            .map(|text| {
                text.lines()
                    .filter_map(|line| SnapshotId::from_hex(line.trim()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records the snapshots this run saw; atomically, so an interrupted write leaves the
    /// previous list.
    pub fn save(&self, seen: &BTreeSet<SnapshotId>) -> Result<()> {
        let staged = self.path.with_extension("new");
        let mut text = String::with_capacity(seen.len() * 65);
        for id in seen {
            text.push_str(&id.to_hex());
            text.push('\n');
        }
        std::fs::write(&staged, text).map_err(Error::io_at("writing", &staged))?;
        std::fs::rename(&staged, &self.path).map_err(Error::io_at("renaming", &staged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_it_saw() {
        let dir = tempfile::tempdir().unwrap();
        let seen = SeenSnapshots::new(dir.path());
        assert!(seen.previous().is_empty());
        let ids: BTreeSet<SnapshotId> = [SnapshotId([1; 32]), SnapshotId([2; 32])].into();
        seen.save(&ids).unwrap();
        assert_eq!(SeenSnapshots::new(dir.path()).previous(), ids);
    }
}
