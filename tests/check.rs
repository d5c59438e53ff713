//! `pgcairn check` against real PostgreSQL 15 clusters: a cluster set up as the docs say
//! passes and the segment its WAL switch completes arrives in the repository; each
//! misconfiguration fails the check that names it, saying what to change, with exit 14.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::cairn::{Cairn, assert_code, assert_success, code, json, stdout};
use common::pg::Cluster;
use serde_json::Value;

/// `check --db CONNINFO --pgdata DIR` plus `extra`, whatever the outcome.
fn check_at(cairn: &Cairn, conninfo: &str, pgdata: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<OsString> = vec!["check".into(), "--db".into(), conninfo.into()];
    args.extend(["--pgdata".into(), pgdata.into()]);
    args.extend(extra.iter().map(OsString::from));
    cairn.run(&args)
}

/// `check` of `cluster` (as postgres, with its data directory) plus `extra`.
fn check(cairn: &Cairn, cluster: &Cluster, extra: &[&str]) -> Output {
    check_at(cairn, &cluster.conninfo(), cluster.pgdata(), extra)
}

/// `check --json` with a short archive timeout: its exit code and report.
fn check_json_at(cairn: &Cairn, conninfo: &str, pgdata: &Path) -> (i32, Value) {
    let out = check_at(
        cairn,
        conninfo,
        pgdata,
        &["--json", "--archive-timeout", "20"],
    );
    let report = json(&out);
    common::json_schema::assert_conforms("check.schema.json", "check --json", &report);
    (code(&out), report)
}

fn check_json(cairn: &Cairn, cluster: &Cluster) -> (i32, Value) {
    check_json_at(cairn, &cluster.conninfo(), cluster.pgdata())
}

/// Every check, in the order they run (docs/check.md).
const CHECKS: [&str; 12] = [
    "repository",
    "connection",
    "backup_functions",
    "settings_access",
    "wal_reservation",
    "wal_level",
    "archive_mode",
    "archive_command",
    "data_directory",
    "system_identifier",
    "archiver",
    "wal_switch",
];

/// The names of the report's checks, in its order.
fn names(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .map(|c| c["name"].as_str().expect("a name"))
        .collect()
}

/// The report's entry for check `name`.
fn finding<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// Asserts check `name` has `status` and its message holds each of `words`.
fn assert_finding(report: &Value, name: &str, status: &str, words: &[&str]) {
    let found = finding(report, name);
    assert_eq!(found["status"], status, "{name}: {report:#}");
    let message = found["message"].as_str().expect("message is text");
    for word in words {
        assert!(
            message.contains(word),
            "{name}: {word:?} not in {message:?}"
        );
    }
}

/// Sets `setting` with ALTER SYSTEM and reloads, waiting until new sessions see it.
fn alter_and_reload(cluster: &Cluster, setting: &str, value: &str) {
    let quoted = value.replace('\'', "''");
    // ALTER SYSTEM refuses to run in the transaction a batch of statements makes.
    cluster.execute(&format!("ALTER SYSTEM SET {setting} = '{quoted}'"));
    cluster.execute("SELECT pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(30);
    let query = format!("SELECT reset_val FROM pg_settings WHERE name = '{setting}'");
    while cluster.sql_one_string(&query) != value {
        assert!(Instant::now() < deadline, "{setting} was not reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_well_configured_cluster_passes_and_its_switched_segment_arrives() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    let (exit, report) = check_json(&cairn, &cluster);
    assert_eq!(exit, 0, "{report:#}");
    assert_eq!(report["status"], "ok", "{report:#}");
    assert_eq!(names(&report), CHECKS);
    for name in CHECKS {
        assert_eq!(finding(&report, name)["status"], "ok", "{name}: {report:#}");
    }
    assert_finding(
        &report,
        "archive_command",
        "ok",
        &["this repository", "--repo"],
    );
    assert_finding(&report, "system_identifier", "ok", &["no snapshot yet"]);
    let system_id = cluster.sql_one_string("SELECT system_identifier FROM pg_control_system()");
    assert_eq!(report["system_identifier"], system_id.as_str());

    // The segment the check switched away from is in the repository, whole.
    let segment = report["wal_segment"]
        .as_str()
        .expect("wal_segment")
        .to_string();
    assert!(report["archive_seconds"].as_f64().is_some(), "{report:#}");
    let fetched = cairn.path("fetched");
    assert_success(
        &cairn.archive_get(&system_id, &segment, &fetched),
        "archive-get",
    );
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), 16 << 20);

    // As text: one line per check, then the summary; each run switches to a new segment.
    let out = check(&cairn, &cluster, &[]);
    assert_success(&out, "check");
    let text = stdout(&out);
    assert!(
        text.lines().any(
            |l| l.starts_with("ok       wal_switch: switched to a new segment; ")
                && l.contains("reached the repository in")
                && !l.contains(&segment)
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 13, "{text}");
    assert!(
        text.ends_with("check passed: 12 ok, 0 warnings, 0 skipped\n"),
        "{text}"
    );

    // What the repository holds of the cluster, once backed up.
    cairn.backup_json(&cluster, &["--cluster", "main"]);
    let (exit, report) = check_json(&cairn, &cluster);
    assert_eq!(exit, 0, "{report:#}");
    assert_finding(
        &report,
        "system_identifier",
        "ok",
        &[&format!(
            "{system_id}: 1 snapshot(s) of this cluster (named main)"
        )],
    );

    // A data directory that is not the server's fails, naming it.
    let elsewhere = cluster.scratch_dir();
    let (exit, report) = check_json_at(&cairn, &cluster.conninfo(), elsewhere);
    assert_eq!(exit, 14, "{report:#}");
    assert_finding(
        &report,
        "data_directory",
        "failed",
        &[
            &elsewhere.display().to_string(),
            "not a PostgreSQL data directory",
        ],
    );
}

#[test]
fn archive_mode_off_and_wal_level_minimal_fail_naming_the_setting() {
    let cairn = Cairn::new();
    let Some(mut cluster) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    let out = check(&cairn, &cluster, &["--archive-timeout", "1"]);
    assert_code(&out, 14, "check of a cluster that does not archive");
    let text = stdout(&out);
    for line in [
        "FAILED   archive_mode: archive_mode is off: set archive_mode = on in postgresql.conf \
         and restart the server",
        "FAILED   archive_command: archive_command is empty: set archive_command = '",
        "skipped  wal_switch: not tried: archive_mode failed",
        "ok       wal_level: replica",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line:?} in:\n{text}"
        );
    }
    // The suggested archive_command archives into this repository.
    let suggested = text
        .lines()
        .find(|l| l.starts_with("FAILED   archive_command"))
        .unwrap();
    assert!(
        suggested.contains(&format!("--repo {}", cairn.repo().display()))
            && suggested.contains("archive-push %p"),
        "{suggested}"
    );
    assert!(
        common::cairn::stderr(&out).contains("checks failed: archive_mode, archive_command"),
        "{}",
        common::cairn::stderr(&out)
    );

    cluster.execute("ALTER SYSTEM SET wal_level = minimal");
    cluster.execute("ALTER SYSTEM SET max_wal_senders = 0");
    cluster.stop();
    cluster.start();
    let (exit, report) = check_json(&cairn, &cluster);
    assert_eq!(exit, 14, "{report:#}");
    assert_finding(
        &report,
        "wal_level",
        "failed",
        &["wal_level = minimal", "set wal_level = replica"],
    );
    assert_finding(&report, "wal_switch", "skipped", &["wal_level failed"]);
}

#[test]
fn an_archive_command_for_another_repository_or_another_program_fails() {
    let ours = Cairn::new();
    let theirs = Cairn::new();
    let Some(cluster) = theirs.archiving_cluster() else {
        return;
    };
    let (exit, report) = check_json(&ours, &cluster);
    assert_eq!(exit, 14, "{report:#}");
    let their_repo = theirs.repo().display().to_string();
    let our_repo = ours.repo().display().to_string();
    assert_finding(
        &report,
        "archive_command",
        "failed",
        &[
            &format!("archives into {their_repo} (--repo), not into this repository"),
            "set archive_command = '",
            &format!("--repo {our_repo}"),
        ],
    );
    assert_finding(
        &report,
        "wal_switch",
        "skipped",
        &["archive_command failed"],
    );
    // The repository it does archive into passes.
    let (exit, report) = check_json(&theirs, &cluster);
    assert_eq!(exit, 0, "{report:#}");

    alter_and_reload(&cluster, "archive_command", "cp %p /nonexistent/%f");
    let (exit, report) = check_json(&theirs, &cluster);
    assert_eq!(exit, 14, "{report:#}");
    assert_finding(
        &report,
        "archive_command",
        "failed",
        &["'cp %p /nonexistent/%f' does not run pgcairn archive-push"],
    );
}

#[test]
fn a_role_without_privileges_fails_naming_what_to_grant() {
    let cairn = Cairn::new();
    let Some(cluster) = cairn.archiving_cluster() else {
        return;
    };
    cluster.execute("CREATE ROLE plain LOGIN");
    let plain = cluster.conninfo().replace("user=postgres", "user=plain");
    let (exit, report) = check_json_at(&cairn, &plain, cluster.pgdata());
    assert_eq!(exit, 14, "{report:#}");
    assert_finding(
        &report,
        "backup_functions",
        "failed",
        &[
            "role \"plain\" may not run",
            "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO \"plain\"",
        ],
    );
    assert_finding(
        &report,
        "wal_switch",
        "failed",
        &["GRANT EXECUTE ON FUNCTION pg_switch_wal() TO \"plain\""],
    );
    assert_finding(
        &report,
        "settings_access",
        "warning",
        &["GRANT pg_read_all_settings TO \"plain\""],
    );
    assert_finding(
        &report,
        "wal_reservation",
        "warning",
        &["ALTER ROLE \"plain\" REPLICATION"],
    );
    assert_finding(
        &report,
        "data_directory",
        "ok",
        &["by system identifier only"],
    );

    // What the messages say to run is enough.
    cluster.execute(
        "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO \"plain\";
         GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO \"plain\";
         GRANT EXECUTE ON FUNCTION pg_switch_wal() TO \"plain\";
         GRANT pg_read_all_settings TO \"plain\";
         ALTER ROLE \"plain\" REPLICATION;",
    );
    let (exit, report) = check_json_at(&cairn, &plain, cluster.pgdata());
    assert_eq!(exit, 0, "{report:#}");
    assert_eq!(report["status"], "ok", "{report:#}");
}

#[test]
fn an_archive_command_that_fails_times_out_pointing_at_pg_stat_archiver() {
    let cairn = Cairn::new();
    // The right repository, the wrong password: archive-push fails on every segment.
    let conf: Vec<String> = cairn
        .archiving_conf()
        .into_iter()
        .map(|line| {
            line.replace(
                &cairn.password_file().display().to_string(),
                &cairn.path("wrong-password").display().to_string(),
            )
        })
        .collect();
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    let started = Instant::now();
    let out = check(&cairn, &cluster, &["--archive-timeout", "5", "--json"]);
    let took = started.elapsed();
    assert_code(&out, 14, "check with a failing archive_command");
    let report = json(&out);
    assert_finding(&report, "archive_command", "ok", &["this repository"]);
    let segment = report["wal_segment"].as_str().expect("wal_segment");
    assert_finding(
        &report,
        "wal_switch",
        "failed",
        &[
            &format!("{segment} did not reach the repository within 5 s"),
            "archiving fails",
            "pg_stat_archiver shows last_failed_wal = ",
            "the server log has archive_command's error",
        ],
    );
    assert!(report["archive_seconds"].is_null(), "{report:#}");
    assert!(took < Duration::from_secs(30), "the check took {took:?}");
}

#[test]
fn on_a_standby_the_wal_switch_is_left_to_the_primary() {
    let cairn = Cairn::new();
    let Some(primary) = cairn.archiving_cluster() else {
        return;
    };
    let mut standby = Cluster::standby_of(&primary, &[]);
    standby.start();
    let (exit, report) = check_json(&cairn, &standby);
    assert_eq!(exit, 0, "a standby is no failure: {report:#}");
    assert_eq!(report["status"], "warning", "{report:#}");
    assert_finding(&report, "connection", "ok", &["a standby"]);
    assert_finding(
        &report,
        "data_directory",
        "ok",
        &["server's data directory"],
    );
    assert_finding(
        &report,
        "wal_switch",
        "warning",
        &["standby", "run pgcairn check against the primary"],
    );
    assert!(report["wal_segment"].is_null(), "{report:#}");
}

#[test]
fn without_a_server_every_check_of_it_is_listed_as_skipped() {
    let cairn = Cairn::new();
    let dir = tempfile::tempdir().unwrap();
    let out = check_at(
        &cairn,
        &format!("host={} port=1 user=postgres", dir.path().display()),
        dir.path(),
        &["--json"],
    );
    assert_code(&out, 14, "check without a server");
    let report = json(&out);
    assert_eq!(names(&report), CHECKS);
    assert_finding(&report, "repository", "ok", &[]);
    assert_finding(
        &report,
        "connection",
        "failed",
        &["cannot connect to PostgreSQL"],
    );
    for name in &CHECKS[2..] {
        assert_finding(&report, name, "skipped", &["no connection"]);
    }
    assert!(report["system_identifier"].is_null(), "{report:#}");
}
