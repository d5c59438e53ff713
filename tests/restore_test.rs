//! `pgcairn verify --restore-test` against real PostgreSQL: a snapshot that restores passes
//! (15 with a tablespace, an unlogged table, a materialized view; 13 and 18), a page damaged
//! before the backup fails the full check, bad server programs and roles are named, a timeout
//! and an interrupt stop the server; the temporary directory is gone afterwards every time.
//!
//! pgcairn runs as the cluster owner (see tests/common/cairn.rs), and once as root when the
//! tests run as root, so that the server is started as the `postgres` user.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cairn::{Cairn, assert_code, assert_success, stderr, stdout, str_field, tree};
use common::pg::{Cluster, cluster_with_a_damaged_page, owned_temp_dir};

/// `verify --restore-test [SNAPSHOT]` into `dir`, plus `extra`.
fn restore_test_args(snapshot: Option<&str>, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["verify".to_string(), "--restore-test".to_string()];
    args.extend(snapshot.map(str::to_string));
    args.extend(["--restore-test-dir".to_string(), dir.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn report(out: &Output) -> serde_json::Value {
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --restore-test --json printed no JSON ({e}):\nstdout:\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    });
    let schema = "verify-restore-test.schema.json";
    common::json_schema::assert_conforms(schema, "verify --restore-test --json", &report);
    report
}

fn u64_at(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing from {value}"))
}

/// Asserts the restore test left nothing in its parent directory.
fn assert_empty(dir: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Whether process `pid` still exists.
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The shape docs/verify.md documents for a passing test.
fn assert_passing_report(json: &serde_json::Value, major: u64) {
    assert_eq!(json["passed"], true, "{json}");
    assert_eq!(u64_at(json, "/snapshot/postgres_version") / 10000, major);
    assert_eq!(json["snapshot"]["id"].as_str().map(str::len), Some(64));
    assert!(json["stopped"].is_null(), "{json}");
    assert_eq!(json["failures"], serde_json::json!([]));
    assert_eq!(json["shutdown"], "fast");
    assert_eq!(json["kept"], false);
    assert!(u64_at(json, "/restore/bytes") > 0);
    assert!(u64_at(json, "/restore/files") > 0);
    assert!(json["recovery"]["seconds"].as_f64().is_some(), "{json}");
    let checks = &json["checks"];
    assert_eq!(checks["data_checksums"], true);
    assert_eq!(checks["checksum_failures"], 0);
    let names: Vec<&str> = checks["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["postgres", "template1"], "{json}");
    assert_eq!(
        checks["skipped_databases"],
        serde_json::json!(["template0"])
    );
    assert!(u64_at(checks, "/relations") > 100, "{json}");
    assert!(u64_at(checks, "/pages") > 0);
    assert!(u64_at(checks, "/tables_read") > 50, "{json}");
    assert_eq!(json["server"]["os_user"], "postgres");
    assert_eq!(json["server"]["role"], "postgres");
    assert!(json["seconds"].as_f64().is_some());
}

#[test]
fn a_snapshot_that_restores_passes_and_leaves_nothing_behind() {
    let began = Instant::now();
    // Settings of the production host that the copy must not follow: Debian's external pid
    // file (the copy would overwrite the original's), and per-database and per-role settings
    // that would make the checks fail (read-only sessions, a tiny statement timeout).
    let pid_dir = owned_temp_dir();
    let pid_file = pid_dir.path().join("source.pid");
    let pid_conf = format!("external_pid_file = '{}'", pid_file.display());
    let Some(source) = Cluster::started_checksummed(15, &[&pid_conf]) else {
        return;
    };
    source.pgbench_init(1);
    source.execute(
        "ALTER DATABASE template1 SET default_transaction_read_only = on;
         ALTER ROLE postgres IN DATABASE template1 SET statement_timeout = '1ms';",
    );
    let ts = owned_temp_dir();
    source.execute(&format!(
        "CREATE TABLESPACE elsewhere LOCATION '{}'",
        ts.path().display()
    ));
    source.execute(
        "CREATE TABLE spaced (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false) \
             TABLESPACE elsewhere;
         INSERT INTO spaced SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
         CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
         INSERT INTO scratch SELECT generate_series(1, 1000);
         CREATE MATERIALIZED VIEW totals AS SELECT bid, sum(abalance) FROM pgbench_accounts \
             GROUP BY bid;
         CREATE MATERIALIZED VIEW never_filled AS SELECT 1 AS one WITH NO DATA;
         CREATE SEQUENCE counter;",
    );
    let cairn = Cairn::new();
    let backup = cairn.backup_json(&source, &[]);
    let snapshot = str_field(&backup, "snapshot").to_string();
    // After the backup's checkpoint, nothing writes to the tablespace any more.
    let ts_before = tree(ts.path());

    // No --pg-bindir: PostgreSQL 15 is found by pg_config or where Debian puts it.
    let dir = owned_temp_dir();
    let started = Instant::now();
    let out = cairn.run(&restore_test_args(None, dir.path(), &["--json"]));
    let elapsed = started.elapsed();
    assert_success(&out, "verify --restore-test --json");
    let json = report(&out);
    assert_passing_report(&json, 15);
    assert_eq!(json["snapshot"]["id"], snapshot.as_str());
    assert_eq!(
        json["server"]["bindir"],
        source.install().bin_dir.display().to_string()
    );
    let checks = &json["checks"];
    assert_eq!(checks["level"], "amcheck");
    assert_eq!(checks["amcheck"], "passed");
    assert!(u64_at(checks, "/indexes_checked") > 50, "{json}");
    assert_eq!(u64_at(checks, "/heaps_checked"), 0);
    let directory = json["directory"].as_str().unwrap();
    assert!(
        directory.starts_with(&dir.path().display().to_string()),
        "{directory}"
    );
    assert_empty(dir.path());
    // The tablespace was restored inside the temporary directory, not over the original.
    assert!(json["log_tail"].as_array().unwrap().is_empty());
    common::cairn::assert_same_tree(&ts_before, &tree(ts.path()), "source tablespace");
    eprintln!(
        "restore test (amcheck, JSON) took {:.1} s: restore {} s, recovery {} s, checks {} s",
        elapsed.as_secs_f64(),
        json["restore"]["seconds"],
        json["recovery"]["seconds"],
        json["checks"]["seconds"]
    );

    // The full check, the snapshot named, text output. As root, pgcairn restores as root and
    // runs the server as the postgres user.
    let args = restore_test_args(
        Some(&snapshot[..8]),
        dir.path(),
        &["--restore-test-check", "full"],
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    let cache = owned_temp_dir();
    let mut cmd = if as_root {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcairn"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PGCAIRN_INSECURE_TEST_KDF", "1")
            .arg("--repo")
            .arg(cairn.repo())
            .arg("--password-file")
            .arg(cairn.password_file())
            .arg("--cache-dir")
            .arg(cache.path())
            .args(&args)
            .stdin(Stdio::null());
        cmd
    } else {
        cairn.command(&args)
    };
    let out = cmd.output().unwrap();
    assert_success(&out, "verify --restore-test --restore-test-check full");
    let text = stdout(&out);
    assert!(text.contains(": PASSED"), "{text}");
    assert!(text.contains("full: 2 databases"), "{text}");
    assert!(text.contains("heaps verified"), "{text}");
    assert!(
        text.contains("not connectable, not checked: template0"),
        "{text}"
    );
    assert_empty(dir.path());
    let source_pid = source.pid().unwrap().to_string();
    let pid_text = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid_text.lines().next(), Some(source_pid.as_str()));
    eprintln!(
        "restore test: both runs {:.1} s (as root: {as_root}); test {:.1} s",
        started.elapsed().as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn a_page_damaged_before_the_backup_fails_the_full_check() {
    let Some((source, _)) = cluster_with_a_damaged_page(15, || {}) else {
        return;
    };
    let cairn = Cairn::new();
    let backup = cairn.backup_json(&source, &[]);
    assert_eq!(backup["bad_pages"].as_array().map(Vec::len), Some(1));

    let dir = owned_temp_dir();
    let out = cairn.run(&restore_test_args(
        None,
        dir.path(),
        &["--restore-test-check", "full", "--json"],
    ));
    assert_code(&out, 17, "verify --restore-test of a damaged snapshot");
    let json = report(&out);
    assert_eq!(json["passed"], false, "{json}");
    assert!(json["stopped"].is_null(), "{json}");
    assert_eq!(json["snapshot"]["bad_pages"], 1);
    let failures = json["failures"].as_array().unwrap();
    let read = failures
        .iter()
        .find(|f| f["check"] == "read")
        .unwrap_or_else(|| panic!("no read failure in {json}"));
    assert_eq!(read["database"], "postgres");
    assert_eq!(read["relation"], "public.victim");
    let message = read["message"].as_str().unwrap();
    assert!(
        message.contains("invalid page in block 1") && message.contains("XX001"),
        "{message}"
    );
    assert!(
        failures
            .iter()
            .all(|f| f["relation"] == "public.victim" || f["check"] == "checksums"),
        "{json}"
    );
    assert!(!json["log_tail"].as_array().unwrap().is_empty(), "{json}");
    let error = stderr(&out);
    assert!(
        error.contains("restore test of snapshot") && error.contains("public.victim"),
        "{error}"
    );
    assert_empty(dir.path());

    // The default check reads one row of each table: block 1 is not read, and the report
    // points at what the backup found.
    let out = cairn.run(&restore_test_args(None, dir.path(), &[]));
    assert_success(
        &out,
        "verify --restore-test (amcheck) of a damaged snapshot",
    );
    let text = stdout(&out);
    assert!(
        text.contains("the backup found 1 pages failing their checksum"),
        "{text}"
    );
    assert_empty(dir.path());
}

#[test]
fn bad_programs_roles_and_timeouts_are_named_and_leave_nothing() {
    let Some(source) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    source.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);");
    let cairn = Cairn::new();
    cairn.backup_json(&source, &[]);
    let dir = owned_temp_dir();

    let out = cairn.run(&["verify", "--restore-test-keep"]);
    assert_code(&out, 2, "a restore test option without --restore-test");

    let out = cairn.run(&restore_test_args(
        None,
        dir.path(),
        &["--pg-bindir", "/nonexistent/pg/bin"],
    ));
    assert_code(&out, 2, "--pg-bindir that does not exist");
    let error = stderr(&out);
    assert!(
        error.contains("/nonexistent/pg/bin")
            && error.contains("no such directory")
            && error.contains("PostgreSQL 15"),
        "{error}"
    );
    assert_empty(dir.path());

    if let Some(other) = common::pg::PgInstall::find(13).or_else(|| common::pg::PgInstall::find(18))
    {
        let bindir = other.bin_dir.display().to_string();
        let out = cairn.run(&restore_test_args(
            None,
            dir.path(),
            &["--pg-bindir", &bindir],
        ));
        assert_code(&out, 2, "--pg-bindir of another major");
        let error = stderr(&out);
        assert!(
            error.contains(&format!("holds PostgreSQL {}.", other.major))
                && error.contains("not 15"),
            "{error}"
        );
    }

    let out = cairn.run(&restore_test_args(
        None,
        dir.path(),
        &["--restore-test-role", "nobody_here", "--json"],
    ));
    assert_code(&out, 17, "a role the cluster does not have");
    let json = report(&out);
    assert_eq!(json["stopped"]["phase"], "recovery", "{json}");
    assert_eq!(json["stopped"]["exit_code"], 17);
    let message = json["stopped"]["message"].as_str().unwrap();
    assert!(
        message.contains("no role nobody_here") && message.contains("--restore-test-role"),
        "{message}"
    );
    assert_empty(dir.path());

    let out = cairn.run(&restore_test_args(
        None,
        dir.path(),
        &["--restore-test-timeout", "0"],
    ));
    assert_code(&out, 17, "a timeout before consistency");
    let error = stderr(&out);
    assert!(
        error.contains("recovery phase") && error.contains("within 0 s"),
        "{error}"
    );
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
    assert_empty(dir.path());

    // Kept on request, with the server stopped.
    let out = cairn.run(&restore_test_args(
        None,
        dir.path(),
        &[
            "--restore-test-keep",
            "--restore-test-check",
            "quick",
            "--json",
        ],
    ));
    assert_success(&out, "verify --restore-test --restore-test-keep");
    let json = report(&out);
    assert_eq!(json["kept"], true);
    assert_eq!(json["checks"]["amcheck"], "skipped");
    let kept = PathBuf::from(json["directory"].as_str().unwrap());
    assert!(kept.join("data/PG_VERSION").is_file(), "{}", kept.display());
    assert!(kept.join("server.log").is_file());
    assert!(
        !kept.join("data/postmaster.pid").exists(),
        "the server still runs"
    );
    std::fs::remove_dir_all(&kept).unwrap();
}

#[test]
fn an_interrupt_stops_the_server_and_removes_the_directory() {
    let Some(source) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    source.pgbench_init(1);
    let cairn = Cairn::new();
    cairn.backup_json(&source, &[]);
    let dir = owned_temp_dir();
    let mut child = cairn
        .command(&restore_test_args(None, dir.path(), &["--json"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Freeze the server as soon as it has started: pgcairn then waits on it (for consistency
    // or in a check) until the interrupt.
    let deadline = Instant::now() + Duration::from_secs(120);
    let postmaster = loop {
        let pid = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .find_map(|e| std::fs::read_to_string(e.path().join("data/postmaster.pid")).ok())
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            break pid;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "pgcairn ended before the server started"
        );
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(5));
    };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(postmaster, libc::SIGSTOP);
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(postmaster, libc::SIGCONT) };

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "pgcairn did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status}\n{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stopped"]["exit_code"], 130, "{json}");
    assert!(!alive(postmaster), "the server {postmaster} still runs");
    assert_empty(dir.path());
}

/// A simple snapshot of `major` passes the default check.
fn passes_on(major: u32) {
    let began = Instant::now();
    let Some(source) = Cluster::started_checksummed(major, &[]) else {
        return;
    };
    source.pgbench_init(1);
    let cairn = Cairn::new();
    cairn.backup_json(&source, &[]);
    let dir = owned_temp_dir();
    let bindir = source.install().bin_dir.display().to_string();
    let out = cairn.run(&restore_test_args(
        Some("latest"),
        dir.path(),
        &["--pg-bindir", &bindir, "--json"],
    ));
    assert_success(
        &out,
        &format!("verify --restore-test on PostgreSQL {major}"),
    );
    let json = report(&out);
    assert_passing_report(&json, u64::from(major));
    assert_eq!(json["checks"]["amcheck"], "passed", "{json}");
    assert!(u64_at(&json, "/checks/indexes_checked") > 50, "{json}");
    assert_empty(dir.path());
    eprintln!(
        "restore test PG{major}: test {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn a_pg13_snapshot_passes() {
    passes_on(13);
}

#[test]
fn a_pg18_snapshot_passes() {
    passes_on(18);
}
