//! The key cache: the unlocked master keys of a repository, kept in a file only the OS user can
//! read, so that commands run once per WAL file (`archive-push`, `archive-get`) do not pay the
//! password KDF (about half a second, by design) on every call.
//!
//! It holds the same power as a password file beside it, and no more: whoever can read it as
//! this user could read the password file the server's `archive_command` needs anyway. It is
//! used only while the key file it was made from still exists on storage, so removing that
//! key (`key remove`, `key passwd`) revokes every cache made from it. SECURITY.md discusses
//! the trade-off.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::id::{KeyId, RepoId};
use super::object;
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};

const MAGIC: &[u8; 16] = b"PGCAIRN-KEYCACHE";
const VERSION: u8 = 1;
/// A cache file is a few hundred bytes; anything larger is not ours.
const MAX_LEN: u64 = 4096;

#[derive(Serialize, Deserialize)]
pub struct CachedKeys {
    pub repo_id: RepoId,
    /// The key file these keys were unlocked from.
    pub key_id: KeyId,
    pub keys: MasterKeys,
}

/// Where the keys of the repository at one location are cached.
pub struct KeyCache {
    path: PathBuf,
}

impl KeyCache {
    /// The cache for the repository at `location` (its URL, made absolute), under `cache_dir`.
    /// The location names the file because the repository id is inside the encrypted config.
    pub fn for_location(cache_dir: &Path, location: &str) -> KeyCache {
        let name = blake3::hash(location.as_bytes()).to_hex();
        KeyCache {
            path: cache_dir.join("keys").join(&name[..32]),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached keys, if a usable cache file exists. A file that other users could read or
    /// write, or that is not this user's, is ignored with a warning: keys from it could have
    /// been planted or seen.
    pub fn load(&self) -> Option<CachedKeys> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == IoErrorKind::NotFound => return None,
            Err(e) => {
                eprintln!("warning: key cache {}: {e}", self.path.display());
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid || meta.mode() & 0o077 != 0 || meta.len() > MAX_LEN {
            eprintln!(
                "warning: ignoring key cache {}: it must be a small file owned by uid {euid} with \
                 mode 0600",
                self.path.display()
            );
            return None;
        }
        let mut bytes = Zeroizing::new(Vec::new());
        file.read_to_end(&mut bytes).ok()?;
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .and_then(|rest| rest.strip_prefix(&[VERSION]))?;
        object::decode::<CachedKeys>(body, "key cache").ok()
    }

    /// Writes the cache atomically, readable by this user only.
    pub fn store(&self, cached: &CachedKeys) -> Result<()> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| Error::internal("key cache path has no directory"))?;
        super::cache::create_private_dir(dir)?;
        let mut bytes = Zeroizing::new(MAGIC.to_vec());
        bytes.push(VERSION);
        bytes.extend_from_slice(&Zeroizing::new(object::encode(cached)));
        let staged = dir.join(format!(".new-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let _ = fs::remove_file(&staged);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&staged)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&staged, &self.path)?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&staged);
            Error::local_io(e, format!("writing key cache {}", self.path.display()))
        })
    }

    /// Removes the cache file (it was stale, or the user asked).
    pub fn forget(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::local_io(
                e,
                format!("removing key cache {}", self.path.display()),
            )),
        }
    }
}
