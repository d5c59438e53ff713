//! `pgcairn check`: is this cluster set up to be backed up and archived into this repository?
//! Each check says ok, warning or FAILED with what to change; then a WAL switch proves that
//! archive_command delivers into the repository, as pgBackRest's `check` does.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Args;
use postgres::Client;
use serde::Serialize;

mod destination;

use destination::{Destination, destination};

use super::GlobalOptions;
use super::format;
use crate::archive;
use crate::clock::format_utc;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::check::{self as pgcheck, ArchiverStats, RoleAccess};
use crate::pg::conn::{self, LibpqEnv};
use crate::pg::recovery::guc_quote;
use crate::pg::session::{self, ServerInfo, quote_ident};
use crate::repo::Repository;
use crate::repo::cluster::Clusters;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pgcairn check --pgdata /var/lib/postgresql/15/main
  pgcairn check --db 'host=/var/run/postgresql user=postgres' --archive-timeout 120
  pgcairn check --json | jq '.checks[] | select(.status != \"ok\")'

Checks, one line each (ok, warning, FAILED with what to change, or skipped):
  repository         opens with the password; its format version is supported
  connection         the server answers (--db, else PGHOST, PGPORT, PGUSER, PGDATABASE)
  backup_functions   the role may run pg_backup_start and pg_backup_stop
  settings_access    the role may read data_directory (superuser or pg_read_all_settings)
  wal_reservation    the role may hold a backup's WAL with a temporary replication slot
  wal_level          replica or logical
  archive_mode       on or always
  archive_command    runs pgcairn archive-push into this repository (--repo, PGCAIRN_REPO or
                     the repo of the config file it names); a warning when it cannot be told
  data_directory     --pgdata is the server's data directory and readable here
  system_identifier  the cluster's, and what the repository holds of it (information)
  archiver           pg_stat_archiver: whether the latest archive attempt failed
  wal_switch         pg_switch_wal(), then waits (up to --archive-timeout) for that segment
                     to reach the repository, and says how long it took

The WAL switch needs a primary (on a standby it is skipped with a warning) and a role that
may run pg_switch_wal(). See docs/check.md for the --json shape.

Exit codes: 0 every check passed (warnings allowed); 14 a check of the server failed; when
the repository does not open, its own code (3 password, 4 no repository, 11 unsupported
format, 12 storage); 2 usage; 130 interrupted.")]
pub struct CheckArgs {
    /// The cluster's data directory: checked to be the server's, and readable by the OS user
    /// running check (as backup needs).
    #[arg(long, env = "PGDATA", value_name = "DIR")]
    pub pgdata: Option<PathBuf>,

    /// Connection string (libpq keyword/value or postgresql:// URL); unset parts come from
    /// PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD as with psql.
    #[arg(long, value_name = "CONNINFO")]
    pub db: Option<String>,

    /// How long to wait for the switched WAL segment to reach the repository.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub archive_timeout: u64,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The checks that need a connection, in the order they run.
const AFTER_CONNECTION: [&str; 10] = [
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

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warning,
    Failed,
    /// Not tried: what it needs is missing (said why).
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Finding {
    name: &'static str,
    status: Status,
    message: String,
    /// What the exit code says when this check failed.
    #[serde(skip)]
    kind: ErrorKind,
}

#[derive(Debug, Default)]
struct Report {
    findings: Vec<Finding>,
    repository: String,
    server: Option<String>,
    system_identifier: Option<u64>,
    /// The segment the WAL switch completed, and how long it took to reach the repository.
    wal_segment: Option<String>,
    archive_wait: Option<Duration>,
}

impl Report {
    fn push(&mut self, name: &'static str, status: Status, message: impl Into<String>) {
        self.findings.push(Finding {
            name,
            status,
            message: message.into(),
            kind: ErrorKind::Database,
        });
    }

    /// A check of the server: its error, if any, is a failure of that check (exit 14).
    fn add(&mut self, name: &'static str, verdict: Result<(Status, String)>) {
        match verdict {
            Ok((status, message)) => self.push(name, status, message),
            Err(e) => self.push(name, Status::Failed, e.to_string()),
        }
    }

    fn failed(&self, name: &str) -> bool {
        self.findings
            .iter()
            .any(|f| f.name == name && f.status == Status::Failed)
    }

    fn status(&self) -> Status {
        let has = |s| self.findings.iter().any(|f| f.status == s);
        if has(Status::Failed) {
            Status::Failed
        } else if has(Status::Warning) {
            Status::Warning
        } else {
            Status::Ok
        }
    }

    /// Exit 0 unless a check failed; then the first failure's kind.
    fn result(&self) -> Result<()> {
        let failed: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.status == Status::Failed)
            .collect();
        let Some(first) = failed.first() else {
            return Ok(());
        };
        let names: Vec<&str> = failed.iter().map(|f| f.name).collect();
        Err(Error::new(
            first.kind,
            format!(
                "{} of {} checks failed: {}",
                failed.len(),
                self.findings.len(),
                names.join(", ")
            ),
        ))
    }
}

pub fn run(global: &GlobalOptions, args: &CheckArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let report = inspect(global, args, &interrupted)?;
    if args.json {
        print_json(&report);
    } else {
        print_text(&report, global.quiet);
    }
    report.result()
}

/// Runs every check it can: a failure stops only the checks that depend on it. Errors out
/// only for usage errors and interruption.
fn inspect(global: &GlobalOptions, args: &CheckArgs, interrupted: &AtomicBool) -> Result<Report> {
    let mut report = Report {
        repository: global.repo.clone().unwrap_or_default(),
        ..Report::default()
    };
    let repo = match global.open_repository() {
        Ok(repo) => {
            report.repository = repo.storage().location().to_string();
            report.push(
                "repository",
                Status::Ok,
                format!(
                    "opened {} with the password (format version {})",
                    report.repository,
                    repo.config().version
                ),
            );
            Some(repo)
        }
        // No repository named, or a malformed URL: there is nothing to check against.
        Err(e) if e.kind() == ErrorKind::Usage => return Err(e),
        Err(e) => {
            report.findings.push(Finding {
                name: "repository",
                status: Status::Failed,
                message: e.to_string(),
                kind: e.kind(),
            });
            None
        }
    };

    let config = conn::resolve(args.db.as_deref(), &LibpqEnv::system())?;
    let target = conn::describe_target(&config);
    report.server = Some(target.clone());
    let connected = conn::connect_with(&config).and_then(|mut client| {
        let info = session::read_server_info(&mut client)?;
        let access = pgcheck::role_access(&mut client)?;
        Ok((client, info, access))
    });
    let (mut client, info, access) = match connected {
        Ok(connected) => connected,
        Err(e) => {
            report.push("connection", Status::Failed, e.to_string());
            // Every check is listed, so that monitoring finds each name in every report.
            for name in AFTER_CONNECTION {
                report.push(name, Status::Skipped, "not tried: no connection");
            }
            return Ok(report);
        }
    };
    report.system_identifier = Some(info.system_identifier);
    let role = quote_ident(&info.user);
    report.push(
        "connection",
        Status::Ok,
        format!(
            "PostgreSQL {} at {target} as role {role}{}{}",
            session::version_text(info.version_num),
            if access.superuser { " (superuser)" } else { "" },
            if info.in_recovery { ", a standby" } else { "" },
        ),
    );

    let functions = session::check_backup_privileges(&mut client, &info).map(|()| {
        let message = format!("role {role} may run the backup functions");
        (Status::Ok, message)
    });
    report.add("backup_functions", functions);
    report.add("settings_access", Ok(settings_access(&info, &role)));
    report.add("wal_reservation", Ok(wal_reservation(&access, &role)));
    let wal_level = session::check_wal_level(&info).map(|()| (Status::Ok, info.wal_level.clone()));
    report.add("wal_level", wal_level);
    report.add("archive_mode", Ok(archive_mode(&info)));
    let command = archive_command_verdict(global, &mut client, &info, args.pgdata.as_deref());
    report.add("archive_command", command);
    match &args.pgdata {
        Some(pgdata) => report.add("data_directory", data_directory(&info, pgdata)),
        None => report.push(
            "data_directory",
            Status::Skipped,
            "no --pgdata (or PGDATA) given",
        ),
    }
    match &repo {
        Some(repo) => report.add("system_identifier", Ok(holdings(repo, &info))),
        None => report.push(
            "system_identifier",
            Status::Skipped,
            format!("{}; the repository did not open", info.system_identifier),
        ),
    }
    let stats = pgcheck::archiver_stats(&mut client);
    report.add("archiver", stats.map(|s| archiver(&s)));

    let blocked = ["wal_level", "archive_mode", "archive_command"]
        .into_iter()
        .find(|name| report.failed(name));
    if info.in_recovery {
        report.push(
            "wal_switch",
            Status::Warning,
            "not tried: the server is a standby, where WAL cannot be switched; run pgcairn \
             check against the primary (--db) to test archiving",
        );
    } else if !access.switch_wal {
        report.push(
            "wal_switch",
            Status::Failed,
            format!(
                "role {role} may not run pg_switch_wal(), so archiving cannot be tested: connect \
                 as a superuser, or have one run GRANT EXECUTE ON FUNCTION pg_switch_wal() TO \
                 {role};"
            ),
        );
    } else if let Some(name) = blocked {
        report.push(
            "wal_switch",
            Status::Skipped,
            format!("not tried: {name} failed"),
        );
    } else if let Some(repo) = &repo {
        let timeout = Duration::from_secs(args.archive_timeout);
        match wal_switch(&mut client, repo, &info, timeout, interrupted, &mut report) {
            Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
            verdict => report.add("wal_switch", verdict),
        }
    } else {
        report.push(
            "wal_switch",
            Status::Skipped,
            "not tried: the repository did not open",
        );
    }
    Ok(report)
}

fn settings_access(info: &ServerInfo, role: &str) -> (Status, String) {
    match &info.data_directory {
        Some(_) => (Status::Ok, format!("role {role} may read data_directory")),
        None => (
            Status::Warning,
            format!(
                "role {role} may not read data_directory, so pgcairn cannot confirm that \
                 --pgdata is this server's data directory and not a standby's (which shares the \
                 system identifier): GRANT pg_read_all_settings TO {role};"
            ),
        ),
    }
}

fn wal_reservation(access: &RoleAccess, role: &str) -> (Status, String) {
    if !access.superuser && !access.replication {
        return (
            Status::Warning,
            format!(
                "role {role} lacks the REPLICATION attribute, so backup cannot hold the WAL it \
                 needs with a temporary replication slot, and a checkpoint during a long backup \
                 may recycle segments before they are archived: ALTER ROLE {role} REPLICATION;"
            ),
        );
    }
    if access.free_slots <= 0 {
        return (
            Status::Warning,
            "every replication slot is in use, so backup cannot hold the WAL it needs with a \
             temporary slot: raise max_replication_slots in postgresql.conf and restart the \
             server"
                .to_string(),
        );
    }
    (
        Status::Ok,
        format!(
            "role {role} may hold a backup's WAL with a temporary replication slot ({} free)",
            access.free_slots
        ),
    )
}

fn archive_mode(info: &ServerInfo) -> (Status, String) {
    match info.archive_mode.as_str() {
        "off" => (
            Status::Failed,
            "archive_mode is off: set archive_mode = on in postgresql.conf and restart the server"
                .to_string(),
        ),
        "always" => (
            Status::Ok,
            "always (a standby archives the WAL it receives too)".to_string(),
        ),
        mode => (Status::Ok, mode.to_string()),
    }
}

fn archive_command_verdict(
    global: &GlobalOptions,
    client: &mut Client,
    info: &ServerInfo,
    pgdata: Option<&Path>,
) -> Result<(Status, String)> {
    let settings = pgcheck::archive_settings(client)?;
    let suggestion = global
        .server_command("archive-push %p")
        .map(|command| format!("archive_command = {}", guc_quote(&command)))
        .unwrap_or_else(|_| "archive_command = 'pgcairn --repo ... archive-push %p'".into());
    let fix = format!("set {suggestion} in postgresql.conf and reload the server");
    if let Some(library) = settings.library {
        return Ok((
            Status::Failed,
            format!(
                "archive_library = {} is set, so the server ignores archive_command: set \
                 archive_library = '' and {suggestion} in postgresql.conf, and reload the server",
                guc_quote(&library)
            ),
        ));
    }
    let command = settings.command;
    if command.trim().is_empty() {
        return Ok((Status::Failed, format!("archive_command is empty: {fix}")));
    }
    // The server runs the command from its data directory.
    let server_dir = info.data_directory.as_deref().or(pgdata);
    let ours = global.repo.as_deref().unwrap_or_default();
    let shown = guc_quote(&command);
    Ok(match destination(&command, ours, server_dir) {
        Destination::Here { how } => (
            Status::Ok,
            format!("runs pgcairn archive-push into this repository ({how})"),
        ),
        Destination::Elsewhere { repo, how } => (
            Status::Failed,
            format!(
                "archive_command archives into {repo} ({how}), not into this repository \
                 ({ours}): {fix}"
            ),
        ),
        Destination::Unknown { why } => (
            Status::Warning,
            format!(
                "runs pgcairn archive-push, but {why}: cannot tell whether it archives into \
                 this repository (the WAL switch tests it)"
            ),
        ),
        Destination::NotArchivePush => (
            Status::Failed,
            format!("archive_command = {shown} runs pgcairn, but not archive-push: {fix}"),
        ),
        Destination::Opaque => (
            Status::Warning,
            format!(
                "archive_command = {shown} runs pgcairn in a way check does not follow (a \
                 wrapper script, shell variables): cannot tell whether it archives into this \
                 repository (the WAL switch tests it)"
            ),
        ),
        Destination::NotPgcairn => (
            Status::Failed,
            format!(
                "archive_command = {shown} does not run pgcairn archive-push (a wrapper script \
                 is recognised only if this OS user can read it): {fix}"
            ),
        ),
    })
}

fn data_directory(info: &ServerInfo, pgdata: &Path) -> Result<(Status, String)> {
    pgcheck::check_pgdata(info, pgdata)?;
    let user = conn::effective_user_name().unwrap_or_else(|| "(unknown)".into());
    let mut unreadable = Vec::new();
    let mut roots = vec![pgdata.to_path_buf()];
    roots.extend(info.tablespaces.iter().map(|t| {
        // In-place tablespaces are given relative to the data directory.
        pgdata.join(&t.location)
    }));
    for root in &roots {
        unreadable.extend(unreadable_under(root));
    }
    if !unreadable.is_empty() {
        let shown: Vec<String> = unreadable.iter().take(5).cloned().collect();
        return Ok((
            Status::Failed,
            format!(
                "OS user {user} cannot read {}{}: run check and backup as the cluster's owner, \
                 or as a member of its group with group access on (initdb --allow-group-access)",
                shown.join(", "),
                if unreadable.len() > shown.len() {
                    format!(" and {} more", unreadable.len() - shown.len())
                } else {
                    String::new()
                }
            ),
        ));
    }
    let compared = if info.data_directory.is_some() {
        ""
    } else {
        " (by system identifier only: the role may not read data_directory)"
    };
    Ok((
        Status::Ok,
        format!(
            "{} is the server's data directory{compared}, readable by OS user {user}",
            pgdata.display()
        ),
    ))
}

/// What under `root` cannot be read, one level down: the directory itself, its files and
/// its subdirectories. Deeper entries take the data directory's own permissions.
fn unreadable_under(root: &Path) -> Vec<String> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) => return vec![format!("{} ({e})", root.display())],
    };
    let mut unreadable = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let result = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::read_dir(&path).map(drop),
            Ok(meta) if meta.is_file() => std::fs::File::open(&path).map(drop),
            Ok(_) => Ok(()),
            // Gone since it was listed (a server's temporary file).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            unreadable.push(format!("{} ({e})", path.display()));
        }
    }
    unreadable.sort();
    unreadable
}

/// What the repository holds of this cluster: information, never a failure.
fn holdings(repo: &Repository, info: &ServerInfo) -> (Status, String) {
    let id = info.system_identifier;
    let snapshots = match repo.load_snapshots() {
        Ok(snapshots) => snapshots,
        Err(e) => return (Status::Warning, format!("{id}; cannot list snapshots: {e}")),
    };
    let backups = snapshots
        .iter()
        .filter_map(|(_, s)| s.postgres.as_ref().map(|pg| (pg, s.started_ns)));
    let (ours, others): (Vec<_>, Vec<_>) = backups.partition(|(pg, _)| pg.system_identifier == id);
    let message = match ours.iter().map(|(_, started)| started).max() {
        Some(newest) => {
            let names = Clusters::of(ours.iter().map(|(pg, _)| *pg))
                .names
                .remove(&id)
                .unwrap_or_default();
            let named = match names.as_slice() {
                [] => String::new(),
                names => format!(" (named {})", names.join(", ")),
            };
            format!(
                "{id}: {} snapshot(s) of this cluster{named} in the repository, the newest from \
                 {}",
                ours.len(),
                format_utc(newest / 1_000_000_000)
            )
        }
        None if others.is_empty() => {
            format!("{id}: the repository holds no snapshot yet (pgcairn backup takes the first)")
        }
        None => format!(
            "{id}: no snapshot of this cluster yet; the repository holds snapshots of {}",
            Clusters::of(others.iter().map(|(pg, _)| *pg)).describe()
        ),
    };
    (Status::Ok, message)
}

fn archiver(stats: &ArchiverStats) -> (Status, String) {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    if stats.failing {
        return (
            Status::Warning,
            format!(
                "the latest archive attempt failed: pg_stat_archiver shows last_failed_wal = {} \
                 at {} ({} failed attempts, {} files archived); the server log has \
                 archive_command's error",
                or_none(&stats.last_failed_wal),
                or_none(&stats.last_failed_time),
                stats.failed_count,
                stats.archived_count
            ),
        );
    }
    if stats.archived_count == 0 && stats.failed_count == 0 {
        return (Status::Ok, "nothing archived yet".into());
    }
    (
        Status::Ok,
        format!(
            "{} archived, the last {} at {}; {} failed attempts before it",
            stats.archived_count,
            or_none(&stats.last_archived_wal),
            or_none(&stats.last_archived_time),
            stats.failed_count
        ),
    )
}

/// Switches WAL and waits for the completed segment in the repository's catalogue.
fn wal_switch(
    client: &mut Client,
    repo: &Repository,
    info: &ServerInfo,
    timeout: Duration,
    interrupted: &AtomicBool,
    report: &mut Report,
) -> Result<(Status, String)> {
    let segment = pgcheck::switch_wal(client)?;
    report.wal_segment = Some(segment.clone());
    let started = Instant::now();
    let names = [segment.clone()];
    let found = archive::wait_for_archive(
        repo,
        info.system_identifier,
        &names,
        &|_| true,
        timeout,
        interrupted,
    )?;
    if !found.is_empty() {
        let waited = started.elapsed();
        report.archive_wait = Some(waited);
        return Ok((
            Status::Ok,
            format!(
                "switched to a new segment; {segment} reached the repository in {}",
                format::duration(waited)
            ),
        ));
    }
    let stats = pgcheck::archiver_stats(client).unwrap_or_default();
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let why = if stats.failing {
        format!(
            "archiving fails: pg_stat_archiver shows last_failed_wal = {} at {} ({} failed \
             attempts); the server log has archive_command's error",
            or_none(&stats.last_failed_wal),
            or_none(&stats.last_failed_time),
            stats.failed_count
        )
    } else if stats
        .last_archived_wal
        .as_deref()
        .is_some_and(|last| last.len() == segment.len() && last >= segment.as_str())
    {
        format!(
            "the server archived it (pg_stat_archiver: last_archived_wal = {}, last_failed_wal \
             = {}), but not into this repository: archive_command stores WAL elsewhere",
            or_none(&stats.last_archived_wal),
            or_none(&stats.last_failed_wal)
        )
    } else {
        format!(
            "the server has not archived it yet (pg_stat_archiver: last_archived_wal = {}, \
             last_failed_wal = {}): archive_command hangs or the archiver is behind; see the \
             server log, or allow longer with --archive-timeout",
            or_none(&stats.last_archived_wal),
            or_none(&stats.last_failed_wal)
        )
    };
    Ok((
        Status::Failed,
        format!(
            "{segment} did not reach the repository within {} s: {why}",
            timeout.as_secs()
        ),
    ))
}

fn print_text(report: &Report, quiet: bool) {
    for finding in &report.findings {
        if quiet && finding.status != Status::Failed {
            continue;
        }
        println!(
            "{:<8} {}: {}",
            finding.status.label(),
            finding.name,
            finding.message
        );
    }
    if quiet {
        return;
    }
    let count = |s| report.findings.iter().filter(|f| f.status == s).count();
    match report.status() {
        Status::Failed => println!(
            "check FAILED: {} failed, {} warnings, {} ok",
            count(Status::Failed),
            count(Status::Warning),
            count(Status::Ok)
        ),
        _ => println!(
            "check passed: {} ok, {} warnings, {} skipped",
            count(Status::Ok),
            count(Status::Warning),
            count(Status::Skipped)
        ),
    }
}

fn print_json(report: &Report) {
    let value = serde_json::json!({
        "status": report.status(),
        "repository": report.repository,
        "server": report.server,
        "system_identifier": report.system_identifier.map(|id| id.to_string()),
        "wal_segment": report.wal_segment,
        "archive_seconds": report.archive_wait.map(|d| d.as_secs_f64()),
        "checks": report.findings,
    });
    println!("{value}");
}
