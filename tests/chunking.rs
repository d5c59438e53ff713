//! Property tests of the chunker: lossless, page-aligned for relation files, and local: a
//! change inside one page changes at most the chunks that contain it and their neighbours.

use std::io::Read;

use pgcairn::chunk::{
    ChunkSizes, ChunkerParams, Cutter, FileClass, GearTable, PAGE_SIZE, StreamChunker,
};
use pgcairn::crypto::Key32;
use proptest::prelude::*;

/// A reader that returns at most `step` bytes per read, to exercise buffer refills.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Small sizes so short inputs still have many chunks.
fn small_params() -> ChunkerParams {
    ChunkerParams {
        relation: ChunkSizes {
            min: PAGE_SIZE,
            avg: 2 * PAGE_SIZE,
            max: 8 * PAGE_SIZE,
        },
        wal: ChunkSizes {
            min: 2048,
            avg: 8192,
            max: 32768,
        },
        other: ChunkSizes {
            min: 512,
            avg: 2048,
            max: 8192,
        },
    }
}

/// (offset, bytes) of each chunk.
fn chunks(
    gear: &GearTable,
    params: &ChunkerParams,
    class: FileClass,
    data: &[u8],
    step: usize,
) -> Vec<(usize, Vec<u8>)> {
    let mut offset = 0;
    StreamChunker::new(Trickle { data, step }, Cutter::new(gear, params, class))
        .map(|c| {
            let c = c.unwrap();
            let at = offset;
            offset += c.len();
            (at, c)
        })
        .collect()
}

/// Page-structured data: each page a mix of a repeated pattern and noise, like heap pages.
fn pages(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(count * PAGE_SIZE as usize);
    for page in 0..count {
        for i in 0..PAGE_SIZE as usize {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(if i % 3 == 0 {
                (page % 251) as u8
            } else {
                state as u8
            });
        }
    }
    out
}

fn class_strategy() -> impl Strategy<Value = FileClass> {
    prop_oneof![
        Just(FileClass::Relation),
        Just(FileClass::Wal),
        Just(FileClass::Other)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunks_concatenate_to_the_input(
        data in proptest::collection::vec(any::<u8>(), 0..300_000),
        class in class_strategy(),
        step in 1usize..70_000,
        key in any::<[u8; 32]>(),
    ) {
        let gear = GearTable::derive(&Key32(key));
        let params = small_params();
        let got = chunks(&gear, &params, class, &data, step);
        let joined: Vec<u8> = got.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        prop_assert_eq!(joined, data);
        let max = params.sizes(class).max as usize;
        prop_assert!(got.iter().all(|(_, c)| !c.is_empty() && c.len() <= max));
        // The cut points do not depend on how the input arrives.
        let whole = chunks(&gear, &params, class, &got.iter().flat_map(|(_, c)| c.iter().copied()).collect::<Vec<_>>(), usize::MAX);
        prop_assert_eq!(whole, got);
    }

    #[test]
    fn relation_cut_points_are_page_aligned(
        seed in any::<u64>(),
        page_count in 1usize..200,
        tail in 0usize..PAGE_SIZE as usize,
        key in any::<[u8; 32]>(),
    ) {
        let gear = GearTable::derive(&Key32(key));
        let mut data = pages(seed, page_count);
        data.extend(std::iter::repeat_n(7u8, tail));
        let got = chunks(&gear, &small_params(), FileClass::Relation, &data, 100_000);
        for (offset, chunk) in &got[..got.len() - 1] {
            prop_assert_eq!(offset % PAGE_SIZE as usize, 0);
            prop_assert_eq!(chunk.len() % PAGE_SIZE as usize, 0);
        }
    }

    #[test]
    fn a_change_in_one_page_changes_at_most_its_chunk_and_neighbours(
        seed in any::<u64>(),
        page_count in 2usize..300,
        page_pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((0usize..PAGE_SIZE as usize, any::<u8>()), 1..20),
        at_page_end in any::<bool>(),
        key in any::<[u8; 32]>(),
        avg_pages in prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
    ) {
        let gear = GearTable::derive(&Key32(key));
        let params = ChunkerParams {
            relation: ChunkSizes { min: PAGE_SIZE, avg: avg_pages * PAGE_SIZE, max: 16 * PAGE_SIZE },
            ..small_params()
        };
        let before = pages(seed, page_count);
        let page = page_pick.index(page_count);
        let mut after = before.clone();
        for (pos, value) in &edits {
            // Edits in the last 64 bytes move cut decisions; elsewhere they must not.
            let pos = if at_page_end { PAGE_SIZE as usize - 1 - pos % 64 } else { *pos };
            after[page * PAGE_SIZE as usize + pos] ^= value | 1;
        }
        let old = chunks(&gear, &params, FileClass::Relation, &before, usize::MAX);
        let new = chunks(&gear, &params, FileClass::Relation, &after, usize::MAX);
        let changed = page * PAGE_SIZE as usize;
        let holder = old.iter().position(|(o, c)| *o <= changed && changed < o + c.len()).unwrap();
        let allowed = holder.saturating_sub(1)..=(holder + 1).min(old.len() - 1);
        for (i, chunk) in old.iter().enumerate() {
            if !allowed.contains(&i) {
                prop_assert!(new.contains(chunk), "chunk {} at {} changed (page {} in chunk {})", i, chunk.0, page, holder);
            }
        }
        // New chunks are confined to the same byte range.
        let lo = old[*allowed.start()].0;
        let hi = old[*allowed.end()].0 + old[*allowed.end()].1.len();
        for (offset, chunk) in &new {
            if !old.contains(&(*offset, chunk.clone())) {
                prop_assert!(*offset >= lo && offset + chunk.len() <= hi);
            }
        }
    }
}
