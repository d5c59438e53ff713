//! Seeds of the repository-decoder fuzz targets (fuzz/seeds/<target>/): small valid inputs,
//! sealed with the key every target uses (`[7; 32]`; key files with the password `password`),
//! so the fuzzers start past authentication. They are built here from fixed values and a
//! `ChaCha20Rng` seeded with 1, with the public API only. The committed files must be
//! reproduced byte for byte and must open with the fuzz key: a format change fails this test
//! until the seeds are regenerated with `PGCAIRN_WRITE_SEEDS=1 cargo test --test fuzz_seeds`.
//!
//! The PostgreSQL targets' seeds (WAL, pg_control, backup_label, …) are plain inputs taken from
//! real clusters and are not generated here.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Once;

use pgcairn::chunk::{self, ChunkerParams};
use pgcairn::crypto::{KdfParams, Key32, MasterKeys};
use pgcairn::error::Result;
use pgcairn::repo::config::Config;
use pgcairn::repo::id::{BlobId, IndexId, PackId, RepoId, SnapshotId};
use pgcairn::repo::index_file::{CondemnedPack, IndexFile, IndexedPack};
use pgcairn::repo::keyfile::{self, KeyDescription};
use pgcairn::repo::object::{self, SealedObject};
use pgcairn::repo::pack::{self, BlobType, PackHeader, PackWriter, PackedBlob};
use pgcairn::repo::snapshot::{BadPage, PostgresBackup, Snapshot, Summary, TablespaceBackup};
use pgcairn::repo::tree::{ChunkList, ChunkRef, Node, NodeKind, Tree};
use pgcairn::repo::walcat::{RestorePoint, WalEntry, WalSummary};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The data key every fuzz target opens with.
const KEY: Key32 = Key32([7; 32]);
/// The password of the key-file seeds.
const PASSWORD: &[u8] = b"password";
/// The blob id `blob_envelope` fixes for every input.
const ENVELOPE_BLOB_ID: BlobId = BlobId([7; 32]);
/// `blob_envelope` input: `type (1) ‖ raw_len (u32 LE) ‖ envelope`.
const ENVELOPE_PREFIX: usize = 5;

/// Seed files of one target: name and bytes.
type Files = Vec<(&'static str, Vec<u8>)>;
/// Makes one target's seed files.
type Generator = fn() -> Files;

/// The targets whose seeds this file generates (their directories hold nothing else), and the
/// generator of each.
const TARGETS: [(&str, Generator); 8] = [
    ("blob_envelope", blob_envelope_seeds),
    ("pack_header", pack_header_seeds),
    ("index_file", index_file_seeds),
    ("snapshot", snapshot_seeds),
    ("tree", tree_seeds),
    ("key_file", key_file_seeds),
    ("config", config_seeds),
    ("wal_entry", wal_entry_seeds),
];

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

/// Each target draws its nonces and salts from its own stream, so adding a seed to one target
/// leaves the others' files alone.
fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(1)
}

/// A fixed id, named for readability of the generator only.
fn id(label: &str) -> [u8; 32] {
    *blake3::hash(label.as_bytes()).as_bytes()
}

/// The master keys the key-file seeds wrap: the data key is the fuzz key.
fn master_keys() -> MasterKeys {
    MasterKeys {
        data: KEY,
        chunk_id: Key32([8; 32]),
        chunker: Key32([9; 32]),
    }
}

/// Blob ids as a repository made with [`master_keys`] computes them.
fn blob_id(data: &[u8]) -> BlobId {
    BlobId(chunk::blob_hash(&master_keys().chunk_id, data))
}

struct Seed {
    target: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
}

/// Every generated seed, in a fixed order.
fn build() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (target, generate) in TARGETS {
        for (name, bytes) in generate() {
            seeds.push(Seed {
                target,
                name,
                bytes,
            });
        }
    }
    seeds
}

fn chunk_list_40() -> ChunkList {
    ChunkList {
        level: 0,
        entries: (1..=40u64)
            .map(|i| ChunkRef {
                id: BlobId(id(&format!("chunk {i}"))),
                len: 8192 * i,
            })
            .collect(),
    }
}

fn chunk_refs(n: u64) -> Vec<ChunkRef> {
    chunk_list_40().entries[..n as usize].to_vec()
}

/// A tree blob with one node of each kind: small and large files, directories with and
/// without tree blobs, a symlink.
fn sample_tree() -> Tree {
    let node = |name: &str, kind: NodeKind| Node {
        name: name.as_bytes().to_vec(),
        mode: 0o600,
        uid: 999,
        gid: 999,
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_001,
        inode: 4242,
        kind,
    };
    Tree {
        nodes: vec![
            node(
                "PG_VERSION",
                NodeKind::File {
                    size: 3,
                    content: ChunkList {
                        level: 0,
                        entries: chunk_refs(1),
                    },
                },
            ),
            node(
                "base",
                NodeKind::Dir {
                    trees: vec![BlobId(id("tree base/1")), BlobId(id("tree base/2"))],
                },
            ),
            node(
                "pg_tblspc_16384",
                NodeKind::Symlink {
                    target: b"/mnt/ts".to_vec(),
                },
            ),
            node("pg_wal", NodeKind::Dir { trees: vec![] }),
            node(
                "big",
                NodeKind::File {
                    size: 1 << 30,
                    content: ChunkList {
                        level: 1,
                        entries: chunk_refs(3),
                    },
                },
            ),
        ],
    }
}

fn tree_seeds() -> Files {
    vec![
        ("chunklist-40", object::encode(&chunk_list_40())),
        (
            "chunklist-level2",
            object::encode(&ChunkList {
                level: 2,
                entries: chunk_refs(3),
            }),
        ),
        ("tree", object::encode(&sample_tree())),
        ("tree-empty", object::encode(&Tree::default())),
    ]
}

fn blob_envelope_seeds() -> Files {
    let mut rng = rng();
    let mut envelope = |blob_type: BlobType, content: &[u8], level: i32| {
        let mut input = vec![blob_type.code()];
        input.extend_from_slice(&(content.len() as u32).to_le_bytes());
        input.extend(
            pack::seal_blob(&KEY, blob_type, &ENVELOPE_BLOB_ID, content, level, &mut rng).unwrap(),
        );
        input
    };
    let data_stored = envelope(BlobType::Data, b"hello, pgcairn", 3);
    let data_zstd = envelope(BlobType::Data, &b"abcdefgh".repeat(200), 3);
    let tree_zstd = envelope(BlobType::Tree, &object::encode(&sample_tree()), 3);
    let chunk_list = envelope(BlobType::ChunkList, &object::encode(&chunk_list_40()), 3);
    // `marker ‖ body` alone, for `decode_payload` on the whole input.
    let payload = |data: &[u8]| {
        let mut out = Vec::new();
        object::append_payload(&mut out, data, 3).unwrap();
        out
    };
    vec![
        ("chunklist", chunk_list),
        ("data-stored", data_stored),
        ("data-zstd", data_zstd),
        ("payload-stored", payload(b"plain stored payload")),
        ("payload-zstd", payload(&b"zstd payload ".repeat(100))),
        ("tree-zstd", tree_zstd),
    ]
}

/// The pack seeds: name, name of its plain header, number of blobs.
const PACKS: [(&str, &str, usize); 3] = [
    ("pack-empty", "pack-empty-plain-header", 0),
    ("pack-1", "pack-1-plain-header", 1),
    ("pack-4", "pack-4-plain-header", 4),
];

/// The packs of [`PACKS`] (every blob type, stored and zstd): id, bytes and header of each.
fn packs(rng: &mut ChaCha20Rng) -> Vec<(PackId, Vec<u8>, PackHeader)> {
    let blobs: [(BlobType, Vec<u8>, i32); 4] = [
        (BlobType::Data, vec![b'a'; 100], 0),
        (BlobType::Tree, vec![b'b'; 400], 3),
        (BlobType::ChunkList, vec![b'c'; 700], 0),
        (BlobType::Data, vec![b'd'; 1000], 3),
    ];
    PACKS
        .iter()
        .map(|&(_, _, n)| {
            let mut writer = PackWriter::default();
            for (blob_type, data, level) in &blobs[..n] {
                let id = blob_id(data);
                let envelope = pack::seal_blob(&KEY, *blob_type, &id, data, *level, rng).unwrap();
                writer.add(*blob_type, id, &envelope, data.len() as u32);
            }
            writer.finish(&KEY, rng).unwrap()
        })
        .collect()
}

fn pack_header_seeds() -> Files {
    let mut files = Vec::new();
    for ((name, plain_name, _), (_, bytes, header)) in PACKS.into_iter().zip(packs(&mut rng())) {
        files.push((name, bytes));
        files.push((plain_name, object::encode(&header)));
    }
    files
}

fn index_file_seeds() -> Files {
    let mut rng = rng();
    // The packs of the pack_header seeds (same stream, so the same ids and sizes).
    let index = IndexFile {
        supersedes: vec![IndexId([9; 32])],
        packs: packs(&mut rng)
            .into_iter()
            .map(|(id, bytes, header)| IndexedPack {
                id,
                size: bytes.len() as u64,
                blobs: header.blobs,
            })
            .collect(),
        condemned: vec![CondemnedPack {
            id: PackId([7; 32]),
            since_ns: 1_790_000_000_000_000_000,
        }],
    };
    let empty = IndexFile::default();
    vec![
        ("index-empty-plain", object::encode(&empty)),
        ("index-empty-sealed", empty.seal(&KEY, &mut rng).unwrap()),
        ("index-plain", object::encode(&index)),
        ("index-sealed", index.seal(&KEY, &mut rng).unwrap()),
    ]
}

fn snapshot_seeds() -> Files {
    let mut rng = rng();
    let bare = Snapshot {
        program_version: "0.1.0".into(),
        started_ns: 1_700_000_000_000_000_000,
        finished_ns: 1_700_000_060_000_000_000,
        hostname: "db1".into(),
        tags: vec![],
        parent: None,
        root: vec![BlobId(id("root tree 1")), BlobId(id("root tree 2"))],
        postgres: None,
        summary: Summary {
            files: 1000,
            dirs: 20,
            logical_bytes: 1 << 30,
            read_bytes: 1 << 20,
            reused_files: 990,
            new_blobs: 17,
            new_stored_bytes: 123_456,
        },
    };
    let segment = "000000010000000000000002";
    let pg = Snapshot {
        tags: vec!["nightly".into(), "prod".into()],
        parent: Some(SnapshotId([3; 32])),
        postgres: Some(PostgresBackup {
            server_version_num: 150_008,
            system_identifier: 7_300_000_000_000_000_001,
            pgdata: b"/var/lib/postgresql/15/main".to_vec(),
            timeline: 1,
            start_lsn: 0x0200_0028,
            stop_lsn: 0x0200_0138,
            start_wal: segment.into(),
            stop_wal: segment.into(),
            wal_segment_size: 16 << 20,
            backup_label: format!("START WAL LOCATION: 0/2000028 (file {segment})\n").into_bytes(),
            tablespace_map: Some(b"16384 /mnt/ts\n".to_vec()),
            data_checksums: true,
            tablespaces: vec![TablespaceBackup {
                oid: 16384,
                location: b"/mnt/ts".to_vec(),
                root: vec![BlobId(id("tablespace tree"))],
            }],
            bad_pages: vec![BadPage {
                path: b"base/5/16384".to_vec(),
                block: 7,
                expected: 0x1c2d,
                found: 0x9a0f,
            }],
            wal_missing: vec![segment.into()],
            cluster_name: Some("main".into()),
        }),
        ..bare.clone()
    };
    vec![
        ("snapshot-bare-plain", object::encode(&bare)),
        ("snapshot-bare-sealed", bare.seal(&KEY, &mut rng).unwrap()),
        ("snapshot-pg-plain", object::encode(&pg)),
        ("snapshot-pg-sealed", pg.seal(&KEY, &mut rng).unwrap()),
    ]
}

fn key_file_seeds() -> Files {
    let mut rng = rng();
    let mut key_file = |hostname: &str| {
        let description = KeyDescription {
            created: 1_700_000_000,
            hostname: hostname.into(),
            username: "postgres".into(),
        };
        keyfile::create(
            PASSWORD,
            KdfParams::INSECURE_FOR_TESTS,
            RepoId([5; 32]),
            &master_keys(),
            &description,
            &mut rng,
        )
        .unwrap()
    };
    vec![
        ("key", key_file("db1.example")),
        (
            "key-long-host",
            key_file("a-rather-longer-host-name.internal"),
        ),
    ]
}

fn config_seeds() -> Files {
    let mut rng = rng();
    let config = Config {
        version: u32::from(object::FORMAT_VERSION),
        id: RepoId([5; 32]),
        created: 1_700_000_000,
        chunker: ChunkerParams::default(),
        pack_size: 16 << 20,
        compression_level: 3,
    };
    // Decodes, but `validate` refuses it.
    let out_of_range = Config {
        pack_size: 1,
        compression_level: 99,
        ..config.clone()
    };
    vec![
        ("config-out-of-range-plain", object::encode(&out_of_range)),
        (
            "config-out-of-range-sealed",
            out_of_range.seal(&KEY, &mut rng).unwrap(),
        ),
        ("config-plain", object::encode(&config)),
        ("config-sealed", config.seal(&KEY, &mut rng).unwrap()),
    ]
}

fn wal_entry_seeds() -> Files {
    let mut rng = rng();
    // A timeline history file: not a segment, so no summary.
    let history = b"1\t0/3000000\tno recovery target specified\n";
    let plain = WalEntry {
        system_identifier: 7_300_000_000_000_000_001,
        name: "00000002.history".into(),
        size: history.len() as u64,
        checksum: *blake3::hash(history).as_bytes(),
        content: ChunkList {
            level: 0,
            entries: vec![ChunkRef {
                id: blob_id(history),
                len: history.len() as u64,
            }],
        },
        archived_ns: 1_700_000_200_000_000_000,
        hostname: "db1.example".into(),
        program_version: "0.1.0".into(),
        summary: None,
    };
    // A segment with commits and a restore point.
    let segment = WalEntry {
        name: "000000010000000000000003".into(),
        size: 16 << 20,
        checksum: id("segment 3"),
        content: ChunkList {
            level: 0,
            entries: (0..4)
                .map(|i| ChunkRef {
                    id: BlobId(id(&format!("segment 3 chunk {i}"))),
                    len: 4 << 20,
                })
                .collect(),
        },
        summary: Some(WalSummary {
            commits: 3,
            first_commit_us: Some(1_700_000_100_000_000),
            last_commit_us: Some(1_700_000_160_000_000),
            restore_points: vec![RestorePoint {
                name: "before-migration".into(),
                time_us: 1_700_000_150_000_000,
                lsn: 0x0300_1000,
            }],
            end_lsn: 0x0300_2000,
            committed_xids: Some((4_000_000_000, 17)),
        }),
        ..plain.clone()
    };
    vec![
        ("wal-entry-plain", object::encode(&plain)),
        ("wal-entry-sealed", segment.seal(&KEY, &mut rng).unwrap()),
    ]
}

/// Checks that a seed gets where its target needs it to: sealed inputs authenticate and
/// decode with the fuzz key (and password), plain inputs decode.
fn check_opens(target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let sealed = name.ends_with("-sealed");
    match target {
        "blob_envelope" if name.starts_with("payload-") => {
            object::decode_payload(bytes, 1 << 20)?;
        }
        "blob_envelope" => {
            let (prefix, envelope) = bytes.split_at(ENVELOPE_PREFIX);
            let entry = PackedBlob {
                blob_type: BlobType::from_code(prefix[0])?,
                id: ENVELOPE_BLOB_ID,
                offset: 10,
                stored_len: envelope.len() as u32,
                raw_len: u32::from_le_bytes(prefix[1..].try_into().unwrap()),
            };
            let content = pack::open_blob(&KEY, &entry, envelope)?;
            if name.ends_with("-zstd") {
                assert!(envelope.len() < content.len(), "{name} is not compressed");
            }
        }
        "pack_header" if name.ends_with("-plain-header") => {
            pack::parse_header(bytes, u64::MAX)?;
        }
        "pack_header" => {
            let len = bytes.len() as u64;
            let span = pack::header_span(len, &bytes[bytes.len().saturating_sub(4)..])?;
            let header = pack::decode_header(&KEY, len, &bytes[(len - span) as usize..])?;
            for b in &header.blobs {
                let end = b.offset + u64::from(b.stored_len);
                pack::open_blob(&KEY, b, &bytes[b.offset as usize..end as usize])?;
            }
        }
        "index_file" => check_object::<IndexFile>(bytes, sealed)?,
        "snapshot" => check_object::<Snapshot>(bytes, sealed)?,
        "wal_entry" => check_object::<WalEntry>(bytes, sealed)?,
        "config" => {
            let config = if sealed {
                Config::open(&KEY, bytes)?
            } else {
                object::decode::<Config>(bytes, name)?
            };
            assert_eq!(
                config.validate().is_ok(),
                !name.contains("out-of-range"),
                "{name}"
            );
        }
        "tree" if name.starts_with("chunklist") => {
            object::decode::<ChunkList>(bytes, name)?;
        }
        "tree" => {
            object::decode::<Tree>(bytes, name)?;
        }
        "key_file" => {
            let file = keyfile::parse(bytes)?;
            assert_eq!(file.kdf, KdfParams::INSECURE_FOR_TESTS);
            let (_, keys) = keyfile::unlock(&file, PASSWORD)?;
            assert_eq!(keys, master_keys());
            keyfile::describe(&file, &KEY)?;
        }
        _ => panic!("no check for {target}/{name}"),
    }
    Ok(())
}

fn check_object<T: SealedObject>(bytes: &[u8], sealed: bool) -> Result<()> {
    if sealed {
        T::open(&KEY, bytes)?;
    } else {
        object::decode::<T>(bytes, "plain seed")?;
    }
    Ok(())
}

fn read(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(seeds_dir(target).join(name))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}/{name}: {e} (PGCAIRN_WRITE_SEEDS=1?)"))
}

fn committed_names(target: &str) -> BTreeSet<String> {
    match std::fs::read_dir(seeds_dir(target)) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("fuzz/seeds/{target}: {e}"),
    }
}

/// With `PGCAIRN_WRITE_SEEDS` set, writes the generated seeds (once, before any test reads
/// them) and removes files the generator no longer makes from its targets' directories.
fn write_if_asked() {
    static WRITE: Once = Once::new();
    WRITE.call_once(|| {
        if std::env::var_os("PGCAIRN_WRITE_SEEDS").is_none() {
            return;
        }
        let seeds = build();
        for (target, _) in TARGETS {
            let dir = seeds_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            for name in committed_names(target) {
                if !seeds.iter().any(|s| s.target == target && s.name == name) {
                    std::fs::remove_file(dir.join(name)).unwrap();
                }
            }
        }
        for s in &seeds {
            std::fs::write(seeds_dir(s.target).join(s.name), &s.bytes).unwrap();
        }
    });
}

#[test]
fn seeds_are_reproduced_byte_for_byte() {
    write_if_asked();
    let seeds = build();
    for (target, _) in TARGETS {
        let generated: BTreeSet<String> = seeds
            .iter()
            .filter(|s| s.target == target)
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(
            committed_names(target),
            generated,
            "fuzz/seeds/{target}/ holds other files than this test generates"
        );
    }
    for s in &seeds {
        assert!(
            read(s.target, s.name) == s.bytes,
            "fuzz/seeds/{}/{} differs from what this build generates; regenerate with \
             PGCAIRN_WRITE_SEEDS=1 cargo test --test fuzz_seeds",
            s.target,
            s.name
        );
    }
}

#[test]
fn committed_seeds_open_with_the_fuzz_key() {
    write_if_asked();
    for (target, _) in TARGETS {
        for name in committed_names(target) {
            check_opens(target, &name, &read(target, &name)).unwrap_or_else(|e| {
                panic!("fuzz/seeds/{target}/{name} does not open with key [7; 32]: {e}")
            });
        }
    }
}

/// Sealed seeds hold the same values as their plain twins, so both paths of a target start
/// from the same structure.
#[test]
fn sealed_seeds_match_their_plain_twins() {
    write_if_asked();
    fn twins<T: SealedObject + PartialEq + Debug>(target: &str, stem: &str) {
        let sealed = T::open(&KEY, &read(target, &format!("{stem}-sealed")))
            .unwrap_or_else(|e| panic!("fuzz/seeds/{target}/{stem}-sealed: {e}"));
        let plain = object::decode::<T>(&read(target, &format!("{stem}-plain")), stem)
            .unwrap_or_else(|e| panic!("fuzz/seeds/{target}/{stem}-plain: {e}"));
        assert_eq!(sealed, plain, "{target}/{stem}");
    }
    twins::<Config>("config", "config");
    twins::<Config>("config", "config-out-of-range");
    twins::<IndexFile>("index_file", "index-empty");
    twins::<IndexFile>("index_file", "index");
    twins::<Snapshot>("snapshot", "snapshot-bare");
    twins::<Snapshot>("snapshot", "snapshot-pg");

    // Each pack's plain header is the header sealed in it.
    for (pack, plain_name, _) in PACKS {
        let bytes = read("pack_header", pack);
        let len = bytes.len() as u64;
        let span = pack::header_span(len, &bytes[bytes.len() - 4..]).unwrap();
        let header = pack::decode_header(&KEY, len, &bytes[(len - span) as usize..]).unwrap();
        let plain = read("pack_header", plain_name);
        assert_eq!(object::encode(&header), plain, "{pack}");
    }
}
