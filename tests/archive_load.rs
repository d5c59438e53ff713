//! WAL archiving under load and under crashes, with a real PostgreSQL 15 archiving through
//! pgcairn: the archive keeps up with pgbench, and archive-push killed with SIGKILL at random
//! moments loses nothing and exposes nothing half-written.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, write_owned};
use common::pg::{Cluster, give_to_cluster_owner};

fn ready_files(cluster: &Cluster) -> usize {
    std::fs::read_dir(cluster.pgdata().join("pg_wal/archive_status"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn archiving_keeps_up_with_pgbench() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    cluster.pgbench_init(10);
    // The load's own burst is not the steady state measured here.
    switch_wal_and_wait_archived(&cluster);
    let before: i64 = cluster.sql("SELECT archived_count FROM pg_stat_archiver")[0].get(0);
    let mut pgbench = cluster
        .pgbench_command(&["-c", "2", "-j", "2", "-T", "30", "-n"])
        .spawn()
        .expect("starting pgbench");
    let mut worst = 0;
    let mut samples = 0;
    while pgbench.try_wait().expect("waiting for pgbench").is_none() {
        worst = worst.max(ready_files(&cluster));
        samples += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let last = switch_wal_and_wait_archived(&cluster);
    let row = &cluster.sql("SELECT archived_count, failed_count FROM pg_stat_archiver")[0];
    let (archived, failed): (i64, i64) = (row.get(0), row.get(1));
    let during = archived - before;
    eprintln!(
        "archived {during} segments during the run, up to {last}; at most {worst} waiting in \
         {samples} samples"
    );
    assert!(
        during >= 3,
        "pgbench wrote only {during} segments: nothing was measured"
    );
    assert_eq!(failed, 0, "archive_command failed:\n{}", cluster.log());
    assert!(
        worst <= 4,
        "pg_wal held up to {worst} segments waiting for the archive"
    );
}

#[test]
fn archive_push_killed_at_random_moments_loses_nothing() {
    let cairn = Cairn::new();
    let saved = cairn.path("originals");
    std::fs::create_dir(&saved).unwrap();
    give_to_cluster_owner(&saved);
    let killed = cairn.path("killed");
    std::fs::create_dir(&killed).unwrap();
    give_to_cluster_owner(&killed);
    // archive_command: keep the original for comparison, then either push normally or start
    // a push, SIGKILL it after 0-90 ms and report failure (the server retries the file; if the
    // killed push had finished, the retry finds identical content). Each file is killed at
    // most once: three failures in a row make the archiver pause for a minute, and on a
    // loaded machine a few such pauses outlast the wait below without testing anything more.
    let push = format!(
        "{} --repo {} --password-file {} --cache-dir {} archive-push",
        env!("CARGO_BIN_EXE_pgcairn"),
        cairn.repo().display(),
        cairn.password_file().display(),
        cairn.path("cache").display()
    );
    let script = cairn.path("crashy-archive");
    write_owned(
        &script,
        &format!(
            "#!/bin/sh\n\
             cp \"$1\" '{saved}/'\"$2\" || exit 1\n\
             r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')\n\
             if [ $((r % 2)) -eq 0 ] && [ ! -e '{killed}/'\"$2\" ]; then\n\
             \x20 touch '{killed}/'\"$2\"\n\
             \x20 {push} \"$1\" & pid=$!\n\
             \x20 sleep 0.0$((r % 10))\n\
             \x20 kill -9 $pid 2>/dev/null; wait $pid\n\
             \x20 exit 1\n\
             fi\n\
             exec {push} \"$1\"\n",
            saved = saved.display(),
            killed = killed.display()
        ),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let conf = [
        "archive_mode = on".to_string(),
        format!("archive_command = '{} %p %f'", script.display()),
    ];
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.pgbench_init(5);
    cluster.pgbench(&["-c", "2", "-j", "2", "-t", "2000", "-n"]);
    let last = switch_wal_and_wait_archived(&cluster);
    let failed: i64 = cluster.sql("SELECT failed_count FROM pg_stat_archiver")[0].get(0);
    assert!(failed > 0, "no push was killed: the test proved nothing");

    let mut names: Vec<String> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 5 && names.last() == Some(&last), "{names:?}");
    cairn.assert_archived_exactly(&system_id, &names, |name| saved.join(name));
    eprintln!(
        "{} files archived, {failed} pushes killed and retried",
        names.len()
    );
}

#[test]
fn async_archiving_archives_ahead_and_every_file_comes_back() {
    let cairn = Cairn::new();
    let conf = [
        "archive_mode = on".to_string(),
        format!(
            "archive_command = '{} --repo {} --password-file {} --cache-dir {} -v archive-push \
             --async %p'",
            env!("CARGO_BIN_EXE_pgcairn"),
            cairn.repo().display(),
            cairn.password_file().display(),
            cairn.path("cache").display()
        ),
        "wal_keep_size = '1GB'".to_string(),
    ];
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.pgbench_init(5);
    cluster.pgbench(&["-c", "2", "-j", "2", "-t", "1000", "-n"]);
    let last = switch_wal_and_wait_archived(&cluster);
    let failed: i64 = cluster.sql("SELECT failed_count FROM pg_stat_archiver")[0].get(0);
    assert_eq!(failed, 0, "archive_command failed:\n{}", cluster.log());
    assert!(
        cluster.log().contains("archived by the background worker"),
        "no call was served by the worker:\n{}",
        cluster.log()
    );

    let mut names: Vec<String> = std::fs::read_dir(cluster.pgdata().join("pg_wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.as_str() <= last.as_str())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    cairn.assert_archived_exactly(&system_id, &names, |name| {
        cluster.pgdata().join("pg_wal").join(name)
    });
}
