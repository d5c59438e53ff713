//! The `reached` table: blobs a reachability walk (`repo::reach`) found referenced, and the
//! questions prune and verify ask of it; and the `lost` table: blobs verify found unreadable,
//! each with the damage that made it so, which verify intersects with the walk of each
//! snapshot and WAL file to name what the damage affects. A temporary table, so it is private to this
//! connection and never outlives it; it spills to a temporary file rather than growing the
//! process (a million chunks is ~45 MB of rows).

use rusqlite::params;

use super::{IndexCache, to_id};
use crate::error::Result;
use crate::repo::id::{BlobId, PackId};
use crate::repo::pack::BlobType;

/// The condition, on a blob row `b`, that no pack outside `lost_packs` holds the blob.
const ONLY_THERE: &str = "NOT EXISTS (SELECT 1 FROM blobs c WHERE c.id = b.id AND c.type = b.type \
                          AND c.pack NOT IN (SELECT num FROM lost_packs))";

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

    /// Empties the `lost` set (creating it on first use).
    pub fn lost_reset(&self) -> Result<()> {
        self.conn.execute_batch(
            "PRAGMA temp_store = FILE;
             CREATE TEMP TABLE IF NOT EXISTS lost (
                 id BLOB NOT NULL, type INTEGER NOT NULL, damage INTEGER NOT NULL,
                 PRIMARY KEY (id, type, damage)
             ) WITHOUT ROWID;
             DELETE FROM lost;",
        )?;
        Ok(())
    }

    /// Records that damage number `damage` makes a blob unreadable.
    pub fn lost_mark(&self, blob_type: BlobType, id: &BlobId, damage: u32) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO lost (id, type, damage) VALUES (?1, ?2, ?3)")?;
        stmt.execute(params![id.as_bytes(), blob_type.code(), damage])?;
        Ok(())
    }

    /// Records every blob the index places in each pack as made unreadable by the damage
    /// given with it. One pass over the blobs for all the packs (blobs have no index by pack).
    pub fn lost_mark_packs(&self, packs: &[(PackId, u32)]) -> Result<()> {
        self.fill_lost_packs(packs)?;
        self.conn.execute_batch(
            "INSERT OR IGNORE INTO lost (id, type, damage)
                 SELECT b.id, b.type, (SELECT damage FROM lost_packs WHERE num = b.pack)
                 FROM blobs b WHERE b.pack IN (SELECT num FROM lost_packs);
             DELETE FROM lost_packs;",
        )?;
        Ok(())
    }

    /// For each of `packs` that holds reached blobs no pack outside `packs` holds, how many.
    pub fn reached_only_in(&self, packs: &[PackId]) -> Result<Vec<(PackId, u64)>> {
        let numbered: Vec<(PackId, u32)> = packs.iter().map(|p| (*p, 0)).collect();
        self.fill_lost_packs(&numbered)?;
        self.pack_numbers(&format!(
            "SELECT p.id, count(*) FROM blobs b JOIN packs p ON p.num = b.pack \
             JOIN reached r ON r.id = b.id AND r.type = b.type \
             WHERE b.pack IN (SELECT num FROM lost_packs) AND {ONLY_THERE} GROUP BY p.id"
        ))
    }

    /// Records the reached blobs of each pack that no pack outside `packs` holds as made
    /// unreadable by the damage given with it (packs no index file lists: a blob with a copy
    /// in an indexed pack is not lost with them).
    pub fn lost_mark_reached_only_in(&self, packs: &[(PackId, u32)]) -> Result<()> {
        self.fill_lost_packs(packs)?;
        self.conn.execute_batch(&format!(
            "INSERT OR IGNORE INTO lost (id, type, damage)
                 SELECT b.id, b.type, (SELECT damage FROM lost_packs WHERE num = b.pack)
                 FROM blobs b JOIN reached r ON r.id = b.id AND r.type = b.type
                 WHERE b.pack IN (SELECT num FROM lost_packs) AND {ONLY_THERE};
             DELETE FROM lost_packs;"
        ))?;
        Ok(())
    }

    /// Fills the temporary set of packs the queries above take, with a damage number each.
    fn fill_lost_packs(&self, packs: &[(PackId, u32)]) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS lost_packs (
                 num INTEGER PRIMARY KEY, damage INTEGER NOT NULL
             );
             DELETE FROM lost_packs;",
        )?;
        let mut add = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO lost_packs (num, damage) SELECT num, ?2 FROM packs WHERE id = ?1",
        )?;
        for (pack, damage) in packs {
            add.execute(params![pack.as_bytes(), damage])?;
        }
        Ok(())
    }

    /// The damages that made reached blobs unreadable, each with how many, by damage number.
    pub fn reached_lost(&self) -> Result<Vec<(u32, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT l.damage, count(*) FROM lost l JOIN reached r ON r.id = l.id AND r.type = l.type \
             GROUP BY l.damage ORDER BY l.damage",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` reached blobs that damage `damage` made unreadable, in id order.
    pub fn reached_lost_blobs(&self, damage: u32, limit: usize) -> Result<Vec<(BlobType, BlobId)>> {
        let mut stmt = self.conn.prepare(
            "SELECT l.type, l.id FROM lost l JOIN reached r ON r.id = l.id AND r.type = l.type \
             WHERE l.damage = ?1 ORDER BY l.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![damage, limit as i64], |r| {
            Ok((r.get::<_, u8>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (ty, id) = row?;
            out.push((BlobType::from_code(ty)?, BlobId(to_id(&id)?)));
        }
        Ok(out)
    }
}
