//! Copying WAL catalogue entries: their chunks first (packs, then index files), then the
//! entries, each created only if no entry of that name exists in the target, as
//! `archive-push` creates them. Entries are committed in batches, oldest name first, so an
//! interrupted copy leaves whole entries whose chunks are all durable.

use crate::error::{Context, Error, ErrorKind, Result};
use crate::repo::IndexedRepository;
use crate::repo::lock::Locked;
use crate::repo::packer::PackerStats;
use crate::repo::walcat::WalEntry;

use super::select::same_file;
use super::translate::Translator;

/// Entries are committed once a batch holds this many bytes of WAL (or at the end).
const BATCH_BYTES: u64 = 256 << 20;

/// What copying the WAL did.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalCopied {
    pub files: u64,
    pub bytes: u64,
    /// Created by another writer (an archive-push into the target) between the plan and the
    /// commit, with the same content.
    pub raced: u64,
}

/// Copies `entries` (in the order given) into the target.
pub fn copy_entries(
    translator: &Translator,
    target: &IndexedRepository,
    entries: &[WalEntry],
    lock: &Locked,
    stats: &mut PackerStats,
    on_entry: &dyn Fn(&WalEntry),
) -> Result<WalCopied> {
    let mut copied = WalCopied::default();
    for batch in batches(entries, BATCH_BYTES) {
        let translated = super::with_packer(target, stats, |packer| {
            batch
                .iter()
                .map(|entry| {
                    on_entry(entry);
                    let content = translator
                        .chunk_list(packer, &entry.content)
                        .with_context(|| format!("copying WAL file {}", entry.name))?;
                    Ok(WalEntry {
                        content,
                        ..entry.clone()
                    })
                })
                .collect::<Result<Vec<WalEntry>>>()
        })?;
        translator.record()?;
        lock.check_current()?;
        for entry in &translated {
            let created = target
                .create_wal_entry(entry)
                .with_context(|| format!("copying WAL file {}", entry.name))?;
            match created {
                None => {
                    copied.files += 1;
                    copied.bytes += entry.size;
                }
                Some(existing) if same_file(&existing, entry) => copied.raced += 1,
                Some(existing) => return Err(conflict(&existing, entry)),
            }
        }
    }
    Ok(copied)
}

/// The error for a WAL file the target holds with other content than the source.
pub fn conflict(in_target: &WalEntry, in_source: &WalEntry) -> Error {
    Error::new(
        ErrorKind::Refused,
        format!(
            "WAL file {} of cluster {} differs between the repositories: the target holds {} \
             bytes with BLAKE3 {}, the source {} bytes with BLAKE3 {}; the target's copy is \
             kept (does another cluster with the same system identifier archive into one of \
             them?)",
            in_source.name,
            in_source.system_identifier,
            in_target.size,
            in_target.checksum_hex(),
            in_source.size,
            in_source.checksum_hex()
        ),
    )
}

/// `entries` cut into runs of at least `bytes` bytes (the last one may be shorter).
fn batches(entries: &[WalEntry], bytes: u64) -> Vec<&[WalEntry]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, entry) in entries.iter().enumerate() {
        size += entry.size;
        if size >= bytes {
            out.push(&entries[start..=i]);
            start = i + 1;
            size = 0;
        }
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::window::tests::segment;

    #[test]
    fn batches_cover_every_entry_in_order() {
        let entries: Vec<WalEntry> = (1..=10).map(|s| segment(1, s, None)).collect();
        let sizes = |b: Vec<&[WalEntry]>| b.iter().map(|r| r.len()).collect::<Vec<_>>();
        // 16 MiB segments, batches of 40 MiB: three segments each.
        assert_eq!(sizes(batches(&entries, 40 << 20)), vec![3, 3, 3, 1]);
        assert_eq!(sizes(batches(&entries, 1)), vec![1; 10]);
        assert_eq!(sizes(batches(&entries, u64::MAX)), vec![10]);
        assert!(batches(&[], 1).is_empty());
    }
}
