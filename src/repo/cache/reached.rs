//! The `reached` table: blobs a reachability walk (`repo::reach`) found referenced, and the
//! questions prune and verify ask of it. A temporary table, so it is private to this
//! connection and never outlives it; it spills to a temporary file rather than growing the
//! process (a million chunks is ~45 MB of rows).

use std::collections::HashMap;

use rusqlite::params;

use super::{IndexCache, to_id};
use crate::error::Result;
use crate::repo::id::{BlobId, PackId};
use crate::repo::index_file::IndexedPack;
use crate::repo::pack::{BlobType, PackedBlob};

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
        let mut totals: HashMap<i64, (u64, u64, u64, u64)> = HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT pack, count(*), sum(stored_len) FROM blobs GROUP BY pack")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (pack, blobs, bytes) = row?;
                let entry = totals.entry(pack).or_default();
                entry.0 = blobs as u64;
                entry.3 = bytes as u64;
            }
            let mut stmt = self.conn.prepare(
                "SELECT h.pack, count(*), sum(b.stored_len) FROM home h JOIN blobs b \
                 ON b.id = h.id AND b.type = h.type AND b.pack = h.pack GROUP BY h.pack",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (pack, live, bytes) = row?;
                let entry = totals.entry(pack).or_default();
                entry.1 = live as u64;
                entry.2 = bytes as u64;
            }
        }
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
            let (blobs, live_blobs, live_bytes, blob_bytes) =
                totals.get(&num).copied().unwrap_or_default();
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

impl IndexCache {
    /// Every indexed pack with its blobs, one at a time in pack order: one sorted pass over
    /// the blobs, so memory holds one pack's entries whatever the index's size.
    pub fn for_each_pack(&self, f: &mut dyn FnMut(IndexedPack) -> Result<()>) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT p.id, p.size, b.id, b.type, b.offset, b.stored_len, b.raw_len \
             FROM packs p JOIN blobs b ON b.pack = p.num ORDER BY p.num, b.offset",
        )?;
        let mut rows = stmt.query([])?;
        let mut current: Option<IndexedPack> = None;
        while let Some(r) = rows.next()? {
            let pack = PackId(to_id(&r.get::<_, Vec<u8>>(0)?)?);
            let size = r.get::<_, i64>(1)? as u64;
            if let Some(done) = current.take_if(|c| c.id != pack) {
                f(done)?;
            }
            let entry = PackedBlob {
                id: BlobId(to_id(&r.get::<_, Vec<u8>>(2)?)?),
                blob_type: BlobType::from_code(r.get::<_, u8>(3)?)?,
                offset: r.get::<_, i64>(4)? as u64,
                stored_len: r.get(5)?,
                raw_len: r.get(6)?,
            };
            current
                .get_or_insert_with(|| IndexedPack {
                    id: pack,
                    size,
                    blobs: Vec::new(),
                })
                .blobs
                .push(entry);
        }
        if let Some(last) = current {
            f(last)?;
        }
        Ok(())
    }
}
