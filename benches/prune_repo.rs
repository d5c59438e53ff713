//! Builds a synthetic repository of about `CHUNKS` distinct data chunks for the prune and verify
//! benchmark (`benches/prune_verify/run.sh`), through the library's own write path (packer,
//! chunk lists, trees, snapshots), with no PostgreSQL.
//!
//! `cargo bench --bench prune_repo -- CHUNKS DIR` writes `DIR/repo` (test-only key derivation:
//! run the CLI on it with `PGCAIRN_INSECURE_TEST_KDF=1`) and `DIR/password`. `PACK_SIZE_MIB`
//! (default 1) sets the repository's pack size.
//!
//! Shape: one cluster, 10 snapshots a day apart, of one database directory of files of 1000
//! chunks each (256-1024 bytes, half random bytes: they compress a little), and the snapshot's
//! own WAL segment in `pg_wal/` (a page naming it, then zeros), so that verify finds it whole. Every day a few
//! "hot" files (1 in 32) are rewritten whole and 8% of the chunks of every other file are
//! replaced at random, ~10.7% of the chunks in all. Hot files and the other files' changes go
//! through separate packers, so forgetting the first five snapshots leaves the hot files' old
//! packs wholly unused (deleted), the first days' other packs 28-34% unused (repacked at the
//! default `--max-unused` of 25%) and later ones mostly used (kept).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use pgcairn::crypto::KdfParams;
use pgcairn::repo::id::BlobId;
use pgcairn::repo::pack::BlobType;
use pgcairn::repo::random::RandomSource;
use pgcairn::repo::snapshot::{PostgresBackup, Snapshot, Summary};
use pgcairn::repo::tree::{ChunkRef, Node, NodeKind};
use pgcairn::repo::{IndexedRepository, InitOptions, Packer, Repository};
use pgcairn::storage::Storage;

const PASSWORD: &str = "prune benchmark";
const DAYS: u64 = 10;
const CHUNKS_PER_FILE: usize = 1000;
/// One file in this many is rewritten every day.
const HOT_EVERY: usize = 32;
/// The share of another file's chunks replaced every day.
const CHANGED: f64 = 0.08;
const MIN_CHUNK: usize = 256;
const MAX_CHUNK: usize = 1024;
const SYSTEM_ID: u64 = 7_401_234_567_890_123_456;
/// 2026-01-01T02:00:00Z, the first snapshot's start.
const FIRST_NS: i64 = 1_767_232_800_000_000_000;
const DAY_NS: i64 = 86_400_000_000_000;
const WAL_SEGMENT_SIZE: usize = 16 << 20;
const WAL_PAGE: usize = 8192;

/// splitmix64: fast, and good enough to make every chunk's bytes distinct.
struct Mix(u64);

impl Mix {
    fn new(seed: u64) -> Self {
        Mix(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64) < p * (1u64 << 53) as f64
    }
}

/// A chunk's content: 256-1024 bytes, words of random bytes alternating with words of text.
fn chunk_bytes(seed: u64) -> Vec<u8> {
    let mut mix = Mix::new(seed);
    let len = MIN_CHUNK + mix.below((MAX_CHUNK - MIN_CHUNK + 1) as u64) as usize;
    let mut out = Vec::with_capacity(len + 8);
    let mut word = 0u64;
    while out.len() < len {
        let w = mix.next();
        if word % 2 == 0 {
            out.extend_from_slice(&w.to_le_bytes());
        } else {
            out.extend_from_slice(b"row ");
            out.extend_from_slice(format!("{:04}", w % 10_000).as_bytes());
        }
        word += 1;
    }
    out.truncate(len);
    out
}

struct File {
    name: String,
    hot: bool,
    chunks: Vec<ChunkRef>,
}

/// Replaces the chunks `pick` chooses with new content stored through `packer`; returns how
/// many were stored.
fn rewrite(
    packer: &Packer<'_>,
    file: &mut File,
    seed: u64,
    mut pick: impl FnMut(usize, &mut Mix) -> bool,
) -> usize {
    let mut mix = Mix::new(seed);
    let mut new: Vec<(usize, Vec<u8>)> = Vec::new();
    for i in 0..file.chunks.len() {
        if pick(i, &mut mix) {
            new.push((i, chunk_bytes(mix.next())));
        }
    }
    let ids: Vec<(BlobId, &[u8])> = new
        .iter()
        .map(|(_, data)| (packer.blob_id(data), data.as_slice()))
        .collect();
    let stored = packer
        .add_with_ids(BlobType::Data, &ids)
        .expect("storing chunks");
    for ((i, data), (id, _)) in new.iter().zip(&ids) {
        file.chunks[*i] = ChunkRef {
            id: *id,
            len: data.len() as u64,
        };
    }
    stored
}

fn node(name: &str, day: u64, kind: NodeKind) -> Node {
    let mtime_ns = FIRST_NS + day as i64 * DAY_NS;
    Node {
        name: name.as_bytes().to_vec(),
        mode: 0o600,
        uid: 26,
        gid: 26,
        mtime_ns,
        ctime_ns: mtime_ns,
        inode: 0,
        kind,
    }
}

/// The WAL segment a snapshot of `day` needs to reach consistency.
fn segment_name(day: u64) -> String {
    format!("00000001{:016X}", 3 + day)
}

/// The snapshot's own WAL segment in its `pg_wal/`, as verify expects it: a first page naming
/// the segment, then zeros (one blob shared by every segment).
fn wal_segment(packer: &Packer<'_>, day: u64) -> Node {
    let name = segment_name(day);
    let mut first = name.clone().into_bytes();
    first.resize(WAL_PAGE, 0);
    let mut chunks = vec![(first, 1)];
    chunks.push((vec![0; WAL_PAGE], WAL_SEGMENT_SIZE / WAL_PAGE - 1));
    let mut refs = Vec::new();
    for (data, times) in chunks {
        let id = packer.add(BlobType::Data, &data).expect("storing WAL");
        refs.extend((0..times).map(|_| ChunkRef {
            id,
            len: WAL_PAGE as u64,
        }));
    }
    let content = packer.add_chunk_list(refs).expect("storing a chunk list");
    node(
        &name,
        day,
        NodeKind::File {
            size: WAL_SEGMENT_SIZE as u64,
            content,
        },
    )
}

fn snapshot(day: u64, root: Vec<BlobId>, summary: Summary) -> Snapshot {
    let started_ns = FIRST_NS + day as i64 * DAY_NS;
    let segment = segment_name(day);
    Snapshot {
        program_version: "prune_repo benchmark".into(),
        started_ns,
        finished_ns: started_ns + 60_000_000_000,
        hostname: "bench".into(),
        tags: vec![],
        parent: None,
        root,
        postgres: Some(PostgresBackup {
            server_version_num: 150018,
            system_identifier: SYSTEM_ID,
            pgdata: b"/var/lib/postgresql/15/main".to_vec(),
            timeline: 1,
            start_lsn: ((3 + day) << 24) | 0x28,
            stop_lsn: ((3 + day) << 24) | 0x138,
            start_wal: segment.clone(),
            stop_wal: segment,
            wal_segment_size: WAL_SEGMENT_SIZE as u64,
            backup_label: vec![],
            tablespace_map: None,
            data_checksums: true,
            tablespaces: vec![],
            bad_pages: vec![],
            wal_missing: vec![],
            cluster_name: None,
        }),
        summary,
    }
}

/// One day's changes (none on day 0, when every chunk is new) and its snapshot.
fn day(repo: &IndexedRepository, files: &mut [File], day: u64) -> (u64, usize) {
    let hot = repo.packer();
    let cold = repo.packer();
    let stored: usize = files
        .par_iter_mut()
        .enumerate()
        .map(|(n, file)| {
            let seed = (day << 40) ^ ((n as u64) << 8);
            if day == 0 || file.hot {
                let packer = if file.hot { &hot } else { &cold };
                rewrite(packer, file, seed, |_, _| true)
            } else {
                rewrite(&cold, file, seed, |_, mix| mix.chance(CHANGED))
            }
        })
        .sum();
    let nodes: Vec<Node> = files
        .par_iter()
        .map(|file| {
            let packer = if file.hot { &hot } else { &cold };
            let content = packer
                .add_chunk_list(file.chunks.clone())
                .expect("storing a chunk list");
            let size = file.chunks.iter().map(|c| c.len).sum();
            node(&file.name, day, NodeKind::File { size, content })
        })
        .collect();
    let bytes: u64 = nodes
        .iter()
        .map(|n| match &n.kind {
            NodeKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    let files_n = nodes.len() as u64;
    let database = cold.add_dir(nodes).expect("storing a directory");
    let base = cold
        .add_dir(vec![node("16384", day, NodeKind::Dir { trees: database })])
        .expect("storing a directory");
    let pg_wal = cold
        .add_dir(vec![wal_segment(&cold, day)])
        .expect("storing a directory");
    let root = cold
        .add_dir(vec![
            node("base", day, NodeKind::Dir { trees: base }),
            node("pg_wal", day, NodeKind::Dir { trees: pg_wal }),
        ])
        .expect("storing a directory");
    let hot_stats = hot.flush().expect("flushing");
    let cold_stats = cold.flush().expect("flushing");
    let summary = Summary {
        files: files_n + 1,
        dirs: 4,
        logical_bytes: bytes + WAL_SEGMENT_SIZE as u64,
        read_bytes: bytes + WAL_SEGMENT_SIZE as u64,
        reused_files: 0,
        new_blobs: hot_stats.new_blobs + cold_stats.new_blobs,
        new_stored_bytes: hot_stats.new_stored_bytes + cold_stats.new_stored_bytes,
    };
    repo.save_snapshot(&snapshot(day, root, summary))
        .expect("saving a snapshot");
    (hot_stats.packs + cold_stats.packs, stored)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.expect("reading a directory");
                    let meta = e.metadata().expect("stat");
                    if meta.is_dir() {
                        dir_size(&e.path())
                    } else {
                        meta.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` adds `--bench`; the operands are the arguments that are not options.
    let operands: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [chunks, out] = operands.as_slice() else {
        eprintln!("usage: cargo bench --bench prune_repo -- CHUNKS DIR");
        std::process::exit(2);
    };
    let chunks: usize = chunks.parse().expect("CHUNKS is a number");
    let out = PathBuf::from(out);
    let pack_size_mib: u32 = std::env::var("PACK_SIZE_MIB")
        .ok()
        .map(|v| v.parse().expect("PACK_SIZE_MIB is a number"))
        .unwrap_or(1);
    if out.join("repo").exists() {
        eprintln!("{} exists; remove it first", out.join("repo").display());
        std::process::exit(2);
    }
    std::fs::create_dir_all(&out).expect("creating the output directory");
    std::fs::write(out.join("password"), PASSWORD).expect("writing the password file");

    // Day 0 stores every file; each later day stores the hot files again and CHANGED of the
    // others' chunks.
    let per_day = 1.0 / HOT_EVERY as f64 + (1.0 - 1.0 / HOT_EVERY as f64) * CHANGED;
    let first = chunks as f64 / (1.0 + (DAYS - 1) as f64 * per_day);
    let file_count = (first / CHUNKS_PER_FILE as f64).ceil().max(1.0) as usize;
    let mut files: Vec<File> = (0..file_count)
        .map(|n| File {
            name: format!("{}", 16_400 + n),
            hot: n % HOT_EVERY == HOT_EVERY / 2,
            chunks: vec![
                ChunkRef {
                    id: BlobId([0; 32]),
                    len: 0
                };
                CHUNKS_PER_FILE
            ],
        })
        .collect();

    let started = Instant::now();
    let options = InitOptions {
        pack_size: pack_size_mib << 20,
        ..InitOptions::with_kdf(KdfParams::INSECURE_FOR_TESTS)
    };
    let storage = Storage::local(&out.join("repo")).expect("opening storage");
    let gen_cache = out.join("generator-cache");
    let repo = Repository::init(storage, PASSWORD.as_bytes(), &options, RandomSource::System)
        .expect("init")
        .load_index(Some(&gen_cache))
        .expect("opening the index cache");

    let mut data_blobs = 0;
    for d in 0..DAYS {
        let (packs, stored) = day(&repo, &mut files, d);
        data_blobs += stored;
        eprintln!(
            "day {d}: {stored} new chunks, {packs} packs ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    let totals = |t| repo.with_cache(|c| c.blob_totals(t)).expect("counting");
    let (data, lists, trees) = (
        totals(BlobType::Data),
        totals(BlobType::ChunkList),
        totals(BlobType::Tree),
    );
    let packs = repo.with_cache(|c| c.packs()).expect("listing packs").len();
    drop(repo);
    std::fs::remove_dir_all(&gen_cache).expect("removing the generator's cache");
    // Every chunk is distinct; each day's WAL segment adds its first page, and all share one
    // page of zeros.
    assert_eq!(data.blobs, data_blobs as u64 + DAYS + 1);
    println!(
        "{} files of {CHUNKS_PER_FILE} chunks, {DAYS} snapshots; data blobs {} ({:.0} MiB raw, \
         {:.0} MiB stored, mean {} bytes); chunk-list blobs {}; tree blobs {}; packs {packs} \
         ({pack_size_mib} MiB); repository {:.0} MiB; {:.1} s",
        file_count,
        data.blobs,
        data.raw_bytes as f64 / (1 << 20) as f64,
        data.stored_bytes as f64 / (1 << 20) as f64,
        data.raw_bytes / data.blobs.max(1),
        lists.blobs,
        trees.blobs,
        dir_size(&out.join("repo")) as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
}
