//! pgcairn on a storage that misbehaves (Cargo feature `fault-injection`, src/storage/faults.rs):
//! a real PostgreSQL 15 archives through `archive-push` while a tenth of its storage operations
//! fail, fail after doing their work, stall or read short; backups and prunes run with the
//! same faults. Every command succeeds, or fails with a documented exit code and a one-line
//! error, never a panic. Afterwards, with the faults off, the repository verifies down to the
//! bytes, every file the server archived comes back exactly as the server wrote it, and a
//! restore of the last successful backup to the end of the archive holds every committed row.
//! On a local repository and on S3 (tests/common/servers.rs).
//!
//! The faults sit above OpenDAL's retry layer (where src/storage/mod.rs wraps the operator), so
//! each injected failure is one the command itself meets: most commands under faults fail,
//! and the test is that they fail cleanly and leave nothing a later command trips over.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, assert_success, code, stderr};
use common::pg::{Cluster, owned_temp_dir};
use common::servers::S3Server;

/// Faults in `rate` of all operations, every kind. The log lists what was injected.
fn faults(rate: f64, log: &Path) -> String {
    format!(
        "rate={rate},seed=20261121,kinds=fail,fail-after,delay,truncate,log={}",
        log.display()
    )
}

/// The share of faulty operations for archive-push, and for backups and prunes by round: at a
/// tenth, a backup's few dozen operations almost never all go through, so every other round
/// has fewer faults and some backups and prunes succeed under faults too.
const ARCHIVE_RATE: f64 = 0.1;
const ROUND_RATES: [f64; 2] = [0.1, 0.02];
/// Rounds of writes, a backup and a prune, all under faults.
const ROUNDS: usize = 8;

/// Exit codes a command may fail with when storage misbehaves: documented in README.md
/// ("Exit codes"). Internal errors (70) and panics (101) are bugs.
const EXPECTED_FAILURES: &[i32] = &[6, 10, 12, 13, 16];

/// Checks a command run under faults: success, or a documented failure code and exactly one
/// error line, no panic. Returns whether it succeeded.
fn check_outcome(out: &Output, what: &str, tally: &mut BTreeMap<String, usize>) -> bool {
    let err = stderr(out);
    assert!(
        !err.contains("panicked"),
        "{what} panicked under faults:\n{err}"
    );
    let code = code(out);
    *tally.entry(format!("{what}: exit {code}")).or_default() += 1;
    if code == 0 {
        return true;
    }
    assert!(
        EXPECTED_FAILURES.contains(&code),
        "{what} exited {code} under faults, not a storage failure's code:\n{err}"
    );
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("pgcairn: error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{what} (exit {code}) must say what failed in one error line:\n{err}"
    );
    eprintln!("{what} failed as it may (exit {code}): {}", errors[0]);
    false
}

/// Pokes the server's archiver once a second: after three failures in a row it otherwise
/// waits a minute before trying again, and a reload wakes it.
struct ArchiverPoker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArchiverPoker {
    fn start(cluster: &Cluster) -> ArchiverPoker {
        let stop = Arc::new(AtomicBool::new(false));
        let conninfo = cluster.conninfo();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Ok(mut client) = postgres::Client::connect(&conninfo, postgres::NoTls) {
                    let _ = client.simple_query("SELECT pg_reload_conf()");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        ArchiverPoker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ArchiverPoker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The whole run against `cairn`'s repository, freshly initialised.
fn survive_faults(cairn: &Cairn) {
    let copies = owned_temp_dir();
    let fault_log = cairn.path("faults.log");
    // The server's own copy of each file it archives, taken before pgcairn sees it.
    let before = format!(
        "cp %p {}/%f && PGCAIRN_FAULTS={} ",
        copies.path().display(),
        faults(ARCHIVE_RATE, &fault_log)
    );
    let conf = cairn.archiving_conf_with(&before);
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    let _poker = ArchiverPoker::start(&cluster);
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    cluster.execute("CREATE TABLE log (n bigserial PRIMARY KEY, round int, filler text)");
    // One backup without faults, so that there is one to restore whatever happens below.
    let out = cairn.backup(&cluster, &[]);
    assert_success(&out, "backup before the faults");

    let mut tally = BTreeMap::new();
    let mut snapshots = 0;
    for round in 0..ROUNDS {
        let spec = faults(ROUND_RATES[round % ROUND_RATES.len()], &fault_log);
        cluster.execute(&format!(
            "INSERT INTO log (round, filler) \
             SELECT {round}, repeat(md5(g::text || random()::text), 8) FROM generate_series(1, 20000) g"
        ));
        switch_wal_and_wait_archived(&cluster);
        let mut backup = cairn.command(&[
            "backup",
            "--pgdata",
            cluster.pgdata().to_str().unwrap(),
            "--db",
            &cluster.conninfo(),
            "--fast",
        ]);
        backup.env("PGCAIRN_FAULTS", &spec);
        let out = backup.output().expect("running backup");
        if check_outcome(&out, "backup", &mut tally) {
            snapshots += 1;
        }
        // A minute's grace, the least allowed with archive-push running: packs condemned in
        // one round are deleted a few rounds later.
        let mut prune = cairn.command(&["prune", "--keep-last", "2", "--grace", "1min"]);
        prune.env("PGCAIRN_FAULTS", &spec);
        let out = prune.output().expect("running prune");
        check_outcome(&out, "prune", &mut tally);
    }
    let committed = cluster.sql_one_string("SELECT count(*) || ' ' || max(n) FROM log");
    let last = switch_wal_and_wait_archived(&cluster);
    eprintln!("outcomes under faults: {tally:?}");

    // Each kind's effect is unit-tested with the layer; here enough faults must have hit.
    let injected = std::fs::read_to_string(&fault_log).unwrap_or_default();
    let count = |what: &str| injected.lines().filter(|l| l.contains(what)).count();
    assert!(
        injected.lines().count() >= 20 && count(" fail (") > 0,
        "too few faults were injected:\n{injected}"
    );
    eprintln!(
        "faults: {} fail, {} fail-after ({} on WAL catalogue entries), {} delay, {} truncate",
        count(" fail ("),
        count(" fail-after "),
        count("write fail-after wal/"),
        count(" delay "),
        count(" truncate ")
    );
    let failed_pushes: u64 = cluster
        .sql_one_string("SELECT failed_count FROM pg_stat_archiver")
        .parse()
        .unwrap();
    assert!(failed_pushes > 0, "no archive-push ever failed");
    eprintln!("{failed_pushes} archive-push runs failed and were retried");

    // Faults off from here on.
    let out = cairn.run(&["verify", "--read-data", "--strict"]);
    assert_success(&out, "verify --read-data --strict after the faults");

    // Every file the server archived comes back as the server wrote it, but for the WAL that
    // prune expired: the segments before the oldest kept snapshot's start, which may also
    // have stayed (exit 1 or the same bytes, never other bytes or another failure).
    let oldest_start = cairn
        .snapshots()
        .iter()
        .map(|s| s["start_wal"].as_str().expect("start_wal").to_string())
        .min()
        .expect("a snapshot is kept");
    let mut archived: Vec<String> = std::fs::read_dir(copies.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    archived.sort();
    assert!(
        archived.iter().any(|n| n == &last),
        "{last} not among the copies"
    );
    let (mut expired, mut kept) = (Vec::new(), Vec::new());
    for name in archived {
        let expirable = name.len() >= 24 && name[..24] < *oldest_start;
        let fetched = cairn.path("fetched");
        let out = cairn.archive_get(&system_id, &name, &fetched);
        if expirable && code(&out) == 1 {
            expired.push(name);
            continue;
        }
        assert_success(&out, &format!("archive-get {name}"));
        assert!(
            std::fs::read(&fetched).unwrap() == std::fs::read(copies.path().join(&name)).unwrap(),
            "{name} came back different from what the server archived"
        );
        kept.push(name);
    }
    eprintln!(
        "{} archived files came back exactly; {} before {oldest_start} were expired by prune",
        kept.len(),
        expired.len()
    );

    // The last successful backup, replayed to the end of the archive.
    eprintln!("{snapshots} of {ROUNDS} backups succeeded under faults");
    cairn.assert_restore_to_end_holds(
        cluster.install(),
        "SELECT count(*) || ' ' || max(n) FROM log",
        &committed,
    );
}

#[test]
fn local_repository_survives_storage_faults() {
    survive_faults(&Cairn::new());
}

/// On S3 the WAL catalogue entry is a conditional write through OpenDAL, so a lost response
/// (`fail-after`) makes the server's retry of archive-push meet the entry it already wrote.
#[test]
fn s3_repository_survives_storage_faults() {
    let server = S3Server::start();
    survive_faults(&Cairn::on(server.remote("faults")));
}
