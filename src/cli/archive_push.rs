//! `pgcairn archive-push WAL_PATH`: the server's archive_command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::GlobalOptions;
use crate::archive;
use crate::archive::ahead::{Ahead, Found, Server};
use crate::archive::push::{INDEX_MAX_AGE, PushOutcome, PushReport};
use crate::error::{Error, Result};
use crate::repo::cache;

/// The hidden subcommand `archive-push --async` starts to archive ahead of the server.
pub const WORKER_COMMAND: &str = "archive-push-worker";
/// How long a call waits for a running worker to archive its file before doing it itself.
const WORKER_WAIT: Duration = Duration::from_secs(30);
const WORKER_POLL: Duration = Duration::from_millis(5);

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
In postgresql.conf:
  archive_mode = on
  archive_command = '/usr/local/bin/pgcairn --repo /backup/pgcairn --password-file /etc/pgcairn/pass archive-push %p'

Accepts WAL segments, .partial segments, timeline history and backup history files; checks a
segment's size and page header (its system identifier must be the cluster's). The file is
durable in the repository before exit 0. Archiving a name again with the same content
succeeds with a warning; different content fails (exit 6) and keeps the archived copy.

--async (or `archive_async = true` in the config file): one background worker archives every
file the server has marked ready (pg_wal/archive_status/*.ready), ahead of the server's calls,
with one repository open for all of them; the call for a file then only checks the worker's
receipt (the file unchanged, its catalogue entry on storage) and exits 0 at once. Exit 0 still
means the file is durable in the repository; without a usable receipt the call archives the
file itself. The worker's log and receipts are in
  <cache dir>/archive-push/<hash of the repository location>/<system id>/

The repository keys are cached for this OS user after the first call (no password KDF per
segment); --no-key-cache or `key_cache = false` in the config file turns that off.")]
pub struct ArchivePushArgs {
    /// The WAL file (%p, relative to the data directory the server runs the command in).
    pub wal_path: PathBuf,

    /// Data directory of the cluster [default: the one the WAL file is in, else the current
    /// directory]. Its pg_control says which cluster this is.
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,

    /// Archive for the cluster with this system identifier, when no data directory is at hand.
    #[arg(long, value_name = "ID", conflicts_with = "pgdata")]
    pub system_id: Option<u64>,

    /// Archive ahead of the server with a background worker (see below).
    #[arg(long = "async")]
    pub async_mode: bool,
}

/// The worker's arguments (started by archive-push --async, not meant to be typed).
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[arg(long, value_name = "DIR")]
    pub pgdata: PathBuf,
    #[arg(long, value_name = "ID")]
    pub system_id: u64,
    /// The file the starting call archives itself.
    #[arg(long, value_name = "NAME")]
    pub skip: Option<String>,
}

pub fn run(global: &GlobalOptions, args: &ArchivePushArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let cluster =
        archive::resolve_cluster(args.system_id, args.pgdata.as_deref(), Some(&args.wal_path))?;
    archive::push::read_ahead(&args.wal_path);
    let pgdata = args
        .pgdata
        .clone()
        .or_else(|| archive::data_dir_of(&args.wal_path));
    if (args.async_mode || global.archive_async)
        && let (Some(cluster), Some(pgdata)) = (cluster, pgdata)
        && archived_ahead(global, &args.wal_path, cluster, &pgdata)?
    {
        if global.verbose > 0 {
            eprintln!(
                "pgcairn: {} was archived by the background worker",
                args.wal_path.display()
            );
        }
        return Ok(());
    }
    let repo = global.open_for_wal(INDEX_MAX_AGE)?;
    let report = archive::push::push(&repo, &args.wal_path, cluster, &interrupted)?;
    print_outcome(global, &report);
    Ok(())
}

fn print_outcome(global: &GlobalOptions, report: &PushReport) {
    match report.outcome {
        PushOutcome::AlreadyArchived => eprintln!(
            "pgcairn: warning: {} was already archived with identical content (BLAKE3 {}); \
             nothing stored",
            report.name,
            hex::encode(report.checksum)
        ),
        PushOutcome::Archived {
            new_bytes,
            stored_bytes,
        } if global.verbose > 0 => eprintln!(
            "pgcairn: archived {} ({} bytes, {new_bytes} new, {stored_bytes} stored)",
            report.name, report.size
        ),
        PushOutcome::Archived { .. } => {}
    }
}

/// `--async`: whether the worker archived this file. Waits for a running worker; starts one
/// when none runs (and then the call archives its own file, the worker the ones after it).
fn archived_ahead(
    global: &GlobalOptions,
    wal_path: &Path,
    cluster: u64,
    pgdata: &Path,
) -> Result<bool> {
    let Some(name) = wal_path.file_name().and_then(|n| n.to_str()) else {
        return Ok(false);
    };
    let storage = global.storage()?;
    let base = cache::base_dir(global.cache_dir.as_deref())?;
    let ahead = Ahead::new(&base, storage.location(), cluster);
    ahead.create()?;
    let deadline = Instant::now() + WORKER_WAIT;
    loop {
        match ahead.take(&storage, name, wal_path)? {
            Found::Archived => return Ok(true),
            Found::Failed(message) => {
                eprintln!("pgcairn: warning: the background worker failed on {name}: {message}");
                return Ok(false);
            }
            Found::Nothing => {}
        }
        if let Some(lock) = ahead.try_lock()? {
            // No worker: start one for the files after this one.
            drop(lock);
            let args: Vec<OsString> = vec![
                WORKER_COMMAND.into(),
                "--pgdata".into(),
                std::path::absolute(pgdata)
                    .map_err(Error::io_at("resolving", pgdata))?
                    .into(),
                "--system-id".into(),
                cluster.to_string().into(),
                "--skip".into(),
                name.into(),
            ];
            super::worker::spawn_detached(global, &ahead.log_path(), &args)?;
            return Ok(false);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(WORKER_POLL);
    }
}

/// The worker: archives what the server has marked ready, then exits.
pub fn run_worker(global: &GlobalOptions, args: &WorkerArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let mut repo = global.open_for_wal(INDEX_MAX_AGE)?;
    let base = cache::base_dir(global.cache_dir.as_deref())?;
    let ahead = Ahead::new(&base, repo.storage().location(), args.system_id);
    let Some(lock) = ahead.try_lock()? else {
        return Ok(());
    };
    let server = Server {
        pgdata: &args.pgdata,
        cluster: args.system_id,
        skip: args.skip.as_deref(),
    };
    ahead.run(
        &lock,
        &mut repo,
        &server,
        &interrupted,
        &|name, outcome| match outcome {
            Ok(report) => print_outcome(global, report),
            Err(e) => eprintln!("pgcairn: {name}: {e}"),
        },
    )
}
