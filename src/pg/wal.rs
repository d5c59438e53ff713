//! Log sequence numbers and the names of WAL files, computed exactly as PostgreSQL does
//! (`XLogFileName`, `XLByteToSeg`, `XLByteToPrevSeg`, `TLHistoryFileName` in xlog_internal.h), so
//! that the names pgcairn derives from an LSN are the names the server writes and archives.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A position in the WAL stream: a byte offset, written by PostgreSQL as two hexadecimal halves
/// (`16/B374D848`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses the text form `pg_lsn` accepts: one to eight hex digits, a slash, one to eight hex
    /// digits, either case.
    fn from_str(text: &str) -> Result<Lsn> {
        let bad = || {
            Error::usage(format!(
                "invalid LSN {text:?}: expected the form 16/B374D848"
            ))
        };
        let (high, low) = text.split_once('/').ok_or_else(bad)?;
        let half = |part: &str| -> Result<u64> {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u64::from_str_radix(part, 16).map_err(|_| bad())
        };
        Ok(Lsn((half(high)? << 32) | half(low)?))
    }
}

impl fmt::Display for Lsn {
    /// PostgreSQL's `LSN_FORMAT`: upper-case hex halves without padding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Length of a WAL segment file name: timeline, log id and segment, 8 hex digits each.
const SEGMENT_NAME_LEN: usize = 24;

/// Whether `bytes` is a WAL segment size PostgreSQL accepts (`IsValidWalSegSize`): a power of
/// two from 1 MiB to 1 GiB. The name functions below assume one.
pub fn is_valid_segment_size(bytes: u64) -> bool {
    bytes.is_power_of_two() && (1 << 20..=1 << 30).contains(&bytes)
}

/// Segments per 4 GiB "log id", the middle part of a segment name (`XLogSegmentsPerXLogId`).
fn segments_per_log_id(segment_size: u64) -> u64 {
    debug_assert!(is_valid_segment_size(segment_size));
    0x1_0000_0000 / segment_size
}

/// The file name of segment `segno` on `timeline` (`XLogFileName`), e.g.
/// `000000010000000100000000`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per_id = segments_per_log_id(segment_size);
    format!("{timeline:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// The segment that holds the byte at `lsn` (`XLByteToSeg`): where WAL starting at `lsn` is.
pub fn segment_of(lsn: Lsn, segment_size: u64) -> u64 {
    lsn.0 / segment_size
}

/// The segment that holds the byte just before `lsn` (`XLByteToPrevSeg`): the last segment
/// needed for WAL that ends at `lsn`. A backup whose stop LSN falls exactly on a segment
/// boundary needs nothing from the segment that begins there.
pub fn prev_segment_of(lsn: Lsn, segment_size: u64) -> u64 {
    lsn.0.saturating_sub(1) / segment_size
}

/// The name of the history file that starts `timeline` (`TLHistoryFileName`), e.g.
/// `00000002.history`.
pub fn history_file_name(timeline: u32) -> String {
    format!("{timeline:08X}.history")
}

/// The WAL files a backup needs to reach consistency, which its snapshot carries in `pg_wal/`:
/// segments `start_seg` through `stop_seg` of `timeline`, and the timeline's history file when
/// it is not the first.
pub fn backup_wal_names(
    timeline: u32,
    start_seg: u64,
    stop_seg: u64,
    segment_size: u64,
) -> Vec<String> {
    let mut names: Vec<String> = (start_seg..=stop_seg)
        .map(|seg| segment_name(timeline, seg, segment_size))
        .collect();
    if timeline > 1 {
        names.push(history_file_name(timeline));
    }
    names
}

/// Whether `name` has the form of a WAL segment file (`IsXLogFileName`): 24 upper-case hex
/// digits. PostgreSQL never writes lower case, so neither form is accepted from elsewhere.
pub fn is_wal_segment_name(name: &str) -> bool {
    name.len() == SEGMENT_NAME_LEN && name.bytes().all(is_upper_hex)
}

/// Whether `name` has the form of a timeline history file (`IsTLHistoryFileName`).
pub fn is_history_file_name(name: &str) -> bool {
    name.len() == 8 + HISTORY_SUFFIX.len()
        && name.ends_with(HISTORY_SUFFIX)
        && name.bytes().take(8).all(is_upper_hex)
}

/// A file PostgreSQL writes into pg_wal and hands to archive_command, told apart by its name
/// (the forms of `XLogFileName`, `TLHistoryFileName` and `BackupHistoryFileName` in
/// xlog_internal.h, and the `.partial` segment a promoted standby or pg_receivewal leaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// `000000010000000100000002`: a whole WAL segment.
    Segment { timeline: u32, segno: u64 },
    /// `000000010000000100000002.partial`: the last, incomplete segment of a timeline that
    /// ended there (the old timeline's segment at a promotion).
    Partial { timeline: u32, segno: u64 },
    /// `00000002.history`: the parents of a timeline and where it branched off each.
    History { timeline: u32 },
    /// `000000010000000100000002.00000028.backup`: the backup history file pg_backup_stop
    /// writes; `offset` is the backup's start LSN within the segment.
    BackupHistory {
        timeline: u32,
        segno: u64,
        offset: u32,
    },
}

/// The timeline and segment number of a WAL segment file name (not a `.partial` one), or
/// `None` if `name` is not one for this segment size.
pub fn parse_segment_name(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    match parse_wal_file_name(name, segment_size)? {
        WalFileName::Segment { timeline, segno } => Some((timeline, segno)),
        _ => None,
    }
}

impl WalFileName {
    /// The file name, as PostgreSQL writes it. For a name [`parse_wal_file_name`] returned,
    /// with the same segment size, this is the name it was parsed from.
    pub fn file_name(&self, segment_size: u64) -> String {
        match *self {
            WalFileName::Segment { timeline, segno } => segment_name(timeline, segno, segment_size),
            WalFileName::Partial { timeline, segno } => {
                format!(
                    "{}{PARTIAL_SUFFIX}",
                    segment_name(timeline, segno, segment_size)
                )
            }
            WalFileName::History { timeline } => history_file_name(timeline),
            WalFileName::BackupHistory {
                timeline,
                segno,
                offset,
            } => format!(
                "{}.{offset:08X}{BACKUP_SUFFIX}",
                segment_name(timeline, segno, segment_size)
            ),
        }
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        match *self {
            WalFileName::Segment { timeline, .. }
            | WalFileName::Partial { timeline, .. }
            | WalFileName::History { timeline }
            | WalFileName::BackupHistory { timeline, .. } => timeline,
        }
    }
}

const PARTIAL_SUFFIX: &str = ".partial";
const HISTORY_SUFFIX: &str = ".history";
const BACKUP_SUFFIX: &str = ".backup";

/// What kind of WAL file `name` is, or None if it is none of them or not valid for
/// `segment_size` (which must itself be valid: [`is_valid_segment_size`]).
///
/// The forms are those of `IsXLogFileName`, `IsPartialXLogFileName`, `IsTLHistoryFileName` and
/// `IsBackupHistoryFileName` (xlog_internal.h): upper-case hex only, as PostgreSQL writes them.
/// Beyond the form, this also refuses what PostgreSQL never writes: timeline 0, a segment part
/// (the last 8 digits) not below the segments per log id for this segment size (which
/// `XLogFromFileName` leaves to its callers), and a backup history offset past the segment.
/// `IsBackupHistoryFileName` itself only asks for 24 hex digits, something that is not a hex
/// digit, and `.backup` at the end; the only such names PostgreSQL writes are
/// `<segment>.<8 hex digits>.backup` (`BackupHistoryFileName`), and that is the form accepted
/// here, because the offset is part of what the name says.
pub fn parse_wal_file_name(name: &str, segment_size: u64) -> Option<WalFileName> {
    if !is_valid_segment_size(segment_size) {
        return None;
    }
    let parsed = if let Some(tli) = name.strip_suffix(HISTORY_SUFFIX) {
        WalFileName::History {
            timeline: hex_field(tli)?,
        }
    } else if let Some(segment) = name.strip_suffix(PARTIAL_SUFFIX) {
        let (timeline, segno) = segment_field(segment, segment_size)?;
        WalFileName::Partial { timeline, segno }
    } else if let Some(rest) = name.strip_suffix(BACKUP_SUFFIX) {
        let (segment, offset) = rest.split_once('.')?;
        let (timeline, segno) = segment_field(segment, segment_size)?;
        let offset = hex_field(offset)?;
        if u64::from(offset) >= segment_size {
            return None;
        }
        WalFileName::BackupHistory {
            timeline,
            segno,
            offset,
        }
    } else {
        let (timeline, segno) = segment_field(name, segment_size)?;
        WalFileName::Segment { timeline, segno }
    };
    (parsed.timeline() != 0).then_some(parsed)
}

/// Exactly 8 upper-case hex digits.
fn hex_field(text: &str) -> Option<u32> {
    if text.len() != 8 || !text.bytes().all(is_upper_hex) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// The timeline and segment number of a 24-digit segment name (`XLogFromFileName`), refusing a
/// segment part past the last segment of a log id.
fn segment_field(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    if !is_wal_segment_name(name) {
        return None;
    }
    let timeline = hex_field(&name[0..8])?;
    let log_id = u64::from(hex_field(&name[8..16])?);
    let segment = u64::from(hex_field(&name[16..24])?);
    let per_id = segments_per_log_id(segment_size);
    if segment >= per_id {
        return None;
    }
    Some((timeline, log_id * per_id + segment))
}

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB_16: u64 = 16 << 20;
    const MIB_64: u64 = 64 << 20;

    fn lsn(text: &str) -> Lsn {
        text.parse().unwrap()
    }

    /// The timeline and segment number of a segment name, if it is one.
    fn parse_segment_name(name: &str, segment_size: u64) -> Option<(u32, u64)> {
        match parse_wal_file_name(name, segment_size)? {
            WalFileName::Segment { timeline, segno } => Some((timeline, segno)),
            _ => None,
        }
    }

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(lsn("0/2000028"), Lsn(0x2000028));
        assert_eq!(lsn("16/B374D848"), Lsn(0x16_B374_D848));
        assert_eq!(lsn("16/b374d848"), Lsn(0x16_B374_D848));
        // PostgreSQL 18 and later may zero-pad the low half; the value is the same.
        assert_eq!(lsn("0/02000028"), Lsn(0x2000028));
        assert_eq!(lsn("FFFFFFFF/FFFFFFFF"), Lsn(u64::MAX));
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert!(lsn("0/2000028") < lsn("1/0"));
    }

    #[test]
    fn bad_lsn_text_is_refused_with_the_text() {
        for bad in [
            "",
            "0",
            "/1",
            "1/",
            "0/2000028/1",
            "G/0",
            "123456789/0",
            "0/ 1",
            "-1/0",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(err.to_string().contains("invalid LSN"), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn segment_names_for_16_mib_segments() {
        assert_eq!(segment_of(lsn("0/2000028"), MIB_16), 2);
        assert_eq!(segment_name(1, 2, MIB_16), "000000010000000000000002");
        assert_eq!(segment_of(lsn("1/0"), MIB_16), 256);
        assert_eq!(segment_name(1, 256, MIB_16), "000000010000000100000000");
        assert_eq!(segment_of(lsn("16/B374D848"), MIB_16), 0x16 * 256 + 0xB3);
        assert_eq!(
            segment_name(0x2A, segment_of(lsn("16/B374D848"), MIB_16), MIB_16),
            "0000002A00000016000000B3"
        );
    }

    #[test]
    fn segment_names_for_64_mib_segments() {
        // 64 segments per log id: the last part runs 00..3F.
        assert_eq!(segment_of(lsn("0/2000028"), MIB_64), 0);
        assert_eq!(segment_of(lsn("0/FC000000"), MIB_64), 63);
        assert_eq!(segment_name(1, 63, MIB_64), "00000001000000000000003F");
        assert_eq!(segment_of(lsn("1/4000000"), MIB_64), 65);
        assert_eq!(segment_name(3, 65, MIB_64), "000000030000000100000001");
        assert_eq!(
            parse_segment_name("000000030000000100000001", MIB_64),
            Some((3, 65))
        );
        // 40 is past the last segment of a log id at this size.
        assert_eq!(parse_segment_name("000000010000000000000040", MIB_64), None);
        assert_eq!(
            parse_segment_name("000000010000000000000040", MIB_16),
            Some((1, 0x40))
        );
    }

    #[test]
    fn previous_segment_is_the_last_one_a_stop_lsn_needs() {
        // Ends exactly at a boundary: the new segment holds none of it.
        assert_eq!(prev_segment_of(lsn("0/3000000"), MIB_16), 2);
        assert_eq!(segment_of(lsn("0/3000000"), MIB_16), 3);
        // Ends inside a segment: that one.
        assert_eq!(prev_segment_of(lsn("0/3000100"), MIB_16), 3);
        assert_eq!(prev_segment_of(lsn("1/0"), MIB_16), 255);
        assert_eq!(prev_segment_of(Lsn(0), MIB_16), 0);
    }

    #[test]
    fn segment_names_parse_back() {
        for size in [1 << 20, MIB_16, MIB_64, 1 << 30] {
            for (tli, segno) in [(1, 0), (1, 255), (2, 256), (0xFFFF_FFFF, 123_456)] {
                let name = segment_name(tli, segno, size);
                assert!(is_wal_segment_name(&name));
                assert_eq!(
                    parse_segment_name(&name, size),
                    Some((tli, segno)),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn file_kinds_are_told_apart() {
        assert!(is_wal_segment_name("000000010000000000000002"));
        assert!(!is_wal_segment_name("00000001000000000000002"));
        assert!(!is_wal_segment_name("000000010000000000000002.partial"));
        assert!(!is_wal_segment_name(
            "000000010000000000000002.00000028.backup"
        ));
        assert!(!is_wal_segment_name("00000001000000000000000a"));
        assert!(!is_wal_segment_name("00000002.history"));
        assert_eq!(parse_segment_name("00000001000000000000000a", MIB_16), None);

        assert_eq!(history_file_name(2), "00000002.history");
        assert_eq!(history_file_name(0x1A), "0000001A.history");
        assert!(is_history_file_name("00000002.history"));
        assert!(is_history_file_name("0000001A.history"));
        assert!(!is_history_file_name("0000001a.history"));
        assert!(!is_history_file_name("0000002.history"));
        assert!(!is_history_file_name("00000002.history.tmp"));
        assert!(!is_history_file_name("000000010000000000000002"));
    }

    #[test]
    fn segment_sizes_postgresql_accepts() {
        assert!(is_valid_segment_size(1 << 20));
        assert!(is_valid_segment_size(MIB_16));
        assert!(is_valid_segment_size(1 << 30));
        assert!(!is_valid_segment_size(0));
        assert!(!is_valid_segment_size(1 << 19));
        assert!(!is_valid_segment_size(2 << 30));
        assert!(!is_valid_segment_size(3 << 20));
    }

    #[test]
    fn wal_file_names_of_every_kind() {
        let cases = [
            (
                "000000010000000100000002",
                WalFileName::Segment {
                    timeline: 1,
                    segno: 0x102,
                },
            ),
            (
                "0000000A00000001000000FF.partial",
                WalFileName::Partial {
                    timeline: 10,
                    segno: 0x1FF,
                },
            ),
            ("0000002A.history", WalFileName::History { timeline: 42 }),
            (
                "000000010000000000000002.00000028.backup",
                WalFileName::BackupHistory {
                    timeline: 1,
                    segno: 2,
                    offset: 0x28,
                },
            ),
        ];
        for (name, kind) in cases {
            assert_eq!(parse_wal_file_name(name, MIB_16), Some(kind), "{name}");
            assert_eq!(kind.file_name(MIB_16), name);
        }
    }

    #[test]
    fn wal_file_names_postgresql_never_writes_are_refused() {
        for name in [
            "",
            "00000000000000010000002",
            "0000000100000001000000020",
            "00000001000000010000000a",
            "000000010000000100000002.PARTIAL",
            "000000010000000100000002.partial.partial",
            "00000001000000010000000.partial",
            "0000001.history",
            "0000000g.history",
            "0000000a.history",
            "00000001.history.tmp",
            "00000001.backup",
            "000000010000000100000002.backup",
            "000000010000000100000002.0000028.backup",
            "000000010000000100000002.0000002a.backup",
            "000000010000000100000002.00000028.00000028.backup",
            "000000010000000100000002.00000028.backup.gz",
            // Timeline 0 does not exist.
            "000000000000000100000002",
            "000000000000000100000002.partial",
            "00000000.history",
            "000000000000000100000002.00000028.backup",
            // Segment part past the 256 segments of a log id at 16 MiB.
            "000000010000000100000100",
            "000000010000000100000100.partial",
            // Offset past the segment.
            "000000010000000100000002.01000000.backup",
            "000000010000000100000002 ",
            "+00000010000000100000002",
        ] {
            assert_eq!(parse_wal_file_name(name, MIB_16), None, "{name:?}");
        }
        // A valid name with an invalid segment size.
        assert_eq!(parse_wal_file_name("000000010000000100000002", 0), None);
        assert_eq!(
            parse_wal_file_name("000000010000000100000002", 3 << 20),
            None
        );
        // The segment part limit depends on the segment size.
        assert_eq!(
            parse_wal_file_name("00000001000000000000003F.partial", MIB_64),
            Some(WalFileName::Partial {
                timeline: 1,
                segno: 63
            })
        );
        assert_eq!(
            parse_wal_file_name("000000010000000000000040.partial", MIB_64),
            None
        );
    }

    #[test]
    fn wal_file_names_round_trip_at_every_segment_size() {
        for size in [1 << 20, MIB_16, MIB_64, 1 << 30] {
            let per_id = 0x1_0000_0000 / size;
            for (timeline, segno) in [(1, 0), (7, per_id - 1), (0xFFFF_FFFF, per_id * 0xFFFF_FFFF)]
            {
                for kind in [
                    WalFileName::Segment { timeline, segno },
                    WalFileName::Partial { timeline, segno },
                    WalFileName::History { timeline },
                    WalFileName::BackupHistory {
                        timeline,
                        segno,
                        offset: (size - 1) as u32,
                    },
                ] {
                    let name = kind.file_name(size);
                    assert_eq!(parse_wal_file_name(&name, size), Some(kind), "{name}");
                }
            }
        }
    }
}
