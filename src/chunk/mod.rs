//! Content-defined chunking and chunk ids.
//!
//! Files are cut with a gear table derived from the repository's chunker key. WAL and other
//! files: FastCDC v2020. Relation files (the 8 KiB-page heap and index files under base/,
//! global/, pg_tblspc/) change in place, page by page, and are never shifted by insertions: they
//! are cut only on page-multiple boundaries, by decisions local to each boundary, so a page
//! changed in place changes only the chunk that holds it and possibly the next.

mod cutter;
mod gear;
mod stream;

use serde::{Deserialize, Serialize};

pub use cutter::Cutter;
pub use gear::GearTable;
pub use stream::StreamChunker;

use crate::crypto::Key32;
use crate::error::{Error, Result};

/// PostgreSQL's block size: relation-file chunks start and end on multiples of it.
pub const PAGE_SIZE: u32 = 8192;

/// Which chunking parameters a file gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileClass {
    /// Heap, index and other relation forks: cut on page boundaries only.
    Relation,
    /// WAL segments and history files.
    Wal,
    /// Everything else (configuration, control files, small metadata).
    Other,
}

/// Minimum, average (target) and maximum chunk size of one file class, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSizes {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// The per-repository chunking parameters, stored in the config object. Changing them after
/// `init` would stop new backups from deduplicating against old ones, so they are fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub relation: ChunkSizes,
    pub wal: ChunkSizes,
    pub other: ChunkSizes,
}

impl Default for ChunkerParams {
    /// Relation files: one chunk per 8 KiB page. Measured on the shared pgbench workload
    /// (docs/chunk-sizes.md): pages changed in place are scattered, so a chunk of n pages is
    /// stored again when any of them changed; single pages add 1.24x the ideal page delta,
    /// 2-page chunks already 1.57x-1.89x. Identical pages still deduplicate by content.
    /// WAL and other files change by appending or wholesale, so larger chunks cost nothing.
    fn default() -> Self {
        ChunkerParams {
            relation: ChunkSizes {
                min: PAGE_SIZE,
                avg: PAGE_SIZE,
                max: PAGE_SIZE,
            },
            wal: ChunkSizes {
                min: 256 * 1024,
                avg: 1024 * 1024,
                max: 4 * 1024 * 1024,
            },
            other: ChunkSizes {
                min: 64 * 1024,
                avg: 256 * 1024,
                max: 1024 * 1024,
            },
        }
    }
}

impl ChunkerParams {
    pub fn sizes(&self, class: FileClass) -> ChunkSizes {
        match class {
            FileClass::Relation => self.relation,
            FileClass::Wal => self.wal,
            FileClass::Other => self.other,
        }
    }

    /// Refuses parameters the chunker cannot honour (also guards against a hostile config).
    pub fn validate(&self) -> Result<()> {
        for (name, s, page_aligned) in [
            ("relation", self.relation, true),
            ("wal", self.wal, false),
            ("other", self.other, false),
        ] {
            let bad = |why: &str| {
                Err(Error::usage(format!(
                    "chunk sizes for {name} files (min {}, avg {}, max {}): {why}",
                    s.min, s.avg, s.max
                )))
            };
            if !(s.min <= s.avg && s.avg <= s.max) {
                return bad("need min <= avg <= max");
            }
            if page_aligned {
                if s.min % PAGE_SIZE != 0 || s.min == 0 {
                    return bad("min must be a multiple of the 8 KiB page");
                }
                if s.avg % s.min != 0 || s.max % s.min != 0 || !(s.avg / s.min).is_power_of_two() {
                    return bad("avg and max must be multiples of min, avg/min a power of two");
                }
                if s.max > 1024 * PAGE_SIZE {
                    return bad("max must be at most 8 MiB");
                }
            } else {
                if !s.avg.is_power_of_two() {
                    return bad("avg must be a power of two");
                }
                use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MINIMUM_MIN};
                let (min, avg, max) = (s.min as usize, s.avg as usize, s.max as usize);
                if min < MINIMUM_MIN
                    || !(AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
                    || max > MAXIMUM_MAX
                {
                    return bad(
                        "outside FastCDC's limits (min >= 64 B, avg 256 B..4 MiB, max <= 16 MiB)",
                    );
                }
                if min % 2 != 0 || max % 2 != 0 {
                    return bad("min and max must be even");
                }
            }
        }
        Ok(())
    }
}

/// The id of a blob: BLAKE3 keyed with the repository's chunk-id key.
pub fn blob_hash(chunk_id_key: &Key32, data: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(&chunk_id_key.0, data).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_params_are_valid_and_bad_ones_refused() {
        ChunkerParams::default().validate().unwrap();
        let mut p = ChunkerParams::default();
        p.relation.min = 4096;
        assert!(p.validate().is_err());
        let mut p = ChunkerParams::default();
        p.relation.avg = 3 * PAGE_SIZE;
        assert!(p.validate().is_err());
        let mut p = ChunkerParams::default();
        p.wal.avg = 3 * 1024 * 1024;
        assert!(p.validate().is_err());
        let mut p = ChunkerParams::default();
        p.other.min = p.other.max * 2;
        assert!(p.validate().is_err());
    }
}
