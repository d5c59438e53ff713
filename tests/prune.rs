//! `pgcairn prune` against a real PostgreSQL 15 that archives through `pgcairn archive-push`
//! while pgbench writes, backups run and prune runs again and again (format-spec §13): at the
//! end the kept snapshots verify down to the bytes and a restore to the end of the archive
//! holds every committed row.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, assert_success, json, write_owned};
use common::pg::{Cluster, run_as_cluster_owner};

/// How long pgbench, backups and prunes run together. Longer than the grace period below, so
/// packs condemned early are deleted while writers still run.
const TOGETHER: Duration = Duration::from_secs(100);
const GRACE: &str = "1min";

/// pgbench inserting numbered rows, two clients, until stopped.
fn start_writing(cluster: &Cluster, cairn: &Cairn) -> Child {
    cluster.execute("CREATE TABLE log (n bigserial PRIMARY KEY, filler text)");
    let script = cairn.path("insert.sql");
    write_owned(
        &script,
        "INSERT INTO log (filler) VALUES (repeat(md5(random()::text), 8));\n",
    );
    let mut cmd = cluster.pgbench_command(&[
        "-n",
        "-c",
        "2",
        "-T",
        "3600",
        "-f",
        script.to_str().unwrap(),
    ]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    run_as_cluster_owner(&mut cmd)
        .spawn()
        .expect("starting pgbench")
}

fn prune(cairn: &Cairn) -> serde_json::Value {
    let out = cairn.run(&["prune", "--keep-last", "2", "--grace", GRACE, "--json"]);
    assert_success(&out, "prune");
    json(&out)
}

#[test]
fn prune_while_pgbench_archives_and_backups_run_loses_nothing() {
    let cairn = Cairn::new();
    let conf = cairn.archiving_conf();
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    let mut pgbench = start_writing(&cluster, &cairn);

    let began = Instant::now();
    let (mut backups, mut deleted, mut condemned, mut expired) = (0, 0, 0, 0);
    while began.elapsed() < TOGETHER {
        let out = cairn.backup(&cluster, &[]);
        assert_success(&out, "backup while pgbench writes and prune runs");
        backups += 1;
        // More WAL to archive and to expire.
        switch_wal_and_wait_archived(&cluster);
        let report = prune(&cairn);
        let packs = &report["packs"];
        condemned +=
            packs["condemn"].as_array().unwrap().len() + packs["repack"].as_array().unwrap().len();
        deleted += report["done"]["packs_deleted"].as_u64().unwrap();
        expired += report["wal_expired"].as_array().unwrap().len();
    }
    let _ = pgbench.kill();
    let _ = pgbench.wait();
    let committed = cluster.sql_one_string("SELECT count(*) || ' ' || max(n) FROM log");
    switch_wal_and_wait_archived(&cluster);
    prune(&cairn);
    assert!(backups >= 4, "only {backups} backups ran");
    assert!(condemned > 0, "nothing was ever condemned");
    assert!(deleted > 0, "no pack was deleted while the writers ran");
    assert!(expired > 0, "no WAL was expired");
    assert_eq!(cairn.snapshot_ids().len(), 2, "--keep-last 2");

    // --strict: a gap in the archived WAL would cut the window the restore below needs.
    let verify = cairn.run(&["verify", "--read-data", "--strict"]);
    assert_success(&verify, "verify --read-data --strict after the run");

    // Every committed row is in a restore to the end of the archive.
    cairn.assert_restore_to_end_holds(
        cluster.install(),
        "SELECT count(*) || ' ' || max(n) FROM log",
        &committed,
    );
}
