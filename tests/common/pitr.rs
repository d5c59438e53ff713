//! Point-in-time recovery checked by what the restored server holds: marker rows committed one
//! per transaction, each with the time, LSN and xid right after its commit, and named restore
//! points among them; a restore to a target must hold exactly the markers up to it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::cairn::{Cairn, assert_success, new_target, stdout, wait_promoted};
use super::pg::{Cluster, PgInstall, run_as_owner};

/// One committed marker row and where it stands.
#[derive(Clone, Debug)]
pub struct Marker {
    /// The xid of its transaction.
    pub xid: String,
    /// pg_current_wal_lsn() just after the commit.
    pub lsn: String,
    /// The server's clock just after the commit, in UTC with an explicit offset.
    pub time: String,
}

/// Commits marker `n` in a transaction of its own and records its xid, then the LSN and time
/// right after the commit.
pub fn mark(cluster: &Cluster, n: i32) -> Marker {
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

pub fn restore_point(cluster: &Cluster, name: &str) {
    cluster.sql_one_string(&format!("SELECT pg_create_restore_point('{name}')"));
}

/// The markers a server holds, in order, comma-separated.
pub fn markers(cluster: &Cluster) -> String {
    cluster.sql_one_string("SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM markers")
}

/// A cluster of `major` archiving into `cairn`, with the markers table; None when `major` is
/// missing and the run opted into skipping.
pub fn markers_cluster(cairn: &Cairn, major: u32) -> Option<Cluster> {
    let cluster = cairn.archiving_cluster_of(major)?;
    cluster.execute("CREATE TABLE markers (n int, at timestamptz DEFAULT clock_timestamp())");
    Some(cluster)
}

/// `restore --preview --json` plus `args`: the id of the snapshot it would restore.
pub fn previewed_snapshot(cairn: &Cairn, args: &[String]) -> String {
    let mut all: Vec<String> = vec!["restore".into(), "--preview".into(), "--json".into()];
    all.extend(args.iter().cloned());
    let out = cairn.run(&all);
    assert_success(&out, &format!("{all:?}"));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("preview printed no JSON ({e}):\n{}", stdout(&out)));
    plan["snapshot"]["id"].as_str().unwrap().to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    Pause,
    Shutdown,
}

/// One restore and what it must give.
pub struct Case {
    pub what: &'static str,
    /// SNAPSHOT on the command line; None: chosen by the target.
    pub snapshot: Option<String>,
    /// Target and timeline flags.
    pub target: Vec<String>,
    pub action: Action,
    /// The snapshot restore must pick (or was named).
    pub expect_snapshot: String,
    /// The markers the restored server must hold, in order.
    pub expect_markers: &'static str,
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A restored server and the directory that holds its data directory; the server stops before
/// the directory goes.
pub struct Restored {
    pub cluster: Cluster,
    _dir: TempDir,
}

/// Restores `case` into a fresh directory, runs the server to its target and checks the
/// markers; returns the restored server, promoted and running.
pub fn restore_and_check(
    cairn: &Cairn,
    install: &PgInstall,
    case: &Case,
    extra: &[&str],
) -> Restored {
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

pub fn wait_paused(cluster: &Cluster, what: &str) {
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
pub fn cluster_state(install: &PgInstall, pgdata: &Path) -> String {
    let mut cmd = Command::new(install.program("pg_controldata"));
    cmd.arg(pgdata);
    let out = run_as_owner(&mut cmd, "pg_controldata");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Database cluster state:"))
        .map(|s| s.trim().to_string())
        .expect("pg_controldata prints the cluster state")
}

pub fn append_auto_conf(pgdata: &Path, line: &str) {
    use std::io::Write;
    let path = pgdata.join("postgresql.auto.conf");
    let mut file = std::fs::File::options().append(true).open(&path).unwrap();
    writeln!(file, "{line}").unwrap();
}
