//! Writes new blobs into packs, skipping blobs the repository already has, and records the
//! packs in index files. Write order: a pack is durable before an index file lists it, and an
//! index file is durable before the cache (and so any later snapshot) relies on it.

use std::collections::HashSet;

use super::IndexedRepository;
use super::id::BlobId;
use super::index_file::{IndexFile, IndexedPack};
use super::layout;
use super::object;
use super::pack::{self, BlobType, PackWriter};
use super::tree::{ChunkList, ChunkRef, MAX_LIST_LEVEL, Node, Tree, split};
use crate::error::{Context, Error, Result};

/// Packs written before an index file is written for them: bounds what a crash can leave
/// unindexed, and the memory held for pending entries.
const PACKS_PER_INDEX_FILE: usize = 64;

/// What a packer added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackerStats {
    pub new_blobs: u64,
    pub new_raw_bytes: u64,
    pub new_stored_bytes: u64,
    pub packs: u64,
    pub index_files: u64,
}

/// A pack writer with room for a full pack and the envelope that crosses the limit, so its
/// buffer is never copied while it grows (the capacity is reserved, not touched, so memory is
/// used only as the pack fills).
fn new_writer(pack_size: u32) -> PackWriter {
    PackWriter::with_capacity(pack_size as usize + (4 << 20))
}

pub struct Packer<'r> {
    repo: &'r mut IndexedRepository,
    /// Data and metadata (trees, chunk lists) go to separate packs, so metadata can be read
    /// without fetching file contents.
    data: PackWriter,
    metadata: PackWriter,
    unindexed: Vec<IndexedPack>,
    /// Blobs added by this packer and not yet in the cache.
    added: HashSet<(BlobType, BlobId)>,
    stats: PackerStats,
}

impl<'r> Packer<'r> {
    pub(super) fn new(repo: &'r mut IndexedRepository) -> Self {
        let pack_size = repo.config.pack_size;
        Packer {
            repo,
            data: new_writer(pack_size),
            metadata: new_writer(pack_size),
            unindexed: Vec::new(),
            added: HashSet::new(),
            stats: PackerStats::default(),
        }
    }

    pub fn stats(&self) -> PackerStats {
        self.stats
    }

    /// Stores a blob unless the repository already has it; returns its id either way.
    pub fn add(&mut self, blob_type: BlobType, data: &[u8]) -> Result<BlobId> {
        let id = self.repo.blob_id(data);
        if self.added.contains(&(blob_type, id)) || self.repo.cache.contains(blob_type, &id)? {
            return Ok(id);
        }
        let level = self.repo.config.compression_level;
        let envelope = pack::seal_blob(
            &self.repo.keys.data,
            blob_type,
            &id,
            data,
            level,
            &mut self.repo.random.rng(),
        )?;
        self.stats.new_blobs += 1;
        self.stats.new_raw_bytes += data.len() as u64;
        self.stats.new_stored_bytes += envelope.len() as u64;
        self.added.insert((blob_type, id));
        let writer = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree | BlobType::ChunkList => &mut self.metadata,
        };
        writer.add(blob_type, id, &envelope, data.len() as u32);
        if writer.len() >= self.repo.config.pack_size as usize {
            let full = std::mem::replace(writer, new_writer(self.repo.config.pack_size));
            self.write_pack(full)?;
        }
        Ok(id)
    }

    fn write_pack(&mut self, writer: PackWriter) -> Result<()> {
        if writer.is_empty() {
            return Ok(());
        }
        let (id, bytes, header) =
            writer.finish(&self.repo.keys.data, &mut self.repo.random.rng())?;
        let size = bytes.len() as u64;
        let path = layout::pack(&id);
        self.repo
            .storage
            .write(&path, bytes)
            .with_context(|| format!("pack {path}"))?;
        self.stats.packs += 1;
        self.unindexed.push(IndexedPack {
            id,
            size,
            blobs: header.blobs,
        });
        if self.unindexed.len() >= PACKS_PER_INDEX_FILE {
            self.write_index()?;
        }
        Ok(())
    }

    fn write_index(&mut self) -> Result<()> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: std::mem::take(&mut self.unindexed),
        };
        let id = self.repo.save_index_file(&file)?;
        self.repo.cache.add_index_file(&id, &file)?;
        self.stats.index_files += 1;
        for blob in file.packs.iter().flat_map(|p| &p.blobs) {
            self.added.remove(&(blob.blob_type, blob.id));
        }
        Ok(())
    }

    /// Writes the open packs and an index file for every pack not yet indexed. After this,
    /// every blob added is durable and findable.
    pub fn flush(mut self) -> Result<PackerStats> {
        let data = std::mem::take(&mut self.data);
        let metadata = std::mem::take(&mut self.metadata);
        self.write_pack(data)?;
        self.write_pack(metadata)?;
        self.write_index()?;
        Ok(self.stats)
    }
}

impl Packer<'_> {
    /// Stores a file's chunk list: inline if short, else split into chunk-list blobs, level
    /// by level, until the top level is short. Unchanged runs of chunks give the same
    /// chunk-list blobs, which are then not stored again.
    pub fn add_chunk_list(&mut self, entries: Vec<ChunkRef>) -> Result<ChunkList> {
        let mut list = ChunkList { level: 0, entries };
        while list.entries.len() > split::INLINE_ENTRIES {
            if list.level >= MAX_LIST_LEVEL {
                return Err(Error::internal("chunk list deeper than the format allows"));
            }
            let mut upper = Vec::new();
            for run in split::list_runs(&list.entries) {
                let blob = ChunkList {
                    level: list.level,
                    entries: run.to_vec(),
                };
                let id = self.add(BlobType::ChunkList, &object::encode(&blob))?;
                upper.push(ChunkRef {
                    id,
                    len: run.iter().map(|e| e.len).sum(),
                });
            }
            list = ChunkList {
                level: list.level + 1,
                entries: upper,
            };
        }
        Ok(list)
    }

    /// Stores a directory's entries (sorted here by name) as one or more tree blobs.
    pub fn add_dir(&mut self, mut nodes: Vec<Node>) -> Result<Vec<BlobId>> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = nodes.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::internal(format!(
                "two directory entries named {:?}",
                String::from_utf8_lossy(&pair[0].name)
            )));
        }
        if nodes.is_empty() {
            return Ok(vec![
                self.add(BlobType::Tree, &object::encode(&Tree::default()))?,
            ]);
        }
        let name_hash = |n: &Node| self.repo.blob_id(&n.name);
        let runs: Vec<Vec<Node>> = split::tree_runs(&nodes, name_hash)
            .into_iter()
            .map(<[Node]>::to_vec)
            .collect();
        runs.into_iter()
            .map(|run| self.add(BlobType::Tree, &object::encode(&Tree { nodes: run })))
            .collect()
    }
}
