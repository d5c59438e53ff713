//! `pgcairn prune`: forget snapshots outside the retention policy, expire the WAL no kept
//! snapshot needs, reclaim space.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use clap::Args;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::GlobalOptions;
use super::format;
use super::policy_args::{self, PolicyArgs};
use super::progress::Progress;
use crate::error::{Error, Result};
use crate::prune::duration::Duration;
use crate::prune::gc::GcOptions;
use crate::prune::policy::{Candidate, Policy};
use crate::prune::run::{PruneOptions, PruneReport, Verdict, prune};
use crate::repo::cluster::{ClusterSelector, SystemId};
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::Snapshot;

/// Below this, a writer's check and its commit are no longer surely inside the grace period.
const MIN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Args, Debug)]
#[command(after_long_help = long_help())]
pub struct PruneArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Apply the policy to this cluster only (its name or system identifier) and expire only
    /// its WAL; snapshots and WAL of other clusters are kept.
    #[arg(long, value_name = "NAME|SYSTEM_ID")]
    pub cluster: Option<ClusterSelector>,

    /// Keep continuous WAL (point-in-time recovery) only for this long back from now; older
    /// kept snapshots keep just the WAL that makes them consistent. Default: from the oldest
    /// kept snapshot on.
    #[arg(long, value_name = "DURATION")]
    pub keep_wal_within: Option<Duration>,

    /// Repack a pack when more than this percentage of its bytes is unused.
    #[arg(long, value_name = "PERCENT", default_value_t = 25.0)]
    pub max_unused: f64,

    /// How long a pack found unused stays readable before a later prune deletes it: backups
    /// and archive-push that started before it was found unused may still commit references
    /// to it (format-spec §13). At least 1min.
    #[arg(long, value_name = "DURATION", default_value = "30min")]
    pub grace: Duration,

    /// Delete unused packs at once, with no grace period. Safe only when nothing else
    /// (backup, archive-push, another host) writes to the repository meanwhile.
    #[arg(long)]
    pub unsafe_no_grace: bool,

    /// Show what would be forgotten, expired, repacked and deleted; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    /// Print the report as one JSON object on stdout (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

const AFTER_HELP: &str = "\
Examples:
  pgcairn prune --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
  pgcairn prune --keep-within 14d --keep-wal-within 7d

Prune runs while backups and archive-push run, on this host or others; it never makes them
wait. Packs it finds unused are first condemned, and deleted by a later prune once --grace has
passed and no backup that started before holds a lock. So space comes back one prune later:
run it daily. Only one prune runs at a time; a second one exits with code 6.

More in docs/prune.md.";

fn long_help() -> String {
    format!("{}\n\n{AFTER_HELP}", policy_args::HELP)
}

pub fn run(global: &GlobalOptions, args: &PruneArgs) -> Result<()> {
    let policy = args.policy.resolve(&global.config_policy)?;
    let zone = TimeZone::system();
    let now = Timestamp::now();
    let grace = grace(args, &zone, now)?;
    if !(0.0..=100.0).contains(&args.max_unused) {
        return Err(Error::usage(format!(
            "--max-unused {} is not a percentage from 0 to 100",
            args.max_unused
        )));
    }
    let wal_cutoff_ns = args.keep_wal_within.map(|d| {
        d.before(now, &zone)
            .map_or(i64::MIN, |t| t.as_nanosecond() as i64)
    });
    let options = PruneOptions {
        gc: GcOptions {
            grace,
            max_unused: args.max_unused / 100.0,
        },
        wal_cutoff_ns,
        cluster: args.cluster.clone(),
        dry_run: args.dry_run,
    };
    let repo = global.open_unsynced()?;
    let progress = Mutex::new(Progress::new(global.quiet || args.json));
    let decide = |snapshots: &[(SnapshotId, Snapshot)]| decide(&policy, snapshots, &zone, now);
    let report = prune(&repo, &options, &decide, &|phase| {
        let mut progress = progress.lock().unwrap_or_else(|p| p.into_inner());
        progress.update(|| format!("prune: {phase}"));
    });
    progress.lock().unwrap_or_else(|p| p.into_inner()).finish();
    let report = report?;
    if args.json {
        let json = serde_json::to_string(&report)
            .map_err(|e| Error::internal(format!("prune report as JSON: {e}")))?;
        println!("{json}");
    } else if !global.quiet {
        print!("{}", human(&report));
    }
    Ok(())
}

fn grace(args: &PruneArgs, zone: &TimeZone, now: Timestamp) -> Result<std::time::Duration> {
    if args.unsafe_no_grace {
        return Ok(std::time::Duration::ZERO);
    }
    let back = args.grace.before(now, zone).unwrap_or(Timestamp::MIN);
    let grace = std::time::Duration::try_from(now.duration_since(back)).unwrap_or_default();
    if grace < MIN_GRACE {
        return Err(Error::usage(format!(
            "--grace {} is below {}s: a backup or archive-push could commit a reference to a \
             pack after it is deleted. Use --unsafe-no-grace when nothing else writes to the \
             repository",
            args.grace,
            MIN_GRACE.as_secs()
        )));
    }
    Ok(grace)
}

/// Applies the policy to each cluster's snapshots on its own (snapshots of no cluster form
/// one more group).
fn decide(
    policy: &Policy,
    snapshots: &[(SnapshotId, Snapshot)],
    zone: &TimeZone,
    now: Timestamp,
) -> Result<Vec<Verdict>> {
    let mut groups: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
    for (i, (_, s)) in snapshots.iter().enumerate() {
        let cluster = s.postgres.as_ref().map(|pg| pg.system_identifier);
        groups.entry(cluster).or_default().push(i);
    }
    let mut verdicts = vec![
        Verdict {
            keep: true,
            reasons: Vec::new()
        };
        snapshots.len()
    ];
    for members in groups.values() {
        let candidates: Vec<Candidate> = members
            .iter()
            .map(|&i| Candidate {
                time_ns: snapshots[i].1.started_ns,
                tags: snapshots[i].1.tags.clone(),
            })
            .collect();
        let decisions = policy.apply(&candidates, zone, now)?;
        for (&i, decision) in members.iter().zip(decisions) {
            verdicts[i] = Verdict {
                keep: decision.keep,
                reasons: decision.reasons.iter().map(|r| r.to_string()).collect(),
            };
        }
    }
    Ok(verdicts)
}

fn human(report: &PruneReport) -> String {
    let mut out = String::new();
    let verb = |now: &str, then: &str| if report.dry_run { then } else { now }.to_owned();
    let mut clusters: BTreeMap<Option<SystemId>, Vec<&crate::prune::run::SnapshotVerdict>> =
        BTreeMap::new();
    for s in &report.snapshots {
        clusters.entry(s.system_identifier).or_default().push(s);
    }
    for (cluster, snapshots) in &clusters {
        let name = cluster.map_or("no cluster".to_owned(), |c| format!("cluster {c}"));
        let _ = writeln!(out, "{name}:");
        for s in snapshots.iter().rev() {
            let what = if s.keep {
                format!("keep    {}", s.reasons.join(", "))
            } else {
                verb("forgot", "would forget")
            };
            let _ = writeln!(out, "  {}  {} UTC  {what}", s.id.short(), s.time);
        }
    }
    let forgotten = report.snapshots.iter().filter(|s| !s.keep).count();
    let wal_bytes: u64 = report.wal_expired.iter().map(|w| w.size).sum();
    let _ = writeln!(
        out,
        "snapshots: {} kept, {forgotten} {}",
        report.snapshots.len() - forgotten,
        verb("forgotten", "to forget")
    );
    let _ = write!(
        out,
        "WAL: {} files ({}) {}",
        report.wal_expired.len(),
        format::bytes(wal_bytes),
        verb("expired", "to expire")
    );
    if let (Some(first), Some(last)) = (report.wal_expired.first(), report.wal_expired.last()) {
        let _ = write!(out, ", {} … {}", first.name, last.name);
    }
    out.push('\n');
    for cluster in &report.wal_untouched_clusters {
        let _ = writeln!(
            out,
            "WAL of cluster {cluster} left alone: no snapshot of it is kept"
        );
    }
    let p = &report.packs;
    let sum = |v: &[crate::prune::gc::PackSize]| v.iter().map(|p| p.size).sum::<u64>();
    let _ = writeln!(
        out,
        "packs: {} kept ({}); {} {} unused ({}), {} leftovers of crashed writers ({}); {} {} \
         ({} of live data to copy)",
        p.kept,
        format::bytes(p.kept_bytes),
        p.condemn.len(),
        verb("condemned as", "to condemn as"),
        format::bytes(sum(&p.condemn)),
        p.condemn_unindexed.len(),
        format::bytes(sum(&p.condemn_unindexed)),
        p.repack.len(),
        verb("repacked", "to repack"),
        format::bytes(p.repack_live_bytes),
    );
    let _ = writeln!(
        out,
        "space: {} {} ({} packs); {} packs ({}) condemned and waiting{}; {} {}",
        format::bytes(p.deleted_bytes()),
        verb("freed", "to free"),
        p.delete.len(),
        p.waiting.len(),
        format::bytes(sum(&p.waiting)),
        p.next_deletion.as_ref().map_or(String::new(), |t| format!(
            ", deletable from {t} UTC by the next prune"
        )),
        p.recover.len(),
        verb("taken back into use", "to take back into use")
    );
    for holder in &p.deferred_by {
        let _ = writeln!(out, "deletion deferred by a running {holder}");
    }
    if report.dry_run {
        out.push_str("dry run: nothing was changed\n");
    }
    out
}
