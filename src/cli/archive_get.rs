//! `pgcairn archive-get WAL_NAME DEST`: the server's restore_command; with `--prefetch N` it
//! also keeps the next N segments in a local queue, filled by a background worker
//! (`archive-get-fill-queue`, hidden).

use std::path::PathBuf;

use std::time::Duration;

use clap::Args;

use super::GlobalOptions;
use crate::archive::{self, prefetch, spool};
use crate::error::{Error, Result};
use crate::repo::IndexedRepository;
use crate::repo::cache;
use crate::repo::walcat::WalEntry;

/// The hidden subcommand archive-get starts to fill the prefetch queue.
pub const FILL_QUEUE_COMMAND: &str = "archive-get-fill-queue";

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Used by the server during recovery, as written by `pgcairn restore`:
  restore_command = '/usr/local/bin/pgcairn --repo /backup/pgcairn archive-get --system-id 7301234567890123456 %f \"%p\"'

Exit codes: 0 the file was written to DEST (under a temporary name, checked, fsynced, then
renamed); 1 the repository positively does not have it (the server then ends recovery
normally). Every other failure exits with 150 plus the usual code (152 usage, 153 password,
154 no repository, 160 damaged data, 162 storage unreachable, 163 local error, 220 internal
error; 130 interrupted): above 125, so the server stops recovery instead of ending it early
and promoting with WAL missing.

Prefetch: with --prefetch N (or `archive_get_prefetch = N` in the config file), after serving
a WAL segment archive-get starts one background process that fetches the next N segments of
the timeline into a queue, so that the server's next requests are served locally:
  <cache dir>/prefetch/<hash of the repository location>/<system id>/
(cache dir: --cache-dir, else $XDG_CACHE_HOME/pgcairn). The queue holds at most N segments
(N times the segment size of disk) and the newest worker's log (worker.log); segments the
server has passed are deleted on the next call. Recovery that stops at a target before the end
of the archive leaves up to N segments there; the directory may be deleted at any time. The catalogue is still asked for every file,
and a queued segment is served only if its size and BLAKE3 checksum match the archived one;
otherwise it is fetched from the repository. The worker stops at the first segment not in the
archive. History, .partial and backup history files are never prefetched.")]
pub struct ArchiveGetArgs {
    /// WAL segment, .partial segment, history or backup history file name (%f).
    pub wal_name: String,
    /// Where the server wants it (%p).
    pub dest: PathBuf,

    /// The cluster whose archive to read [default: the cluster of the data directory the
    /// command runs in].
    #[arg(long, value_name = "ID")]
    pub system_id: Option<u64>,

    /// Data directory to take the cluster from, instead of the current directory.
    #[arg(long, value_name = "DIR", conflicts_with = "system_id")]
    pub pgdata: Option<PathBuf>,

    /// Keep the next N WAL segments in a local queue, fetched in the background [default:
    /// `archive_get_prefetch` in the config file, else 0: off].
    #[arg(
        long,
        value_name = "N",
        env = "PGCAIRN_ARCHIVE_GET_PREFETCH",
        value_parser = clap::value_parser!(u32).range(0..=i64::from(prefetch::MAX_DEPTH))
    )]
    pub prefetch: Option<u32>,
}

/// The prefetch worker's arguments (started by archive-get, not meant to be typed).
#[derive(Args, Debug, Clone)]
pub struct FillQueueArgs {
    /// The segment archive-get served; the queue is filled with the ones after it.
    pub served: String,
    #[arg(long, value_name = "ID")]
    pub system_id: u64,
    #[arg(long, value_name = "BYTES")]
    pub segment_size: u64,
    #[arg(long, value_name = "N")]
    pub prefetch: u32,
}

pub fn run(global: &GlobalOptions, args: &ArchiveGetArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    archive::get::check_name(&args.wal_name)?;
    let depth = args.prefetch.or(global.archive_get_prefetch).unwrap_or(0);
    if depth > prefetch::MAX_DEPTH {
        return Err(Error::usage(format!(
            "archive_get_prefetch = {depth}: at most {} segments can be prefetched",
            prefetch::MAX_DEPTH
        )));
    }
    let cluster = archive::resolve_cluster(args.system_id, args.pgdata.as_deref(), None)?
        .ok_or_else(|| {
            Error::usage(
                "cannot tell which cluster's WAL to fetch: give --system-id (restore writes it \
                 into restore_command) or run from the data directory",
            )
        })?;
    // Reads sync the index cache only when an archived file needs a pack it does not know.
    let mut repo = global.open_for_wal(Duration::MAX)?;
    // Asked even when the file is queued: the catalogue, not the queue, says what the
    // archive holds, and its checksum is what a queued copy must match.
    let entry = archive::get::find(&repo, cluster, &args.wal_name)?;
    // Only segments have a window: history, .partial and backup history files are asked for
    // speculatively and are tiny.
    let window = (depth > 0)
        .then(|| prefetch::Window::after(&entry.name, entry.size, depth))
        .flatten();
    let Some(window) = window else {
        return archive::get::fetch(&mut repo, &entry, &args.dest, &interrupted);
    };

    let queue = cache::base_dir(global.cache_dir.as_deref()).and_then(|base| {
        let queue = prefetch::Queue::new(&base, repo.storage().location(), cluster);
        queue.create().map(|()| queue)
    });
    let queue = match queue {
        Ok(queue) => Some(queue),
        Err(e) => {
            warn(
                global,
                &format!("prefetch queue unusable, prefetch is off: {e}"),
            );
            None
        }
    };
    serve(
        global,
        &mut repo,
        queue.as_ref(),
        &entry,
        args,
        &interrupted,
    )?;
    // The file is in place; nothing below may fail archive-get.
    if let Some(queue) = queue
        && let Err(e) = refill(global, &queue, cluster, &entry.name, &window)
    {
        warn(global, &format!("prefetch: {e}"));
    }
    Ok(())
}

/// Serves the file from the queue if it is queued and intact, else from the repository.
fn serve(
    global: &GlobalOptions,
    repo: &mut IndexedRepository,
    queue: Option<&prefetch::Queue>,
    entry: &WalEntry,
    args: &ArchiveGetArgs,
    interrupted: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    if let Some(queue) = queue {
        match queue.take(entry, &args.dest) {
            Ok(true) => {
                if global.verbose > 0 {
                    eprintln!("pgcairn: {} from the prefetch queue", entry.name);
                }
                return Ok(());
            }
            Ok(false) => {}
            // Never fatal: the repository has it.
            Err(e) => warn(global, &format!("{e}; fetching it from the repository")),
        }
    }
    archive::get::fetch(repo, entry, &args.dest, interrupted)?;
    if global.verbose > 0 {
        eprintln!("pgcairn: {} from the repository", entry.name);
    }
    Ok(())
}

/// Moves the window past the segment just served, drops what fell out of it, and starts a
/// worker for what is missing unless one is running.
fn refill(
    global: &GlobalOptions,
    queue: &prefetch::Queue,
    cluster: u64,
    served: &str,
    window: &prefetch::Window,
) -> Result<()> {
    queue.mark_served(served)?;
    let lock = queue.try_lock()?;
    let missing = queue.clean(window, lock.as_ref())?;
    let Some(lock) = lock else {
        // A worker is running; it follows the window.
        return Ok(());
    };
    if missing.is_empty() {
        return Ok(());
    }
    // Released before the worker takes it; should another archive-get start a worker in
    // between, one of the two finds it locked and exits.
    drop(lock);
    let args: Vec<std::ffi::OsString> = vec![
        FILL_QUEUE_COMMAND.into(),
        "--system-id".into(),
        cluster.to_string().into(),
        "--segment-size".into(),
        window.segment_size().to_string().into(),
        "--prefetch".into(),
        window.depth().to_string().into(),
        served.into(),
    ];
    super::worker::spawn_detached(global, &queue.dir().join(spool::LOG_FILE), &args)
}

/// The worker: fills the queue and exits. Its output goes to the queue's log.
pub fn run_fill_queue(global: &GlobalOptions, args: &FillQueueArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let window = prefetch::Window::after(&args.served, args.segment_size, args.prefetch)
        .ok_or_else(|| {
            Error::usage(format!(
                "{:?} is not a WAL segment name for {}-byte segments",
                args.served, args.segment_size
            ))
        })?;
    let mut repo = global.open_for_wal(Duration::MAX)?;
    let base = cache::base_dir(global.cache_dir.as_deref())?;
    let queue = prefetch::Queue::new(&base, repo.storage().location(), args.system_id);
    let Some(lock) = queue.try_lock()? else {
        if !global.quiet {
            eprintln!("pgcairn: another worker fills the queue");
        }
        return Ok(());
    };
    let end = queue.fill(
        &lock,
        &mut repo,
        args.system_id,
        &window,
        &interrupted,
        &mut |name| {
            if !global.quiet {
                eprintln!("pgcairn: queued {name}");
            }
        },
    )?;
    if !global.quiet {
        match end {
            prefetch::FillEnd::Full => eprintln!("pgcairn: the queue is full"),
            prefetch::FillEnd::EndOfArchive(name) => {
                eprintln!("pgcairn: {name} is not archived (yet): stopping there")
            }
            prefetch::FillEnd::Superseded => {
                eprintln!("pgcairn: archive-get moved to another timeline: stopping")
            }
            prefetch::FillEnd::Interrupted => eprintln!("pgcairn: interrupted"),
        }
    }
    Ok(())
}

/// A warning on stderr (the server's log when it runs archive-get).
fn warn(global: &GlobalOptions, message: &str) {
    if !global.quiet {
        eprintln!("pgcairn: warning: {message}");
    }
}
