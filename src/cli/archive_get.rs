//! `pgcairn archive-get WAL_NAME DEST`: the server's restore_command. Until WAL archiving
//! arrives, the WAL in the repository is what snapshots carry in their `pg_wal/`.

use std::path::PathBuf;

use clap::Args;

use super::GlobalOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::wal;
use crate::repo::tree::NodeKind;

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Used by the server during recovery, as written by `pgcairn restore`:
  restore_command = '/usr/local/bin/pgcairn --repo /backup/pgcairn archive-get %f \"%p\"'

Exit codes: 0 the file was written to DEST; 1 the repository does not have it (the server
then ends recovery normally); any other code is a real failure (no repository, wrong password,
storage error), never reported as \"not found\".")]
pub struct ArchiveGetArgs {
    /// WAL segment or timeline history file name (%f).
    pub wal_name: String,
    /// Where the server wants it (%p).
    pub dest: PathBuf,
}

pub fn run(global: &GlobalOptions, args: &ArchiveGetArgs) -> Result<()> {
    let name = args.wal_name.as_str();
    if !(wal::is_wal_segment_name(name) || wal::is_history_file_name(name)) {
        return Err(Error::usage(format!(
            "{name:?} is not a WAL segment or history file name"
        )));
    }
    let repo = global
        .open_repository()?
        .load_index(global.cache_dir.as_deref())?;
    let mut snapshots = repo.load_snapshots()?;
    snapshots.reverse();
    for (_, snapshot) in &snapshots {
        let root = repo.dir_entries(&snapshot.root)?;
        let Some(NodeKind::Dir { trees }) =
            root.iter().find(|n| n.name == b"pg_wal").map(|n| &n.kind)
        else {
            continue;
        };
        if let Some(node) = repo
            .dir_entries(trees)?
            .iter()
            .find(|n| n.name == name.as_bytes())
        {
            let never = std::sync::atomic::AtomicBool::new(false);
            return crate::restore::restore_file(&repo, node, &args.dest, &never);
        }
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!("{name} is not in the repository"),
    ))
}
