//! How much a second backup adds for a given relation-file chunk size, measured on two copies
//! of a stopped cluster (S0 before and S1 after a "day" of changes).
//!
//! ```text
//! cargo run --release --example chunk_delta -- S0 S1 [MIN,AVG,MAX]...
//! ```
//!
//! Sizes take an optional K/M suffix (`8K,16K,64K`). Without any, a fixed list of candidates is
//! measured. For every relation file (digits, optional `_fsm`/`_vm`/`_init`, optional `.N`,
//! under `base/` and `global/`) in both trees:
//!
//! * both trees are cut with pgcairn's page-aligned cutter; every S0 chunk counts as stored;
//! * an S1 chunk whose id is neither in S0 nor already added is new: it costs its real sealed
//!   size (`seal_blob`: zstd-3 + AEAD) plus an estimated pack-header and index entry;
//! * every S1 file whose chunk-id sequence differs from S0's rewrites its whole chunk list
//!   (estimated per entry; a finer per-list-blob estimate is printed too);
//! * the ideal is the page delta: S1 pages that differ from S0 at the same offset (or are new),
//!   concatenated in file order, compressed as one zstd-3 stream (as bench/pagediff.py does).
//!
//! Measured: chunk boundaries, dedup, zstd and envelope sizes, the ideal. Estimated: metadata.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use pgcairn::chunk::{
    ChunkSizes, ChunkerParams, Cutter, FileClass, GearTable, PAGE_SIZE, blob_hash,
};
use pgcairn::crypto::{ENVELOPE_OVERHEAD, Key32};
use pgcairn::repo::id::BlobId;
use pgcairn::repo::pack::{BlobType, seal_blob};
use pgcairn::repo::tree::ChunkRef;
use pgcairn::repo::tree::split::{INLINE_ENTRIES, list_runs};

/// Estimated metadata of one new blob: its pack-header entry plus its index entry (postcard
/// `PackedBlob` is 1 + 32 + three varints, ~40-43 bytes; rounded up).
const BLOB_META: u64 = 2 * 45;
/// Estimated size of one chunk reference in a chunk list (postcard `ChunkRef`: 32-byte id +
/// varint length, ~35 bytes; rounded up).
const REF_META: u64 = 40;
const ZSTD_LEVEL: i32 = 3;
/// What `seal_blob` adds to the (compressed) content: nonce, compression marker, tag.
const ENVELOPE: u64 = ENVELOPE_OVERHEAD as u64 + 1;
const PAGE: usize = PAGE_SIZE as usize;

const DEFAULT_SETS: &[(u32, u32, u32)] = &[
    (8, 8, 8),
    (8, 16, 64),
    (8, 16, 32),
    (16, 16, 16),
    (8, 32, 128),
    (16, 32, 64),
    (32, 32, 32),
    (8, 64, 256),
];

/// A relation file present in S1, with its S0 counterpart (empty if new). Files only in S0
/// have an empty `new`.
struct RelFile {
    in_s1: bool,
    old: Vec<u8>,
    new: Vec<u8>,
}

fn is_relation_name(name: &str) -> bool {
    let (base, seg) = match name.split_once('.') {
        Some((b, s)) => (b, Some(s)),
        None => (name, None),
    };
    if seg.is_some_and(|s| s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    let node = ["_fsm", "_vm", "_init"]
        .iter()
        .find_map(|sfx| base.strip_suffix(sfx))
        .unwrap_or(base);
    !node.is_empty() && node.bytes().all(|c| c.is_ascii_digit())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for e in entries.flatten() {
        let ft = e.file_type().expect("file type");
        let rel = dir.join(e.file_name());
        if ft.is_dir() {
            walk(root, &rel, out);
        } else if ft.is_file() && e.file_name().to_str().is_some_and(is_relation_name) {
            out.push(rel);
        }
    }
}

fn relation_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(root, Path::new("base"), &mut out);
    walk(root, Path::new("global"), &mut out);
    out.sort();
    out
}

fn parse_set(s: &str) -> ChunkSizes {
    pgcairn::cli::init::parse_sizes(s).unwrap_or_else(|e| panic!("{e}"))
}

fn k(n: u32) -> String {
    format!("{}K", n / 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// Chunk boundaries (offset, len) of one file.
fn cut(cutter: &Cutter, data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(data.len() / PAGE + 1);
    let mut pos = 0;
    while pos < data.len() {
        let len = cutter.next_cut(&data[pos..], pos as u64);
        assert!(len > 0);
        out.push((pos, len));
        pos += len;
    }
    out
}

struct Row {
    sizes: ChunkSizes,
    chunks_s0: u64,
    chunks_s1: u64,
    new_chunks: u64,
    new_raw: u64,
    /// Sum of `seal_blob` envelope lengths of the new chunks (zstd-3 + 41 bytes each: nonce, marker, tag).
    sealed: u64,
    blob_meta: u64,
    /// Conservative: whole chunk list of every S1 file with a new chunk.
    list_meta: u64,
    /// Finer: only the chunk-list blobs (runs of `list_runs`) that contain a new chunk, plus
    /// the new chunk-list blobs' own envelope and entries; inline lists as whole.
    list_meta_runs: u64,
    secs: f64,
}

impl Row {
    fn total(&self) -> u64 {
        self.sealed + self.blob_meta + self.list_meta
    }
}

/// One file's chunk ids in S0, and (offset, length, id) of its chunks in S1.
type FileChunks = (Vec<[u8; 32]>, Vec<(usize, usize, [u8; 32])>);

fn measure(files: &[RelFile], sizes: ChunkSizes, gear: &GearTable) -> Row {
    let t = Instant::now();
    let params = ChunkerParams {
        relation: sizes,
        ..ChunkerParams::default()
    };
    params.validate().expect("chunk sizes");
    let id_key = Key32([43; 32]);
    let data_key = Key32([44; 32]);
    let cutter = Cutter::new(gear, &params, FileClass::Relation);

    // Chunk ids of S0 and S1, per file, in parallel.
    let per_file: Vec<FileChunks> = files
        .par_iter()
        .map(|f| {
            let old: Vec<[u8; 32]> = cut(&cutter, &f.old)
                .into_iter()
                .map(|(o, l)| blob_hash(&id_key, &f.old[o..o + l]))
                .collect();
            let new = cut(&cutter, &f.new)
                .into_iter()
                .map(|(o, l)| (o, l, blob_hash(&id_key, &f.new[o..o + l])))
                .collect();
            (old, new)
        })
        .collect();

    let mut stored: HashSet<[u8; 32]> = HashSet::new();
    let mut chunks_s0 = 0u64;
    for (old, _) in &per_file {
        chunks_s0 += old.len() as u64;
        stored.extend(old.iter().copied());
    }

    // Walk S1 in file order: new chunks (deduplicated among themselves) and list metadata.
    let mut new_chunks: Vec<(usize, usize, usize, [u8; 32])> = Vec::new(); // file, off, len, id
    let (mut chunks_s1, mut list_meta, mut list_meta_runs) = (0u64, 0u64, 0u64);
    for (fi, (_, new)) in per_file.iter().enumerate() {
        if !files[fi].in_s1 {
            continue;
        }
        chunks_s1 += new.len() as u64;
        let mut is_new = vec![false; new.len()];
        for (i, &(o, l, id)) in new.iter().enumerate() {
            if !stored.contains(&id) {
                is_new[i] = true;
                stored.insert(id);
                new_chunks.push((fi, o, l, id));
            }
        }
        // A file whose chunks are all known may still be a new arrangement of them (a chunk
        // moved), so compare the id sequence with S0's to decide whether its list changes.
        let ids: Vec<[u8; 32]> = new.iter().map(|c| c.2).collect();
        if ids == per_file[fi].0 {
            continue;
        }
        list_meta += REF_META * new.len() as u64;
        if new.len() <= INLINE_ENTRIES {
            list_meta_runs += REF_META * new.len() as u64;
        } else {
            // Level-0 chunk-list blobs: runs cut by content (entry ids), so a run without a
            // new entry is the same blob as in S0 (if its neighbours' cuts also held; close
            // enough). Upper levels (one ref per run) are charged in full.
            let refs: Vec<ChunkRef> = new
                .iter()
                .map(|&(_, l, id)| ChunkRef {
                    id: BlobId(id),
                    len: l as u64,
                })
                .collect();
            let runs = list_runs(&refs);
            let mut start = 0;
            for run in &runs {
                if is_new[start..start + run.len()].iter().any(|&b| b) {
                    list_meta_runs += REF_META * run.len() as u64 + ENVELOPE + BLOB_META;
                }
                start += run.len();
            }
            list_meta_runs += REF_META * runs.len() as u64;
        }
    }

    // Seal every new chunk for real: zstd-3 and XChaCha20-Poly1305, as the packer does.
    let sealed: u64 = new_chunks
        .par_iter()
        .map_init(
            || ChaCha20Rng::seed_from_u64(7),
            |rng, &(fi, o, l, id)| {
                seal_blob(
                    &data_key,
                    BlobType::Data,
                    &BlobId(id),
                    &files[fi].new[o..o + l],
                    ZSTD_LEVEL,
                    rng,
                )
                .expect("seal")
                .len() as u64
            },
        )
        .sum();

    Row {
        sizes,
        chunks_s0,
        chunks_s1,
        new_chunks: new_chunks.len() as u64,
        new_raw: new_chunks.iter().map(|c| c.2 as u64).sum(),
        sealed,
        blob_meta: BLOB_META * new_chunks.len() as u64,
        list_meta,
        list_meta_runs,
        secs: t.elapsed().as_secs_f64(),
    }
}

/// The ideal page delta, its page counts, and the changed pages' individual zstd-3 sizes.
struct Ideal {
    changed_pages: u64,
    total_pages: u64,
    raw: u64,
    zst: u64,
    /// Sum of zstd-3 sizes of each changed page compressed alone (what 8K chunks pay before
    /// the envelope): shows the cost of losing cross-page compression context.
    zst_per_page: u64,
}

fn ideal(files: &[RelFile]) -> Ideal {
    let changed: Vec<Vec<u8>> = files
        .par_iter()
        .map(|f| {
            let mut out = Vec::new();
            for (i, page) in f.new.chunks(PAGE).enumerate() {
                let o = i * PAGE;
                let old = f.old.get(o..(o + page.len()).min(f.old.len()));
                if old != Some(page) {
                    out.extend_from_slice(page);
                }
            }
            out
        })
        .collect();
    let total_pages: u64 = files
        .iter()
        .map(|f| f.new.len().div_ceil(PAGE) as u64)
        .sum();
    let raw: u64 = changed.iter().map(|c| c.len() as u64).sum();
    let (zst, zst_per_page) = rayon::join(
        || {
            let mut enc = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL).expect("zstd");
            for c in &changed {
                enc.write_all(c).expect("zstd write");
            }
            enc.finish().expect("zstd finish").len() as u64
        },
        || {
            changed
                .par_iter()
                .map(|c| {
                    c.chunks(PAGE)
                        .map(|p| zstd::bulk::compress(p, ZSTD_LEVEL).expect("zstd").len() as u64)
                        .sum::<u64>()
                })
                .sum()
        },
    );
    Ideal {
        changed_pages: changed.iter().map(|c| c.len().div_ceil(PAGE) as u64).sum(),
        total_pages,
        raw,
        zst,
        zst_per_page,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: chunk_delta S0 S1 [MIN,AVG,MAX]...");
        std::process::exit(2);
    }
    let (s0, s1) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let sets: Vec<ChunkSizes> = if args.len() > 2 {
        args[2..].iter().map(|s| parse_set(s)).collect()
    } else {
        DEFAULT_SETS
            .iter()
            .map(|&(a, b, c)| ChunkSizes {
                min: a * 1024,
                avg: b * 1024,
                max: c * 1024,
            })
            .collect()
    };

    let t = Instant::now();
    let names1 = relation_files(&s1);
    let names0 = relation_files(&s0);
    let set0: HashSet<&PathBuf> = names0.iter().collect();
    let set1: HashSet<&PathBuf> = names1.iter().collect();
    let mut all: Vec<(PathBuf, bool, bool)> = names1
        .iter()
        .map(|r| (r.clone(), set0.contains(r), true))
        .chain(
            names0
                .iter()
                .filter(|r| !set1.contains(r))
                .map(|r| (r.clone(), true, false)),
        )
        .collect();
    all.sort();
    let files: Vec<RelFile> = all
        .par_iter()
        .map(|(rel, in0, in1)| {
            let read = |root: &Path, present: bool| {
                if present {
                    std::fs::read(root.join(rel))
                        .unwrap_or_else(|e| panic!("read {}: {e}", root.join(rel).display()))
                } else {
                    Vec::new()
                }
            };
            RelFile {
                old: read(&s0, *in0),
                new: read(&s1, *in1),
                in_s1: *in1,
            }
        })
        .collect();
    let s0_bytes: u64 = files.iter().map(|f| f.old.len() as u64).sum();
    let s1_bytes: u64 = files.iter().map(|f| f.new.len() as u64).sum();
    println!(
        "relation files: S1 {} ({:.1} MiB), S0 {} ({:.1} MiB); new in S1 {}, gone in S1 {}; read in {:.1} s",
        names1.len(),
        mib(s1_bytes),
        names0.len(),
        mib(s0_bytes),
        names1.len() - names1.iter().filter(|r| set0.contains(r)).count(),
        names0.len() - names0.iter().filter(|r| set1.contains(r)).count(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let id = ideal(&files);
    println!(
        "changed pages: {} of {} ({:.1}%); ideal page delta: {:.1} MiB raw, {:.2} MiB zstd-3 one stream \
         ({:.2} MiB if each page is compressed alone) [{:.1} s]",
        id.changed_pages,
        id.total_pages,
        100.0 * id.changed_pages as f64 / id.total_pages as f64,
        mib(id.raw),
        mib(id.zst),
        mib(id.zst_per_page),
        t.elapsed().as_secs_f64()
    );

    let gear = GearTable::derive(&Key32([42; 32]));
    println!();
    println!(
        "| min | avg | max | chunks S1 | new chunks | new raw MiB | new data MiB | metadata MiB | total MiB | ratio | list-runs meta MiB | ratio (runs) | index rows/GiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for &sizes in &sets {
        let r = measure(&files, sizes, &gear);
        let new_data = r.sealed + r.blob_meta;
        let total_runs = new_data + r.list_meta_runs;
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            k(sizes.min),
            k(sizes.avg),
            k(sizes.max),
            r.chunks_s1,
            r.new_chunks,
            mib(r.new_raw),
            mib(new_data),
            mib(r.list_meta),
            mib(r.total()),
            r.total() as f64 / id.zst as f64,
            mib(r.list_meta_runs),
            total_runs as f64 / id.zst as f64,
            r.chunks_s1 as f64 / (s1_bytes as f64 / (1u64 << 30) as f64),
        );
        std::io::stdout().flush().ok();
        rows.push(r);
    }

    println!();
    println!(
        "details (new data = sealed envelopes + {BLOB_META} B/blob pack+index entries; metadata = {REF_META} B/ref, whole lists):"
    );
    for r in &rows {
        let env = ENVELOPE * r.new_chunks;
        let zst = r.sealed - env;
        let overhead = env + r.blob_meta;
        println!(
            "  {}/{}/{}: S0 chunks {}, S1 chunks {}, mean S1 chunk {:.1} KiB; new chunks' zstd payload {:.2} MiB \
             ({:.3}x ideal), envelopes {:.2} MiB, pack+index entries {:.2} MiB; per-chunk overhead \
             (envelope + entries) = {:.1}% of new data bytes, {:.1}% incl. lists; {:.1} s",
            k(r.sizes.min),
            k(r.sizes.avg),
            k(r.sizes.max),
            r.chunks_s0,
            r.chunks_s1,
            s1_bytes as f64 / r.chunks_s1 as f64 / 1024.0,
            mib(zst),
            zst as f64 / id.zst as f64,
            mib(env),
            mib(r.blob_meta),
            100.0 * overhead as f64 / (r.sealed + r.blob_meta) as f64,
            100.0 * (overhead + r.list_meta) as f64 / r.total() as f64,
            r.secs,
        );
    }
}
