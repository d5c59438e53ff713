//! `pgcairn restore`: rebuild a data directory from a snapshot and configure recovery.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::GlobalOptions;
use super::format;
use super::progress::Progress;
use crate::error::{Error, Result};
use crate::pg::recovery::{RecoverySettings, RecoveryTarget, TargetAction, restore_command_arg};
use crate::pg::wal::Lsn;
use crate::restore::{self, RestoreRequest};

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pgcairn restore latest --pgdata /var/lib/postgresql/15/restored
  pgcairn restore 3c44142e --pgdata /srv/pg --target-immediate --target-action promote
  pgcairn restore latest --pgdata /srv/pg --delta --tablespace-map /mnt/ts1=/srv/ts1

The directory (and each tablespace directory) must be missing or empty, unless --delta is
given: then files whose chunks already match are left alone, others rewritten, and anything
the snapshot does not have is removed. Files get the running user as owner: run restore as
the user the server runs as.

The restored directory has backup_label (and tablespace_map), recovery.signal, and in
postgresql.auto.conf a restore_command that calls this pgcairn with the same --repo,
--config, --password-file and --cache-dir (never a password), and archive_mode = off (use
--archive-mode preserve to keep archiving, e.g. when replacing the primary itself).
pg_control is written last and everything is fsynced before restore reports success.

Exit codes: 0 done; 4 no repository; 6 the target is not empty (without --delta) or a server
runs in it; 10 damaged data in the repository; 13 local I/O error; 130 interrupted.")]
pub struct RestoreArgs {
    /// Snapshot id (or a unique prefix of it), or `latest`.
    #[arg(default_value = "latest", value_name = "SNAPSHOT|latest")]
    pub snapshot: String,

    /// Data directory to restore into [env: PGDATA].
    #[arg(long, env = "PGDATA", value_name = "DIR")]
    pub pgdata: PathBuf,

    /// Reuse an existing data directory: rewrite only what differs.
    #[arg(long)]
    pub delta: bool,

    /// Restore the tablespace at OLD to NEW instead (repeatable).
    #[arg(long = "tablespace-map", value_name = "OLD=NEW", value_parser = parse_mapping)]
    pub tablespace_map: Vec<(PathBuf, PathBuf)>,

    /// Stop recovery as soon as the snapshot is consistent.
    #[arg(long)]
    pub target_immediate: bool,

    /// What the server does at the recovery target [default: pause, PostgreSQL's default].
    #[arg(long, value_enum, requires = "target_immediate")]
    pub target_action: Option<Action>,

    /// Whether the restored server keeps archive_mode.
    #[arg(long, value_enum, default_value_t = ArchiveMode::Off)]
    pub archive_mode: ArchiveMode,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Action {
    Pause,
    Promote,
    Shutdown,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveMode {
    /// archive_mode = off: a restored copy never pushes WAL into the original's archive.
    Off,
    /// Keep the snapshot's archive_mode setting.
    Preserve,
}

fn parse_mapping(text: &str) -> std::result::Result<(PathBuf, PathBuf), String> {
    let (old, new) = text
        .split_once('=')
        .ok_or_else(|| format!("expected OLD=NEW, got {text:?}"))?;
    if !old.starts_with('/') || !new.starts_with('/') {
        return Err(format!("both paths must be absolute: {text:?}"));
    }
    Ok((PathBuf::from(old), PathBuf::from(new)))
}

/// An absolute form of a path given relative to the current directory: the server runs
/// restore_command from the data directory.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::usage(format!("{}: {e}", path.display())))
}

/// The restore_command the restored server runs: this binary, with the repository settings
/// restore was given (paths made absolute), never a password.
fn restore_command(global: &GlobalOptions, system_identifier: u64) -> Result<String> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::local(format!("finding the pgcairn executable: {e}")))?;
    let mut words = vec![restore_command_arg(&exe.to_string_lossy())];
    let mut push = |flag: &str, value: String| {
        words.push(flag.to_string());
        words.push(restore_command_arg(&value));
    };
    if let Some(repo) = &global.repo {
        let repo = if repo.contains("://") {
            repo.clone()
        } else {
            absolute(Path::new(repo))?.to_string_lossy().into_owned()
        };
        push("--repo", repo);
    }
    for (flag, path) in [
        ("--config", &global.config),
        ("--password-file", &global.password_file),
        ("--cache-dir", &global.cache_dir),
    ] {
        if let Some(path) = path {
            push(flag, absolute(path)?.to_string_lossy().into_owned());
        }
    }
    words.push(format!(
        "archive-get --system-id {system_identifier} %f \"%p\""
    ));
    Ok(words.join(" "))
}

pub fn run(global: &GlobalOptions, args: &RestoreArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let repo = global
        .open_repository()?
        .load_index(global.cache_dir.as_deref())?;
    let (id, snapshot) = if args.snapshot == "latest" {
        repo.load_snapshots()?
            .pop()
            .ok_or_else(|| Error::usage("the repository has no snapshots yet"))?
    } else {
        let id = repo.find_snapshot(&args.snapshot)?;
        (id, repo.load_snapshot(&id)?)
    };
    if global.password_file.is_none() && std::env::var_os("PGCAIRN_PASSWORD").is_some() {
        eprintln!(
            "pgcairn: note: the password came from PGCAIRN_PASSWORD; the server's \
             restore_command needs it too (set it in the server's environment, or restore with \
             --password-file so the command carries the file's path)"
        );
    }
    let request = RestoreRequest {
        pgdata: absolute(&args.pgdata)?,
        delta: args.delta,
        tablespace_map: args.tablespace_map.clone(),
        recovery: RecoverySettings {
            restore_command: restore_command(
                global,
                snapshot
                    .postgres
                    .as_ref()
                    .map_or(0, |pg| pg.system_identifier),
            )?,
            target: args.target_immediate.then_some(RecoveryTarget::Immediate),
            target_action: args.target_action.map(|a| match a {
                Action::Pause => TargetAction::Pause,
                Action::Promote => TargetAction::Promote,
                Action::Shutdown => TargetAction::Shutdown,
            }),
            target_timeline: None,
            archive_mode_off: args.archive_mode == ArchiveMode::Off,
        },
        interrupted: &interrupted,
    };
    let began = Instant::now();
    let progress = Mutex::new(Progress::new(global.quiet));
    let report = restore::restore(&repo, &snapshot, &request, &|p| {
        let written = p.counters.bytes_written.load(Ordering::Relaxed)
            + p.counters.bytes_kept.load(Ordering::Relaxed);
        let files = p.counters.files_done.load(Ordering::Relaxed);
        progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(|| {
                format!(
                    "restoring: {} / {}, {files} files, {}",
                    format::bytes(written),
                    format::bytes(p.total_bytes),
                    format::rate(written, began.elapsed())
                )
            });
    });
    progress.lock().unwrap_or_else(|e| e.into_inner()).finish();
    let report = report?;
    if !global.quiet {
        let pg = snapshot.postgres.as_ref();
        println!(
            "restored snapshot {} into {}: {} files, {} ({} written, {} already in place{}) in {}",
            id.short(),
            request.pgdata.display(),
            report.files,
            format::bytes(report.bytes),
            format::bytes(report.bytes_written),
            format::bytes(report.bytes_kept),
            if report.removed > 0 {
                format!(", {} extra entries removed", report.removed)
            } else {
                String::new()
            },
            format::duration(began.elapsed())
        );
        if let Some(pg) = pg {
            println!(
                "  recovery replays WAL from {} to at least {} (consistent there){}",
                Lsn(pg.start_lsn),
                Lsn(pg.stop_lsn),
                if args.target_immediate {
                    " and stops"
                } else {
                    ", then to the end of the archive"
                }
            );
        }
        println!("  start the server to begin recovery");
    }
    Ok(())
}
