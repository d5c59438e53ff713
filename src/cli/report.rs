//! `pgcairn report --html FILE`: a picture of the repository, as one self-contained HTML page.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::GlobalOptions;
use super::cluster_arg::ClusterArg;
use super::output::write_atomically;
use super::progress::Progress;
use crate::error::{Error, Result};
use crate::report::{data, page};

#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Example:
  pgcairn report --html /var/www/backups/report.html    # e.g. nightly, after prune
  pgcairn report --html - > report.html                 # to standard output
  pgcairn report --cluster main --html main.html        # one cluster of several

The page holds four charts over one time axis, and the snapshot table:
  - the logical size of each snapshot (what a plain copy would take);
  - the bytes each backup added after deduplication and compression;
  - dedup and compression ratios over the snapshots up to each one;
  - per cluster and timeline, the recoverable window: from the oldest restorable snapshot
    to the end of the WAL that follows it without a gap, with gaps shown.
It is one file, with no script and no link to anything outside it: it opens offline in any
browser, from a mail or a ticket. Point at a mark for its numbers.

For the ratios over time, report reads every snapshot's metadata (trees and chunk lists,
once each, as prune does), never the data itself. The file is written to a temporary name
beside FILE and renamed over it, so a web server never serves half a page.")]
pub struct ReportArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,

    /// Write the HTML page to FILE (`-`: standard output).
    #[arg(long, value_name = "FILE", required = true)]
    pub html: PathBuf,
}

pub fn run(global: &GlobalOptions, args: &ReportArgs) -> Result<()> {
    let repo = global.open_indexed()?;
    let mut progress = Progress::new(global.quiet);
    let overview = data::gather(&repo, &args.cluster, &mut |done, total| {
        progress.update(|| format!("reading snapshot metadata: {done}/{total}"))
    })?;
    progress.finish();
    if let Some(first) = overview.unreadable.first() {
        eprintln!(
            "pgcairn: warning: {} trees or chunk lists could not be read (first: {:?} {}: {}); \
             the ratios over time leave out what is under them (run `pgcairn verify`)",
            overview.unreadable.len(),
            first.blob_type,
            first.id,
            first.error
        );
    }
    let html = page::render(&overview, crate::clock::now_secs());
    if args.html == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(html.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::local_io(e, "writing the report to standard output"));
    }
    write_atomically(&args.html, html.as_bytes())?;
    if !global.quiet {
        eprintln!(
            "pgcairn: wrote {} ({} snapshots, {} clusters)",
            args.html.display(),
            overview.snapshots.len(),
            overview.clusters.len()
        );
    }
    Ok(())
}
