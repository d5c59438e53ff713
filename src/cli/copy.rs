//! `pgcairn copy`: replicate snapshots and their WAL into another repository.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;

use super::GlobalOptions;
use super::format;
use super::password;
use super::progress::Progress;
use crate::copy::{self, CopyPlan, CopyReport, CopyRequest, Selection};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::wal::Lsn;
use crate::repo::IndexedRepository;
use crate::repo::lock::LockKind;
use crate::repo::snapshot::Snapshot;
use crate::storage::Storage;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pgcairn init --repo sftp://backup@offsite/pgcairn --password-file ~/.pgcairn-offsite
  pgcairn copy --to sftp://backup@offsite/pgcairn --to-password-file ~/.pgcairn-offsite
  pgcairn copy --to /mnt/usb/pgcairn --snapshot latest --json

What is copied: the selected snapshots (all of them by default) and, for each one's cluster,
the archived WAL that point-in-time recovery from it reads (from its start segment on, on its
timeline and the timelines branched from it later), with every timeline history and backup
history file. Snapshots keep their times, LSNs, tags and sizes; they get new ids in the target.

The target must exist (`pgcairn init --repo URL`) and may have another password: it has its
own keys, and everything is decrypted and encrypted again for it. Copies are incremental:
snapshots the target has (recognised by cluster, timeline, LSNs and times) and WAL files it
has are skipped, and of the rest only chunks the target lacks are read and uploaded (chunk ids
of the source are mapped to the target's in a table in the cache directory).

A target made with `pgcairn init --copy-chunker-params-from SOURCE_URL` shares the source's
chunk ids (not its data key): no table is needed, and backups into the target deduplicate
against copies (SECURITY.md says what the two repositories then share).

The target is written like a backup writes (a writer lock, packs, then index files, then WAL
and snapshots): an interrupted copy leaves it consistent, and the next copy goes on where it
stopped. The source is only read.

Scheduling: run it after each backup, e.g. `pgcairn backup ... && pgcairn copy --to URL`,
and again from time to time (hourly) for the WAL archived since; prune each repository with
its own policy.

Target password: --to-password-file, PGCAIRN_TO_PASSWORD_FILE, PGCAIRN_TO_PASSWORD, else a
prompt on the terminal.

Exit codes: 0 done; 2 usage (an unknown snapshot); 3 wrong or missing password (of either
repository); 4 no repository at --repo or --to (run `pgcairn init`); 6 refused (the same
repository twice, or a WAL file the target holds with other content); 10 damaged data in the
source; 12 storage error; 130 interrupted (what was committed stays).")]
pub struct CopyArgs {
    /// The target repository (same syntax as --repo); it must be initialised.
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// Read the target repository's password from the first line of this file.
    #[arg(long, env = "PGCAIRN_TO_PASSWORD_FILE", value_name = "PATH")]
    pub to_password_file: Option<PathBuf>,

    /// A snapshot to copy: an id, a unique prefix of one, or `latest` (repeatable).
    #[arg(long = "snapshot", value_name = "ID", conflicts_with = "all")]
    pub snapshots: Vec<String>,

    /// Copy every snapshot (the default when no --snapshot is given).
    #[arg(long)]
    pub all: bool,

    /// Show what would be copied; write nothing to the target.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the summary (with --dry-run, the plan) as one JSON object on stdout (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// The target's password: `--to-password-file`/`PGCAIRN_TO_PASSWORD_FILE`, then
/// `PGCAIRN_TO_PASSWORD`, then a prompt.
fn target_password(args: &CopyArgs) -> Result<password::Password> {
    password::Source {
        file: args.to_password_file.as_deref(),
        env: "PGCAIRN_TO_PASSWORD",
        prompt: "target repository password",
        options: "--to-password-file, PGCAIRN_TO_PASSWORD_FILE or PGCAIRN_TO_PASSWORD",
    }
    .read()
}

fn open_target(global: &GlobalOptions, args: &CopyArgs) -> Result<IndexedRepository> {
    let context = || format!("target repository {}", args.to);
    let storage = Storage::open(&args.to).with_context(context)?;
    let password = target_password(args).with_context(context)?;
    crate::repo::Repository::open(storage, &password)
        .with_context(context)?
        .open_cache(global.cache_dir.as_deref())
}

pub fn run(global: &GlobalOptions, args: &CopyArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let selection = if args.snapshots.is_empty() {
        Selection::All
    } else {
        Selection::Named(args.snapshots.clone())
    };
    let source = global
        .open_indexed()
        .context("source repository (--repo)")?;
    let target = open_target(global, args)?;
    let began = Instant::now();
    if args.dry_run {
        target.sync_cache()?;
        let plan = copy::plan(&source, &target, &selection)?;
        print_plan(&plan, args.json, global.quiet);
        return Ok(());
    }
    let translations = copy::open_translations(&source, &target, global.cache_dir.as_deref())?;
    let progress = Mutex::new(Progress::new(global.quiet));
    // The lock before the index (format-spec §13 W2): prune keeps every pack this copy may
    // learn of and reference.
    let result = target.with_lock(LockKind::Writer, |lock| {
        target.sync_cache()?;
        let plan = copy::plan(&source, &target, &selection)?;
        let request = CopyRequest {
            translations,
            interrupted: &interrupted,
            lock,
        };
        copy::execute(&source, &target, &plan, request, &|p| {
            let c = p.counters;
            let read = c.bytes_read.load(Ordering::Relaxed);
            let line = || {
                format!(
                    "{}: {} chunks, {} already in the target, {} read ({}, {})",
                    p.phase,
                    c.chunks.load(Ordering::Relaxed),
                    c.chunks_known.load(Ordering::Relaxed),
                    c.chunks_read.load(Ordering::Relaxed),
                    format::bytes(read),
                    format::rate(read, began.elapsed()),
                )
            };
            progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(line);
        })
    });
    progress.lock().unwrap_or_else(|e| e.into_inner()).finish();
    let report = match result {
        Err(e) if interrupted.load(Ordering::Relaxed) => {
            return Err(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "interrupted; the WAL files and snapshots copied so far are in the target, \
                     and the next copy goes on from there [{e}]"
                ),
            ));
        }
        other => other?,
    };
    print_report(&report, began.elapsed(), args.json, global.quiet);
    Ok(())
}

fn snapshot_json(
    source_id: String,
    target_id: Option<String>,
    snapshot: &Snapshot,
    status: &str,
) -> serde_json::Value {
    let pg = snapshot.postgres.as_ref();
    serde_json::json!({
        "source": source_id,
        "target": target_id,
        "status": status,
        "time": crate::clock::format_utc(snapshot.started_ns / 1_000_000_000),
        "system_identifier": pg.map(|pg| pg.system_identifier.to_string()),
        "cluster_name": pg.and_then(|pg| pg.cluster_name.as_deref()),
        "timeline": pg.map(|pg| pg.timeline),
        "start_lsn": pg.map(|pg| Lsn(pg.start_lsn).to_string()),
        "stop_lsn": pg.map(|pg| Lsn(pg.stop_lsn).to_string()),
        "logical_bytes": snapshot.summary.logical_bytes,
    })
}

fn print_plan(plan: &CopyPlan, json: bool, quiet: bool) {
    let wal_bytes: u64 = plan.wal.iter().map(|e| e.size).sum();
    if json {
        let value = serde_json::json!({
            "dry_run": true,
            "shared_chunk_ids": plan.shared_ids,
            "snapshots": plan.snapshots.iter().map(|s| snapshot_json(
                s.source_id.to_hex(),
                s.present_as.map(|id| id.to_hex()),
                &s.snapshot,
                if s.present_as.is_some() { "present" } else { "to_copy" },
            )).collect::<Vec<_>>(),
            "snapshots_to_copy": plan.to_copy().count(),
            "snapshots_present": plan.snapshots.len() - plan.to_copy().count(),
            "wal_files_to_copy": plan.wal.len(),
            "wal_bytes_to_copy": wal_bytes,
            "wal_files_present": plan.wal_present,
            "wal": plan.wal.iter().map(|e| &e.name).collect::<Vec<_>>(),
        });
        println!("{value}");
        return;
    }
    if quiet {
        return;
    }
    for s in &plan.snapshots {
        let state = match s.present_as {
            Some(id) => format!("already in the target as {}", id.short()),
            None => "would be copied".to_string(),
        };
        println!(
            "snapshot {} of {} UTC: {state}",
            s.source_id.short(),
            crate::clock::format_utc(s.snapshot.started_ns / 1_000_000_000)
        );
    }
    let range = match (plan.wal.first(), plan.wal.last()) {
        (Some(first), Some(last)) => format!(" ({} .. {})", first.name, last.name),
        _ => String::new(),
    };
    println!(
        "WAL: {} files ({}) would be copied{range}, {} already in the target",
        plan.wal.len(),
        format::bytes(wal_bytes),
        plan.wal_present
    );
    println!("dry run: nothing was written");
}

fn print_report(report: &CopyReport, elapsed: Duration, json: bool, quiet: bool) {
    let copied = report.snapshots.iter().filter(|s| s.copied).count();
    if json {
        let value = serde_json::json!({
            "dry_run": false,
            "shared_chunk_ids": report.shared_ids,
            "snapshots": report.snapshots.iter().map(|s| snapshot_json(
                s.source_id.to_hex(),
                Some(s.target_id.to_hex()),
                &s.snapshot,
                if s.copied { "copied" } else { "present" },
            )).collect::<Vec<_>>(),
            "snapshots_copied": copied,
            "snapshots_present": report.snapshots.len() - copied,
            "wal_files_copied": report.wal.files,
            "wal_bytes_copied": report.wal.bytes,
            "wal_files_present": report.wal_present + report.wal.raced,
            "chunks": report.chunks,
            "chunks_known": report.chunks_known,
            "chunks_read": report.chunks_read,
            "bytes_read": report.bytes_read,
            "blobs_uploaded": report.packer.new_blobs,
            "raw_bytes_uploaded": report.packer.new_raw_bytes,
            "bytes_uploaded": report.packer.new_stored_bytes,
            "packs": report.packer.packs,
            "index_files": report.packer.index_files,
            "duration_seconds": elapsed.as_secs_f64(),
        });
        println!("{value}");
        return;
    }
    if quiet {
        return;
    }
    for s in &report.snapshots {
        if s.copied {
            println!(
                "snapshot {} copied as {}",
                s.source_id.short(),
                s.target_id.short()
            );
        }
    }
    println!(
        "copied {copied} snapshots ({} already in the target) and {} WAL files ({}; {} already \
         there)",
        report.snapshots.len() - copied,
        report.wal.files,
        format::bytes(report.wal.bytes),
        report.wal_present + report.wal.raced
    );
    println!(
        "  {} chunks: {} already in the target, {} read ({}); uploaded {} in {} packs in {}",
        report.chunks,
        report.chunks_known,
        report.chunks_read,
        format::bytes(report.bytes_read),
        format::bytes(report.packer.new_stored_bytes),
        report.packer.packs,
        format::duration(elapsed),
    );
}
