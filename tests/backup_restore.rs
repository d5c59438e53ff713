//! `pgcairn backup` and `pgcairn restore` against real PostgreSQL 15: a round trip under
//! pgbench load, with TOAST, a tablespace, an unlogged table and a large object; how little an
//! incremental backup stores; a delta restore equal to a fresh one. Round trips on every major
//! are in tests/pg_matrix.rs.
//!
//! pgcairn runs as the cluster owner (see tests/common/cairn.rs). Faults and bad inputs are in
//! tests/backup_faults.rs.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cairn::{
    Cairn, TreeEntry, assert_same_tree, assert_success, new_target, start_restored, str_field,
    table_md5, tree, u64_field,
};
use common::pg::{Cluster, give_to_cluster_owner, owned_temp_dir, run_as_cluster_owner};

fn count(cluster: &Cluster, table: &str) -> i64 {
    cluster
        .sql_one_string(&format!("SELECT count(*) FROM {table}"))
        .parse()
        .unwrap()
}

#[test]
fn round_trip_pg15_under_pgbench_load() {
    let began = Instant::now();
    let Some(source) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    let scale: i64 = 5;
    source.pgbench_init(scale as u32);
    let ts_old = owned_temp_dir();
    source.execute(
        "CREATE TABLE toasty (id int PRIMARY KEY, body text);
         ALTER TABLE toasty ALTER COLUMN body SET STORAGE EXTERNAL;
         INSERT INTO toasty SELECT g, repeat(md5(g::text), 2000) FROM generate_series(1, 300) g;",
    );
    source.execute(&format!(
        "CREATE TABLESPACE elsewhere LOCATION '{}'",
        ts_old.path().display()
    ));
    // (No autovacuum on the tablespace's table: the test compares the source's tablespace
    // directory before and after a refused restore.)
    source.execute(
        "CREATE TABLE spaced (id int PRIMARY KEY, v text)
             WITH (autovacuum_enabled = false) TABLESPACE elsewhere;
         INSERT INTO spaced SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
         CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text);
         INSERT INTO scratch SELECT g, md5(g::text) FROM generate_series(1, 10000) g;
         CREATE TABLE blobs (name text PRIMARY KEY, lo oid);
         INSERT INTO blobs SELECT 'random', lo_from_bytea(0,
             (SELECT string_agg(decode(md5(g::text), 'hex'), ''::bytea ORDER BY g)
              FROM generate_series(1, 10000) g));",
    );
    // EXTERNAL storage puts each 64 KB value out of line, uncompressed: the TOAST table holds
    // the data.
    let toast_bytes: i64 = source
        .sql_one_string(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'toasty'",
        )
        .parse()
        .unwrap();
    assert!(toast_bytes > 10 << 20, "TOAST table of {toast_bytes} bytes");
    let own = |c: &Cluster| {
        [
            table_md5(c, "toasty", "id"),
            table_md5(c, "spaced", "id"),
            c.sql_one_string("SELECT md5(lo_get(lo)) FROM blobs WHERE name = 'random'"),
            c.sql_one_string("SELECT length(lo_get(lo)) FROM blobs WHERE name = 'random'"),
        ]
    };
    let own_before = own(&source);
    assert_eq!(own_before[3], "160000");

    // pgbench writes for the whole backup.
    let mut load = source.pgbench_command(&["-n", "-c", "2", "-T", "600"]);
    load.stdout(Stdio::null()).stderr(Stdio::null());
    let mut load = run_as_cluster_owner(&mut load)
        .spawn()
        .expect("starting pgbench");
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&source, "pgbench_history") < 100 {
        assert!(Instant::now() < deadline, "pgbench wrote nothing in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let history_before = count(&source, "pgbench_history");
    let cairn = Cairn::new();
    let backup_began = Instant::now();
    let backup = cairn.backup_json(&source, &[]);
    let backup_time = backup_began.elapsed();
    let history_after = count(&source, "pgbench_history");
    // SAFETY: kill has no memory-safety preconditions; the pid is our child, not yet reaped.
    unsafe { libc::kill(load.id() as libc::pid_t, libc::SIGINT) };
    let _ = load.wait();
    assert!(
        history_after > history_before,
        "pgbench committed nothing while the backup ran ({history_before} history rows before \
         and after)"
    );
    assert_eq!(u64_field(&backup, "postgres_version") / 10000, 15);
    assert_eq!(backup["bad_pages"].as_array().map(Vec::len), Some(0));
    let snapshot = str_field(&backup, "snapshot").to_string();

    let (_restore_dir, pgdata) = new_target("data");
    // Without --tablespace-map the tablespace would go back to where the source's still is:
    // refused, before anything is written.
    let ts_files_before = tree(ts_old.path());
    let out = cairn.restore(&snapshot, &pgdata, &[]);
    common::cairn::assert_code(&out, 6, "restore onto the source's tablespace directory");
    assert!(
        !pgdata.exists(),
        "the refused restore created {}",
        pgdata.display()
    );
    assert_same_tree(&ts_files_before, &tree(ts_old.path()), "source tablespace");
    let ts_dir = owned_temp_dir();
    let ts_new = ts_dir.path().join("moved");
    let mapping = format!("{}={}", ts_old.path().display(), ts_new.display());
    cairn.restore_ok(&snapshot, &pgdata, &["--tablespace-map", &mapping]);
    // The server fetches WAL with this pgcairn, the same repository and password file; the
    // password itself is nowhere in the configuration.
    let auto_conf = std::fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    let password_file = cairn.password_file().display().to_string();
    assert!(
        auto_conf.contains(env!("CARGO_BIN_EXE_pgcairn"))
            && auto_conf.contains(&password_file)
            && auto_conf.contains("archive-get")
            && !auto_conf.contains(common::cairn::PASSWORD),
        "{auto_conf}"
    );
    let mut restored = start_restored(source.install(), &pgdata);

    assert_eq!(
        own(&restored),
        own_before,
        "own tables or large object differ"
    );
    assert_eq!(
        restored.sql_one_string(
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'elsewhere'"
        ),
        ts_new.display().to_string()
    );
    assert_eq!(count(&restored, "spaced"), 20000);
    // An unlogged table comes back as its init fork: there, and empty.
    assert_eq!(count(&restored, "scratch"), 0);
    restored.assert_pgbench_consistent();
    assert_eq!(count(&restored, "pgbench_accounts"), scale * 100_000);
    assert_eq!(count(&restored, "pgbench_branches"), scale);
    assert_eq!(count(&restored, "pgbench_tellers"), scale * 10);
    let history = count(&restored, "pgbench_history");
    assert!(
        (history_before..=history_after).contains(&history),
        "restored history has {history} rows; the backup ran between {history_before} and \
         {history_after}"
    );
    // The restored server runs, writes and checkpoints.
    restored.execute("INSERT INTO spaced VALUES (0, 'after'); CHECKPOINT;");

    restored.assert_page_checksums();
    eprintln!(
        "round trip PG15 scale {scale}: backup {:.1} s ({} logical bytes, {} stored), \
         {history_before}..{history_after} history rows during it, {history} restored; \
         test {:.1} s",
        backup_time.as_secs_f64(),
        u64_field(&backup, "logical_bytes"),
        u64_field(&backup, "stored_bytes"),
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn second_backup_after_a_small_change_stores_a_small_fraction() {
    let began = Instant::now();
    let Some(source) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    source.pgbench_init(10);
    // Files count as unchanged since the parent only when they were last written more than a
    // margin before it started (backup::TIMESTAMP_MARGIN_NS): let the fresh cluster settle, as
    // the files of a real one mostly have.
    source.execute("CHECKPOINT");
    std::thread::sleep(Duration::from_millis(
        (pgcairn::backup::TIMESTAMP_MARGIN_NS / 1_000_000) as u64 + 1000,
    ));
    let cairn = Cairn::new();
    let first = cairn.backup_json(&source, &[]);

    // 1% of the accounts, a contiguous range: about 1% of the heap pages and the index pages
    // over them change, plus the pages the new row versions go to.
    source.execute(
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 10000; CHECKPOINT;",
    );
    let second = cairn.backup_json(&source, &[]);
    let third = cairn.backup_json(&source, &[]);

    let stored = |v: &serde_json::Value| u64_field(v, "stored_bytes");
    eprintln!(
        "stored bytes: first {} (of {} logical), second {} ({} files unchanged), third {}; \
         test {:.1} s",
        stored(&first),
        u64_field(&first, "logical_bytes"),
        stored(&second),
        u64_field(&second, "files_unchanged"),
        stored(&third),
        began.elapsed().as_secs_f64()
    );
    assert_eq!(second["parent"], first["snapshot"]);
    assert_eq!(third["parent"], second["snapshot"]);
    // The first backup stores the whole cluster compressed (pgbench's blank filler compresses
    // about 12:1, so it is small: ~16.0 MB of 197 MB). The second stores the ~1% of heap pages
    // the update touched, the pages the new row versions went to, the index and map pages
    // over them, and its own WAL: measured 316-358 KB, 2.0-2.3% of the first. The bound, 5%,
    // leaves a margin of 2x over that, and fails if unchanged files or pages were stored again.
    assert!(
        stored(&second) < stored(&first) / 20,
        "second backup stored {} bytes, first {}",
        stored(&second),
        stored(&first)
    );
    assert!(u64_field(&second, "files_unchanged") > 0, "{second}");
    // Nothing changed: only metadata and the backup's own few WAL records.
    assert!(
        stored(&third) < 64 << 10,
        "a backup of an unchanged cluster stored {} bytes",
        stored(&third)
    );
}

/// Every entry under `a` and `b` (and under the tablespace directories `a_ts` and `b_ts`)
/// the same, except that the tablespace link and tablespace_map name each one's own
/// tablespace directory.
fn assert_same_restore(a: &Path, b: &Path, a_ts: &Path, b_ts: &Path) {
    let mut a_tree = tree(a);
    let mut b_tree = tree(b);
    for entry in b_tree.values_mut() {
        if let TreeEntry::Symlink { target } = entry
            && target == b_ts
        {
            *target = a_ts.to_path_buf();
        }
    }
    let map_a = std::fs::read_to_string(a.join("tablespace_map")).unwrap();
    let map_b = std::fs::read_to_string(b.join("tablespace_map")).unwrap();
    assert!(map_a.contains(&a_ts.display().to_string()), "{map_a}");
    let b_ts_text = b_ts.display().to_string();
    assert_eq!(
        map_a,
        map_b.replace(&b_ts_text, &a_ts.display().to_string())
    );
    let (Some(TreeEntry::File { mode: mode_a, .. }), Some(TreeEntry::File { mode: mode_b, .. })) = (
        a_tree.remove(Path::new("tablespace_map")),
        b_tree.remove(Path::new("tablespace_map")),
    ) else {
        panic!("tablespace_map missing");
    };
    assert_eq!(mode_a, mode_b);
    assert_same_tree(&a_tree, &b_tree, "data directories");
    assert_same_tree(&tree(a_ts), &tree(b_ts), "tablespace directories");
}

fn owned_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    give_to_cluster_owner(path);
}

#[test]
fn delta_restore_over_a_modified_directory_equals_a_fresh_restore() {
    let began = Instant::now();
    let Some(source) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    source.pgbench_init(2);
    let ts_old = owned_temp_dir();
    source.execute(&format!(
        "CREATE TABLESPACE elsewhere LOCATION '{}'",
        ts_old.path().display()
    ));
    source.execute(
        "CREATE TABLE spaced (id int PRIMARY KEY, v text) TABLESPACE elsewhere;
         INSERT INTO spaced SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    );
    let relpath = |table: &str| -> PathBuf {
        PathBuf::from(source.sql_one_string(&format!("SELECT pg_relation_filepath('{table}')")))
    };
    let (accounts, branches, tellers, spaced) = (
        relpath("pgbench_accounts"),
        relpath("pgbench_branches"),
        relpath("pgbench_tellers"),
        relpath("spaced"),
    );
    let cairn = Cairn::new();
    let backup = cairn.backup_json(&source, &[]);
    let snapshot = str_field(&backup, "snapshot").to_string();

    let dirs = owned_temp_dir();
    for name in ["a", "b", "a_ts", "b_ts"] {
        // Restore creates the data directories; the tablespace directories exist, empty.
        if name.ends_with("_ts") {
            std::fs::create_dir(dirs.path().join(name)).unwrap();
            give_to_cluster_owner(&dirs.path().join(name));
        }
    }
    let (a, b) = (dirs.path().join("a"), dirs.path().join("b"));
    let (a_ts, b_ts) = (dirs.path().join("a_ts"), dirs.path().join("b_ts"));
    let map = |to: &Path| format!("{}={}", ts_old.path().display(), to.display());
    cairn.restore_ok(&snapshot, &a, &["--tablespace-map", &map(&a_ts)]);
    cairn.restore_ok(&snapshot, &b, &["--tablespace-map", &map(&b_ts)]);
    assert_same_restore(&a, &b, &a_ts, &b_ts);

    // Damage B in every way a stale or half-used directory can differ.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(b.join(&accounts))
        .unwrap();
    file.write_all_at(b"not what the snapshot has", 8192 * 3 + 100)
        .unwrap();
    drop(file);
    std::fs::remove_file(b.join(&branches)).unwrap();
    let tellers_len = std::fs::metadata(b.join(&tellers)).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(b.join(&tellers))
        .unwrap()
        .set_len(tellers_len / 2 + 17)
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        b.join("pg_hba.conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    owned_file(&b.join(accounts.with_file_name("99999")), b"extra relation");
    std::fs::create_dir(b.join("extra_dir")).unwrap();
    give_to_cluster_owner(&b.join("extra_dir"));
    owned_file(&b.join("extra_dir/inside"), b"extra file in an extra dir");
    // Entries of the wrong kind: a directory where the snapshot has a file, a file where it
    // has a directory, a symlink where it has a file.
    std::fs::remove_file(b.join("global/pg_filenode.map")).unwrap();
    std::fs::create_dir(b.join("global/pg_filenode.map")).unwrap();
    give_to_cluster_owner(&b.join("global/pg_filenode.map"));
    owned_file(&b.join("global/pg_filenode.map/inside"), b"in the way");
    std::fs::remove_dir(b.join("pg_notify")).unwrap();
    owned_file(&b.join("pg_notify"), b"a file, not a directory");
    std::fs::remove_file(b.join("PG_VERSION")).unwrap();
    std::os::unix::fs::symlink(b.join("postgresql.conf"), b.join("PG_VERSION")).unwrap();
    owned_file(
        &b.join("pg_wal/000000010000000000000099"),
        &vec![0x5a; 1 << 20],
    );
    // In the tablespace (pg_tblspc/OID/PG_15_*/DB/FILE): a damaged page and an extra file.
    let ts_file = b_ts.join(spaced.iter().skip(2).collect::<PathBuf>());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ts_file)
        .unwrap()
        .write_all_at(&[0xff; 64], 8192 + 1000)
        .unwrap();
    owned_file(&ts_file.with_file_name("77777"), b"extra in the tablespace");

    let out = cairn.restore(
        &snapshot,
        &b,
        &[
            "--delta",
            "--tablespace-map",
            &map(&b_ts),
            "--target-immediate",
            "--target-action",
            "promote",
        ],
    );
    assert_success(&out, "delta restore");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("extra entries removed"), "{report}");
    eprintln!("delta restore: {}", report.trim());
    assert_same_restore(&a, &b, &a_ts, &b_ts);

    // And the result runs.
    let restored = start_restored(source.install(), &b);
    assert_eq!(count(&restored, "pgbench_branches"), 2);
    assert_eq!(count(&restored, "spaced"), 20000);
    eprintln!("delta restore: test {:.1} s", began.elapsed().as_secs_f64());
}
