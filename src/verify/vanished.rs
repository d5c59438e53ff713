//! Objects that disappear while verify runs: the one place that decides whether something
//! verify expected and did not find is damage or a concurrent prune at work.
//!
//! Verify runs beside backup, archive-push and prune, possibly on other hosts. Writers only
//! add objects, and verify reads in the order that makes their work invisible or complete:
//! roots (WAL catalogue, snapshots) first, then the index, then the packs, so whatever a root
//! it saw references was indexed before it synced, and a pack written after is merely not
//! indexed yet (reported as info). Prune deletes: forgotten snapshots, expired catalogue
//! entries, index files it superseded, and packs nothing references. So whenever a read finds
//! an object gone, or the listing of packs lacks one the index lists, verify asks here:
//!
//! - a snapshot, WAL catalogue entry or index file that is not on storage any more was deleted
//!   by prune: skipped (and listed as info). Storage never loses an object that verify could
//!   tell apart from one prune deleted, so nothing more can be said.
//! - a pack that is not on storage is damage only if, after bringing the index cache in step
//!   with storage, an index file still lists it: prune removes a pack from the index when it
//!   deletes it. (A pack prune has marked for deletion may also vanish; the index says so.)
//!
//! Blobs that roots reference but no index file lists are judged at the end, by their roots:
//! a root deleted meanwhile no longer needs them (see `impact`).

use crate::error::Result;
use crate::repo::IndexedRepository;
use crate::repo::id::{IndexId, PackId, SnapshotId};
use crate::repo::index_file::IndexedPack;
use crate::repo::layout;

use super::report::Object;

/// An object on storage that verify expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Pack(PackId),
    IndexFile(IndexId),
    Snapshot(SnapshotId),
    /// A WAL catalogue entry, by object name.
    WalEntry([u8; 32]),
}

impl Stored {
    fn path(&self) -> String {
        match self {
            Stored::Pack(id) => layout::pack(id),
            Stored::IndexFile(id) => layout::index(id),
            Stored::Snapshot(id) => layout::snapshot(id),
            Stored::WalEntry(object) => layout::wal_entry(object),
        }
    }

    fn object(&self) -> Object {
        match self {
            Stored::Pack(id) => Object::pack(id),
            Stored::IndexFile(id) => Object::index_file(id),
            Stored::Snapshot(id) => Object::snapshot(id),
            Stored::WalEntry(object) => Object::WalEntry {
                object: hex::encode(object),
                system_identifier: None,
                name: None,
            },
        }
    }
}

/// What became of an object verify expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It is on storage: a failed read of it is damage (or a storage failure).
    Present,
    /// It is not, and the repository still needs it: damage.
    Missing,
    /// It is not, and nothing needs it any more: prune deleted it while verify ran.
    Vanished,
}

/// The objects found deleted by a concurrent prune so far.
#[derive(Default)]
pub struct Vanished {
    pub objects: Vec<Object>,
    /// Packs no index file lists that verify indexed in its private cache (from their own
    /// headers) under an id of its own: put back after every refresh, which forgets index
    /// files that are not on storage.
    pub private: Option<(IndexId, Vec<IndexedPack>)>,
}

impl Vanished {
    /// Judges objects verify expected and could not read or list. The index cache is brought
    /// in step with storage (once, and only if a pack is absent) before packs are judged.
    pub fn judge(
        &mut self,
        repo: &mut IndexedRepository,
        objects: &[Stored],
    ) -> Result<Vec<Verdict>> {
        let mut present = Vec::with_capacity(objects.len());
        for object in objects {
            present.push(repo.storage().exists(&object.path())?);
        }
        let pack_absent = objects
            .iter()
            .zip(&present)
            .any(|(o, p)| matches!(o, Stored::Pack(_)) && !p);
        if pack_absent {
            self.refresh(repo)?;
        }
        let mut verdicts = Vec::with_capacity(objects.len());
        for (object, present) in objects.iter().zip(present) {
            let verdict = match object {
                _ if present => Verdict::Present,
                Stored::Pack(id) if repo.with_cache(|c| c.contains_pack(id))? => Verdict::Missing,
                _ => Verdict::Vanished,
            };
            if verdict == Verdict::Vanished {
                self.objects.push(object.object());
            }
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    /// [`Self::judge`] for one object.
    pub fn judge_one(&mut self, repo: &mut IndexedRepository, object: Stored) -> Result<Verdict> {
        Ok(self.judge(repo, &[object])?[0])
    }
}

impl Vanished {
    /// Brings the index cache in step with storage: index files that appeared are added,
    /// those prune deleted are forgotten with the packs only they listed. Damaged index files
    /// were reported already; here they are only left out.
    pub fn refresh(&self, repo: &mut IndexedRepository) -> Result<()> {
        repo.sync_cache_with(&mut |_, _| Ok(()))?;
        if let Some((id, packs)) = &self.private {
            repo.index_privately(id, packs.clone())?;
        }
        Ok(())
    }
}
