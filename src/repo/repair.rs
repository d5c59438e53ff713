//! `repair index`: rebuild the local cache from the index files, then index every pack no
//! index file lists, from the pack's own header.

use std::collections::HashSet;
use std::path::Path;

use super::id::{IndexId, PackId};
use super::index_file::{IndexFile, IndexedPack};
use super::{IndexedRepository, Repository, layout, pack};
use crate::error::{Context, Error, Result};

/// Packs indexed per new index file.
const PACKS_PER_INDEX_FILE: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    pub index_files: usize,
    pub packs_on_storage: usize,
    pub packs_reindexed: usize,
    pub blobs_reindexed: usize,
    pub new_index_files: usize,
    /// Index files that failed integrity checks, with the reason; removed once the packs they
    /// listed were indexed again from their headers.
    pub damaged_index_files: Vec<(IndexId, String)>,
    /// Packs whose header could not be read, with the reason; left alone.
    pub damaged_packs: Vec<(PackId, String)>,
}

impl Repository {
    /// Rebuilds the index cache from the index files, skipping damaged ones; writes index files
    /// for every pack no intact index file lists, from the packs' own headers; then removes the
    /// damaged index files, whose content is now covered. `progress` is called with (packs
    /// examined, packs to examine).
    pub fn repair_index(
        self,
        cache_dir: Option<&Path>,
        progress: impl FnMut(usize, usize),
    ) -> Result<(IndexedRepository, RepairReport)> {
        let mut indexed = self.open_cache(cache_dir)?;
        let report = indexed.repair(progress)?;
        Ok((indexed, report))
    }
}

impl IndexedRepository {
    fn repair(&mut self, mut progress: impl FnMut(usize, usize)) -> Result<RepairReport> {
        let cached: Vec<_> = self.with_cache(|c| c.index_files())?.into_iter().collect();
        self.cache_mut().remove_index_files(&cached)?;
        let mut damaged_index_files = Vec::new();
        self.sync_cache_with(&mut |id, e| {
            damaged_index_files.push((id, e.to_string()));
            Ok(())
        })?;
        let index_files = self.with_cache(|c| c.index_files())?.len();

        let indexed: HashSet<PackId> = self
            .with_cache(|c| c.packs())?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let on_storage: Vec<PackId> = self
            .storage
            .list(layout::DATA)?
            .iter()
            .filter_map(|name| layout::pack_from_listing(name))
            .collect();
        let orphans: Vec<PackId> = on_storage
            .iter()
            .filter(|id| !indexed.contains(id))
            .copied()
            .collect();

        let mut report = RepairReport {
            index_files,
            damaged_index_files,
            packs_on_storage: on_storage.len(),
            ..RepairReport::default()
        };
        let mut batch = Vec::new();
        for (n, id) in orphans.iter().enumerate() {
            progress(n, orphans.len());
            match self.read_pack_header(id) {
                Ok(pack) => {
                    report.packs_reindexed += 1;
                    report.blobs_reindexed += pack.blobs.len();
                    batch.push(pack);
                }
                Err(e) => report.damaged_packs.push((*id, e.to_string())),
            }
            if batch.len() >= PACKS_PER_INDEX_FILE {
                self.write_recovered(std::mem::take(&mut batch))?;
                report.new_index_files += 1;
            }
        }
        progress(orphans.len(), orphans.len());
        if !batch.is_empty() {
            self.write_recovered(batch)?;
            report.new_index_files += 1;
        }
        // Only now, with every readable pack indexed by a durable index file.
        for (id, _) in &report.damaged_index_files {
            self.storage.delete(&layout::index(id))?;
        }
        Ok(report)
    }

    /// Reads a pack's header from its tail (two range reads, whatever the pack's size).
    pub fn read_pack_header(&self, id: &PackId) -> Result<IndexedPack> {
        let path = layout::pack(id);
        let size = self
            .storage
            .size(&path)
            .with_context(|| format!("pack {path}"))?;
        self.read_pack_header_sized(id, size)
    }

    /// [`Self::read_pack_header`] of a pack whose size is known (from a listing).
    pub fn read_pack_header_sized(&self, id: &PackId, size: u64) -> Result<IndexedPack> {
        let path = layout::pack(id);
        let describe = || format!("pack {path}");
        let trailer = self
            .storage
            .read_range(&path, size.saturating_sub(4), 4.min(size))
            .with_context(describe)?;
        let span = pack::header_span(size, &trailer).with_context(describe)?;
        let tail = self
            .storage
            .read_range(&path, size - span, span)
            .with_context(describe)?;
        let header = pack::decode_header(&self.keys.data, size, &tail).with_context(describe)?;
        Ok(IndexedPack {
            id: *id,
            size,
            blobs: header.blobs,
        })
    }

    /// Reads a whole pack and checks it against its name, its own header and the index, and
    /// every blob the index places in it: catches damage anywhere in the file, including
    /// bytes no blob read would touch.
    pub fn check_pack(&self, id: &PackId, indexed_size: u64) -> Result<()> {
        let indexed = self.with_cache(|c| c.entries_of_pack(id))?;
        let check = self.verify_pack(id, indexed_size, &indexed)?;
        let bad_blobs = check.bad_blobs.iter().map(|(_, why)| why.clone());
        let problems: Vec<String> = check.problems.iter().cloned().chain(bad_blobs).collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::integrity(format!(
            "pack {}: {}",
            layout::pack(id),
            problems.join("; ")
        )))
    }

    fn write_recovered(&mut self, packs: Vec<IndexedPack>) -> Result<()> {
        let file = IndexFile {
            packs,
            ..IndexFile::default()
        };
        let id = self.save_index_file(&file)?;
        self.cache_mut().add_index_file(&id, &file)
    }
}
