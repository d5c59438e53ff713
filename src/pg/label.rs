//! Parsing the `backup_label` text that `pg_backup_stop` (`pg_stop_backup` before 15) returns.
//!
//! The bytes themselves are stored untouched; this reads the few facts pgcairn needs from them
//! (where recovery starts, on which timeline) so that snapshot metadata and the WAL a snapshot
//! carries come from the same source recovery will read. The lines are `KEY: value`, one per
//! line, in the same form from 13 to 18; lines this parser does not know (a later release may add
//! some, as 17 added `INCREMENTAL FROM LSN`) are skipped.

use crate::error::{Error, Result};
use crate::pg::wal::{self, Lsn};

/// What a backup_label says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLabel {
    /// `START WAL LOCATION`: the redo pointer of the backup's checkpoint, where replay starts.
    pub start_lsn: Lsn,
    /// The segment file named on the `START WAL LOCATION` line.
    pub start_wal_file: String,
    /// `CHECKPOINT LOCATION`: the checkpoint record itself.
    pub checkpoint_lsn: Lsn,
    /// `START TIMELINE`.
    pub start_timeline: u32,
    /// `LABEL`: the label given to pg_backup_start.
    pub label: String,
    /// `BACKUP METHOD` (`streamed` for the non-exclusive API), if present.
    pub backup_method: Option<String>,
    /// `BACKUP FROM`: `primary` or `standby` (`master` in some older releases), if present.
    pub backup_from: Option<String>,
    /// `START TIME` as the server wrote it, with its time zone, if present.
    pub start_time: Option<String>,
    /// `INCREMENTAL FROM LSN` (17+, incremental backups only).
    pub incremental_from_lsn: Option<Lsn>,
    /// `INCREMENTAL FROM TLI` (17+, incremental backups only).
    pub incremental_from_timeline: Option<u32>,
}

impl BackupLabel {
    /// Parses backup_label text. Fails if a line this parser relies on is missing or malformed.
    pub fn parse(text: &str) -> Result<BackupLabel> {
        let bad = |what: String| Error::database(format!("backup_label: {what}"));
        let mut start = None;
        let mut checkpoint_lsn = None;
        let mut start_timeline = None;
        let mut label = None;
        let mut backup_method = None;
        let mut backup_from = None;
        let mut start_time = None;
        let mut incremental_from_lsn = None;
        let mut incremental_from_timeline = None;

        for line in text.lines() {
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            // The first occurrence wins, as in PostgreSQL's read_backup_label, which scans the
            // file top down for each key.
            match key {
                "START WAL LOCATION" if start.is_none() => {
                    start = Some(parse_start_location(value).ok_or_else(|| {
                        bad(format!("cannot parse START WAL LOCATION line {line:?}"))
                    })?);
                }
                "CHECKPOINT LOCATION" if checkpoint_lsn.is_none() => {
                    checkpoint_lsn = Some(parse_lsn(key, value)?);
                }
                "START TIMELINE" if start_timeline.is_none() => {
                    start_timeline = Some(parse_timeline(key, value)?);
                }
                "LABEL" if label.is_none() => label = Some(value.to_string()),
                "BACKUP METHOD" if backup_method.is_none() => {
                    backup_method = Some(value.to_string())
                }
                "BACKUP FROM" if backup_from.is_none() => backup_from = Some(value.to_string()),
                "START TIME" if start_time.is_none() => start_time = Some(value.to_string()),
                "INCREMENTAL FROM LSN" if incremental_from_lsn.is_none() => {
                    incremental_from_lsn = Some(parse_lsn(key, value)?);
                }
                "INCREMENTAL FROM TLI" if incremental_from_timeline.is_none() => {
                    incremental_from_timeline = Some(parse_timeline(key, value)?);
                }
                _ => {}
            }
        }

        let missing = |key: &str| bad(format!("no {key} line in {text:?}"));
        let (start_lsn, start_wal_file) = start.ok_or_else(|| missing("START WAL LOCATION"))?;
        let start_timeline = start_timeline.ok_or_else(|| missing("START TIMELINE"))?;
        // The timeline is also the first part of the start file's name; if the two disagree
        // the label is not one PostgreSQL wrote.
        if start_wal_file[..8] != format!("{start_timeline:08X}") {
            return Err(bad(format!(
                "START TIMELINE {start_timeline} does not match start WAL file {start_wal_file}"
            )));
        }
        Ok(BackupLabel {
            start_lsn,
            start_wal_file,
            checkpoint_lsn: checkpoint_lsn.ok_or_else(|| missing("CHECKPOINT LOCATION"))?,
            start_timeline,
            label: label.ok_or_else(|| missing("LABEL"))?,
            backup_method,
            backup_from,
            start_time,
            incremental_from_lsn,
            incremental_from_timeline,
        })
    }
}

/// `0/2000028 (file 000000010000000000000002)`.
fn parse_start_location(value: &str) -> Option<(Lsn, String)> {
    let (lsn, rest) = value.split_once(" (file ")?;
    let file = rest.strip_suffix(')')?;
    if !wal::is_wal_segment_name(file) {
        return None;
    }
    Some((lsn.parse().ok()?, file.to_string()))
}

fn parse_lsn(key: &str, value: &str) -> Result<Lsn> {
    value
        .parse()
        .map_err(|_| Error::database(format!("backup_label: bad {key} {value:?}")))
}

fn parse_timeline(key: &str, value: &str) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(tli) if tli > 0 => Ok(tli),
        _ => Err(Error::database(format!(
            "backup_label: bad {key} {value:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// Returned by pg_stop_backup(false, false) on PostgreSQL 13.23 (13 still says "master").
    const PG13: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
        CHECKPOINT LOCATION: 0/2000060\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: master\n\
        START TIME: 2026-11-21 10:22:54 UTC\n\
        LABEL: pgcairn test\n\
        START TIMELINE: 1\n";

    /// Returned by pg_backup_stop(false) on PostgreSQL 15.
    const PG15: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
        CHECKPOINT LOCATION: 0/2000060\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: primary\n\
        START TIME: 2026-11-21 10:22:54 UTC\n\
        LABEL: pgcairn test\n\
        START TIMELINE: 1\n";

    /// Returned by pg_backup_stop(false) on PostgreSQL 18.4.
    const PG18: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
        CHECKPOINT LOCATION: 0/2000080\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: primary\n\
        START TIME: 2026-11-21 10:23:04 UTC\n\
        LABEL: pgcairn test\n\
        START TIMELINE: 1\n";

    /// A standby's label on a later timeline, high LSNs, a label with ": " in it (made up in
    /// the format above).
    const STANDBY: &str = "START WAL LOCATION: 16/B374D848 (file 0000000300000016000000B3)\n\
        CHECKPOINT LOCATION: 16/B374D880\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: standby\n\
        START TIME: 2026-11-21 10:40:13 CET\n\
        LABEL: nightly: 2026-11-21\n\
        START TIMELINE: 3\n";

    /// An incremental backup's label on PostgreSQL 17 and later (lines as build_backup_content
    /// writes them; later releases zero-pad the low half of the LSN).
    const PG17_INCREMENTAL: &str = "START WAL LOCATION: 0/6000028 (file 000000010000000000000006)\n\
        CHECKPOINT LOCATION: 0/6000080\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: primary\n\
        START TIME: 2026-11-21 10:40:14 UTC\n\
        LABEL: incr\n\
        START TIMELINE: 1\n\
        INCREMENTAL FROM LSN: 0/04000028\n\
        INCREMENTAL FROM TLI: 1\n";

    #[test]
    fn parses_a_pg13_label() {
        let label = BackupLabel::parse(PG13).unwrap();
        assert_eq!(label.start_lsn, Lsn(0x2000028));
        assert_eq!(label.start_wal_file, "000000010000000000000002");
        assert_eq!(label.checkpoint_lsn, Lsn(0x2000060));
        assert_eq!(label.start_timeline, 1);
        assert_eq!(label.label, "pgcairn test");
        assert_eq!(label.backup_method.as_deref(), Some("streamed"));
        assert_eq!(label.backup_from.as_deref(), Some("master"));
        assert_eq!(label.start_time.as_deref(), Some("2026-11-21 10:22:54 UTC"));
        assert_eq!(label.incremental_from_lsn, None);
    }

    #[test]
    fn parses_pg15_and_pg18_labels() {
        let label = BackupLabel::parse(PG15).unwrap();
        assert_eq!(label.start_lsn, Lsn(0x2000028));
        assert_eq!(label.checkpoint_lsn, Lsn(0x2000060));
        assert_eq!(label.backup_from.as_deref(), Some("primary"));
        let label = BackupLabel::parse(PG18).unwrap();
        assert_eq!(label.start_lsn, Lsn(0x2000028));
        assert_eq!(label.checkpoint_lsn, Lsn(0x2000080));
        assert_eq!(label.start_timeline, 1);
        assert_eq!(label.label, "pgcairn test");
        assert_eq!(label.incremental_from_lsn, None);
    }

    #[test]
    fn parses_a_standby_label_on_a_later_timeline() {
        let label = BackupLabel::parse(STANDBY).unwrap();
        assert_eq!(label.start_lsn, Lsn(0x16_B374_D848));
        assert_eq!(label.start_wal_file, "0000000300000016000000B3");
        assert_eq!(label.checkpoint_lsn, Lsn(0x16_B374_D880));
        assert_eq!(label.start_timeline, 3);
        // Only the first ": " separates key from value.
        assert_eq!(label.label, "nightly: 2026-11-21");
        assert_eq!(label.backup_from.as_deref(), Some("standby"));
    }

    #[test]
    fn parses_incremental_lines() {
        let label = BackupLabel::parse(PG17_INCREMENTAL).unwrap();
        assert_eq!(label.incremental_from_lsn, Some(Lsn(0x4000028)));
        assert_eq!(label.incremental_from_timeline, Some(1));
    }

    #[test]
    fn tolerates_unknown_lines_and_crlf() {
        let text = format!(
            "FUTURE FIELD: 42\nsomething else\n{}",
            PG13.replace('\n', "\r\n")
        );
        let label = BackupLabel::parse(&text).unwrap();
        assert_eq!(label, BackupLabel::parse(PG13).unwrap());
    }

    #[test]
    fn missing_or_bad_required_lines_are_errors() {
        for key in [
            "START WAL LOCATION",
            "CHECKPOINT LOCATION",
            "START TIMELINE",
            "LABEL",
        ] {
            let text: String = PG13
                .lines()
                .filter(|line| !line.starts_with(&format!("{key}:")))
                .map(|line| format!("{line}\n"))
                .collect();
            let err = BackupLabel::parse(&text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Database);
            assert!(err.to_string().contains(&format!("no {key} line")), "{err}");
        }
        for (from, to) in [
            ("0/2000028 (file", "0/20000Z8 (file"),
            (
                "(file 000000010000000000000002)",
                "(file 00000001000000000000000)",
            ),
            (
                "CHECKPOINT LOCATION: 0/2000060",
                "CHECKPOINT LOCATION: 2000060",
            ),
            ("START TIMELINE: 1", "START TIMELINE: one"),
            ("START TIMELINE: 1", "START TIMELINE: 0"),
            ("START TIMELINE: 1", "START TIMELINE: 2"),
        ] {
            let err = BackupLabel::parse(&PG13.replace(from, to)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Database, "{to}: {err}");
        }
        assert!(BackupLabel::parse("").is_err());
    }
}
