//! Storage through OpenDAL: an operator built from a repository URL, with the guarantees the
//! repository relies on, whatever the backend:
//! - a write is atomic (never visible half-done: staged and renamed into place on SFTP and
//!   WebDAV, whose servers write into the named file as bytes arrive) and durable once it
//!   returns as far as the backend promises (file and directory fsynced on the local
//!   filesystem; acknowledged uploads on object stores; the server's word on SFTP and WebDAV);
//! - [`Storage::create_new`] never replaces an object, or, where the backend cannot promise
//!   that, finds out by reading the object back (see its comment);
//! - a remote backend's operations time out, are retried with backoff, and are bounded in
//!   number ([`connect`]).

mod connect;
mod errors;
mod location;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opendal::{ErrorKind as DalKind, Operator, blocking, options, services};

use crate::error::{Error, ErrorKind, Result};

pub use connect::Tuning;
use errors::storage_error;
pub use location::{KnownOption, Location, Service, known_options};

#[cfg(feature = "fault-injection")]
mod faults;

/// Name of the directory, inside a repository, where writes are staged before the rename
/// that publishes them (local filesystem, SFTP, WebDAV).
const STAGING_DIR: &str = ".staging";

pub struct Storage {
    op: blocking::Operator,
    /// Keeps the runtime that drives OpenDAL alive as long as the operator.
    _runtime: Arc<tokio::runtime::Runtime>,
    /// Root directory for the local filesystem backend, to fsync directories.
    local_root: Option<PathBuf>,
    service: Service,
    /// Whether the backend refuses a write to an existing name when asked to.
    conditional_create: bool,
    /// Requests in flight at once ([`Tuning::connections`]).
    connections: usize,
    location: String,
    /// Bytes read so far, whole objects and ranges: what a command cost in downloads.
    bytes_read: AtomicU64,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.location)
    }
}

fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pgcairn-io")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| Error::local(format!("cannot start the I/O runtime: {e}")))
}

impl Storage {
    /// Opens the storage a repository URL names, with options from the environment only.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &BTreeMap::new())
    }

    /// Opens the storage a repository URL names: a plain path (or `file://`) is a local
    /// directory, `memory://` an in-process store for tests, and `s3://`, `sftp://`,
    /// `webdav://`, `gcs://`, `azblob://` remote backends ([`Location`]). `config` is the
    /// config file's `[storage]` table.
    pub fn open_with(url: &str, config: &BTreeMap<String, String>) -> Result<Self> {
        let mut config = config.clone();
        let tuning = Tuning::take_from(&mut config)?;
        let location = Location::parse(url, &config, &|var| std::env::var(var).ok())?;
        match location.service {
            Service::Memory => Self::memory(),
            Service::Local => {
                let path = location.path.as_deref().unwrap_or(Path::new(url));
                Self::local(path)
            }
            _ => {
                let op = connect::service(&location)?;
                let op = connect::with_layers(op, &tuning);
                Self::with_operator(op, None, location.service, location.display, &tuning)
            }
        }
    }

    pub fn local(path: &Path) -> Result<Self> {
        let root = std::path::absolute(path)
            .map_err(|e| Error::local_io(e, format!("repository path {}", path.display())))?;
        let staging = root.join(STAGING_DIR);
        let builder = services::Fs::default()
            .root(&root.to_string_lossy())
            .atomic_write_dir(&staging.to_string_lossy());
        let op = Operator::new(builder)
            .map_err(|e| storage_error(e, "opening", &root.to_string_lossy()))?;
        Self::with_operator(
            op,
            Some(root.clone()),
            Service::Local,
            root.display().to_string(),
            &Tuning::default(),
        )
    }

    pub fn memory() -> Result<Self> {
        let op = Operator::new(services::Memory::default())
            .map_err(|e| storage_error(e, "opening", "memory://"))?;
        Self::with_operator(
            op,
            None,
            Service::Memory,
            "memory://".into(),
            &Tuning::default(),
        )
    }

    fn with_operator(
        op: Operator,
        local_root: Option<PathBuf>,
        service: Service,
        location: String,
        tuning: &Tuning,
    ) -> Result<Self> {
        let capability = op.info().capability();
        check_capabilities(service, &capability, &location)?;
        let runtime = runtime()?;
        #[cfg(feature = "fault-injection")]
        let op = faults::wrap(op);
        let op = {
            let _guard = runtime.enter();
            blocking::Operator::new(op).map_err(|e| storage_error(e, "opening", &location))?
        };
        Ok(Storage {
            op,
            _runtime: runtime,
            local_root,
            service,
            conditional_create: capability.write_with_if_not_exists && service.publishes_whole(),
            connections: tuning.connections,
            location,
            bytes_read: AtomicU64::new(0),
        })
    }

    /// A failed operation on `path`, with this storage's location for context.
    fn error(&self, err: opendal::Error, doing: &str, path: &str) -> Error {
        storage_error(err, doing, &format!("{path} in {}", self.location))
    }

    /// Whether every operation crosses a network (anything but a local directory or memory).
    pub fn is_remote(&self) -> bool {
        !matches!(self.service, Service::Local | Service::Memory)
    }

    /// How many reads a command should keep in flight to use this storage well: `local` (what
    /// suits the local disk) for a directory; for a remote backend enough to hide round
    /// trips, within the bound on connections.
    pub fn reads_in_flight(&self, local: usize) -> usize {
        if self.is_remote() {
            self.connections.min(8).max(local)
        } else {
            local
        }
    }

    /// Where this storage is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Bytes read from storage since it was opened.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    fn count_read(&self, len: usize) {
        self.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Reads a whole object. A missing object is `Ok(None)`.
    pub fn read_optional(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.read_into_vec(path, .., 0) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if errors::is_absent(&e) => Ok(None),
            Err(e) => Err(self.error(e, "reading", path)),
        }
    }

    /// Reads a whole object that must exist.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.read_optional(path)?
            .ok_or_else(|| Error::integrity(format!("{path} is missing from the repository")))
    }

    /// Reads `len` bytes at `offset`; fewer bytes than asked is an integrity error.
    pub fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let read = || {
            self.read_into_vec(path, offset..offset + len, len as usize)
                .map_err(|e| self.error(e, "reading", path))
        };
        let mut buf = read()?;
        if buf.len() as u64 != len {
            // A download cut short by the network looks the same as a truncated object; only a
            // second short read says the object itself is short.
            buf = read()?;
        }
        if buf.len() as u64 != len {
            return Err(Error::integrity(format!(
                "{path}: asked for {len} bytes at offset {offset}, got {} (truncated)",
                buf.len()
            )));
        }
        Ok(buf)
    }

    /// Streams a range of an object into one buffer as it arrives: a download is held once
    /// (plus the piece in flight), not collected in pieces and then copied.
    fn read_into_vec(
        &self,
        path: &str,
        range: impl Into<opendal::BytesRange>,
        expected: usize,
    ) -> opendal::Result<Vec<u8>> {
        let pieces = self.op.reader(path)?.into_iterator(range)?;
        let mut buf = Vec::with_capacity(expected);
        for piece in pieces {
            let piece = piece?;
            self.count_read(piece.len());
            for bytes in piece {
                buf.extend_from_slice(&bytes);
            }
        }
        Ok(buf)
    }

    pub fn size(&self, path: &str) -> Result<u64> {
        let meta = self
            .op
            .stat(path)
            .map_err(|e| self.error(e, "inspecting", path))?;
        Ok(meta.content_length())
    }

    /// The object's size, and when it was last written (ns since the Unix epoch) if the
    /// backend says: one request.
    pub fn size_and_modified(&self, path: &str) -> Result<(u64, Option<i64>)> {
        let meta = self
            .op
            .stat(path)
            .map_err(|e| self.error(e, "inspecting", path))?;
        let modified = meta
            .last_modified()
            .map(|t| t.into_inner().as_nanosecond() as i64);
        Ok((meta.content_length(), modified))
    }

    pub fn exists(&self, path: &str) -> Result<bool> {
        match self.op.stat(path) {
            Ok(_) => Ok(true),
            Err(e) if errors::is_absent(&e) => Ok(false),
            Err(e) => Err(self.error(e, "inspecting", path)),
        }
    }

    /// Writes an object atomically and durably: when this returns, the object is complete
    /// and survives a crash; before, it is not visible under its name. The bytes are handed
    /// to OpenDAL as one buffer, so a retried upload sends the same bytes again.
    pub fn write(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        if self.service.publishes_whole() {
            self.op
                .write(path, bytes)
                .map_err(|e| self.error(e, "writing", path))?;
        } else {
            self.write_staged(path, bytes)?;
        }
        if let Some(root) = &self.local_root {
            sync_parents(root, path)?;
        }
        Ok(())
    }

    /// Uploads under a private staging name, then renames into place, so that readers never
    /// see a partial object (and a crashed upload leaves only a staging leftover).
    fn write_staged(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let staged = format!(
            "{STAGING_DIR}/{}-{:016x}",
            path.replace('/', "_"),
            rand::random::<u64>()
        );
        self.op
            .write(&staged, bytes)
            .map_err(|e| self.error(e, "writing", &staged))?;
        let renamed = self.op.rename(&staged, path);
        if let Err(e) = renamed {
            let _ = self.op.delete(&staged);
            return Err(self.error(e, "publishing", path));
        }
        Ok(())
    }

    /// Creates an object that must not exist yet, atomically and durably. Returns `false`
    /// when an object of that name is already there (its content is then the other writer's).
    ///
    /// On the local filesystem this is `link(2)`, which never replaces. Object stores that
    /// support conditional writes (`If-None-Match: *`) refuse the second writer. Elsewhere
    /// (SFTP, WebDAV) it is a check, a write and a read-back: two writers racing in the
    /// window between check and write both write, the later one wins, and the earlier one
    /// learns it lost only if it reads back after the later write. The read-back is also
    /// done after a conditional write, so a server that ignores the condition is caught in
    /// the same way. Callers (the WAL catalogue) race only when two processes archive the
    /// same file of the same cluster, which is the same content unless the cluster forked.
    pub fn create_new(&self, path: &str, bytes: Vec<u8>) -> Result<bool> {
        if let Some(root) = &self.local_root {
            let created = create_new_local(root, path, &bytes)
                .map_err(|e| Error::new(ErrorKind::Storage, format!("creating {path}: {e}")))?;
            if created {
                sync_parents(root, path)?;
            }
            return Ok(created);
        }
        if self.service == Service::Memory {
            // The in-process store serves one process: a check then a write is enough.
            if self.exists(path)? {
                return Ok(false);
            }
            self.write(path, bytes)?;
            return Ok(true);
        }
        if self.conditional_create {
            let opts = options::WriteOptions {
                if_not_exists: true,
                ..Default::default()
            };
            match self.op.write_options(path, bytes.clone(), opts) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        DalKind::ConditionNotMatch | DalKind::AlreadyExists
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(self.error(e, "creating", path)),
            }
        } else {
            if self.exists(path)? {
                return Ok(false);
            }
            self.write(path, bytes.clone())?;
        }
        // Ours is there unless another writer replaced it.
        Ok(self.read_optional(path)?.as_deref() == Some(&bytes[..]))
    }

    /// Deletes staging leftovers (uploads a crash interrupted before their rename) last
    /// written before `cutoff_ns`; returns how many. An upload still running keeps touching
    /// its staging object, so a cutoff past the longest upload never races one.
    pub fn remove_staging_older_than(&self, cutoff_ns: i64) -> Result<usize> {
        let mut removed = 0;
        for (name, meta) in self.list_files(STAGING_DIR)? {
            let path = format!("{STAGING_DIR}/{name}");
            let modified = match meta.last_modified() {
                Some(t) => Some(t.into_inner().as_nanosecond() as i64),
                None => self.size_and_modified(&path)?.1,
            };
            if modified.is_some_and(|m| m < cutoff_ns) {
                self.delete(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Tries the guarantees the repository relies on with a throwaway object, for `init`:
    /// that a create-if-absent is refused the second time, that a new object is listed at
    /// once (prune's safety assumes read-after-write listings, format-spec §13), and that
    /// the credentials may write, list and delete. Returns what it found, for the user.
    pub fn probe(&self) -> Result<Guarantees> {
        let name = format!("{STAGING_DIR}/probe-{:016x}", rand::random::<u64>());
        let created = self.create_new(&name, b"pgcairn probe 1".to_vec())?;
        let refused = !self.create_new(&name, b"pgcairn probe 2".to_vec())?;
        let listed = self
            .list(STAGING_DIR)?
            .iter()
            .any(|listed| name.ends_with(listed.as_str()));
        self.delete(&name)?;
        if !created || !listed {
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "{}: an object written to {name} was {}; pgcairn needs storage that \
                     shows a write at once (format-spec §13)",
                    self.location,
                    if created {
                        "not listed right away"
                    } else {
                        "already there"
                    }
                ),
            ));
        }
        Ok(Guarantees {
            service: self.service,
            create_new: match (self.local_root.is_some(), self.conditional_create) {
                (true, _) => CreateNew::Link,
                (false, true) if refused => CreateNew::Conditional,
                (false, true) => CreateNew::ConditionalIgnored,
                (false, false) => CreateNew::ReadBack,
            },
            conditional_create_works: refused
                && (self.local_root.is_some() || self.conditional_create),
        })
    }

    /// Names of the objects under `dir` (recursively), relative to `dir`.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .list_files(dir)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Names of the objects under `dir` (recursively), relative to `dir`, with their sizes.
    /// One listing where the backend's listing carries sizes (the local filesystem, object
    /// stores); a backend whose listing does not is asked per object.
    pub fn list_with_sizes(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.list_files(dir)?
            .into_iter()
            .map(|(name, meta)| {
                let size = match meta.content_length() {
                    // Zero is also what a listing without sizes says: ask (an empty object
                    // costs one more request, and no object of a repository is empty).
                    0 => self.size(&format!("{prefix}{name}"))?,
                    size => size,
                };
                Ok((name, size))
            })
            .collect()
    }

    /// Files under `dir`, recursively, relative to it, with what the listing said of them.
    fn list_files(&self, dir: &str) -> Result<Vec<(String, opendal::Metadata)>> {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        let opts = options::ListOptions {
            recursive: true,
            ..Default::default()
        };
        let entries = match self.op.list_options(&dir, opts) {
            Ok(entries) => entries,
            Err(e) if errors::is_absent(&e) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.error(e, "listing", &dir)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .filter_map(|e| {
                let name = e.path().strip_prefix(&dir)?.to_owned();
                Some((name, e.metadata().clone()))
            })
            .collect())
    }

    /// The names at the top level (directories with a trailing `/`), staging leftovers aside.
    pub fn list_top_level(&self) -> Result<Vec<String>> {
        match self.op.list("/") {
            Ok(entries) => Ok(entries
                .iter()
                .map(|e| e.path().to_owned())
                .filter(|p| {
                    let name = p.trim_end_matches('/');
                    !name.is_empty() && name != STAGING_DIR
                })
                .collect()),
            Err(e) if errors::is_absent(&e) => Ok(Vec::new()),
            Err(e) => Err(self.error(e, "listing", "/")),
        }
    }

    /// True when nothing at all is stored at this location (staging leftovers aside). Looks at
    /// the top level only, so pointing at a large directory by mistake stays cheap.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.list_top_level()?.is_empty())
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.op
            .delete(path)
            .map_err(|e| self.error(e, "deleting", path))?;
        if let Some(root) = &self.local_root {
            sync_parents(root, path)?;
        }
        Ok(())
    }
}

/// What [`Storage::probe`] found.
#[derive(Debug, Clone)]
pub struct Guarantees {
    pub service: Service,
    pub create_new: CreateNew,
    /// Whether a racing second writer is refused by the backend itself (rather than found
    /// out afterwards by reading back).
    pub conditional_create_works: bool,
}

impl std::fmt::Display for Guarantees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: writes {}; create-if-absent: {}; new objects listed at once",
            self.service.name(),
            if self.service.publishes_whole() {
                "published whole by the backend"
            } else {
                "staged and renamed into place"
            },
            self.create_new.describe()
        )
    }
}

/// How [`Storage::create_new`] keeps a second writer from replacing an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateNew {
    /// A local directory: published with link(2), which never replaces.
    Link,
    /// A conditional write (If-None-Match) that the server honoured in the probe.
    Conditional,
    /// A conditional write the server ignored in the probe: a read-back finds a second writer.
    ConditionalIgnored,
    /// The backend offers no conditional write: check, write, read back.
    ReadBack,
}

impl CreateNew {
    /// The name scripts see (`init --json`).
    pub fn id(self) -> &'static str {
        match self {
            CreateNew::Link => "link",
            CreateNew::Conditional => "conditional_write",
            CreateNew::ConditionalIgnored => "conditional_write_ignored",
            CreateNew::ReadBack => "read_back",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            CreateNew::Link => "link(2), never replaces",
            CreateNew::Conditional => "conditional write (If-None-Match), honoured",
            CreateNew::ConditionalIgnored => {
                "conditional write IGNORED by the server; checked by read-back"
            }
            CreateNew::ReadBack => "not offered by the backend; check, write, read-back",
        }
    }
}

/// Writes `bytes` to a private staging file, fsyncs it, and publishes it with `link(2)`, which
/// fails if the name exists (a rename would replace it). The staging name is removed either way.
fn create_new_local(root: &Path, path: &str, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::Write;
    let target = root.join(path);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let staging_dir = root.join(STAGING_DIR);
    std::fs::create_dir_all(&staging_dir)?;
    let staged = staging_dir.join(format!(
        "new-{}-{}",
        std::process::id(),
        crate::clock::now_ns()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        match std::fs::hard_link(&staged, &target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&staged);
    result
}

/// fsyncs every directory from the object's parent up to the root, so the rename that
/// published it (and any directory created for it) survives a crash.
fn sync_parents(root: &Path, path: &str) -> Result<()> {
    let mut dir = root.join(path);
    while dir.pop() && dir.starts_with(root) {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::new(ErrorKind::Storage, format!("fsync {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Refuses a backend that lacks an operation the repository needs, naming it, rather than
/// failing halfway through a backup.
fn check_capabilities(service: Service, cap: &opendal::Capability, location: &str) -> Result<()> {
    let mut missing = Vec::new();
    for (has, what) in [
        (cap.read, "read"),
        (cap.write, "write"),
        (cap.stat, "stat"),
        (cap.list, "list"),
        (cap.delete, "delete"),
    ] {
        if !has {
            missing.push(what);
        }
    }
    if !service.publishes_whole() && !cap.rename {
        // Without rename a partial upload would be visible under its final name.
        missing.push("rename");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Usage,
        format!(
            "{location}: the {} backend cannot {}, which a repository needs",
            service.name(),
            missing.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(storage: &Storage) {
        assert!(storage.is_empty().unwrap());
        assert_eq!(storage.read_optional("a/b").unwrap(), None);
        storage.write("a/c/d", b"x".to_vec()).unwrap();
        assert!(!storage.is_empty().unwrap(), "a nested object counts");
        storage.write("a/b", b"hello".to_vec()).unwrap();
        assert_eq!(storage.read("a/b").unwrap(), b"hello");
        assert_eq!(storage.read_range("a/b", 1, 3).unwrap(), b"ell");
        assert!(storage.read_range("a/b", 3, 5).is_err());
        assert_eq!(storage.size("a/b").unwrap(), 5);
        let mut names = storage.list("a").unwrap();
        names.sort();
        assert_eq!(names, vec!["b".to_string(), "c/d".to_string()]);
        let mut sized = storage.list_with_sizes("a").unwrap();
        sized.sort();
        assert_eq!(sized, vec![("b".to_string(), 5), ("c/d".to_string(), 1)]);
        assert_eq!(storage.list_top_level().unwrap(), vec!["a/".to_string()]);
        let before = storage.bytes_read();
        storage.read_range("a/b", 1, 3).unwrap();
        assert_eq!(storage.bytes_read(), before + 3);
        storage.delete("a/b").unwrap();
        assert!(!storage.exists("a/b").unwrap());
        assert!(storage.list("nothing").unwrap().is_empty());
        assert!(storage.create_new("n/once", b"first".to_vec()).unwrap());
        assert!(!storage.create_new("n/once", b"second".to_vec()).unwrap());
        assert_eq!(storage.read("n/once").unwrap(), b"first");
    }

    #[test]
    fn memory_backend_behaves() {
        exercise(&Storage::memory().unwrap());
    }

    #[test]
    fn local_backend_behaves_and_leaves_no_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();
        exercise(&storage);
        let staged = std::fs::read_dir(dir.path().join(STAGING_DIR))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(staged, 0);
    }

    #[test]
    fn the_probe_finds_the_guarantees_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let found = storage.probe().unwrap();
        assert!(found.conditional_create_works);
        assert!(found.to_string().contains("link(2)"), "{found}");
        assert!(storage.is_empty().unwrap());
        assert!(storage.list(STAGING_DIR).unwrap().is_empty());
    }

    #[test]
    fn only_staging_leftovers_older_than_the_cutoff_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join(STAGING_DIR)).unwrap();
        std::fs::write(dir.path().join(STAGING_DIR).join("data_ab-1"), b"partial").unwrap();
        storage.write("data/ab", b"published".to_vec()).unwrap();
        let written = crate::clock::now_ns();
        assert_eq!(
            storage
                .remove_staging_older_than(written - 60_000_000_000)
                .unwrap(),
            0
        );
        assert_eq!(
            storage
                .remove_staging_older_than(written + 1_000_000_000)
                .unwrap(),
            1
        );
        assert!(storage.list(STAGING_DIR).unwrap().is_empty());
        assert_eq!(storage.read("data/ab").unwrap(), b"published");
    }

    #[test]
    fn unknown_scheme_is_a_usage_error() {
        assert_eq!(
            Storage::open("gopher://x/y").unwrap_err().kind(),
            ErrorKind::Usage
        );
    }
}
