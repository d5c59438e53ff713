//! `pgcairn archive-push WAL_PATH`: the server's archive_command.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::GlobalOptions;
use crate::archive::{self, push::PushOutcome};
use crate::error::Result;

/// How stale the index cache of archive-push may be (format-spec §13): a fresher cache
/// deduplicates better; listing the index on every call would cost more than the segment.
pub const INDEX_MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
In postgresql.conf:
  archive_mode = on
  archive_command = '/usr/local/bin/pgcairn --repo /backup/pgcairn --password-file /etc/pgcairn/pass archive-push %p'

Accepts WAL segments, .partial segments, timeline history and backup history files; checks a
segment's size and page header (its system identifier must be the cluster's). The file is
durable in the repository before exit 0. Archiving a name again with the same content
succeeds with a warning; different content fails (exit 6) and keeps the archived copy.

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
}

pub fn run(global: &GlobalOptions, args: &ArchivePushArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    let cluster =
        archive::resolve_cluster(args.system_id, args.pgdata.as_deref(), Some(&args.wal_path))?;
    archive::push::read_ahead(&args.wal_path);
    let repo = global.open_for_wal(INDEX_MAX_AGE)?;
    let report = archive::push::push(&repo, &args.wal_path, cluster, &interrupted)?;
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
    Ok(())
}
