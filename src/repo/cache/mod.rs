//! The local index cache: an SQLite copy of the repository's index files, mapping blob ids to
//! packs. It is only ever a cache: on every open it is brought in step with the index files on
//! storage, and it can be deleted at any time.

mod packs;
mod reached;
pub mod translations;

pub use reached::PackUse;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::id::{BlobId, IndexId, PackId, RepoId};
use super::index_file::IndexFile;
use super::pack::{BlobType, PackedBlob};
use super::walcat::WalEntry;
use crate::error::{Error, Result};

/// Bumped whenever the schema below changes; a cache with another version is rebuilt.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE index_files (num INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
CREATE TABLE packs (num INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, size INTEGER NOT NULL);
-- A pack may be listed by several index files (prune rewrites them); it leaves the cache
-- when the last one goes.
CREATE TABLE pack_sources (
    index_file INTEGER NOT NULL, pack INTEGER NOT NULL, PRIMARY KEY (index_file, pack)
) WITHOUT ROWID;
CREATE INDEX pack_sources_by_pack ON pack_sources (pack);
-- The same blob may sit in several packs (concurrent writers); any copy will do.
CREATE TABLE blobs (
    id BLOB NOT NULL, type INTEGER NOT NULL, pack INTEGER NOT NULL,
    offset INTEGER NOT NULL, stored_len INTEGER NOT NULL, raw_len INTEGER NOT NULL,
    PRIMARY KEY (id, type, pack)
) WITHOUT ROWID;
-- Packs condemned by prune, per index file that says so: a pack is condemned while any
-- index file condemning it is on storage. By pack id, not number: it may be in no index.
CREATE TABLE condemned (
    index_file INTEGER NOT NULL, pack BLOB NOT NULL, since_ns INTEGER NOT NULL,
    PRIMARY KEY (index_file, pack)
) WITHOUT ROWID;
CREATE INDEX condemned_by_pack ON condemned (pack);
-- Decrypted WAL catalogue entries (postcard), by object name.
CREATE TABLE wal_entries (object BLOB PRIMARY KEY, entry BLOB NOT NULL) WITHOUT ROWID;
";

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub entry: PackedBlob,
}

/// What [`IndexCache::blob_totals`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobTotals {
    pub blobs: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

pub struct IndexCache {
    conn: Connection,
}

/// The default cache file of a repository: `$XDG_CACHE_HOME/pgcairn/<repo id>/index.sqlite`.
pub fn default_path(cache_dir: Option<&Path>, repo_id: &RepoId) -> Result<PathBuf> {
    Ok(base_dir(cache_dir)?
        .join(repo_id.to_hex())
        .join("index.sqlite"))
}

/// pgcairn's local cache directory: `cache_dir`, else `$XDG_CACHE_HOME/pgcairn`.
pub fn base_dir(cache_dir: Option<&Path>) -> Result<PathBuf> {
    match cache_dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => directories::BaseDirs::new()
            .map(|d| d.cache_dir().join("pgcairn"))
            .ok_or_else(|| {
                Error::local("no cache directory (set HOME, XDG_CACHE_HOME or --cache-dir)")
            }),
    }
}

/// Removes the cache at `path` with its journal files, if there is one.
pub fn remove(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::local_io(e, format!("removing {}", file.display()))),
        }
    }
    Ok(())
}

fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        Error::local(format!(
            "index cache {}: {e} (the cache can be deleted; it is rebuilt from the repository)",
            path.display()
        ))
    }
}

/// What [`IndexCache::open_existing`] found at a path.
enum Found {
    Usable(IndexCache),
    /// No file, or one with no tables yet.
    Absent,
    /// Another schema version or another repository's cache.
    Other,
}

impl IndexCache {
    /// Opens (or creates) the cache at `path` for repository `repo_id`. A cache that cannot be
    /// read, has another schema or belongs to another repository is deleted and recreated.
    /// Processes that create it at the same moment (archive-push and its async worker) all
    /// get the same cache: creation is one transaction that a second creator finds done.
    pub fn open(path: &Path, repo_id: &RepoId) -> Result<Self> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        match Self::open_existing(path, repo_id) {
            Ok(Found::Usable(cache)) => return Ok(cache),
            Ok(Found::Absent) => {
                let conn = Connection::open(path).map_err(db_error(path))?;
                Self::initialise(conn, repo_id)
                    .map_err(|e| e.with_context(path.display().to_string()))?;
                if let Found::Usable(cache) = Self::open_existing(path, repo_id)? {
                    return Ok(cache);
                }
            }
            Ok(Found::Other) => {}
            Err(e) => eprintln!("warning: rebuilding the index cache: {e}"),
        }
        Self::create(path, repo_id)
    }

    /// A new, empty cache at `path`, replacing whatever is there.
    pub fn create(path: &Path, repo_id: &RepoId) -> Result<Self> {
        remove(path)?;
        let conn = Connection::open(path).map_err(db_error(path))?;
        Self::initialise(conn, repo_id).map_err(|e| e.with_context(path.display().to_string()))
    }

    /// An in-memory cache, for tests and one-shot tools.
    pub fn in_memory(repo_id: &RepoId) -> Result<Self> {
        Self::initialise(Connection::open_in_memory()?, repo_id)
    }

    fn open_existing(path: &Path, repo_id: &RepoId) -> Result<Found> {
        if !path.exists() {
            return Ok(Found::Absent);
        }
        let conn = Connection::open(path).map_err(db_error(path))?;
        configure(&conn)?;
        // No tables yet: another process is creating it (or was killed before it could).
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )?;
        if tables == 0 {
            return Ok(Found::Absent);
        }
        let meta = |key: &str| -> Result<Option<Vec<u8>>> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        };
        let version = meta("schema")?;
        let owner = meta("repository")?;
        if version != Some(SCHEMA_VERSION.to_le_bytes().to_vec())
            || owner.as_deref() != Some(repo_id.as_bytes())
        {
            return Ok(Found::Other);
        }
        // No `PRAGMA quick_check` here: it reads the whole file, which for a large repository
        // cost more than archiving a WAL segment; a damaged page still fails the query that
        // reads it, naming the cache file.
        Ok(Found::Usable(IndexCache { conn }))
    }

    /// Creates the schema in one transaction, so a process that opens the file meanwhile
    /// sees either nothing or a whole cache.
    fn initialise(mut conn: Connection, repo_id: &RepoId) -> Result<Self> {
        configure(&conn)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )?;
        if exists > 0 {
            // Created by another process while this one waited for the lock.
            tx.commit()?;
            return Ok(IndexCache { conn });
        }
        tx.execute_batch(SCHEMA)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema', ?1), ('repository', ?2)",
            params![
                SCHEMA_VERSION.to_le_bytes().to_vec(),
                repo_id.as_bytes().to_vec()
            ],
        )?;
        tx.commit()?;
        Ok(IndexCache { conn })
    }

    /// Object names of the WAL catalogue entries the cache holds.
    pub fn wal_objects(&self) -> Result<HashSet<[u8; 32]>> {
        let mut stmt = self.conn.prepare("SELECT object FROM wal_entries")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = HashSet::new();
        for row in rows {
            out.insert(to_id(&row?)?);
        }
        Ok(out)
    }

    pub fn add_wal_entry(&self, object: &[u8; 32], entry: &WalEntry) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO wal_entries (object, entry) VALUES (?1, ?2)",
            params![object.to_vec(), super::object::encode(entry)],
        )?;
        Ok(())
    }

    pub fn remove_wal_entries(&mut self, objects: &[[u8; 32]]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for object in objects {
            tx.execute(
                "DELETE FROM wal_entries WHERE object = ?1",
                [object.to_vec()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every cached WAL catalogue entry.
    pub fn wal_entries(&self) -> Result<Vec<WalEntry>> {
        let mut stmt = self.conn.prepare("SELECT entry FROM wal_entries")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(super::object::decode(&row?, "cached WAL catalogue entry")?);
        }
        Ok(out)
    }

    /// When the cache was last brought in step with storage, nanoseconds since the epoch.
    pub fn synced_ns(&self) -> Result<Option<i64>> {
        let value: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'synced_ns'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(value
            .and_then(|v| v.try_into().ok())
            .map(i64::from_le_bytes))
    }

    pub fn set_synced_ns(&self, when: i64) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('synced_ns', ?1)",
            [when.to_le_bytes().to_vec()],
        )?;
        Ok(())
    }

    pub fn index_files(&self) -> Result<HashSet<IndexId>> {
        let mut stmt = self.conn.prepare("SELECT id FROM index_files")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = HashSet::new();
        for row in rows {
            out.insert(IndexId(to_id(&row?)?));
        }
        Ok(out)
    }

    /// Records one index file and everything it lists, atomically.
    pub fn add_index_file(&mut self, id: &IndexId, file: &IndexFile) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO index_files (id) VALUES (?1)",
            [id.as_bytes()],
        )?;
        let index_num: i64 = tx.query_row(
            "SELECT num FROM index_files WHERE id = ?1",
            [id.as_bytes()],
            |r| r.get(0),
        )?;
        {
            let mut add_pack =
                tx.prepare_cached("INSERT OR IGNORE INTO packs (id, size) VALUES (?1, ?2)")?;
            let mut pack_num = tx.prepare_cached("SELECT num FROM packs WHERE id = ?1")?;
            let mut add_source = tx.prepare_cached(
                "INSERT OR IGNORE INTO pack_sources (index_file, pack) VALUES (?1, ?2)",
            )?;
            let mut add_blob = tx.prepare_cached(
                "INSERT OR IGNORE INTO blobs (id, type, pack, offset, stored_len, raw_len) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut rows = Vec::with_capacity(file.packs.iter().map(|p| p.blobs.len()).sum());
            for pack in &file.packs {
                add_pack.execute(params![pack.id.as_bytes(), pack.size as i64])?;
                let num: i64 = pack_num.query_row([pack.id.as_bytes()], |r| r.get(0))?;
                add_source.execute(params![index_num, num])?;
                rows.extend(pack.blobs.iter().map(|b| (b, num)));
            }
            // In key order, each B-tree page is visited once per batch instead of once per
            // row: several times faster than inserting random ids as they come.
            rows.sort_unstable_by_key(|(b, _)| (b.id, b.blob_type));
            for (b, num) in rows {
                add_blob.execute(params![
                    b.id.as_bytes(),
                    b.blob_type.code(),
                    num,
                    b.offset as i64,
                    b.stored_len,
                    b.raw_len
                ])?;
            }
            let mut condemn = tx.prepare_cached(
                "INSERT OR REPLACE INTO condemned (index_file, pack, since_ns) VALUES (?1, ?2, ?3)",
            )?;
            for pack in &file.condemned {
                condemn.execute(params![index_num, pack.id.as_bytes(), pack.since_ns])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets index files that are no longer on storage, and the packs only they listed.
    pub fn remove_index_files(&mut self, ids: &[IndexId]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for id in ids {
            let num: Option<i64> = tx
                .query_row(
                    "SELECT num FROM index_files WHERE id = ?1",
                    [id.as_bytes()],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(num) = num else { continue };
            tx.execute("DELETE FROM pack_sources WHERE index_file = ?1", [num])?;
            tx.execute("DELETE FROM condemned WHERE index_file = ?1", [num])?;
            tx.execute("DELETE FROM index_files WHERE num = ?1", [num])?;
        }
        tx.execute_batch(
            "CREATE TEMP TABLE orphans AS SELECT num FROM packs
                 WHERE num NOT IN (SELECT pack FROM pack_sources);
             -- A full scan, with no index on blobs(pack): it runs only after index files
             -- vanish (prune), while an index would slow every insert.
             DELETE FROM blobs WHERE pack IN (SELECT num FROM orphans);
             DELETE FROM packs WHERE num IN (SELECT num FROM orphans);
             DROP TABLE orphans;",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Where a blob is, if any index file lists it.
    pub fn lookup(&self, blob_type: BlobType, id: &BlobId) -> Result<Option<BlobLocation>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.id, b.offset, b.stored_len, b.raw_len FROM blobs b JOIN packs p ON p.num = b.pack \
             WHERE b.id = ?1 AND b.type = ?2 \
             ORDER BY EXISTS (SELECT 1 FROM condemned c WHERE c.pack = p.id) LIMIT 1",
        )?;
        let row = stmt
            .query_row(params![id.as_bytes(), blob_type.code()], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, u32>(3)?,
                ))
            })
            .optional()?;
        row.map(|(pack, offset, stored_len, raw_len)| {
            Ok(BlobLocation {
                pack: PackId(to_id(&pack)?),
                entry: PackedBlob {
                    blob_type,
                    id: *id,
                    offset: offset as u64,
                    stored_len,
                    raw_len,
                },
            })
        })
        .transpose()
    }

    /// Whether a writer may reference the blob without storing it: some pack not condemned
    /// holds it. A blob only in condemned packs may be deleted soon (format-spec §13).
    pub fn contains(&self, blob_type: BlobType, id: &BlobId) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM blobs b JOIN packs p ON p.num = b.pack WHERE b.id = ?1 AND b.type = ?2 \
             AND NOT EXISTS (SELECT 1 FROM condemned c WHERE c.pack = p.id) LIMIT 1",
        )?;
        Ok(stmt.exists(params![id.as_bytes(), blob_type.code()])?)
    }

    /// Every condemned pack, with the earliest time any index file condemned it.
    pub fn condemned_packs(&self) -> Result<HashMap<PackId, i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT pack, min(since_ns) FROM condemned GROUP BY pack")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (pack, since) = row?;
            out.insert(PackId(to_id(&pack)?), since);
        }
        Ok(out)
    }

    /// Distinct blobs of one type, their plaintext bytes and their stored (envelope) bytes.
    /// A blob stored in several packs counts once.
    pub fn blob_totals(&self, blob_type: BlobType) -> Result<BlobTotals> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT count(*), coalesce(sum(raw_len), 0), coalesce(sum(stored_len), 0) FROM \
             (SELECT raw_len, stored_len FROM blobs WHERE type = ?1 GROUP BY id)",
        )?;
        Ok(stmt.query_row([blob_type.code()], |r| {
            Ok(BlobTotals {
                blobs: r.get::<_, i64>(0)? as u64,
                raw_bytes: r.get::<_, i64>(1)? as u64,
                stored_bytes: r.get::<_, i64>(2)? as u64,
            })
        })?)
    }

    /// Every indexed pack and its size.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        self.pack_numbers("SELECT id, size FROM packs ORDER BY id")
    }

    /// The rows of `query`: a pack id and a number (a size, a count) each.
    fn pack_numbers(&self, query: &str) -> Result<Vec<(PackId, u64)>> {
        let mut stmt = self.conn.prepare(query)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, n) = row?;
            out.push((PackId(to_id(&id)?), n as u64));
        }
        Ok(out)
    }

    /// The blobs the index places in one pack.
    pub fn entries_of_pack(&self, pack: &PackId) -> Result<Vec<PackedBlob>> {
        let rows = self.locations("WHERE p.id = ?1", [pack.as_bytes().to_vec()])?;
        Ok(rows.into_iter().map(|loc| loc.entry).collect())
    }

    /// Every (blob, pack) entry in a canonical order: two caches of the same repository state
    /// compare equal.
    pub fn entries(&self) -> Result<Vec<BlobLocation>> {
        self.locations("", [])
    }

    fn locations<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<BlobLocation>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT b.id, b.type, p.id, b.offset, b.stored_len, b.raw_len FROM blobs b \
             JOIN packs p ON p.num = b.pack {filter} ORDER BY b.id, b.type, p.id"
        ))?;
        let rows = stmt.query_map(params, location_row)?;
        rows.map(|row| to_location(row?)).collect()
    }

    /// Finds each blob of `wanted` (any copy), takes it out of `wanted` and hands its
    /// location and value to `found`; what is left in `wanted` afterwards is in no index file.
    /// One pass over the blobs of that type when the request is a sizeable share of them (a
    /// restore asks for a whole snapshot's chunks, and a scan is then several times faster
    /// than one lookup per id), else one lookup per id.
    pub fn locate_many<V>(
        &self,
        blob_type: BlobType,
        wanted: &mut HashMap<BlobId, V>,
        mut found: impl FnMut(BlobLocation, V),
    ) -> Result<()> {
        let total: i64 = self.conn.query_row(
            "SELECT count(*) FROM blobs WHERE type = ?1",
            [blob_type.code()],
            |r| r.get(0),
        )?;
        if (wanted.len() as i64) * 8 < total {
            let ids: Vec<BlobId> = wanted.keys().copied().collect();
            for id in ids {
                if let Some(loc) = self.lookup(blob_type, &id)?
                    && let Some(value) = wanted.remove(&id)
                {
                    found(loc, value);
                }
            }
            return Ok(());
        }
        let mut stmt = self.conn.prepare(
            "SELECT b.id, b.type, p.id, b.offset, b.stored_len, b.raw_len FROM blobs b \
             JOIN packs p ON p.num = b.pack WHERE b.type = ?1",
        )?;
        let mut rows = stmt.query([blob_type.code()])?;
        while let Some(row) = rows.next()? {
            let id = BlobId(to_id(
                row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?,
            )?);
            if let Some(value) = wanted.remove(&id) {
                found(to_location(location_row(row)?)?, value);
            }
        }
        Ok(())
    }
}

type LocationRow = (Vec<u8>, u8, Vec<u8>, i64, u32, u32);

fn location_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LocationRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn to_location((id, ty, pack, offset, stored_len, raw_len): LocationRow) -> Result<BlobLocation> {
    Ok(BlobLocation {
        pack: PackId(to_id(&pack)?),
        entry: PackedBlob {
            blob_type: BlobType::from_code(ty)?,
            id: BlobId(to_id(&id)?),
            offset: offset as u64,
            stored_len,
            raw_len,
        },
    })
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(60))?;
    // WAL journal: readers never wait for a writer; NORMAL sync is safe with WAL (a crash may
    // lose the last transactions, which the next open re-syncs from storage). A 16 MiB page
    // cache: it counts against a backup's memory budget, and pages beyond it come from the
    // kernel's page cache.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = OFF;",
    )?;
    Ok(())
}

fn to_id(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::local("index cache holds an id that is not 32 bytes"))
}

pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::local_io(e, format!("creating cache directory {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index_file::IndexedPack;

    fn file(pack: u8, blobs: &[u8]) -> IndexFile {
        IndexFile {
            supersedes: vec![],
            condemned: vec![],
            packs: vec![IndexedPack {
                id: PackId([pack; 32]),
                size: 1000,
                blobs: blobs
                    .iter()
                    .map(|&b| PackedBlob {
                        blob_type: BlobType::Data,
                        id: BlobId([b; 32]),
                        offset: 10 + u64::from(b),
                        stored_len: 50,
                        raw_len: 9,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn processes_creating_the_cache_at_once_all_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let repo = RepoId([7; 32]);
        std::thread::scope(|scope| {
            let openers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| IndexCache::open(&path, &repo).map(|_| ())))
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
        });
        assert!(matches!(
            IndexCache::open_existing(&path, &repo).unwrap(),
            Found::Usable(_)
        ));
    }

    #[test]
    fn add_lookup_remove() {
        let mut cache = IndexCache::in_memory(&RepoId([0; 32])).unwrap();
        cache
            .add_index_file(&IndexId([1; 32]), &file(1, &[1, 2]))
            .unwrap();
        cache
            .add_index_file(&IndexId([2; 32]), &file(2, &[2, 3]))
            .unwrap();
        let loc = cache
            .lookup(BlobType::Data, &BlobId([1; 32]))
            .unwrap()
            .unwrap();
        assert_eq!(loc.pack, PackId([1; 32]));
        assert_eq!(loc.entry.offset, 11);
        assert!(!cache.contains(BlobType::Tree, &BlobId([1; 32])).unwrap());
        cache.remove_index_files(&[IndexId([1; 32])]).unwrap();
        assert!(!cache.contains(BlobType::Data, &BlobId([1; 32])).unwrap());
        // Blob 2 is still in pack 2, listed by the remaining index file.
        assert!(cache.contains(BlobType::Data, &BlobId([2; 32])).unwrap());
        assert_eq!(cache.packs().unwrap().len(), 1);
    }

    #[test]
    fn foreign_or_corrupt_cache_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/index.sqlite");
        {
            let mut cache = IndexCache::open(&path, &RepoId([1; 32])).unwrap();
            cache
                .add_index_file(&IndexId([1; 32]), &file(1, &[1]))
                .unwrap();
        }
        assert_eq!(
            IndexCache::open(&path, &RepoId([1; 32]))
                .unwrap()
                .index_files()
                .unwrap()
                .len(),
            1
        );
        let other = IndexCache::open(&path, &RepoId([2; 32])).unwrap();
        assert!(other.index_files().unwrap().is_empty());
        drop(other);
        std::fs::write(&path, b"this is not a database").unwrap();
        let rebuilt = IndexCache::open(&path, &RepoId([2; 32])).unwrap();
        assert!(rebuilt.index_files().unwrap().is_empty());
    }
}
