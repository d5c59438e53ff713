//! Insert and lookup rates of the SQLite index cache as it grows.
//!
//! `cargo bench --bench index_cache` (ROWS=2000000 by default; ROWS=10000000 for the large case).
//! Prints one line per size: inserts/s while loading index files, then hit and miss lookups/s
//! for random ids, and the cache file size.

use std::time::Instant;

use pgcairn::repo::cache::IndexCache;
use pgcairn::repo::id::{BlobId, IndexId, PackId, RepoId};
use pgcairn::repo::index_file::{IndexFile, IndexedPack};
use pgcairn::repo::pack::{BlobType, PackedBlob};

const BLOBS_PER_PACK: u64 = 1000;
const PACKS_PER_INDEX: u64 = 64;

/// A pseudo-random 32-byte id for blob number `n` (ids are uniformly random in a repository).
fn id(n: u64, salt: u64) -> [u8; 32] {
    *blake3::hash(&[n.to_le_bytes(), salt.to_le_bytes()].concat()).as_bytes()
}

fn main() {
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let mut cache = IndexCache::open(&path, &RepoId([1; 32])).expect("open cache");

    let packs = rows.div_ceil(BLOBS_PER_PACK);
    let started = Instant::now();
    let mut blob = 0u64;
    for first_pack in (0..packs).step_by(PACKS_PER_INDEX as usize) {
        let file = IndexFile {
            supersedes: vec![],
            condemned: vec![],
            packs: (first_pack..(first_pack + PACKS_PER_INDEX).min(packs))
                .map(|p| IndexedPack {
                    id: PackId(id(p, 1)),
                    size: 16 << 20,
                    blobs: (0..BLOBS_PER_PACK)
                        .map(|i| {
                            blob += 1;
                            PackedBlob {
                                blob_type: BlobType::Data,
                                id: BlobId(id(blob, 0)),
                                offset: 10 + i * 16_000,
                                stored_len: 15_000,
                                raw_len: 16_384,
                            }
                        })
                        .collect(),
                })
                .collect(),
        };
        cache
            .add_index_file(&IndexId(id(first_pack, 2)), &file)
            .expect("insert");
    }
    let insert_s = started.elapsed().as_secs_f64();

    let probes = 200_000u64;
    let started = Instant::now();
    for n in 0..probes {
        let target = 1 + (n.wrapping_mul(2_654_435_761) % blob);
        assert!(
            cache
                .lookup(BlobType::Data, &BlobId(id(target, 0)))
                .expect("lookup")
                .is_some()
        );
    }
    let hit_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for n in 0..probes {
        assert!(
            !cache
                .contains(BlobType::Data, &BlobId(id(n, 99)))
                .expect("lookup")
        );
    }
    let miss_s = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.path().join("index.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "rows {blob:>10}  inserts/s {:>9.0}  hit lookups/s {:>9.0}  miss lookups/s {:>9.0}  file {:.0} MiB",
        blob as f64 / insert_s,
        probes as f64 / hit_s,
        probes as f64 / miss_s,
        size as f64 / (1 << 20) as f64
    );
}
