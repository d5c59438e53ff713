//! Cut-point selection: FastCDC v2020 over bytes for WAL and other files; for relation files the
//! same keyed gear hash, tested only at granule (page-multiple) boundaries, with every decision
//! local to one boundary.

use fastcdc::v2020::{Normalization, cut_gear, select_masks};

use super::{ChunkSizes, ChunkerParams, FileClass, GearTable};

/// The gear hash at a position depends only on the 64 bytes before it: each step shifts the
/// 64-bit state left by one, so older bytes fall off the top.
pub const GEAR_WINDOW: usize = 64;

/// Finds the length of the next chunk at a position in a file.
pub struct Cutter<'g> {
    gear: &'g GearTable,
    sizes: ChunkSizes,
    mode: Mode,
}

enum Mode {
    /// FastCDC v2020, normalisation level 1, masks from the fastcdc crate's `MASKS`.
    Bytes { mask_s: u64, mask_l: u64 },
    /// Candidates at multiples of `min` from the start of the file; a cut where the top bits of
    /// the gear hash are zero, and always at multiples of `max`.
    Granules { mask: u64 },
}

/// The `n` most significant bits set. Top bits of the gear hash depend on all 64 window bytes;
/// low bits only on the last few.
fn top_bits(n: u32) -> u64 {
    if n == 0 {
        0
    } else {
        u64::MAX << (64 - n.min(64))
    }
}

impl<'g> Cutter<'g> {
    pub fn new(gear: &'g GearTable, params: &ChunkerParams, class: FileClass) -> Self {
        let sizes = params.sizes(class);
        let mode = if class == FileClass::Relation {
            // One cut per avg/min candidates on average: mean chunk ≈ avg.
            Mode::Granules {
                mask: top_bits((sizes.avg / sizes.min).ilog2()),
            }
        } else {
            let (mask_s, mask_l) = select_masks(sizes.avg as usize, Normalization::Level1);
            Mode::Bytes { mask_s, mask_l }
        };
        Cutter { gear, sizes, mode }
    }

    /// The most bytes one chunk can have; callers buffer at least this much.
    pub fn max_size(&self) -> usize {
        self.sizes.max as usize
    }

    /// Length of the chunk that starts at `data[0]`, which is at byte `offset` of the file.
    /// `data` must hold at least [`Self::max_size`] bytes unless it reaches the end of the
    /// file. Returns 0 only for empty `data`.
    pub fn next_cut(&self, data: &[u8], offset: u64) -> usize {
        match self.mode {
            Mode::Bytes { mask_s, mask_l } => {
                let s = &self.sizes;
                let (_, len) = cut_gear(
                    data,
                    s.min as usize,
                    s.avg as usize,
                    s.max as usize,
                    mask_s,
                    mask_l,
                    mask_s << 1,
                    mask_l << 1,
                    &self.gear.gear[..],
                    &self.gear.gear_ls[..],
                );
                len
            }
            Mode::Granules { mask } => self.granule_cut(data, offset, mask),
        }
    }

    /// Every decision depends only on the 64 bytes before one candidate and its position in
    /// the file, never on where the chunk started: a change inside one granule can move only
    /// the cut right after that granule, so at most its chunk and the next one change.
    fn granule_cut(&self, data: &[u8], offset: u64, mask: u64) -> usize {
        let granule = self.sizes.min as usize;
        let max = u64::from(self.sizes.max);
        let to_grid = (max - offset % max) as usize;
        let mut end = granule;
        loop {
            if end >= data.len() {
                // End of file; a partial last page stays with the chunk before it.
                return data.len();
            }
            if end >= to_grid || self.window_hash(&data[end - GEAR_WINDOW..end]) & mask == 0 {
                return end;
            }
            end += granule;
        }
    }

    fn window_hash(&self, window: &[u8]) -> u64 {
        window.iter().fold(0u64, |h, &b| {
            (h << 1).wrapping_add(self.gear.gear[b as usize])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::PAGE_SIZE;
    use crate::crypto::Key32;

    #[test]
    fn top_bits_masks() {
        assert_eq!(top_bits(0), 0);
        assert_eq!(top_bits(1), 1 << 63);
        assert_eq!(top_bits(3), 0b111 << 61);
    }

    #[test]
    fn relation_cuts_fall_on_granules_within_bounds_and_average_near_avg() {
        let gear = GearTable::derive(&Key32([3; 32]));
        let params = ChunkerParams::default();
        let cutter = Cutter::new(&gear, &params, FileClass::Relation);
        let data: Vec<u8> = (0..4096 * PAGE_SIZE)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (mut pos, mut chunks) = (0, 0);
        while pos < data.len() {
            let len = cutter.next_cut(&data[pos..], pos as u64);
            assert_eq!(len % params.relation.min as usize, 0);
            assert!(len <= params.relation.max as usize);
            // Never across a multiple of max.
            assert!(
                pos / params.relation.max as usize
                    == (pos + len - 1) / params.relation.max as usize
            );
            pos += len;
            chunks += 1;
        }
        let mean = data.len() / chunks;
        let avg = params.relation.avg as usize;
        assert!(
            mean > avg * 3 / 4 && mean < avg * 5 / 4,
            "mean chunk {mean}, avg {avg}"
        );
    }
}
