//! `pgcairn man --out-dir DIR`: man pages generated from the clap definitions, one per command
//! and subcommand (pgcairn.1, pgcairn-backup.1, pgcairn-key-add.1, …), so that they say what
//! `--help` says.

use std::path::{Path, PathBuf};

use clap::Command;
use clap::builder::Resettable;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use crate::error::{Error, Result};

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pgcairn man --out-dir /usr/local/share/man/man1 && mandb -q
  man pgcairn-restore

  # without installing: render one page
  pgcairn man --out-dir /tmp/pgcairn-man && man -l /tmp/pgcairn-man/pgcairn-backup.1

Prints the path of each page written. Internal commands that pgcairn starts itself are left
out.")]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing; existing pages are replaced).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

/// Writes a page for `command` (the whole `pgcairn` command tree) and for each visible
/// subcommand, and prints their paths.
pub fn run(command: Command, args: &ManArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out_dir).map_err(Error::io_at("creating", &args.out_dir))?;
    let source = format!("pgcairn {}", command.get_version().unwrap_or_default());
    let mut command = command.disable_help_subcommand(true);
    // Building names each subcommand's page after its path (`pgcairn-key-add`) and
    // propagates the global options, so that every page lists them.
    command.build();
    for page in write_pages(&command, &source, &args.out_dir)? {
        println!("{}", page.display());
    }
    Ok(())
}

fn write_pages(command: &Command, source: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let notes = command
        .get_after_long_help()
        .or(command.get_after_help())
        .map(|text| text.to_string());
    // clap_mangen would print the notes as one filled paragraph under "EXTRA", running the
    // example command lines together; they get a section of their own below.
    let bare = command
        .clone()
        .after_help(Resettable::Reset)
        .after_long_help(Resettable::Reset);
    let man = Man::new(bare).source(source).manual("pgcairn manual");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    let written = man
        .render(&mut page)
        .and_then(|()| match &notes {
            Some(notes) => notes_section(notes).to_writer(&mut page),
            None => Ok(()),
        })
        .and_then(|()| std::fs::write(&path, &page));
    written.map_err(Error::io_at("writing", &path))?;

    let mut pages = vec![path];
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        pages.extend(write_pages(sub, source, dir)?);
    }
    Ok(pages)
}

/// A command's after-help text (examples, then notes) as a man section. Indented lines are
/// examples and keep their line breaks; the rest is prose, filled to the reader's width.
fn notes_section(text: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES AND NOTES"]);
    let mut verbatim = false;
    for line in text.lines() {
        let example = line.starts_with(' ');
        if example != verbatim {
            roff.control(if example { "nf" } else { "fi" }, []);
            verbatim = example;
        }
        if line.trim().is_empty() {
            roff.control("PP", []);
        } else {
            roff.text([roman(line)]);
        }
    }
    if verbatim {
        roff.control("fi", []);
    }
    roff
}
