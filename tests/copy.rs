//! `pgcairn copy` between two local repositories with different passwords (so different
//! keys): a real PostgreSQL 15 backup with the WAL archived through archive-push is copied,
//! the target verifies with --read-data, restores to a point in time after the backup through
//! the copied WAL, and later copies send only what is new. A copy killed with SIGKILL half-way
//! leaves a target that the next copy completes and that verifies. Errors: a target that was
//! never initialised, a wrong target password, the same repository twice, an unknown snapshot.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::archiving::{server_now, switch_wal_and_wait_archived};
use common::cairn::{
    Cairn, assert_code, assert_success, json, new_target, stderr, str_field, table_md5, u64_field,
    wait_promoted,
};
use common::pg::Cluster;
use common::pitr::markers;

const TARGET_PASSWORD: &str = "an entirely different passphrase";

/// `copy --to TO --to-password-file PASSWORD_FILE` plus `extra`.
fn copy_args(to: &Path, password_file: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["copy".into(), "--to".into(), to.into()];
    args.extend(["--to-password-file".into(), password_file.into()]);
    args.extend(extra.iter().map(OsString::from));
    args
}

/// `copy --to TARGET --to-password-file TARGET's --json` plus `extra`, run against `source`.
fn copy(source: &Cairn, target: &Cairn, extra: &[&str]) -> Output {
    let mut all = vec!["--json"];
    all.extend(extra);
    source.run(&copy_args(&target.repo(), &target.password_file(), &all))
}

fn copy_json(source: &Cairn, target: &Cairn, extra: &[&str]) -> serde_json::Value {
    let out = copy(source, target, extra);
    assert_success(&out, "copy");
    let summary = json(&out);
    eprintln!("copy {extra:?}: {summary}");
    summary
}

/// What identifies each snapshot of a repository, oldest first, without its id.
fn backups(cairn: &Cairn) -> Vec<String> {
    let mut list: Vec<String> = cairn
        .snapshots()
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {} {} {} {} {}",
                s["started_ns"],
                s["finished_ns"],
                s["hostname"],
                s["system_identifier"],
                s["timeline"],
                s["start_lsn"],
                s["stop_lsn"],
                s["logical_bytes"]
            )
        })
        .collect();
    list.sort();
    list
}

fn verify_read_data(cairn: &Cairn) {
    let out = cairn.run(&["verify", "--read-data", "--strict"]);
    assert_success(&out, "verify --read-data of the target");
}

#[test]
fn a_backup_and_its_wal_copied_restore_to_a_point_in_time_and_later_copies_send_only_news() {
    let source = Cairn::new();
    let target = Cairn::with_password(TARGET_PASSWORD);
    let Some(cluster) = source.archiving_cluster() else {
        return;
    };
    cluster.pgbench_init(2);
    cluster.execute("CREATE TABLE markers (n int)");
    cluster.execute("INSERT INTO markers SELECT generate_series(1, 10)");
    let first = source.backup_json(&cluster, &[]);

    // After the backup: more markers up to a point in time, then some that must not come back.
    cluster.pgbench(&["-t", "200", "-c", "2"]);
    cluster.execute("INSERT INTO markers SELECT generate_series(11, 20)");
    let accounts = table_md5(&cluster, "pgbench_accounts", "aid");
    std::thread::sleep(Duration::from_millis(50));
    let target_time = server_now(&cluster);
    std::thread::sleep(Duration::from_millis(50));
    cluster.execute("INSERT INTO markers SELECT generate_series(21, 30)");
    switch_wal_and_wait_archived(&cluster);

    let dry = copy_json(&source, &target, &["--dry-run"]);
    assert_eq!(u64_field(&dry, "snapshots_to_copy"), 1, "{dry}");
    assert!(u64_field(&dry, "wal_files_to_copy") >= 2, "{dry}");
    assert!(target.snapshots().is_empty(), "a dry run wrote a snapshot");

    let copied = copy_json(&source, &target, &[]);
    assert_eq!(u64_field(&copied, "snapshots_copied"), 1, "{copied}");
    assert_eq!(copied["shared_chunk_ids"], false, "{copied}");
    assert_eq!(
        u64_field(&copied, "wal_files_copied"),
        u64_field(&dry, "wal_files_to_copy"),
        "{copied}"
    );
    assert!(u64_field(&copied, "blobs_uploaded") > 0, "{copied}");
    assert_eq!(backups(&target), backups(&source));
    let copied_id = copied["snapshots"][0]["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        copied_id,
        str_field(&first, "snapshot"),
        "ids differ by keys"
    );
    verify_read_data(&target);

    // Restored from the target alone (restore_command reads the target's archive) to the
    // point in time after the backup.
    let (_keep, pgdata) = new_target("restored");
    let out = target.restore(
        &copied_id,
        &pgdata,
        &["--target-time", &target_time, "--target-action", "promote"],
    );
    assert_success(&out, "restore from the target");
    let mut restored = Cluster::from_existing(cluster.install(), &pgdata);
    restored.start();
    wait_promoted(&restored);
    assert_eq!(
        markers(&restored),
        (1..=20)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(table_md5(&restored, "pgbench_accounts", "aid"), accounts);
    restored.stop();

    // Nothing new: nothing read, nothing sent.
    let again = copy_json(&source, &target, &[]);
    assert_eq!(u64_field(&again, "snapshots_copied"), 0, "{again}");
    assert_eq!(u64_field(&again, "snapshots_present"), 1, "{again}");
    assert_eq!(u64_field(&again, "wal_files_copied"), 0, "{again}");
    assert_eq!(u64_field(&again, "blobs_uploaded"), 0, "{again}");
    assert_eq!(u64_field(&again, "chunks_read"), 0, "{again}");

    // A second backup after a small change: the copy sends only its new chunks and WAL.
    cluster.pgbench(&["-t", "100", "-c", "2"]);
    let second = source.backup_json(&cluster, &[]);
    switch_wal_and_wait_archived(&cluster);
    let incremental = copy_json(&source, &target, &[]);
    assert_eq!(
        u64_field(&incremental, "snapshots_copied"),
        1,
        "{incremental}"
    );
    assert_eq!(
        u64_field(&incremental, "snapshots_present"),
        1,
        "{incremental}"
    );
    assert!(
        u64_field(&incremental, "chunks_known") > u64_field(&incremental, "chunks_read"),
        "most chunks were in the target: {incremental}"
    );
    for field in ["blobs_uploaded", "bytes_uploaded"] {
        assert!(
            u64_field(&incremental, field) * 3 < u64_field(&copied, field),
            "{field}: second copy {incremental} vs first {copied}"
        );
    }
    // What the second copy read is what the second backup and the WAL since added.
    assert!(
        u64_field(&incremental, "chunks_read") <= u64_field(&second, "new_blobs") + 64,
        "second copy {incremental} vs second backup {second}"
    );
    assert_eq!(backups(&target), backups(&source));
    // The copy of the second snapshot names the copy of the first as its parent.
    let snapshots = target.snapshots();
    let newest = snapshots
        .iter()
        .find(|s| s["id"] == incremental["snapshots"][1]["target"])
        .expect("the copied snapshot is listed");
    assert_eq!(newest["parent"], copied_id.as_str(), "{newest}");

    // A snapshot forgotten in the target is copied again; without the id translations (a lost
    // cache) its chunks are read again, but the target has them all: nothing is sent.
    std::fs::remove_file(target.repo().join("snapshots").join(&copied_id)).unwrap();
    std::fs::remove_dir_all(source.path("cache").join("copy")).unwrap();
    let rebuilt = copy_json(&source, &target, &[]);
    assert_eq!(u64_field(&rebuilt, "snapshots_copied"), 1, "{rebuilt}");
    assert!(u64_field(&rebuilt, "chunks_read") > 0, "{rebuilt}");
    assert_eq!(u64_field(&rebuilt, "blobs_uploaded"), 0, "{rebuilt}");
    assert_eq!(backups(&target), backups(&source));
    verify_read_data(&target);
}

#[test]
fn a_copy_killed_half_way_is_completed_by_the_next_one() {
    let source = Cairn::new();
    // Small packs: the copy indexes what it sent every few packs while it runs.
    let target = Cairn::init_with(TARGET_PASSWORD, &["--pack-size", "1M"]);
    let Some(cluster) = source.archiving_cluster() else {
        return;
    };
    cluster.pgbench_init(10);
    source.backup_json(&cluster, &[]);
    cluster.pgbench(&["-t", "200"]);
    source.backup_json(&cluster, &[]);
    switch_wal_and_wait_archived(&cluster);

    // Killed once the target has the WAL and has indexed some of the first snapshot's packs
    // (two index files written after the first WAL entry), before the copy could finish.
    let args = copy_args(&target.repo(), &target.password_file(), &[]);
    let mut child = source.command(&args).spawn().expect("starting copy");
    let deadline = Instant::now() + Duration::from_secs(120);
    let index = target.repo().join("index");
    let mut indexed_with_wal = None;
    let mut ended = None;
    while Instant::now() < deadline {
        let indexed = files_under(&index);
        if indexed_with_wal.is_none() && files_under(&target.repo().join("wal")) > 0 {
            indexed_with_wal = Some(indexed);
        }
        if indexed_with_wal.is_some_and(|n| indexed >= n + 2) {
            break;
        }
        ended = child.try_wait().unwrap();
        if ended.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no chance to flush, index or release the lock.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ended.is_none(),
        "the copy ended ({ended:?}) before it could be killed: make the cluster larger"
    );
    let indexed_with_wal = indexed_with_wal.expect("the copy committed no WAL within two minutes");
    assert!(
        files_under(&index) >= indexed_with_wal + 2,
        "the copy indexed no snapshot data within two minutes"
    );
    assert!(
        target.snapshots().is_empty(),
        "the killed copy committed a snapshot"
    );
    // Whatever the target holds now is consistent.
    assert_success(&target.run(&["verify"]), "verify after the kill");

    let resumed = copy_json(&source, &target, &[]);
    assert_eq!(u64_field(&resumed, "snapshots_copied"), 2, "{resumed}");
    // What the killed copy indexed is neither read nor sent again.
    assert!(u64_field(&resumed, "chunks_known") > 100, "{resumed}");
    assert_eq!(backups(&target), backups(&source));
    verify_read_data(&target);
}

/// Files under `dir` (0 if it does not exist yet).
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_missing_target_a_wrong_password_and_the_same_repository_are_refused_clearly() {
    let source = Cairn::new();
    let target = Cairn::with_password(TARGET_PASSWORD);

    let nowhere = source.path("not-a-repository");
    let out = source.run(&copy_args(&nowhere, &target.password_file(), &[]));
    assert_code(&out, 4, "copy into a location with no repository");
    assert!(
        stderr(&out).contains("pgcairn init") && stderr(&out).contains("target repository"),
        "{}",
        stderr(&out)
    );

    let wrong = source.path("wrong-password");
    let out = source.run(&copy_args(&target.repo(), &wrong, &[]));
    assert_code(&out, 3, "copy with a wrong target password");
    assert!(
        stderr(&out).contains("wrong password") && stderr(&out).contains("target repository"),
        "{}",
        stderr(&out)
    );

    let out = source.run(&[OsString::from("copy"), "--to".into(), target.repo().into()]);
    assert_code(&out, 3, "copy with no target password and no terminal");
    assert!(
        stderr(&out).contains("--to-password-file"),
        "{}",
        stderr(&out)
    );

    let out = source.run(&copy_args(&source.repo(), &source.password_file(), &[]));
    assert_code(&out, 6, "copy into the source itself");
    assert!(stderr(&out).contains("same repository"), "{}", stderr(&out));

    let out = copy(&source, &target, &["--snapshot", "0123abcd"]);
    assert_code(&out, 2, "an unknown snapshot");

    // An empty source copies nothing, successfully.
    let empty = copy_json(&source, &target, &[]);
    assert_eq!(u64_field(&empty, "snapshots_copied"), 0, "{empty}");
}

#[test]
fn a_target_sharing_chunk_keys_needs_no_translation_and_dedups_native_backups_against_copies() {
    let source = Cairn::new();
    let from = |password_file: &Path| -> Vec<OsString> {
        vec![
            "--pack-size".into(),
            "2M".into(),
            "--copy-chunker-params-from".into(),
            source.repo().into(),
            "--from-password-file".into(),
            password_file.into(),
        ]
    };
    // A wrong password for the repository the keys come from: exit 3, nothing created.
    let refused = Cairn::uninitialised(TARGET_PASSWORD);
    let mut args: Vec<OsString> = vec!["init".into()];
    args.extend(from(&source.path("wrong-password")));
    assert_code(
        &refused.run(&args),
        3,
        "init with a wrong --from-password-file",
    );
    assert!(!refused.repo().join("config").exists());

    let target = Cairn::init_with(TARGET_PASSWORD, &from(&source.password_file()));
    let Some(cluster) = source.archiving_cluster() else {
        return;
    };
    cluster.pgbench_init(2);
    let first = source.backup_json(&cluster, &[]);
    switch_wal_and_wait_archived(&cluster);
    let copied = copy_json(&source, &target, &[]);
    assert_eq!(copied["shared_chunk_ids"], true, "{copied}");
    assert_eq!(u64_field(&copied, "snapshots_copied"), 1, "{copied}");

    cluster.pgbench(&["-t", "100"]);
    source.backup_json(&cluster, &[]);
    switch_wal_and_wait_archived(&cluster);
    let second = copy_json(&source, &target, &[]);
    assert_eq!(u64_field(&second, "snapshots_copied"), 1, "{second}");
    assert!(
        u64_field(&second, "chunks_known") > 5 * u64_field(&second, "chunks_read"),
        "{second}"
    );
    // Ids need no table.
    assert!(!source.path("cache").join("copy").exists());
    assert_eq!(backups(&target), backups(&source));
    verify_read_data(&target);

    // A backup straight into the target, reading every file, stores little: its chunks have
    // the ids the copies gave them.
    let native = target.backup_json(&cluster, &["--reread", "--archive-timeout", "0"]);
    assert!(
        u64_field(&native, "new_blobs") * 5 < u64_field(&first, "new_blobs"),
        "backup into the target {native} vs the first backup {first}"
    );
    verify_read_data(&target);
}

/// The library without a server: a snapshot with files, a symlink and a chunk-list blob, a
/// second snapshot of a cluster and its archived WAL file, copied into another repository and
/// read back there byte for byte; a WAL file the target holds with other content is refused.
mod library {
    use std::sync::atomic::AtomicBool;

    use pgcairn::ErrorKind;
    use pgcairn::copy::{self, CopyReport, CopyRequest, Selection};
    use pgcairn::repo::IndexedRepository;
    use pgcairn::repo::lock::LockKind;
    use pgcairn::repo::pack::BlobType;
    use pgcairn::repo::snapshot::{PostgresBackup, Snapshot};
    use pgcairn::repo::tree::ChunkRef;
    use pgcairn::repo::walcat::WalEntry;

    use crate::common::{init_indexed, populate, read_file, sample_bytes};

    const SYSID: u64 = 42;
    const SEGMENT: &str = "000000010000000000000001";

    fn wal_entry(repo: &IndexedRepository, data: &[u8]) -> WalEntry {
        let packer = repo.packer();
        let id = packer.add(BlobType::Data, data).unwrap();
        let content = packer
            .add_chunk_list(vec![ChunkRef {
                id,
                len: data.len() as u64,
            }])
            .unwrap();
        packer.flush().unwrap();
        WalEntry {
            system_identifier: SYSID,
            name: SEGMENT.into(),
            size: data.len() as u64,
            checksum: *blake3::hash(data).as_bytes(),
            content,
            archived_ns: 7,
            hostname: "db1".into(),
            program_version: "test".into(),
            summary: None,
        }
    }

    fn of_cluster(snapshot: &Snapshot) -> Snapshot {
        let segment_size = 16 << 20;
        Snapshot {
            started_ns: 10,
            finished_ns: 20,
            postgres: Some(PostgresBackup {
                server_version_num: 150_008,
                system_identifier: SYSID,
                pgdata: b"/pg".to_vec(),
                timeline: 1,
                start_lsn: segment_size + 0x28,
                stop_lsn: segment_size + 0x100,
                start_wal: SEGMENT.into(),
                stop_wal: SEGMENT.into(),
                wal_segment_size: segment_size,
                backup_label: b"label".to_vec(),
                tablespace_map: None,
                data_checksums: true,
                tablespaces: Vec::new(),
                bad_pages: Vec::new(),
                wal_missing: Vec::new(),
                cluster_name: None,
            }),
            ..snapshot.clone()
        }
    }

    fn copy_all(
        source: &IndexedRepository,
        target: &IndexedRepository,
        cache: &std::path::Path,
    ) -> pgcairn::Result<CopyReport> {
        let interrupted = AtomicBool::new(false);
        target.with_lock(LockKind::Writer, |lock| {
            target.sync_cache()?;
            let plan = copy::plan(source, target, &Selection::All)?;
            let request = CopyRequest {
                translations: copy::open_translations(source, target, Some(cache))?,
                interrupted: &interrupted,
                lock,
            };
            copy::execute(source, target, &plan, request, &|_| {})
        })
    }

    #[test]
    fn snapshots_and_wal_read_back_the_same_from_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = init_indexed(&dir.path().join("source"));
        let stored = populate(&mut source);
        source.save_snapshot(&of_cluster(&stored.snapshot)).unwrap();
        let segment = sample_bytes(300_000, 9);
        let entry = wal_entry(&source, &segment);
        assert!(source.create_wal_entry(&entry).unwrap().is_none());
        let cache = dir.path().join("copy-cache");

        // A target holding the same WAL file name with other content: refused, naming it.
        let clashing = init_indexed(&dir.path().join("clashing"));
        let other = wal_entry(&clashing, &sample_bytes(300_000, 10));
        assert!(clashing.create_wal_entry(&other).unwrap().is_none());
        let err = copy_all(&source, &clashing, &cache).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
        assert!(err.to_string().contains(SEGMENT), "{err}");
        assert!(clashing.list_snapshots().unwrap().is_empty());

        let target = init_indexed(&dir.path().join("target"));
        let report = copy_all(&source, &target, &cache).unwrap();
        assert_eq!(report.snapshots.iter().filter(|s| s.copied).count(), 2);
        assert_eq!(report.wal.files, 1);
        assert!(!report.shared_ids);
        for copied in &report.snapshots {
            let snapshot = target.load_snapshot(&copied.target_id).unwrap();
            let source_snapshot = source.load_snapshot(&copied.source_id).unwrap();
            assert_eq!(snapshot.postgres, source_snapshot.postgres);
            assert_eq!(snapshot.summary, source_snapshot.summary);
            assert_eq!(snapshot.tags, source_snapshot.tags);
            for (path, data) in &stored.files {
                assert_eq!(
                    &read_file(&target, &snapshot.root, path).unwrap(),
                    data,
                    "{path}"
                );
            }
        }
        let copied = target.load_wal_entry(SYSID, SEGMENT).unwrap().unwrap();
        assert_eq!(copied.checksum, entry.checksum);
        let mut data = Vec::new();
        for chunk in target.data_chunks(&copied.content).unwrap() {
            data.extend(target.read_blob(BlobType::Data, &chunk.id).unwrap());
        }
        assert_eq!(data, segment);

        // Again: everything is there, and the translations say so without reading.
        let again = copy_all(&source, &target, &cache).unwrap();
        assert!(again.snapshots.iter().all(|s| !s.copied));
        assert_eq!(
            (again.wal.files, again.chunks_read, again.packer.new_blobs),
            (0, 0, 0)
        );
    }
}
