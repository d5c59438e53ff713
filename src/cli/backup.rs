//! `pgcairn backup`: back up a running cluster into a new snapshot.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use super::GlobalOptions;
use super::format;
use super::progress::Progress;
use crate::backup::{self, BackupReport, BackupRequest};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::conn;
use crate::pg::primary::Primary;
use crate::pg::session::{BackupSession, ServerInfo};
use crate::pg::wal::Lsn;
use crate::repo::IndexedRepository;
use crate::repo::cluster;
use crate::repo::lock::{LockKind, Locked};

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pgcairn backup --pgdata /var/lib/postgresql/15/main
  pgcairn backup --db 'host=/var/run/postgresql port=5432 user=postgres' --tag nightly --fast
  pgcairn backup --json | jq .snapshot

The backup runs over one session with the non-exclusive backup API (pg_backup_start and
pg_backup_stop; pg_start_backup/pg_stop_backup on 13 and 14). The role needs superuser or
EXECUTE on those functions; REPLICATION as well lets pgcairn hold the WAL the backup needs
with a temporary replication slot. The snapshot carries that WAL, so it restores to a
consistent state on its own: after backup stop, pgcairn waits (up to --archive-timeout) for
the server to archive it, and takes the archived copies; files the archive does not have yet
are read from the server's pg_wal.

A hot standby is backed up the same way, from its own data directory, with --primary-db
naming its primary (docs/backup.md, section Backing up from a standby):
  pgcairn backup --pgdata /var/lib/postgresql/15/main --primary-db 'host=db1 user=backup' --fast
The backup API runs on the standby; the primary is asked for a checkpoint (with --fast: the
backup then starts now, not at the standby's last restartpoint), for its WAL position (the
backup starts once the standby has replayed it, so it holds everything the primary committed
before), and to switch WAL after the backup (so its last segment is archived at once).
Without --primary-db the snapshot still restores on its own: its last WAL segment is the
standby's copy, and the archive receives that segment when the primary fills it.

Only what changed is stored: files the previous snapshot of this data directory holds
unchanged (same size, inode, mtime and ctime, settled before it started) are not read, and of
the files read only chunks not yet in the repository are written. --reread reads everything.

Exit codes: 0 done; 6 --pgdata is not the connected server's, or --primary-db is not the
standby's primary; 14 cannot connect or the server refuses (wal_level = minimal, missing
privileges), the standby's replay stalled for --archive-timeout while catching up with the
primary, or the standby was promoted or changed timeline during the backup; 15 bad page
checksums with --fail-on-checksum-error; 16 the snapshot was written but some of its WAL is
neither archived nor in pg_wal (not restorable until the archive has it); 130 interrupted
(backup mode ended, no snapshot written).")]
pub struct BackupArgs {
    /// The cluster's data directory [env: PGDATA].
    #[arg(long, env = "PGDATA", value_name = "DIR")]
    pub pgdata: PathBuf,

    /// Connection string (libpq keyword/value or postgresql:// URL); unset parts come from
    /// PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD as with psql.
    #[arg(long, value_name = "CONNINFO")]
    pub db: Option<String>,

    /// When --db is a standby: a connection string to its primary, for the checkpoint, WAL
    /// position and WAL switch a standby cannot provide (see above). Not used when --db is a
    /// primary, so the same command keeps working after a failover.
    #[arg(long, env = "PGCAIRN_PRIMARY_DB", value_name = "CONNINFO")]
    pub primary_db: Option<String>,

    /// Label the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Name the cluster, so that snapshots, restore, prune and info can select it with
    /// --cluster NAME when several clusters share the repository [default: the server's
    /// cluster_name setting, if set].
    #[arg(long, value_name = "NAME", value_parser = parse_cluster_name)]
    pub cluster: Option<String>,

    /// Ask for an immediate checkpoint instead of waiting for a spread one.
    #[arg(long)]
    pub fast: bool,

    /// Read every file, even those unchanged since the previous snapshot.
    #[arg(long)]
    pub reread: bool,

    /// Fail (exit 15, no snapshot) when a page's checksum does not match.
    #[arg(long)]
    pub fail_on_checksum_error: bool,

    /// After backup stop, wait up to this long for the archive to receive the backup's WAL
    /// (when the server archives). With --primary-db, also how long the standby's replay may
    /// stall while it catches up with the primary before the backup starts. 0 does not wait.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub archive_timeout: u64,

    /// Print the summary as one JSON object on stdout (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

fn parse_cluster_name(text: &str) -> std::result::Result<String, String> {
    match cluster::name_problem(text) {
        None => Ok(text.to_owned()),
        Some(problem) => Err(format!("cannot name a cluster: {problem}")),
    }
}

pub fn run(global: &GlobalOptions, args: &BackupArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let repo = global.open_unsynced()?;
    // The lock before the index: prune keeps every pack this backup may learn of and use.
    repo.with_lock(LockKind::Writer, |lock| {
        repo.sync_cache()?;
        back_up_locked(global, args, &repo, lock, &interrupted)
    })
}

fn back_up_locked(
    global: &GlobalOptions,
    args: &BackupArgs,
    repo: &IndexedRepository,
    lock: &Locked,
    interrupted: &AtomicBool,
) -> Result<()> {
    let client = conn::connect(args.db.as_deref())?;
    let mut session = BackupSession::open(client)?;
    let cluster_name =
        cluster::name_for_backup(args.cluster.as_deref(), &session.info().cluster_name)?;
    let mut primary = open_primary(args.primary_db.as_deref(), session.info(), global.quiet)?;
    let request = BackupRequest {
        pgdata: args.pgdata.clone(),
        tags: args.tags.clone(),
        cluster_name,
        fast: args.fast,
        reread: args.reread,
        fail_on_checksum_error: args.fail_on_checksum_error,
        archive_timeout: Duration::from_secs(args.archive_timeout),
        interrupted,
        lock,
    };
    let began = Instant::now();
    let progress = Mutex::new(Progress::new(global.quiet));
    let result = backup::back_up(repo, &mut session, primary.as_mut(), &request, &|p| {
        let read = p.counters.bytes_read.load(Ordering::Relaxed)
            + p.counters.bytes_reused.load(Ordering::Relaxed);
        let files = p.counters.files_read.load(Ordering::Relaxed)
            + p.counters.files_reused.load(Ordering::Relaxed);
        let elapsed = began.elapsed();
        let eta = eta(read, p.total_bytes, elapsed);
        let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.update(|| {
            format!(
                "{}: {} / {} in {files} files, {}{eta}",
                p.phase,
                format::bytes(read),
                format::bytes(p.total_bytes),
                format::rate(p.counters.bytes_read.load(Ordering::Relaxed), elapsed),
            )
        });
    });
    progress.lock().unwrap_or_else(|e| e.into_inner()).finish();
    // Ends backup mode (if the backup failed half-way) before the error is reported.
    drop(session);
    let report = match result {
        Err(e) if interrupted.load(Ordering::Relaxed) => {
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "interrupted; backup mode ended and no snapshot was written (data stored so \
                     far is kept and reused by the next backup) [{e}]"
                ),
            ));
        }
        other => other?,
    };
    print_report(&report, began.elapsed(), args.json, global.quiet);
    let pg = report.snapshot.postgres.as_ref();
    if !report.unarchived.is_empty() {
        eprintln!(
            "pgcairn: warning: {} of the backup's WAL files did not reach the archive within \
             {} s ({}); the snapshot carries them, but point-in-time recovery past it needs \
             the archive to catch up: check archive_command and pg_stat_archiver",
            report.unarchived.len(),
            args.archive_timeout,
            report.unarchived.join(", ")
        );
    }
    if let Some(segment) = &report.stop_segment_unfinished
        && !global.quiet
    {
        let hint = match &args.primary_db {
            None => " (--primary-db switches WAL on the primary, which archives it at once)",
            Some(_) => "",
        };
        eprintln!(
            "pgcairn: note: the backup's last WAL segment {} is still being written by the \
             primary: the snapshot carries the standby's copy, so it restores on its own, and \
             the archive receives the segment when the primary fills it{hint}",
            segment.name
        );
        if segment.ends_at_consistency {
            eprintln!(
                "pgcairn: note: the primary wrote nothing after the point where this snapshot \
                 becomes consistent, and PostgreSQL stops at --target-immediate only before a \
                 following WAL record: until the primary writes more, restore this snapshot to \
                 the end of its WAL (no target) instead"
            );
        }
    }
    match pg.map(|pg| &pg.wal_missing) {
        Some(missing) if !missing.is_empty() => Err(Error::new(
            ErrorKind::WalMissing,
            format!(
                "snapshot {} was written but cannot be restored yet: WAL {} was neither \
                 archived nor still in the server's pg_wal; it becomes restorable when the \
                 archive receives it (`pgcairn snapshots` shows its state)",
                report.id.short(),
                missing.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// The standby's primary, when --db is a standby and --primary-db is given.
fn open_primary(
    conninfo: Option<&str>,
    server: &ServerInfo,
    quiet: bool,
) -> Result<Option<Primary>> {
    let Some(conninfo) = conninfo else {
        return Ok(None);
    };
    if !server.in_recovery {
        if !quiet {
            eprintln!(
                "pgcairn: note: the server at --db is a primary, so --primary-db is not used"
            );
        }
        return Ok(None);
    }
    let client =
        conn::connect(Some(conninfo)).context("connecting to the primary (--primary-db)")?;
    Primary::open(client, server).map(Some)
}

fn eta(done: u64, total: u64, elapsed: Duration) -> String {
    if done == 0 || done >= total || elapsed < Duration::from_secs(2) {
        return String::new();
    }
    let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
    format!(", ETA {}", format::duration(Duration::from_secs_f64(left)))
}

fn print_report(report: &BackupReport, elapsed: Duration, json: bool, quiet: bool) {
    let s = &report.snapshot;
    let Some(pg) = &s.postgres else { return };
    for bad in &pg.bad_pages {
        eprintln!(
            "pgcairn: warning: bad page checksum: {} block {}: computed {:#06x}, stored {:#06x}",
            String::from_utf8_lossy(&bad.path),
            bad.block,
            bad.expected,
            bad.found
        );
    }
    if json {
        let value = serde_json::json!({
            "snapshot": report.id.to_hex(),
            "parent": s.parent.map(|p| p.to_hex()),
            "time": crate::clock::format_utc(s.started_ns / 1_000_000_000),
            "started_ns": s.started_ns,
            "finished_ns": s.finished_ns,
            "duration_seconds": elapsed.as_secs_f64(),
            "postgres_version": pg.server_version_num,
            "system_identifier": pg.system_identifier.to_string(),
            "cluster_name": pg.cluster_name,
            "timeline": pg.timeline,
            "start_lsn": Lsn(pg.start_lsn).to_string(),
            "stop_lsn": Lsn(pg.stop_lsn).to_string(),
            "start_wal": pg.start_wal,
            "stop_wal": pg.stop_wal,
            "files": s.summary.files,
            "files_unchanged": s.summary.reused_files,
            "dirs": s.summary.dirs,
            "logical_bytes": s.summary.logical_bytes,
            "read_bytes": s.summary.read_bytes,
            "new_blobs": s.summary.new_blobs,
            "new_bytes": report.packer.new_raw_bytes,
            "stored_bytes": s.summary.new_stored_bytes,
            "packs": report.packer.packs,
            "bad_pages": pg.bad_pages.iter().map(|b| serde_json::json!({
                "path": String::from_utf8_lossy(&b.path),
                "block": b.block,
                "expected": b.expected,
                "found": b.found,
            })).collect::<Vec<_>>(),
            "tags": s.tags,
            "wal_unarchived": report.unarchived,
            "wal_missing": pg.wal_missing,
            "backup_from": report.backup_from,
            "wal_stop_segment_unfinished": report.stop_segment_unfinished.as_ref().map(|s| &s.name),
        });
        println!("{value}");
        return;
    }
    if quiet {
        return;
    }
    let parent = match s.parent {
        Some(p) => format!("incremental from {}", p.short()),
        None => "first of this data directory".to_string(),
    };
    println!("snapshot {} saved ({parent})", report.id.short());
    println!(
        "  {} files, {}: {} read, {} files unchanged",
        s.summary.files,
        format::bytes(s.summary.logical_bytes),
        format::bytes(s.summary.read_bytes),
        s.summary.reused_files
    );
    println!(
        "  added {} ({} new of {} read, after dedup and compression) in {}, {}",
        format::bytes(s.summary.new_stored_bytes),
        format::bytes(report.packer.new_raw_bytes),
        format::bytes(s.summary.read_bytes),
        format::duration(elapsed),
        format::rate(s.summary.read_bytes, elapsed),
    );
    let from = match report.backup_from.as_deref() {
        Some("standby") => ", from a standby",
        _ => "",
    };
    println!(
        "  cluster {}, PostgreSQL {}{from}, timeline {}, LSN {}..{}, WAL {}..{}",
        format::cluster(pg),
        pg.server_version_num,
        pg.timeline,
        Lsn(pg.start_lsn),
        Lsn(pg.stop_lsn),
        pg.start_wal,
        pg.stop_wal
    );
    if !pg.bad_pages.is_empty() {
        println!(
            "  {} pages failed their checksum (listed above)",
            pg.bad_pages.len()
        );
    }
}
