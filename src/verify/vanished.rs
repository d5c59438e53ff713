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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::repo::pack::BlobType;
    use crate::repo::random::RandomSource;
    use crate::repo::{InitOptions, Repository};
    use crate::storage::Storage;

    /// A repository with one pack, indexed in a private cache.
    fn one_pack(dir: &std::path::Path) -> (IndexedRepository, PackId, IndexId) {
        let storage = Storage::local(&dir.join("repo")).unwrap();
        let options = InitOptions::with_kdf(KdfParams::INSECURE_FOR_TESTS);
        let repo = Repository::init(storage, b"pw", &options, RandomSource::System).unwrap();
        let repo = repo.load_index_private(&dir.join("cache.sqlite")).unwrap();
        let packer = repo.packer();
        packer.add(BlobType::Data, b"some content").unwrap();
        packer.flush().unwrap();
        repo.sync_cache().unwrap();
        let pack = repo.with_cache(|c| c.packs()).unwrap()[0].0;
        let index = repo.list_index_files().unwrap()[0];
        (repo, pack, index)
    }

    #[test]
    fn a_pack_gone_is_damage_while_an_index_file_lists_it_and_vanished_once_none_does() {
        let dir = tempfile::tempdir().unwrap();
        let (mut repo, pack, index) = one_pack(dir.path());
        let mut vanished = Vanished::default();
        let judge = |v: &mut Vanished, repo: &mut IndexedRepository, o| v.judge_one(repo, o);
        assert_eq!(
            judge(&mut vanished, &mut repo, Stored::Pack(pack)).unwrap(),
            Verdict::Present
        );
        std::fs::remove_file(dir.path().join("repo").join(layout::pack(&pack))).unwrap();
        assert_eq!(
            judge(&mut vanished, &mut repo, Stored::Pack(pack)).unwrap(),
            Verdict::Missing
        );
        assert!(vanished.objects.is_empty());
        // Prune takes a pack out of the index when it deletes it.
        std::fs::remove_file(dir.path().join("repo").join(layout::index(&index))).unwrap();
        assert_eq!(
            judge(&mut vanished, &mut repo, Stored::Pack(pack)).unwrap(),
            Verdict::Vanished
        );
        let snapshot = Stored::Snapshot(SnapshotId([7; 32]));
        assert_eq!(
            judge(&mut vanished, &mut repo, snapshot).unwrap(),
            Verdict::Vanished
        );
        assert_eq!(
            vanished.objects,
            vec![Object::pack(&pack), Object::snapshot(&SnapshotId([7; 32]))]
        );
    }

    #[test]
    fn packs_indexed_privately_survive_a_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let (mut repo, pack, _) = one_pack(dir.path());
        let private = IndexId([9; 32]);
        let unlisted = IndexedPack {
            id: PackId([5; 32]),
            size: 100,
            blobs: Vec::new(),
        };
        repo.index_privately(&private, vec![unlisted.clone()])
            .unwrap();
        let vanished = Vanished {
            private: Some((private, vec![unlisted.clone()])),
            ..Vanished::default()
        };
        vanished.refresh(&mut repo).unwrap();
        assert!(repo.with_cache(|c| c.contains_pack(&unlisted.id)).unwrap());
        assert!(repo.with_cache(|c| c.contains_pack(&pack)).unwrap());
    }
}
