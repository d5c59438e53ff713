//! `pgcairn verify`: check the repository, print what is damaged and what it affects.

use std::time::Instant;

use clap::Args;

use super::GlobalOptions;
use super::format;
use super::progress::Progress;
use super::restore_test::{self, RestoreTestArgs};
use crate::error::{Error, Result};
use crate::verify::check::{self, VerifyOptions};
use crate::verify::report::{
    Damage, GapWarning, Notice, PointRef, VerifyReport, WindowCut, WindowRef,
};
use crate::verify::subset::DataSubset;

#[derive(Args, Debug, Clone)]
#[command(after_help = after_help())]
pub struct VerifyArgs {
    /// Also download packs and check every byte. Alone: every pack; =PERCENT: that share,
    /// rotating over runs; =n/t: part n of t.
    #[arg(
        long,
        value_name = "SUBSET",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "100%"
    )]
    pub read_data: Option<DataSubset>,

    /// Compare every pack's header with the index (one small ranged read per pack).
    #[arg(long)]
    pub read_headers: bool,

    /// Count WAL gaps that cut a recoverable window as damage (exit 10).
    #[arg(long)]
    pub strict: bool,

    /// One JSON object on stdout (docs/json.md, docs/verify.md describe it).
    #[arg(long)]
    pub json: bool,

    /// Restore SNAPSHOT (default: the newest restorable one) into a temporary directory, start
    /// PostgreSQL on it, check it, stop it and remove the directory.
    #[arg(
        long,
        value_name = "SNAPSHOT|latest",
        num_args = 0..=1,
        default_missing_value = "latest",
        conflicts_with_all = ["read_data", "read_headers", "strict"]
    )]
    pub restore_test: Option<String>,

    #[command(flatten)]
    pub restore_test_options: RestoreTestArgs,
}

const HELP: &str = "\
Examples:
  pgcairn verify                     # nightly: structure, references, WAL continuity
  pgcairn verify --read-data=15%     # weekly: also read 15% of the packs, the next 15% next
                                     # week: every pack within 7 weeks
  pgcairn verify --read-data         # read every byte of the repository
  pgcairn verify --json | jq '.damage[].object'

Without options verify reads every index file, snapshot, tree and chunk list, and lists the
packs (with their sizes) and the WAL catalogue: every snapshot and WAL file must reference only
indexed blobs in packs that are there with the indexed size; every snapshot's own WAL (start to
stop segment) must be in its pg_wal/ or archived; gaps in the archived WAL are reported with
the recoverable windows they end. Pack contents are not read: --read-headers compares each
pack's header with the index (one small read per pack), --read-data downloads packs and
decrypts, decompresses and hashes every blob.

--read-data=PERCENT (15% or 15) reads that share of the packs, starting where the previous
run on this host stopped: ten runs of --read-data=10% read every pack (packs added meanwhile
are read when the rotation reaches them). The position is kept in the local cache directory.
--read-data=n/t reads part n of t, the same part every time.

Each damaged or missing object is named (pack, index file, snapshot, WAL file, blob) with the
snapshots and WAL files it makes unrestorable and the recoverable windows it cuts. Verify runs
safely beside backup, archive-push and prune: objects prune deletes meanwhile are skipped.

Exit codes: 0 no damage (WAL gaps that only cut a point-in-time window are warnings); 10
damage found: a damaged or missing object, or a snapshot that cannot reach consistency (with
--strict, WAL gaps too); 12 storage failed; 130 interrupted. docs/verify.md has the details
and the --json shape.";

fn after_help() -> String {
    format!("{HELP}\n\n{}", restore_test::HELP)
}

pub fn run(global: &GlobalOptions, args: &VerifyArgs) -> Result<()> {
    if let Some(snapshot) = &args.restore_test {
        return restore_test::run(global, snapshot, &args.restore_test_options, args.json);
    }
    let interrupted = super::interrupt::install()?;
    let repo = global.open_repository()?;
    let options = VerifyOptions {
        read_headers: args.read_headers,
        read_data: args.read_data,
        cache_dir: global.cache_dir.as_deref(),
        interrupted: &interrupted,
    };
    let began = Instant::now();
    let mut progress = Progress::new(global.quiet);
    let report = check::verify(repo, &options, &mut |p| {
        progress.update(|| {
            let count = if p.total > 0 {
                format!(" {}/{}", p.done, p.total)
            } else {
                String::new()
            };
            format!(
                "{}{count}, {} read, {}",
                p.phase,
                format::bytes(p.bytes),
                format::rate(p.bytes, began.elapsed())
            )
        })
    });
    progress.finish();
    let report = report?;
    if args.json {
        let text = serde_json::to_string(&report)
            .map_err(|e| Error::internal(format!("verify report as JSON: {e}")))?;
        println!("{text}");
    } else if !global.quiet || !report.passed(args.strict) {
        print!("{}", text_report(&report));
    }
    outcome(&report, args.strict)
}

/// Exit code 10 when verify found damage (or, with `strict`, WAL gaps).
fn outcome(report: &VerifyReport, strict: bool) -> Result<()> {
    if report.passed(strict) {
        return Ok(());
    }
    let mut found = Vec::new();
    if !report.damage.is_empty() {
        found.push(format!(
            "{} damaged or missing objects",
            report.damage.len()
        ));
    }
    if strict && !report.warnings.is_empty() {
        found.push(format!(
            "{} that cut recoverable windows (--strict)",
            count(report.warnings.len(), "WAL gap")
        ));
    }
    Err(Error::integrity(format!(
        "verify found {}",
        found.join(" and ")
    )))
}

/// The report for people: damage with its impact, warnings, information, then one line of
/// totals.
pub fn text_report(report: &VerifyReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    if !report.damage.is_empty() {
        line(format!(
            "DAMAGE ({}):",
            count(report.damage.len(), "object")
        ));
        for damage in &report.damage {
            damage_lines(damage, &mut line);
        }
    }
    if !report.warnings.is_empty() {
        line(format!(
            "WARNINGS ({} that cut recoverable windows):",
            count(report.warnings.len(), "WAL gap")
        ));
        for warning in &report.warnings {
            line(format!("  {}", gap_text(warning)));
        }
    }
    notice_lines(&report.info, &mut line);
    if let Some(read) = &report.read_data {
        let next = read
            .next
            .as_ref()
            .map(|n| format!("; the next run starts at {n}"))
            .unwrap_or_default();
        line(format!(
            "read data ({}, {:.1}% of pack ids from {}): {}, {}, {}{next}",
            read.subset,
            read.share * 100.0,
            read.from,
            count(read.packs_read.len(), "pack"),
            format::bytes(read.bytes_read),
            count(read.wal_entries_read, "WAL catalogue entry"),
        ));
    }
    let c = &report.checked;
    let headers = if c.pack_headers > 0 {
        format!(" ({} headers compared)", c.pack_headers)
    } else {
        String::new()
    };
    let verdict = match report.damage.len() {
        0 => "no damage".to_string(),
        n => count(n, "damaged or missing object"),
    };
    line(format!(
        "verified {}, {}, {} of {}{headers}, {}, {}; read {} in {}: {verdict}",
        count(c.snapshots, "snapshot"),
        count(c.index_files, "index file"),
        count(c.packs, "pack"),
        format::bytes(c.pack_bytes),
        count(c.blobs_referenced as usize, "referenced blob"),
        count(c.wal_files, "WAL file"),
        format::bytes(c.bytes_read),
        format::duration(std::time::Duration::from_secs_f64(report.seconds)),
    ));
    out
}

fn damage_lines(damage: &Damage, line: &mut impl FnMut(String)) {
    let problem = serde_json::to_value(damage.problem)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    line(format!("  {}: {problem}", damage.object));
    for detail in &damage.details {
        line(format!("    {detail}"));
    }
    if damage.blobs_affected > 0 {
        line(format!(
            "    makes {} unreadable",
            count(damage.blobs_affected as usize, "referenced blob")
        ));
    }
    let impact = &damage.affects;
    for s in &impact.snapshots {
        let cluster = match (&s.system_identifier, s.timeline) {
            (Some(sysid), Some(tli)) => format!(", cluster {sysid}, timeline {tli}"),
            _ => String::new(),
        };
        line(format!(
            "    affects snapshot {} ({} UTC, {}{cluster})",
            &s.id[..8],
            s.time,
            s.hostname
        ));
    }
    if !impact.wal_files.is_empty() {
        let names: Vec<&str> = impact.wal_files.iter().map(|f| f.name.as_str()).collect();
        line(format!(
            "    affects {} of cluster {}: {}",
            count(names.len(), "archived WAL file"),
            impact.wal_files[0].system_identifier,
            names.join(", ")
        ));
    }
    for cut in &impact.windows_cut {
        line(format!("    {}", cut_text(cut)));
    }
    if impact.is_empty() && damage.blobs_affected == 0 {
        line("    affects no snapshot or WAL file".to_string());
    }
}

fn notice_lines(info: &[Notice], line: &mut impl FnMut(String)) {
    let unindexed: Vec<String> = info
        .iter()
        .filter_map(|n| match n {
            Notice::UnindexedPack { id, size } => {
                Some(format!("{} ({})", &id[..8], format::bytes(*size)))
            }
            _ => None,
        })
        .collect();
    if !unindexed.is_empty() {
        line(format!(
            "info: {} no index file lists and nothing references (left by interrupted \
             writers, or being written now; prune removes them): {}",
            count(unindexed.len(), "pack"),
            unindexed.join(", ")
        ));
    }
    for notice in info {
        match notice {
            Notice::UnindexedPack { .. } => {}
            Notice::NotAnObject { name } => {
                line(format!("info: {name} is not a pgcairn object (ignored)"))
            }
            Notice::Vanished { object } => line(format!(
                "info: {object} was deleted while verify ran (by prune): skipped"
            )),
            Notice::SnapshotGone { id } => line(format!(
                "info: snapshot {id}, there when verify last ran on this host, is gone \
                 (forgotten by prune, or deleted)"
            )),
        }
    }
}

/// `1 object`, `3 objects`, `2 entries`.
fn count(n: usize, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("1 {what}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {what}s"),
    }
}

fn point_text(p: &PointRef) -> String {
    let approx = if p.time_approximate { "~" } else { "" };
    format!("{} at {approx}{} UTC", p.lsn, p.time)
}

fn window_text(w: &WindowRef) -> String {
    format!(
        "{} .. {} (from snapshot {})",
        point_text(&w.earliest),
        point_text(&w.latest),
        &w.snapshot[..8]
    )
}

fn gap_text(w: &GapWarning) -> String {
    let resumes = match &w.resumes {
        Some(p) => format!("the next window starts at {}", point_text(p)),
        None => "no later snapshot starts another window".to_string(),
    };
    let gap = if w.gap.segments == 1 {
        format!("WAL segment {} is", w.gap.first_missing)
    } else {
        format!(
            "WAL {} .. {} ({} segments) are",
            w.gap.first_missing, w.gap.last_missing, w.gap.segments
        )
    };
    format!(
        "cluster {}, timeline {}: {gap} not archived: recovery from snapshot {} cannot go \
         past {}; {resumes}",
        w.system_identifier,
        w.timeline,
        &w.window.snapshot[..8],
        point_text(&w.window.latest),
    )
}

fn cut_text(cut: &WindowCut) -> String {
    let after = if cut.after.is_empty() {
        "nothing of it remains".to_string()
    } else {
        let parts: Vec<String> = cut.after.iter().map(window_text).collect();
        format!("what remains: {}", parts.join("; "))
    };
    format!(
        "cuts the recoverable window {} on timeline {} of cluster {}: {after}",
        window_text(&cut.before),
        cut.timeline,
        cut.system_identifier
    )
}
