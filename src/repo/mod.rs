//! The repository: config, keys, packs, index, snapshots. Everything that reads or writes bytes
//! on storage goes through here; commands never touch storage directly.

pub mod cache;
pub mod cluster;
pub mod config;
pub mod id;
pub mod index_file;
pub mod keycache;
pub mod keyfile;
pub mod layout;
pub mod lock;
pub mod object;
pub mod pack;
pub mod random;
pub mod reach;
pub mod snapshot;
pub mod tree;
pub mod walcat;

mod inspect;
mod metadata_packs;
pub mod packer;
mod repair;

use std::collections::HashSet;
use std::path::Path;

use crate::chunk::{ChunkerParams, GearTable, blob_hash};
use crate::crypto::{KdfParams, MasterKeys};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::storage::Storage;
use metadata_packs::MetadataPacks;

use cache::IndexCache;
use config::Config;
use id::{BlobId, IndexId, KeyId, RepoId, SnapshotId, object_hash};
use index_file::IndexFile;
use keycache::{CachedKeys, KeyCache};
use keyfile::KeyDescription;
use object::{ObjectKind, SealedObject};
use pack::BlobType;
use random::RandomSource;
use snapshot::Snapshot;
use walcat::WalEntry;

pub use inspect::PackCheck;
pub use packer::Packer;
pub use repair::RepairReport;

/// What to do with an index file that does not read intact: leave it out (verify reports it,
/// repair replaces it), or fail with the error.
pub type OnDamagedIndex<'a> = dyn FnMut(IndexId, Error) -> Result<()> + 'a;

/// Default target size of a pack file.
/// 8 MiB: a backup holds the open pack and one being uploaded per thread, and with 16 MiB
/// packs that alone put its peak RSS over 100 MiB (139 MiB against 108 MiB measured on the
/// 1.5 GB benchmark cluster); 8 MiB objects are still large for any object store.
pub const DEFAULT_PACK_SIZE: u32 = 8 << 20;
/// Default zstd level. Measured on real pgbench heap pages compressed one 8 KiB page at a
/// time: level 1 compresses as well as level 3 (1.832x against 1.830x) at 1.5x the speed
/// (0.41 against 0.28 GB/s per core), and relation pages are most of what a backup stores.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;

/// Settings chosen at `init` and stored in the config object.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub pack_size: u32,
    pub compression_level: i32,
    pub kdf: KdfParams,
    /// Take the chunk-id and chunker keys of another repository (with its chunker
    /// parameters) instead of new random ones: see [`Repository::chunk_keys`].
    pub chunk_keys: Option<ChunkKeys>,
}

impl InitOptions {
    pub fn with_kdf(kdf: KdfParams) -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            pack_size: DEFAULT_PACK_SIZE,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            kdf,
            chunk_keys: None,
        }
    }
}

/// A repository's chunk-id and chunker keys, for a new repository that is to cut and name
/// chunks as it does (`pgcairn init --copy-chunker-params-from`), so that `copy` between the
/// two needs no id translation and backups into either deduplicate against copies. The data
/// key is never shared.
#[derive(Clone, Debug)]
pub struct ChunkKeys {
    chunk_id: crate::crypto::Key32,
    chunker: crate::crypto::Key32,
}

/// One key file, as `key list` shows it.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    pub id: KeyId,
    pub description: Result<KeyDescription, String>,
    pub in_use: bool,
}

/// An open repository: its config and master keys are known.
pub struct Repository {
    storage: Storage,
    config: Config,
    keys: MasterKeys,
    key_in_use: KeyId,
    random: RandomSource,
}

/// An open repository whose index cache is in step with storage: blobs can be read and
/// deduplicated.
pub struct IndexedRepository {
    repo: Repository,
    /// Locked per query: reads (restore, a backup's parent trees) and a backup's packer share
    /// it across threads.
    cache: std::sync::Mutex<IndexCache>,
    /// Whole metadata packs, on remote storage only ([`metadata_packs`]).
    metadata_packs: MetadataPacks,
}

impl std::ops::Deref for IndexedRepository {
    type Target = Repository;
    fn deref(&self) -> &Repository {
        &self.repo
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn this_host() -> KeyDescription {
    KeyDescription {
        created: now_secs(),
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        username: current_user(),
    }
}

/// The login name, or the numeric uid when the environment does not say.
fn current_user() -> String {
    use std::os::unix::fs::MetadataExt;
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
        .unwrap_or_default()
}

/// The config object's bytes, after refusing a newer format (before asking for a password).
fn read_config_bytes(storage: &Storage) -> Result<Vec<u8>> {
    let Some(config_bytes) = storage.read_optional(layout::CONFIG)? else {
        return Err(Error::new(
            ErrorKind::NoRepository,
            format!(
                "no pgcairn repository at {} (run `pgcairn init`)",
                storage.location()
            ),
        ));
    };
    object::strip_header(ObjectKind::Config, &config_bytes).context("config")?;
    Ok(config_bytes)
}

/// Reads an object named by its content hash and checks the name.
fn read_named(storage: &Storage, path: &str, name: &[u8; 32], what: &str) -> Result<Vec<u8>> {
    let bytes = storage.read(path)?;
    if object_hash(&bytes) != *name {
        return Err(Error::integrity(format!(
            "{what} {path}: content does not match its name (damaged or replaced)"
        )));
    }
    Ok(bytes)
}

impl Repository {
    /// Creates a repository in an empty location and returns it opened with its first key.
    pub fn init(
        storage: Storage,
        password: &[u8],
        options: &InitOptions,
        random: RandomSource,
    ) -> Result<Repository> {
        options.chunker.validate()?;
        if !storage.is_empty()? {
            let what = if storage.exists(layout::CONFIG)? {
                "a repository already exists"
            } else {
                "the location is not empty"
            };
            return Err(Error::new(
                ErrorKind::RepositoryExists,
                format!(
                    "{what} at {}; refusing to initialise over it",
                    storage.location()
                ),
            ));
        }
        let (keys, config, key_bytes, config_bytes) = {
            let mut rng = random.rng();
            let mut keys = MasterKeys::random(&mut rng);
            if let Some(shared) = &options.chunk_keys {
                keys.chunk_id = shared.chunk_id.clone();
                keys.chunker = shared.chunker.clone();
            }
            let mut repo_id = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rng, &mut repo_id);
            let config = Config {
                version: u32::from(object::FORMAT_VERSION),
                id: RepoId(repo_id),
                created: now_secs(),
                chunker: options.chunker,
                pack_size: options.pack_size,
                compression_level: options.compression_level,
            };
            let key_bytes = keyfile::create(
                password,
                options.kdf,
                config.id,
                &keys,
                &this_host(),
                &mut rng,
            )?;
            let config_bytes = object::seal_object(
                ObjectKind::Config,
                &keys.data,
                &object::encode(&config),
                3,
                &mut rng,
            )?;
            (keys, config, key_bytes, config_bytes)
        };
        let key_id = KeyId(object_hash(&key_bytes));
        // The key first: a repository exists once its config does, and then it can be opened.
        storage.write(&layout::key(&key_id), key_bytes)?;
        storage.write(layout::CONFIG, config_bytes)?;
        Ok(Repository {
            storage,
            config,
            keys,
            key_in_use: key_id,
            random,
        })
    }

    /// Opens a repository with a password, trying each key file.
    pub fn open(storage: Storage, password: &[u8]) -> Result<Repository> {
        Self::open_with_random(storage, password, RandomSource::System)
    }

    pub fn open_with_random(
        storage: Storage,
        password: &[u8],
        random: RandomSource,
    ) -> Result<Repository> {
        let config_bytes = read_config_bytes(&storage)?;
        let names = storage.list(layout::KEYS)?;
        if names.is_empty() {
            return Err(Error::integrity(format!(
                "repository at {} has no key files (keys/ is empty)",
                storage.location()
            )));
        }
        let mut damaged = Vec::new();
        for name in &names {
            let path = format!("{}/{name}", layout::KEYS);
            let id = match KeyId::from_hex(name) {
                Ok(id) => id,
                Err(_) => continue,
            };
            let parsed = read_named(&storage, &path, &id.0, "key file")
                .and_then(|bytes| keyfile::parse(&bytes).context(format!("key file {path}")));
            let file = match parsed {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::Integrity => {
                    damaged.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (repo_id, keys) = match keyfile::unlock(&file, password) {
                Ok(unlocked) => unlocked,
                Err(e) if e.kind() == ErrorKind::Password => continue,
                Err(e) => return Err(e.with_context(format!("key file {path}"))),
            };
            let config = Config::open(&keys.data, &config_bytes).context("config")?;
            if config.id != repo_id {
                return Err(Error::integrity(format!(
                    "key file {path} belongs to repository {}, but the config is of {}",
                    repo_id.short(),
                    config.id.short()
                )));
            }
            config.validate()?;
            return Ok(Repository {
                storage,
                config,
                keys,
                key_in_use: id,
                random,
            });
        }
        if damaged.is_empty() {
            return Err(Error::new(
                ErrorKind::Password,
                format!(
                    "wrong password: none of the {} key files of the repository at {} opens with it",
                    names.len(),
                    storage.location()
                ),
            ));
        }
        // A damaged key file may be the one this password opens: report damage, not a
        // wrong password.
        Err(Error::integrity(format!(
            "no intact key file opens with this password; damaged key files:\n  {}",
            damaged.join("\n  ")
        )))
    }

    /// Opens a repository with the keys in `key_cache` when they are this repository's and
    /// the key file they came from still exists; otherwise with `password()`, caching the
    /// keys it unlocks. See [`keycache`] for why this is safe.
    pub fn open_with_key_cache(
        storage: Storage,
        key_cache: &KeyCache,
        password: impl FnOnce() -> Result<zeroize::Zeroizing<Vec<u8>>>,
    ) -> Result<Repository> {
        let config_bytes = read_config_bytes(&storage)?;
        if let Some(cached) = key_cache.load() {
            let config = Config::open(&cached.keys.data, &config_bytes)
                .ok()
                .filter(|c| c.id == cached.repo_id && c.validate().is_ok());
            if let Some(config) = config
                && storage.exists(&layout::key(&cached.key_id))?
            {
                return Ok(Repository {
                    storage,
                    config,
                    keys: cached.keys.clone(),
                    key_in_use: cached.key_id,
                    random: RandomSource::System,
                });
            }
            key_cache.forget()?;
        }
        let repo = Repository::open(storage, &password()?)?;
        let cached = CachedKeys {
            repo_id: repo.config.id,
            key_id: repo.key_in_use,
            keys: repo.keys.clone(),
        };
        if let Err(e) = key_cache.store(&cached) {
            eprintln!("warning: the next call will pay the password KDF again: {e}");
        }
        Ok(repo)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn key_in_use(&self) -> KeyId {
        self.key_in_use
    }

    pub fn gear_table(&self) -> GearTable {
        GearTable::derive(&self.keys.chunker)
    }

    /// The id a blob with this content has in this repository.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(blob_hash(&self.keys.chunk_id, data))
    }

    /// Whether a blob has the same id here as in `other`: both repositories share the
    /// chunk-id key (see `pgcairn init --copy-chunker-params-from`), so ids need no
    /// translation between them.
    pub fn shares_chunk_ids_with(&self, other: &Repository) -> bool {
        self.keys.chunk_id == other.keys.chunk_id
    }

    /// This repository's chunk-id and chunker keys, for [`InitOptions::chunk_keys`].
    pub fn chunk_keys(&self) -> ChunkKeys {
        ChunkKeys {
            chunk_id: self.keys.chunk_id.clone(),
            chunker: self.keys.chunker.clone(),
        }
    }

    /// The key that authenticates the id translations a copy from this repository into
    /// `target` keeps locally (see [`cache::translations`]): derived from both chunk-id keys,
    /// so only someone holding both repositories' keys can make a translation that is used.
    pub fn translation_key(&self, target: &Repository) -> crate::crypto::Key32 {
        let mut material = zeroize::Zeroizing::new([0u8; 64]);
        material[..32].copy_from_slice(&self.keys.chunk_id.0);
        material[32..].copy_from_slice(&target.keys.chunk_id.0);
        crate::crypto::Key32(blake3::derive_key(
            "pgcairn 2026-11 copy id translations",
            &material[..],
        ))
    }

    /// Adds a key file for another password; returns its id.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        let bytes = keyfile::create(
            password,
            kdf,
            self.config.id,
            &self.keys,
            &this_host(),
            &mut self.random.rng(),
        )?;
        let id = KeyId(object_hash(&bytes));
        self.storage.write(&layout::key(&id), bytes)?;
        Ok(id)
    }

    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for name in self.storage.list(layout::KEYS)? {
            let Ok(id) = KeyId::from_hex(&name) else {
                continue;
            };
            let description = read_named(&self.storage, &layout::key(&id), &id.0, "key file")
                .and_then(|bytes| keyfile::parse(&bytes))
                .and_then(|file| keyfile::describe(&file, &self.keys.data))
                .map_err(|e| e.to_string());
            out.push(KeyInfo {
                id,
                description,
                in_use: id == self.key_in_use,
            });
        }
        out.sort_by_key(|k| {
            (
                k.description
                    .as_ref()
                    .map(|d| d.created)
                    .unwrap_or(i64::MAX),
                k.id,
            )
        });
        Ok(out)
    }

    /// Finds a key by a unique prefix of its id.
    pub fn find_key(&self, prefix: &str) -> Result<KeyId> {
        find_by_prefix(self.storage.list(layout::KEYS)?, prefix, "key")
            .and_then(|name| KeyId::from_hex(&name))
    }

    /// Removes a key file. Refuses the key in use (which would lock this session out) and the
    /// last key (which would lock everyone out).
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        if *id == self.key_in_use {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "key {} is the one this command was opened with; open the repository with \
                     another password to remove it (or use `key passwd` to change it)",
                    id.short()
                ),
            ));
        }
        let keys = self.storage.list(layout::KEYS)?;
        if !keys.iter().any(|k| *k == id.to_hex()) {
            return Err(Error::usage(format!(
                "no key {} in this repository",
                id.short()
            )));
        }
        if keys.len() <= 1 {
            return Err(Error::new(
                ErrorKind::Refused,
                "refusing to remove the last key",
            ));
        }
        self.storage.delete(&layout::key(id))
    }

    /// Replaces the key in use by one for `new_password`. The new key is durable before the
    /// old one is deleted, so a crash leaves at least one working key.
    pub fn change_password(&mut self, new_password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        let old = self.key_in_use;
        let new = self.add_key(new_password, kdf)?;
        self.storage.delete(&layout::key(&old))?;
        self.key_in_use = new;
        Ok(new)
    }

    /// Seals and writes an object under the name of its content hash.
    fn save_object<T: SealedObject>(
        &self,
        value: &T,
        path: impl Fn(&[u8; 32]) -> String,
    ) -> Result<[u8; 32]> {
        let bytes = value.seal(&self.keys.data, &mut self.random.rng())?;
        let name = object_hash(&bytes);
        self.storage.write(&path(&name), bytes)?;
        Ok(name)
    }

    /// Reads an object named by its content hash, checks the name and opens it.
    fn load_object<T: SealedObject>(&self, path: &str, name: &[u8; 32]) -> Result<T> {
        let bytes = read_named(&self.storage, path, name, T::KIND.name())?;
        T::open(&self.keys.data, &bytes).with_context(|| format!("{} {path}", T::KIND.name()))
    }

    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        self.save_object(snapshot, |name| layout::snapshot(&SnapshotId(*name)))
            .map(SnapshotId)
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        self.load_object(&layout::snapshot(id), &id.0)
    }

    /// Finds a snapshot by a unique prefix of its id.
    pub fn find_snapshot(&self, prefix: &str) -> Result<SnapshotId> {
        find_by_prefix(self.storage.list(layout::SNAPSHOTS)?, prefix, "snapshot")
            .and_then(|name| SnapshotId::from_hex(&name))
    }

    /// Every snapshot, loaded, oldest first.
    pub fn load_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let mut out = Vec::new();
        for id in self.list_snapshots()? {
            out.push((id, self.load_snapshot(&id)?));
        }
        out.sort_by_key(|(id, s)| (s.started_ns, *id));
        Ok(out)
    }

    pub fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        self.list_ids(layout::SNAPSHOTS, SnapshotId::from_hex)
    }

    pub fn list_index_files(&self) -> Result<Vec<IndexId>> {
        self.list_ids(layout::INDEX, IndexId::from_hex)
    }

    /// Ids of the objects in `dir`; names that are not ids are ignored (and reported by verify).
    fn list_ids<T>(&self, dir: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
        Ok(self
            .storage
            .list(dir)?
            .iter()
            .filter_map(|n| parse(n).ok())
            .collect())
    }

    /// The object name of the catalogue entry of WAL file `name` of a cluster.
    pub fn wal_entry_name(&self, system_identifier: u64, name: &str) -> [u8; 32] {
        walcat::entry_name(&self.keys.chunk_id, system_identifier, name)
    }

    /// Where the catalogue entry of WAL file `name` of a cluster is (or would be) stored.
    pub fn wal_entry_path(&self, system_identifier: u64, name: &str) -> String {
        layout::wal_entry(&self.wal_entry_name(system_identifier, name))
    }

    /// The catalogue entry for WAL file `name` of a cluster, or `None` when storage positively
    /// has no such entry.
    pub fn load_wal_entry(&self, system_identifier: u64, name: &str) -> Result<Option<WalEntry>> {
        let object = self.wal_entry_name(system_identifier, name);
        let path = layout::wal_entry(&object);
        let Some(bytes) = self.storage.read_optional(&path)? else {
            return Ok(None);
        };
        self.open_wal_object(&object, &bytes)
            .with_context(|| format!("looking up {name} of system {system_identifier}"))
            .map(Some)
    }

    /// Reads the catalogue entry stored under object name `object`, checking that it belongs
    /// there (its cluster and file name hash to that name).
    pub fn read_wal_object(&self, object: &[u8; 32]) -> Result<WalEntry> {
        let bytes = self.storage.read(&layout::wal_entry(object))?;
        self.open_wal_object(object, &bytes)
    }

    fn open_wal_object(&self, object: &[u8; 32], bytes: &[u8]) -> Result<WalEntry> {
        let path = layout::wal_entry(object);
        let entry = WalEntry::open(&self.keys.data, bytes)
            .with_context(|| format!("WAL catalogue entry {path}"))?;
        // Authentic but under another name: storage swapped two entries.
        if self.wal_entry_name(entry.system_identifier, &entry.name) != *object {
            return Err(Error::integrity(format!(
                "WAL catalogue entry {path} holds {} of system {}, which belongs under \
                 another name (objects swapped on storage)",
                entry.name, entry.system_identifier
            )));
        }
        Ok(entry)
    }

    /// Adds a catalogue entry unless one of that name exists. `Ok(None)`: created, durable and
    /// visible to every reader; `Ok(Some(existing))`: another push got there first.
    pub fn create_wal_entry(&self, entry: &WalEntry) -> Result<Option<WalEntry>> {
        let path = layout::wal_entry(&self.wal_entry_name(entry.system_identifier, &entry.name));
        let bytes = entry.seal(&self.keys.data, &mut self.random.rng())?;
        if self.storage.create_new(&path, bytes)? {
            return Ok(None);
        }
        match self.load_wal_entry(entry.system_identifier, &entry.name)? {
            Some(existing) => Ok(Some(existing)),
            None => Err(Error::new(
                ErrorKind::Storage,
                format!("{path}: creation refused because it exists, yet it cannot be read"),
            )),
        }
    }

    pub fn save_index_file(&self, file: &IndexFile) -> Result<IndexId> {
        self.save_object(file, |name| layout::index(&IndexId(*name)))
            .map(IndexId)
    }

    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        self.load_object(&layout::index(id), &id.0)
    }

    /// Opens the index cache (at `cache_dir`, or the user's cache directory) and brings it in
    /// step with the index files on storage.
    pub fn load_index(self, cache_dir: Option<&Path>) -> Result<IndexedRepository> {
        let indexed = self.open_cache(cache_dir)?;
        indexed.sync_cache()?;
        Ok(indexed)
    }

    /// Opens the index cache and brings it in step with storage only if that was last done
    /// more than `max_age` ago. For commands run once per WAL file: listing every index file
    /// each time would cost more than the file. A stale cache only misses blobs stored since
    /// (stored again, or found by syncing when a read needs them); format-spec §13 bounds how
    /// stale a writer's cache may be.
    pub fn load_index_synced_within(
        self,
        cache_dir: Option<&Path>,
        max_age: std::time::Duration,
    ) -> Result<IndexedRepository> {
        let indexed = self.open_cache(cache_dir)?;
        indexed.sync_cache_if_older(max_age)?;
        Ok(indexed)
    }

    /// The index cache, not yet in step with storage: for a writer that must take its lock
    /// before it learns the index (format-spec §13), then calls [`IndexedRepository::sync_cache`].
    pub fn open_cache(self, cache_dir: Option<&Path>) -> Result<IndexedRepository> {
        let path = cache::default_path(cache_dir, &self.config.id)?;
        let cache = IndexCache::open(&path, &self.config.id)?;
        Ok(IndexedRepository::new(self, cache))
    }

    /// Loads the index into a cache in memory (nothing written locally).
    pub fn load_index_in_memory(self) -> Result<IndexedRepository> {
        let cache = IndexCache::in_memory(&self.config.id)?;
        let indexed = IndexedRepository::new(self, cache);
        indexed.sync_cache()?;
        Ok(indexed)
    }
}

impl IndexedRepository {
    fn new(repo: Repository, cache: IndexCache) -> IndexedRepository {
        IndexedRepository {
            repo,
            cache: std::sync::Mutex::new(cache),
            metadata_packs: MetadataPacks::default(),
        }
    }

    /// [`Self::sync_cache`] if the cache was last synced more than `max_age` ago.
    pub fn sync_cache_if_older(&self, max_age: std::time::Duration) -> Result<()> {
        let synced = self.with_cache(|c| c.synced_ns())?;
        let age_ns = synced.map(|t| crate::clock::now_ns().saturating_sub(t));
        if age_ns.is_none_or(|age| age < 0 || age as u128 > max_age.as_nanos()) {
            self.sync_cache()?;
        }
        Ok(())
    }

    /// Adds index files that appeared on storage, forgets those that vanished. A damaged index
    /// file is an error (`repair index` replaces it).
    pub fn sync_cache(&self) -> Result<()> {
        self.sync_cache_with(&mut |_, e| Err(e))
    }

    /// As [`Self::sync_cache`], with a say on damage: `on_damaged` gets each index file that
    /// fails its integrity checks and leaves it out of the cache, or fails the sync with an
    /// error.
    pub fn sync_cache_with(&self, on_damaged: &mut OnDamagedIndex<'_>) -> Result<()> {
        let started = crate::clock::now_ns();
        let on_storage: HashSet<IndexId> = self.repo.list_index_files()?.into_iter().collect();
        // Held for the whole sync: a sync is never concurrent with other use of the cache.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let cached = cache.index_files()?;
        let gone: Vec<IndexId> = cached.difference(&on_storage).copied().collect();
        cache.remove_index_files(&gone)?;
        for id in on_storage.difference(&cached) {
            match self.repo.load_index_file(id) {
                Ok(file) => cache.add_index_file(id, &file)?,
                // Superseded and deleted by a prune between the listing and the read: its
                // content is in the prune's files, which this listing or the next one has.
                Err(_) if !self.repo.storage.exists(&layout::index(id))? => {}
                Err(e) if e.kind() == ErrorKind::Integrity => on_damaged(*id, e)?,
                Err(e) => return Err(e),
            }
        }
        cache.set_synced_ns(started)
    }

    /// Every entry of the WAL catalogue, oldest name first, after bringing the cached copy in
    /// step with storage (entries that appeared are read, vanished ones forgotten).
    pub fn wal_catalogue(&self) -> Result<Vec<WalEntry>> {
        self.wal_catalogue_with(&mut |_, e| Err(e))
    }

    /// As [`Self::wal_catalogue`], handing each entry that appeared and fails to read intact
    /// (by object name) to `on_damaged`, which leaves it out or fails with an error.
    pub fn wal_catalogue_with(
        &self,
        on_damaged: &mut dyn FnMut([u8; 32], Error) -> Result<()>,
    ) -> Result<Vec<WalEntry>> {
        let on_storage: HashSet<[u8; 32]> = self
            .repo
            .storage
            .list(layout::WAL)?
            .iter()
            .filter_map(|name| layout::wal_object_from_listing(name))
            .collect();
        let repo = &self.repo;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let cached = cache.wal_objects()?;
        let gone: Vec<[u8; 32]> = cached.difference(&on_storage).copied().collect();
        cache.remove_wal_entries(&gone)?;
        for object in on_storage.difference(&cached) {
            match repo.read_wal_object(object) {
                Ok(entry) => cache.add_wal_entry(object, &entry)?,
                Err(e) if e.kind() == ErrorKind::Integrity => on_damaged(*object, e)?,
                Err(e) => return Err(e),
            }
        }
        let mut entries = cache.wal_entries()?;
        entries.sort_by(|a, b| (a.system_identifier, &a.name).cmp(&(b.system_identifier, &b.name)));
        Ok(entries)
    }

    /// Runs `f` with the index cache locked. A closure rather than a guard, so the lock
    /// cannot outlive the statement by accident (a guard kept alive across a loop that reads
    /// blobs would deadlock).
    pub fn with_cache<T>(&self, f: impl FnOnce(&IndexCache) -> T) -> T {
        // Every critical section is one cache call; a panic elsewhere does not leave it torn.
        f(&self.cache.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn cache_mut(&mut self) -> &mut IndexCache {
        self.cache.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    pub fn into_repository(self) -> Repository {
        self.repo
    }

    /// Reads a blob, checking that its content hashes to its id.
    pub fn read_blob(&self, blob_type: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate_blob(blob_type, id)?;
        let path = layout::pack(&loc.pack);
        if blob_type != BlobType::Data && self.storage.is_remote() {
            let pack = self
                .metadata_packs
                .get_or_fetch(&loc.pack, || self.storage.read(&path))?;
            let start = loc.entry.offset as usize;
            let envelope = pack
                .get(start..start + loc.entry.stored_len as usize)
                .ok_or_else(|| {
                    Error::integrity(format!(
                        "pack {path} is {} bytes, shorter than its index says",
                        pack.len()
                    ))
                })?;
            return self.open_blob(&loc, envelope);
        }
        let envelope = self
            .storage
            .read_range(&path, loc.entry.offset, u64::from(loc.entry.stored_len))
            .with_context(|| format!("pack {path}"))?;
        self.open_blob(&loc, &envelope)
    }

    /// Where a blob is stored; an error if no index file lists it.
    pub fn locate_blob(&self, blob_type: BlobType, id: &BlobId) -> Result<cache::BlobLocation> {
        self.with_cache(|c| c.lookup(blob_type, id))?
            .ok_or_else(|| {
                Error::integrity(format!("{blob_type:?} blob {id} is not in any index file"))
            })
    }

    /// Decrypts a blob's envelope read from its pack, checking that the content hashes to
    /// its id.
    pub fn open_blob(&self, loc: &cache::BlobLocation, envelope: &[u8]) -> Result<Vec<u8>> {
        let path = layout::pack(&loc.pack);
        let data = pack::open_blob(&self.keys.data, &loc.entry, envelope)
            .with_context(|| format!("pack {path}"))?;
        if self.blob_id(&data) != loc.entry.id {
            return Err(Error::integrity(format!(
                "pack {path}: {:?} blob {} decrypts to content with another id",
                loc.entry.blob_type, loc.entry.id
            )));
        }
        Ok(data)
    }

    pub fn load_tree(&self, id: &BlobId) -> Result<tree::Tree> {
        object::decode(&self.read_blob(BlobType::Tree, id)?, "tree")
            .with_context(|| format!("tree {id}"))
    }

    pub fn load_chunk_list(&self, id: &BlobId) -> Result<tree::ChunkList> {
        object::decode(&self.read_blob(BlobType::ChunkList, id)?, "chunk list")
            .with_context(|| format!("chunk list {id}"))
    }

    /// The data chunks of a file, in order, expanding chunk-list blobs.
    pub fn data_chunks(&self, list: &tree::ChunkList) -> Result<Vec<tree::ChunkRef>> {
        if list.level > tree::MAX_LIST_LEVEL {
            return Err(Error::integrity(format!(
                "chunk list of level {} is too deep",
                list.level
            )));
        }
        if list.level == 0 {
            return Ok(list.entries.clone());
        }
        let mut out = Vec::new();
        for entry in &list.entries {
            let child = self.load_chunk_list(&entry.id)?;
            // Levels strictly decrease, so a hostile list cannot recurse forever.
            if child.level + 1 != list.level {
                return Err(Error::integrity(format!(
                    "chunk list {} has level {}, expected {}",
                    entry.id,
                    child.level,
                    list.level - 1
                )));
            }
            let expanded = self.data_chunks(&child)?;
            let total: u64 = expanded.iter().map(|c| c.len).sum();
            if total != entry.len {
                return Err(Error::integrity(format!(
                    "chunk list {} covers {total} bytes, its parent says {}",
                    entry.id, entry.len
                )));
            }
            out.extend(expanded);
        }
        Ok(out)
    }

    /// The blobs under a chunk list that no live pack holds (every copy is in a condemned
    /// pack, or none is indexed): what a writer must not commit a reference to.
    pub fn condemned_references(&self, list: &tree::ChunkList) -> Result<Vec<BlobId>> {
        let mut out = Vec::new();
        let blob_type = if list.level == 0 {
            BlobType::Data
        } else {
            BlobType::ChunkList
        };
        for entry in &list.entries {
            if !self.with_cache(|c| c.contains(blob_type, &entry.id))? {
                out.push(entry.id);
            } else if list.level > 0 {
                let child = self.load_chunk_list(&entry.id)?;
                if child.level >= list.level {
                    return Err(Error::integrity(format!(
                        "chunk list {} has level {} under a list of level {}",
                        entry.id, child.level, list.level
                    )));
                }
                out.extend(self.condemned_references(&child)?);
            }
        }
        Ok(out)
    }

    /// A directory's entries, in name order, from its tree blobs.
    pub fn dir_entries(&self, trees: &[BlobId]) -> Result<Vec<tree::Node>> {
        let mut out = Vec::new();
        for id in trees {
            out.extend(self.load_tree(id)?.nodes);
        }
        Ok(out)
    }

    /// Starts writing blobs into new packs.
    pub fn packer(&self) -> Packer<'_> {
        Packer::new(self)
    }
}

/// The one name in `names` that starts with `prefix`.
fn find_by_prefix(names: Vec<String>, prefix: &str, what: &str) -> Result<String> {
    let matches: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("len 1")),
        0 => Err(Error::usage(format!("no {what} id starts with {prefix:?}"))),
        n => Err(Error::usage(format!(
            "{n} {what} ids start with {prefix:?}; give more digits"
        ))),
    }
}
