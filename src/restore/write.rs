//! Writing file contents back: each pack is read once (in a few large ranges), its blobs
//! decrypted, checked against their ids and written to every place that needs them, packs in
//! parallel. In a delta restore, chunks already on disk with the right content are left alone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use rayon::prelude::*;

use super::plan::{PlannedFile, file_chunks};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::repo::IndexedRepository;
use crate::repo::cache::BlobLocation;
use crate::repo::id::{BlobId, PackId};
use crate::repo::layout;
use crate::repo::pack::BlobType;
use crate::repo::tree::ChunkRef;
use crate::storage::Storage;

/// Blobs whose envelopes are closer than this in a pack are fetched in one read.
const READ_GAP: u64 = 1 << 20;
/// A single read from a pack is at most this long (bounds memory per thread).
const READ_MAX: u64 = 2 << 20;
/// Files are restored in batches of at most this many chunks, so the plan of where each chunk
/// goes stays bounded whatever the cluster's size (~400 bytes per chunk while a batch is
/// planned: ~25 MiB).
const BATCH_CHUNKS: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct WriteCounters {
    pub bytes_written: AtomicU64,
    pub bytes_kept: AtomicU64,
    pub files_done: AtomicU64,
}

pub struct Writer<'a> {
    pub repo: &'a IndexedRepository,
    pub interrupted: &'a AtomicBool,
    pub counters: &'a WriteCounters,
    /// Compare existing files' chunks and rewrite only those that differ.
    pub delta: bool,
    /// Packs are fetched and written on more threads than cores: a thread waiting for a
    /// read from storage leaves its core to another that decrypts.
    pub io_pool: &'a rayon::ThreadPool,
}

/// The pool [`Writer::io_pool`] wants: on a local repository one thread per core and one more,
/// enough to keep the cores busy while a read waits (more threads only held more buffers and
/// contended for the same file); on a remote one, enough reads in flight to cover the
/// network's round trips ([`Storage::reads_in_flight`]).
pub fn io_pool(storage: &Storage) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(storage.reads_in_flight(rayon::current_num_threads() + 1))
        .thread_name(|i| format!("restore-io-{i}"))
        .build()
        .map_err(|e| Error::internal(format!("starting restore threads: {e}")))
}

/// Asks the kernel to start writing a file's dirty pages (without waiting): the fsync that
/// follows then finds little left to do. Advisory; an error changes nothing.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Where one chunk goes: which file of the batch, at which offset.
#[derive(Clone, Copy)]
struct Destination {
    file: usize,
    offset: u64,
}

impl Writer<'_> {
    fn check_interrupted(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        Ok(())
    }

    /// Restores `files` completely: content, mode, mtime, fsync.
    pub fn write_files(&self, files: &[PlannedFile]) -> Result<()> {
        let mut start = 0;
        while start < files.len() {
            let mut end = start;
            let mut batch_chunks = Vec::new();
            let mut count = 0;
            while end < files.len() && (count < BATCH_CHUNKS || end == start) {
                let chunks = file_chunks(self.repo, &files[end])?;
                count += chunks.len();
                batch_chunks.push(chunks);
                end += 1;
            }
            self.write_batch(&files[start..end], &batch_chunks)?;
            start = end;
        }
        Ok(())
    }

    fn write_batch(&self, files: &[PlannedFile], chunks: &[Vec<ChunkRef>]) -> Result<()> {
        // Which chunks each file needs written: all of them, or in a delta restore those
        // whose bytes on disk differ.
        let needed: Vec<Vec<(u64, ChunkRef)>> = files
            .par_iter()
            .zip(chunks.par_iter())
            .map(|(file, chunks)| self.prepare_file(file, chunks))
            .collect::<Result<_>>()?;
        let mut by_blob: HashMap<BlobId, Vec<Destination>> = HashMap::new();
        for (i, pieces) in needed.iter().enumerate() {
            for (offset, chunk) in pieces {
                by_blob.entry(chunk.id).or_default().push(Destination {
                    file: i,
                    offset: *offset,
                });
            }
        }
        let mut by_pack: HashMap<PackId, Vec<(BlobLocation, Vec<Destination>)>> = HashMap::new();
        self.repo.with_cache(|c| {
            c.locate_many(BlobType::Data, &mut by_blob, |loc, destinations| {
                by_pack
                    .entry(loc.pack)
                    .or_default()
                    .push((loc, destinations));
            })
        })?;
        if let Some(id) = by_blob.keys().next() {
            return Err(Error::integrity(format!(
                "data blob {id} is not in any index file"
            )));
        }
        let packs: Vec<_> = by_pack.into_iter().collect();
        self.io_pool.install(|| {
            packs
                .into_par_iter()
                .try_for_each(|(pack, blobs)| self.write_from_pack(&pack, blobs, files))
        })?;
        files.par_iter().try_for_each(|file| self.finish_file(file))
    }

    /// Creates or resizes the file and returns the chunks (with offsets) still to write.
    fn prepare_file(
        &self,
        file: &PlannedFile,
        chunks: &[ChunkRef],
    ) -> Result<Vec<(u64, ChunkRef)>> {
        let with_offsets = chunks.iter().scan(0u64, |pos, c| {
            let at = *pos;
            *pos += c.len;
            Some((at, *c))
        });
        let existing = self.delta
            && std::fs::symlink_metadata(&file.path).is_ok_and(|m| m.file_type().is_file());
        let handle = OpenOptions::new()
            .write(true)
            .read(true)
            .create(true)
            .truncate(!existing)
            .mode(0o600)
            .open(&file.path)
            .map_err(Error::io_at("creating", &file.path))?;
        let needed: Vec<(u64, ChunkRef)> = if existing {
            let mut buf = Vec::new();
            with_offsets
                .filter(|(offset, chunk)| {
                    buf.resize(chunk.len as usize, 0);
                    let same = handle.read_exact_at(&mut buf, *offset).is_ok()
                        && self.repo.blob_id(&buf) == chunk.id;
                    if same {
                        self.counters
                            .bytes_kept
                            .fetch_add(chunk.len, Ordering::Relaxed);
                    }
                    !same
                })
                .collect()
        } else {
            with_offsets.collect()
        };
        handle
            .set_len(file.size)
            .map_err(Error::io_at("resizing", &file.path))?;
        Ok(needed)
    }

    fn write_from_pack(
        &self,
        pack: &PackId,
        mut blobs: Vec<(BlobLocation, Vec<Destination>)>,
        files: &[PlannedFile],
    ) -> Result<()> {
        blobs.sort_by_key(|(loc, _)| loc.entry.offset);
        let path = layout::pack(pack);
        let mut open: HashMap<usize, File> = HashMap::new();
        let mut i = 0;
        while i < blobs.len() {
            self.check_interrupted()?;
            // One read covering blobs i..j.
            let start = blobs[i].0.entry.offset;
            let mut end = start + u64::from(blobs[i].0.entry.stored_len);
            let mut j = i + 1;
            while j < blobs.len() {
                let e = &blobs[j].0.entry;
                let e_end = e.offset + u64::from(e.stored_len);
                if e.offset > end + READ_GAP || e_end - start > READ_MAX {
                    break;
                }
                end = end.max(e_end);
                j += 1;
            }
            let bytes = self
                .repo
                .storage()
                .read_range(&path, start, end - start)
                .with_context(|| format!("pack {path}"))?;
            for (loc, destinations) in &blobs[i..j] {
                let at = (loc.entry.offset - start) as usize;
                let envelope = &bytes[at..at + loc.entry.stored_len as usize];
                let data = self.repo.open_blob(loc, envelope)?;
                for d in destinations {
                    let target = &files[d.file].path;
                    let handle = match open.entry(d.file) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => v.insert(
                            OpenOptions::new()
                                .write(true)
                                .open(target)
                                .map_err(Error::io_at("opening", target))?,
                        ),
                    };
                    handle
                        .write_all_at(&data, d.offset)
                        .map_err(Error::io_at("writing", target))?;
                    self.counters
                        .bytes_written
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            i = j;
        }
        // Start writing this pack's data back now rather than at the final fsync, so the disk
        // works while the other packs are decrypted.
        for handle in open.values() {
            start_writeback(handle);
        }
        Ok(())
    }

    /// Mode and mtime as in the snapshot, and the content durable.
    fn finish_file(&self, file: &PlannedFile) -> Result<()> {
        let handle = OpenOptions::new()
            .write(true)
            .open(&file.path)
            .map_err(Error::io_at("opening", &file.path))?;
        handle
            .set_permissions(std::fs::Permissions::from_mode(file.node.mode & 0o7777))
            .map_err(Error::io_at("setting the mode of", &file.path))?;
        let mtime = UNIX_EPOCH + Duration::from_nanos(file.node.mtime_ns.max(0) as u64);
        handle
            .set_modified(mtime)
            .map_err(Error::io_at("setting the mtime of", &file.path))?;
        handle
            .sync_all()
            .map_err(Error::io_at("syncing", &file.path))?;
        self.counters.files_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
