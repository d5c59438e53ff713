//! Restoring a snapshot into a data directory: directories, files and links as the snapshot
//! has them, tablespaces at their original or mapped places, `backup_label` and
//! `tablespace_map` from the snapshot, recovery configured, everything fsynced, and
//! `pg_control` written last, so an interrupted restore never leaves a directory that starts
//! as if it were complete.

mod plan;
pub mod select;
mod write;

use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::while_ticking;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::datadir::PG_CONTROL;
use crate::pg::recovery::{self, RecoverySettings};
use crate::repo::IndexedRepository;
use crate::repo::snapshot::Snapshot;

use plan::Plan;
pub use write::WriteCounters;
use write::Writer;

pub struct RestoreRequest<'a> {
    pub pgdata: PathBuf,
    pub delta: bool,
    /// Tablespace locations to move: (original, new).
    pub tablespace_map: Vec<(PathBuf, PathBuf)>,
    pub recovery: RecoverySettings,
    pub interrupted: &'a AtomicBool,
}

pub struct RestoreReport {
    pub files: usize,
    pub bytes: u64,
    pub bytes_written: u64,
    pub bytes_kept: u64,
    pub removed: usize,
}

/// What a running restore shows.
pub struct RestoreProgress<'a> {
    pub counters: &'a WriteCounters,
    pub total_bytes: u64,
}

/// Refuses a target that holds something, unless this is a delta restore; a delta restore
/// refuses a directory a server is running in.
fn check_target(dir: &Path, delta: bool, what: &str) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io_at("reading", dir)(e)),
    };
    if !entries {
        return Ok(());
    }
    if !delta {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{what} {} is not empty; restore into a new or empty directory, or give --delta \
                 to reuse what is there",
                dir.display()
            ),
        ));
    }
    let pid_file = dir.join("postmaster.pid");
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        let pid: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        // SAFETY: kill with signal 0 only checks that the process exists.
        if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "a server (pid {pid}) is running in {}; stop it before restoring over it",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Removes what is under `dir` but not in the plan (a delta restore makes the directory
/// exactly the snapshot's).
fn remove_extras(dir: &Path, keep: &HashSet<PathBuf>) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(Error::io_at("reading", dir))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(Error::io_at("reading", &path))?
            .is_dir();
        if keep.contains(&path) {
            if is_dir {
                removed += remove_extras(&path, keep)?;
            }
            continue;
        }
        if is_dir {
            std::fs::remove_dir_all(&path).map_err(Error::io_at("removing", &path))?;
        } else {
            std::fs::remove_file(&path).map_err(Error::io_at("removing", &path))?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Removes whatever stands where a file is to be restored but is not a regular file (a
/// directory, a symlink, a socket): a delta restore must neither fail on it nor write through a
/// symlink into some other file.
fn clear_file_places(files: &[plan::PlannedFile]) -> Result<usize> {
    let mut removed = 0;
    for file in files {
        let Ok(meta) = std::fs::symlink_metadata(&file.path) else {
            continue;
        };
        if meta.file_type().is_file() {
            continue;
        }
        if meta.is_dir() {
            std::fs::remove_dir_all(&file.path)
        } else {
            std::fs::remove_file(&file.path)
        }
        .map_err(Error::io_at("replacing", &file.path))?;
        removed += 1;
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io_at("syncing", dir))
}

/// Writes a small file durably.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    std::fs::write(path, bytes).map_err(Error::io_at("writing", path))?;
    let file = std::fs::File::open(path).map_err(Error::io_at("opening", path))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|_| file.sync_all())
        .map_err(Error::io_at("syncing", path))
}

/// `tablespace_map` with each tablespace's path replaced by where it is restored. The server
/// recreates the pg_tblspc links from this file when it starts from a backup. Each line is
/// `<oid> <path>` (the path may hold spaces; only the first space separates); a line without a
/// space is kept as it is.
pub fn remap_tablespace_map(map: &[u8], locate: &impl Fn(&[u8]) -> PathBuf) -> Vec<u8> {
    let mut out = Vec::with_capacity(map.len());
    for line in map.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        match body.iter().position(|&b| b == b' ') {
            Some(space) => {
                out.extend_from_slice(&body[..=space]);
                out.extend_from_slice(locate(&body[space + 1..]).as_os_str().as_bytes());
                if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

/// Writes one file of a snapshot to `dest` (e.g. a WAL segment for the server's
/// restore_command), durably.
pub fn restore_file(
    repo: &IndexedRepository,
    node: &crate::repo::tree::Node,
    dest: &Path,
    interrupted: &AtomicBool,
) -> Result<()> {
    let crate::repo::tree::NodeKind::File { size, .. } = node.kind else {
        return Err(Error::internal("restore_file called for a non-file"));
    };
    let file = plan::PlannedFile {
        path: dest.to_path_buf(),
        rel: node.name.clone(),
        node: node.clone(),
        size,
    };
    let counters = WriteCounters::default();
    Writer {
        repo,
        interrupted,
        counters: &counters,
        delta: false,
        io_pool: &write::io_pool(repo.storage())?,
    }
    .write_files(std::slice::from_ref(&file))
}

pub fn restore(
    repo: &IndexedRepository,
    snapshot: &Snapshot,
    request: &RestoreRequest,
    on_progress: &(dyn Fn(&RestoreProgress) + Sync),
) -> Result<RestoreReport> {
    let pg = snapshot.postgres.as_ref().ok_or_else(|| {
        Error::usage("this snapshot is not of a PostgreSQL cluster; nothing to restore")
    })?;
    let locate = |old: &[u8]| -> PathBuf {
        let old = Path::new(std::ffi::OsStr::from_bytes(old));
        request
            .tablespace_map
            .iter()
            .find(|(from, _)| from == old)
            .map(|(_, to)| to.clone())
            .unwrap_or_else(|| old.to_path_buf())
    };
    check_target(&request.pgdata, request.delta, "data directory")?;
    for ts in &pg.tablespaces {
        check_target(&locate(&ts.location), request.delta, "tablespace directory")?;
    }
    let plan = Plan::build(repo, snapshot, &request.pgdata, locate)?;

    let mut keep: HashSet<PathBuf> = plan.dirs.iter().map(|d| d.path.clone()).collect();
    keep.extend(plan.links.iter().map(|l| l.path.clone()));
    keep.extend(plan.files.iter().map(|f| f.path.clone()));
    let mut removed = 0;
    if request.delta {
        // The old pg_control goes before anything else changes, for the same reason the new
        // one comes last: a delta restore cut short must not leave a directory that starts.
        let control = request.pgdata.join(std::ffi::OsStr::from_bytes(PG_CONTROL));
        match std::fs::remove_file(&control) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_at("removing", &control)(e)),
        }
        removed += remove_extras(&request.pgdata, &keep)?;
        for ts in &pg.tablespaces {
            removed += remove_extras(&locate(&ts.location), &keep)?;
        }
        removed += clear_file_places(&plan.files)?;
    }

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&request.pgdata)
        .map_err(Error::io_at("creating", &request.pgdata))?;
    for dir in &plan.dirs {
        match std::fs::symlink_metadata(&dir.path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&dir.path).map_err(Error::io_at("replacing", &dir.path))?
            }
            Err(_) => {}
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir.path)
            .map_err(Error::io_at("creating", &dir.path))?;
        std::fs::set_permissions(
            &dir.path,
            std::fs::Permissions::from_mode(dir.mode & 0o7777),
        )
        .map_err(Error::io_at("setting the mode of", &dir.path))?;
    }
    for link in &plan.links {
        let target = Path::new(std::ffi::OsStr::from_bytes(&link.target));
        match std::fs::read_link(&link.path) {
            Ok(existing) if existing == target => continue,
            Ok(_) => {
                std::fs::remove_file(&link.path).map_err(Error::io_at("replacing", &link.path))?
            }
            Err(_) => {
                if let Ok(m) = std::fs::symlink_metadata(&link.path) {
                    if m.is_dir() {
                        std::fs::remove_dir_all(&link.path)
                    } else {
                        std::fs::remove_file(&link.path)
                    }
                    .map_err(Error::io_at("replacing", &link.path))?;
                }
            }
        }
        std::os::unix::fs::symlink(target, &link.path)
            .map_err(Error::io_at("linking", &link.path))?;
    }

    // pg_control last: a restore cut short leaves a directory the server refuses to start.
    let (control, files): (Vec<_>, Vec<_>) =
        plan.files.into_iter().partition(|f| f.rel == PG_CONTROL);
    if control.is_empty() {
        return Err(Error::integrity("the snapshot has no global/pg_control"));
    }
    let total_bytes: u64 = files.iter().chain(&control).map(|f| f.size).sum();
    let counters = WriteCounters::default();
    let writer = Writer {
        repo,
        interrupted: request.interrupted,
        counters: &counters,
        delta: request.delta,
        io_pool: &write::io_pool(repo.storage())?,
    };
    let tick = || {
        on_progress(&RestoreProgress {
            counters: &counters,
            total_bytes,
        })
    };
    while_ticking(Duration::from_millis(250), tick, || {
        writer.write_files(&files)
    })?;

    write_file(
        &request.pgdata.join("backup_label"),
        &pg.backup_label,
        0o600,
    )?;
    if let Some(map) = &pg.tablespace_map {
        let map = remap_tablespace_map(map, &locate);
        write_file(&request.pgdata.join("tablespace_map"), &map, 0o600)?;
    }
    let _ = std::fs::remove_file(request.pgdata.join("standby.signal"));
    recovery::write_recovery_config(&request.pgdata, &request.recovery)?;
    for dir in plan.dirs.iter().rev() {
        sync_dir(&dir.path)?;
    }
    sync_dir(&request.pgdata)?;

    writer.write_files(&control)?;
    sync_dir(&request.pgdata.join("global"))?;
    Ok(RestoreReport {
        files: files.len() + control.len(),
        bytes: total_bytes,
        bytes_written: counters.bytes_written.load(Ordering::Relaxed),
        bytes_kept: counters.bytes_kept.load(Ordering::Relaxed),
        removed,
    })
}
