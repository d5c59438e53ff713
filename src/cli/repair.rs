//! `pgcairn repair index`: rebuild the index from index files and pack headers.

use clap::Subcommand;

use super::GlobalOptions;
use super::progress::Progress;
use crate::error::Result;

#[derive(Subcommand, Debug, Clone)]
pub enum RepairCommand {
    /// Rebuild the local index cache from the index files, and write index files for packs
    /// that none lists (read from the packs' own headers).
    #[command(after_help = "\
Example:
  pgcairn repair index --repo /backup/pgcairn --password-file ~/.pgcairn-pass

Safe to run at any time: it only adds index files. Use it when index files were lost or a
backup was interrupted after writing packs. Packs whose header cannot be read are reported
and left alone.")]
    Index,
}

pub fn run(global: &GlobalOptions, command: &RepairCommand) -> Result<()> {
    match command {
        RepairCommand::Index => {
            let repo = global.open_repository()?;
            let mut progress = Progress::new(global.quiet);
            let (_, report) = repo.repair_index(global.cache_dir.as_deref(), |done, total| {
                progress.update(|| format!("reading pack headers: {done}/{total}"))
            })?;
            progress.finish();
            if !global.quiet {
                println!(
                    "{} index files, {} packs on storage; indexed {} packs ({} blobs) into {} new \
                     index files",
                    report.index_files,
                    report.packs_on_storage,
                    report.packs_reindexed,
                    report.blobs_reindexed,
                    report.new_index_files
                );
            }
            for (id, why) in &report.damaged_index_files {
                eprintln!("replaced damaged index file {id}: {why}");
            }
            for (id, why) in &report.damaged_packs {
                eprintln!("damaged pack {id}: {why}");
            }
            if !report.damaged_packs.is_empty() {
                return Err(crate::Error::integrity(format!(
                    "{} packs could not be read; they were left alone",
                    report.damaged_packs.len()
                )));
            }
        }
    }
    Ok(())
}
