//! Cut-point selection: FastCDC v2020 over bytes, or the same gear hash tested only at page
//! boundaries for relation files.

use fastcdc::v2020::{Normalization, cut_gear, select_masks};

use super::{ChunkSizes, ChunkerParams, FileClass, GearTable, PAGE_SIZE};

/// The gear hash at a position depends only on the 64 bytes before it: each step shifts the
/// 64-bit state left by one, so older bytes fall off the top.
const GEAR_WINDOW: usize = 64;

/// Finds the length of the next chunk at the start of a buffer.
pub struct Cutter<'g> {
    gear: &'g GearTable,
    sizes: ChunkSizes,
    mode: Mode,
}

enum Mode {
    /// FastCDC v2020, normalisation level 1, masks from the fastcdc crate's `MASKS`.
    Bytes { mask_s: u64, mask_l: u64 },
    /// Cut candidates only at page ends; masks are the top bits of the gear hash.
    Pages { mask_s: u64, mask_l: u64 },
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
            // Probability of a cut per page boundary is 2^-bits, normalised one bit either
            // side of the average, as FastCDC does per byte.
            let bits = (sizes.avg / PAGE_SIZE).ilog2();
            Mode::Pages {
                mask_s: top_bits(bits + 1),
                mask_l: top_bits(bits.saturating_sub(1)),
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

    /// Length of the chunk that starts at `data[0]`. `data` must hold at least
    /// [`Self::max_size`] bytes unless it reaches the end of the file. Returns 0 only for empty
    /// `data`.
    pub fn next_cut(&self, data: &[u8]) -> usize {
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
            Mode::Pages { mask_s, mask_l } => self.page_cut(data, mask_s, mask_l),
        }
    }

    fn page_cut(&self, data: &[u8], mask_s: u64, mask_l: u64) -> usize {
        let page = PAGE_SIZE as usize;
        let (min, avg, max) = (
            self.sizes.min as usize,
            self.sizes.avg as usize,
            self.sizes.max as usize,
        );
        let mut end = page;
        loop {
            if end >= data.len() {
                // End of file; a partial last page stays with the chunk before it.
                return data.len();
            }
            if end >= max {
                return end;
            }
            if end >= min {
                let mask = if end < avg { mask_s } else { mask_l };
                if self.window_hash(&data[end - GEAR_WINDOW..end]) & mask == 0 {
                    return end;
                }
            }
            end += page;
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
    use crate::crypto::Key32;

    #[test]
    fn top_bits_masks() {
        assert_eq!(top_bits(0), 0);
        assert_eq!(top_bits(1), 1 << 63);
        assert_eq!(top_bits(3), 0b111 << 61);
    }

    #[test]
    fn page_cuts_fall_on_page_boundaries_within_bounds() {
        let gear = GearTable::derive(&Key32([3; 32]));
        let params = ChunkerParams::default();
        let cutter = Cutter::new(&gear, &params, FileClass::Relation);
        let data: Vec<u8> = (0..64 * 8192u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut pos = 0;
        while pos < data.len() {
            let len = cutter.next_cut(&data[pos..]);
            assert_eq!(len % 8192, 0);
            assert!(len >= params.relation.min as usize && len <= params.relation.max as usize);
            pos += len;
        }
    }
}
