//! `archive-get`: one WAL file from the catalogue to where the server's `restore_command` wants
//! it. Written under a temporary name, checked against the archived checksum, fsynced and
//! renamed, so the server never reads a partial file.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::repo::IndexedRepository;
use crate::repo::pack::BlobType;
use crate::repo::walcat::WalEntry;

/// Checks `name` is something the server may ask for.
pub fn check_name(name: &str) -> Result<()> {
    super::classify(name).map(|_| ()).ok_or_else(|| {
        Error::usage(format!(
            "{name:?} is not the name of a WAL segment, .partial segment, timeline history \
                 file or backup history file"
        ))
    })
}

/// The catalogue entry for `name`, or a `NotFound` error when the repository positively does
/// not have it.
pub fn find(repo: &IndexedRepository, cluster: u64, name: &str) -> Result<WalEntry> {
    repo.load_wal_entry(cluster, name)?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("{name} is not in the archive of system {cluster}"),
        )
    })
}

/// Writes the archived file to `dest`.
pub fn fetch(
    repo: &mut IndexedRepository,
    entry: &WalEntry,
    dest: &Path,
    interrupted: &AtomicBool,
) -> Result<()> {
    learn_chunks(repo, entry)?;
    install(dest, |staged| {
        write_checked(repo, entry, staged, interrupted)
    })
    .with_context(|| format!("fetching {}", entry.name))
}

/// Makes sure the index cache knows every chunk of `entry`: the cache may predate the push
/// from another host, so it learns of new index files first.
pub(super) fn learn_chunks(repo: &mut IndexedRepository, entry: &WalEntry) -> Result<()> {
    if !knows_every_chunk(repo, entry)? {
        repo.sync_cache()?;
    }
    Ok(())
}

/// Puts a file at `dest` so that the server never sees it partial: `write` produces it,
/// complete, checked and durable, under a staging name beside `dest`; it is then renamed into
/// place and the directory fsynced. On failure the staged file is removed.
pub(super) fn install(dest: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staged = staging_name(dest);
    let result = write(&staged).and_then(|()| {
        fs::rename(&staged, dest).map_err(Error::io_at("renaming into place", dest))?;
        sync_dir_of(dest)
    });
    if result.is_err() {
        let _ = fs::remove_file(&staged);
    }
    result
}

fn knows_every_chunk(repo: &IndexedRepository, entry: &WalEntry) -> Result<bool> {
    if entry.content.level > 0 {
        return Ok(false);
    }
    repo.with_cache(|cache| {
        for chunk in &entry.content.entries {
            if !cache.contains(BlobType::Data, &chunk.id)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// Writes the archived file to `path` (durably) and checks it is the archived file.
pub(super) fn write_checked(
    repo: &IndexedRepository,
    entry: &WalEntry,
    path: &Path,
    interrupted: &AtomicBool,
) -> Result<()> {
    // Owner and group are not restored: the file belongs to whoever runs archive-get.
    let node = entry.as_node(0, 0);
    crate::restore::restore_file(repo, &node, path, interrupted)?;
    // Every chunk was checked against its id; this checks they are the right chunks.
    if !matches_entry(path, entry)? {
        return Err(Error::integrity(format!(
            "{}: the archived chunks do not reassemble to the archived file (BLAKE3 {})",
            entry.name,
            entry.checksum_hex()
        )));
    }
    Ok(())
}

/// Whether the file at `path` has the size and BLAKE3 checksum of the archived file.
pub(super) fn matches_entry(path: &Path, entry: &WalEntry) -> Result<bool> {
    let file = File::open(path).map_err(Error::io_at("reading back", path))?;
    let len = file
        .metadata()
        .map_err(Error::io_at("reading back", path))?
        .size();
    // Hashing a file of the wrong size is wasted work.
    if len != entry.size {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    std::io::copy(
        &mut std::io::BufReader::with_capacity(1 << 20, file),
        &mut hasher,
    )
    .map_err(Error::io_at("reading back", path))?;
    Ok(*hasher.finalize().as_bytes() == entry.checksum)
}

/// A name beside `dest`, so the final rename stays within one filesystem.
fn staging_name(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".pgcairn-{}", std::process::id()));
    dest.with_file_name(name)
}

fn sync_dir_of(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io_at("fsync", dir))
}
