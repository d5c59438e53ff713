//! Writes new blobs into packs, skipping blobs the repository already has, and records the
//! packs in index files. Write order: a pack is durable before an index file lists it, and an
//! index file is durable before the cache (and so any later snapshot) relies on it.
//!
//! A packer is shared by the threads of a backup: each thread hashes its chunks, asks which
//! are new, and compresses and encrypts those itself, so sealing runs on every core. Only
//! appending an envelope to the open pack is serialised; the thread that fills a pack
//! finishes and uploads it outside the lock while the others go on filling the next one, so
//! at most one upload per thread is in flight.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use super::cache::IndexCache;
use super::id::BlobId;
use super::index_file::{IndexFile, IndexedPack};
use super::layout;
use super::object;
use super::pack::{self, BlobType, PackWriter};
use super::tree::{ChunkList, ChunkRef, MAX_LIST_LEVEL, Node, Tree, split};
use super::{IndexedRepository, Repository};
use crate::error::{Context, Error, Result};

/// An index file is written once this many blobs sit in packs no index file lists yet (or 64
/// packs, for large blobs): bounds what a crash can leave unindexed and the memory held for
/// pending entries (~100 bytes per blob).
const BLOBS_PER_INDEX_FILE: usize = 64 * 1024;
const PACKS_PER_INDEX_FILE: usize = 64;

/// What a packer added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackerStats {
    pub new_blobs: u64,
    pub new_raw_bytes: u64,
    pub new_stored_bytes: u64,
    pub packs: u64,
    pub index_files: u64,
    /// Blobs not stored because the index cache already listed them: references to data
    /// this packer did not write, which a writer with no lock re-checks before it commits
    /// (format-spec §13).
    pub cache_hits: u64,
}

impl std::ops::AddAssign for PackerStats {
    fn add_assign(&mut self, other: PackerStats) {
        self.new_blobs += other.new_blobs;
        self.new_raw_bytes += other.new_raw_bytes;
        self.new_stored_bytes += other.new_stored_bytes;
        self.packs += other.packs;
        self.index_files += other.index_files;
        self.cache_hits += other.cache_hits;
    }
}

/// A pack writer with room for a full pack and the envelope that crosses the limit, so its
/// buffer is never copied while it grows (the capacity is reserved, not touched, so memory is
/// used only as the pack fills).
fn new_writer(pack_size: u32) -> PackWriter {
    PackWriter::with_capacity(pack_size as usize + (4 << 20))
}

#[derive(Default)]
struct OpenPacks {
    /// Data and metadata (trees, chunk lists) go to separate packs, so metadata can be read
    /// without fetching file contents.
    data: PackWriter,
    metadata: PackWriter,
}

#[derive(Default)]
struct Unindexed {
    packs: Vec<IndexedPack>,
    blobs: usize,
}

pub struct Packer<'r> {
    repo: &'r Repository,
    cache: &'r Mutex<IndexCache>,
    /// Blobs this packer took on and the cache does not list yet: being sealed, in an open
    /// pack, or in a pack no index file lists yet. A blob is claimed once, so two threads
    /// meeting the same new chunk store it once.
    claimed: Mutex<HashSet<(BlobType, BlobId)>>,
    open: Mutex<OpenPacks>,
    unindexed: Mutex<Unindexed>,
    stats: Mutex<PackerStats>,
    /// An index file is written once this many packs are unindexed.
    packs_per_index_file: usize,
}

/// Locks a mutex; a panic in another thread is already being reported, so a poisoned lock
/// still guards consistent data here (every critical section is a few field updates).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<'r> Packer<'r> {
    pub(super) fn new(indexed: &'r IndexedRepository) -> Self {
        let repo = &indexed.repo;
        let pack_size = repo.config.pack_size;
        Packer {
            repo,
            cache: &indexed.cache,
            claimed: Mutex::new(HashSet::new()),
            open: Mutex::new(OpenPacks {
                data: new_writer(pack_size),
                metadata: new_writer(pack_size),
            }),
            unindexed: Mutex::new(Unindexed::default()),
            stats: Mutex::new(PackerStats::default()),
            packs_per_index_file: PACKS_PER_INDEX_FILE,
        }
    }

    /// Writes an index file after every `packs` packs (at least one) instead of 64: for a
    /// writer whose packs cost much to send again (a copy over a slow link), so that less is
    /// lost when it is interrupted, at the price of more, smaller index files.
    pub fn index_every(mut self, packs: usize) -> Self {
        self.packs_per_index_file = packs.clamp(1, PACKS_PER_INDEX_FILE);
        self
    }

    pub fn stats(&self) -> PackerStats {
        *lock(&self.stats)
    }

    /// The id a blob with this content has in the repository.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        self.repo.blob_id(data)
    }

    /// Stores a blob unless the repository already has it; returns its id either way.
    pub fn add(&self, blob_type: BlobType, data: &[u8]) -> Result<BlobId> {
        let id = self.repo.blob_id(data);
        self.add_with_ids(blob_type, &[(id, data)])?;
        Ok(id)
    }

    /// Stores the blobs the repository does not have yet. `blobs` pairs each blob's content
    /// with its id (from [`Self::blob_id`]); the caller hashes, so it can also use the ids.
    /// Returns how many of them were new.
    pub fn add_with_ids(&self, blob_type: BlobType, blobs: &[(BlobId, &[u8])]) -> Result<usize> {
        let fresh = self.claim_new(blob_type, blobs)?;
        if fresh.is_empty() {
            return Ok(0);
        }
        let level = self.repo.config.compression_level;
        let mut sealed = Vec::with_capacity(fresh.len());
        for &(id, data) in &fresh {
            let envelope = pack::seal_blob(
                &self.repo.keys.data,
                blob_type,
                &id,
                data,
                level,
                &mut self.repo.random.rng(),
            )?;
            sealed.push((id, envelope, data.len() as u32));
        }
        self.place(blob_type, &sealed)?;
        Ok(fresh.len())
    }

    /// Stores a blob already sealed (an envelope copied out of another pack by prune), even
    /// if the index lists it: the copies it lists are about to be condemned. Returns false if
    /// this packer already holds it.
    pub fn add_sealed(
        &self,
        blob_type: BlobType,
        id: BlobId,
        envelope: Vec<u8>,
        raw_len: u32,
    ) -> Result<bool> {
        if !lock(&self.claimed).insert((blob_type, id)) {
            return Ok(false);
        }
        self.place(blob_type, &[(id, envelope, raw_len)])?;
        Ok(true)
    }

    /// Appends sealed blobs to the open pack of their kind, writing the packs they fill.
    fn place(&self, blob_type: BlobType, sealed: &[(BlobId, Vec<u8>, u32)]) -> Result<()> {
        {
            let mut stats = lock(&self.stats);
            stats.new_blobs += sealed.len() as u64;
            stats.new_raw_bytes += sealed.iter().map(|s| u64::from(s.2)).sum::<u64>();
            stats.new_stored_bytes += sealed.iter().map(|s| s.1.len() as u64).sum::<u64>();
        }
        let mut full = Vec::new();
        {
            let pack_size = self.repo.config.pack_size;
            let mut open = lock(&self.open);
            let writer = match blob_type {
                BlobType::Data => &mut open.data,
                BlobType::Tree | BlobType::ChunkList => &mut open.metadata,
            };
            for (id, envelope, raw_len) in sealed {
                writer.add(blob_type, *id, envelope, *raw_len);
                if writer.len() >= pack_size as usize {
                    full.push(std::mem::replace(writer, new_writer(pack_size)));
                }
            }
        }
        for writer in full {
            self.write_pack(writer)?;
        }
        Ok(())
    }

    /// The blobs of `blobs` that neither the cache nor this packer has, now claimed by the
    /// caller. Duplicates within `blobs` are claimed once.
    fn claim_new<'a>(
        &self,
        blob_type: BlobType,
        blobs: &[(BlobId, &'a [u8])],
    ) -> Result<Vec<(BlobId, &'a [u8])>> {
        // Claimed blobs first: a blob leaves `claimed` only after the cache lists it.
        let mut unknown: Vec<(BlobId, &[u8])> = {
            let claimed = lock(&self.claimed);
            blobs
                .iter()
                .filter(|(id, _)| !claimed.contains(&(blob_type, *id)))
                .copied()
                .collect()
        };
        if unknown.is_empty() {
            return Ok(unknown);
        }
        {
            let cache = lock(self.cache);
            let looked_up = unknown.len();
            let mut kept = Vec::with_capacity(looked_up);
            for (id, data) in unknown {
                if !cache.contains(blob_type, &id)? {
                    kept.push((id, data));
                }
            }
            lock(&self.stats).cache_hits += (looked_up - kept.len()) as u64;
            unknown = kept;
        }
        let mut claimed = lock(&self.claimed);
        unknown.retain(|(id, _)| claimed.insert((blob_type, *id)));
        Ok(unknown)
    }

    fn write_pack(&self, writer: PackWriter) -> Result<()> {
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
        lock(&self.stats).packs += 1;
        let ready = {
            let mut unindexed = lock(&self.unindexed);
            unindexed.blobs += header.blobs.len();
            unindexed.packs.push(IndexedPack {
                id,
                size,
                blobs: header.blobs,
            });
            if unindexed.blobs >= BLOBS_PER_INDEX_FILE
                || unindexed.packs.len() >= self.packs_per_index_file
            {
                std::mem::take(&mut *unindexed).packs
            } else {
                Vec::new()
            }
        };
        self.write_index(ready)
    }

    fn write_index(&self, packs: Vec<IndexedPack>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            packs,
            ..IndexFile::default()
        };
        let id = self.repo.save_index_file(&file)?;
        lock(self.cache).add_index_file(&id, &file)?;
        lock(&self.stats).index_files += 1;
        let mut claimed = lock(&self.claimed);
        for blob in file.packs.iter().flat_map(|p| &p.blobs) {
            claimed.remove(&(blob.blob_type, blob.id));
        }
        Ok(())
    }

    /// Writes the open packs and an index file for every pack not yet indexed. After this,
    /// every blob added is durable and findable.
    pub fn flush(self) -> Result<PackerStats> {
        let open = std::mem::take(&mut *lock(&self.open));
        self.write_pack(open.data)?;
        self.write_pack(open.metadata)?;
        let rest = std::mem::take(&mut *lock(&self.unindexed)).packs;
        self.write_index(rest)?;
        Ok(self.stats())
    }
}

impl Packer<'_> {
    /// Stores a file's chunk list: inline if short, else split into chunk-list blobs, level
    /// by level, until the top level is short. Unchanged runs of chunks give the same
    /// chunk-list blobs, which are then not stored again.
    pub fn add_chunk_list(&self, entries: Vec<ChunkRef>) -> Result<ChunkList> {
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
    pub fn add_dir(&self, mut nodes: Vec<Node>) -> Result<Vec<BlobId>> {
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
