//! Storage through OpenDAL: an operator built from a repository URL, with the guarantees the
//! repository relies on: a write is atomic (never visible half-done) and durable once it
//! returns (file and directory fsynced on the local filesystem).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opendal::{ErrorKind as DalKind, Operator, blocking, options, services};

use crate::error::{Error, ErrorKind, Result};

#[cfg(feature = "fault-injection")]
mod faults;

/// Name of the directory, inside a local repository, where writes are staged before the rename
/// that publishes them.
const STAGING_DIR: &str = ".staging";

pub struct Storage {
    op: blocking::Operator,
    /// Keeps the runtime that drives OpenDAL alive as long as the operator.
    _runtime: Arc<tokio::runtime::Runtime>,
    /// Root directory for the local filesystem backend, to fsync directories.
    local_root: Option<PathBuf>,
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
    /// Opens the storage a repository URL names: a plain path (or `file://`) is a local
    /// directory; `memory://` is an in-process store for tests.
    pub fn open(url: &str) -> Result<Self> {
        if url == "memory://" {
            return Self::memory();
        }
        if let Some((scheme, _)) = url.split_once("://")
            && scheme != "file"
        {
            return Err(Error::usage(format!(
                "repository URL {url:?}: the {scheme}:// backend is not available in this build; \
                 use a local directory path"
            )));
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() {
            return Err(Error::usage("repository path is empty"));
        }
        Self::local(Path::new(path))
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
        Self::with_operator(op, Some(root.clone()), root.display().to_string())
    }

    pub fn memory() -> Result<Self> {
        let op = Operator::new(services::Memory::default())
            .map_err(|e| storage_error(e, "opening", "memory://"))?;
        Self::with_operator(op, None, "memory://".into())
    }

    fn with_operator(op: Operator, local_root: Option<PathBuf>, location: String) -> Result<Self> {
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
            location,
            bytes_read: AtomicU64::new(0),
        })
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
        match self.op.read(path) {
            Ok(buf) => {
                self.count_read(buf.len());
                Ok(Some(buf.to_vec()))
            }
            Err(e) if e.kind() == DalKind::NotFound => Ok(None),
            Err(e) => Err(storage_error(e, "reading", path)),
        }
    }

    /// Reads a whole object that must exist.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.read_optional(path)?
            .ok_or_else(|| Error::integrity(format!("{path} is missing from the repository")))
    }

    /// Reads `len` bytes at `offset`; fewer bytes than asked is an integrity error.
    pub fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let opts = options::ReadOptions {
            range: (offset..offset + len).into(),
            ..Default::default()
        };
        let buf = self
            .op
            .read_options(path, opts)
            .map_err(|e| storage_error(e, "reading", path))?;
        self.count_read(buf.len());
        if buf.len() as u64 != len {
            return Err(Error::integrity(format!(
                "{path}: asked for {len} bytes at offset {offset}, got {} (truncated)",
                buf.len()
            )));
        }
        Ok(buf.to_vec())
    }

    pub fn size(&self, path: &str) -> Result<u64> {
        let meta = self
            .op
            .stat(path)
            .map_err(|e| storage_error(e, "inspecting", path))?;
        Ok(meta.content_length())
    }

    /// The object's size, and when it was last written (ns since the Unix epoch) if the
    /// backend says: one request.
    pub fn size_and_modified(&self, path: &str) -> Result<(u64, Option<i64>)> {
        let meta = self
            .op
            .stat(path)
            .map_err(|e| storage_error(e, "inspecting", path))?;
        let modified = meta
            .last_modified()
            .map(|t| t.into_inner().as_nanosecond() as i64);
        Ok((meta.content_length(), modified))
    }

    pub fn exists(&self, path: &str) -> Result<bool> {
        self.op
            .exists(path)
            .map_err(|e| storage_error(e, "inspecting", path))
    }

    /// Writes an object atomically and durably: when this returns, the object is complete
    /// and survives a crash; before, it is not visible under its name.
    pub fn write(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.op
            .write(path, bytes)
            .map_err(|e| storage_error(e, "writing", path))?;
        if let Some(root) = &self.local_root {
            sync_parents(root, path)?;
        }
        Ok(())
    }

    /// Creates an object that must not exist yet, atomically and durably. Returns `false`, and
    /// changes nothing, when an object of that name is already there: two writers racing for
    /// one name never overwrite each other, whichever wins.
    pub fn create_new(&self, path: &str, bytes: Vec<u8>) -> Result<bool> {
        let Some(root) = &self.local_root else {
            // The in-process store serves one process: a check then a write is enough.
            if self.exists(path)? {
                return Ok(false);
            }
            self.write(path, bytes)?;
            return Ok(true);
        };
        let created = create_new_local(root, path, &bytes)
            .map_err(|e| Error::new(ErrorKind::Storage, format!("creating {path}: {e}")))?;
        if created {
            sync_parents(root, path)?;
        }
        Ok(created)
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
            Err(e) if e.kind() == DalKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage_error(e, "listing", &dir)),
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
            Err(e) if e.kind() == DalKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(storage_error(e, "listing", "/")),
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
            .map_err(|e| storage_error(e, "deleting", path))?;
        if let Some(root) = &self.local_root {
            sync_parents(root, path)?;
        }
        Ok(())
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

fn storage_error(err: opendal::Error, doing: &str, path: &str) -> Error {
    let kind = match err.kind() {
        DalKind::ConfigInvalid => ErrorKind::Usage,
        _ => ErrorKind::Storage,
    };
    Error::new(kind, format!("{doing} {path}: {err}"))
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
    fn unknown_scheme_is_a_usage_error() {
        assert_eq!(
            Storage::open("gopher://x/y").unwrap_err().kind(),
            ErrorKind::Usage
        );
    }
}
