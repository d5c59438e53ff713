//! `backup` of a hot standby: a real primary archiving through `pgcairn archive-push` and a
//! streaming standby made by pg_basebackup, both on this host. Marker rows committed on the
//! primary before and after the backup, and pgbench writing on it during the backup, tell what
//! a restore holds.
//!
//! - With `--primary-db`: the snapshot says it comes from a standby, starts after everything
//!   the primary committed before the backup (its checkpoint made the standby's restartpoint
//!   recent), its WAL is all archived (the primary switched WAL); restored with no archive at
//!   all, it holds exactly the markers from before the backup and a consistent pgbench; and a
//!   point-in-time recovery from it through the archive reaches a later marker with the
//!   primary's pgbench tables.
//! - Without it: the last segment is the standby's copy, the backup does not wait for the
//!   archive to receive it, and the snapshot still restores on its own.
//! - Refused: a `--primary-db` that cannot be reached, is itself in recovery or is another
//!   cluster, and a standby whose replay is stalled; a standby promoted during the backup.
//! - PostgreSQL 13 (pg_start_backup/pg_stop_backup on a standby).

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::archiving::switch_wal_and_wait_archived;
use common::bytes_read_by;
use common::cairn::{
    Cairn, assert_code, assert_success, json, new_target, stderr, str_field, table_md5,
    wait_promoted,
};
use common::pg::{Cluster, append, free_port, run_as_cluster_owner};
use common::pitr::markers;
use pgcairn::pg::datadir::{Disposition, FileKind};
use pgcairn::pg::wal::Lsn;
use tempfile::TempDir;

/// Commits marker `n` on `primary`; returns the WAL position right after the commit.
fn mark(primary: &Cluster, n: i32) -> String {
    primary.execute(&format!("INSERT INTO markers VALUES ({n})"));
    primary.sql_one_string("SELECT pg_current_wal_lsn()")
}

fn lsn(text: &str) -> Lsn {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is no LSN: {e}"))
}

/// Waits until `standby` has replayed everything `primary` has flushed.
fn wait_replayed(standby: &Cluster, primary: &Cluster) {
    let target = lsn(&primary.sql_one_string("SELECT pg_current_wal_flush_lsn()"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while lsn(&standby.sql_one_string("SELECT pg_last_wal_replay_lsn()")) < target {
        assert!(
            Instant::now() < deadline,
            "the standby did not replay up to {target} within 60 s; its log:\n{}",
            standby.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A primary on `major` archiving into `cairn`, with the markers table, and its standby with
/// `standby_conf` (started, caught up). None when `major` is missing and tests may skip.
fn primary_and_standby(
    cairn: &Cairn,
    major: u32,
    standby_conf: &[&str],
) -> Option<(Cluster, Cluster)> {
    let conf = cairn.archiving_conf();
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let primary = Cluster::started_checksummed(major, &conf)?;
    primary.execute("CREATE TABLE markers (n int PRIMARY KEY)");
    let mut standby = Cluster::standby_of(&primary, standby_conf);
    standby.start();
    wait_replayed(&standby, &primary);
    Some((primary, standby))
}

/// A restored server and the directory that holds its data directory.
struct Restored {
    cluster: Cluster,
    _dir: TempDir,
}

/// Restores `snapshot` with `target` flags (none: to the end of the WAL) and promotes there.
/// With `on_its_own`, the restore_command is replaced by one that finds nothing, so that
/// recovery has only the WAL the snapshot carries in pg_wal.
fn restore(
    cairn: &Cairn,
    install_of: &Cluster,
    snapshot: &str,
    target: &[&str],
    on_its_own: bool,
) -> Restored {
    let (dir, pgdata) = new_target("restored");
    let mut flags = target.to_vec();
    if !target.is_empty() {
        flags.extend(["--target-action", "promote"]);
    }
    assert_success(&cairn.restore(snapshot, &pgdata, &flags), "restore");
    if on_its_own {
        append(
            &pgdata.join("postgresql.auto.conf"),
            "restore_command = 'false'\n",
        );
    }
    let mut cluster = Cluster::from_existing(install_of.install(), &pgdata);
    assert_no_page_past_consistency(&cluster);
    cluster.start();
    wait_promoted(&cluster);
    Restored { cluster, _dir: dir }
}

/// A standby's backup is consistent where the minimum recovery point of the pg_control it holds
/// says: no page it holds may be newer (the standby advances the point before it writes a
/// page, and pgcairn reads pg_control after every other file). Checked on the restored,
/// not yet started, data directory.
fn assert_no_page_past_consistency(restored: &Cluster) {
    let point = lsn(&restored.control_data("Minimum recovery ending location"));
    let mut newest = (Lsn::ZERO, String::new());
    restored.walk(&mut |path, disposition, bytes| {
        if !matches!(disposition, Disposition::Keep(FileKind::Relation { .. })) {
            return;
        }
        for page in bytes.chunks_exact(8192) {
            let half =
                |at: usize| u64::from(u32::from_le_bytes(page[at..at + 4].try_into().unwrap()));
            let page_lsn = Lsn((half(0) << 32) | half(4));
            if page_lsn > newest.0 {
                newest = (page_lsn, path.to_string());
            }
        }
    });
    assert!(
        newest.0 <= point,
        "{} holds a page of LSN {}, past the snapshot's consistency point {point}",
        newest.1,
        newest.0
    );
}

/// pgbench writing on `primary` in the background until [`stop_pgbench`], once it has
/// committed its first transactions.
fn start_pgbench(primary: &Cluster) -> Child {
    let mut cmd = primary.pgbench_command(&["-n", "-c", "2", "-T", "600", "-R", "100"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let child = run_as_cluster_owner(&mut cmd)
        .spawn()
        .expect("starting pgbench");
    let deadline = Instant::now() + Duration::from_secs(60);
    while primary.sql_one_string("SELECT count(*) FROM pgbench_history") == "0" {
        assert!(
            Instant::now() < deadline,
            "pgbench committed nothing in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Stops pgbench and waits until its sessions are gone, so that nothing it sent commits later.
fn stop_pgbench(primary: &Cluster, mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    while primary
        .sql_one_string("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")
        != "0"
    {
        assert!(Instant::now() < deadline, "pgbench sessions remain");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_standby_backup_with_its_primary_restores_on_its_own_and_serves_pitr() {
    let began = Instant::now();
    let cairn = Cairn::new();
    // Few buffers: the standby writes pages all the time as it replays, each time moving its
    // minimum recovery point, so a pg_control read before the pages would be older than some.
    let Some((primary, standby)) = primary_and_standby(&cairn, 15, &["shared_buffers = 128kB"])
    else {
        return;
    };
    primary.pgbench_init(1);
    for n in 1..=3 {
        mark(&primary, n);
    }
    let before_backup = lsn(&primary.sql_one_string("SELECT pg_current_wal_lsn()"));
    let pgbench = start_pgbench(&primary);
    let out = cairn.backup(&standby, &["--primary-db", &primary.conninfo()]);
    stop_pgbench(&primary, pgbench);
    assert_success(&out, "backup of the standby");
    let summary = json(&out);
    let id = str_field(&summary, "snapshot").to_string();
    assert_eq!(str_field(&summary, "backup_from"), "standby", "{summary}");
    // The primary's checkpoint moved the standby's restartpoint, where the backup starts,
    // past the markers; without it the start would be the standby's base backup.
    assert!(
        lsn(str_field(&summary, "start_lsn")) >= before_backup,
        "the backup starts before what the primary wrote before it: {summary}"
    );
    // The primary switched WAL, and archived the last segment within the wait.
    assert_eq!(
        summary["wal_unarchived"],
        serde_json::json!([]),
        "{summary}"
    );
    assert!(
        summary["wal_stop_segment_unfinished"].is_null(),
        "{summary}"
    );

    let after: Vec<String> = (4..=6).map(|n| mark(&primary, n)).collect();
    switch_wal_and_wait_archived(&primary);

    let alone = restore(&cairn, &primary, &id, &["--target-immediate"], true);
    assert_eq!(
        markers(&alone.cluster),
        "1,2,3",
        "restored to consistency from the snapshot alone; log:\n{}",
        alone.cluster.log()
    );
    alone.cluster.assert_pgbench_consistent();
    drop(alone);

    let pitr = restore(&cairn, &primary, &id, &["--target-lsn", &after[1]], false);
    assert_eq!(markers(&pitr.cluster), "1,2,3,4,5");
    pitr.cluster.assert_pgbench_consistent();
    for table in ["pgbench_accounts", "pgbench_history"] {
        assert_eq!(
            table_md5(&pitr.cluster, table, "t::text"),
            table_md5(&primary, table, "t::text"),
            "{table} after point-in-time recovery from the standby's snapshot"
        );
    }
    eprintln!(
        "standby backup, restore alone and PITR in {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn without_its_primary_a_standby_backup_carries_its_own_last_segment() {
    let cairn = Cairn::new();
    // archive_mode = always: the standby archives what it receives too.
    let Some((primary, standby)) = primary_and_standby(&cairn, 15, &["archive_mode = always"])
    else {
        return;
    };
    for n in 1..=3 {
        mark(&primary, n);
    }
    // The standby's next restartpoint, where the backup starts, is in the segment the primary
    // writes now, which nothing makes it finish; and the primary writes nothing after it.
    primary.execute("CHECKPOINT");
    wait_replayed(&standby, &primary);

    let began = Instant::now();
    let out = cairn.backup(&standby, &["--archive-timeout", "30"]);
    let took = began.elapsed();
    assert_success(&out, "backup of the standby without its primary");
    let summary = json(&out);
    assert_eq!(str_field(&summary, "backup_from"), "standby");
    let stop_wal = str_field(&summary, "stop_wal");
    assert_eq!(
        summary["wal_stop_segment_unfinished"], stop_wal,
        "the last segment is the standby's copy: {summary}"
    );
    assert_eq!(summary["wal_missing"], serde_json::json!([]), "{summary}");
    assert!(
        stderr(&out).contains("--primary-db"),
        "the note says how to have the segment archived at once:\n{}",
        stderr(&out)
    );
    // Nothing follows the consistency point in the standby's copy, where PostgreSQL cannot
    // stop at an immediate target: the note says to restore to the end of the WAL.
    assert!(
        stderr(&out).contains("--target-immediate"),
        "{}",
        stderr(&out)
    );
    // Only a switch on the primary finishes that segment: waiting for it is pointless.
    assert!(
        took < Duration::from_secs(20),
        "the backup took {took:?}: it waited for a segment nobody finishes"
    );
    mark(&primary, 4);

    let id = str_field(&summary, "snapshot");
    let alone = restore(&cairn, &primary, id, &[], true);
    assert_eq!(
        markers(&alone.cluster),
        "1,2,3",
        "log:\n{}",
        alone.cluster.log()
    );
}

#[test]
fn a_wrong_primary_and_a_stalled_standby_are_refused() {
    let cairn = Cairn::new();
    let Some((primary, standby)) = primary_and_standby(&cairn, 15, &[]) else {
        return;
    };
    let nothing_listens = format!(
        "host=127.0.0.1 port={} user=postgres connect_timeout=5",
        free_port()
    );
    let out = cairn.backup(&standby, &["--primary-db", &nothing_listens]);
    assert_code(&out, 14, "an unreachable --primary-db");
    assert!(stderr(&out).contains("--primary-db"), "{}", stderr(&out));

    let out = cairn.backup(&standby, &["--primary-db", &standby.conninfo()]);
    assert_code(&out, 6, "--primary-db is the standby itself");
    assert!(stderr(&out).contains("in recovery"), "{}", stderr(&out));

    let Some(other) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    let out = cairn.backup(&standby, &["--primary-db", &other.conninfo()]);
    assert_code(&out, 6, "--primary-db is another cluster");
    assert!(
        stderr(&out).contains("system identifier"),
        "{}",
        stderr(&out)
    );

    // A standby that replays nothing cannot catch up with what the primary wrote.
    standby.execute("SELECT pg_wal_replay_pause()");
    mark(&primary, 1);
    let out = cairn.backup(
        &standby,
        &[
            "--primary-db",
            &primary.conninfo(),
            "--archive-timeout",
            "2",
        ],
    );
    assert_code(&out, 14, "a standby whose replay is paused");
    assert!(
        stderr(&out).contains("replayed nothing"),
        "{}",
        stderr(&out)
    );
    standby.execute("SELECT pg_wal_replay_resume()");
    assert!(
        cairn.snapshot_ids().is_empty(),
        "a refused backup left a snapshot"
    );

    // The same command against a primary (after a failover, say) backs it up and says that
    // --primary-db is not used.
    let out = cairn.backup(&primary, &["--primary-db", &nothing_listens]);
    assert_success(&out, "backup of a primary given --primary-db");
    assert_eq!(str_field(&json(&out), "backup_from"), "primary");
    assert!(stderr(&out).contains("not used"), "{}", stderr(&out));
}

#[test]
fn a_standby_promoted_during_the_backup_leaves_no_snapshot() {
    let cairn = Cairn::new();
    let conf = cairn.archiving_conf();
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(primary) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    primary.pgbench_init(5);
    let mut standby = Cluster::standby_of(&primary, &[]);
    standby.start();
    wait_replayed(&standby, &primary);

    let mut args: Vec<std::ffi::OsString> = vec!["backup".into(), "--pgdata".into()];
    args.push(standby.pgdata().into());
    args.extend(["--db".into(), standby.conninfo().into(), "--fast".into()]);
    let child = cairn
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held still in the middle of reading the standby's files while the standby is promoted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while bytes_read_by(child.id()) < 20 << 20 {
        assert!(
            Instant::now() < deadline,
            "the backup read too little in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; the pid is our child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    assert_eq!(standby.sql_one_string("SELECT pg_promote()"), "t");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 14, "backup of a standby promoted during it");
    assert!(
        stderr(&out).contains("promoted during the backup"),
        "{}",
        stderr(&out)
    );
    assert!(
        cairn.snapshot_ids().is_empty(),
        "a backup of a standby promoted during it left a snapshot"
    );
}

#[test]
fn a_postgresql_13_standby_backs_up_and_restores() {
    let cairn = Cairn::new();
    let Some((primary, standby)) = primary_and_standby(&cairn, 13, &[]) else {
        return;
    };
    for n in 1..=3 {
        mark(&primary, n);
    }
    let out = cairn.backup(&standby, &["--primary-db", &primary.conninfo()]);
    assert_success(&out, "backup of a PostgreSQL 13 standby");
    let summary = json(&out);
    assert_eq!(str_field(&summary, "backup_from"), "standby");
    assert_eq!(
        summary["wal_unarchived"],
        serde_json::json!([]),
        "{summary}"
    );
    mark(&primary, 4);
    let alone = restore(
        &cairn,
        &primary,
        str_field(&summary, "snapshot"),
        &["--target-immediate"],
        true,
    );
    assert_eq!(
        markers(&alone.cluster),
        "1,2,3",
        "log:\n{}",
        alone.cluster.log()
    );
}
