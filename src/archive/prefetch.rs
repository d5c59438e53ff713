//! `archive-get --prefetch N`: a local queue of the segments after the one the server just
//! asked for, filled by one background worker, so that recovery from a remote repository is
//! not one round trip (and one repository open) per segment.
//!
//! The queue is a directory per repository location and cluster in the cache directory:
//! `<cache>/prefetch/<hash of the location>/<system id>/`, user-only. It holds:
//! - `<segment name>`: a complete segment, checked against its catalogue entry when written;
//!   written as `<segment name>.tmp-<pid>` and renamed, so a reader never sees a partial one;
//! - `.served`: the name of the segment archive-get served last; the *window* is the N
//!   segments after it on the same timeline, and only those may stay in the queue;
//! - `.lock`: flocked by the worker for its lifetime, so there is never a second one;
//! - `worker.log`: what the last worker said.
//!
//! Nothing in the queue is trusted: archive-get looks the segment up in the catalogue as
//! without a queue, and serves a queued copy only if its size and BLAKE3 checksum match the
//! entry. Hashing 16 MiB costs milliseconds; in exchange a file damaged or planted in the
//! cache, or one left from another repository at the same location, can never be served, and
//! the queue needs no metadata of its own to be kept right. Anything wrong with the queue
//! means a direct fetch, never a failure.

use std::fs::{self, File};
use std::io::ErrorKind as IoErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::get;
use super::spool::{Spool, WorkerLock};
use crate::error::{Error, Result};
use crate::pg::wal;
use crate::repo::IndexedRepository;
use crate::repo::walcat::WalEntry;

/// The most segments `--prefetch` may queue: the queue takes that many times the segment size
/// of local disk.
pub const MAX_DEPTH: u32 = 256;

const SERVED_FILE: &str = ".served";
/// Marks a file still being written (by the worker whose pid follows).
const TEMP_MARK: &str = ".tmp-";

/// The segments that may be queued: the `depth` segments after the one served last, on its
/// timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    timeline: u32,
    /// The segment served last; the window starts after it.
    served: u64,
    depth: u32,
    segment_size: u64,
}

impl Window {
    /// The window after segment `served` (a segment name) for segments of `segment_size`
    /// bytes, or `None` if `served` is not a segment name at that size.
    pub fn after(served: &str, segment_size: u64, depth: u32) -> Option<Window> {
        if !wal::is_valid_segment_size(segment_size) {
            return None;
        }
        let (timeline, segno) = wal::parse_segment_name(served, segment_size)?;
        Some(Window {
            timeline,
            served: segno,
            depth,
            segment_size,
        })
    }

    /// The same window moved to start after `served`, if that is a segment of the same
    /// timeline.
    fn moved_to(&self, served: &str) -> Option<Window> {
        Window::after(served, self.segment_size, self.depth).filter(|w| w.timeline == self.timeline)
    }

    /// The segment names in the window, in order. Past the last segment PostgreSQL can name
    /// there is nothing.
    pub fn names(&self) -> Vec<String> {
        (1..=u64::from(self.depth))
            .map(|k| wal::segment_name(self.timeline, self.served + k, self.segment_size))
            .filter(|name| wal::is_wal_segment_name(name))
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        wal::parse_segment_name(name, self.segment_size).is_some_and(|(timeline, segno)| {
            timeline == self.timeline
                && segno > self.served
                && segno - self.served <= u64::from(self.depth)
        })
    }

    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }
}

/// The prefetch queue of one cluster in one repository.
pub struct Queue {
    spool: Spool,
    dir: PathBuf,
}

/// How a fill ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FillEnd {
    /// Every segment of the window is queued.
    Full,
    /// The archive does not have this segment (yet): the end of the archive for now.
    EndOfArchive(String),
    /// archive-get has moved to another timeline: this window is no longer wanted.
    Superseded,
    Interrupted,
}

impl Queue {
    /// The queue directory for cluster `cluster` of the repository at `location`, under the
    /// cache directory `cache_base`. Nothing is created.
    pub fn new(cache_base: &Path, location: &str, cluster: u64) -> Queue {
        let spool = Spool::new(cache_base, "prefetch", location, cluster);
        let dir = spool.dir().to_path_buf();
        Queue { spool, dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the queue directory (user-only) if it is not there.
    pub fn create(&self) -> Result<()> {
        self.spool.create()
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.spool.path_of(name)
    }

    fn is_queued(&self, name: &str) -> bool {
        self.path_of(name).is_file()
    }

    /// Serves `entry` from the queue to `dest` if it is queued: `Ok(false)` when it is not.
    /// The queued file is moved out of the queue (copied when `dest` is on another
    /// filesystem), checked against the entry, fsynced and renamed into place as
    /// [`get::fetch`] does. A copy that fails the check is deleted and an error returned: the
    /// caller then fetches directly.
    pub fn take(&self, entry: &WalEntry, dest: &Path) -> Result<bool> {
        let queued = self.path_of(&entry.name);
        if !queued.is_file() {
            return Ok(false);
        }
        get::install(dest, |staged| {
            // Moved out first, so that a concurrent clean-up cannot delete it under us.
            match fs::rename(&queued, staged) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    fs::copy(&queued, staged).map_err(Error::io_at("copying", &queued))?;
                    // Served either way; a later clean-up would remove it too.
                    let _ = fs::remove_file(&queued);
                }
                Err(e) => return Err(Error::local_io(e, format!("moving {}", queued.display()))),
            }
            // A symlink would be followed when checked, and could point elsewhere later.
            let is_file = fs::symlink_metadata(staged)
                .map_err(Error::io_at("reading", staged))?
                .file_type()
                .is_file();
            if !is_file || !get::matches_entry(staged, entry)? {
                return Err(Error::local(format!(
                    "the queued copy of {} at {} does not match the archived file (BLAKE3 {})",
                    entry.name,
                    queued.display(),
                    entry.checksum_hex()
                )));
            }
            // The worker wrote it durably, but the server must never read a file that a crash
            // could take back: as cheap as a no-op when it is on disk already.
            File::open(staged)
                .and_then(|f| f.sync_all())
                .map_err(Error::io_at("fsync", staged))
        })?;
        Ok(true)
    }

    /// Records that `name` was served: the window now starts after it.
    pub fn mark_served(&self, name: &str) -> Result<()> {
        let path = self.path_of(SERVED_FILE);
        let temp = self.path_of(&format!("{SERVED_FILE}{TEMP_MARK}{}", std::process::id()));
        let result = fs::write(&temp, name)
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(Error::io_at("writing", &path));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// The window as the last archive-get left it: `start` moved to the segment served last.
    /// `None` when that is on another timeline or cannot be read: the worker started for
    /// `start` has nothing more to do.
    fn current_window(&self, start: &Window) -> Option<Window> {
        match fs::read_to_string(self.path_of(SERVED_FILE)) {
            Ok(served) => start.moved_to(served.trim()),
            Err(e) if e.kind() == IoErrorKind::NotFound => Some(*start),
            Err(_) => None,
        }
    }

    fn in_window(&self, start: &Window, name: &str) -> bool {
        self.current_window(start)
            .is_some_and(|window| window.contains(name))
    }

    /// Deletes queued segments outside `window` (served already, skipped over, on another
    /// timeline, or beyond it), and files left half-written when `locked` says no worker
    /// can be writing them. Returns the segments of the window that are not queued. Files
    /// pgcairn did not name are left alone.
    pub fn clean(&self, window: &Window, locked: Option<&WorkerLock>) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(Error::io_at("listing", &self.dir))?;
        for dir_entry in entries {
            let dir_entry = dir_entry.map_err(Error::io_at("listing", &self.dir))?;
            let name = dir_entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stale = if wal::is_wal_segment_name(name) {
                !window.contains(name)
            } else {
                // Only segments are written under temporary names by the worker; `.served`'s
                // temporary belongs to an archive-get, which holds no lock.
                locked.is_some()
                    && name
                        .split_once(TEMP_MARK)
                        .is_some_and(|(base, _)| wal::is_wal_segment_name(base))
            };
            if stale {
                let path = dir_entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    // Served or cleaned by another archive-get meanwhile.
                    Err(e) if e.kind() == IoErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::local_io(e, format!("removing {}", path.display())));
                    }
                }
            }
        }
        Ok(window
            .names()
            .into_iter()
            .filter(|name| !self.is_queued(name))
            .collect())
    }

    /// The worker lock, or `None` while a worker holds it.
    pub fn try_lock(&self) -> Result<Option<WorkerLock>> {
        self.spool.try_lock()
    }

    /// The worker: queues the missing segments of the window, in order, following the window
    /// as archive-get moves it, until every one is queued or the archive does not have the
    /// next. `report` hears of each segment queued.
    pub fn fill(
        &self,
        lock: &WorkerLock,
        repo: &mut IndexedRepository,
        cluster: u64,
        start: &Window,
        interrupted: &AtomicBool,
        report: &mut dyn FnMut(&str),
    ) -> Result<FillEnd> {
        loop {
            if interrupted.load(Ordering::Relaxed) {
                return Ok(FillEnd::Interrupted);
            }
            let Some(window) = self.current_window(start) else {
                return Ok(FillEnd::Superseded);
            };
            let Some(name) = self.clean(&window, Some(lock))?.into_iter().next() else {
                return Ok(FillEnd::Full);
            };
            let Some(entry) = repo.load_wal_entry(cluster, &name)? else {
                return Ok(FillEnd::EndOfArchive(name));
            };
            // Every segment of a cluster has its size; anything else is not for the queue.
            if entry.size != window.segment_size() {
                return Err(Error::integrity(format!(
                    "{name} is archived with {} bytes, not the segment size {}",
                    entry.size,
                    window.segment_size()
                )));
            }
            get::learn_chunks(repo, &entry)?;
            let temp = self.path_of(&format!("{name}{TEMP_MARK}{}", std::process::id()));
            let queued = get::write_checked(repo, &entry, &temp, interrupted).and_then(|()| {
                // The server may have moved on while this was fetched.
                if !self.in_window(start, &name) {
                    let _ = fs::remove_file(&temp);
                    return Ok(false);
                }
                fs::rename(&temp, self.path_of(&name))
                    .map_err(Error::io_at("renaming into the queue", &temp))?;
                Ok(true)
            });
            if queued.is_err() {
                let _ = fs::remove_file(&temp);
            }
            if queued? {
                // And it may have moved on between the check and the rename: the queue never
                // keeps a segment outside the window.
                if !self.in_window(start, &name) {
                    let _ = fs::remove_file(self.path_of(&name));
                } else {
                    report(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB_16: u64 = 16 << 20;

    #[test]
    fn window_crosses_a_log_id_boundary() {
        let window = Window::after("0000000100000000000000FE", MIB_16, 3).unwrap();
        assert_eq!(
            window.names(),
            [
                "0000000100000000000000FF",
                "000000010000000100000000",
                "000000010000000100000001"
            ]
        );
        assert!(window.contains("000000010000000100000001"));
        assert!(!window.contains("000000010000000100000002"));
        assert!(!window.contains("0000000100000000000000FE"));
        assert!(!window.contains("0000000200000000000000FF"));
    }

    #[test]
    fn window_is_read_at_the_real_segment_size() {
        // At 64 MiB a log id holds 64 segments: ...3F is followed by the next log id.
        let window = Window::after("00000001000000000000003F", 64 << 20, 1).unwrap();
        assert_eq!(window.names(), ["000000010000000100000000"]);
        // Not a segment at 64 MiB (the segment part is past 3F), nor a valid size.
        assert_eq!(Window::after("000000010000000000000040", 64 << 20, 1), None);
        assert_eq!(Window::after("000000010000000000000001", 3 << 20, 1), None);
    }

    #[test]
    fn window_ends_with_the_last_nameable_segment() {
        let window = Window::after("00000001FFFFFFFF000000FE", MIB_16, 3).unwrap();
        assert_eq!(window.names(), ["00000001FFFFFFFF000000FF"]);
    }

    #[test]
    fn window_follows_the_served_segment_on_its_timeline_only() {
        let start = Window::after("000000010000000000000002", MIB_16, 2).unwrap();
        let moved = start.moved_to("000000010000000000000005").unwrap();
        assert_eq!(
            moved.names(),
            ["000000010000000000000006", "000000010000000000000007"]
        );
        assert_eq!(start.moved_to("000000020000000000000005"), None);
        assert_eq!(start.moved_to("garbage"), None);
    }
}
