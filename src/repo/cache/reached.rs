//! The `reached` table: blobs a reachability walk (`repo::reach`) found referenced, and the
//! questions prune and verify ask of it. A temporary table, so it is private to this
//! connection and never outlives it; it spills to a temporary file rather than growing the
//! process (a million chunks is ~45 MB of rows).

use rusqlite::params;

use super::{IndexCache, to_id};
use crate::error::Result;
use crate::repo::id::BlobId;
use crate::repo::pack::BlobType;

impl IndexCache {
    /// Empties the set (creating it on first use).
    pub fn reach_reset(&self) -> Result<()> {
        self.conn.execute_batch(
            "PRAGMA temp_store = FILE;
             CREATE TEMP TABLE IF NOT EXISTS reached (
                 id BLOB NOT NULL, type INTEGER NOT NULL, PRIMARY KEY (id, type)
             ) WITHOUT ROWID;
             DELETE FROM reached;",
        )?;
        Ok(())
    }

    /// Adds a blob to the set; true if it was not in it.
    pub fn reach_mark(&self, blob_type: BlobType, id: &BlobId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO reached (id, type) VALUES (?1, ?2)")?;
        Ok(stmt.execute(params![id.as_bytes(), blob_type.code()])? == 1)
    }

    /// How many distinct blobs the walk reached.
    pub fn reached_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM reached", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Reached blobs that no index file lists, in id order.
    pub fn reached_unindexed(&self) -> Result<Vec<(BlobType, BlobId)>> {
        let mut stmt = self.conn.prepare(
            "SELECT r.type, r.id FROM reached r WHERE NOT EXISTS \
             (SELECT 1 FROM blobs b WHERE b.id = r.id AND b.type = r.type) ORDER BY r.id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u8>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (ty, id) = row?;
            out.push((BlobType::from_code(ty)?, BlobId(to_id(&id)?)));
        }
        Ok(out)
    }
}
