//! WAL page headers (`XLogPageHeaderData`, `XLogLongPageHeaderData` in xlog_internal.h): what
//! archive-push checks before it accepts a segment.

use crate::error::{Error, Result};
use crate::pg::wal::Lsn;

/// `XLP_LONG_HEADER`: set on the first page of a segment.
const XLP_LONG_HEADER: u16 = 0x0002;
const LONG_HEADER_LEN: usize = 40;

/// The long header on the first page of every WAL segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongPageHeader {
    pub magic: u16,
    pub info: u16,
    pub timeline: u32,
    pub page_addr: Lsn,
    pub system_identifier: u64,
    pub segment_size: u32,
    pub block_size: u32,
}

/// The PostgreSQL major version whose WAL carries `magic` (`XLOG_PAGE_MAGIC`).
pub fn major_of_magic(magic: u16) -> Option<u32> {
    match magic {
        0xD106 => Some(13),
        0xD10D => Some(14),
        0xD110 => Some(15),
        0xD113 => Some(16),
        0xD116 => Some(17),
        0xD118 => Some(18),
        _ => None,
    }
}

pub fn parse_long_page_header(bytes: &[u8]) -> Result<LongPageHeader> {
    let header: &[u8; LONG_HEADER_LEN] = bytes
        .get(..LONG_HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::usage("too short for a WAL page header"))?;
    let u16_at = |i: usize| u16::from_le_bytes([header[i], header[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    Ok(LongPageHeader {
        magic: u16_at(0),
        info: u16_at(2),
        timeline: u32_at(4),
        page_addr: Lsn(u64_at(8)),
        system_identifier: u64_at(24),
        segment_size: u32_at(32),
        block_size: u32_at(36),
    })
}

/// Checks that `bytes` starts like segment `segno` of a timeline named `name_timeline`.
pub fn check_segment_header(
    bytes: &[u8],
    name_timeline: u32,
    segno: u64,
    segment_size: u64,
) -> Result<LongPageHeader> {
    let header = parse_long_page_header(bytes)?;
    let bad = |what: String| Error::usage(format!("not a valid WAL segment: {what}"));
    if major_of_magic(header.magic).is_none() {
        return Err(bad(format!(
            "page magic {:#06X} is not that of PostgreSQL 13 to 18",
            header.magic
        )));
    }
    if header.info & XLP_LONG_HEADER == 0 {
        return Err(bad("the first page has no long header".into()));
    }
    if u64::from(header.segment_size) != segment_size {
        return Err(bad(format!(
            "the header says segments of {} bytes, the file has {segment_size}",
            header.segment_size
        )));
    }
    let expected = Lsn(segno * segment_size);
    if header.page_addr != expected {
        return Err(bad(format!(
            "page address {} but the name says {expected}",
            header.page_addr
        )));
    }
    // The first segment of a new timeline is copied from its parent, pages and all.
    if header.timeline > name_timeline || header.timeline == 0 {
        return Err(bad(format!(
            "page of timeline {} in a file named for timeline {name_timeline}",
            header.timeline
        )));
    }
    Ok(header)
}
