//! `pgcairn archive-get WAL_NAME DEST`: the server's restore_command.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::GlobalOptions;
use crate::archive;
use crate::error::{Error, Result};

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Used by the server during recovery, as written by `pgcairn restore`:
  restore_command = '/usr/local/bin/pgcairn --repo /backup/pgcairn archive-get --system-id 7301234567890123456 %f \"%p\"'

Exit codes: 0 the file was written to DEST (under a temporary name, checked, fsynced, then
renamed); 1 the repository positively does not have it (the server then ends recovery
normally). Every other failure exits with 150 plus the usual code (152 usage, 153 password,
154 no repository, 160 damaged data, 162 storage unreachable, 163 local error, 220 internal
error; 130 interrupted): above 125, so the server stops recovery instead of ending it early
and promoting with WAL missing.")]
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
}

pub fn run(global: &GlobalOptions, args: &ArchiveGetArgs) -> Result<()> {
    let interrupted = super::interrupt::install()?;
    archive::get::check_name(&args.wal_name)?;
    let cluster = archive::resolve_cluster(args.system_id, args.pgdata.as_deref(), None)?
        .ok_or_else(|| {
            Error::usage(
                "cannot tell which cluster's WAL to fetch: give --system-id (restore writes it \
                 into restore_command) or run from the data directory",
            )
        })?;
    // Reads sync the index cache only when an archived file needs a pack it does not know.
    let mut repo = global.open_for_wal(Duration::MAX)?;
    let entry = archive::get::find(&repo, cluster, &args.wal_name)?;
    archive::get::fetch(&mut repo, &entry, &args.dest, &interrupted)
}
