//! Lock objects (format-spec §16): a long writer announces itself so that prune defers
//! deleting packs it may still reference, and prunes exclude each other. Neither kind ever
//! blocks a backup or `archive-push`.
//!
//! A lock is an ordinary immutable object named by its hash. Refreshing writes a new object
//! with the same token and a later `refreshed_ns`, then deletes the old one, so no backend
//! needs an atomic replace or a conditional create: two prunes that start together both see
//! each other's lock after writing their own, and the younger one backs off.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::id::object_hash;
use super::object::{ObjectKind, SealedObject};
use super::{Repository, layout};
use crate::error::{Error, ErrorKind, Result};

/// How often a holder rewrites its lock.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long is taken for the lock of a dead process and ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// A holder commits only if its lock was refreshed within this long (by its own monotonic
/// clock): well inside [`STALE_AFTER`], so a lock others may already ignore never covers a
/// commit.
pub const COMMIT_WITHIN: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// A backup (or any long writer): prune keeps packs it may reference.
    Writer,
    /// A prune: at most one runs.
    Prune,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub kind: LockKind,
    /// Random, the same in every refresh of one lock: identifies it across refreshes.
    pub token: [u8; 16],
    pub hostname: String,
    pub pid: u32,
    pub started_ns: i64,
    pub refreshed_ns: i64,
    pub program_version: String,
}

impl SealedObject for Lock {
    const KIND: ObjectKind = ObjectKind::Lock;
}

impl Lock {
    /// Whether a lock last refreshed at `refreshed_ns` still counts at `now_ns`.
    pub fn is_fresh(&self, now_ns: i64) -> bool {
        now_ns.saturating_sub(self.refreshed_ns) < STALE_AFTER.as_nanos() as i64
    }

    /// Whether the lock counts at `now_ns`: fresh, and not the lock of a process of this
    /// host that no longer exists (a killed prune or backup frees its lock at once here;
    /// on other hosts, when it goes stale).
    pub fn is_held(&self, now_ns: i64) -> bool {
        self.is_fresh(now_ns) && !self.holder_is_gone_here()
    }

    fn holder_is_gone_here(&self) -> bool {
        if self.hostname != gethostname::gethostname().to_string_lossy() {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        !alive
    }

    pub fn describe(&self) -> String {
        let what = match self.kind {
            LockKind::Writer => "backup or copy",
            LockKind::Prune => "prune",
        };
        format!(
            "{what} on {} (pid {}) since {} UTC",
            self.hostname,
            self.pid,
            crate::clock::format_utc(self.started_ns / 1_000_000_000)
        )
    }
}

/// One lock object found on storage.
#[derive(Clone, Debug)]
pub struct ListedLock {
    pub path: String,
    pub lock: Lock,
}

/// A lock this process holds. Dropping it without [`HeldLock::release`] leaves the object,
/// which goes stale: the safe failure.
pub struct HeldLock {
    lock: Lock,
    path: String,
    refreshed: Instant,
}

impl Repository {
    /// Writes a new lock of `kind` and returns it held.
    pub fn acquire_lock(&self, kind: LockKind) -> Result<HeldLock> {
        let now = crate::clock::now_ns();
        let mut token = [0u8; 16];
        rand::RngCore::fill_bytes(&mut self.random.rng(), &mut token);
        let lock = Lock {
            kind,
            token,
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            started_ns: now,
            refreshed_ns: now,
            program_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let path = self.write_lock(&lock)?;
        Ok(HeldLock {
            lock,
            path,
            refreshed: Instant::now(),
        })
    }

    fn write_lock(&self, lock: &Lock) -> Result<String> {
        let bytes = lock.seal(&self.keys.data, &mut self.random.rng())?;
        let path = layout::lock(&object_hash(&bytes));
        self.storage
            .write(&path, bytes)
            .map_err(|e| e.with_context(format!("lock {path}")))?;
        Ok(path)
    }

    /// Every readable lock on storage. Unreadable ones (damaged, or deleted between listing
    /// and reading by a refresh) are skipped: a lock only ever defers work, so missing one
    /// costs safety only if its holder is also past [`COMMIT_WITHIN`], which it checks.
    pub fn list_locks(&self) -> Result<Vec<ListedLock>> {
        let mut out = Vec::new();
        for name in self.storage.list(layout::LOCKS)? {
            let mut id = [0u8; 32];
            if hex::decode_to_slice(&name, &mut id).is_err() {
                continue;
            }
            let path = layout::lock(&id);
            let Some(bytes) = self.storage.read_optional(&path)? else {
                continue;
            };
            if object_hash(&bytes) != id {
                continue;
            }
            if let Ok(lock) = Lock::open(&self.keys.data, &bytes) {
                out.push(ListedLock { path, lock });
            }
        }
        Ok(out)
    }

    /// Rewrites a held lock with the current time, then deletes the previous object.
    pub fn refresh_lock(&self, held: &mut HeldLock) -> Result<()> {
        let mut lock = held.lock.clone();
        lock.refreshed_ns = crate::clock::now_ns();
        let attempted = Instant::now();
        let path = self.write_lock(&lock)?;
        let old = std::mem::replace(&mut held.path, path);
        held.lock = lock;
        held.refreshed = attempted;
        self.storage.delete(&old)
    }

    /// Deletes a held lock.
    pub fn release_lock(&self, held: HeldLock) -> Result<()> {
        self.storage.delete(&held.path)
    }

    /// Runs `work` holding a lock of `kind`, refreshed in the background, and releases it
    /// afterwards whatever `work` returns. `work` calls [`Locked::check_current`] right before
    /// its commit points.
    pub fn with_lock<T>(
        &self,
        kind: LockKind,
        work: impl FnOnce(&Locked) -> Result<T> + Send,
    ) -> Result<T>
    where
        T: Send,
    {
        let locked = Locked(Mutex::new(self.acquire_lock(kind)?));
        let result = crate::clock::while_ticking(
            Duration::from_secs(10),
            || {
                let mut held = locked.0.lock().unwrap_or_else(|p| p.into_inner());
                if held.due()
                    && let Err(e) = self.refresh_lock(&mut held)
                {
                    eprintln!("warning: could not refresh lock {}: {e}", held.path);
                }
            },
            || work(&locked),
        );
        let held = locked.0.into_inner().unwrap_or_else(|p| p.into_inner());
        match (result, self.release_lock(held)) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(e.with_context("releasing the lock")),
            (Err(e), _) => Err(e),
        }
    }

    /// Deletes locks that no longer count; they defer nothing.
    pub fn remove_stale_locks(&self, locks: &[ListedLock], now_ns: i64) -> Result<usize> {
        let mut removed = 0;
        for listed in locks.iter().filter(|l| !l.lock.is_held(now_ns)) {
            self.storage.delete(&listed.path)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// A lock held by [`Repository::with_lock`], shared with its refresher.
pub struct Locked(Mutex<HeldLock>);

impl Locked {
    pub fn check_current(&self) -> Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_current()
    }

    pub fn lock(&self) -> Lock {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lock
            .clone()
    }
}

impl HeldLock {
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Fails unless the lock was refreshed recently enough that every other process still
    /// counts it: called right before a commit point or a deletion.
    pub fn check_current(&self) -> Result<()> {
        let age = self.refreshed.elapsed();
        if age > COMMIT_WITHIN {
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "this process's lock {} was last refreshed {} s ago (storage unreachable or \
                     the process was suspended); others may already ignore it, so nothing is \
                     committed — run the command again",
                    self.path,
                    age.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Whether the lock is due for a refresh.
    pub fn due(&self) -> bool {
        self.refreshed.elapsed() >= REFRESH_EVERY
    }
}
