//! Reachability: the set of blobs that the repository's roots (snapshots and WAL catalogue
//! entries) reference, directly or through trees and chunk lists. Prune keeps exactly this set;
//! verify checks it is all there.
//!
//! The set lives in a temporary table of the index cache, spilled to a temporary file, so a
//! walk's memory does not grow with the number of chunks. Each tree and chunk-list blob is read
//! once per walk however many snapshots share it: a snapshot of an unchanged cluster costs one
//! lookup per root tree. Data chunks, which the walk never reads, are added in sorted batches
//! (one transaction each), the last one before the walk of their root returns.

use super::IndexedRepository;
use super::cache::BlobTotals;
use super::id::BlobId;
use super::pack::BlobType;
use super::snapshot::Snapshot;
use super::tree::{ChunkList, NodeKind};
use super::walcat::WalEntry;
use crate::error::{Error, Result};

/// Data chunks held before they are added to the set (32 bytes each). Added one at a time, each
/// insert its own transaction, a million chunks took twice the CPU time (docs/benchmarks.md); a
/// sorted batch visits each page of the table at most once. The table outgrows SQLite's page
/// cache, so each batch still costs up to one pass over it: larger batches, fewer passes.
const DATA_BATCH: usize = 64 * 1024;

/// A metadata blob the walk needed and could not read: missing from the index, its pack
/// missing, or damaged. Nothing under it was walked.
#[derive(Debug)]
pub struct Unreadable {
    pub blob_type: BlobType,
    pub id: BlobId,
    pub error: Error,
}

/// What to do with an unreadable blob: prune stops (it must not delete anything when it
/// cannot see everything that is referenced), verify records it and goes on.
pub type OnUnreadable<'a> = dyn FnMut(Unreadable) -> Result<()> + 'a;

/// A walk in progress; the blobs it has reached are in the cache's `reached` table (a root's
/// once [`Reach::snapshot`] or [`Reach::wal_entry`] has returned) until the next
/// [`Reach::begin`].
pub struct Reach<'r> {
    repo: &'r IndexedRepository,
    /// Data chunks found and not yet in the table.
    data: Vec<BlobId>,
    /// For [`Reach::counting`]: the data chunks the walk reached first since the last
    /// [`Reach::take_first_reached`].
    first_reached: Option<BlobTotals>,
}

impl<'r> Reach<'r> {
    /// Starts a walk with an empty set.
    pub fn begin(repo: &'r IndexedRepository) -> Result<Self> {
        repo.with_cache(|c| c.reach_reset())?;
        Ok(Reach {
            repo,
            data: Vec::with_capacity(DATA_BATCH),
            first_reached: None,
        })
    }

    /// Starts a walk that also counts, root by root, the data chunks that no root before
    /// reached, with their bytes: walked oldest first, what each snapshot added to what the
    /// repository must keep (the report's dedup and compression over time). Each chunk
    /// counted costs one index lookup more.
    pub fn counting(repo: &'r IndexedRepository) -> Result<Self> {
        let mut reach = Reach::begin(repo)?;
        reach.first_reached = Some(BlobTotals::default());
        Ok(reach)
    }

    /// The data chunks reached first since the walk began or this was last called (all zero
    /// for a walk not started by [`Reach::counting`]).
    pub fn take_first_reached(&mut self) -> BlobTotals {
        self.first_reached
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Adds everything a snapshot references: its data directory and its tablespaces.
    pub fn snapshot(&mut self, snapshot: &Snapshot, on: &mut OnUnreadable<'_>) -> Result<()> {
        self.trees(&snapshot.root, on)?;
        if let Some(pg) = &snapshot.postgres {
            for tablespace in &pg.tablespaces {
                self.trees(&tablespace.root, on)?;
            }
        }
        self.add_data()
    }

    /// Adds the chunks of one archived WAL file.
    pub fn wal_entry(&mut self, entry: &WalEntry, on: &mut OnUnreadable<'_>) -> Result<()> {
        self.chunk_list(&entry.content, on)?;
        self.add_data()
    }

    /// Adds the data chunks held to the set.
    fn add_data(&mut self) -> Result<()> {
        if self.data.is_empty() {
            return Ok(());
        }
        self.repo.with_cache(|c| {
            c.reach_mark_all(BlobType::Data, &mut self.data, self.first_reached.as_mut())
        })
    }

    /// Marks a blob reached; true if it was not yet.
    fn mark(&self, blob_type: BlobType, id: &BlobId) -> Result<bool> {
        self.repo.with_cache(|c| c.reach_mark(blob_type, id))
    }

    fn trees(&mut self, ids: &[BlobId], on: &mut OnUnreadable<'_>) -> Result<()> {
        for id in ids {
            if !self.mark(BlobType::Tree, id)? {
                continue;
            }
            let tree = match self.repo.load_tree(id) {
                Ok(tree) => tree,
                Err(error) => {
                    on(Unreadable {
                        blob_type: BlobType::Tree,
                        id: *id,
                        error,
                    })?;
                    continue;
                }
            };
            for node in &tree.nodes {
                match &node.kind {
                    NodeKind::File { content, .. } => self.chunk_list(content, on)?,
                    NodeKind::Dir { trees } => self.trees(trees, on)?,
                    NodeKind::Symlink { .. } => {}
                }
            }
        }
        Ok(())
    }

    fn chunk_list(&mut self, list: &ChunkList, on: &mut OnUnreadable<'_>) -> Result<()> {
        if list.level == 0 {
            if self.data.len() + list.entries.len() > DATA_BATCH {
                self.add_data()?;
            }
            self.data.extend(list.entries.iter().map(|e| e.id));
            return Ok(());
        }
        for entry in &list.entries {
            if !self.mark(BlobType::ChunkList, &entry.id)? {
                continue;
            }
            match self.repo.load_chunk_list(&entry.id) {
                // Levels strictly decrease (checked here, as `data_chunks` does), so a hostile
                // list cannot make the walk loop.
                Ok(child) if child.level < list.level => self.chunk_list(&child, on)?,
                Ok(child) => on(Unreadable {
                    blob_type: BlobType::ChunkList,
                    id: entry.id,
                    error: Error::integrity(format!(
                        "chunk list {} has level {} under a list of level {}",
                        entry.id, child.level, list.level
                    )),
                })?,
                Err(error) => on(Unreadable {
                    blob_type: BlobType::ChunkList,
                    id: entry.id,
                    error,
                })?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::repo::random::RandomSource;
    use crate::repo::snapshot::Summary;
    use crate::repo::tree::{ChunkRef, Node};
    use crate::repo::{InitOptions, Repository};
    use crate::storage::Storage;

    fn file(name: &str, content: ChunkList) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            mode: 0o600,
            uid: 26,
            gid: 26,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            kind: NodeKind::File {
                size: content.entries.iter().map(|e| e.len).sum(),
                content,
            },
        }
    }

    fn snapshot(root: Vec<BlobId>) -> Snapshot {
        Snapshot {
            program_version: "test".into(),
            started_ns: 0,
            finished_ns: 0,
            hostname: "db1".into(),
            tags: vec![],
            parent: None,
            root,
            postgres: None,
            summary: Summary::default(),
        }
    }

    /// Data chunks beyond one batch, shared between two files and two snapshots: once a
    /// snapshot's walk returns, every chunk it references is in the set, each once.
    #[test]
    fn every_data_chunk_is_reached_across_batches_and_roots() {
        let repo = Repository::init(
            Storage::memory().unwrap(),
            b"pw",
            &InitOptions::with_kdf(KdfParams::INSECURE_FOR_TESTS),
            RandomSource::System,
        )
        .unwrap()
        .load_index_in_memory()
        .unwrap();
        // The walk never reads data chunks, so their ids need no stored blobs: they are the
        // reached blobs no index lists, which counts them apart from trees and chunk lists.
        let chunks: Vec<ChunkRef> = (0..2 * DATA_BATCH as u32 + 100)
            .map(|n| ChunkRef {
                id: BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes()),
                len: 8192,
            })
            .collect();
        let packer = repo.packer();
        let a = packer
            .add_chunk_list(chunks[..DATA_BATCH + 50].to_vec())
            .unwrap();
        let b = packer
            .add_chunk_list(chunks[DATA_BATCH..].to_vec())
            .unwrap();
        let first = packer.add_dir(vec![file("a", a.clone())]).unwrap();
        let second = packer.add_dir(vec![file("a", a), file("b", b)]).unwrap();
        packer.flush().unwrap();
        let unindexed = || repo.with_cache(|c| c.reached_unindexed()).unwrap().len();

        let mut reach = Reach::begin(&repo).unwrap();
        let mut stop = |u: Unreadable| Err(u.error);
        reach.snapshot(&snapshot(first), &mut stop).unwrap();
        assert_eq!(unindexed(), DATA_BATCH + 50);
        reach.snapshot(&snapshot(second), &mut stop).unwrap();
        assert_eq!(unindexed(), chunks.len());

        drop(reach);
        Reach::begin(&repo).unwrap();
        assert_eq!(repo.with_cache(|c| c.reached_count()).unwrap(), 0);
    }

    /// A counting walk, oldest snapshot first: each snapshot counts the chunks and bytes no
    /// earlier one referenced, a chunk shared with an earlier one not again.
    #[test]
    fn a_counting_walk_counts_each_chunk_once_for_the_first_snapshot_that_references_it() {
        let repo = Repository::init(
            Storage::memory().unwrap(),
            b"pw",
            &InitOptions::with_kdf(KdfParams::INSECURE_FOR_TESTS),
            RandomSource::System,
        )
        .unwrap()
        .load_index_in_memory()
        .unwrap();
        let packer = repo.packer();
        let chunk = |n: u8, len: usize| {
            let data = vec![n; len];
            ChunkRef {
                id: packer.add(BlobType::Data, &data).unwrap(),
                len: len as u64,
            }
        };
        let (a, b, c) = (chunk(1, 1000), chunk(2, 3000), chunk(3, 5000));
        let first = packer.add_chunk_list(vec![a, b]).unwrap();
        let second = packer.add_chunk_list(vec![b, c, a]).unwrap();
        let first = packer.add_dir(vec![file("f", first)]).unwrap();
        let second = packer.add_dir(vec![file("f", second)]).unwrap();
        packer.flush().unwrap();

        let mut reach = Reach::counting(&repo).unwrap();
        let mut stop = |u: Unreadable| Err(u.error);
        reach.snapshot(&snapshot(first), &mut stop).unwrap();
        let one = reach.take_first_reached();
        assert_eq!((one.blobs, one.raw_bytes), (2, 4000));
        // Runs of one byte compress to far less than they are.
        assert!(one.stored_bytes > 0 && one.stored_bytes < one.raw_bytes);
        reach
            .snapshot(&snapshot(second.clone()), &mut stop)
            .unwrap();
        let two = reach.take_first_reached();
        assert_eq!((two.blobs, two.raw_bytes), (1, 5000));
        assert_eq!(reach.take_first_reached(), BlobTotals::default());

        // A walk that does not count says nothing.
        let mut reach = Reach::begin(&repo).unwrap();
        reach.snapshot(&snapshot(second), &mut stop).unwrap();
        assert_eq!(reach.take_first_reached(), BlobTotals::default());
    }
}
