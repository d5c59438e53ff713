//! What a WAL segment holds for point-in-time recovery: how many transactions committed in it,
//! the first and last commit times, and the restore points made in it.
//!
//! Records are walked as xlogreader.c walks them: page headers (short, or long on the first
//! page of a segment), the record continued from the previous segment skipped by its
//! `xlp_rem_len`, `XLogRecord` headers (xlogrecord.h) at MAXALIGNed positions, records
//! spanning pages, each record's CRC-32C (`XLogRecordCheckCRC`) and `xl_prev` link. Of each
//! record only the block headers are decoded (`DecodeXLogRecord`), to learn how long the main
//! data is; the main data of commits (`xl_xact_commit`, xact.h) and restore points
//! (`xl_restore_point`, xlog_internal.h) is read. The scan stops at the first record that is
//! not valid, as recovery does, and says where.

use crate::pg::wal::Lsn;
use crate::pg::walpage::{
    self, LONG_HEADER_LEN, PageHeader, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER,
};

/// `SizeOfXLogRecord`: xl_tot_len, xl_xid, xl_prev, xl_info, xl_rmid, 2 padding, xl_crc.
const RECORD_HEADER_LEN: usize = 24;
/// Offset of `xl_crc` in the record header: the CRC covers the header up to here.
const CRC_OFFSET: usize = 20;
/// `MAXIMUM_ALIGNOF` on 64-bit platforms: records start at multiples of it.
const MAXALIGN: usize = 8;

/// Resource managers (rmgrlist.h).
const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
/// `XLR_RMGR_INFO_MASK`: the bits of xl_info that the resource manager owns.
const XLR_RMGR_INFO_MASK: u8 = 0xF0;
/// pg_control.h: the XLOG records of interest.
const XLOG_SWITCH: u8 = 0x40;
const XLOG_RESTORE_POINT: u8 = 0x70;
/// xact.h: the transaction record kind is in these bits (the top one is XLOG_XACT_HAS_INFO).
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;

/// xlogrecord.h: the ids that are not block references.
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const XLR_MAX_BLOCK_ID: u8 = 32;
/// Block header `fork_flags` bits.
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
/// `bimg_info` bits: whether an image has a hole is the same bit in every release, but which
/// bits say it is compressed changed in 15 (`BKPIMAGE_IS_COMPRESSED` 0x02 in 13 and 14; in 15
/// and later `BKPIMAGE_COMPRESS_PGLZ` 0x04, `_LZ4` 0x08, `_ZSTD` 0x10, and APPLY moved to 0x02).
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
const BKPIMAGE_COMPRESSED_UP_TO_14: u8 = 0x02;
const BKPIMAGE_COMPRESSED_FROM_15: u8 = 0x04 | 0x08 | 0x10;
/// `RelFileNode` (`RelFileLocator` from 16): three Oids.
const REL_FILE_LOCATOR_LEN: usize = 12;
/// `xl_restore_point`: TimestampTz rp_time, char rp_name[MAXFNAMELEN].
const RESTORE_POINT_LEN: usize = 8 + 64;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800 * 1_000_000;

/// A restore point made with `pg_create_restore_point`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePoint {
    pub name: String,
    /// When it was made, in microseconds since the Unix epoch.
    pub time: i64,
    /// Where its record starts (the LSN pg_waldump shows for it).
    pub lsn: Lsn,
}

/// A span of 32-bit transaction ids, in the modulo-2^32 order PostgreSQL compares them in
/// (`TransactionIdPrecedes`): from `low` forward to `high`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XidRange {
    pub low: u32,
    pub high: u32,
}

impl XidRange {
    /// The span grown to cover `xid`, by whichever end is nearer in modulo-2^32 order.
    fn including(self, xid: u32) -> XidRange {
        if self.contains(xid) {
            self
        } else if xid.wrapping_sub(self.high) < self.low.wrapping_sub(xid) {
            XidRange { high: xid, ..self }
        } else {
            XidRange { low: xid, ..self }
        }
    }

    pub fn contains(&self, xid: u32) -> bool {
        xid.wrapping_sub(self.low) <= self.high.wrapping_sub(self.low)
    }
}

/// What [`summarize_segment`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Commit and commit-prepared records.
    pub commits: u64,
    /// Commit time of the first commit record, in WAL order, in microseconds since the Unix
    /// epoch. Commit times are taken just before the record is inserted, so concurrent
    /// transactions may leave them slightly out of order in WAL.
    pub first_commit_time: Option<i64>,
    /// Commit time of the last commit record, in WAL order.
    pub last_commit_time: Option<i64>,
    pub restore_points: Vec<RestorePoint>,
    /// The transactions the segment's commit records commit (prepared ones aside).
    pub committed_xids: Option<XidRange>,
    /// Where the last valid record ends: the first byte of the first record that is invalid,
    /// incomplete or missing (zero length, bad CRC, broken `xl_prev` link, or running past the
    /// input, as the last record of a segment usually continues into the next one). After an
    /// `XLOG_SWITCH` record, the end of its segment, since the rest of it is unused. If not even
    /// the first page header is valid, `segment_start`.
    pub end_of_valid_records: Lsn,
}

/// Scans the WAL in `bytes`, which starts at `segment_start` (the start of a segment) and is
/// made of `block_size` pages: one segment file, or several consecutive ones concatenated (then
/// records that cross from one into the next are read too). The first page must carry the long
/// header of a PostgreSQL 13 to 18 segment at `segment_start` with this page size, else nothing
/// is found. A trailing partial page is ignored.
///
/// Never panics and never loops: every step moves forward through the input, and the only
/// buffer (one record at a time, reused) is never longer than the input.
pub fn summarize_segment(bytes: &[u8], segment_start: Lsn, block_size: usize) -> SegmentSummary {
    let mut summary = SegmentSummary {
        end_of_valid_records: segment_start,
        ..SegmentSummary::default()
    };
    let Some(reader) = Reader::new(bytes, segment_start, block_size) else {
        return summary;
    };
    let mut record = Vec::new();
    let mut prev_start: Option<u64> = None;
    let Some(mut pos) = reader.skip_continuation() else {
        return summary;
    };
    summary.end_of_valid_records = reader.lsn(pos);

    loop {
        if pos % block_size == 0 {
            // A record starting a page: the page must not claim to continue an earlier one.
            let Some(header) = reader.page_header(pos) else {
                break;
            };
            if header.info & XLP_FIRST_IS_CONTRECORD != 0 {
                break;
            }
            pos += header.header_len();
        }
        let start = pos;
        let Some(end) = reader.read_record(start, &mut record) else {
            break;
        };
        let Some(parsed) = check_record(&record, prev_start, reader.major) else {
            break;
        };
        let start_lsn = reader.lsn(start);
        prev_start = Some(start_lsn.0);
        summary.end_of_valid_records = reader.lsn(end);
        match parsed.kind(&record) {
            Found::Commit(pg_time, xid) => {
                let time = unix_micros(pg_time);
                summary.commits += 1;
                summary.first_commit_time.get_or_insert(time);
                summary.last_commit_time = Some(time);
                if let Some(xid) = xid {
                    summary.committed_xids = Some(match summary.committed_xids {
                        None => XidRange {
                            low: xid,
                            high: xid,
                        },
                        Some(range) => range.including(xid),
                    });
                }
            }
            Found::RestorePoint { pg_time, name } => summary.restore_points.push(RestorePoint {
                name,
                time: unix_micros(pg_time),
                lsn: start_lsn,
            }),
            Found::Switch => {
                // The rest of the segment is unused; the next record, if the input goes on, is
                // at the start of the next segment.
                let segment_end = end.next_multiple_of(reader.segment_size);
                summary.end_of_valid_records = reader.lsn(segment_end);
                pos = segment_end;
                continue;
            }
            Found::Other => {}
        }
        pos = end.next_multiple_of(MAXALIGN);
    }
    summary
}

/// The pages of the input and what the first page header says about all of them.
struct Reader<'a> {
    bytes: &'a [u8],
    start: u64,
    block_size: usize,
    segment_size: usize,
    magic: u16,
    major: u32,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], start: Lsn, block_size: usize) -> Option<Reader<'a>> {
        // Whole pages only, and positions that cannot overflow an LSN.
        let pages = bytes.len().checked_div(block_size)?;
        let bytes = &bytes[..pages * block_size];
        start.0.checked_add(u64::try_from(bytes.len()).ok()?)?;
        let first = walpage::parse_long_page_header(bytes).ok()?;
        let sane = block_size.is_power_of_two()
            && (1 << 10..=1 << 16).contains(&block_size)
            && u32::try_from(block_size) == Ok(first.block_size)
            && crate::pg::wal::is_valid_segment_size(u64::from(first.segment_size))
            && first.info & XLP_LONG_HEADER != 0
            && first.page_addr == start
            && start.0 % u64::from(first.segment_size) == 0;
        let major = walpage::major_of_magic(first.magic)?;
        sane.then_some(Reader {
            bytes,
            start: start.0,
            block_size,
            segment_size: first.segment_size as usize,
            magic: first.magic,
            major,
        })
    }

    fn lsn(&self, offset: usize) -> Lsn {
        // Within the input this cannot overflow (checked in new()); a segment end past the
        // input, after a switch record, could at the very end of the LSN space.
        Lsn(self.start.saturating_add(offset as u64))
    }

    /// The header of the page starting at `offset`, if that page is in the input and its
    /// header is one of this WAL: same magic, the address of its place, known flags, and the
    /// long form exactly at segment starts (`XLogReaderValidatePageHeader`).
    fn page_header(&self, offset: usize) -> Option<PageHeader> {
        let page = self.bytes.get(offset..offset + self.block_size)?;
        let header = walpage::parse_page_header(page).ok()?;
        let at_segment_start = offset % self.segment_size == 0;
        let valid = header.magic == self.magic
            && header.page_addr == self.lsn(offset)
            && header.info & !0x000F == 0
            && (header.info & XLP_LONG_HEADER != 0) == at_segment_start
            && header.timeline != 0;
        if at_segment_start {
            // The long header's own fields must agree with the first page's.
            let long = walpage::parse_long_page_header(page).ok()?;
            let same = long.segment_size as usize == self.segment_size
                && long.block_size as usize == self.block_size;
            return (valid && same).then_some(header);
        }
        valid.then_some(header)
    }

    /// Skips the end of a record begun in the previous segment, if the first page says there
    /// is one, page by page as `xlp_rem_len` counts it down. Returns where the first record
    /// starts (maybe at the start of a page, its header not yet skipped).
    fn skip_continuation(&self) -> Option<usize> {
        let first = self.page_header(0)?;
        if first.info & XLP_FIRST_IS_CONTRECORD == 0 {
            return Some(LONG_HEADER_LEN);
        }
        let mut remaining = first.rem_len as usize;
        let mut page = 0;
        let mut header = first;
        loop {
            let data = self.block_size - header.header_len();
            if remaining <= data {
                return Some(page + header.header_len() + remaining.next_multiple_of(MAXALIGN));
            }
            remaining -= data;
            page += self.block_size;
            header = self.page_header(page)?;
            if header.info & XLP_FIRST_IS_CONTRECORD == 0 || header.rem_len as usize != remaining {
                return None;
            }
        }
    }

    /// Copies the record starting at `start` (past any page header) into `record`, across
    /// pages. Returns the offset just past its last byte; None if it is not a whole, validly
    /// continued record within the input.
    fn read_record(&self, start: usize, record: &mut Vec<u8>) -> Option<usize> {
        // xl_tot_len is the first field and records are MAXALIGNed, so it is on this page.
        let head = self.bytes.get(start..start + 4)?;
        let total = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        // Page headers only add to what the record occupies, so this bounds the buffer by the
        // input length before anything is allocated.
        if total < RECORD_HEADER_LEN || total > self.bytes.len() - start {
            return None;
        }
        record.clear();
        let page_end = (start / self.block_size + 1) * self.block_size;
        let first = total.min(page_end - start);
        record.extend_from_slice(&self.bytes[start..start + first]);
        let mut pos = start + first;
        while record.len() < total {
            // pos is the start of the next page.
            let header = self.page_header(pos)?;
            let remaining = total - record.len();
            if header.info & XLP_FIRST_IS_CONTRECORD == 0 || header.rem_len as usize != remaining {
                return None;
            }
            let data = pos + header.header_len();
            let take = remaining.min(self.block_size - header.header_len());
            record.extend_from_slice(self.bytes.get(data..data + take)?);
            pos = data + take;
        }
        Some(pos)
    }
}

/// A record whose header, CRC and block headers checked out.
struct Record {
    rmid: u8,
    info: u8,
    /// `xl_xid`: for a commit record, the top-level transaction it commits.
    xid: u32,
    /// Where the main data starts in the record.
    main_data: usize,
}

/// What a record means for the summary.
enum Found {
    /// A commit's time; and its transaction, unless a prepared one (whose xid is in the main
    /// data, not the header).
    Commit(i64, Option<u32>),
    RestorePoint {
        pg_time: i64,
        name: String,
    },
    Switch,
    Other,
}

impl Record {
    fn kind(&self, record: &[u8]) -> Found {
        let main = &record[self.main_data..];
        let rmgr_info = self.info & XLR_RMGR_INFO_MASK;
        match self.rmid {
            RM_XACT_ID
                if matches!(
                    self.info & XLOG_XACT_OPMASK,
                    XLOG_XACT_COMMIT | XLOG_XACT_COMMIT_PREPARED
                ) =>
            {
                // xl_xact_commit starts with TimestampTz xact_time.
                let xid = (self.info & XLOG_XACT_OPMASK == XLOG_XACT_COMMIT && self.xid != 0)
                    .then_some(self.xid);
                main.first_chunk::<8>().map_or(Found::Other, |time| {
                    Found::Commit(i64::from_le_bytes(*time), xid)
                })
            }
            RM_XLOG_ID if rmgr_info == XLOG_RESTORE_POINT && main.len() >= RESTORE_POINT_LEN => {
                let mut time = [0u8; 8];
                time.copy_from_slice(&main[..8]);
                let name = &main[8..RESTORE_POINT_LEN];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                Found::RestorePoint {
                    pg_time: i64::from_le_bytes(time),
                    name: String::from_utf8_lossy(name).into_owned(),
                }
            }
            RM_XLOG_ID if rmgr_info == XLOG_SWITCH => Found::Switch,
            _ => Found::Other,
        }
    }
}

/// Checks a whole record (`ValidXLogRecordHeader`, `ValidXLogRecord`, `DecodeXLogRecord`):
/// its link to the previous record when that is known, its CRC, and block headers that
/// account for exactly its length. Returns where its main data starts.
fn check_record(record: &[u8], prev_start: Option<u64>, major: u32) -> Option<Record> {
    let header = record.first_chunk::<RECORD_HEADER_LEN>()?;
    let mut prev = [0u8; 8];
    prev.copy_from_slice(&header[8..16]);
    if prev_start.is_some_and(|expected| u64::from_le_bytes(prev) != expected) {
        return None;
    }
    let stored_crc = u32::from_le_bytes([header[20], header[21], header[22], header[23]]);
    // pg_crc32c: CRC-32C over the record's data, then its header up to xl_crc (hardware
    // accelerated: a table per byte took longer than compressing the segment).
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&record[RECORD_HEADER_LEN..]),
        &header[..CRC_OFFSET],
    );
    if crc != stored_crc {
        return None;
    }
    let main_len = main_data_len(&record[RECORD_HEADER_LEN..], major)?;
    Some(Record {
        info: header[16],
        rmid: header[17],
        xid: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
        main_data: record.len() - main_len,
    })
}

/// Walks the block headers after the record header (`DecodeXLogRecord`) to the main data
/// header and returns the main data length. None if the headers are malformed or their
/// lengths do not add up to the record's.
fn main_data_len(body: &[u8], major: u32) -> Option<usize> {
    let mut headers = Cursor { bytes: body };
    // Bytes that follow the headers: block data, images, main data.
    let mut payload: usize = 0;
    let mut main_len = 0;
    let mut last_block: Option<u8> = None;
    let mut have_rel = false;
    let compressed_bits = if major >= 15 {
        BKPIMAGE_COMPRESSED_FROM_15
    } else {
        BKPIMAGE_COMPRESSED_UP_TO_14
    };
    while headers.bytes.len() > payload {
        match headers.u8()? {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(headers.u8()?);
                payload += main_len;
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = headers.u32()? as usize;
                payload = payload.checked_add(main_len)?;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                headers.skip(2)?;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                headers.skip(4)?;
            }
            id if id <= XLR_MAX_BLOCK_ID => {
                // Block ids strictly increase within a record.
                if last_block.is_some_and(|last| id <= last) {
                    return None;
                }
                last_block = Some(id);
                let fork_flags = headers.u8()?;
                let data_len = usize::from(headers.u16()?);
                // HAS_DATA and a data length go together.
                if (fork_flags & BKPBLOCK_HAS_DATA != 0) != (data_len != 0) {
                    return None;
                }
                payload += data_len;
                if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                    let image_len = usize::from(headers.u16()?);
                    headers.skip(2)?; // hole_offset
                    let bimg_info = headers.u8()?;
                    if bimg_info & compressed_bits != 0 && bimg_info & BKPIMAGE_HAS_HOLE != 0 {
                        headers.skip(2)?; // XLogRecordBlockCompressHeader.hole_length
                    }
                    payload += image_len;
                }
                if fork_flags & BKPBLOCK_SAME_REL == 0 {
                    headers.skip(REL_FILE_LOCATOR_LEN)?;
                    have_rel = true;
                } else if !have_rel {
                    return None;
                }
                headers.skip(4)?; // BlockNumber
            }
            _ => return None,
        }
    }
    (headers.bytes.len() == payload).then_some(main_len)
}

/// Reads header fields front to back; every read fails rather than run past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take::<2>().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes = self.bytes.get(n..)?;
        Some(())
    }
}

/// A PostgreSQL `TimestampTz` (microseconds since 2000-01-01 UTC) as microseconds since the
/// Unix epoch. Saturates rather than overflow on nonsense values.
pub fn unix_micros(pg_time: i64) -> i64 {
    pg_time.saturating_add(PG_EPOCH_UNIX_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 8192;
    const SEG: usize = 1 << 20;
    const MAGIC_15: u16 = 0xD110;
    const MAGIC_13: u16 = 0xD106;

    use crc32c::crc32c;

    #[test]
    fn crc32c_check_values() {
        // The standard check value, and RFC 3720's 32 zero bytes.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b""), 0);
    }

    /// Builds WAL the way XLogInsert lays it out, for tests: records placed at MAXALIGNed
    /// positions, split over pages with continuation headers.
    struct WalWriter {
        bytes: Vec<u8>,
        start: u64,
        magic: u16,
        prev: u64,
        /// Where the last record ended.
        last_end: u64,
        /// Where the next record goes.
        pos: usize,
    }

    impl WalWriter {
        fn new(start: u64, magic: u16, segments: usize) -> WalWriter {
            let mut w = WalWriter {
                bytes: vec![0; segments * SEG],
                start,
                magic,
                prev: 0,
                last_end: 0,
                pos: 0,
            };
            for page in (0..segments * SEG).step_by(BLOCK) {
                w.write_page_header(page, 0, 0);
            }
            w.pos = LONG_HEADER_LEN;
            w
        }

        fn write_page_header(&mut self, page: usize, flags: u16, rem_len: u32) {
            let long = page % SEG == 0;
            let info = flags | if long { XLP_LONG_HEADER } else { 0 };
            let h = &mut self.bytes[page..];
            h[0..2].copy_from_slice(&self.magic.to_le_bytes());
            h[2..4].copy_from_slice(&info.to_le_bytes());
            h[4..8].copy_from_slice(&1u32.to_le_bytes());
            h[8..16].copy_from_slice(&(self.start + page as u64).to_le_bytes());
            h[16..20].copy_from_slice(&rem_len.to_le_bytes());
            if long {
                h[24..32].copy_from_slice(&42u64.to_le_bytes());
                h[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
                h[36..40].copy_from_slice(&(BLOCK as u32).to_le_bytes());
            }
        }

        fn header_len(page: usize) -> usize {
            if page % SEG == 0 { LONG_HEADER_LEN } else { 24 }
        }

        /// Appends a record made of `body` (everything after the record header); returns its
        /// start LSN.
        fn record(&mut self, rmid: u8, info: u8, body: &[u8]) -> u64 {
            if self.pos % BLOCK == 0 {
                self.pos += Self::header_len(self.pos);
            }
            let total = RECORD_HEADER_LEN + body.len();
            let mut rec = Vec::with_capacity(total);
            rec.extend_from_slice(&(total as u32).to_le_bytes());
            rec.extend_from_slice(&7u32.to_le_bytes());
            rec.extend_from_slice(&self.prev.to_le_bytes());
            rec.extend_from_slice(&[info, rmid, 0, 0]);
            rec.extend_from_slice(&[0; 4]);
            rec.extend_from_slice(body);
            let crc = crc32c::crc32c_append(crc32c(body), &rec[..CRC_OFFSET]);
            rec[20..24].copy_from_slice(&crc.to_le_bytes());
            let start = self.start + self.pos as u64;
            let mut written = 0;
            while written < total {
                if self.pos % BLOCK == 0 {
                    let page = self.pos;
                    self.write_page_header(page, XLP_FIRST_IS_CONTRECORD, (total - written) as u32);
                    self.pos += Self::header_len(page);
                }
                let room = BLOCK - self.pos % BLOCK;
                let n = room.min(total - written);
                self.bytes[self.pos..self.pos + n].copy_from_slice(&rec[written..written + n]);
                written += n;
                self.pos += n;
            }
            self.last_end = self.start + self.pos as u64;
            self.pos = self.pos.next_multiple_of(MAXALIGN);
            self.prev = start;
            start
        }

        fn commit(&mut self, pg_time: i64) -> u64 {
            let mut main = pg_time.to_le_bytes().to_vec();
            main.extend_from_slice(&[0; 4]);
            self.record(RM_XACT_ID, XLOG_XACT_COMMIT, &data_short(&main))
        }
    }

    /// The body of a record with only main data.
    fn data_short(main: &[u8]) -> Vec<u8> {
        let mut body = vec![XLR_BLOCK_ID_DATA_SHORT, main.len() as u8];
        body.extend_from_slice(main);
        body
    }

    fn restore_point_body(pg_time: i64, name: &str) -> Vec<u8> {
        let mut main = pg_time.to_le_bytes().to_vec();
        let mut rp_name = [0u8; 64];
        rp_name[..name.len()].copy_from_slice(name.as_bytes());
        main.extend_from_slice(&rp_name);
        data_short(&main)
    }

    #[test]
    fn xid_ranges_grow_by_the_nearer_end_across_wraparound() {
        let one = |xid| XidRange {
            low: xid,
            high: xid,
        };
        let r = one(100).including(90).including(150);
        assert_eq!(r, XidRange { low: 90, high: 150 });
        assert!(r.contains(90) && r.contains(120) && r.contains(150));
        assert!(!r.contains(89) && !r.contains(151));
        let wrapped = one(u32::MAX - 5).including(10).including(u32::MAX - 9);
        assert_eq!(
            wrapped,
            XidRange {
                low: u32::MAX - 9,
                high: 10
            }
        );
        assert!(wrapped.contains(u32::MAX) && wrapped.contains(0) && wrapped.contains(10));
        assert!(!wrapped.contains(11) && !wrapped.contains(u32::MAX - 10));
    }

    #[test]
    fn commits_and_restore_points_across_pages() {
        let start = 3 * SEG as u64;
        let mut w = WalWriter::new(start, MAGIC_15, 1);
        w.commit(1_000);
        // A large record that spans several pages.
        let big = vec![0xAB; 3 * BLOCK];
        let mut body = vec![XLR_BLOCK_ID_DATA_LONG];
        body.extend_from_slice(&(big.len() as u32).to_le_bytes());
        body.extend_from_slice(&big);
        w.record(10, 0, &body);
        let rp = w.record(
            RM_XLOG_ID,
            XLOG_RESTORE_POINT,
            &restore_point_body(2_000, "p1"),
        );
        // A commit prepared, and a commit with XLOG_XACT_HAS_INFO set.
        let mut main = 3_000i64.to_le_bytes().to_vec();
        main.extend_from_slice(&[0; 8]);
        w.record(RM_XACT_ID, XLOG_XACT_COMMIT_PREPARED, &data_short(&main));
        w.record(RM_XACT_ID, 0x80 | XLOG_XACT_COMMIT, &data_short(&main));
        // An abort (0x20) is not a commit.
        w.record(RM_XACT_ID, 0x20, &data_short(&main));
        let end = w.last_end;

        let summary = summarize_segment(&w.bytes, Lsn(start), BLOCK);
        assert_eq!(summary.commits, 3);
        // Every test record carries xl_xid 7; the prepared commit's is not its transaction's.
        assert_eq!(summary.committed_xids, Some(XidRange { low: 7, high: 7 }));
        assert_eq!(
            summary.first_commit_time,
            Some(1_000 + PG_EPOCH_UNIX_MICROS)
        );
        assert_eq!(summary.last_commit_time, Some(3_000 + PG_EPOCH_UNIX_MICROS));
        assert_eq!(
            summary.restore_points,
            vec![RestorePoint {
                name: "p1".into(),
                time: 2_000 + PG_EPOCH_UNIX_MICROS,
                lsn: Lsn(rp),
            }]
        );
        // The last record's end, not rounded up to the next record's position.
        assert_eq!(summary.end_of_valid_records, Lsn(end));
        assert_ne!(end % 8, 0);
    }

    #[test]
    fn block_headers_are_decoded_to_find_the_main_data() {
        // PG15 layout: block 0 with a compressed image with a hole (compress header follows),
        // its data, a new relation; block 1 same relation with an uncompressed image; an
        // origin and a top-level xid; then the main data.
        let mut body = vec![0, BKPBLOCK_HAS_IMAGE | BKPBLOCK_HAS_DATA];
        body.extend_from_slice(&5u16.to_le_bytes());
        body.extend_from_slice(&100u16.to_le_bytes()); // image length
        body.extend_from_slice(&40u16.to_le_bytes()); // hole offset
        body.push(BKPIMAGE_HAS_HOLE | 0x04); // PGLZ
        body.extend_from_slice(&8000u16.to_le_bytes()); // hole length
        body.extend_from_slice(&[1; REL_FILE_LOCATOR_LEN]);
        body.extend_from_slice(&9u32.to_le_bytes());
        body.extend_from_slice(&[1, BKPBLOCK_HAS_IMAGE | BKPBLOCK_SAME_REL, 0, 0]);
        body.extend_from_slice(&50u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.push(0x02); // APPLY only
        body.extend_from_slice(&10u32.to_le_bytes());
        body.extend_from_slice(&[XLR_BLOCK_ID_ORIGIN, 1, 0]);
        body.extend_from_slice(&[XLR_BLOCK_ID_TOPLEVEL_XID, 1, 2, 3, 4]);
        let mut main = 5_000i64.to_le_bytes().to_vec();
        main.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, main.len() as u8]);
        body.extend_from_slice(&[0xCC; 5 + 100 + 50]);
        body.extend_from_slice(&main);
        assert_eq!(main_data_len(&body, 15), Some(main.len()));
        let mut w = WalWriter::new(0, MAGIC_15, 1);
        w.record(RM_XACT_ID, XLOG_XACT_COMMIT, &body);
        let summary = summarize_segment(&w.bytes, Lsn(0), BLOCK);
        assert_eq!(summary.commits, 1);
        assert_eq!(
            summary.first_commit_time,
            Some(5_000 + PG_EPOCH_UNIX_MICROS)
        );

        // Read as PostgreSQL 13 wrote it, 0x04 is APPLY and 0x02 says compressed: block 0's
        // image would have no compress header, so the headers no longer line up.
        assert_eq!(main_data_len(&body, 13), None);
        let mut w = WalWriter::new(0, MAGIC_13, 1);
        w.record(RM_XACT_ID, XLOG_XACT_COMMIT, &body);
        assert_eq!(summarize_segment(&w.bytes, Lsn(0), BLOCK).commits, 0);

        // Malformed headers.
        for bad in [
            vec![33u8, 0, 0, 0],                                  // block id past 32
            vec![0, BKPBLOCK_HAS_DATA, 0, 0],                     // HAS_DATA, no data
            vec![0, BKPBLOCK_SAME_REL, 0, 0, 0, 0, 0, 0],         // SAME_REL first
            vec![XLR_BLOCK_ID_DATA_SHORT, 5, 1, 2],               // main data past the end
            vec![XLR_BLOCK_ID_DATA_LONG, 0xFF, 0xFF, 0xFF, 0xFF], // same, long
            vec![XLR_BLOCK_ID_DATA_SHORT, 1, 1, 2],               // bytes left over
            vec![XLR_BLOCK_ID_ORIGIN, 1],                         // truncated
        ] {
            assert_eq!(main_data_len(&bad, 15), None, "{bad:?}");
        }
        assert_eq!(main_data_len(&[], 15), Some(0));
    }

    #[test]
    fn skips_the_record_continued_from_the_previous_segment() {
        // Write two segments, then scan only the second: its first record is the tail of one
        // that began in the first.
        let mut w = WalWriter::new(0, MAGIC_15, 2);
        w.commit(1);
        let filler = data_short(&[0; 200]);
        while w.pos < SEG - 1000 {
            w.record(10, 0, &filler);
        }
        let mut body = vec![XLR_BLOCK_ID_DATA_LONG];
        body.extend_from_slice(&(2 * BLOCK as u32).to_le_bytes());
        body.extend_from_slice(&vec![0; 2 * BLOCK]);
        let spanning = w.record(10, 0, &body);
        let after = w.commit(7);
        let second = &w.bytes[SEG..];
        let summary = summarize_segment(second, Lsn(SEG as u64), BLOCK);
        assert_eq!(summary.commits, 1);
        assert_eq!(summary.first_commit_time, Some(7 + PG_EPOCH_UNIX_MICROS));
        assert!(summary.end_of_valid_records.0 > after);

        // The first segment alone: the spanning record runs past the input, so the valid
        // records end where it starts.
        let summary = summarize_segment(&w.bytes[..SEG], Lsn(0), BLOCK);
        assert_eq!(summary.commits, 1);
        assert!(spanning < SEG as u64);
        assert_eq!(summary.end_of_valid_records.0.next_multiple_of(8), spanning);
        // Both together: every record.
        let summary = summarize_segment(&w.bytes, Lsn(0), BLOCK);
        assert_eq!(summary.commits, 2);
    }

    #[test]
    fn stops_at_the_first_invalid_record() {
        let mut w = WalWriter::new(0, MAGIC_15, 1);
        w.commit(1);
        let second = w.commit(2);
        w.commit(3);
        let good = summarize_segment(&w.bytes, Lsn(0), BLOCK);
        assert_eq!(good.commits, 3);

        // A flipped bit in the second record's data: bad CRC.
        let mut bytes = w.bytes.clone();
        bytes[second as usize + RECORD_HEADER_LEN + 3] ^= 1;
        let s = summarize_segment(&bytes, Lsn(0), BLOCK);
        assert_eq!(s.commits, 1);
        assert_eq!(s.end_of_valid_records.0.next_multiple_of(8), second);
        assert!(s.end_of_valid_records.0 < second);

        // A broken xl_prev link (the CRC redone so that only the link is wrong).
        let mut w2 = WalWriter::new(0, MAGIC_15, 1);
        w2.commit(1);
        w2.prev = 12345;
        w2.commit(2);
        assert_eq!(summarize_segment(&w2.bytes, Lsn(0), BLOCK).commits, 1);

        // Zeros after the last record: the normal end of WAL.
        assert_eq!(good.end_of_valid_records, Lsn(w.last_end));
    }

    #[test]
    fn switch_ends_the_segment_and_the_next_one_is_read() {
        let mut w = WalWriter::new(0, MAGIC_15, 2);
        w.commit(1);
        w.record(RM_XLOG_ID, XLOG_SWITCH, &[]);
        // Garbage after the switch is ignored.
        let garbage = w.pos;
        w.bytes[garbage..garbage + 8].copy_from_slice(&[0xFF; 8]);
        w.pos = SEG + LONG_HEADER_LEN;
        w.commit(2);
        let s = summarize_segment(&w.bytes[..SEG], Lsn(0), BLOCK);
        assert_eq!(s.commits, 1);
        assert_eq!(s.end_of_valid_records, Lsn(SEG as u64));
        let s = summarize_segment(&w.bytes, Lsn(0), BLOCK);
        assert_eq!(s.commits, 2);
    }

    #[test]
    fn nothing_is_found_in_what_is_not_such_wal() {
        let w = WalWriter::new(SEG as u64, MAGIC_15, 1);
        let empty = |bytes: &[u8], start: u64, block: usize| {
            let s = summarize_segment(bytes, Lsn(start), block);
            assert_eq!(s.commits, 0);
            assert_eq!(s.end_of_valid_records, Lsn(start));
        };
        empty(&w.bytes, 0, BLOCK); // wrong start
        empty(&w.bytes, SEG as u64, 4096); // wrong page size
        empty(&w.bytes, SEG as u64, 0);
        empty(&w.bytes, SEG as u64, 3);
        empty(&w.bytes[..100], SEG as u64, BLOCK);
        empty(&[], 0, BLOCK);
        empty(&w.bytes, u64::MAX - 10, BLOCK);
        let mut unknown = w.bytes.clone();
        unknown[0] = 0x05;
        empty(&unknown, SEG as u64, BLOCK);
        // A valid start with no records.
        let s = summarize_segment(&w.bytes, Lsn(SEG as u64), BLOCK);
        assert_eq!(
            s.end_of_valid_records,
            Lsn(SEG as u64 + LONG_HEADER_LEN as u64)
        );
    }

    #[test]
    fn the_hand_built_fuzz_seed_is_valid_wal() {
        // 1 kB pages, 1 MiB segment 3: a commit, restore point "p1", a 2000-byte record over
        // three pages, a commit prepared, a switch (fuzz/seeds, built with CRC-32C by hand).
        let seed = include_bytes!("../../fuzz/seeds/wal_segment_scan/synthetic-1k-pages");
        let s = summarize_segment(seed, Lsn(3 << 20), 1024);
        assert_eq!(s.commits, 2);
        assert_eq!(s.first_commit_time, Some(unix_micros(848_000_000_000_000)));
        assert_eq!(s.last_commit_time, Some(unix_micros(848_000_001_000_000)));
        assert_eq!(s.restore_points.len(), 1);
        assert_eq!(s.restore_points[0].name, "p1");
        assert_eq!(s.end_of_valid_records, Lsn(4 << 20));
    }

    #[test]
    fn timestamps_convert_from_the_postgresql_epoch() {
        assert_eq!(unix_micros(0), 946_684_800_000_000);
        assert_eq!(unix_micros(-946_684_800_000_000), 0);
        assert_eq!(unix_micros(i64::MAX), i64::MAX);
    }
}
