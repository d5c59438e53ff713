//! What `verify` asks of the repository beyond the reads every command makes: the index cache
//! opened before it is synced, pack headers compared with the index in one ranged read, and
//! whole packs checked blob by blob.

use std::path::Path;

use super::cache::IndexCache;
use super::id::{IndexId, PackId};
use super::index_file::{IndexFile, IndexedPack};
use super::object::HEADER_LEN;
use super::pack::{self, PackedBlob};
use super::{IndexedRepository, Repository, cache, layout};
use crate::error::{Context, ErrorKind, Result};

/// What reading a whole pack found. Empty lists: the pack is intact and agrees with the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackCheck {
    /// Problems of the pack as a whole: its name, its size, its header, or its header
    /// against the index.
    pub problems: Vec<String>,
    /// Blobs the index places in the pack whose envelope does not open, decompress or hash
    /// to its id, with the reason.
    pub bad_blobs: Vec<(PackedBlob, String)>,
}

impl Repository {
    /// The index cache, opened but not yet in step with storage (verify reads the WAL
    /// catalogue through it before it lists anything else).
    pub fn load_index_unsynced(self, cache_dir: Option<&Path>) -> Result<IndexedRepository> {
        self.open_cache(cache_dir)
    }

    /// A new, empty index cache at `path`, private to the caller and not yet in step with
    /// storage. Verify builds its own view of the index there: index files it finds damaged
    /// stay in the cache other commands share (which holds them as they were intact), and
    /// what it indexes for its own checks ([`IndexedRepository::index_privately`]) reaches no
    /// other process.
    pub fn load_index_private(self, path: &Path) -> Result<IndexedRepository> {
        let cache = IndexCache::create(path, &self.config.id)?;
        Ok(IndexedRepository::new(self, cache))
    }
}

impl IndexedRepository {
    /// Adds packs to the cache as if an index file `id` that is not on storage listed them.
    /// Only for a private cache ([`Repository::load_index_private`]): a writer deduplicating
    /// against them would reference packs no index file lists, which prune may delete.
    pub fn index_privately(&mut self, id: &IndexId, packs: Vec<IndexedPack>) -> Result<()> {
        let file = IndexFile {
            packs,
            ..IndexFile::default()
        };
        self.cache_mut().add_index_file(id, &file)
    }

    /// Takes out of the cache what [`Self::index_privately`] added.
    pub fn forget_privately(&mut self, id: &IndexId) -> Result<()> {
        self.cache_mut().remove_index_files(&[*id])
    }

    /// Compares a pack's header with the index entries `indexed` of it, reading only the tail
    /// where the index says the header is (one ranged read). `Ok(Some(problem))`: the header
    /// is damaged or disagrees with the index; an error: the pack could not be read.
    pub fn check_pack_header(
        &self,
        id: &PackId,
        size: u64,
        indexed: &[PackedBlob],
    ) -> Result<Option<String>> {
        let path = layout::pack(id);
        let blobs_end = indexed
            .iter()
            .map(|b| b.offset + u64::from(b.stored_len))
            .max()
            .unwrap_or(HEADER_LEN as u64);
        if blobs_end > size {
            return Ok(Some(format!(
                "the index places blobs up to byte {blobs_end}, beyond its {size} bytes"
            )));
        }
        let tail = match self.storage.read_range(&path, blobs_end, size - blobs_end) {
            Ok(tail) => tail,
            Err(e) if e.kind() == ErrorKind::Integrity => return Ok(Some(e.to_string())),
            Err(e) => return Err(e.with_context(format!("pack {path}"))),
        };
        let listed = match pack::decode_header(&self.keys.data, size, &tail) {
            Ok(header) => header.blobs,
            // The header does not start where the index's last blob ends: read it where the
            // trailer says, to tell a damaged header from one that disagrees with the index.
            Err(_) => match self.read_pack_header_sized(id, size) {
                Ok(header) => header.blobs,
                Err(e) if e.kind() == ErrorKind::Integrity => return Ok(Some(e.to_string())),
                Err(e) => return Err(e),
            },
        };
        Ok(header_mismatch(&listed, indexed))
    }

    /// Reads a whole pack and checks its name (the hash of its bytes), its size against
    /// `indexed_size`, its header against the index entries `indexed`, and every one of those
    /// blobs: decrypted, decompressed and hashed again. An error: the pack could not be read
    /// at all (missing, or storage failed).
    pub fn verify_pack(
        &self,
        id: &PackId,
        indexed_size: u64,
        indexed: &[PackedBlob],
    ) -> Result<PackCheck> {
        let path = layout::pack(id);
        let bytes = self
            .storage
            .read(&path)
            .with_context(|| format!("pack {path}"))?;
        let mut check = PackCheck::default();
        if let Err(e) = pack::check_whole(id, &bytes) {
            check.problems.push(e.to_string());
        }
        let size = bytes.len() as u64;
        if size != indexed_size {
            check
                .problems
                .push(format!("it is {size} bytes, the index says {indexed_size}"));
        }
        let header =
            pack::header_span(size, &bytes[bytes.len().saturating_sub(4)..]).and_then(|span| {
                pack::decode_header(&self.keys.data, size, &bytes[(size - span) as usize..])
            });
        match header {
            Ok(header) => check
                .problems
                .extend(header_mismatch(&header.blobs, indexed)),
            Err(e) => check.problems.push(format!("header: {e}")),
        }
        for entry in indexed {
            let start = entry.offset as usize;
            let Some(envelope) = start
                .checked_add(entry.stored_len as usize)
                .and_then(|end| bytes.get(start..end))
            else {
                check.bad_blobs.push((
                    *entry,
                    format!(
                        "{:?} blob {} lies beyond the end of the pack",
                        entry.blob_type, entry.id
                    ),
                ));
                continue;
            };
            let location = cache::BlobLocation {
                pack: *id,
                entry: *entry,
            };
            if let Err(e) = self.open_blob(&location, envelope) {
                check.bad_blobs.push((*entry, e.to_string()));
            }
        }
        Ok(check)
    }
}

/// How a pack's header (`listed`) differs from the index's entries for it, if it does.
fn header_mismatch(listed: &[PackedBlob], indexed: &[PackedBlob]) -> Option<String> {
    let mut listed = listed.to_vec();
    let mut indexed = indexed.to_vec();
    listed.sort_by_key(|b| b.offset);
    indexed.sort_by_key(|b| b.offset);
    if listed == indexed {
        return None;
    }
    let first = listed
        .iter()
        .zip(&indexed)
        .find(|(a, b)| a != b)
        .map(|(a, b)| {
            format!(
                "; first difference: the header has {:?} blob {} at offset {}, the index {:?} \
                 blob {} at offset {}",
                a.blob_type, a.id, a.offset, b.blob_type, b.id, b.offset
            )
        })
        .unwrap_or_default();
    Some(format!(
        "its header lists {} blobs that do not match the {} in the index{first}",
        listed.len(),
        indexed.len()
    ))
}
