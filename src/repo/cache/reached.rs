//! The `reached` table: blobs a reachability walk (`repo::reach`) found referenced, and the
//! questions prune and verify ask of it; and the `lost` table: blobs verify found unreadable,
//! each with the damage that made it so, which verify intersects with the walk of each
//! snapshot and WAL file to name what the damage affects. A temporary table, so it is private to this
//! connection and never outlives it; it spills to a temporary file rather than growing the
//! process (a million chunks is ~45 MB of rows).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{BlobTotals, IndexCache, to_id};
use crate::error::Result;
use crate::repo::id::{BlobId, PackId};
use crate::repo::pack::{BlobType, PackedBlob};

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

    /// Adds blobs of one type to the set, in one transaction and in id order (each page of
    /// the table is visited once), and empties `ids`. A deferred transaction: it writes only
    /// the temporary table, so it takes no lock on the cache file that writers would wait for.
    /// With `first`, adds to it the blobs that were not in the set yet, and their plaintext and
    /// stored bytes (of one indexed copy; none for a blob no index lists).
    pub fn reach_mark_all(
        &self,
        blob_type: BlobType,
        ids: &mut Vec<BlobId>,
        mut first: Option<&mut BlobTotals>,
    ) -> Result<()> {
        ids.sort_unstable();
        ids.dedup();
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT OR IGNORE INTO reached (id, type) VALUES (?1, ?2)")?;
            let mut sizes_of = tx.prepare_cached(
                "SELECT raw_len, stored_len FROM blobs WHERE id = ?1 AND type = ?2 LIMIT 1",
            )?;
            for id in ids.iter() {
                let added = stmt.execute(params![id.as_bytes(), blob_type.code()])? == 1;
                let Some(totals) = first.as_deref_mut().filter(|_| added) else {
                    continue;
                };
                totals.blobs += 1;
                let sizes = sizes_of
                    .query_row(params![id.as_bytes(), blob_type.code()], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                    })
                    .optional()?;
                if let Some((raw, stored)) = sizes {
                    totals.raw_bytes += raw;
                    totals.stored_bytes += stored;
                }
            }
        }
        tx.commit()?;
        ids.clear();
        Ok(())
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

/// How much of one indexed pack the reached blobs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackUse {
    pub pack: PackId,
    pub size: u64,
    pub blobs: u64,
    /// The envelopes' bytes (the pack's size less its header).
    pub blob_bytes: u64,
    /// Reached blobs whose kept copy is this pack, and their envelopes' bytes.
    pub live_blobs: u64,
    pub live_bytes: u64,
}

impl IndexCache {
    /// Chooses, for every reached blob the index lists, the one copy prune keeps (a pack not
    /// condemned if any holds it, then the lowest-numbered) and returns the use of every
    /// indexed pack. Two passes over the blobs, whatever their number; the choice stays in the
    /// temporary table `home` for [`Self::live_blobs_in`].
    pub fn pack_use(&self) -> Result<Vec<PackUse>> {
        self.conn.execute_batch(
            "DROP TABLE IF EXISTS temp.home;
             CREATE TEMP TABLE home (
                 id BLOB NOT NULL, type INTEGER NOT NULL, pack INTEGER NOT NULL,
                 PRIMARY KEY (id, type)
             ) WITHOUT ROWID;
             INSERT INTO home SELECT r.id, r.type, (
                 SELECT b.pack FROM blobs b JOIN packs p ON p.num = b.pack
                 WHERE b.id = r.id AND b.type = r.type
                 ORDER BY EXISTS (SELECT 1 FROM condemned c WHERE c.pack = p.id), b.pack LIMIT 1
             ) AS pack FROM reached r WHERE pack IS NOT NULL;
             CREATE INDEX temp.home_by_pack ON home (pack);",
        )?;
        // Per pack number: every blob (count, bytes), then the kept copies (count, bytes).
        let all =
            self.count_per_pack("SELECT pack, count(*), sum(stored_len) FROM blobs GROUP BY pack")?;
        let live = self.count_per_pack(
            "SELECT h.pack, count(*), sum(b.stored_len) FROM home h JOIN blobs b \
             ON b.id = h.id AND b.type = h.type AND b.pack = h.pack GROUP BY h.pack",
        )?;
        let mut stmt = self
            .conn
            .prepare("SELECT num, id, size FROM packs ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (num, id, size) = row?;
            let (blobs, blob_bytes) = all.get(&num).copied().unwrap_or_default();
            let (live_blobs, live_bytes) = live.get(&num).copied().unwrap_or_default();
            out.push(PackUse {
                pack: PackId(to_id(&id)?),
                size: size as u64,
                blobs,
                blob_bytes,
                live_blobs,
                live_bytes,
            });
        }
        Ok(out)
    }

    /// `(pack number, count, bytes)` rows of a query, by pack number.
    fn count_per_pack(&self, sql: &str) -> Result<HashMap<i64, (u64, u64)>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (pack, count, bytes) = row?;
            out.insert(pack, (count as u64, bytes as u64));
        }
        Ok(out)
    }

    /// The blobs whose kept copy [`Self::pack_use`] placed in `pack`, in offset order.
    pub fn live_blobs_in(&self, pack: &PackId) -> Result<Vec<PackedBlob>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT b.id, b.type, b.offset, b.stored_len, b.raw_len FROM packs p \
             JOIN home h ON h.pack = p.num \
             JOIN blobs b ON b.id = h.id AND b.type = h.type AND b.pack = p.num \
             WHERE p.id = ?1 ORDER BY b.offset",
        )?;
        let rows = stmt.query_map([pack.as_bytes()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u8>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, ty, offset, stored_len, raw_len) = row?;
            out.push(PackedBlob {
                blob_type: BlobType::from_code(ty)?,
                id: BlobId(to_id(&id)?),
                offset: offset as u64,
                stored_len,
                raw_len,
            });
        }
        Ok(out)
    }
}
