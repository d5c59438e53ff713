//! `archive-push --async`: a background worker archives the segments the server has marked
//! ready (`pg_wal/archive_status/*.ready`) ahead of the server's calls, one repository open for
//! all of them, so that the call for each is a lookup rather than the work.
//!
//! The worker leaves a *receipt* per file it archived, in a spool directory per repository
//! location and cluster (`<cache>/archive-push/<hash of the location>/<system id>/`): the
//! catalogue entry's path on storage and the identity of the file it read (size, device,
//! inode, mtime, ctime). The server's call succeeds from a receipt only if the file is still
//! that file and the entry exists on this storage; so exit 0 keeps its meaning (the file is
//! durable in the repository), and a receipt that is stale, planted or from another repository
//! is never taken. Without a usable receipt the call archives the file itself.

use std::fs;
use std::io::ErrorKind as IoErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::push::{self, PushReport};
use super::spool::{Spool, WorkerLock};
use crate::error::{Error, Result};
use crate::repo::IndexedRepository;
use crate::storage::Storage;

const RECEIPT_SUFFIX: &str = ".ok";
const FAILURE_SUFFIX: &str = ".error";
/// How long the worker waits for the server to mark more files ready before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(2);
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Files archived at the same time, and files whose reading is started ahead of them.
const PARALLEL_FILES: usize = 2;
const READ_AHEAD: usize = 4;

/// The identity of a file when the worker read it: the server never changes a file it has
/// marked ready, so the same identity means the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    size: u64,
    dev: u64,
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Identity {
        Identity {
            size: meta.size(),
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

/// A receipt: `<entry path> <size> <dev> <ino> <mtime_ns> <ctime_ns>`.
struct Receipt {
    entry_path: String,
    identity: Identity,
}

impl Receipt {
    fn to_line(&self) -> String {
        let i = &self.identity;
        format!(
            "{} {} {} {} {} {}\n",
            self.entry_path, i.size, i.dev, i.ino, i.mtime_ns, i.ctime_ns
        )
    }

    fn parse(line: &str) -> Option<Receipt> {
        let mut fields = line.split_ascii_whitespace();
        let entry_path = fields.next()?.to_owned();
        let mut number = || fields.next()?.parse::<i64>().ok();
        let identity = Identity {
            size: u64::try_from(number()?).ok()?,
            dev: u64::try_from(number()?).ok()?,
            ino: u64::try_from(number()?).ok()?,
            mtime_ns: number()?,
            ctime_ns: number()?,
        };
        Some(Receipt {
            entry_path,
            identity,
        })
    }
}

/// Where the worker finds the files to archive.
#[derive(Clone, Copy, Debug)]
pub struct Server<'a> {
    /// The data directory: its pg_wal and archive_status.
    pub pgdata: &'a Path,
    pub cluster: u64,
    /// The file the call that started the worker archives itself.
    pub skip: Option<&'a str>,
}

/// What the server's call found in the spool.
pub enum Found {
    /// The worker archived this very file.
    Archived,
    /// The worker failed on it; the call archives it itself, which reports the error.
    Failed(String),
    Nothing,
}

/// The spool of one cluster's archive-push worker.
pub struct Ahead {
    spool: Spool,
}

impl Ahead {
    pub fn new(cache_base: &Path, location: &str, cluster: u64) -> Ahead {
        Ahead {
            spool: Spool::new(cache_base, "archive-push", location, cluster),
        }
    }

    pub fn create(&self) -> Result<()> {
        self.spool.create()
    }

    pub fn try_lock(&self) -> Result<Option<WorkerLock>> {
        self.spool.try_lock()
    }

    pub fn log_path(&self) -> PathBuf {
        self.spool.path_of(super::spool::LOG_FILE)
    }

    /// Looks for the worker's outcome for `name`, whose file is at `path`; a receipt counts only
    /// if the file is unchanged and its entry exists on `storage`. A failure is consumed.
    pub fn take(&self, storage: &Storage, name: &str, path: &Path) -> Result<Found> {
        let failure = self.spool.path_of(&format!("{name}{FAILURE_SUFFIX}"));
        if let Ok(message) = fs::read_to_string(&failure) {
            let _ = fs::remove_file(&failure);
            return Ok(Found::Failed(message.trim().to_owned()));
        }
        let receipt_path = self.spool.path_of(&format!("{name}{RECEIPT_SUFFIX}"));
        let receipt = match fs::read_to_string(&receipt_path) {
            Ok(text) => Receipt::parse(&text),
            Err(e) if e.kind() == IoErrorKind::NotFound => return Ok(Found::Nothing),
            Err(e) => {
                return Err(Error::local_io(
                    e,
                    format!("reading {}", receipt_path.display()),
                ));
            }
        };
        // Kept until the server has marked the file done (the worker then forgets it): the
        // server may call again for the same file, and the receipt is checked every time.
        let Some(receipt) = receipt else {
            return Ok(Found::Nothing);
        };
        let now = fs::metadata(path).map_err(Error::io_at("inspecting", path))?;
        if Identity::of(&now) != receipt.identity || !storage.exists(&receipt.entry_path)? {
            return Ok(Found::Nothing);
        }
        Ok(Found::Archived)
    }

    /// The worker: archives every file `server` has ready, in the server's order, leaving a
    /// receipt or a failure for each, until none has been left to do for a while.
    pub fn run(
        &self,
        _lock: &WorkerLock,
        repo: &mut IndexedRepository,
        server: &Server,
        interrupted: &AtomicBool,
        report: &(dyn Fn(&str, &Result<PushReport>) + Sync),
    ) -> Result<()> {
        let Server {
            pgdata,
            cluster: _,
            skip,
        } = *server;
        let mut idle_since = Instant::now();
        while idle_since.elapsed() < IDLE_EXIT {
            if interrupted.load(Ordering::Relaxed) {
                return Ok(());
            }
            let ready = ready_files(pgdata)?;
            self.forget_all_but(&ready)?;
            let todo: Vec<&String> = ready
                .iter()
                .filter(|name| Some(name.as_str()) != skip && !self.has_outcome(name))
                .collect();
            if todo.is_empty() {
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            repo.sync_cache_if_older(push::INDEX_MAX_AGE)?;
            for name in todo.iter().take(READ_AHEAD) {
                push::read_ahead(&pgdata.join("pg_wal").join(name));
            }
            // Two files at a time: while one waits for its reads and fsyncs, the other keeps
            // the cores busy (each push already spreads its chunks over every core).
            let next = std::sync::atomic::AtomicUsize::new(0);
            let repo: &IndexedRepository = repo;
            let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..PARALLEL_FILES)
                    .map(|_| {
                        scope.spawn(|| -> Result<()> {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(name) = todo.get(i) else {
                                    return Ok(());
                                };
                                if interrupted.load(Ordering::Relaxed) {
                                    return Ok(());
                                }
                                if let Some(ahead) = todo.get(i + READ_AHEAD) {
                                    push::read_ahead(&pgdata.join("pg_wal").join(ahead));
                                }
                                self.archive_one(repo, server, name, interrupted, report)?;
                            }
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| {
                        w.join()
                            .unwrap_or_else(|_| Err(Error::internal("worker thread panicked")))
                    })
                    .collect()
            });
            for outcome in outcomes {
                outcome?;
            }
            idle_since = Instant::now();
        }
        Ok(())
    }

    /// Archives one ready file and leaves its receipt, or its failure for the server's call
    /// to meet again.
    fn archive_one(
        &self,
        repo: &IndexedRepository,
        server: &Server,
        name: &str,
        interrupted: &AtomicBool,
        report: &(dyn Fn(&str, &Result<PushReport>) + Sync),
    ) -> Result<()> {
        let cluster = server.cluster;
        let path = server.pgdata.join("pg_wal").join(name);
        let before = fs::metadata(&path).map(|m| Identity::of(&m));
        let pushed = push::push(repo, &path, Some(cluster), interrupted);
        report(name, &pushed);
        let after = fs::metadata(&path).map(|m| Identity::of(&m));
        match (&pushed, before, after) {
            (Ok(_), Ok(before), Ok(after)) if before == after => {
                let receipt = Receipt {
                    entry_path: repo.wal_entry_path(cluster, name),
                    identity: after,
                };
                self.write(&format!("{name}{RECEIPT_SUFFIX}"), &receipt.to_line())
            }
            // Changed or gone while read: the server's call decides.
            (Ok(_), _, _) => Ok(()),
            (Err(e), _, _) => self.write(&format!("{name}{FAILURE_SUFFIX}"), &e.to_string()),
        }
    }

    fn has_outcome(&self, name: &str) -> bool {
        [RECEIPT_SUFFIX, FAILURE_SUFFIX]
            .iter()
            .any(|suffix| self.spool.path_of(&format!("{name}{suffix}")).exists())
    }

    /// Receipts and failures of files the server no longer has ready are of no further use.
    fn forget_all_but(&self, ready: &[String]) -> Result<()> {
        let dir = self.spool.dir();
        let entries = fs::read_dir(dir).map_err(Error::io_at("listing", dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io_at("listing", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(base) = name
                .strip_suffix(RECEIPT_SUFFIX)
                .or_else(|| name.strip_suffix(FAILURE_SUFFIX))
            else {
                continue;
            };
            if !ready.iter().any(|r| r == base) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Writes a spool file under a temporary name and renames it, so a reader never sees half.
    fn write(&self, name: &str, text: &str) -> Result<()> {
        let path = self.spool.path_of(name);
        let temp = self.spool.path_of(&format!(".{name}.tmp"));
        fs::write(&temp, text)
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(Error::io_at("writing", &path))
    }
}

/// The files the server has marked ready for archiving, in the order it archives them:
/// timeline history files first, then by name.
fn ready_files(pgdata: &Path) -> Result<Vec<String>> {
    let dir = pgdata.join("pg_wal").join("archive_status");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == IoErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::local_io(e, format!("listing {}", dir.display()))),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io_at("listing", &dir))?;
        if let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".ready"))
        {
            if super::classify(name).is_some() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort_by_key(|name| (!name.ends_with(".history"), name.clone()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_refuse_garbage() {
        let receipt = Receipt {
            entry_path: "wal/ab".into(),
            identity: Identity {
                size: 16 << 20,
                dev: 2049,
                ino: 77,
                mtime_ns: 1_790_000_000_123_456_789,
                ctime_ns: 1_790_000_000_223_456_789,
            },
        };
        let parsed = Receipt::parse(&receipt.to_line()).unwrap();
        assert_eq!(parsed.entry_path, "wal/ab");
        assert_eq!(parsed.identity, receipt.identity);
        for bad in ["", "wal/ab 1 2 3", "wal/ab -1 2 3 4 5", "wal/ab x 2 3 4 5"] {
            assert!(Receipt::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_receipt_counts_only_for_the_same_file_with_its_entry_on_storage() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().join("repo").to_str().unwrap()).unwrap();
        let ahead = Ahead::new(&dir.path().join("cache"), storage.location(), 7);
        ahead.create().unwrap();
        let wal = dir.path().join("000000010000000000000003");
        fs::write(&wal, b"segment").unwrap();
        let receipt = |entry_path: &str| Receipt {
            entry_path: entry_path.into(),
            identity: Identity::of(&fs::metadata(&wal).unwrap()),
        };
        let name = "000000010000000000000003";
        let found = |ahead: &Ahead| match ahead.take(&storage, name, &wal).unwrap() {
            Found::Archived => "archived",
            Found::Failed(_) => "failed",
            Found::Nothing => "nothing",
        };
        assert_eq!(found(&ahead), "nothing");
        // The entry is not on this storage (another repository, or never written).
        ahead
            .write(&format!("{name}.ok"), &receipt("wal/ab").to_line())
            .unwrap();
        assert_eq!(found(&ahead), "nothing");
        storage.write("wal/ab", b"entry".to_vec()).unwrap();
        assert_eq!(found(&ahead), "archived");
        assert_eq!(found(&ahead), "archived", "a receipt serves repeated calls");
        // The file changed since the worker read it.
        std::thread::sleep(Duration::from_millis(10));
        fs::write(&wal, b"other segment").unwrap();
        assert_eq!(found(&ahead), "nothing");
        // A failure is met once, then the call archives the file itself.
        ahead
            .write(&format!("{name}.error"), "storage down")
            .unwrap();
        assert_eq!(found(&ahead), "failed");
        assert_eq!(found(&ahead), "nothing");
    }

    #[test]
    fn ready_files_come_in_the_servers_order() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("pg_wal/archive_status");
        fs::create_dir_all(&status).unwrap();
        for name in [
            "000000020000000000000005.ready",
            "00000002.history.ready",
            "000000010000000000000004.partial.ready",
            "000000020000000000000004.done",
            "not-wal.ready",
        ] {
            fs::write(status.join(name), b"").unwrap();
        }
        assert_eq!(
            ready_files(dir.path()).unwrap(),
            [
                "00000002.history",
                "000000010000000000000004.partial",
                "000000020000000000000005"
            ]
        );
    }
}
