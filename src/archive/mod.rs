//! WAL archiving: `archive-push` stores the files PostgreSQL's `archive_command` hands over in
//! the WAL catalogue, `archive-get` serves them back to `restore_command`.

pub mod ahead;
pub mod get;
pub mod prefetch;
pub mod push;
pub mod spool;
pub mod window;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::history::{HistoryEntry, parse_history};
use crate::pg::{control, wal};
use crate::repo::pack::BlobType;
use crate::repo::walcat::WalEntry;
use crate::repo::{IndexedRepository, Repository};

/// What kind of WAL file `name` is, when it is valid for some segment size (1 MiB to 1 GiB):
/// the server's segment size is not known before the file is read.
fn classify(name: &str) -> Option<wal::WalFileName> {
    (20..=30).find_map(|bits| wal::parse_wal_file_name(name, 1 << bits))
}

/// The data directory a WAL path sits in: `pg_wal/NAME` relative to the server's working
/// directory (how `%p` is given) or absolute.
pub fn data_dir_of(wal_path: &Path) -> Option<PathBuf> {
    let dir = wal_path.parent()?;
    if dir.file_name()? != "pg_wal" {
        return None;
    }
    let pgdata = dir.parent()?;
    Some(if pgdata.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        pgdata.to_path_buf()
    })
}

/// The system identifier of the cluster at `pgdata`, if it is a data directory.
fn cluster_at(pgdata: &Path) -> Result<Option<u64>> {
    if !pgdata.join(control::CONTROL_FILE).exists() {
        return Ok(None);
    }
    control::read_system_identifier(pgdata).map(Some)
}

/// Which cluster a command is for: `--system-id`, else the data directory's pg_control
/// (`--pgdata`, else the one `wal_path` sits in, else the working directory, which is the data
/// directory when the server runs the command).
pub fn resolve_cluster(
    system_id: Option<u64>,
    pgdata: Option<&Path>,
    wal_path: Option<&Path>,
) -> Result<Option<u64>> {
    if system_id.is_some() {
        return Ok(system_id);
    }
    if let Some(dir) = pgdata {
        return cluster_at(dir)?.map(Some).ok_or_else(|| {
            Error::usage(format!(
                "{} is not a PostgreSQL data directory (no {})",
                dir.display(),
                control::CONTROL_FILE
            ))
        });
    }
    if let Some(dir) = wal_path.and_then(data_dir_of)
        && let Some(id) = cluster_at(&dir)?
    {
        return Ok(Some(id));
    }
    cluster_at(Path::new("."))
}

/// The first and the longest pause between two looks at the catalogue while waiting for WAL:
/// a segment that arrives at once is seen at once, and a long wait costs few reads.
const ARCHIVE_POLL_FIRST: Duration = Duration::from_millis(50);
const ARCHIVE_POLL_MAX: Duration = Duration::from_secs(1);

/// Waits until the archive has every file in `names` of cluster `system_identifier` that is
/// `expected` there, or `timeout` passes; returns the entries found (of all `names`). Used instead of the server's own waits
/// (pg_backup_stop's wait_for_archive), which have no bound: a broken archive_command would
/// hang the caller.
pub fn wait_for_archive(
    repo: &Repository,
    system_identifier: u64,
    names: &[String],
    expected: &dyn Fn(&str) -> bool,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<HashMap<String, WalEntry>> {
    let deadline = Instant::now() + timeout;
    let mut pause = ARCHIVE_POLL_FIRST;
    let mut found = HashMap::new();
    loop {
        for name in names {
            if !found.contains_key(name)
                && let Some(entry) = repo.load_wal_entry(system_identifier, name)?
            {
                found.insert(name.clone(), entry);
            }
        }
        let now = Instant::now();
        let complete = names.iter().all(|n| found.contains_key(n) || !expected(n));
        if complete || now >= deadline {
            return Ok(found);
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(ARCHIVE_POLL_MAX);
    }
}

/// A timeline history file of the catalogue, read from the repository and parsed.
pub fn read_history(repo: &IndexedRepository, entry: &WalEntry) -> Result<Vec<HistoryEntry>> {
    let mut text = Vec::new();
    for chunk in repo.data_chunks(&entry.content)? {
        text.extend(repo.read_blob(BlobType::Data, &chunk.id)?);
    }
    let text = String::from_utf8(text)
        .map_err(|_| Error::integrity(format!("{} in the archive is not text", entry.name)))?;
    parse_history(&text).with_context(|| format!("{} in the archive", entry.name))
}

/// Every timeline history file of the catalogue, parsed, by cluster and timeline: what
/// [`window::clusters`] follows from a snapshot into the timelines branched off after it.
pub fn read_histories(
    repo: &IndexedRepository,
    catalogue: &[WalEntry],
) -> Result<window::Histories> {
    read_histories_with(repo, catalogue, &mut |_, e| Err(e))
}

/// As [`read_histories`], handing each history file that cannot be read to `on_unreadable`,
/// which leaves it out (verify reports it) or fails with an error.
pub fn read_histories_with(
    repo: &IndexedRepository,
    catalogue: &[WalEntry],
    on_unreadable: &mut dyn FnMut(&WalEntry, Error) -> Result<()>,
) -> Result<window::Histories> {
    let mut histories = window::Histories::new();
    for entry in catalogue {
        if let Some(wal::WalFileName::History { timeline }) = classify(&entry.name) {
            match read_history(repo, entry) {
                Ok(history) => {
                    histories.insert((entry.system_identifier, timeline), history);
                }
                Err(e) => on_unreadable(entry, e)?,
            }
        }
    }
    Ok(histories)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_whatever_the_segment_size() {
        // A backup history offset past the first MiB is valid for 16 MiB segments.
        assert!(matches!(
            classify("000000010000000000000002.00F00028.backup"),
            Some(wal::WalFileName::BackupHistory { .. })
        ));
        // A segment part that only 1 MiB segments have.
        assert!(classify("000000010000000000000FFF").is_some());
        assert!(classify("000000010000000000000FFF.partial").is_some());
        assert!(classify("00000002.history").is_some());
        for bad in [
            "00000000.history",
            "0000000100000000000010000",
            "archive_status",
            "",
        ] {
            assert!(classify(bad).is_none(), "{bad}");
        }
    }
}
