//! Rewrites what a snapshot or a WAL entry references for the target repository: data chunks
//! are re-encrypted under the target's keys (and, when the chunk-id keys differ, get new ids),
//! and trees and chunk lists are rebuilt around the new ids, split by the target's rules as a
//! backup into the target would split them.
//!
//! A chunk is read from the source only when the target may lack it:
//! - chunk-id keys shared: its id is the same in both; a chunk the target's index lists is
//!   neither read nor sent;
//! - keys differ: the target id recorded by an earlier copy ([`Translations`]) is used while
//!   the target's index still lists it; otherwise the chunk is read, hashed under the target's
//!   key and stored unless the target has it.
//!
//! Within one run a tree, chunk list or chunk met again is not translated again, however
//! many snapshots share it (up to a bound on memory: the memos start afresh when full).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::error::{Error, ErrorKind, Result};
use crate::repo::cache::translations::Translations;
use crate::repo::id::BlobId;
use crate::repo::object;
use crate::repo::pack::BlobType;
use crate::repo::packer::Packer;
use crate::repo::tree::{ChunkList, ChunkRef, Node, NodeKind};
use crate::repo::{IndexedRepository, Repository};

/// What the translation has done so far (read by the progress display while it runs).
#[derive(Debug, Default)]
pub struct Counters {
    /// Data chunks looked at (each distinct chunk once per run).
    pub chunks: AtomicU64,
    /// Of those, chunks the target already had, found without reading them.
    pub chunks_known: AtomicU64,
    /// Chunks read from the source (and their bytes, decrypted).
    pub chunks_read: AtomicU64,
    pub bytes_read: AtomicU64,
}

/// Translations remembered per run: ~64 bytes each for chunks, a few KiB for a file's chunk
/// list, so a copy's memory stays flat whatever the cluster's size.
const MEMO_CHUNKS: usize = 256 * 1024;
const MEMO_LISTS: usize = 8 * 1024;
const MEMO_DIRS: usize = 8 * 1024;
/// Translations are written to the table in transactions of this many, or of what was
/// learned in this long, so that a killed copy loses few.
const RECORD_BATCH: usize = 4096;
const RECORD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A map that forgets everything when it reaches its bound: a cache of work done.
struct Memo<K, V> {
    map: Mutex<HashMap<K, V>>,
    bound: usize,
}

impl<K: std::hash::Hash + Eq, V: Clone> Memo<K, V> {
    fn new(bound: usize) -> Self {
        Memo {
            map: Mutex::new(HashMap::new()),
            bound,
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        lock(&self.map).get(key).cloned()
    }

    fn insert(&self, key: K, value: V) {
        let mut map = lock(&self.map);
        if map.len() >= self.bound {
            map.clear();
        }
        map.insert(key, value);
    }
}

pub struct Translator<'a> {
    source: &'a IndexedRepository,
    target: &'a IndexedRepository,
    /// None: the repositories share the chunk-id key, ids translate as themselves.
    table: Option<Mutex<Translations>>,
    /// Data chunks translated in this run: stored or found in the target.
    chunks: Memo<BlobId, BlobId>,
    /// Translations learned and not yet written to the table. A translation may be recorded
    /// before its chunk is durable: it is only used while the target's index lists the chunk.
    learned: Mutex<Vec<(BlobId, BlobId)>>,
    recorded: Mutex<std::time::Instant>,
    /// Chunk lists (by the hash of their encoding) and directories translated in this run.
    lists: Memo<[u8; 32], ChunkList>,
    dirs: Memo<Vec<BlobId>, Vec<BlobId>>,
    interrupted: &'a AtomicBool,
    pub counters: Counters,
}

impl<'a> Translator<'a> {
    /// `table` is required when the repositories do not share the chunk-id key.
    pub fn new(
        source: &'a IndexedRepository,
        target: &'a IndexedRepository,
        table: Option<Translations>,
        interrupted: &'a AtomicBool,
    ) -> Result<Self> {
        let shared = target.shares_chunk_ids_with(source);
        if !shared && table.is_none() {
            return Err(Error::internal(
                "a copy between repositories with different chunk-id keys needs a translation \
                 table",
            ));
        }
        Ok(Translator {
            source,
            target,
            table: if shared { None } else { table.map(Mutex::new) },
            chunks: Memo::new(MEMO_CHUNKS),
            learned: Mutex::new(Vec::new()),
            recorded: Mutex::new(std::time::Instant::now()),
            lists: Memo::new(MEMO_LISTS),
            dirs: Memo::new(MEMO_DIRS),
            interrupted,
            counters: Counters::default(),
        })
    }

    /// Whether ids are the same in both repositories.
    pub fn shared_ids(&self) -> bool {
        self.table.is_none()
    }

    fn check_interrupted(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        Ok(())
    }

    /// Writes the translations learned so far to the table.
    pub fn record(&self) -> Result<()> {
        *lock(&self.recorded) = std::time::Instant::now();
        let learned = std::mem::take(&mut *lock(&self.learned));
        match &self.table {
            Some(table) => lock(table).record(&learned),
            None => Ok(()),
        }
    }

    /// A directory's tree blobs in the target.
    pub fn dir(&self, packer: &Packer, trees: &[BlobId]) -> Result<Vec<BlobId>> {
        if let Some(done) = self.dirs.get(trees) {
            return Ok(done);
        }
        self.check_interrupted()?;
        let nodes = self.source.dir_entries(trees)?;
        let nodes = nodes
            .into_par_iter()
            .map(|node| self.node(packer, node))
            .collect::<Result<Vec<Node>>>()?;
        let translated = packer.add_dir(nodes)?;
        self.dirs.insert(trees.to_vec(), translated.clone());
        Ok(translated)
    }

    fn node(&self, packer: &Packer, mut node: Node) -> Result<Node> {
        match &mut node.kind {
            NodeKind::File { content, .. } => *content = self.chunk_list(packer, content)?,
            NodeKind::Dir { trees } => *trees = self.dir(packer, trees)?,
            NodeKind::Symlink { .. } => {}
        }
        Ok(node)
    }

    /// A file's (or WAL file's) chunk list in the target.
    pub fn chunk_list(&self, packer: &Packer, list: &ChunkList) -> Result<ChunkList> {
        let key = *blake3::hash(&object::encode(list)).as_bytes();
        if let Some(done) = self.lists.get(&key) {
            return Ok(done);
        }
        self.check_interrupted()?;
        let chunks = self.source.data_chunks(list)?;
        let translated = chunks
            .par_iter()
            .map(|chunk| self.data_chunk(packer, chunk))
            .collect::<Result<Vec<ChunkRef>>>()?;
        let out = packer.add_chunk_list(translated)?;
        self.lists.insert(key, out.clone());
        Ok(out)
    }

    /// One data chunk in the target, stored there if it is missing.
    fn data_chunk(&self, packer: &Packer, chunk: &ChunkRef) -> Result<ChunkRef> {
        let translated = |id| ChunkRef { id, len: chunk.len };
        if let Some(id) = self.chunks.get(&chunk.id) {
            return Ok(translated(id));
        }
        self.counters.chunks.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = self.known(&chunk.id)? {
            self.counters.chunks_known.fetch_add(1, Ordering::Relaxed);
            self.learn(chunk.id, id, false);
            return Ok(translated(id));
        }
        self.check_interrupted()?;
        let data = self.source.read_blob(BlobType::Data, &chunk.id)?;
        self.counters.chunks_read.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let id = packer.blob_id(&data);
        packer.add_with_ids(BlobType::Data, &[(id, &data)])?;
        self.learn(chunk.id, id, true);
        if lock(&self.learned).len() >= RECORD_BATCH
            || lock(&self.recorded).elapsed() >= RECORD_EVERY
        {
            self.record()?;
        }
        Ok(translated(id))
    }

    /// The chunk's id in the target if the target's index lists it (as a live copy), found
    /// without reading the chunk.
    fn known(&self, source: &BlobId) -> Result<Option<BlobId>> {
        let candidate = match &self.table {
            None => Some(*source),
            Some(table) => lock(table).get(source)?,
        };
        let Some(id) = candidate else {
            return Ok(None);
        };
        let live = self
            .target
            .with_cache(|c| c.contains(BlobType::Data, &id))?;
        Ok(live.then_some(id))
    }

    fn learn(&self, source: BlobId, target: BlobId, new: bool) {
        self.chunks.insert(source, target);
        if new && self.table.is_some() {
            lock(&self.learned).push((source, target));
        }
    }

    /// The target repository, for callers that write what was translated.
    pub fn target(&self) -> &Repository {
        self.target
    }
}
