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

use std::time::Duration;

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, assert_code, new_target, stderr, str_field};
use common::pitr::{Action, Case, args, mark, markers_cluster, restore_and_check, restore_point};

#[test]
fn every_kind_of_target_restores_exactly_the_markers_up_to_it() {
    let cairn = Cairn::new();
    let Some(cluster) = markers_cluster(&cairn, 15) else {
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
    let Some(mut original) = markers_cluster(&cairn, 15) else {
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
