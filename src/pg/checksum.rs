//! PostgreSQL data page checksums (clusters made with `initdb -k`), so a backup can report pages
//! that storage damaged before it copies them into the repository.
//!
//! The algorithm is PostgreSQL's `pg_checksum_page` (src/include/storage/checksum_impl.h),
//! written here from its description: the 8 KiB page is read as 64 rows of 32 little-endian
//! `u32` words; each of the 32 columns is folded into its own FNV-1a-like running hash
//! (`h = (h ^ w) * FNV_PRIME ^ ((h ^ w) >> 17)`) that starts from a fixed per-column offset;
//! two rounds of zero words finish the mixing; the 32 hashes are XORed together, XORed with
//! the block number, and reduced to `1..=65535`. The stored checksum field counts as zero.
//!
//! Data files are read as little-endian, the byte order of every platform PostgreSQL is built
//! for in practice (x86-64, ARM64); a cluster from a big-endian host would not verify.

/// PostgreSQL's page size (BLCKSZ). Builds with another block size are not supported.
pub const PAGE_SIZE: usize = 8192;

/// Blocks per relation segment file (RELSEG_SIZE) in a default build: 1 GiB / 8 KiB.
/// The cluster's own value is in pg_control; use that when it is at hand.
pub const DEFAULT_RELATION_SEGMENT_BLOCKS: u32 = 131_072;

/// Number of hashes computed side by side: a fixed part of the algorithm, since changing it
/// changes every checksum.
const LANES: usize = 32;

/// The 32-bit FNV prime.
const FNV_PRIME: u32 = 16_777_619;

/// Starting value of each lane. PostgreSQL chose them at random; all that matters is that they
/// differ from each other and match PostgreSQL's, bit for bit.
const LANE_OFFSETS: [u32; LANES] = [
    0x5B1F_36E9,
    0xB852_5960,
    0x02AB_50AA,
    0x1DE6_6D2A,
    0x79FF_467A,
    0x9BB9_F8A3,
    0x217E_7CD2,
    0x83E1_3D2C,
    0xF8D4_474F,
    0xE39E_B970,
    0x42C6_AE16,
    0x9932_16FA,
    0x7B09_3B5D,
    0x98DA_FF3C,
    0xF718_902A,
    0x0B1C_9CDB,
    0xE58F_764B,
    0x1876_36BC,
    0x5D7B_3BB1,
    0xE73D_E7DE,
    0x92BE_C979,
    0xCCA6_C0B2,
    0x304A_0979,
    0x85AA_43D4,
    0x7831_25BB,
    0x6CA8_EAA2,
    0xE407_EAC6,
    0x4B5C_FC3E,
    0x9FBF_8C76,
    0x15CA_20BE,
    0xF2CA_9FD3,
    0x959B_D756,
];

/// Byte range of pd_lsn, pd_checksum and pd_upper in the page header (PageHeaderData).
const LSN_AT: usize = 0;
const CHECKSUM_AT: usize = 8;
const UPPER_AT: usize = 14;

/// One mixing step. The right shift feeds high bits back into low ones, which plain FNV-1a
/// (whose multiply only carries upwards) lacks.
#[inline(always)]
fn mix(hash: u32, word: u32) -> u32 {
    let x = hash ^ word;
    x.wrapping_mul(FNV_PRIME) ^ (x >> 17)
}

/// The checksum PostgreSQL stores in pd_checksum for `page` at block `blkno` of its relation
/// (see [`block_number`]). The page's own pd_checksum field does not take part.
///
/// `page` must be exactly [`PAGE_SIZE`] bytes; callers reject other lengths. For any other
/// length this returns 0, which no page's checksum can equal (they range over 1..=65535).
pub fn page_checksum(page: &[u8], blkno: u32) -> u16 {
    if page.len() != PAGE_SIZE {
        return 0;
    }
    let mut lanes = LANE_OFFSETS;
    for (row_index, row) in page.chunks_exact(4 * LANES).enumerate() {
        let mut words = [0u32; LANES];
        for (word, bytes) in words.iter_mut().zip(row.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        if row_index == 0 {
            // pd_checksum is the low half of word 2 (bytes 8..10); it counts as zero so that
            // the stored value does not feed into its own computation.
            words[CHECKSUM_AT / 4] &= 0xFFFF_0000;
        }
        for (lane, word) in lanes.iter_mut().zip(words) {
            *lane = mix(*lane, word);
        }
    }
    let mut folded = 0u32;
    for lane in lanes {
        folded ^= mix(mix(lane, 0), 0);
    }
    // Mixing in the block number catches a page written to the wrong place. The offset of one
    // keeps 0 free to mean "no checksum".
    ((folded ^ blkno) % 65_535 + 1) as u16
}

/// The block number a page's checksum is computed with: its position in the whole relation
/// fork, counting across segment files (`<relfilenode>.N` holds blocks from
/// `N * relation_segment_blocks` on). Arithmetic wraps like PostgreSQL's unsigned BlockNumber;
/// a real relation never gets that far (2^32 blocks is its limit).
pub fn block_number(segment: u32, page_in_segment: u32, relation_segment_blocks: u32) -> u32 {
    segment
        .wrapping_mul(relation_segment_blocks)
        .wrapping_add(page_in_segment)
}

/// What a page's checksum says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageVerdict {
    /// The stored checksum matches.
    Valid,
    /// A new page (pd_upper == 0) that is all zeros, as PostgreSQL leaves a block it has
    /// extended a relation by but not yet initialised. It has no checksum, and is valid.
    New,
    /// The page's LSN is at or after the backup's start: it was written after the backup began,
    /// so it may be torn in our copy, and WAL replay from the start LSN rewrites it whole.
    /// Its checksum proves nothing either way.
    Skipped,
    /// The checksum does not match, or a page that claims to be new holds non-zero bytes
    /// (then `expected` may equal `found`: the header is what is wrong).
    Bad {
        /// The checksum computed from the page's contents.
        expected: u16,
        /// The checksum stored in the page (pd_checksum).
        found: u16,
    },
}

/// Verifies one page read during a backup that started at `start_lsn`, the way pg_basebackup
/// and pgBackRest decide: new pages must be all zeros, pages changed since the backup began
/// are skipped, every other page must carry its checksum.
///
/// A concurrent write can make a page look torn for an instant; as pg_basebackup does, a caller
/// that gets [`PageVerdict::Bad`] should read the page once more and verify again before
/// reporting it (the re-read usually shows a new LSN, and the page is then skipped).
/// A page of the wrong length is `Bad` with `expected` 0.
pub fn verify_page(page: &[u8], blkno: u32, start_lsn: u64) -> PageVerdict {
    let found = read_u16(page, CHECKSUM_AT).unwrap_or(0);
    if page.len() != PAGE_SIZE {
        return PageVerdict::Bad { expected: 0, found };
    }
    // PageIsNew: PostgreSQL never computes a checksum for such a page, but like PostgreSQL's own
    // read-time check (and pgBackRest) we insist it be entirely zero, or damage to the header
    // could hide damage to the whole page.
    if read_u16(page, UPPER_AT) == Some(0) {
        if page.iter().all(|&b| b == 0) {
            return PageVerdict::New;
        }
        return PageVerdict::Bad {
            expected: page_checksum(page, blkno),
            found,
        };
    }
    if page_lsn(page) >= start_lsn {
        return PageVerdict::Skipped;
    }
    let expected = page_checksum(page, blkno);
    if expected == found {
        PageVerdict::Valid
    } else {
        PageVerdict::Bad { expected, found }
    }
}

/// pd_lsn: two native-endian u32 halves (xlogid, then xrecoff), not one u64.
fn page_lsn(page: &[u8]) -> u64 {
    let half = |at: usize| {
        page.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    (u64::from(half(LSN_AT)) << 32) | u64::from(half(LSN_AT + 4))
}

fn read_u16(page: &[u8], at: usize) -> Option<u16> {
    page.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../tests/data/pages/heap.bin");

    fn fixture_pages() -> Vec<&'static [u8]> {
        assert_eq!(FIXTURE.len(), 5 * PAGE_SIZE);
        FIXTURE.chunks_exact(PAGE_SIZE).collect()
    }

    #[test]
    fn fixture_pages_verify() {
        let pages = fixture_pages();
        for (blkno, page) in pages.iter().enumerate().take(4) {
            assert_eq!(
                verify_page(page, blkno as u32, u64::MAX),
                PageVerdict::Valid,
                "page {blkno}"
            );
        }
        assert_eq!(verify_page(pages[4], 4, u64::MAX), PageVerdict::New);
        // The stored values the README lists, computed independently of verify_page.
        let stored: Vec<u16> = pages
            .iter()
            .map(|p| read_u16(p, CHECKSUM_AT).unwrap())
            .collect();
        assert_eq!(stored, [16054, 1933, 19577, 784, 0]);
        for blkno in 0..4 {
            assert_eq!(page_checksum(pages[blkno], blkno as u32), stored[blkno]);
        }
    }

    #[test]
    fn any_flipped_byte_makes_a_page_bad() {
        let page = fixture_pages()[1];
        let stored = read_u16(page, CHECKSUM_AT).unwrap();
        // Every byte of the page, header included. (Flipping the low bit of either pd_upper
        // byte leaves it non-zero: 384 = 0x0180.)
        for at in 0..PAGE_SIZE {
            let mut copy = page.to_vec();
            copy[at] ^= 0x01;
            match verify_page(&copy, 1, u64::MAX) {
                PageVerdict::Bad { expected, found } => {
                    assert_ne!(expected, found, "byte {at}");
                    if (CHECKSUM_AT..CHECKSUM_AT + 2).contains(&at) {
                        // Damage to the stored checksum itself: the contents still compute to it.
                        assert_eq!(expected, stored);
                    } else {
                        assert_eq!(found, stored, "byte {at}");
                    }
                }
                other => panic!("byte {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn block_number_matters() {
        let pages = fixture_pages();
        for (blkno, page) in pages.iter().enumerate().take(4) {
            for other in [blkno as u32 + 1, blkno as u32 + 131_072, u32::MAX] {
                let verdict = verify_page(page, other, u64::MAX);
                assert!(
                    matches!(verdict, PageVerdict::Bad { expected, found } if expected != found)
                );
            }
        }
    }

    #[test]
    fn all_zero_page_is_new_for_any_block_and_lsn() {
        let zero = vec![0u8; PAGE_SIZE];
        for blkno in [0, 7, u32::MAX] {
            assert_eq!(verify_page(&zero, blkno, 0), PageVerdict::New);
            assert_eq!(verify_page(&zero, blkno, u64::MAX), PageVerdict::New);
        }
    }

    #[test]
    fn new_page_with_garbage_is_bad() {
        // pd_upper == 0 but bytes elsewhere: a header zeroed by damage, or a torn new page.
        let mut page = vec![0u8; PAGE_SIZE];
        page[5000] = 0x42;
        assert!(matches!(
            verify_page(&page, 0, u64::MAX),
            PageVerdict::Bad { .. }
        ));
        // Even when the garbage sits in the LSN, which would otherwise make it "skipped".
        let mut page = vec![0u8; PAGE_SIZE];
        page[0] = 0xFF;
        assert!(matches!(verify_page(&page, 0, 1), PageVerdict::Bad { .. }));
        // And a real page whose pd_upper was zeroed.
        let mut page = fixture_pages()[0].to_vec();
        page[UPPER_AT..UPPER_AT + 2].fill(0);
        assert!(matches!(
            verify_page(&page, 0, u64::MAX),
            PageVerdict::Bad { .. }
        ));
    }

    #[test]
    fn pages_written_since_backup_start_are_skipped() {
        let page = fixture_pages()[2];
        let lsn = page_lsn(page);
        assert_eq!(lsn, 0x0177_6820);
        assert_eq!(verify_page(page, 2, lsn), PageVerdict::Skipped);
        assert_eq!(verify_page(page, 2, lsn - 1000), PageVerdict::Skipped);
        assert_eq!(verify_page(page, 2, lsn + 1), PageVerdict::Valid);
        // A torn copy of a page that is being rewritten: skipped, not reported.
        let mut torn = page.to_vec();
        torn[6000..].fill(0xAB);
        assert_eq!(verify_page(&torn, 2, lsn), PageVerdict::Skipped);
        assert!(matches!(
            verify_page(&torn, 2, lsn + 1),
            PageVerdict::Bad { .. }
        ));
    }

    #[test]
    fn lsn_halves_are_xlogid_then_xrecoff() {
        let mut page = fixture_pages()[0].to_vec();
        page[0..4].copy_from_slice(&1u32.to_le_bytes());
        page[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(page_lsn(&page), (1 << 32) | 2);
        assert_eq!(verify_page(&page, 0, (1 << 32) | 2), PageVerdict::Skipped);
        assert!(matches!(
            verify_page(&page, 0, (1 << 32) | 3),
            PageVerdict::Bad { .. }
        ));
    }

    #[test]
    fn wrong_length_is_bad_without_panicking() {
        let page = fixture_pages()[0];
        for len in [0, 1, 9, 15, PAGE_SIZE - 1, PAGE_SIZE + 1] {
            let mut buf = page.to_vec();
            buf.resize(len, 0);
            assert_eq!(page_checksum(&buf, 0), 0);
            assert!(matches!(
                verify_page(&buf, 0, u64::MAX),
                PageVerdict::Bad { expected: 0, .. }
            ));
        }
    }

    #[test]
    fn block_numbers_count_across_segments() {
        assert_eq!(block_number(0, 5, DEFAULT_RELATION_SEGMENT_BLOCKS), 5);
        assert_eq!(block_number(1, 0, DEFAULT_RELATION_SEGMENT_BLOCKS), 131_072);
        assert_eq!(block_number(3, 17, 1024), 3 * 1024 + 17);
        assert_eq!(block_number(u32::MAX, 0, 2), u32::MAX - 1);
    }

    #[test]
    fn checksum_is_never_zero() {
        // The reduction maps to 1..=65535, leaving 0 to mean "no checksum". Sweeping the block
        // number sweeps the reduced value through every residue.
        let page = fixture_pages()[0];
        for blkno in 0..70_000u32 {
            assert_ne!(page_checksum(page, blkno), 0);
        }
    }
}
