//! `pgcairn repair index`: rebuild the index from index files and pack headers.

use clap::{Args, Subcommand};

use super::GlobalOptions;
use super::progress::Progress;
use crate::error::Result;
use crate::repo::RepairReport;

#[derive(Subcommand, Debug, Clone)]
pub enum RepairCommand {
    /// Rebuild the local index cache from the index files, and write index files for packs
    /// that none lists (read from the packs' own headers).
    #[command(after_help = "\
Examples:
  pgcairn repair index --repo /backup/pgcairn --password-file ~/.pgcairn-pass
  pgcairn repair index --json | jq .packs_reindexed

Safe to run at any time: it only adds index files. Use it when index files were lost or a
backup was interrupted after writing packs. Packs whose header cannot be read are reported
and left alone (exit 10; with --json, after the report).")]
    Index(IndexArgs),
}

#[derive(Args, Debug, Clone)]
pub struct IndexArgs {
    /// Print what was found and indexed as one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalOptions, command: &RepairCommand) -> Result<()> {
    match command {
        RepairCommand::Index(args) => {
            let repo = global.open_repository()?;
            let mut progress = Progress::new(global.quiet);
            let (_, report) = repo.repair_index(global.cache_dir.as_deref(), |done, total| {
                progress.update(|| format!("reading pack headers: {done}/{total}"))
            })?;
            progress.finish();
            if args.json {
                println!("{}", report_json(&report));
            } else {
                print_report(&report, global.quiet);
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

fn print_report(report: &RepairReport, quiet: bool) {
    if !quiet {
        println!(
            "{} index files, {} packs on storage; indexed {} packs ({} blobs) into {} new index \
             files",
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
}

fn report_json(report: &RepairReport) -> serde_json::Value {
    serde_json::json!({
        "index_files": report.index_files,
        "packs_on_storage": report.packs_on_storage,
        "packs_reindexed": report.packs_reindexed,
        "blobs_reindexed": report.blobs_reindexed,
        "new_index_files": report.new_index_files,
        "damaged_index_files": problems(&report.damaged_index_files),
        "damaged_packs": problems(&report.damaged_packs),
    })
}

/// Objects with what is wrong with each, as `[{"id": ..., "problem": ...}]`.
fn problems<Id: std::fmt::Display>(objects: &[(Id, String)]) -> Vec<serde_json::Value> {
    objects
        .iter()
        .map(|(id, why)| serde_json::json!({ "id": id.to_string(), "problem": why }))
        .collect()
}
