//! `pgcairn verify` against repositories damaged in every way the issue names: each case
//! damages one object of a fresh copy and checks that verify names exactly that object, what
//! it affects (which snapshots, WAL files, recoverable windows) and nothing else as damage, and
//! exits 10; a clean repository verifies with exit 0. The repository is built through the
//! library (two snapshots of a synthetic cluster and an archive of WAL segments), which is
//! much faster than a server; one test runs against a real PostgreSQL 15 that archives
//! through pgcairn.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, assert_code};
use common::*;
use pgcairn::chunk::{Cutter, FileClass};
use pgcairn::crypto::KdfParams;
use pgcairn::pg::wal::segment_name;
use pgcairn::repo::IndexedRepository;
use pgcairn::repo::id::{IndexId, PackId, SnapshotId};
use pgcairn::repo::pack::BlobType;
use pgcairn::repo::snapshot::{PostgresBackup, Snapshot, Summary};
use pgcairn::repo::tree::{ChunkList, NodeKind};
use pgcairn::repo::walcat::WalEntry;
use pgcairn::verify::check::{VerifyOptions, verify};
use pgcairn::verify::subset::DataSubset;
use serde_json::Value;

/// 1 MiB segments (the smallest PostgreSQL allows) keep the synthetic archive small.
const SEG: u64 = 1 << 20;
const SYSID: u64 = 7_100_000_000_000_000_001;

/// A synthetic repository (no server): an archive of segments 1 to 8 of timeline 1, each
/// archived into its own pack and index file as archive-push does; snapshot A (WAL 2..3,
/// carried in its pg_wal/) and snapshot B (WAL 5..6; 6 in `wal_missing`, so only the archive
/// has it), each with its own data file, stored in packs of its own. Each test works on its
/// own copy of one built per test process.
struct Fixture {
    dir: tempfile::TempDir,
    ids: Ids,
}

/// What the tests damage and expect to see named.
#[derive(Clone)]
struct Ids {
    a: SnapshotId,
    b: SnapshotId,
    /// The pack holding snapshot A's data file, and the index file that lists it.
    a_data_pack: PackId,
    a_index: IndexId,
    /// The pack holding snapshot A's root tree.
    a_tree_pack: PackId,
}

impl std::ops::Deref for Fixture {
    type Target = Ids;
    fn deref(&self) -> &Ids {
        &self.ids
    }
}

fn segment(segno: u64) -> String {
    segment_name(1, segno, SEG)
}

/// Stores `data` and returns its chunk list.
fn store(repo: &IndexedRepository, class: FileClass, name: &str, data: &[u8]) -> ChunkList {
    let gear = repo.gear_table();
    let params = repo.config().chunker;
    let packer = repo.packer();
    let node = store_file(&packer, Cutter::new(&gear, &params, class), name, data);
    packer.flush().unwrap();
    match node.kind {
        NodeKind::File { content, .. } => content,
        other => panic!("store_file made {other:?}"),
    }
}

fn postgres(start: u64, stop: u64, wal_missing: Vec<String>) -> PostgresBackup {
    PostgresBackup {
        server_version_num: 150_008,
        system_identifier: SYSID,
        pgdata: b"/pg".to_vec(),
        timeline: 1,
        start_lsn: start * SEG + 0x28,
        stop_lsn: stop * SEG + 0x100,
        start_wal: segment(start),
        stop_wal: segment(stop),
        wal_segment_size: SEG,
        backup_label: b"START WAL LOCATION: ...\n".to_vec(),
        tablespace_map: None,
        data_checksums: true,
        tablespaces: Vec::new(),
        bad_pages: Vec::new(),
        wal_missing,
        cluster_name: None,
    }
}

/// A snapshot of a data directory holding one relation file and the WAL segments `carried`.
fn snapshot_of(
    repo: &IndexedRepository,
    seed: u64,
    carried: &[&WalEntry],
    pg: PostgresBackup,
    finished_s: i64,
) -> SnapshotId {
    let gear = repo.gear_table();
    let params = repo.config().chunker;
    let packer = repo.packer();
    let data = sample_bytes(1 << 20, seed);
    let file = store_file(
        &packer,
        Cutter::new(&gear, &params, FileClass::Relation),
        "16384",
        &data,
    );
    let base = packer.add_dir(vec![file]).unwrap();
    let wal = packer
        .add_dir(carried.iter().map(|e| e.as_node(26, 26)).collect())
        .unwrap();
    let root = packer
        .add_dir(vec![
            node("base", NodeKind::Dir { trees: base }),
            node("pg_wal", NodeKind::Dir { trees: wal }),
        ])
        .unwrap();
    packer.flush().unwrap();
    repo.save_snapshot(&Snapshot {
        program_version: "test".into(),
        started_ns: (finished_s - 10) * 1_000_000_000,
        finished_ns: finished_s * 1_000_000_000,
        hostname: "db1".into(),
        tags: Vec::new(),
        parent: None,
        root,
        postgres: Some(pg),
        summary: Summary {
            files: 1 + carried.len() as u64,
            dirs: 3,
            logical_bytes: data.len() as u64,
            ..Summary::default()
        },
    })
    .unwrap()
}

/// Builds the repository the fixtures copy, in `dir`.
fn build(dir: &Path) -> Ids {
    let mut password = PASSWORD.to_vec();
    password.push(b'\n');
    std::fs::write(dir.join("password"), password).unwrap();
    let repo = init_indexed(dir);
    let mut archive = Vec::new();
    for segno in 1..=8 {
        let name = segment(segno);
        let data = sample_bytes(SEG as usize, 100 + segno);
        let entry = WalEntry {
            system_identifier: SYSID,
            name: name.clone(),
            size: SEG,
            checksum: *blake3::hash(&data).as_bytes(),
            content: store(&repo, FileClass::Wal, &name, &data),
            archived_ns: (1_000 + 10 * segno as i64) * 1_000_000_000,
            hostname: "db1".into(),
            program_version: "test".into(),
            summary: None,
        };
        assert!(repo.create_wal_entry(&entry).unwrap().is_none());
        archive.push(entry);
    }
    let seg = |segno: u64| &archive[segno as usize - 1];
    let a = snapshot_of(&repo, 1, &[seg(2), seg(3)], postgres(2, 3, vec![]), 1_025);
    let b = snapshot_of(&repo, 2, &[seg(5)], postgres(5, 6, vec![segment(6)]), 1_065);
    let a_snapshot = repo.load_snapshot(&a).unwrap();
    let a_tree_pack = repo
        .locate_blob(BlobType::Tree, &a_snapshot.root[0])
        .unwrap()
        .pack;
    let base = repo.dir_entries(&a_snapshot.root).unwrap();
    let NodeKind::Dir { trees } = &base[0].kind else {
        panic!("base is not a directory")
    };
    let NodeKind::File { content, .. } = &repo.dir_entries(trees).unwrap()[0].kind else {
        panic!("base/16384 is not a file")
    };
    let first_chunk = repo.data_chunks(content).unwrap()[0].id;
    let a_data_pack = repo.locate_blob(BlobType::Data, &first_chunk).unwrap().pack;
    let a_index = repo
        .list_index_files()
        .unwrap()
        .into_iter()
        .find(|id| {
            let file = repo.load_index_file(id).unwrap();
            file.packs.iter().any(|p| p.id == a_data_pack)
        })
        .expect("an index file lists snapshot A's data pack");
    Ids {
        a,
        b,
        a_data_pack,
        a_index,
        a_tree_pack,
    }
}

/// The built repository, once per test process, in cargo's directory for test files; copies
/// of earlier runs older than an hour are removed.
fn template() -> &'static (PathBuf, Ids) {
    static TEMPLATE: OnceLock<(PathBuf, Ids)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for entry in std::fs::read_dir(root).unwrap().flatten() {
            let stale = entry
                .file_name()
                .to_string_lossy()
                .starts_with("verify-template-")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default().as_secs() > 3600);
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = root.join(format!("verify-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ids = build(&dir);
        (dir, ids)
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Fixture {
    /// A copy of the built repository, its password file and its local cache.
    fn build() -> Fixture {
        let (template, ids) = template();
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template, dir.path());
        Fixture {
            dir,
            ids: ids.clone(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("repo").join(rel)
    }

    /// `pgcairn verify --json` plus `extra`: the exit code and the report.
    fn verify(&self, extra: &[&str]) -> (i32, Value) {
        let out = self.run(&[&["verify", "--json"], extra].concat());
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify --json printed no JSON ({e}):\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        common::json_schema::assert_conforms("verify.schema.json", "verify --json", &report);
        (out.status.code().expect("exit code"), report)
    }

    fn run(&self, args: &[&str]) -> Output {
        let dir = self.dir.path();
        Command::new(env!("CARGO_BIN_EXE_pgcairn"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--repo")
            .arg(dir.join("repo"))
            .arg("--password-file")
            .arg(dir.join("password"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(args)
            .output()
            .expect("running pgcairn")
    }

    fn flip(&self, rel: &str, offset: u64) {
        let path = self.path(rel);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset as usize] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    }

    fn delete(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap();
    }

    fn wal_object(&self, name: &str) -> String {
        let repo = open_repo(self.dir.path()).unwrap();
        repo.wal_entry_path(SYSID, name)
    }

    /// Every pack on storage.
    fn packs(&self) -> BTreeSet<String> {
        object_files(self.dir.path())
            .iter()
            .filter(|p| p.starts_with("data"))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}

fn pack_path(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

/// The damage entries' objects, as `kind:id-or-name` strings.
fn damaged(report: &Value) -> Vec<String> {
    let mut names: Vec<String> = report["damage"]
        .as_array()
        .expect("damage is an array")
        .iter()
        .map(|d| object_name(&d["object"]))
        .collect();
    names.sort();
    names
}

fn object_name(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap();
    let what = ["id", "name", "object"]
        .iter()
        .find_map(|k| object[*k].as_str())
        .unwrap();
    format!("{kind}:{what}")
}

/// A damage entry's findings, as one string.
fn details(damage: &Value) -> String {
    damage["details"].to_string()
}

/// The ids of the snapshots a damage entry affects.
fn affected_snapshots(damage: &Value) -> Vec<String> {
    damage["affects"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn only_damage<'a>(report: &'a Value, expected: &str) -> &'a Value {
    assert_eq!(damaged(report), vec![expected.to_string()], "{report:#}");
    &report["damage"][0]
}

#[test]
fn a_clean_repository_verifies_and_reads_back_whole() {
    let f = Fixture::build();
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["damage"], serde_json::json!([]));
    assert_eq!(report["warnings"], serde_json::json!([]));
    assert_eq!(report["info"], serde_json::json!([]));
    let checked = &report["checked"];
    assert_eq!(checked["snapshots"], 2);
    assert_eq!(checked["wal_files"], 8);
    assert_eq!(checked["packs"].as_u64().unwrap() as usize, f.packs().len());
    assert_eq!(
        checked["pack_headers"], 0,
        "no pack is read without options"
    );
    // One window from A through the end of segment 8; B lies inside it.
    let timelines = &report["wal"][0]["timelines"];
    assert_eq!(
        timelines[0]["windows"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    assert_eq!(timelines[0]["windows"][0]["snapshot"], f.a.to_hex());

    let (code, report) = f.verify(&["--read-headers", "--read-data"]);
    assert_eq!(code, 0, "{report:#}");
    let read: BTreeSet<String> = report["read_data"]["packs_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(read, f.packs());
    assert_eq!(report["read_data"]["wal_entries_read"], 8);

    let text = f.run(&["verify"]);
    assert_code(&text, 0, "verify");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("verified 2 snapshots"), "{stdout}");
    assert!(stdout.contains("no damage"), "{stdout}");
}

#[test]
fn a_deleted_data_pack_is_named_with_the_one_snapshot_it_breaks() {
    let f = Fixture::build();
    f.delete(&pack_path(&f.a_data_pack));
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("pack:{}", f.a_data_pack));
    assert_eq!(damage["problem"], "missing");
    assert!(damage["blobs_affected"].as_u64().unwrap() > 0, "{damage:#}");
    assert_eq!(affected_snapshots(damage), vec![f.a.to_hex()]);
    assert_eq!(damage["affects"]["wal_files"], serde_json::json!([]));
}

#[test]
fn a_pack_of_the_wrong_size_is_damage_without_reading_it() {
    let f = Fixture::build();
    let path = f.path(&pack_path(&f.a_data_pack));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("pack:{}", f.a_data_pack));
    assert_eq!(damage["problem"], "damaged");
    assert!(details(damage).contains("bytes on storage"), "{damage:#}");
    assert_eq!(affected_snapshots(damage), vec![f.a.to_hex()]);
    let read = report["checked"]["bytes_read"].as_u64().unwrap();
    assert!(read < bytes.len() as u64, "no pack was read: {read} bytes");
}

#[test]
fn a_flipped_byte_in_a_data_pack_takes_read_data_to_find() {
    let f = Fixture::build();
    let size = std::fs::metadata(f.path(&pack_path(&f.a_data_pack)))
        .unwrap()
        .len();
    f.flip(&pack_path(&f.a_data_pack), size / 2);
    for options in [&[][..], &["--read-headers"]] {
        let (code, report) = f.verify(options);
        assert_eq!(code, 0, "{options:?} does not read blobs: {report:#}");
    }
    let (code, report) = f.verify(&["--read-data"]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("pack:{}", f.a_data_pack));
    assert_eq!(damage["problem"], "damaged");
    let found = details(damage);
    assert!(found.contains("does not match its name"), "{found}");
    assert!(found.contains("Data blob"), "{found}");
    assert_eq!(damage["blobs_affected"], 1, "{damage:#}");
    assert_eq!(affected_snapshots(damage), vec![f.a.to_hex()]);
}

#[test]
fn a_damaged_pack_header_takes_read_headers_to_find_and_costs_no_blob() {
    let f = Fixture::build();
    let path = pack_path(&f.a_data_pack);
    let size = std::fs::metadata(f.path(&path)).unwrap().len();
    // Inside the header envelope's tag, before the 4-byte trailer.
    f.flip(&path, size - 10);
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 0, "plain verify reads no pack: {report:#}");
    let (code, report) = f.verify(&["--read-headers"]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("pack:{}", f.a_data_pack));
    assert_eq!(damage["problem"], "damaged");
    assert!(details(damage).contains("pack header"), "{damage:#}");
    // The index still places every blob, and they read: nothing is lost but the header
    // (which `repair index` would need).
    assert_eq!(damage["blobs_affected"], 0, "{damage:#}");
    assert_eq!(affected_snapshots(damage), Vec::<String>::new());
}

#[test]
fn a_flipped_byte_in_a_tree_is_found_by_the_walk() {
    let f = Fixture::build();
    let repo = open_indexed(f.dir.path()).unwrap();
    let root = repo.load_snapshot(&f.a).unwrap().root[0];
    let at = repo.locate_blob(BlobType::Tree, &root).unwrap();
    drop(repo);
    assert_eq!(at.pack, f.a_tree_pack);
    f.flip(&pack_path(&f.a_tree_pack), at.entry.offset + 30);
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("pack:{}", f.a_tree_pack));
    assert_eq!(damage["problem"], "damaged");
    assert!(details(damage).contains("Tree blob"), "{damage:#}");
    assert_eq!(damage["blobs"][0]["id"], root.to_hex());
    assert_eq!(affected_snapshots(damage), vec![f.a.to_hex()]);
}

/// The packs an index file lists.
fn packs_of(f: &Fixture, index: &IndexId) -> Vec<String> {
    let repo = open_repo(f.dir.path()).unwrap();
    let mut packs: Vec<String> = repo
        .load_index_file(index)
        .unwrap()
        .packs
        .iter()
        .map(|p| format!("pack:{}", p.id))
        .collect();
    packs.sort();
    packs
}

#[test]
fn a_deleted_index_file_leaves_its_packs_unindexed_and_names_them() {
    let f = Fixture::build();
    let expected = packs_of(&f, &f.a_index);
    f.delete(&format!("index/{}", f.a_index));
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(damaged(&report), expected, "{report:#}");
    for damage in report["damage"].as_array().unwrap() {
        assert_eq!(damage["problem"], "unindexed");
        assert!(details(damage).contains("repair index"), "{damage:#}");
        assert_eq!(affected_snapshots(damage), vec![f.a.to_hex()]);
    }
    // `repair index` indexes them again from their headers.
    assert_code(&f.run(&["repair", "index"]), 0, "repair index");
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn a_damaged_index_file_is_named_and_so_are_the_packs_it_leaves_unindexed() {
    let f = Fixture::build();
    let mut expected = packs_of(&f, &f.a_index);
    expected.insert(0, format!("index_file:{}", f.a_index));
    f.flip(&format!("index/{}", f.a_index), 40);
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(damaged(&report), expected, "{report:#}");
    for damage in report["damage"].as_array().unwrap() {
        if damage["object"]["kind"] == "index_file" {
            assert_eq!(damage["problem"], "damaged");
            assert!(details(damage).contains("index file"), "{damage:#}");
        } else {
            assert_eq!(damage["problem"], "unindexed");
            assert_eq!(affected_snapshots(damage), vec![f.a.to_hex()]);
        }
    }
}

#[test]
fn a_damaged_snapshot_is_named_and_a_deleted_one_noticed() {
    let f = Fixture::build();
    let (code, _) = f.verify(&[]);
    assert_eq!(code, 0);
    f.flip(&format!("snapshots/{}", f.a), 50);
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("snapshot:{}", f.a));
    assert_eq!(damage["problem"], "damaged");

    // Nothing references a snapshot: a deleted one is indistinguishable from one prune
    // forgot, so it is information, named because the previous run saw it.
    f.delete(&format!("snapshots/{}", f.a));
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["info"],
        serde_json::json!([{"kind": "snapshot_gone", "id": f.a.to_hex()}])
    );
    assert_eq!(report["checked"]["snapshots"], 1);
}

#[test]
fn a_lost_segment_that_a_snapshot_does_not_carry_breaks_it() {
    let f = Fixture::build();
    f.delete(&f.wal_object(&segment(6)));
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("wal_file:{}", segment(6)));
    assert_eq!(damage["problem"], "missing");
    assert_eq!(damage["object"]["system_identifier"], SYSID.to_string());
    assert_eq!(affected_snapshots(damage), vec![f.b.to_hex()]);
    // The gap it leaves also ends the window from A early.
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report:#}");
    assert_eq!(warnings[0]["gap"]["first_missing"], segment(6));
    assert_eq!(warnings[0]["window"]["snapshot"], f.a.to_hex());
}

#[test]
fn a_lost_segment_that_only_cuts_a_window_is_a_warning_unless_strict() {
    let f = Fixture::build();
    f.delete(&f.wal_object(&segment(7)));
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["damage"], serde_json::json!([]));
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report:#}");
    let warning = &warnings[0];
    assert_eq!(warning["gap"]["first_missing"], segment(7));
    assert_eq!(warning["gap"]["segments"], 1);
    assert_eq!(warning["window"]["snapshot"], f.a.to_hex());
    assert_eq!(warning["window"]["last_segment"], segment(6));
    assert_eq!(warning["resumes"], Value::Null);
    let (code, _) = f.verify(&["--strict"]);
    assert_eq!(code, 10);
}

#[test]
fn a_damaged_wal_entry_is_named_with_the_window_it_cuts() {
    let f = Fixture::build();
    // A first verify reads the catalogue into the local cache, intact.
    assert_eq!(f.verify(&[]).0, 0);
    let object = f.wal_object(&segment(4));
    let size = std::fs::metadata(f.path(&object)).unwrap().len();
    f.flip(&object, size - 20);
    // The cache holds the entry as it read intact; reading it again takes --read-data.
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 0, "{report:#}");
    let (code, report) = f.verify(&["--read-data"]);
    assert_eq!(code, 10, "{report:#}");
    let name = object.strip_prefix("wal/").unwrap();
    let damage = only_damage(&report, &format!("wal_entry:{}", segment(4)));
    assert_eq!(damage["object"]["object"], name);
    assert_eq!(
        damage["affects"]["wal_files"],
        serde_json::json!([{"system_identifier": SYSID.to_string(), "name": segment(4)}])
    );
    // The window from A stopped at its own stop segment; B, past the loss, opens another.
    let cuts = damage["affects"]["windows_cut"].as_array().unwrap();
    assert_eq!(cuts.len(), 1, "{damage:#}");
    assert_eq!(cuts[0]["before"]["snapshot"], f.a.to_hex());
    let after: Vec<(&str, &str)> = cuts[0]["after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["snapshot"].as_str().unwrap(),
                w["last_segment"].as_str().unwrap(),
            )
        })
        .collect();
    let (a, b) = (f.a.to_hex(), f.b.to_hex());
    assert_eq!(
        after,
        vec![
            (a.as_str(), segment(3).as_str()),
            (b.as_str(), segment(8).as_str())
        ]
    );
    assert_eq!(
        affected_snapshots(damage),
        Vec::<String>::new(),
        "A and B still restore"
    );

    // A new host's cache cannot read it at all: named by its object, its loss a gap.
    std::fs::remove_dir_all(f.dir.path().join("cache")).unwrap();
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    only_damage(&report, &format!("wal_entry:{name}"));
    assert_eq!(report["warnings"][0]["gap"]["first_missing"], segment(4));
}

#[test]
fn a_snapshot_whose_pg_wal_lacks_its_own_wal_cannot_reach_consistency() {
    let f = Fixture::build();
    // Segment 7 neither in its pg_wal/ nor listed as missing: a snapshot written wrong.
    let repo = open_indexed(f.dir.path()).unwrap();
    let c = snapshot_of(&repo, 3, &[], postgres(7, 7, vec![]), 1_075);
    drop(repo);
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    let damage = only_damage(&report, &format!("snapshot:{c}"));
    assert_eq!(damage["problem"], "wal_incomplete");
    assert!(details(damage).contains(&segment(7)), "{damage:#}");
    assert_eq!(affected_snapshots(damage), vec![c.to_hex()]);
}

#[test]
fn a_damaged_key_file_is_named() {
    let f = Fixture::build();
    let repo = open_repo(f.dir.path()).unwrap();
    let other = repo
        .add_key(b"another password", KdfParams::INSECURE_FOR_TESTS)
        .unwrap();
    drop(repo);
    f.flip(&format!("keys/{other}"), 30);
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 10, "{report:#}");
    only_damage(&report, &format!("key_file:{other}"));
    assert_eq!(report["checked"]["key_files"], 2);
}

#[test]
fn read_data_in_halves_covers_every_pack_in_two_runs() {
    let f = Fixture::build();
    let packs_read = |report: &Value| -> BTreeSet<String> {
        report["read_data"]["packs_read"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let (code, first) = f.verify(&["--read-data=50%"]);
    assert_eq!(code, 0, "{first:#}");
    let (code, second) = f.verify(&["--read-data=50"]);
    assert_eq!(code, 0, "{second:#}");
    let (first_read, second_read) = (packs_read(&first), packs_read(&second));
    assert!(
        first_read.is_disjoint(&second_read),
        "{first_read:?} {second_read:?}"
    );
    let all: BTreeSet<String> = first_read.union(&second_read).cloned().collect();
    assert_eq!(all, f.packs());
    assert_eq!(first["read_data"]["next"], second["read_data"]["from"]);
    // The third run starts the rotation again.
    let (_, third) = f.verify(&["--read-data=50%"]);
    assert_eq!(packs_read(&third), first_read);
    // A fixed part does not move the rotation.
    let (_, part) = f.verify(&["--read-data=2/2"]);
    assert_eq!(packs_read(&part), second_read);
    let (_, fourth) = f.verify(&["--read-data=50%"]);
    assert_eq!(packs_read(&fourth), second_read);
}

#[test]
fn an_interrupted_verify_stops_and_leaves_the_rotation_alone() {
    let f = Fixture::build();
    let interrupted = std::sync::atomic::AtomicBool::new(true);
    let cache = f.dir.path().join("cache");
    let options = VerifyOptions {
        read_headers: true,
        read_data: Some(DataSubset::Rotating(50.0)),
        cache_dir: Some(&cache),
        interrupted: &interrupted,
    };
    let repo = open_repo(f.dir.path()).unwrap();
    let repo_id = repo.config().id.to_hex();
    let err = verify(repo, &options, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), pgcairn::ErrorKind::Interrupted, "{err}");
    let dir = cache.join(repo_id);
    assert!(!dir.join("verify-read-data").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("verify-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn leftovers_and_stray_names_are_information() {
    let f = Fixture::build();
    // A pack no index lists (as an interrupted writer leaves) and names that are not objects.
    let bytes = b"PGCAIRN\x05\x02\x00 not really a pack".to_vec();
    let id = PackId(*blake3::hash(&bytes).as_bytes());
    let path = f.path(&pack_path(&id));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    std::fs::write(f.path("notes.txt"), "hello").unwrap();
    std::fs::write(f.path("snapshots/latest"), "hello").unwrap();
    let (code, report) = f.verify(&[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["info"],
        serde_json::json!([
            {"kind": "not_an_object", "name": "notes.txt"},
            {"kind": "not_an_object", "name": "snapshots/latest"},
            {"kind": "unindexed_pack", "id": id.to_hex(), "size": bytes.len()},
        ]),
        "{report:#}"
    );
}

/// Against a real server archiving through pgcairn: a clean archive with two backups
/// verifies, data and all; a segment lost between the backups ends the first window there and
/// the second backup starts the next.
#[test]
fn a_real_archive_verifies_and_a_lost_segment_splits_its_window() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.execute("CREATE TABLE t (id int, v text)");
    let write = || {
        cluster.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
        switch_wal_and_wait_archived(&cluster)
    };
    write();
    let first = cairn.backup_json(&cluster, &[]);
    let between: Vec<String> = (0..3).map(|_| write()).collect();
    let second = cairn.backup_json(&cluster, &[]);
    write();

    let verify = |extra: &[&str]| -> (i32, Value) {
        let out = cairn.run(&[&["verify", "--json"], extra].concat());
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        common::json_schema::assert_conforms("verify.schema.json", "verify --json", &report);
        (out.status.code().unwrap(), report)
    };
    let (code, report) = verify(&["--read-data"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["damage"], serde_json::json!([]));
    assert_eq!(report["warnings"], serde_json::json!([]));
    assert_eq!(report["checked"]["snapshots"], 2);
    let windows = &report["wal"][0]["timelines"][0]["windows"];
    assert_eq!(windows.as_array().unwrap().len(), 1, "{report:#}");

    let repo = pgcairn::repo::Repository::open(
        pgcairn::storage::Storage::local(&cairn.repo()).unwrap(),
        common::cairn::PASSWORD.as_bytes(),
    )
    .unwrap();
    let lost = &between[1];
    let sysid: u64 = system_id.parse().unwrap();
    std::fs::remove_file(cairn.repo().join(repo.wal_entry_path(sysid, lost))).unwrap();
    let (code, report) = verify(&[]);
    assert_eq!(
        code, 0,
        "a gap between restorable snapshots is a warning: {report:#}"
    );
    assert_eq!(report["damage"], serde_json::json!([]));
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report:#}");
    assert_eq!(warnings[0]["gap"]["first_missing"], lost.as_str());
    assert_eq!(warnings[0]["window"]["snapshot"], first["snapshot"]);
    assert_eq!(warnings[0]["resumes"]["lsn"], second["stop_lsn"]);
    let (code, _) = verify(&["--strict"]);
    assert_eq!(code, 10);
}
