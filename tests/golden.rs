//! Golden test vectors (format-spec/vectors/): fixed inputs and a seeded random stream produce
//! every object type byte for byte. The committed files must decode to the expected values and
//! be reproduced exactly; a mismatch means the on-disk format changed.
//!
//! Regenerate (only together with a format-spec/ change): `PGCAIRN_WRITE_VECTORS=1 cargo test
//! --test golden`.

use std::path::PathBuf;

use pgcairn::chunk::ChunkerParams;
use pgcairn::crypto::{KdfParams, MasterKeys};
use pgcairn::repo::config::Config;
use pgcairn::repo::id::{BlobId, PackId, RepoId, SnapshotId, object_hash};
use pgcairn::repo::index_file::{CondemnedPack, IndexFile, IndexedPack};
use pgcairn::repo::keyfile::{self, KeyDescription};
use pgcairn::repo::object::{self, SealedObject};
use pgcairn::repo::pack::{self, BlobType, PackWriter, PackedBlob};
use pgcairn::repo::snapshot::{BadPage, PostgresBackup, Snapshot, Summary};
use pgcairn::repo::tree::{ChunkList, ChunkRef, Node, NodeKind, Tree};
use pgcairn::repo::walcat::{self, RestorePoint, WalEntry, WalSummary};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const SEED: u64 = 2026;
const PASSWORD: &[u8] = b"pgcairn golden vector";
/// `wal/<name>` of the vector's catalogue entry.
const WAL_ENTRY_NAME: &str = "cd1decc7d11c3004682f8fde0b96fd6c75ec72d9daeb50d62531747c9a918cff";

struct Expected {
    keys: MasterKeys,
    repo_id: RepoId,
    description: KeyDescription,
    config: Config,
    chunks: Vec<Vec<u8>>,
    chunk_ids: Vec<BlobId>,
    tree: Tree,
    chunk_list: ChunkList,
    pack_blobs: Vec<PackedBlob>,
    pack_id: PackId,
    index: IndexFile,
    snapshot: Snapshot,
    wal_entry: WalEntry,
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("format-spec/vectors")
}

/// Builds every vector from the seed. Returns the files and the values they must decode to.
fn build() -> (Vec<(&'static str, Vec<u8>)>, Expected) {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let keys = MasterKeys::random(&mut rng);
    let mut id = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rng, &mut id);
    let repo_id = RepoId(id);
    let description = KeyDescription {
        created: 1_790_000_000,
        hostname: "vector-host".into(),
        username: "postgres".into(),
    };
    let key_file = keyfile::create(
        PASSWORD,
        KdfParams::INSECURE_FOR_TESTS,
        repo_id,
        &keys,
        &description,
        &mut rng,
    )
    .unwrap();
    let config = Config {
        version: u32::from(object::FORMAT_VERSION),
        id: repo_id,
        created: 1_790_000_000,
        chunker: ChunkerParams::default(),
        pack_size: 16 << 20,
        compression_level: 3,
    };
    let config_file = config.seal(&keys.data, &mut rng).unwrap();

    // Two data chunks: one compressible (zstd), one short (stored).
    let chunks: Vec<Vec<u8>> = vec![
        b"pgcairn test vector: a compressible data chunk\n".repeat(90),
        (0u8..48).collect(),
    ];
    let blob_id = |data: &[u8]| BlobId(pgcairn::chunk::blob_hash(&keys.chunk_id, data));
    let chunk_ids: Vec<BlobId> = chunks.iter().map(|c| blob_id(c)).collect();
    let refs: Vec<ChunkRef> = chunks
        .iter()
        .zip(&chunk_ids)
        .map(|(c, id)| ChunkRef {
            id: *id,
            len: c.len() as u64,
        })
        .collect();
    let chunk_list = ChunkList {
        level: 0,
        entries: refs.clone(),
    };
    let chunk_list_bytes = object::encode(&chunk_list);
    let chunk_list_id = blob_id(&chunk_list_bytes);
    let meta = |name: &str, mode: u32, kind: NodeKind| Node {
        name: name.as_bytes().to_vec(),
        mode,
        uid: 999,
        gid: 999,
        mtime_ns: 1_789_999_000_123_456_789,
        ctime_ns: 1_789_999_001_000_000_000,
        inode: 131_073,
        kind,
    };
    let tree = Tree {
        nodes: vec![
            meta(
                "16384",
                0o600,
                NodeKind::File {
                    size: refs.iter().map(|r| r.len).sum(),
                    content: ChunkList {
                        level: 1,
                        entries: vec![ChunkRef {
                            id: chunk_list_id,
                            len: refs.iter().map(|r| r.len).sum(),
                        }],
                    },
                },
            ),
            meta(
                "PG_VERSION",
                0o600,
                NodeKind::File {
                    size: chunks[1].len() as u64,
                    content: ChunkList {
                        level: 0,
                        entries: vec![refs[1]],
                    },
                },
            ),
            meta(
                "pg_wal",
                0o777,
                NodeKind::Symlink {
                    target: b"/srv/wal".to_vec(),
                },
            ),
        ],
    };
    let tree_bytes = object::encode(&tree);
    let tree_id = blob_id(&tree_bytes);

    let mut writer = PackWriter::default();
    let mut blob_file = Vec::new();
    let blobs: Vec<(BlobType, BlobId, &[u8])> = vec![
        (BlobType::Data, chunk_ids[0], &chunks[0]),
        (BlobType::Data, chunk_ids[1], &chunks[1]),
        (BlobType::Tree, tree_id, &tree_bytes),
        (BlobType::ChunkList, chunk_list_id, &chunk_list_bytes),
    ];
    for (ty, id, data) in &blobs {
        let envelope = pack::seal_blob(&keys.data, *ty, id, data, 3, &mut rng).unwrap();
        if blob_file.is_empty() {
            blob_file = envelope.clone();
        }
        writer.add(*ty, *id, &envelope, data.len() as u32);
    }
    let (pack_id, pack_file, header) = writer.finish(&keys.data, &mut rng).unwrap();
    let index = IndexFile {
        supersedes: vec![],
        packs: vec![IndexedPack {
            id: pack_id,
            size: pack_file.len() as u64,
            blobs: header.blobs.clone(),
        }],
        // The pack is readable and condemned at once: what a prune writes during the grace
        // period of a pack it found unused.
        condemned: vec![CondemnedPack {
            id: pack_id,
            since_ns: 1_790_000_200_000_000_000,
        }],
    };
    let index_file = index.seal(&keys.data, &mut rng).unwrap();
    let snapshot = Snapshot {
        program_version: "pgcairn 0.1.0".into(),
        started_ns: 1_790_000_100_000_000_000,
        finished_ns: 1_790_000_160_500_000_000,
        hostname: "db1.example".into(),
        tags: vec!["nightly".into()],
        parent: Some(SnapshotId([0xab; 32])),
        root: vec![tree_id],
        postgres: Some(PostgresBackup {
            server_version_num: 150_018,
            system_identifier: 7_311_911_283_442_167_411,
            pgdata: b"/var/lib/postgresql/15/main".to_vec(),
            timeline: 1,
            start_lsn: 0x0000_0003_2800_0028,
            stop_lsn: 0x0000_0003_2800_0138,
            start_wal: "000000010000000300000028".into(),
            stop_wal: "000000010000000300000028".into(),
            wal_segment_size: 16 << 20,
            backup_label: b"START WAL LOCATION: 3/28000028 (file 000000010000000300000028)\n"
                .to_vec(),
            tablespace_map: None,
            data_checksums: true,
            tablespaces: Vec::new(),
            bad_pages: vec![BadPage {
                path: b"base/5/16384".to_vec(),
                block: 7,
                expected: 0x1c2d,
                found: 0x9a0f,
            }],
            wal_missing: Vec::new(),
            cluster_name: Some("main".into()),
        }),
        summary: Summary {
            files: 2,
            dirs: 1,
            logical_bytes: chunks.iter().map(|c| c.len() as u64).sum(),
            read_bytes: chunks.iter().map(|c| c.len() as u64).sum(),
            reused_files: 0,
            new_blobs: 4,
            new_stored_bytes: pack_file.len() as u64,
        },
    };
    let snapshot_file = snapshot.seal(&keys.data, &mut rng).unwrap();
    let wal_entry = WalEntry {
        system_identifier: 7_301_234_567_890_123_456,
        name: "000000010000000300000028".into(),
        size: 16 << 20,
        checksum: *blake3::hash(b"not really a segment").as_bytes(),
        content: ChunkList {
            level: 0,
            entries: vec![ChunkRef {
                id: chunk_ids[0],
                len: 16 << 20,
            }],
        },
        archived_ns: 1_790_000_123_000_000_000,
        hostname: "vector-host".into(),
        program_version: "0.1.0".into(),
        summary: Some(WalSummary {
            commits: 2,
            first_commit_us: Some(1_790_000_100_000_000),
            last_commit_us: Some(1_790_000_120_500_000),
            restore_points: vec![RestorePoint {
                name: "before-upgrade".into(),
                time_us: 1_790_000_110_000_000,
                lsn: 0x0000_0003_2800_1000,
            }],
            end_lsn: 0x0000_0003_2800_2000,
            committed_xids: Some((4_000_000_000, 17)),
        }),
    };
    let wal_entry_file = wal_entry.seal(&keys.data, &mut rng).unwrap();
    let files = vec![
        ("key.bin", key_file),
        ("config.bin", config_file),
        ("blob.bin", blob_file),
        ("tree.bin", tree_bytes),
        ("chunklist.bin", chunk_list_bytes),
        ("pack.bin", pack_file),
        ("index.bin", index_file),
        ("snapshot.bin", snapshot_file),
        ("walentry.bin", wal_entry_file),
    ];
    let expected = Expected {
        keys,
        repo_id,
        description,
        config,
        chunks,
        chunk_ids,
        tree,
        chunk_list,
        pack_blobs: header.blobs,
        pack_id,
        index,
        snapshot,
        wal_entry,
    };
    (files, expected)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(name))
        .unwrap_or_else(|e| panic!("format-spec/vectors/{name}: {e}"))
}

#[test]
fn vectors_are_reproduced_byte_for_byte() {
    let (files, _) = build();
    if std::env::var_os("PGCAIRN_WRITE_VECTORS").is_some() {
        for (name, bytes) in &files {
            std::fs::write(vectors_dir().join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &files {
        assert!(
            read(name) == *bytes,
            "format-spec/vectors/{name} differs from what this build writes"
        );
    }
}

#[test]
fn vectors_decode_to_the_expected_values() {
    let (_, want) = build();

    // Key file → master keys, with the password only.
    let key_file = keyfile::parse(&read("key.bin")).unwrap();
    assert_eq!(key_file.kdf, KdfParams::INSECURE_FOR_TESTS);
    let (repo_id, keys) = keyfile::unlock(&key_file, PASSWORD).unwrap();
    assert_eq!(repo_id, want.repo_id);
    assert_eq!(keys, want.keys);
    assert_eq!(
        keyfile::describe(&key_file, &keys.data).unwrap(),
        want.description
    );

    let config = Config::open(&keys.data, &read("config.bin")).unwrap();
    assert_eq!(config, want.config);
    config.validate().unwrap();

    assert_eq!(
        object::decode::<Tree>(&read("tree.bin"), "tree").unwrap(),
        want.tree
    );
    assert_eq!(
        object::decode::<ChunkList>(&read("chunklist.bin"), "list").unwrap(),
        want.chunk_list
    );

    let pack_bytes = read("pack.bin");
    assert_eq!(PackId(object_hash(&pack_bytes)), want.pack_id);
    pack::check_whole(&want.pack_id, &pack_bytes).unwrap();
    let readme = String::from_utf8(read("README.md")).unwrap();
    assert!(
        readme.contains(&want.pack_id.to_hex()),
        "format-spec/vectors/README.md must name the pack id {}",
        want.pack_id
    );
    let len = pack_bytes.len() as u64;
    let span = pack::header_span(len, &pack_bytes[pack_bytes.len() - 4..]).unwrap();
    let header =
        pack::decode_header(&keys.data, len, &pack_bytes[(len - span) as usize..]).unwrap();
    assert_eq!(header.blobs, want.pack_blobs);
    let blob = |b: &PackedBlob| {
        &pack_bytes[b.offset as usize..(b.offset + u64::from(b.stored_len)) as usize]
    };
    for (entry, (chunk, id)) in header
        .blobs
        .iter()
        .zip(want.chunks.iter().zip(&want.chunk_ids))
    {
        assert_eq!(entry.id, *id);
        assert_eq!(
            &pack::open_blob(&keys.data, entry, blob(entry)).unwrap(),
            chunk
        );
        assert_eq!(pgcairn::chunk::blob_hash(&keys.chunk_id, chunk), id.0);
    }
    assert_eq!(read("blob.bin"), blob(&header.blobs[0]));
    assert_eq!(
        object::decode::<Tree>(
            &pack::open_blob(&keys.data, &header.blobs[2], blob(&header.blobs[2])).unwrap(),
            "tree"
        )
        .unwrap(),
        want.tree
    );

    assert_eq!(
        IndexFile::open(&keys.data, &read("index.bin")).unwrap(),
        want.index
    );
    assert_eq!(
        Snapshot::open(&keys.data, &read("snapshot.bin")).unwrap(),
        want.snapshot
    );
    assert_eq!(
        WalEntry::open(&keys.data, &read("walentry.bin")).unwrap(),
        want.wal_entry
    );
    // The object name of that entry (format-spec/vectors/README.md).
    assert_eq!(
        hex::encode(walcat::entry_name(
            &keys.chunk_id,
            want.wal_entry.system_identifier,
            &want.wal_entry.name
        )),
        WAL_ENTRY_NAME
    );
}

#[test]
fn vectors_are_rejected_under_the_wrong_key_or_kind() {
    let (_, want) = build();
    let other = MasterKeys::random(&mut ChaCha20Rng::seed_from_u64(1));
    assert!(Config::open(&other.data, &read("config.bin")).is_err());
    assert!(Snapshot::open(&want.keys.data, &read("index.bin")).is_err());
    assert!(IndexFile::open(&want.keys.data, &read("snapshot.bin")).is_err());
    assert!(keyfile::unlock(&keyfile::parse(&read("key.bin")).unwrap(), b"wrong").is_err());
}
