//! WAL archiving against a real PostgreSQL 15 whose archive_command is `pgcairn archive-push`:
//! what is archived comes back byte for byte, duplicates and foreign files are handled as the
//! contract says, and archive-get never reports "not found" for a failure.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::archiving::{switch_wal_and_wait_archived, wait_archived};
use common::cairn::{Cairn, assert_code, assert_success, code, json, stderr, write_owned};
use common::pg::{Cluster, give_to_cluster_owner, owned_temp_dir};

/// Switches WAL after some writes and waits until the server has archived the segment it
/// switched away from; returns that segment's name.
fn write_and_switch(cluster: &Cluster) -> String {
    cluster.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g");
    switch_wal_and_wait_archived(cluster)
}

fn archive_push(cairn: &Cairn, pgdata: &Path, file: &Path) -> std::process::Output {
    cairn.run(&[
        OsString::from("archive-push"),
        "--pgdata".into(),
        pgdata.into(),
        file.into(),
    ])
}

/// A copy of `source` under `dir/pg_wal/<name>`, changed by `edit`, owned by the cluster owner.
fn wal_copy(dir: &Path, name: &str, source: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let wal = dir.join("pg_wal");
    std::fs::create_dir_all(&wal).unwrap();
    let mut bytes = std::fs::read(source).unwrap();
    edit(&mut bytes);
    let path = wal.join(name);
    std::fs::write(&path, bytes).unwrap();
    give_to_cluster_owner(dir);
    give_to_cluster_owner(&wal);
    give_to_cluster_owner(&path);
    path
}

#[test]
fn archived_wal_comes_back_exactly_and_is_never_replaced() {
    let cairn = Cairn::new();
    let mut conf = cairn.archiving_conf();
    conf.push("wal_keep_size = '1GB'".into());
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.execute("CREATE TABLE t (id int, v text)");
    let first = write_and_switch(&cluster);
    let second = write_and_switch(&cluster);

    // The backup waits for its WAL to be archived and takes the archived copies.
    let backup = cairn.backup_json(&cluster, &[]);
    assert_eq!(backup["wal_unarchived"], serde_json::json!([]), "{backup}");
    assert_eq!(backup["wal_missing"], serde_json::json!([]), "{backup}");
    let stop_wal = backup["stop_wal"].as_str().unwrap().to_string();
    wait_archived(&cluster, &stop_wal);

    let dest = owned_temp_dir();
    for name in [&first, &second, &stop_wal] {
        let got = dest.path().join(name);
        let out = cairn.archive_get(&system_id, name, &got);
        assert_success(&out, &format!("archive-get {name}"));
        let original = std::fs::read(cluster.pgdata().join("pg_wal").join(name)).unwrap();
        assert!(
            std::fs::read(&got).unwrap() == original,
            "{name} differs from the server's copy"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".pgcairn-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    // Pushing an archived name again: same bytes succeed with a warning; other bytes fail,
    // name both checksums and leave the archived copy alone.
    let segment = cluster.pgdata().join("pg_wal").join(&first);
    let out = archive_push(&cairn, cluster.pgdata(), &segment);
    assert_success(&out, "archive-push of an archived segment, same content");
    assert!(
        stderr(&out).contains("already archived"),
        "{}",
        stderr(&out)
    );

    let scratch = owned_temp_dir();
    let changed = wal_copy(scratch.path(), &first, &segment, |b| b[100_000] ^= 0xff);
    let out = archive_push(&cairn, cluster.pgdata(), &changed);
    assert_code(
        &out,
        6,
        "archive-push of an archived name with other content",
    );
    let original_sum = blake3::hash(&std::fs::read(&segment).unwrap()).to_hex();
    let changed_sum = blake3::hash(&std::fs::read(&changed).unwrap()).to_hex();
    for sum in [original_sum.as_str(), changed_sum.as_str()] {
        assert!(stderr(&out).contains(sum), "{sum} not in: {}", stderr(&out));
    }
    let got = dest.path().join("again");
    assert_success(&cairn.archive_get(&system_id, &first, &got), "archive-get");
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&segment).unwrap());

    // Files that are not WAL, or not whole, or of another cluster: refused, nothing stored.
    let wal_entries = || std::fs::read_dir(cairn.repo().join("wal")).unwrap().count();
    let before = wal_entries();
    let not_wal = wal_copy(scratch.path(), "postgresql.conf", &segment, |_| {});
    assert_code(
        &archive_push(&cairn, cluster.pgdata(), &not_wal),
        2,
        "archive-push of a file that is not WAL",
    );
    let unused = "0000000100000000000000A0";
    for (len, complaint) in [
        (10_000_000, "not a WAL segment size"),
        (8 << 20, "segment size 16777216 in the header"),
    ] {
        let truncated = wal_copy(scratch.path(), unused, &segment, |b| b.truncate(len));
        let out = archive_push(&cairn, cluster.pgdata(), &truncated);
        assert_code(&out, 6, "archive-push of a truncated segment");
        assert!(stderr(&out).contains(complaint), "{}", stderr(&out));
    }
    let misnamed = wal_copy(scratch.path(), unused, &segment, |_| {});
    let out = archive_push(&cairn, cluster.pgdata(), &misnamed);
    assert_code(
        &out,
        6,
        "archive-push of a segment under another segment's name",
    );
    assert!(stderr(&out).contains("page address"), "{}", stderr(&out));

    let Some(other) = Cluster::checksummed(15, &[]) else {
        return;
    };
    let foreign_name = "000000010000000000000001";
    let foreign = wal_copy(
        scratch.path(),
        foreign_name,
        &other.pgdata().join("pg_wal").join(foreign_name),
        |_| {},
    );
    let out = archive_push(&cairn, cluster.pgdata(), &foreign);
    assert_code(&out, 6, "archive-push of another cluster's segment");
    assert!(
        stderr(&out).contains("system identifier"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        wal_entries(),
        before,
        "a refused file left a catalogue entry"
    );

    // archive-get: "not found" only when the archive positively lacks the file.
    let missing = dest.path().join("missing");
    let out = cairn.archive_get(&system_id, unused, &missing);
    assert_code(&out, 1, "archive-get of a segment never archived");
    assert!(!missing.exists());
    let out = cairn.run(&[
        OsString::from("archive-get"),
        unused.into(),
        missing.clone().into(),
    ]);
    assert_code(&out, 152, "archive-get that cannot tell the cluster");
    let out = cairn.run(&[OsString::from("archive-get"), "--no-such-flag".into()]);
    assert_code(&out, 152, "archive-get with a typo in restore_command");
}

#[test]
fn archive_get_failures_stop_recovery_instead_of_ending_it() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.execute("CREATE TABLE t (id int, v text)");
    let backup = cairn.backup_json(&cluster, &[]);
    let archived = write_and_switch(&cluster);
    assert!(archived.as_str() > backup["stop_wal"].as_str().unwrap());
    let dest = owned_temp_dir();

    // The key cache is revoked with the key it came from.
    let second_password = cairn.path("second-password");
    write_owned(&second_password, "another password\n");
    let listed = json(&cairn.run(&["key", "list", "--json"]));
    let first_key = listed["keys"][0]["id"].as_str().unwrap().to_string();
    cairn.run_ok(&[
        OsString::from("key"),
        "add".into(),
        "--new-password-file".into(),
        second_password.clone().into(),
    ]);
    let out = cairn
        .command_with_password(&["key", "remove", &first_key], &second_password)
        .output()
        .unwrap();
    assert_success(&out, "key remove");
    let got = dest.path().join("got");
    let out = cairn.archive_get(&system_id, &archived, &got);
    assert_code(
        &out,
        153,
        "archive-get with a revoked key and a stale password file",
    );
    write_owned(&cairn.password_file(), "another password\n");
    assert_success(
        &cairn.archive_get(&system_id, &archived, &got),
        "archive-get",
    );

    // Restore the snapshot; recovery will ask the archive for what follows. With the packs
    // damaged, archive-get fails (160) and the server stops instead of promoting.
    let (_target_dir, target) = common::cairn::new_target("restored");
    let out = cairn.restore("latest", &target, &[]);
    assert_success(&out, "restore");
    for pack in packs(&cairn.repo()) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&pack, bytes).unwrap();
    }
    let missing = dest.path().join("corrupt");
    let out = cairn.archive_get(&system_id, &archived, &missing);
    assert_code(&out, 160, "archive-get of a damaged segment");
    assert!(
        stderr(&out).contains(&format!("fetching {archived}")),
        "the error does not name the segment: {}",
        stderr(&out)
    );
    assert!(!missing.exists(), "a damaged segment was handed over");

    let mut restored = Cluster::from_existing(cluster.install(), &target);
    let started = restored.try_start();
    let log = restored.log();
    assert!(
        started.is_err() || restored.wait_for_exit(Duration::from_secs(60)),
        "the server went on despite a failing restore_command:\n{log}"
    );
    let log = restored.log();
    assert!(
        log.contains("could not restore file") && log.contains("160"),
        "no restore_command failure in the log:\n{log}"
    );
    assert!(
        !log.contains("selected new timeline ID"),
        "the server promoted with WAL missing:\n{log}"
    );
    assert!(target.join("recovery.signal").exists());

    // A location without a repository is a failure too, never "not found".
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgcairn"));
    cmd.arg("--repo")
        .arg(cairn.repo().join("nothing-here"))
        .arg("--password-file")
        .arg(cairn.password_file())
        .args(["archive-get", "--system-id", &system_id, &archived])
        .arg(&missing);
    common::pg::run_as_cluster_owner(&mut cmd);
    let out = cmd.output().unwrap();
    assert_code(
        &out,
        154,
        "archive-get from a location without a repository",
    );
    assert!(code(&out) > 125);
}

fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(repo.join("data")).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            out.push(file.unwrap().path());
        }
    }
    out
}
