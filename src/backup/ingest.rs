//! Reading one file into the repository: cut into chunks, each hashed, and the new ones
//! compressed, encrypted and packed by the calling thread. Relation files are read in regions
//! that are processed in parallel (a 1 GiB segment keeps every core busy); other files are
//! streamed. Pages of relation files are checked against their checksums on the way.

use std::fs::File;
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::chunk::{ChunkerParams, Cutter, FileClass, GearTable, StreamChunker};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::checksum::{self, PAGE_SIZE, PageVerdict};
use crate::repo::Packer;
use crate::repo::id::BlobId;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::BadPage;
use crate::repo::tree::ChunkRef;

/// Bytes of a relation file read and processed as one unit of parallel work; a multiple of
/// the relation chunker's maximum, so cuts in a region do not depend on other regions.
const REGION_BYTES: u64 = 4 << 20;
thread_local! {
    /// Each thread reads its regions into the same buffer: a fresh 4 MiB allocation per region
    /// would be mapped and page-faulted in anew every time (a third of a backup's CPU was
    /// spent in the kernel that way). Nothing done while it is borrowed may wait on rayon work,
    /// or a region stolen meanwhile would find it borrowed.
    static REGION_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Chunks of a streamed file are handed to the packer in batches of about this many bytes.
const STREAM_BATCH_BYTES: usize = 4 << 20;

/// Page checksum verification for a cluster with data checksums.
#[derive(Clone, Copy, Debug)]
pub struct PageCheck {
    /// Pages with an LSN at or after this are being rewritten; WAL replay restores them.
    pub start_lsn: u64,
    pub relation_segment_blocks: u32,
}

/// Counters a progress display reads while a backup runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_read: AtomicU64,
    pub files_read: AtomicU64,
    pub files_reused: AtomicU64,
    pub bytes_reused: AtomicU64,
}

/// How a file is read: its chunker class, and for relation files the segment number that
/// gives its pages' block numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    Relation { segment: u32 },
    Wal,
    Other,
}

impl FileRole {
    fn class(self) -> FileClass {
        match self {
            FileRole::Relation { .. } => FileClass::Relation,
            FileRole::Wal => FileClass::Wal,
            FileRole::Other => FileClass::Other,
        }
    }
}

/// A relation file being read: where it is, its path in the snapshot (for bad pages), and its
/// segment number (for its pages' block numbers).
struct OpenRelation<'a> {
    file: &'a File,
    path: &'a Path,
    rel: &'a [u8],
    segment: u32,
}

/// A file as stored: its length when read and its chunks.
pub struct StoredFile {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

/// Everything a thread needs to store files; shared by all threads of a backup.
pub struct Ingest<'a> {
    pub packer: &'a Packer<'a>,
    pub gear: GearTable,
    pub chunker: ChunkerParams,
    pub pages: Option<PageCheck>,
    /// Set by SIGINT/SIGTERM: work stops at the next chunk batch.
    pub interrupted: &'a AtomicBool,
    pub counters: Counters,
    pub bad_pages: Mutex<Vec<BadPage>>,
}

impl Ingest<'_> {
    pub fn check_interrupted(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        Ok(())
    }

    /// Stores the file at `path` (`rel` is its path in the snapshot, for messages and bad
    /// pages). `Ok(None)` when the file vanished before it could be opened: the server
    /// dropped it during the backup, and WAL replay drops it again.
    pub fn store_file(
        &self,
        path: &Path,
        rel: &[u8],
        role: FileRole,
    ) -> Result<Option<StoredFile>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::local_io(e, format!("opening {}", path.display()))),
        };
        let stored = match role {
            FileRole::Relation { segment } => self.store_relation(&OpenRelation {
                file: &file,
                path,
                rel,
                segment,
            }),
            FileRole::Wal | FileRole::Other => self.store_stream(&file, path, role.class()),
        }?;
        self.counters.files_read.fetch_add(1, Ordering::Relaxed);
        Ok(Some(stored))
    }

    fn store_relation(&self, relation: &OpenRelation) -> Result<StoredFile> {
        let len = relation
            .file
            .metadata()
            .map_err(|e| Error::local_io(e, format!("reading {}", relation.path.display())))?
            .len();
        let max = u64::from(self.chunker.relation.max);
        let region = REGION_BYTES.div_ceil(max) * max;
        let starts: Vec<u64> = (0..len.div_ceil(region)).map(|i| i * region).collect();
        let parts: Vec<Result<(u64, Vec<ChunkRef>)>> = starts
            .par_iter()
            .map(|&start| self.store_region(relation, start, region.min(len - start)))
            .collect();
        let mut chunks = Vec::new();
        let mut size = 0;
        for part in parts {
            let (read, refs) = part?;
            size += read;
            chunks.extend(refs);
            // A region cut short by a concurrent truncation ends the file there.
            if read < region {
                break;
            }
        }
        Ok(StoredFile { size, chunks })
    }

    /// Reads `len` bytes at `start`, verifies their pages and stores their chunks. Returns the
    /// bytes actually read (fewer when the file was truncated meanwhile).
    fn store_region(
        &self,
        relation: &OpenRelation,
        start: u64,
        len: u64,
    ) -> Result<(u64, Vec<ChunkRef>)> {
        self.check_interrupted()?;
        REGION_BUFFER.with_borrow_mut(|buf| {
            buf.resize(len as usize, 0);
            self.store_read_region(relation, start, buf)
        })
    }

    /// The part of [`Self::store_region`] that runs with the thread's region buffer.
    fn store_read_region(
        &self,
        relation: &OpenRelation,
        start: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(u64, Vec<ChunkRef>)> {
        let read = read_at_most(relation.file, buf, start)
            .map_err(|e| Error::local_io(e, format!("reading {}", relation.path.display())))?;
        buf.truncate(read);
        self.counters
            .bytes_read
            .fetch_add(read as u64, Ordering::Relaxed);
        if let Some(check) = self.pages {
            self.verify_pages(relation, start, buf, check)?;
        }
        let cutter = Cutter::new(&self.gear, &self.chunker, FileClass::Relation);
        let mut chunks = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let n = cutter.next_cut(&buf[pos..], start + pos as u64);
            chunks.push(&buf[pos..pos + n]);
            pos += n;
        }
        Ok((read as u64, self.store_chunks(&chunks)?))
    }

    /// Checks every whole page of `buf` (file offset `start`). A page that fails is read again
    /// on its own: the server may have been writing it (a torn read), and the second read then
    /// replaces it. A page that fails twice is reported.
    fn verify_pages(
        &self,
        relation: &OpenRelation,
        start: u64,
        buf: &mut [u8],
        check: PageCheck,
    ) -> Result<()> {
        for (i, page) in buf.chunks_exact_mut(PAGE_SIZE).enumerate() {
            let offset = start + (i * PAGE_SIZE) as u64;
            let in_segment = (offset / PAGE_SIZE as u64) as u32;
            let blkno =
                checksum::block_number(relation.segment, in_segment, check.relation_segment_blocks);
            if !matches!(
                checksum::verify_page(page, blkno, check.start_lsn),
                PageVerdict::Bad { .. }
            ) {
                continue;
            }
            let mut again = [0u8; PAGE_SIZE];
            let n = read_at_most(relation.file, &mut again, offset).map_err(|e| {
                Error::local_io(e, format!("re-reading {}", relation.path.display()))
            })?;
            if n < PAGE_SIZE {
                // Truncated meanwhile: the relation shrank, and replay truncates it too.
                continue;
            }
            page.copy_from_slice(&again);
            if let PageVerdict::Bad { expected, found } =
                checksum::verify_page(page, blkno, check.start_lsn)
            {
                self.bad_pages
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(BadPage {
                        path: relation.rel.to_vec(),
                        block: blkno,
                        expected,
                        found,
                    });
            }
        }
        Ok(())
    }

    fn store_stream(&self, file: &File, path: &Path, class: FileClass) -> Result<StoredFile> {
        let cutter = Cutter::new(&self.gear, &self.chunker, class);
        let mut chunker = StreamChunker::new(BufReader::with_capacity(1 << 20, file), cutter);
        let mut out = StoredFile {
            size: 0,
            chunks: Vec::new(),
        };
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0;
        let flush = |batch: &mut Vec<Vec<u8>>, out: &mut StoredFile| -> Result<()> {
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            out.chunks.extend(self.store_chunks(&refs)?);
            batch.clear();
            Ok(())
        };
        for chunk in chunker.by_ref() {
            let chunk =
                chunk.map_err(|e| Error::local_io(e, format!("reading {}", path.display())))?;
            out.size += chunk.len() as u64;
            self.counters
                .bytes_read
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            batch_bytes += chunk.len();
            batch.push(chunk);
            if batch_bytes >= STREAM_BATCH_BYTES {
                self.check_interrupted()?;
                flush(&mut batch, &mut out)?;
                batch_bytes = 0;
            }
        }
        flush(&mut batch, &mut out)?;
        Ok(out)
    }

    /// Stores a file already in memory. Each chunk is hashed, compressed and encrypted by
    /// another thread as soon as it is cut: a file stored alone (a WAL segment being archived)
    /// would otherwise keep one core busy and the other waiting.
    pub fn store_bytes(&self, data: &[u8], class: FileClass) -> Result<StoredFile> {
        let cutter = Cutter::new(&self.gear, &self.chunker, class);
        let stored: Mutex<Vec<(usize, Result<Vec<ChunkRef>>)>> = Mutex::new(Vec::new());
        rayon::scope(|scope| {
            let mut pos = 0;
            let mut index = 0;
            while pos < data.len() {
                let chunk = &data[pos..pos + cutter.next_cut(&data[pos..], pos as u64)];
                let stored = &stored;
                scope.spawn(move |_| {
                    let refs = self.store_chunks(&[chunk]);
                    stored
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((index, refs));
                });
                pos += chunk.len();
                index += 1;
            }
        });
        let mut stored = stored.into_inner().unwrap_or_else(|p| p.into_inner());
        stored.sort_by_key(|(index, _)| *index);
        let mut chunks = Vec::with_capacity(stored.len());
        for (_, refs) in stored {
            chunks.extend(refs?);
        }
        self.counters
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(StoredFile {
            size: data.len() as u64,
            chunks,
        })
    }

    /// Hashes chunks, stores the new ones, and returns their references in order.
    fn store_chunks(&self, chunks: &[&[u8]]) -> Result<Vec<ChunkRef>> {
        let with_ids: Vec<(BlobId, &[u8])> = chunks
            .iter()
            .map(|c| (self.packer.blob_id(c), *c))
            .collect();
        self.packer.add_with_ids(BlobType::Data, &with_ids)?;
        Ok(with_ids
            .iter()
            .map(|(id, data)| ChunkRef {
                id: *id,
                len: data.len() as u64,
            })
            .collect())
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
