//! `archive-push`: one WAL file from the server's `archive_command` into the WAL catalogue.
//!
//! Order makes it crash-safe: the file's chunks go into packs and an index file first, the
//! catalogue entry last, created only if no entry of that name exists. A crash before the
//! entry leaves unreferenced packs (reclaimed by prune) and nothing visible; the server then
//! retries. Once the entry exists, everything it references is durable.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use crate::backup::{Counters, Ingest};
use crate::chunk::FileClass;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::history;
use crate::pg::wal::{self, WalFileName};
use crate::pg::walpage::{self, LongPageHeader};
use crate::pg::walscan;
use crate::repo::IndexedRepository;
use crate::repo::tree::ChunkList;
use crate::repo::walcat::{RestorePoint, WalEntry, WalSummary};

/// How stale the index cache of archive-push may be (format-spec §13): a fresher cache
/// deduplicates better; listing the index on every call would cost more than the segment.
pub const INDEX_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// Files up to this size are read whole (and their records scanned); larger segments, which
/// `initdb --wal-segsize` allows up to 1 GiB, are streamed.
const WHOLE_FILE_LIMIT: u64 = 64 << 20;
/// History and backup history files are a few lines of text.
const MAX_TEXT_FILE: u64 = 1 << 20;

/// What archive-push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored: `new_bytes` of it were not in the repository yet.
    Archived { new_bytes: u64, stored_bytes: u64 },
    /// The same name with the same content was already archived; nothing was stored.
    AlreadyArchived,
}

#[derive(Clone, Debug)]
pub struct PushReport {
    pub name: String,
    pub system_identifier: u64,
    pub size: u64,
    pub checksum: [u8; 32],
    pub outcome: PushOutcome,
}

/// Asks the kernel to start reading the whole file now, so that the disk works while the
/// repository is being opened (a segment no longer in the page cache costs as much to read as
/// to compress). Only a hint: errors are left to the real read.
pub fn read_ahead(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(file) = File::open(path) {
        // SAFETY: posix_fadvise only reads its arguments; the descriptor is open.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
        }
    }
}

/// Archives the WAL file at `path` for cluster `cluster` (`None`: the cluster the segment's
/// header names; history files need it given).
pub fn push(
    repo: &IndexedRepository,
    path: &Path,
    cluster: Option<u64>,
    interrupted: &AtomicBool,
) -> Result<PushReport> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::usage(format!("{}: not a WAL file name", path.display())))?;
    super::classify(name).ok_or_else(|| {
        Error::usage(format!(
            "{name:?} is not the name of a WAL segment, .partial segment, timeline history file \
             or backup history file; refusing to archive it"
        ))
    })?;
    let file = File::open(path).map_err(Error::io_at("opening", path))?;
    let size = file
        .metadata()
        .map_err(Error::io_at("reading", path))?
        .len();
    let (cluster, header) = check_file(&file, path, name, size, cluster)?;

    if let Some(existing) = repo.load_wal_entry(cluster, name)? {
        let checksum = checksum_of(&file, path)?;
        return compare(existing, name, cluster, size, checksum);
    }

    let packer = repo.packer();
    let ingest = Ingest {
        packer: &packer,
        gear: repo.gear_table(),
        chunker: repo.config().chunker,
        pages: None,
        interrupted,
        counters: Counters::default(),
        bad_pages: Mutex::new(Vec::new()),
    };
    let mut summary = None;
    let stored = if size <= WHOLE_FILE_LIMIT {
        let data = read_whole(&file, path, size)?;
        let ((checksum, scanned), stored) = rayon::join(
            || {
                rayon::join(
                    || *blake3::hash(&data).as_bytes(),
                    || header.map(|h| summarize(&data, &h)),
                )
            },
            || ingest.store_bytes(&data, FileClass::Wal),
        );
        summary = scanned;
        stored.map(|stored| (stored, checksum))
    } else {
        // Two reads of a file the server does not change while it archives it.
        ingest
            .store_file(path, name.as_bytes(), crate::backup::FileRole::Wal)
            .and_then(|stored| {
                stored.ok_or_else(|| {
                    Error::local(format!("{} vanished while being archived", path.display()))
                })
            })
            .and_then(|stored| Ok((stored, checksum_of(&file, path)?)))
    };
    // Packs written so far are flushed even on failure: a retry then finds its chunks.
    let content = stored.and_then(|(stored, checksum)| {
        if stored.size != size {
            return Err(Error::local(format!(
                "{} changed size while being archived ({size} then {} bytes)",
                path.display(),
                stored.size
            )));
        }
        Ok((packer.add_chunk_list(stored.chunks)?, checksum))
    });
    // Checks name the file already; storage and local failures from here on get its name.
    let archiving = || format!("archiving {name}");
    let stats = packer.flush().with_context(archiving)?;
    let (content, checksum) = content.with_context(archiving)?;
    if stats.cache_hits > 0 {
        still_live(repo, &content).with_context(archiving)?;
    }
    let entry = WalEntry {
        system_identifier: cluster,
        name: name.to_owned(),
        size,
        checksum,
        content,
        archived_ns: crate::clock::now_ns(),
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        program_version: env!("CARGO_PKG_VERSION").to_owned(),
        summary,
    };
    match repo.create_wal_entry(&entry).with_context(archiving)? {
        None => Ok(PushReport {
            name: name.to_owned(),
            system_identifier: cluster,
            size,
            checksum,
            outcome: PushOutcome::Archived {
                new_bytes: stats.new_raw_bytes,
                stored_bytes: stats.new_stored_bytes,
            },
        }),
        // Another push of the same file won the race.
        Some(existing) => compare(existing, name, cluster, size, checksum),
    }
}

/// The commit check of a writer without a lock (format-spec §13): after learning the index
/// files written since its cache was synced, every blob the entry references must still have a
/// copy in a pack no prune has condemned. Otherwise the push fails before its commit point and
/// the server's retry, with the condemnation now in its cache, stores those chunks again.
fn still_live(repo: &IndexedRepository, content: &ChunkList) -> Result<()> {
    repo.sync_cache()?;
    let condemned = repo.condemned_references(content)?;
    if let Some(first) = condemned.first() {
        return Err(Error::new(
            ErrorKind::Storage,
            format!(
                "a concurrent prune condemned {} chunk(s) this file shares with older WAL                  (first: {first}); nothing was committed, and the server's next attempt stores                  them anew",
                condemned.len()
            ),
        ));
    }
    Ok(())
}

/// Checks the file is what its name says; returns the cluster it belongs to and, for a
/// segment, its first page's header.
fn check_file(
    file: &File,
    path: &Path,
    name: &str,
    size: u64,
    cluster: Option<u64>,
) -> Result<(u64, Option<LongPageHeader>)> {
    let refuse = |why: String| Error::new(ErrorKind::Refused, format!("{name}: {why}"));
    let kind = super::classify(name);
    let timeline = match kind {
        Some(WalFileName::Segment { timeline, .. } | WalFileName::Partial { timeline, .. }) => {
            timeline
        }
        _ => {
            if size > MAX_TEXT_FILE {
                return Err(refuse(format!(
                    "{size} bytes is too large for a history file"
                )));
            }
            check_text(
                file,
                path,
                size,
                matches!(kind, Some(WalFileName::History { .. })),
            )
            .map_err(&refuse)?;
            let cluster = cluster.ok_or_else(|| {
                Error::usage(format!(
                    "{name}: cannot tell which cluster this file belongs to: run archive-push \
                     from the data directory (as the server does), or give --pgdata or \
                     --system-id"
                ))
            })?;
            return Ok((cluster, None));
        }
    };
    if !wal::is_valid_segment_size(size) {
        return Err(refuse(format!(
            "{size} bytes is not a WAL segment size (a power of two from 1 MiB to 1 GiB): \
             truncated, or not a segment"
        )));
    }
    let segno = match wal::parse_wal_file_name(name, size) {
        Some(WalFileName::Segment { segno, .. } | WalFileName::Partial { segno, .. }) => segno,
        _ => {
            return Err(refuse(format!(
                "the name is not valid for segments of {size} bytes"
            )));
        }
    };
    let mut first = [0u8; 64];
    file.read_exact_at(&mut first, 0)
        .map_err(Error::io_at("reading", path))?;
    let header = walpage::check_segment_header(&first, timeline, segno, size)
        .map_err(|e| refuse(e.message().to_owned()))?;
    match cluster {
        Some(id) if id != header.system_identifier => Err(refuse(format!(
            "the segment belongs to the cluster with system identifier {}, but it is being \
             archived for the cluster with system identifier {id}; refusing to mix clusters",
            header.system_identifier
        ))),
        _ => Ok((header.system_identifier, Some(header))),
    }
}

/// A second push of an archived name: the same bytes are a success (the server retries after
/// a crash between our exit and its bookkeeping); other bytes must never replace them.
fn compare(
    existing: WalEntry,
    name: &str,
    cluster: u64,
    size: u64,
    checksum: [u8; 32],
) -> Result<PushReport> {
    if existing.checksum != checksum || existing.size != size {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{name} is already archived with different content: archived {} bytes with \
                 BLAKE3 {}, this file has {size} bytes with BLAKE3 {}; the archived copy is kept \
                 (is another cluster archiving into this repository under the same system \
                 identifier?)",
                existing.size,
                existing.checksum_hex(),
                hex::encode(checksum)
            ),
        ));
    }
    Ok(PushReport {
        name: name.to_owned(),
        system_identifier: cluster,
        size,
        checksum,
        outcome: PushOutcome::AlreadyArchived,
    })
}

/// A history or backup history file must be text, and a history file one PostgreSQL can read:
/// a damaged one would stop every recovery that needs its timeline.
fn check_text(file: &File, path: &Path, size: u64, is_history: bool) -> Result<(), String> {
    // Positional: the file is read again from its start to be stored.
    let mut bytes = vec![0u8; size as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "not a text file".to_string())?;
    if is_history {
        history::parse_history(text).map_err(|e| format!("not a timeline history file: {e}"))?;
    }
    Ok(())
}

/// What the segment's records say about recovery targets.
fn summarize(data: &[u8], header: &LongPageHeader) -> WalSummary {
    let scanned = walscan::summarize_segment(data, header.page_addr, header.block_size as usize);
    WalSummary {
        commits: scanned.commits,
        first_commit_us: scanned.first_commit_time,
        last_commit_us: scanned.last_commit_time,
        restore_points: scanned
            .restore_points
            .into_iter()
            .map(|p| RestorePoint {
                name: p.name,
                time_us: p.time,
                lsn: p.lsn.0,
            })
            .collect(),
        end_lsn: scanned.end_of_valid_records.0,
        committed_xids: scanned.committed_xids.map(|r| (r.low, r.high)),
    }
}

fn read_whole(file: &File, path: &Path, size: u64) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(size as usize);
    file.take(size + 1)
        .read_to_end(&mut data)
        .map_err(Error::io_at("reading", path))?;
    Ok(data)
}

fn checksum_of(file: &File, path: &Path) -> Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    std::io::copy(&mut reader, &mut hasher).map_err(Error::io_at("reading", path))?;
    Ok(*hasher.finalize().as_bytes())
}
