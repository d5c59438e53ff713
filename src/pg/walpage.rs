//! WAL page headers (`XLogPageHeaderData` and, on the first page of every segment,
//! `XLogLongPageHeaderData`, xlog_internal.h): what each WAL page says about itself, and the
//! check that a segment file is the segment its name says, of the cluster and version expected.
//!
//! PostgreSQL writes these structs in the machine's byte order; every platform pgcairn runs on
//! (x86-64, aarch64) is little-endian, so they are read as little-endian whatever the host.

use crate::error::{Error, Result};
use crate::pg::wal::{self, Lsn};

/// `XLP_FIRST_IS_CONTRECORD`: the page starts with the rest of a record begun on an earlier
/// page; `xlp_rem_len` says how many bytes of it remain.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`: the page has the long header (the first page of a segment).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_BKP_REMOVABLE`: full-page images starting on this page may be dropped.
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: the record begun on the previous page was abandoned
/// (a crash in the middle of it) and an `XLOG_OVERWRITE_CONTRECORD` record replaces it.
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// `XLP_ALL_FLAGS`: every flag bit a valid header may have.
const XLP_ALL_FLAGS: u16 = 0x000F;

/// `SizeOfXLogShortPHD`: the standard header, MAXALIGNed (20 bytes of fields, 4 of padding).
pub const SHORT_HEADER_LEN: usize = 24;
/// `SizeOfXLogLongPHD`: the long header, MAXALIGNed.
pub const LONG_HEADER_LEN: usize = 40;

/// `XLOG_PAGE_MAGIC` of each major PostgreSQL supports here, from xlog_internal.h of each
/// release branch (checked against the first segment of a fresh cluster of 13, 15 and 18).
/// The magic changes whenever the WAL format does, so it says which release wrote a segment.
const PAGE_MAGICS: [(u16, u32); 6] = [
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
    (0xD118, 18),
];

/// The fields every WAL page starts with (`XLogPageHeaderData`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    /// `xlp_magic`: the WAL format version ([`major_of_magic`]).
    pub magic: u16,
    /// `xlp_info`: the `XLP_*` flags.
    pub info: u16,
    /// `xlp_tli`: the timeline of the first record on the page.
    pub timeline: u32,
    /// `xlp_pageaddr`: the LSN of the page's first byte.
    pub page_addr: Lsn,
    /// `xlp_rem_len`: with [`XLP_FIRST_IS_CONTRECORD`], the bytes of the continued record left.
    pub rem_len: u32,
}

impl PageHeader {
    /// Length of this page's header: long or short.
    pub fn header_len(&self) -> usize {
        if self.info & XLP_LONG_HEADER != 0 {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        }
    }
}

/// The header of the first page of a segment (`XLogLongPageHeaderData`): the standard fields
/// and three that identify the cluster and its WAL geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongPageHeader {
    pub magic: u16,
    pub info: u16,
    pub timeline: u32,
    pub page_addr: Lsn,
    /// `xlp_sysid`: the system identifier of the cluster (as in pg_control).
    pub system_identifier: u64,
    /// `xlp_seg_size`: the WAL segment size in bytes.
    pub segment_size: u32,
    /// `xlp_xlog_blcksz`: the WAL page size in bytes (`XLOG_BLCKSZ`).
    pub block_size: u32,
}

/// Reads the standard page header from the start of `bytes`.
pub fn parse_page_header(bytes: &[u8]) -> Result<PageHeader> {
    let Some(head) = bytes.first_chunk::<SHORT_HEADER_LEN>() else {
        return Err(Error::integrity(format!(
            "WAL page header: {} bytes, need {SHORT_HEADER_LEN}",
            bytes.len()
        )));
    };
    Ok(PageHeader {
        magic: u16::from_le_bytes([head[0], head[1]]),
        info: u16::from_le_bytes([head[2], head[3]]),
        timeline: le_u32(head, 4),
        page_addr: Lsn(le_u64(head, 8)),
        rem_len: le_u32(head, 16),
    })
}

/// Reads the long page header from the start of `bytes` (the first page of a segment). Only
/// the length is checked here; [`check_segment_header`] checks the values.
pub fn parse_long_page_header(bytes: &[u8]) -> Result<LongPageHeader> {
    let Some(head) = bytes.first_chunk::<LONG_HEADER_LEN>() else {
        return Err(Error::integrity(format!(
            "WAL long page header: {} bytes, need {LONG_HEADER_LEN}",
            bytes.len()
        )));
    };
    let short = parse_page_header(head)?;
    Ok(LongPageHeader {
        magic: short.magic,
        info: short.info,
        timeline: short.timeline,
        page_addr: short.page_addr,
        system_identifier: le_u64(head, 24),
        segment_size: le_u32(head, 32),
        block_size: le_u32(head, 36),
    })
}

/// The PostgreSQL major whose WAL has page magic `magic`, for 13 to 18.
pub fn major_of_magic(magic: u16) -> Option<u32> {
    PAGE_MAGICS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, major)| *major)
}

/// Checks that `bytes`, the start of a segment file named as segment `segno` of timeline
/// `name_timeline`, begins with the long header such a segment has: the long-header flag, a
/// known magic, the page address the name implies, the expected segment size and a sane page
/// size. The page's timeline may be older than the name's: the first segment of a new timeline
/// is a copy of the parent's segment up to the switch point, pages and all. Returns the header,
/// whose system identifier the caller can compare with its cluster's.
pub fn check_segment_header(
    bytes: &[u8],
    name_timeline: u32,
    segno: u64,
    segment_size: u64,
) -> Result<LongPageHeader> {
    let header = parse_long_page_header(bytes)?;
    let bad = |what: String| Error::integrity(format!("WAL segment header: {what}"));
    if header.info & XLP_LONG_HEADER == 0 {
        return Err(bad(format!(
            "the first page has no long header (xlp_info {:#06x})",
            header.info
        )));
    }
    if header.info & !XLP_ALL_FLAGS != 0 {
        return Err(bad(format!(
            "unknown flag bits in xlp_info {:#06x}",
            header.info
        )));
    }
    if major_of_magic(header.magic).is_none() {
        return Err(bad(format!(
            "page magic {:#06X} is not that of PostgreSQL 13 to 18",
            header.magic
        )));
    }
    if !wal::is_valid_segment_size(segment_size) {
        return Err(Error::internal(format!(
            "check_segment_header called with segment size {segment_size}"
        )));
    }
    if u64::from(header.segment_size) != segment_size {
        return Err(bad(format!(
            "segment size {} in the header but {segment_size} expected",
            header.segment_size
        )));
    }
    // XLOG_BLCKSZ is a power of two from 1 to 64 kB (configure --with-wal-blocksize), and a
    // segment holds whole pages.
    let block_size = header.block_size;
    if !block_size.is_power_of_two() || !(1 << 10..=1 << 16).contains(&block_size) {
        return Err(bad(format!(
            "page size {block_size} is not a power of two from 1 kB to 64 kB"
        )));
    }
    let expected = segno
        .checked_mul(segment_size)
        .map(Lsn)
        .ok_or_else(|| bad(format!("segment number {segno} is past the end of WAL")))?;
    if header.page_addr != expected {
        return Err(bad(format!(
            "page address {} but the name says {expected}",
            header.page_addr
        )));
    }
    if header.timeline == 0 || header.timeline > name_timeline {
        return Err(bad(format!(
            "page timeline {} but the name says timeline {name_timeline} (a segment may carry \
             its own timeline or an earlier one, never a later one)",
            header.timeline
        )));
    }
    Ok(header)
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(field)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const MIB_16: u64 = 16 << 20;

    /// The first 40 bytes of 000000010000000000000001 right after initdb, PostgreSQL 13.23,
    /// 15 (Debian) and 18.4.
    const PG13: &str =
        "06d10200010000000000000100000000000000000000000054f6b5987388016b0000000100200000";
    const PG15: &str =
        "10d1020001000000000000010000000000000000000000006ca617247488016b0000000100200000";
    const PG18: &str =
        "18d10200010000000000000100000000000000000000000083469cb17488016b0000000100200000";

    fn bytes(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    #[test]
    fn reads_real_long_headers() {
        for (text, major, sysid) in [
            (PG13, 13, 0x6b01_8873_98b5_f654),
            (PG15, 15, 0x6b01_8874_2417_a66c),
            (PG18, 18, 0x6b01_8874_b19c_4683),
        ] {
            let header = parse_long_page_header(&bytes(text)).unwrap();
            assert_eq!(major_of_magic(header.magic), Some(major));
            assert_eq!(header.info, XLP_LONG_HEADER);
            assert_eq!(header.timeline, 1);
            assert_eq!(header.page_addr, Lsn(0x100_0000));
            assert_eq!(header.system_identifier, sysid);
            assert_eq!(header.segment_size, 16 << 20);
            assert_eq!(header.block_size, 8192);
            assert_eq!(
                check_segment_header(&bytes(text), 1, 1, MIB_16).unwrap(),
                header
            );
            let short = parse_page_header(&bytes(text)).unwrap();
            assert_eq!(short.header_len(), LONG_HEADER_LEN);
            assert_eq!(short.rem_len, 0);
        }
    }

    #[test]
    fn magics_of_every_supported_major() {
        let majors: Vec<Option<u32>> = [0xD106, 0xD10D, 0xD110, 0xD113, 0xD116, 0xD118]
            .into_iter()
            .map(major_of_magic)
            .collect();
        assert_eq!(majors, [13, 14, 15, 16, 17, 18].map(Some).to_vec());
        for unknown in [0, 0xD101, 0xD105, 0xD119, 0x06D1, 0xFFFF] {
            assert_eq!(major_of_magic(unknown), None);
        }
    }

    #[test]
    fn a_later_segment_and_an_earlier_page_timeline_pass() {
        let mut page = bytes(PG15);
        page[8..16].copy_from_slice(&0x1_0400_0000u64.to_le_bytes());
        // Segment 0x104 named on timeline 3, its pages still on timeline 1.
        let header = check_segment_header(&page, 3, 0x104, MIB_16).unwrap();
        assert_eq!(header.page_addr, Lsn(0x1_0400_0000));
        assert_eq!(header.timeline, 1);
    }

    #[test]
    fn each_wrong_field_is_named() {
        type Spoil = fn(&mut Vec<u8>);
        let cases: [(&str, Spoil, &str); 8] = [
            ("short", |p| p.truncate(39), "need 40"),
            ("no long flag", |p| p[2] = 0, "no long header"),
            ("unknown flag", |p| p[2] |= 0x10, "unknown flag bits"),
            ("magic", |p| p[0] = 0x05, "page magic 0xD105"),
            (
                "segment size",
                |p| p[32..36].copy_from_slice(&(64u32 << 20).to_le_bytes()),
                "segment size 67108864 in the header but 16777216 expected",
            ),
            (
                "block size",
                |p| p[36..40].copy_from_slice(&8000u32.to_le_bytes()),
                "page size 8000",
            ),
            (
                "address",
                |p| p[8..16].copy_from_slice(&0x300_0000u64.to_le_bytes()),
                "page address 0/3000000 but the name says 0/1000000",
            ),
            (
                "timeline",
                |p| p[4..8].copy_from_slice(&2u32.to_le_bytes()),
                "page timeline 2 but the name says timeline 1",
            ),
        ];
        for (what, spoil, says) in cases {
            let mut page = bytes(PG15);
            spoil(&mut page);
            let err = check_segment_header(&page, 1, 1, MIB_16).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Integrity, "{what}");
            assert!(err.to_string().contains(says), "{what}: {err}");
        }
        let err = check_segment_header(&bytes(PG15), 1, u64::MAX, MIB_16).unwrap_err();
        assert!(err.to_string().contains("past the end of WAL"), "{err}");
        let mut page = bytes(PG15);
        page[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert!(check_segment_header(&page, 1, 1, MIB_16).is_err());
    }
}
