//! Blob id translations from one repository to another, kept for `pgcairn copy`: a data
//! chunk's id is keyed by its repository's chunk-id key, so the id it has in the target can
//! only be learned by reading it. Remembering `source id → target id` lets the next copy skip
//! every chunk it already sent without reading it again.
//!
//! One SQLite file per pair of repositories (`<cache>/copy/<source id>-<target id>.sqlite`).
//! Like the index cache it is only a cache: a translation is used only while the target's
//! index still lists the target id, and the file can be deleted at any time (the next copy
//! then reads every chunk once to rebuild it).
//!
//! A translation cannot be checked against content when it is used (that would mean reading
//! the chunk it saves reading), so each row carries a tag: keyed BLAKE3 of both ids under a key
//! derived from both repositories' chunk-id keys. A row whose tag does not match is ignored, so
//! a damaged or planted row costs a read, never a reference to the wrong chunk. Both ids are
//! hashes of the same content, so a row with a valid tag stays true forever.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::{configure, create_private_dir, remove, to_id};
use crate::crypto::Key32;
use crate::error::{Error, Result};
use crate::repo::id::{BlobId, RepoId};

/// The table's name carries its layout version: another layout is another table.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS chunk_ids_v1 \
    (source BLOB PRIMARY KEY, target BLOB NOT NULL, tag BLOB NOT NULL) WITHOUT ROWID;";

pub struct Translations {
    conn: Connection,
    key: Key32,
}

/// The tag of one translation (16 bytes of keyed BLAKE3 over both ids).
fn tag(key: &Key32, source: &BlobId, target: &BlobId) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new_keyed(&key.0);
    hasher.update(source.as_bytes());
    hasher.update(target.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

/// Where the translations from `source` to `target` are kept.
pub fn path(base: &Path, source: &RepoId, target: &RepoId) -> PathBuf {
    base.join("copy")
        .join(format!("{}-{}.sqlite", source.to_hex(), target.to_hex()))
}

impl Translations {
    /// Opens (or creates) the translations at `path`; a file that cannot be used is replaced
    /// by an empty one (with a warning: the next copy reads every chunk once).
    pub fn open(path: &Path, key: Key32) -> Result<Self> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        match Self::open_at(path, key.clone()) {
            Ok(table) => Ok(table),
            Err(e) => {
                eprintln!(
                    "warning: starting the copy's id translations afresh (every chunk is read \
                     once): {e}"
                );
                remove(path)?;
                Self::open_at(path, key)
            }
        }
    }

    fn open_at(path: &Path, key: Key32) -> Result<Self> {
        let context = |e: rusqlite::Error| {
            Error::local(format!(
                "copy translations {}: {e} (the file can be deleted)",
                path.display()
            ))
        };
        let conn = Connection::open(path).map_err(context)?;
        configure(&conn)?;
        conn.execute_batch(SCHEMA).map_err(context)?;
        Ok(Translations { conn, key })
    }

    /// The target id recorded for a source chunk id, if its tag is intact.
    pub fn get(&self, source: &BlobId) -> Result<Option<BlobId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT target, tag FROM chunk_ids_v1 WHERE source = ?1")?;
        let found: Option<(Vec<u8>, Vec<u8>)> = stmt
            .query_row([source.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((target, stored_tag)) = found else {
            return Ok(None);
        };
        let target = BlobId(to_id(&target)?);
        Ok((stored_tag == tag(&self.key, source, &target)).then_some(target))
    }

    /// Records translations (replacing older ones of the same source ids), in one transaction.
    pub fn record(&mut self, pairs: &[(BlobId, BlobId)]) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO chunk_ids_v1 (source, target, tag) VALUES (?1, ?2, ?3)",
            )?;
            for (source, target) in pairs {
                stmt.execute(params![
                    source.as_bytes(),
                    target.as_bytes(),
                    tag(&self.key, source, target)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How many translations are recorded.
    pub fn len(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM chunk_ids_v1", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translations_survive_reopening_and_a_damaged_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), &RepoId([1; 32]), &RepoId([2; 32]));
        let key = || Key32([7; 32]);
        let (a, b, c) = (BlobId([1; 32]), BlobId([2; 32]), BlobId([3; 32]));
        {
            let mut table = Translations::open(&file, key()).unwrap();
            assert!(table.is_empty().unwrap());
            table.record(&[(a, b), (b, c)]).unwrap();
            table.record(&[(a, c)]).unwrap();
        }
        let table = Translations::open(&file, key()).unwrap();
        assert_eq!(table.get(&a).unwrap(), Some(c));
        assert_eq!(table.get(&b).unwrap(), Some(c));
        assert_eq!(table.get(&c).unwrap(), None);
        assert_eq!(table.len().unwrap(), 2);

        // A row changed behind pgcairn's back (or made under other keys) is not used.
        table
            .conn
            .execute(
                "UPDATE chunk_ids_v1 SET target = ?1 WHERE source = ?2",
                params![b.as_bytes(), a.as_bytes()],
            )
            .unwrap();
        assert_eq!(table.get(&a).unwrap(), None);
        drop(table);
        let other_keys = Translations::open(&file, Key32([8; 32])).unwrap();
        assert_eq!(other_keys.get(&b).unwrap(), None);
        drop(other_keys);

        std::fs::write(
            &file,
            b"not a database, and long enough to look like a header",
        )
        .unwrap();
        let table = Translations::open(&file, key()).unwrap();
        assert!(table.is_empty().unwrap());
    }
}
