//! Point-in-time recovery against a real PostgreSQL 15 archiving through `pgcairn
//! archive-push`, checked by what the restored server holds: marker rows committed one per
//! transaction before, between and after two snapshots, with the time, LSN and xid of each and
//! named restore points among them; every kind of target (time, LSN, xid, name, immediate) and
//! every target action (promote, pause, shutdown) restores exactly the markers up to the target
//! and none after, from the snapshot the target calls for.
//!
//! Timelines: a restore promoted on timeline 2 that keeps archiving into the same repository
//! (history file included), written to, then restored again to a point on timeline 2: the
//! timeline-1 markers up to the fork, the timeline-2 markers up to the target, nothing that
//! timeline 1 committed after the fork; and `info --json` shows the window on timeline 2.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{
    Cairn, assert_code, assert_success, new_target, stderr, stdout, str_field, wait_promoted,
};
use common::pg::{Cluster, PgInstall, markers, run_as_owner};
use tempfile::TempDir;

/// One committed marker row and where it stands.
#[derive(Clone, Debug)]
struct Marker {
    /// The xid of its transaction.
    xid: String,
    /// pg_current_wal_lsn() just after the commit.
    lsn: String,
    /// The server's clock just after the commit, in UTC with an explicit offset.
    time: String,
}

/// Commits marker `n` in a transaction of its own and records its xid, then the LSN and time
/// right after the commit.
fn mark(cluster: &Cluster, n: i32) -> Marker {
    let mut client = cluster.client();
    let mut tx = client.transaction().expect("BEGIN");
    tx.execute("INSERT INTO markers (n) VALUES ($1)", &[&n])
        .expect("inserting a marker");
    let xid: i64 = tx
        .query_one("SELECT txid_current()", &[])
        .expect("txid_current()")
        .get(0);
    tx.commit().expect("COMMIT");
    let row = client
        .query_one(
            "SELECT pg_current_wal_lsn()::text, \
             to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
            &[],
        )
        .expect("LSN and time after a commit");
    Marker {
        xid: xid.to_string(),
        lsn: row.get(0),
        time: row.get(1),
    }
}

fn restore_point(cluster: &Cluster, name: &str) {
    cluster.sql_one_string(&format!("SELECT pg_create_restore_point('{name}')"));
}

/// A cluster on PostgreSQL 15 archiving into `cairn`, with the markers table; None when 15 is
/// missing and the run opted into skipping.
fn archiving_cluster(cairn: &Cairn) -> Option<Cluster> {
    let cluster = cairn.archiving_cluster()?;
    cluster.execute("CREATE TABLE markers (n int, at timestamptz DEFAULT clock_timestamp())");
    Some(cluster)
}

/// `restore --preview --json` plus `args`: the id of the snapshot it would restore.
fn previewed_snapshot(cairn: &Cairn, args: &[String]) -> String {
    let mut all: Vec<String> = vec!["restore".into(), "--preview".into(), "--json".into()];
    all.extend(args.iter().cloned());
    let out = cairn.run(&all);
    assert_success(&out, &format!("{all:?}"));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("preview printed no JSON ({e}):\n{}", stdout(&out)));
    plan["snapshot"]["id"].as_str().unwrap().to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Promote,
    Pause,
    Shutdown,
}

/// One restore and what it must give.
struct Case {
    what: &'static str,
    /// SNAPSHOT on the command line; None: chosen by the target.
    snapshot: Option<String>,
    /// Target and timeline flags.
    target: Vec<String>,
    action: Action,
    /// The snapshot restore must pick (or was named).
    expect_snapshot: String,
    /// The markers the restored server must hold, in order.
    expect_markers: &'static str,
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A restored server and the directory that holds its data directory; the server stops before
/// the directory goes.
struct Restored {
    cluster: Cluster,
    _dir: TempDir,
}

/// Restores `case` into a fresh directory, runs the server to its target and checks the
/// markers; returns the restored server, promoted and running.
fn restore_and_check(cairn: &Cairn, install: &PgInstall, case: &Case, extra: &[&str]) -> Restored {
    let what = case.what;
    let (keep, target) = new_target("restored");
    let action = match case.action {
        Action::Promote => "promote",
        Action::Pause => "pause",
        Action::Shutdown => "shutdown",
    };
    let mut flags = case.target.clone();
    flags.extend(extra.iter().map(|s| s.to_string()));
    if case.snapshot.is_none() {
        let previewed = previewed_snapshot(cairn, &flags);
        assert_eq!(
            previewed, case.expect_snapshot,
            "{what}: preview's snapshot"
        );
    }
    let mut all: Vec<String> = vec!["restore".into()];
    all.extend(case.snapshot.clone());
    all.extend(["--pgdata".into(), target.to_str().unwrap().into()]);
    all.extend(flags);
    all.extend(["--target-action".into(), action.into()]);
    let out = cairn.run(&all);
    assert_success(&out, &format!("{what}: {all:?}"));
    let printed = format!("restored snapshot {} into", &case.expect_snapshot[..8]);
    assert!(
        stdout(&out).contains(&printed),
        "{what}: restore printed another snapshot than {}:\n{}",
        case.expect_snapshot,
        stdout(&out)
    );

    let mut restored = Cluster::from_existing(install, &target);
    match case.action {
        Action::Promote => {
            restored.start();
            wait_promoted(&restored);
        }
        Action::Pause => {
            // Paused at the target, in recovery, open for reading.
            restored.start();
            wait_paused(&restored, what);
            assert_eq!(
                markers(&restored),
                case.expect_markers,
                "{what}: paused at the target; log:\n{}",
                restored.log()
            );
            restored.sql_one_string("SELECT pg_wal_replay_resume()");
            wait_promoted(&restored);
        }
        Action::Shutdown => {
            // The server stops by itself at the target, perhaps before it accepts connections.
            if restored.try_start().is_ok() {
                assert!(
                    restored.wait_for_exit(Duration::from_secs(60)),
                    "{what}: the server did not shut down at its target; log:\n{}",
                    restored.log()
                );
            }
            assert_eq!(
                cluster_state(install, &target),
                "shut down in recovery",
                "{what}; log:\n{}",
                restored.log()
            );
            // Started again with the same settings it would replay to the target and stop
            // again; told to promote there instead, it opens at the same point.
            append_auto_conf(&target, "recovery_target_action = 'promote'");
            restored.start();
            wait_promoted(&restored);
        }
    }
    assert_eq!(
        markers(&restored),
        case.expect_markers,
        "{what}; log:\n{}",
        restored.log()
    );
    Restored {
        cluster: restored,
        _dir: keep,
    }
}

fn wait_paused(cluster: &Cluster, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.sql_one_string("SELECT pg_get_wal_replay_pause_state()") != "paused" {
        assert!(
            Instant::now() < deadline,
            "{what}: recovery did not pause at its target within 60 s; log:\n{}",
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cluster.sql_one_string("SELECT pg_is_in_recovery()"), "t");
}

/// `Database cluster state` as pg_controldata reports it.
fn cluster_state(install: &PgInstall, pgdata: &Path) -> String {
    let mut cmd = Command::new(install.program("pg_controldata"));
    cmd.arg(pgdata);
    let out = run_as_owner(&mut cmd, "pg_controldata");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Database cluster state:"))
        .map(|s| s.trim().to_string())
        .expect("pg_controldata prints the cluster state")
}

fn append_auto_conf(pgdata: &Path, line: &str) {
    use std::io::Write;
    let path = pgdata.join("postgresql.auto.conf");
    let mut file = std::fs::File::options().append(true).open(&path).unwrap();
    writeln!(file, "{line}").unwrap();
}

#[test]
fn every_kind_of_target_restores_exactly_the_markers_up_to_it() {
    let cairn = Cairn::new();
    let Some(cluster) = archiving_cluster(&cairn) else {
        return;
    };
    let install = cluster.install().clone();
    // Markers 1, 2 before the first snapshot; 3, 4, 5 between the two; 6, 7, 8 after the
    // second. Restore points after 3 and after 7. A second between the groups keeps time
    // targets clear of the snapshots' finish times.
    let mut m = Vec::new();
    for n in 1..=2 {
        m.push(mark(&cluster, n));
    }
    switch_wal_and_wait_archived(&cluster);
    let first = cairn.backup_json(&cluster, &[]);
    let first_id = str_field(&first, "snapshot").to_string();
    std::thread::sleep(Duration::from_millis(1100));
    m.push(mark(&cluster, 3));
    restore_point(&cluster, "after-3");
    for n in 4..=5 {
        m.push(mark(&cluster, n));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let second = cairn.backup_json(&cluster, &[]);
    let second_id = str_field(&second, "snapshot").to_string();
    std::thread::sleep(Duration::from_millis(1100));
    for n in 6..=7 {
        m.push(mark(&cluster, n));
    }
    restore_point(&cluster, "after-7");
    m.push(mark(&cluster, 8));
    switch_wal_and_wait_archived(&cluster);
    let at = |n: usize| &m[n - 1];

    let case =
        |what, snapshot: Option<&str>, target: Vec<String>, action, expect: &str, markers| Case {
            what,
            snapshot: snapshot.map(str::to_string),
            target,
            action,
            expect_snapshot: expect.to_string(),
            expect_markers: markers,
        };
    let cases = [
        case(
            "time between the snapshots",
            None,
            args(&["--target-time", &at(3).time]),
            Action::Promote,
            &first_id,
            "1,2,3",
        ),
        case(
            "time after the second snapshot",
            None,
            args(&["--target-time", &at(6).time]),
            Action::Promote,
            &second_id,
            "1,2,3,4,5,6",
        ),
        case(
            "LSN between the snapshots, paused there",
            None,
            args(&["--target-lsn", &at(4).lsn]),
            Action::Pause,
            &first_id,
            "1,2,3,4",
        ),
        case(
            "LSN after the second snapshot",
            None,
            args(&["--target-lsn", &at(7).lsn]),
            Action::Promote,
            &second_id,
            "1,2,3,4,5,6,7",
        ),
        case(
            "xid after the second snapshot (inclusive)",
            None,
            args(&["--target-xid", &at(6).xid]),
            Action::Promote,
            &second_id,
            "1,2,3,4,5,6",
        ),
        // The archive's segment summaries place the xid's commit between the snapshots.
        case(
            "xid between the snapshots",
            None,
            args(&["--target-xid", &at(4).xid]),
            Action::Promote,
            &first_id,
            "1,2,3,4",
        ),
        case(
            "restore point between the snapshots",
            None,
            args(&["--target-name", "after-3"]),
            Action::Promote,
            &first_id,
            "1,2,3",
        ),
        case(
            "restore point after the second snapshot, shut down there",
            None,
            args(&["--target-name", "after-7"]),
            Action::Shutdown,
            &second_id,
            "1,2,3,4,5,6,7",
        ),
        case(
            "immediate: the newest snapshot, as it was",
            None,
            args(&["--target-immediate"]),
            Action::Promote,
            &second_id,
            "1,2,3,4,5",
        ),
        case(
            "immediate from the first snapshot, named",
            Some(&first_id[..12]),
            args(&["--target-immediate"]),
            Action::Promote,
            &first_id,
            "1,2",
        ),
    ];
    for case in &cases {
        restore_and_check(&cairn, &install, case, &[]);
    }
}

#[test]
fn a_promoted_timeline_is_archived_and_restored_to() {
    let cairn = Cairn::new();
    let Some(mut original) = archiving_cluster(&cairn) else {
        return;
    };
    let install = original.install().clone();
    // Timeline 1: markers 1, 2; the first snapshot; 3, where timeline 2 will fork; 4 and 5
    // after the fork, and a second snapshot after them, on timeline 1 only.
    mark(&original, 1);
    mark(&original, 2);
    switch_wal_and_wait_archived(&original);
    let first = cairn.backup_json(&original, &[]);
    let first_id = str_field(&first, "snapshot").to_string();
    let fork = mark(&original, 3);
    mark(&original, 4);
    mark(&original, 5);
    let second = cairn.backup_json(&original, &[]);
    let second_id = str_field(&second, "snapshot").to_string();
    mark(&original, 6);
    switch_wal_and_wait_archived(&original);
    original.stop();

    // Restored to the fork and promoted onto timeline 2, archiving into the same repository.
    let fork_case = Case {
        what: "the fork: LSN after marker 3, archiving kept",
        snapshot: None,
        target: args(&["--target-lsn", &fork.lsn]),
        action: Action::Promote,
        expect_snapshot: first_id.clone(),
        expect_markers: "1,2,3",
    };
    let mut restored = restore_and_check(
        &cairn,
        &install,
        &fork_case,
        &["--archive-mode", "preserve"],
    );
    let promoted = &mut restored.cluster;
    assert_eq!(
        promoted.sql_one_string("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
        "00000002",
        "the restored server promoted onto timeline 2"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let ten = mark(promoted, 10);
    restore_point(promoted, "on-2");
    let eleven = mark(promoted, 11);
    mark(promoted, 12);
    switch_wal_and_wait_archived(promoted);
    assert_eq!(
        promoted.sql_one_string("SELECT failed_count FROM pg_stat_archiver"),
        "0",
        "{}",
        promoted.log()
    );
    promoted.stop();

    // Timeline 2 from the first snapshot (the second is on timeline 1 after the fork, not on
    // timeline 2's history): markers 1-3 from timeline 1, then timeline 2's up to the target.
    let cases = [
        Case {
            what: "timeline 2 by number, time after marker 10",
            snapshot: None,
            target: args(&["--target-time", &ten.time, "--target-timeline", "2"]),
            action: Action::Promote,
            expect_snapshot: first_id.clone(),
            expect_markers: "1,2,3,10",
        },
        Case {
            what: "latest timeline, LSN after marker 11",
            snapshot: None,
            target: args(&["--target-lsn", &eleven.lsn, "--target-timeline", "latest"]),
            action: Action::Promote,
            expect_snapshot: first_id.clone(),
            expect_markers: "1,2,3,10,11",
        },
        Case {
            what: "restore point on timeline 2, default timeline",
            snapshot: None,
            target: args(&["--target-name", "on-2"]),
            action: Action::Promote,
            expect_snapshot: first_id.clone(),
            expect_markers: "1,2,3,10",
        },
        Case {
            what: "timeline 1 still: the second snapshot, current timeline",
            snapshot: None,
            target: args(&["--target-immediate", "--target-timeline", "current"]),
            action: Action::Promote,
            expect_snapshot: second_id.clone(),
            expect_markers: "1,2,3,4,5",
        },
    ];
    for case in &cases {
        restore_and_check(&cairn, &install, case, &[]);
    }

    // The second snapshot named for timeline 2: refused, nothing written.
    let (_keep, target) = new_target("refused");
    let out = cairn.restore(
        &second_id,
        &target,
        &["--target-immediate", "--target-timeline", "2"],
    );
    assert_code(&out, 6, "restore of a snapshot not on timeline 2's history");
    assert!(
        stderr(&out).contains("not on the history of timeline 2"),
        "{}",
        stderr(&out)
    );
    assert!(
        !target.exists(),
        "a refused restore created {}",
        target.display()
    );

    // info --json: a window on timeline 2, opened by the first snapshot, reaching past
    // marker 11; timeline 1's window runs on from the first snapshot too.
    let info: serde_json::Value = serde_json::from_str(&cairn.run_ok(&["info", "--json"])).unwrap();
    let timelines = info["clusters"][0]["timelines"].as_array().unwrap();
    let on = |tli: u64| {
        timelines
            .iter()
            .find(|t| t["timeline"] == tli)
            .unwrap_or_else(|| panic!("no timeline {tli} in {info}"))
    };
    for tli in [1, 2] {
        let windows = on(tli)["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 1, "timeline {tli}: {info}");
        assert_eq!(windows[0]["snapshot"], first_id.as_str(), "{info}");
        assert_eq!(windows[0]["earliest"]["lsn"], first["stop_lsn"], "{info}");
    }
    let latest: pgcairn::pg::wal::Lsn = on(2)["windows"][0]["latest"]["lsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let after_eleven: pgcairn::pg::wal::Lsn = eleven.lsn.parse().unwrap();
    assert!(latest >= after_eleven, "{info}");
    let text = cairn.run_ok(&["snapshots"]);
    assert!(!text.contains("recoverable: nothing"), "{text}");
    // snapshots --json: both restorable, each in its own timeline's window.
    for s in cairn.snapshots() {
        assert_eq!(s["restorable"], true, "{s}");
        assert_eq!(s["timeline"], 1, "{s}");
        assert_eq!(s["window"]["snapshot"], first_id.as_str(), "{s}");
    }
}
