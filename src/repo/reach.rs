//! Reachability: the set of blobs that the repository's roots (snapshots and WAL catalogue
//! entries) reference, directly or through trees and chunk lists. Prune keeps exactly this set;
//! verify checks it is all there.
//!
//! The set lives in a temporary table of the index cache, spilled to a temporary file, so a
//! walk's memory does not grow with the number of chunks. Each tree and chunk-list blob is read
//! once per walk however many snapshots share it: a snapshot of an unchanged cluster costs one
//! lookup per root tree.

use super::IndexedRepository;
use super::id::BlobId;
use super::pack::BlobType;
use super::snapshot::Snapshot;
use super::tree::{ChunkList, NodeKind};
use super::walcat::WalEntry;
use crate::error::{Error, Result};

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

/// A walk in progress; the blobs it has reached are in the cache's `reached` table until the
/// next [`Reach::begin`].
pub struct Reach<'r> {
    repo: &'r IndexedRepository,
}

impl<'r> Reach<'r> {
    /// Starts a walk with an empty set.
    pub fn begin(repo: &'r IndexedRepository) -> Result<Self> {
        repo.with_cache(|c| c.reach_reset())?;
        Ok(Reach { repo })
    }

    /// Adds everything a snapshot references: its data directory and its tablespaces.
    pub fn snapshot(&mut self, snapshot: &Snapshot, on: &mut OnUnreadable<'_>) -> Result<()> {
        self.trees(&snapshot.root, on)?;
        if let Some(pg) = &snapshot.postgres {
            for tablespace in &pg.tablespaces {
                self.trees(&tablespace.root, on)?;
            }
        }
        Ok(())
    }

    /// Adds the chunks of one archived WAL file.
    pub fn wal_entry(&mut self, entry: &WalEntry, on: &mut OnUnreadable<'_>) -> Result<()> {
        self.chunk_list(&entry.content, on)
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
            for entry in &list.entries {
                self.mark(BlobType::Data, &entry.id)?;
            }
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
