//! Questions about packs as a whole that verify asks of the cache: whether one is indexed,
//! and every pack with its blobs in one pass.

use rusqlite::params;

use super::{IndexCache, to_id};
use crate::error::Result;
use crate::repo::id::{BlobId, PackId};
use crate::repo::pack::{BlobType, PackedBlob};

impl IndexCache {
    /// Whether any index file lists the pack.
    pub fn contains_pack(&self, pack: &PackId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM packs WHERE id = ?1")?;
        Ok(stmt.exists(params![pack.as_bytes()])?)
    }

    /// Hands each indexed pack that `wanted` accepts to `f` with its size and its blobs in
    /// offset order, until `f` returns false. One pass over the blobs sorted by pack, the sort
    /// spilled to a temporary file: blobs have no index by pack (it would slow every insert),
    /// so asking pack by pack would scan them all once per pack.
    pub fn for_each_pack(
        &self,
        wanted: &dyn Fn(&PackId) -> bool,
        f: &mut dyn FnMut(PackId, u64, Vec<PackedBlob>) -> Result<bool>,
    ) -> Result<()> {
        self.conn.execute_batch("PRAGMA temp_store = FILE;")?;
        let mut stmt = self.conn.prepare(
            "SELECT p.id, p.size, b.id, b.type, b.offset, b.stored_len, b.raw_len FROM blobs b \
             JOIN packs p ON p.num = b.pack ORDER BY b.pack, b.offset",
        )?;
        let mut rows = stmt.query([])?;
        let mut current: Option<(PackId, u64, Vec<PackedBlob>)> = None;
        while let Some(row) = rows.next()? {
            let pack = PackId(to_id(&row.get::<_, Vec<u8>>(0)?)?);
            if current.as_ref().is_some_and(|(id, _, _)| *id != pack)
                && let Some((id, size, blobs)) = current.take()
                && !f(id, size, blobs)?
            {
                return Ok(());
            }
            if !wanted(&pack) {
                continue;
            }
            let entry = PackedBlob {
                blob_type: BlobType::from_code(row.get(3)?)?,
                id: BlobId(to_id(&row.get::<_, Vec<u8>>(2)?)?),
                offset: row.get::<_, i64>(4)? as u64,
                stored_len: row.get(5)?,
                raw_len: row.get(6)?,
            };
            let size = row.get::<_, i64>(1)? as u64;
            current
                .get_or_insert_with(|| (pack, size, Vec::new()))
                .2
                .push(entry);
        }
        if let Some((id, size, blobs)) = current {
            f(id, size, blobs)?;
        }
        Ok(())
    }
}
