//! `pgcairn verify --restore-test`: restore a snapshot into a temporary directory, start
//! PostgreSQL on it, check it, clean up, report.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::GlobalOptions;
use super::format;
use super::progress::Progress;
use crate::archive::window::WalIndex;
use crate::clock::format_utc;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::IndexedRepository;
use crate::repo::cluster::ClusterSelector;
use crate::restore::select::{self, Aim, Candidate};
use crate::verify::restore_test::{
    self, CheckLevel, RestoreTestOptions, RestoreTestPlan, RestoreTestReport, Step,
};

/// What `verify --help` says about the restore test, after the checks of the repository.
pub const HELP: &str = "\
Examples:
  pgcairn verify --restore-test
  pgcairn verify --restore-test 3c44142e --restore-test-check full --json
  pgcairn verify --restore-test latest --pg-bindir /usr/lib/postgresql/15/bin \\
      --restore-test-dir /srv/scratch

--restore-test proves that a snapshot restores: it is restored (as `pgcairn restore
--target-immediate --target-action promote` would) into a new directory under
--restore-test-dir, with its tablespaces inside that directory too; PostgreSQL of the
snapshot's major version starts on it, listening only on a Unix socket in that directory, with
settings that keep it small and private (no TCP, no archiving, no preloaded libraries, no huge
pages; see docs/verify.md); recovery replays the snapshot's own WAL to its consistency point
and promotes; then the checks read every connectable database. Without SNAPSHOT (or with
`latest`), the newest restorable snapshot is tested. Segments the snapshot lacks (taken while
the archive lagged) are copied from the archive into its pg_wal first; the server itself never
reaches the repository.

Checks (--restore-test-check): quick counts relations and pages and reads one row of every
table; amcheck (the default) also runs amcheck's bt_index_check on every btree index, when
the amcheck extension is installed with the server (else it is reported unavailable); full
also reads every page of every table, runs verify_heapam (PostgreSQL 14+) and checks that every
row is indexed (heapallindexed). Any error, a page failing its checksum included, fails the
test.

The server is stopped (fast, then immediate, then SIGKILL) and the directory removed on every
way out, Ctrl-C included; --restore-test-keep keeps it and says where. As root, the files are
given to --restore-test-user and the server runs as that user (PostgreSQL refuses root).

Exit codes: 0 passed; 2 usage (no server programs of the snapshot's major version, no user to
run them as, several clusters and no --system-id); 4 no repository; 6 refused: the snapshot's
WAL is not all in the repository; 10 damaged data in the repository; 13 local error (no room
in --restore-test-dir); 17 the restore test failed: the server did not start, did not reach
consistency within --restore-test-timeout, or a check failed; 130 interrupted.";

/// The options of `--restore-test`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Restore test")]
pub struct RestoreTestArgs {
    /// Directory holding the server programs of the snapshot's major version [default:
    /// `pg_config --bindir` when its major matches, else /usr/lib/postgresql/MAJOR/bin or
    /// /usr/pgsql-MAJOR/bin].
    #[arg(long, value_name = "DIR", requires = "restore_test")]
    pub pg_bindir: Option<PathBuf>,

    /// Where to make the temporary directory; it needs room for the whole snapshot [default:
    /// $TMPDIR, else /tmp].
    #[arg(long, value_name = "DIR", requires = "restore_test")]
    pub restore_test_dir: Option<PathBuf>,

    /// How much to check: quick, amcheck or full.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = Check::Amcheck)]
    pub restore_test_check: Check,

    /// Give up when the server has not reached consistency and promoted after this long.
    #[arg(long, value_name = "SECONDS", default_value_t = restore_test::DEFAULT_TIMEOUT.as_secs())]
    pub restore_test_timeout: u64,

    /// When pgcairn runs as root: the OS user to run the server as [default: postgres].
    #[arg(long, value_name = "USER", requires = "restore_test")]
    pub restore_test_user: Option<String>,

    /// The restored cluster's superuser to check as [default: postgres, else the server's OS
    /// user name].
    #[arg(long, value_name = "ROLE", requires = "restore_test")]
    pub restore_test_role: Option<String>,

    /// Keep the temporary directory (the server stopped) and print where it is.
    #[arg(long, requires = "restore_test")]
    pub restore_test_keep: bool,

    /// The cluster whose newest snapshot to test, when the repository holds several: its
    /// name or system identifier.
    #[arg(
        long,
        alias = "system-id",
        value_name = "NAME|SYSTEM_ID",
        requires = "restore_test"
    )]
    pub cluster: Option<ClusterSelector>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Relations and pages counted, one row of every table read.
    Quick,
    /// Also amcheck's bt_index_check on every btree index.
    Amcheck,
    /// Also every page of every table, verify_heapam, and heapallindexed.
    Full,
}

/// The snapshot `--restore-test` names, or the newest restorable one.
fn choose<'a>(
    repo: &IndexedRepository,
    candidates: &[Candidate<'a>],
    archive: &WalIndex,
    named: &str,
    selector: Option<&ClusterSelector>,
) -> Result<Candidate<'a>> {
    if named == "latest" {
        let sysid = select::cluster_to_restore(candidates, selector)?;
        return select::choose(candidates, sysid, Aim::Newest, archive, &|_| true);
    }
    let id = repo.find_snapshot(named)?;
    let chosen = *candidates.iter().find(|c| c.id == id).ok_or_else(|| {
        Error::usage(format!(
            "snapshot {} is not of a PostgreSQL cluster; nothing to restore",
            id.short()
        ))
    })?;
    select::check_cluster(candidates, selector, &chosen)?;
    Ok(chosen)
}

pub fn run(global: &GlobalOptions, named: &str, opts: &RestoreTestArgs, json: bool) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let mut repo = global.open_indexed()?;
    let catalogue = repo.wal_catalogue()?;
    let archive = WalIndex::new(&catalogue);
    let snapshots = repo.load_snapshots()?;
    let candidates = select::candidates(&snapshots);
    let chosen = choose(&repo, &candidates, &archive, named, opts.cluster.as_ref())?;
    let options = RestoreTestOptions {
        bindir: opts.pg_bindir.clone(),
        server_user: opts.restore_test_user.clone(),
        role: opts.restore_test_role.clone(),
        parent_dir: opts
            .restore_test_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir),
        timeout: Duration::from_secs(opts.restore_test_timeout),
        check: match opts.restore_test_check {
            Check::Quick => CheckLevel::Quick,
            Check::Amcheck => CheckLevel::Amcheck,
            Check::Full => CheckLevel::Full,
        },
        keep: opts.restore_test_keep,
    };
    let plan = restore_test::plan(chosen.id, chosen.snapshot, &archive, &options)?;
    if !global.quiet && !json {
        eprintln!(
            "restore test of snapshot {}: PostgreSQL {} from {}, as OS user {}, in {}",
            plan.id.short(),
            plan.server.version,
            plan.server.bindir.display(),
            plan.user.user.name,
            plan.parent_dir.display()
        );
    }
    let progress = Mutex::new(Progress::new(global.quiet));
    let report = restore_test::execute(&mut repo, &plan, &interrupted, &|step| {
        let line = || match &step {
            Step::Restoring(p) => {
                let written = p.counters.bytes_written.load(Ordering::Relaxed);
                let files = p.counters.files_done.load(Ordering::Relaxed);
                format!(
                    "restore test: restoring {} / {}, {files} files",
                    format::bytes(written),
                    format::bytes(p.total_bytes)
                )
            }
            Step::Recovering { elapsed, log_line } => {
                let mut line = format!("restore test: recovering, {}", format::duration(*elapsed));
                if !log_line.is_empty() {
                    line.push_str(": ");
                    line.extend(log_line.chars().take(100));
                }
                line
            }
            Step::Checking {
                database,
                done,
                total,
            } => format!("restore test: checking database {database} ({done} of {total} done)"),
        };
        progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(line);
    });
    progress.lock().unwrap_or_else(|e| e.into_inner()).finish();
    if json {
        println!("{}", report_json(&plan, &report));
    } else if !global.quiet {
        print_report(&plan, &report);
    }
    if let Some(cleanup) = &report.cleanup_error {
        eprintln!("pgcairn: warning: the temporary directory was not removed: {cleanup}");
    }
    verdict(&plan, report)
}

/// Ok when the test passed; else the error main reports and exits with: the kind of what
/// stopped the test, or RestoreTestFailed for failed checks.
fn verdict(plan: &RestoreTestPlan, report: RestoreTestReport) -> Result<()> {
    let short = plan.id.short();
    if let Some(stopped) = report.stopped {
        let error = stopped.error;
        return Err(Error::new(
            error.kind(),
            format!(
                "restore test of snapshot {short} stopped in the {} phase: {error}",
                stopped.phase.name()
            ),
        ));
    }
    let failures = report.checks.map(|c| c.failures).unwrap_or_default();
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(Error::new(
            ErrorKind::RestoreTestFailed,
            format!(
                "restore test of snapshot {short} failed: {} check{} failed, the first: {}",
                failures.len(),
                if failures.len() == 1 { "" } else { "s" },
                describe_failure(first)
            ),
        )),
    }
}

fn describe_failure(f: &restore_test::CheckFailure) -> String {
    let mut place: Vec<String> = Vec::new();
    if let Some(database) = &f.database {
        place.push(format!("database {database}"));
    }
    if let Some(relation) = &f.relation {
        place.push(relation.clone());
    }
    if place.is_empty() {
        format!("{}: {}", f.check, f.message)
    } else {
        format!("{} ({}): {}", place.join(", "), f.check, f.message)
    }
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The report as JSON; its shape is documented in docs/verify.md ("Restore test").
fn report_json(plan: &RestoreTestPlan, report: &RestoreTestReport) -> serde_json::Value {
    let pg = plan.pg;
    let checks = report.checks.as_ref().map(|c| {
        serde_json::json!({
            "level": c.level.name(),
            "server_version": c.server_version,
            "data_checksums": c.data_checksums,
            "databases": c.databases.iter().map(|d| serde_json::json!({
                "name": d.name,
                "relations": d.relations,
                "pages": d.pages,
                "tables_read": d.tables_read,
                "indexes_checked": d.indexes_checked,
                "heaps_checked": d.heaps_checked,
            })).collect::<Vec<_>>(),
            "skipped_databases": c.skipped_databases,
            "relations": c.total(|d| d.relations),
            "pages": c.total(|d| d.pages),
            "tables_read": c.total(|d| d.tables_read),
            "indexes_checked": c.total(|d| d.indexes_checked),
            "heaps_checked": c.total(|d| d.heaps_checked),
            "amcheck": c.amcheck.name(),
            "checksum_failures": c.checksum_failures,
            "seconds": seconds(c.elapsed),
        })
    });
    let failures: Vec<serde_json::Value> = report
        .checks
        .iter()
        .flat_map(|c| &c.failures)
        .map(|f| {
            serde_json::json!({
                "database": f.database,
                "relation": f.relation,
                "check": f.check,
                "message": f.message,
            })
        })
        .collect();
    serde_json::json!({
        "passed": report.passed(),
        "snapshot": super::restore::snapshot_json(&plan.id, plan.snapshot, pg),
        "server": {
            "bindir": plan.server.bindir.display().to_string(),
            "version": plan.server.version,
            "os_user": plan.user.user.name,
            "role": report.role,
        },
        "directory": report.directory.as_ref().map(|d| d.display().to_string()),
        "kept": report.kept,
        "restore": report.restore.as_ref().map(|r| serde_json::json!({
            "files": r.files,
            "bytes": r.bytes,
            "wal_from_archive": r.wal_from_archive,
            "seconds": seconds(r.elapsed),
        })),
        "recovery": report.recovery.map(|d| serde_json::json!({ "seconds": seconds(d) })),
        "checks": checks,
        "failures": failures,
        "stopped": report.stopped.as_ref().map(|s| serde_json::json!({
            "phase": s.phase.name(),
            "exit_code": s.error.kind().exit_code(),
            "message": s.error.to_string(),
        })),
        "shutdown": report.shutdown.map(|s| s.name()),
        "log_tail": report.log_tail,
        "seconds": seconds(report.elapsed),
    })
}

fn print_report(plan: &RestoreTestPlan, report: &RestoreTestReport) {
    let pg = plan.pg;
    println!(
        "restore test of snapshot {} (PostgreSQL {}, cluster {}, taken {} UTC): {}",
        plan.id.short(),
        plan.server.version,
        pg.system_identifier,
        format_utc(plan.snapshot.started_ns / 1_000_000_000),
        if report.passed() { "PASSED" } else { "FAILED" }
    );
    if let Some(r) = &report.restore {
        let from_archive = match r.wal_from_archive.len() {
            0 => String::new(),
            n => format!(", {n} WAL segments from the archive"),
        };
        println!(
            "  restore   {} files, {} in {}{from_archive}",
            r.files,
            format::bytes(r.bytes),
            format::duration(r.elapsed)
        );
    }
    if let Some(d) = report.recovery {
        println!(
            "  recovery  consistent and promoted in {}",
            format::duration(d)
        );
    }
    if let Some(c) = &report.checks {
        let checksums = if c.data_checksums {
            "data checksums on"
        } else {
            "data checksums off: bad pages go unnoticed"
        };
        println!(
            "  checks    {}: {} databases, {} relations, {} pages; {} tables read, {} btree \
             indexes checked (amcheck {}); {checksums}; {}",
            c.level.name(),
            c.databases.len(),
            c.total(|d| d.relations),
            c.total(|d| d.pages),
            c.total(|d| d.tables_read),
            c.total(|d| d.indexes_checked),
            c.amcheck.name(),
            format::duration(c.elapsed)
        );
        for d in &c.databases {
            println!(
                "            {}: {} relations, {} pages, {} tables read, {} indexes checked{}",
                d.name,
                d.relations,
                d.pages,
                d.tables_read,
                d.indexes_checked,
                if c.level == CheckLevel::Full {
                    format!(", {} heaps verified", d.heaps_checked)
                } else {
                    String::new()
                }
            );
        }
        if !c.skipped_databases.is_empty() {
            println!(
                "            not connectable, not checked: {}",
                c.skipped_databases.join(", ")
            );
        }
        for f in &c.failures {
            println!("  FAILED    {}", describe_failure(f));
        }
    }
    if let Some(stopped) = &report.stopped {
        println!(
            "  STOPPED   in the {} phase: {}",
            stopped.phase.name(),
            stopped.error
        );
    }
    if !pg.bad_pages.is_empty() {
        println!(
            "  note      the backup found {} pages failing their checksum (see `pgcairn \
             snapshots`); --restore-test-check full reads every page",
            pg.bad_pages.len()
        );
    }
    if !report.log_tail.is_empty() {
        println!("  server log (last lines):");
        for line in &report.log_tail {
            println!("    {line}");
        }
    }
    if let Some(dir) = &report.directory {
        if report.kept {
            println!(
                "  kept      {} (data directory data/, server log server.log; the server is \
                 stopped)",
                dir.display()
            );
        }
    }
    println!("  total     {}", format::duration(report.elapsed));
}
