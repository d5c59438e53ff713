//! Every PostgreSQL major pgcairn supports, 13 to 18, through the same two tests:
//!
//! - a round trip: a backup of a running cluster holding known data (pgbench tables and one of
//!   its own, nothing writing while the backup runs), restored, started; every table as it
//!   was, the restored server writes and checkpoints, and every page's checksum holds;
//! - a point-in-time recovery: the cluster archives WAL through `pgcairn archive-push`; a
//!   backup; marker rows committed after it, with the time and LSN after each and a named
//!   restore point among them; restores to a time, an LSN and the restore point each hold
//!   exactly the markers up to the target, and the server has promoted onto a new timeline
//!   and takes writes. Before that, `info` shows the recoverable window reaching the last
//!   marker, ending at a commit time: archive-push read the commits in this major's WAL.
//!
//! 13, 15 and 18 (the oldest, Debian's, the newest) run by default, as in CI. 14, 16 and 17
//! are ignored to keep the default run short: scripts/pg-matrix.sh fetches every major and runs
//! them all, with a table of the results.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, new_target, start_restored, str_field, table_md5, u64_field};
use common::pg::{Cluster, PGBENCH_TABLES, cluster_with_a_damaged_page};
use common::pitr::{Action, Case, args, mark, markers_cluster, restore_and_check, restore_point};
use pgcairn::pg::wal::Lsn;

/// Round trip of a cluster of `major` with no concurrent writes: every table must come back
/// exactly.
fn round_trip(major: u32) {
    let began = Instant::now();
    let Some(source) = Cluster::started_checksummed(major, &[]) else {
        return;
    };
    source.pgbench_init(2);
    source.pgbench(&["-n", "-t", "200"]);
    source.execute(
        "CREATE TABLE own (id int PRIMARY KEY, v text);
         INSERT INTO own SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 5000) g;",
    );
    let tables: Vec<(&str, &str)> = PGBENCH_TABLES
        .iter()
        .copied()
        .chain([("own", "id")])
        .collect();
    let md5s = |c: &Cluster| -> Vec<String> {
        tables
            .iter()
            .map(|(t, order)| table_md5(c, t, order))
            .collect()
    };
    let before = md5s(&source);

    let cairn = Cairn::new();
    let backup = cairn.backup_json(&source, &[]);
    assert_eq!(
        u64_field(&backup, "postgres_version") / 10000,
        u64::from(major)
    );
    assert_eq!(backup["bad_pages"].as_array().map(Vec::len), Some(0));
    let (_dir, pgdata) = new_target("data");
    cairn.restore_ok(str_field(&backup, "snapshot"), &pgdata, &[]);
    let mut restored = start_restored(source.install(), &pgdata);
    assert_eq!(md5s(&restored), before, "PostgreSQL {major}: tables differ");
    restored.assert_pgbench_consistent();
    restored.execute("INSERT INTO own VALUES (0, 'after'); CHECKPOINT;");
    restored.assert_page_checksums();
    eprintln!(
        "round trip PG{major} ({}): test {:.1} s",
        source.install().bin_dir.display(),
        began.elapsed().as_secs_f64()
    );
}

/// Point-in-time recovery of a cluster of `major` to a time, an LSN and a restore point.
fn point_in_time(major: u32) {
    let began = Instant::now();
    let cairn = Cairn::new();
    let Some(cluster) = markers_cluster(&cairn, major) else {
        return;
    };
    let install = cluster.install().clone();
    mark(&cluster, 1);
    mark(&cluster, 2);
    switch_wal_and_wait_archived(&cluster);
    let backup = cairn.backup_json(&cluster, &[]);
    assert_eq!(
        u64_field(&backup, "postgres_version") / 10000,
        u64::from(major)
    );
    let snapshot = str_field(&backup, "snapshot").to_string();
    // A second keeps the time target clear of the snapshot's finish time.
    std::thread::sleep(Duration::from_millis(1100));
    let three = mark(&cluster, 3);
    restore_point(&cluster, "after-3");
    let four = mark(&cluster, 4);
    let five = mark(&cluster, 5);
    switch_wal_and_wait_archived(&cluster);

    // archive-push read this major's WAL records: the recoverable window reaches past marker 5,
    // and its end is a commit time read from WAL, not the time a segment was archived.
    let info: serde_json::Value =
        serde_json::from_str(&cairn.run_ok(&["info", "--json"])).expect("info --json");
    let latest = &info["clusters"][0]["timelines"][0]["windows"][0]["latest"];
    let latest_lsn: Lsn = latest["lsn"]
        .as_str()
        .and_then(|lsn| lsn.parse().ok())
        .unwrap_or_else(|| panic!("PostgreSQL {major}: no recoverable window in {info}"));
    assert!(
        latest_lsn >= five.lsn.parse().unwrap(),
        "PostgreSQL {major}: the window ends before marker 5 ({}): {info}",
        five.lsn
    );
    assert_eq!(
        latest["time_approximate"], false,
        "PostgreSQL {major}: {info}"
    );

    let case = |what, target: Vec<String>, markers| Case {
        what,
        snapshot: None,
        target,
        action: Action::Promote,
        expect_snapshot: snapshot.clone(),
        expect_markers: markers,
    };
    let cases = [
        case(
            "time after marker 3",
            args(&["--target-time", &three.time]),
            "1,2,3",
        ),
        case(
            "LSN after marker 4",
            args(&["--target-lsn", &four.lsn]),
            "1,2,3,4",
        ),
        case(
            "restore point after marker 3",
            args(&["--target-name", "after-3"]),
            "1,2,3",
        ),
    ];
    for case in &cases {
        let restored = restore_and_check(&cairn, &install, case, &[]);
        let promoted = &restored.cluster;
        assert_eq!(
            promoted.sql_one_string("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
            "00000002",
            "PostgreSQL {major}, {}: the restored server promoted onto timeline 2",
            case.what
        );
        promoted.execute("INSERT INTO markers (n) VALUES (100); CHECKPOINT;");
    }
    eprintln!(
        "point-in-time recovery PG{major} ({}): test {:.1} s",
        install.bin_dir.display(),
        began.elapsed().as_secs_f64()
    );
}

/// The page check the round trips end with finds a page whose checksum does not match: on 13
/// through Debian's pg_checksums of another major, on 18 through the server's own reads.
#[test]
fn the_page_check_finds_a_damaged_page() {
    for major in [13, 18] {
        let Some((mut damaged, rel)) = cluster_with_a_damaged_page(major, || {}) else {
            continue;
        };
        let check = catch_unwind(AssertUnwindSafe(|| damaged.assert_page_checksums()));
        assert!(
            check.is_err(),
            "PostgreSQL {major}: the page check passed with block 1 of {rel} damaged"
        );
    }
}

#[test]
fn round_trip_pg13() {
    round_trip(13);
}

#[test]
fn point_in_time_pg13() {
    point_in_time(13);
}

#[test]
#[ignore = "PostgreSQL 14 runs in scripts/pg-matrix.sh"]
fn round_trip_pg14() {
    round_trip(14);
}

#[test]
#[ignore = "PostgreSQL 14 runs in scripts/pg-matrix.sh"]
fn point_in_time_pg14() {
    point_in_time(14);
}

#[test]
fn round_trip_pg15() {
    round_trip(15);
}

#[test]
fn point_in_time_pg15() {
    point_in_time(15);
}

#[test]
#[ignore = "PostgreSQL 16 runs in scripts/pg-matrix.sh"]
fn round_trip_pg16() {
    round_trip(16);
}

#[test]
#[ignore = "PostgreSQL 16 runs in scripts/pg-matrix.sh"]
fn point_in_time_pg16() {
    point_in_time(16);
}

#[test]
#[ignore = "PostgreSQL 17 runs in scripts/pg-matrix.sh"]
fn round_trip_pg17() {
    round_trip(17);
}

#[test]
#[ignore = "PostgreSQL 17 runs in scripts/pg-matrix.sh"]
fn point_in_time_pg17() {
    point_in_time(17);
}

#[test]
fn round_trip_pg18() {
    round_trip(18);
}

#[test]
fn point_in_time_pg18() {
    point_in_time(18);
}
