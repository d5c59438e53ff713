//! Timeline history files (`00000003.history`): which timelines a timeline descends from and
//! where it branched off each, read as `readTimeLineHistory` in timeline.c reads them, and the
//! questions recovery asks of them (`tliOfPointInHistory`, and whether a starting point lies on
//! the way to a target timeline).
//!
//! The file of timeline N lists its ancestors oldest first, one per line:
//! `<parent timeline>\t<switch point>\t<reason>`, where the switch point is the LSN at which
//! WAL stopped being the parent's and became the child's. Timeline N itself is not listed.

use crate::error::{Error, Result};
use crate::pg::wal::Lsn;

/// One line of a history file: `parent_timeline` ended at `switch_point` and its child took
/// over from there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent_timeline: u32,
    /// The first byte that is no longer on `parent_timeline`.
    pub switch_point: Lsn,
    /// Why the timeline was ended (`no recovery target specified`, `at restore point "p1"`, …),
    /// free text; empty if the line has none.
    pub reason: String,
}

/// Parses the text of a timeline history file. Blank lines and lines starting with `#` (after
/// leading white space) are skipped, as in readTimeLineHistory. Each other line must hold a
/// timeline number and a switch point, separated by white space; the rest of the line, after
/// white space, is the reason. Timelines must strictly increase down the file (PostgreSQL's
/// check) and switch points must not decrease (a child cannot branch off before its parent
/// began; PostgreSQL never writes that, and [`timeline_at`] relies on it).
///
/// Stricter than PostgreSQL's `sscanf("%u\t%X/%X")` in ways no file PostgreSQL writes shows:
/// no sign, no `0x`, 1 to 8 hex digits per LSN half, white space after the LSN, timeline > 0.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>> {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let bad = |what: &str| {
            Error::integrity(format!(
                "timeline history line {}: {what}: {raw:?}",
                index + 1
            ))
        };
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let parent_timeline = match line[..digits].parse::<u32>() {
            Ok(tli) if tli > 0 => tli,
            _ => return Err(bad("expected a timeline number (1 to 4294967295)")),
        };
        let rest = line[digits..].trim_start();
        let lsn_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let switch_point: Lsn = rest[..lsn_len]
            .parse()
            .map_err(|_| bad("expected a switch point like 0/3000060 after the timeline"))?;
        let reason = rest[lsn_len..].trim().to_string();
        if let Some(last) = entries.last() {
            if parent_timeline <= last.parent_timeline {
                return Err(bad(&format!(
                    "timeline {parent_timeline} after timeline {}: timelines must increase",
                    last.parent_timeline
                )));
            }
            if switch_point < last.switch_point {
                return Err(bad(&format!(
                    "switch point {switch_point} is before the previous one, {}",
                    last.switch_point
                )));
            }
        }
        entries.push(HistoryEntry {
            parent_timeline,
            switch_point,
            reason,
        });
    }
    Ok(entries)
}

/// The timeline that the WAL at `lsn` belongs to on the way to `target_timeline`, whose
/// history is `history` (`tliOfPointInHistory`): the first ancestor whose switch point lies
/// after `lsn`, else the target itself. The byte at a switch point is the child's.
pub fn timeline_at(history: &[HistoryEntry], target_timeline: u32, lsn: Lsn) -> u32 {
    history
        .iter()
        .find(|entry| lsn < entry.switch_point)
        .map_or(target_timeline, |entry| entry.parent_timeline)
}

/// Whether WAL on `timeline` up to `lsn` is part of the history of `target_timeline`, so that
/// a snapshot taken on `timeline` and consistent at `lsn` can recover into `target_timeline`:
/// either it is the target, or it is an ancestor that had not yet ended at `lsn` (it ended
/// at or after it). PostgreSQL refuses the opposite case at startup ("requested timeline … is
/// not a child of this server's history").
pub fn is_on_history(
    history: &[HistoryEntry],
    target_timeline: u32,
    timeline: u32,
    lsn: Lsn,
) -> bool {
    timeline == target_timeline
        || history
            .iter()
            .any(|entry| entry.parent_timeline == timeline && lsn <= entry.switch_point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// 00000003.history as PostgreSQL 15 writes it after two promotions.
    const TLI3: &str = "1\t0/3000060\tno recovery target specified\n\
        \n\
        2\t0/5000000\tat restore point \"before upgrade\"\n";

    fn lsn(text: &str) -> Lsn {
        text.parse().unwrap()
    }

    #[test]
    fn parses_what_postgresql_writes() {
        let history = parse_history(TLI3).unwrap();
        assert_eq!(
            history,
            vec![
                HistoryEntry {
                    parent_timeline: 1,
                    switch_point: lsn("0/3000060"),
                    reason: "no recovery target specified".into(),
                },
                HistoryEntry {
                    parent_timeline: 2,
                    switch_point: lsn("0/5000000"),
                    reason: "at restore point \"before upgrade\"".into(),
                },
            ]
        );
        // 00000002.history of a timeline whose parent is 1, PostgreSQL 18 (zero-padded LSN).
        let history = parse_history("1\t0/0300A0B8\tbefore 2026-11-21 12:00:00+00\n").unwrap();
        assert_eq!(history[0].switch_point, lsn("0/300A0B8"));
        assert_eq!(history[0].reason, "before 2026-11-21 12:00:00+00");
    }

    #[test]
    fn comments_blank_lines_spaces_and_crlf() {
        let text = "# a comment\r\n   \r\n  # indented comment\n 1  0/3000060\r\n\t5 1/0 why  \n";
        let history = parse_history(text).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].parent_timeline, 1);
        assert_eq!(history[0].reason, "");
        assert_eq!(history[1].parent_timeline, 5);
        assert_eq!(history[1].switch_point, lsn("1/0"));
        assert_eq!(history[1].reason, "why");
        assert_eq!(parse_history("").unwrap(), vec![]);
        assert_eq!(parse_history("# nothing\n\n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_files_are_refused_saying_where() {
        for (text, says) in [
            ("x\t0/1\n", "expected a timeline number"),
            ("0\t0/1\n", "expected a timeline number"),
            ("-1\t0/1\n", "expected a timeline number"),
            ("4294967296\t0/1\n", "expected a timeline number"),
            ("1\n", "expected a switch point"),
            ("1\t0x1/1\n", "expected a switch point"),
            ("1\t0/1/2\n", "expected a switch point"),
            ("10/100\n", "expected a switch point"),
            ("1\t0/1\n1\t0/2\n", "timelines must increase"),
            ("2\t0/1\n1\t0/2\n", "timelines must increase"),
            ("1\t0/5\n2\t0/4\n", "before the previous one"),
        ] {
            let err = parse_history(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Integrity);
            assert!(err.to_string().contains(says), "{text:?}: {err}");
        }
        let err = parse_history("# ok\n1\t0/1\nbad\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn which_timeline_holds_an_lsn() {
        let history = parse_history(TLI3).unwrap();
        assert_eq!(timeline_at(&history, 3, lsn("0/0")), 1);
        assert_eq!(timeline_at(&history, 3, lsn("0/300005F")), 1);
        // The switch point itself is the child's.
        assert_eq!(timeline_at(&history, 3, lsn("0/3000060")), 2);
        assert_eq!(timeline_at(&history, 3, lsn("0/4FFFFFF")), 2);
        assert_eq!(timeline_at(&history, 3, lsn("0/5000000")), 3);
        assert_eq!(timeline_at(&history, 3, Lsn(u64::MAX)), 3);
        // Timeline 1 has no history.
        assert_eq!(timeline_at(&[], 1, lsn("5/0")), 1);
    }

    #[test]
    fn which_starting_points_lead_to_a_timeline() {
        let history = parse_history(TLI3).unwrap();
        // On the target itself, anywhere.
        assert!(is_on_history(&history, 3, 3, lsn("0/1")));
        assert!(is_on_history(&history, 3, 3, lsn("9/0")));
        // On an ancestor, up to and including where it ended.
        assert!(is_on_history(&history, 3, 1, lsn("0/2000000")));
        assert!(is_on_history(&history, 3, 1, lsn("0/3000060")));
        assert!(!is_on_history(&history, 3, 1, lsn("0/3000061")));
        assert!(is_on_history(&history, 3, 2, lsn("0/5000000")));
        assert!(!is_on_history(&history, 3, 2, lsn("0/6000000")));
        // Not an ancestor at all: a sibling, or a later timeline.
        assert!(!is_on_history(&history, 3, 4, lsn("0/1")));
        assert!(!is_on_history(&[], 1, 2, lsn("0/1")));
    }
}
