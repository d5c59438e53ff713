//! A private working directory of a background worker (the prefetch queue of archive-get, the
//! spool of archive-push --async): one per kind, repository location and cluster, under the
//! cache directory, readable by this user only, with a lock that says whether its worker runs.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind as IoErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const LOCK_FILE: &str = ".lock";
/// What the last worker printed.
pub const LOG_FILE: &str = "worker.log";

pub struct Spool {
    dir: PathBuf,
}

/// Held by a worker for its lifetime; the flock goes with the file.
pub struct WorkerLock {
    _file: File,
}

impl Spool {
    /// `<cache_base>/<kind>/<hash of location>/<cluster>/`; nothing is created. The location is
    /// hashed, like the key cache's name, as it may hold characters a file name cannot.
    pub fn new(cache_base: &Path, kind: &str, location: &str, cluster: u64) -> Spool {
        let hash = blake3::hash(location.as_bytes()).to_hex();
        Spool {
            dir: cache_base
                .join(kind)
                .join(&hash[..32])
                .join(cluster.to_string()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates the directory (user-only) if it is not there.
    pub fn create(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(Error::io_at("creating", &self.dir))?;
        // `mode` applies only to directories it creates; an existing one is made private too.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(Error::io_at("setting permissions of", &self.dir))
    }

    /// The worker lock, or `None` while a worker holds it.
    pub fn try_lock(&self) -> Result<Option<WorkerLock>> {
        let path = self.path_of(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io_at("opening", &path))?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(WorkerLock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == IoErrorKind::WouldBlock {
            return Ok(None);
        }
        Err(Error::local_io(err, format!("locking {}", path.display())))
    }
}
