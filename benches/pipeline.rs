//! Per-stage throughput and the whole backup pipeline (cut → id → compress + encrypt → pack)
//! over 256 MiB of realistic `pgbench_accounts` heap pages, on one core and on all cores.
//!
//! `cargo bench --bench pipeline`. Before measuring it prints the zstd ratio of the data (whole
//! buffer and 8 KiB pieces, levels 1-3), chunk statistics, and the CPU time / wall time of the
//! all-cores pipeline. `PGCAIRN_BENCH_DUMP=path` also writes the generated pages to `path`.
//! Without `--bench` (`cargo test --benches`) it runs each benchmark once on 8 MiB.

mod heap_pages;

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use pgcairn::chunk::{ChunkerParams, Cutter, FileClass, GearTable, blob_hash};
use pgcairn::crypto::{self, Key32};
use pgcairn::repo::id::BlobId;
use pgcairn::repo::object::append_payload;
use pgcairn::repo::pack::{BlobType, PackWriter, seal_blob};

const DATA_LEN: usize = 256 << 20;
/// Stage benches work on pieces of one relation chunk (one 8 KiB page by default).
const PIECE: usize = pgcairn::chunk::PAGE_SIZE as usize;
const PACK_SIZE: usize = 16 << 20;
/// As the repository's packer: room for a full pack and the envelope that crosses the limit.
const PACK_CAPACITY: usize = PACK_SIZE + (4 << 20);
const LEVEL: i32 = pgcairn::repo::DEFAULT_COMPRESSION_LEVEL;
const SEED: u64 = 42;

struct Keys {
    data: Key32,
    chunk_id: Key32,
    gear: GearTable,
}

impl Keys {
    fn new() -> Self {
        Keys {
            data: Key32([3; 32]),
            chunk_id: Key32([2; 32]),
            gear: GearTable::derive(&Key32([1; 32])),
        }
    }
}

/// What one pipeline run produced, to check it and to keep the optimiser honest.
#[derive(Default, Debug, Clone, Copy)]
struct PipelineStats {
    chunks: u64,
    raw: u64,
    stored: u64,
    packs: u64,
}

/// Chunks `data` to the end, returning the number of chunks.
fn cut_all(cutter: &Cutter<'_>, data: &[u8]) -> usize {
    let mut pos = 0;
    let mut chunks = 0;
    while pos < data.len() {
        pos += cutter.next_cut(&data[pos..], pos as u64);
        chunks += 1;
    }
    chunks
}

fn cut_ranges(cutter: &Cutter<'_>, data: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::with_capacity(data.len() / (16 << 10) + 1);
    let mut pos = 0;
    while pos < data.len() {
        let len = cutter.next_cut(&data[pos..], pos as u64);
        ranges.push((pos, pos + len));
        pos += len;
    }
    ranges
}

/// Sequential packing shared by both pipelines: seals a pack once it passes 16 MiB (header,
/// pack id hash) and drops its bytes.
struct Sink<'k> {
    key: &'k Key32,
    rng: ChaCha20Rng,
    writer: PackWriter,
    stats: PipelineStats,
}

impl<'k> Sink<'k> {
    fn new(key: &'k Key32) -> Self {
        Sink {
            key,
            rng: ChaCha20Rng::seed_from_u64(SEED),
            writer: PackWriter::with_capacity(PACK_CAPACITY),
            stats: PipelineStats::default(),
        }
    }

    fn add(&mut self, id: BlobId, envelope: &[u8], raw_len: usize) {
        self.writer
            .add(BlobType::Data, id, envelope, raw_len as u32);
        self.stats.chunks += 1;
        self.stats.raw += raw_len as u64;
        self.stats.stored += envelope.len() as u64;
        if self.writer.len() > PACK_SIZE {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.writer.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut self.writer, PackWriter::with_capacity(PACK_CAPACITY));
        let (id, bytes, _header) = full.finish(self.key, &mut self.rng).expect("finish pack");
        black_box((id, bytes));
        self.stats.packs += 1;
    }

    fn finish(mut self) -> PipelineStats {
        self.flush();
        self.stats
    }
}

fn pipeline_1thread(keys: &Keys, data: &[u8], level: i32, rng: &mut ChaCha20Rng) -> PipelineStats {
    let params = ChunkerParams::default();
    let cutter = Cutter::new(&keys.gear, &params, FileClass::Relation);
    let mut sink = Sink::new(&keys.data);
    let mut pos = 0;
    while pos < data.len() {
        let len = cutter.next_cut(&data[pos..], pos as u64);
        let chunk = &data[pos..pos + len];
        let id = BlobId(blob_hash(&keys.chunk_id, chunk));
        let envelope = seal_blob(&keys.data, BlobType::Data, &id, chunk, level, rng).expect("seal");
        sink.add(id, &envelope, len);
        pos += len;
    }
    sink.finish()
}

static RNG_STREAMS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// One nonce generator per rayon worker.
    static THREAD_RNG: RefCell<ChaCha20Rng> = RefCell::new({
        let mut rng = ChaCha20Rng::seed_from_u64(SEED);
        rng.set_stream(RNG_STREAMS.fetch_add(1, Ordering::Relaxed));
        rng
    });
}

/// Chunks sealed in parallel per batch: bounded memory, as in a streaming backup, and freed
/// envelopes are reused by the next batch instead of faulting in fresh pages.
const BATCH: usize = 1024;

fn pipeline_all_cores(keys: &Keys, data: &[u8]) -> PipelineStats {
    let params = ChunkerParams::default();
    let cutter = Cutter::new(&keys.gear, &params, FileClass::Relation);
    let ranges = cut_ranges(&cutter, data);
    let mut sink = Sink::new(&keys.data);
    for batch in ranges.chunks(BATCH) {
        let sealed: Vec<(BlobId, Vec<u8>, usize)> = batch
            .par_iter()
            .map(|&(start, end)| {
                let chunk = &data[start..end];
                let id = BlobId(blob_hash(&keys.chunk_id, chunk));
                let envelope = THREAD_RNG.with(|rng| {
                    seal_blob(
                        &keys.data,
                        BlobType::Data,
                        &id,
                        chunk,
                        LEVEL,
                        &mut *rng.borrow_mut(),
                    )
                    .expect("seal")
                });
                (id, envelope, chunk.len())
            })
            .collect();
        for (id, envelope, raw_len) in &sealed {
            sink.add(*id, envelope, *raw_len);
        }
    }
    sink.finish()
}

/// User + system CPU time of this process so far, from /proc (Linux only).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every mainstream Linux configuration.
    Some(Duration::from_millis(ticks * 10))
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

/// Enough measurement time for 10 samples of two iterations of `per_iter`.
fn budget(per_iter: Duration) -> Duration {
    (per_iter * 20).max(Duration::from_secs(2))
}

fn setup_group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Bytes(bytes as u64));
    g
}

/// Times one run of `f` to size the measurement, then benchmarks it.
fn run<R>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut f: impl FnMut() -> R) {
    let (_, once) = time(&mut f);
    g.measurement_time(budget(once));
    g.bench_function(name, |b| b.iter(|| black_box(f())));
}

/// Compression ratio and speed of `append_payload` at `level` over 8 KiB pieces.
fn piece_compression(data: &[u8], level: i32) -> (f64, f64) {
    let mut out = Vec::with_capacity(2 * PIECE);
    let mut stored = 0;
    let (_, t) = time(|| {
        for piece in data.chunks(PIECE) {
            out.clear();
            append_payload(&mut out, piece, level).expect("compress");
            stored += out.len();
        }
    });
    (data.len() as f64 / stored as f64, gbps(data.len(), t))
}

fn benches(c: &mut Criterion) {
    // Criterion runs each benchmark once without `--bench` (`cargo test --benches`): a smaller
    // buffer keeps that quick in debug builds.
    let measuring = std::env::args().any(|a| a == "--bench");
    let len = if measuring { DATA_LEN } else { 8 << 20 };
    heap_pages::base64_selftest();
    let (data, gen_time) = time(|| heap_pages::generate(len / heap_pages::PAGE_SIZE, SEED));
    heap_pages::check(&data);
    if let Some(path) = std::env::var_os("PGCAIRN_BENCH_DUMP") {
        std::fs::write(&path, &data).expect("write PGCAIRN_BENCH_DUMP");
    }
    let pages = data.len() / heap_pages::PAGE_SIZE;
    let mib = data.len() >> 20;
    println!(
        "data: {mib} MiB, {pages} heap pages of pgbench_accounts ({} rows), generated in {:.2} s",
        pages * heap_pages::TUPLES_PER_PAGE,
        gen_time.as_secs_f64()
    );
    let (ratio, zstd_time) = time(|| heap_pages::zstd_ratio(&data, LEVEL));
    println!(
        "data: zstd -{LEVEL} ratio of the whole {mib} MiB: {ratio:.2}x ({:.2} GB/s in one frame)",
        gbps(data.len(), zstd_time)
    );
    assert!(
        (1.7..2.7).contains(&ratio),
        "generated pages should compress about 2x like real data, not {ratio:.2}x"
    );
    for level in [1, 2, 3] {
        let (ratio, speed) = piece_compression(&data, level);
        println!("data: zstd -{level} over 8 KiB pieces: {ratio:.2}x at {speed:.2} GB/s");
    }

    let keys = Keys::new();
    let params = ChunkerParams::default();
    let relation = Cutter::new(&keys.gear, &params, FileClass::Relation);
    let bytes = Cutter::new(&keys.gear, &params, FileClass::Other);
    let aad = [7u8; 43]; // the size of a blob envelope's associated data

    // Sanity checks on one run of each pipeline.
    let n_rel = cut_all(&relation, &data);
    let n_bytes = cut_all(&bytes, &data);
    println!(
        "chunks: relation class {n_rel} (avg {:.1} KiB), bytes class {n_bytes} (avg {:.1} KiB)",
        data.len() as f64 / n_rel as f64 / 1024.0,
        data.len() as f64 / n_bytes as f64 / 1024.0
    );
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let (one, t_one) = time(|| pipeline_1thread(&keys, &data, LEVEL, &mut rng));
    assert_eq!(one.raw, data.len() as u64);
    assert_eq!(one.chunks, n_rel as u64);
    println!(
        "pipeline: {} chunks into {} packs, stored {:.1} MiB: {:.2}x on relation chunks \
         (with envelope overhead)",
        one.chunks,
        one.packs,
        one.stored as f64 / (1 << 20) as f64,
        one.raw as f64 / one.stored as f64
    );
    let cpu0 = process_cpu_time();
    let (all, t_all) = time(|| pipeline_all_cores(&keys, &data));
    let cpu1 = process_cpu_time();
    assert_eq!(all.raw, data.len() as u64);
    assert_eq!((all.chunks, all.packs), (one.chunks, one.packs));
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        println!(
            "pipeline/all_cores: {} rayon threads, CPU time / wall time = {:.2} \
             (first runs: 1 thread {:.2} GB/s, all cores {:.2} GB/s)",
            rayon::current_num_threads(),
            (b - a).as_secs_f64() / t_all.as_secs_f64(),
            gbps(data.len(), t_one),
            gbps(data.len(), t_all),
        );
    }

    // For comparison with the stage figures: BLAKE3 in one call, the pipeline at zstd -3.
    let (_, t) = time(|| blob_hash(&keys.chunk_id, &data));
    println!(
        "hash: keyed BLAKE3 of the whole buffer in one call: {:.2} GB/s",
        gbps(data.len(), t)
    );
    let (fast, t) = time(|| pipeline_1thread(&keys, &data, 3, &mut rng));
    println!(
        "pipeline: 1 thread at zstd -3: {:.2} GB/s, stored {:.2}x",
        gbps(data.len(), t),
        fast.raw as f64 / fast.stored as f64
    );

    let mut g = setup_group(c, "stage", data.len());
    run(&mut g, "cut_relation", || {
        cut_all(&relation, black_box(&data))
    });
    run(&mut g, "cut_bytes", || cut_all(&bytes, black_box(&data)));
    run(&mut g, "hash", || {
        for piece in black_box(&data).chunks(PIECE) {
            black_box(blob_hash(&keys.chunk_id, piece));
        }
    });
    let mut out = Vec::with_capacity(2 * PIECE);
    run(&mut g, "compress", || {
        for piece in black_box(&data).chunks(PIECE) {
            out.clear();
            append_payload(&mut out, piece, LEVEL).expect("compress");
            black_box(&out);
        }
    });
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    run(&mut g, "encrypt", || {
        for piece in black_box(&data).chunks(PIECE) {
            black_box(crypto::seal(&keys.data, &aad, piece, &mut rng));
        }
    });
    g.finish();

    let mut g = setup_group(c, "pipeline", data.len());
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    run(&mut g, "1thread", || {
        pipeline_1thread(&keys, black_box(&data), LEVEL, &mut rng)
    });
    run(&mut g, "all_cores", || {
        pipeline_all_cores(&keys, black_box(&data))
    });
    g.finish();
}

criterion::criterion_group!(pipeline, benches);
criterion::criterion_main!(pipeline);
