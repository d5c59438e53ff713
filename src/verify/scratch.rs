//! Verify's private index cache: a file in the repository's directory of the local cache,
//! named after the process, removed when verify ends. A file rather than memory, so that the
//! index of a large repository spills to disk instead of growing the process; private, so that
//! nothing verify does to it reaches the cache other commands share (see
//! `Repository::load_index_private`).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::repo::cache;

const PREFIX: &str = "verify-";
const SUFFIX: &str = ".sqlite";

/// The private cache's path; dropping it removes the file.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// The path for this process, after removing what verify runs that died left behind.
    pub fn new(repo_cache_dir: &Path) -> Result<Scratch> {
        remove_orphans(repo_cache_dir)?;
        Ok(Scratch {
            path: repo_cache_dir.join(format!("{PREFIX}{}{SUFFIX}", std::process::id())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = cache::remove(&self.path) {
            eprintln!("warning: {e}");
        }
    }
}

/// Removes the private caches of verify processes that no longer run.
fn remove_orphans(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_running(pid) {
            cache::remove(&entry.path())?;
        }
    }
    Ok(())
}

fn is_running(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_processes_go_and_the_own_file_goes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        // Pid 2^22 + 1 is above Linux's pid_max: never a running process.
        let orphan = dir.path().join(format!("{PREFIX}4194305{SUFFIX}"));
        let alive = dir.path().join(format!("{PREFIX}1{SUFFIX}"));
        std::fs::write(&orphan, b"x").unwrap();
        std::fs::write(format!("{}-wal", orphan.display()), b"x").unwrap();
        std::fs::write(&alive, b"x").unwrap();
        let scratch = Scratch::new(dir.path()).unwrap();
        assert!(!orphan.exists());
        assert!(alive.exists(), "pid 1 runs");
        std::fs::write(scratch.path(), b"x").unwrap();
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists());
    }
}
