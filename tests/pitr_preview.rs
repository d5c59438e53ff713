//! Point-in-time restore against a real PostgreSQL 15 archiving through `pgcairn archive-push`:
//! which snapshot a time or LSN target picks, `restore --preview` changing nothing, an explicit
//! snapshot after the target refused, `snapshots --json` reporting restorability and the
//! recoverable window, and one `--target-lsn` restore that starts and stops where it was told.
//!
//! Exactness of every target kind (the restored server's rows) is tested elsewhere.

mod common;

use std::path::Path;
use std::time::Duration;

use common::archiving::{server_now, switch_wal_and_wait_archived};
use common::cairn::{
    Cairn, assert_code, assert_success, new_target, stderr, stdout, str_field, wait_promoted,
};
use common::pg::Cluster;

fn preview(cairn: &Cairn, pgdata: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["restore", "--preview", "--json", "--pgdata"];
    let pgdata = pgdata.to_str().unwrap();
    all.push(pgdata);
    all.extend(args);
    let out = cairn.run(&all);
    assert_success(&out, &format!("{all:?}"));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("preview printed no JSON ({e}):\n{}", stdout(&out)))
}

#[test]
fn targets_pick_snapshots_and_preview_changes_nothing() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    cluster.execute("CREATE TABLE marker (note text)");
    switch_wal_and_wait_archived(&cluster);
    let first = cairn.backup_json(&cluster, &[]);
    let first_id = str_field(&first, "snapshot").to_string();

    // Between the snapshots: one commit before the target, one after.
    cluster.execute("INSERT INTO marker VALUES ('between-1')");
    let target_lsn = cluster.sql_one_string("SELECT pg_current_wal_lsn()");
    let target_time = server_now(&cluster);
    // Commit times are microseconds apart otherwise; the snapshot must finish clearly later.
    std::thread::sleep(Duration::from_millis(50));
    cluster.execute("INSERT INTO marker VALUES ('between-2')");
    switch_wal_and_wait_archived(&cluster);
    std::thread::sleep(Duration::from_millis(1100));
    let second = cairn.backup_json(&cluster, &[]);
    let second_id = str_field(&second, "snapshot").to_string();
    cluster.execute("INSERT INTO marker VALUES ('after-2')");
    let after_second = server_now(&cluster);
    switch_wal_and_wait_archived(&cluster);

    let (_keep, target) = new_target("restored");

    // A time between the snapshots picks the first; after the second, the second.
    let plan = preview(&cairn, &target, &["--target-time", &target_time]);
    assert_eq!(plan["snapshot"]["id"], first_id.as_str(), "{plan}");
    assert_eq!(plan["wal"]["complete"], true, "{plan}");
    assert_eq!(plan["wal"]["first"], first["start_wal"], "{plan}");
    let settings: Vec<&str> = plan["recovery_settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        settings
            .iter()
            .any(|l| l.starts_with("recovery_target_time = '") && l.ends_with("+00'")),
        "{settings:?}"
    );
    assert!(settings.contains(&"archive_mode = 'off'"), "{settings:?}");
    let total = plan["bytes"]["total"].as_u64().unwrap();
    assert!(total > plan["bytes"]["wal"].as_u64().unwrap(), "{plan}");
    let plan = preview(&cairn, &target, &["--target-time", &after_second]);
    assert_eq!(plan["snapshot"]["id"], second_id.as_str(), "{plan}");
    let plan = preview(&cairn, &target, &["--target-lsn", &target_lsn]);
    assert_eq!(plan["snapshot"]["id"], first_id.as_str(), "{plan}");
    let plan = preview(&cairn, &target, &["--target-immediate"]);
    assert_eq!(plan["snapshot"]["id"], second_id.as_str(), "{plan}");
    assert_eq!(plan["wal"]["last"], second["stop_wal"], "{plan}");
    // The text form too; and none of it wrote anything.
    let out = cairn.run(&[
        "restore",
        "--preview",
        "--target-time",
        &target_time,
        "--pgdata",
        target.to_str().unwrap(),
    ]);
    assert_success(&out, "restore --preview");
    assert!(stdout(&out).contains(&first_id[..8]), "{}", stdout(&out));
    assert!(!target.exists(), "--preview created {}", target.display());

    // The second snapshot named with a target before it: refused, nothing written.
    let out = cairn.restore(&second_id[..12], &target, &["--target-time", &target_time]);
    assert_code(&out, 6, "restore of a snapshot after its target");
    assert!(stderr(&out).contains("older snapshot"), "{}", stderr(&out));
    assert!(
        !target.exists(),
        "a refused restore created {}",
        target.display()
    );
    // Before every snapshot: refused too.
    let out = cairn.restore("latest", &target, &["--target-lsn", "0/10"]);
    assert_code(&out, 6, "restore to a target before every snapshot");

    // snapshots --json: both restorable, in one window from the first snapshot's stop LSN to
    // past the last commit.
    let listed = cairn.snapshots();
    assert_eq!(listed.len(), 2);
    for s in &listed {
        assert_eq!(s["restorable"], true, "{s}");
        assert_eq!(s["wal_missing"], serde_json::json!([]), "{s}");
        let window = &s["window"];
        assert_eq!(window["earliest"]["lsn"], first["stop_lsn"], "{s}");
        let latest: pgcairn::pg::wal::Lsn =
            window["latest"]["lsn"].as_str().unwrap().parse().unwrap();
        let second_stop: pgcairn::pg::wal::Lsn =
            second["stop_lsn"].as_str().unwrap().parse().unwrap();
        assert!(latest > second_stop, "{s}");
    }
    let text = cairn.run_ok(&["snapshots"]);
    assert!(
        text.contains("STATUS") && text.contains("recoverable:"),
        "{text}"
    );
    let info: serde_json::Value = serde_json::from_str(&cairn.run_ok(&["info", "--json"])).unwrap();
    let timelines = &info["clusters"][0]["timelines"];
    assert_eq!(
        timelines[0]["windows"].as_array().unwrap().len(),
        1,
        "{info}"
    );
    assert_eq!(timelines[0]["gaps"], serde_json::json!([]), "{info}");

    // And a real restore to the LSN: the first snapshot, replayed to just after 'between-1'.
    let out = cairn.restore(
        "latest",
        &target,
        &["--target-lsn", &target_lsn, "--target-action", "promote"],
    );
    assert_success(&out, "restore --target-lsn");
    assert!(stdout(&out).contains(&first_id[..8]), "{}", stdout(&out));
    let mut restored = Cluster::from_existing(cluster.install(), &target);
    restored.start();
    wait_promoted(&restored);
    let notes = restored.sql_one_string("SELECT string_agg(note, ',' ORDER BY note) FROM marker");
    assert_eq!(notes, "between-1", "{}", restored.log());
}
