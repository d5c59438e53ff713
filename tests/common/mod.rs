//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod archiving;
pub mod cairn;
pub mod json_schema;
pub mod pg;
pub mod pitr;
pub mod servers;

use std::path::{Path, PathBuf};

use pgcairn::chunk::{ChunkerParams, Cutter, FileClass, StreamChunker};
use pgcairn::crypto::KdfParams;
use pgcairn::repo::pack::BlobType;
use pgcairn::repo::random::RandomSource;
use pgcairn::repo::snapshot::{Snapshot, Summary};
use pgcairn::repo::tree::{ChunkRef, Node, NodeKind};
use pgcairn::repo::{IndexedRepository, InitOptions, Repository};
use pgcairn::storage::Storage;

pub const PASSWORD: &[u8] = b"correct horse battery staple";

pub fn init_options() -> InitOptions {
    InitOptions::with_kdf(KdfParams::INSECURE_FOR_TESTS)
}

/// A fresh repository in `dir/repo`.
pub fn init_repo(dir: &Path) -> Repository {
    let storage = Storage::local(&dir.join("repo")).unwrap();
    Repository::init(storage, PASSWORD, &init_options(), RandomSource::System).unwrap()
}

/// A fresh repository in `dir/repo` with its index cache in `dir/cache`.
pub fn init_indexed(dir: &Path) -> IndexedRepository {
    init_repo(dir).load_index(Some(&dir.join("cache"))).unwrap()
}

pub fn open_repo(dir: &Path) -> pgcairn::Result<Repository> {
    Repository::open(Storage::local(&dir.join("repo"))?, PASSWORD)
}

pub fn open_indexed(dir: &Path) -> pgcairn::Result<IndexedRepository> {
    open_repo(dir)?.load_index(Some(&dir.join("cache")))
}

/// Deterministic, partly compressible bytes.
pub fn sample_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i % 7 < 3 {
                b'a' + (i % 5) as u8
            } else {
                (state >> 33) as u8
            }
        })
        .collect()
}

/// Stores `data` as a file node through the chunker and packer.
pub fn store_file(
    packer: &pgcairn::repo::Packer<'_>,
    cutter: Cutter<'_>,
    name: &str,
    data: &[u8],
) -> Node {
    let mut refs = Vec::new();
    for chunk in StreamChunker::new(data, cutter) {
        let chunk = chunk.unwrap();
        let id = packer.add(BlobType::Data, &chunk).unwrap();
        refs.push(ChunkRef {
            id,
            len: chunk.len() as u64,
        });
    }
    let content = packer.add_chunk_list(refs).unwrap();
    node(
        name,
        NodeKind::File {
            size: data.len() as u64,
            content,
        },
    )
}

pub fn node(name: &str, kind: NodeKind) -> Node {
    Node {
        name: name.as_bytes().to_vec(),
        mode: 0o600,
        uid: 26,
        gid: 26,
        mtime_ns: 1_700_000_000_123_456_789,
        ctime_ns: 1_700_000_000_223_456_789,
        inode: 4242,
        kind,
    }
}

/// What `populate` stored, to compare against after reading it back.
pub struct Stored {
    pub files: Vec<(String, Vec<u8>)>,
    pub snapshot: Snapshot,
    pub snapshot_id: pgcairn::repo::id::SnapshotId,
}

/// Writes a small tree: a 2 MiB relation-like file (long enough for chunk-list blobs), a small
/// file, a symlink and a subdirectory; then a snapshot of it.
pub fn populate(repo: &mut IndexedRepository) -> Stored {
    let gear = repo.gear_table();
    let params: ChunkerParams = repo.config().chunker;
    let big = sample_bytes(2 << 20, 1);
    let small = sample_bytes(5000, 2);
    let packer = repo.packer();
    let big_node = store_file(
        &packer,
        Cutter::new(&gear, &params, FileClass::Relation),
        "16384",
        &big,
    );
    let small_node = store_file(
        &packer,
        Cutter::new(&gear, &params, FileClass::Other),
        "PG_VERSION",
        &small,
    );
    let link = node(
        "pg_wal_link",
        NodeKind::Symlink {
            target: b"/elsewhere/pg_wal".to_vec(),
        },
    );
    let sub = packer.add_dir(vec![big_node]).unwrap();
    let root = packer
        .add_dir(vec![
            small_node,
            link,
            node("base", NodeKind::Dir { trees: sub }),
        ])
        .unwrap();
    packer.flush().unwrap();
    let snapshot = Snapshot {
        program_version: "test".into(),
        started_ns: 1,
        finished_ns: 2,
        hostname: "db1".into(),
        tags: vec!["nightly".into()],
        parent: None,
        root,
        postgres: None,
        summary: Summary {
            files: 2,
            dirs: 2,
            logical_bytes: (big.len() + small.len()) as u64,
            ..Summary::default()
        },
    };
    let snapshot_id = repo.save_snapshot(&snapshot).unwrap();
    Stored {
        files: vec![("base/16384".into(), big), ("PG_VERSION".into(), small)],
        snapshot,
        snapshot_id,
    }
}

/// Reads a file's content back through the index.
pub fn read_file(
    repo: &IndexedRepository,
    root: &[pgcairn::repo::id::BlobId],
    path: &str,
) -> pgcairn::Result<Vec<u8>> {
    let mut trees = root.to_vec();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let entries = repo.dir_entries(&trees)?;
        let node = entries
            .into_iter()
            .find(|n| n.name == part.as_bytes())
            .unwrap_or_else(|| panic!("{part} not in tree"));
        match node.kind {
            NodeKind::Dir { trees: sub } if i + 1 < parts.len() => trees = sub,
            NodeKind::File { content, .. } if i + 1 == parts.len() => {
                let mut out = Vec::new();
                for chunk in repo.data_chunks(&content)? {
                    out.extend(repo.read_blob(BlobType::Data, &chunk.id)?);
                }
                return Ok(out);
            }
            other => panic!("unexpected node {other:?} at {part}"),
        }
    }
    unreachable!()
}

/// Bytes process `pid` has read so far (`rchar` of /proc/PID/io).
pub fn bytes_read_by(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/io (has the process ended?): {e}"));
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

/// Every object file under the repository directory, relative to it.
pub fn object_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    let repo = dir.join("repo");
    walk(&repo, &repo, &mut out);
    out.retain(|p| !p.starts_with(".staging"));
    out.sort();
    out
}
