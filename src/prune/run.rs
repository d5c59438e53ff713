//! One prune, start to end, in the order format-spec §13 proves safe: forget snapshots and
//! expire WAL (the user's decisions), then walk what is left, then collect packs.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use super::gc::{self, GcOptions, GcOutcome, GcPlan};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::repo::IndexedRepository;
use crate::repo::cluster::{ClusterSelector, SystemId};
use crate::repo::id::SnapshotId;
use crate::repo::layout;
use crate::repo::lock::{LockKind, Locked};
use crate::repo::reach::Reach;
use crate::repo::snapshot::Snapshot;
use crate::repo::walcat::WalEntry;

/// Which snapshots to keep and why: one verdict per snapshot, in the order given.
pub type Decide<'a> = dyn Fn(&[(SnapshotId, Snapshot)]) -> Result<Vec<Verdict>> + Sync + 'a;

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub keep: bool,
    /// Why it is kept (empty when forgotten).
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub gc: GcOptions,
    /// Keep continuous WAL back to this instant, ns since the Unix epoch (`--keep-wal-within`;
    /// see [`super::wal`]); `None`: from the oldest kept snapshot.
    pub wal_cutoff_ns: Option<i64>,
    /// `--cluster`: only the snapshots of the clusters it names are judged and only their WAL
    /// expired; other clusters are kept whole. None: every cluster.
    pub cluster: Option<ClusterSelector>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotVerdict {
    #[serde(serialize_with = "crate::repo::id::serialize_hex")]
    pub id: SnapshotId,
    /// When the backup started: `YYYY-MM-DD HH:MM:SS` UTC, and ns since the Unix epoch.
    pub time: String,
    pub started_ns: i64,
    pub system_identifier: Option<SystemId>,
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExpiredWal {
    pub system_identifier: SystemId,
    pub name: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: Vec<SnapshotVerdict>,
    pub wal_expired: Vec<ExpiredWal>,
    /// Clusters whose WAL was left alone because no snapshot of theirs is kept.
    pub wal_untouched_clusters: Vec<SystemId>,
    /// Distinct blobs that kept snapshots and WAL reference.
    pub reached_blobs: u64,
    pub packs: GcPlan,
    /// What was done (absent on a dry run).
    pub done: Option<GcOutcome>,
    pub stale_locks_removed: usize,
    /// Interrupted uploads (staging objects older than the grace period) deleted.
    pub staging_removed: usize,
}

/// What a running prune is doing, for a progress display.
pub type OnPhase<'a> = dyn Fn(&str) + Sync + 'a;

/// Prunes `repo`. Takes the prune lock unless this is a dry run (which changes nothing, not
/// even a lock object).
pub fn prune(
    repo: &IndexedRepository,
    options: &PruneOptions,
    decide: &Decide<'_>,
    on_phase: &OnPhase<'_>,
) -> Result<PruneReport> {
    if options.dry_run {
        return prune_locked(repo, options, decide, on_phase, None);
    }
    repo.with_lock(LockKind::Prune, |locked| {
        refuse_concurrent_prune(repo, locked)?;
        prune_locked(repo, options, decide, on_phase, Some(locked))
    })
}

/// The verdicts on `snapshots`: `decide`'s for those of the clusters in `scope` (all without
/// one); the others are kept, for `selector`.
fn judge(
    snapshots: &[(SnapshotId, Snapshot)],
    scope: Option<(&ClusterSelector, &BTreeSet<u64>)>,
    decide: &Decide<'_>,
) -> Result<Vec<Verdict>> {
    let Some((selector, scope)) = scope else {
        return decide(snapshots);
    };
    let in_scope = |s: &Snapshot| {
        s.postgres
            .as_ref()
            .is_some_and(|pg| scope.contains(&pg.system_identifier))
    };
    let judged: Vec<(SnapshotId, Snapshot)> = snapshots
        .iter()
        .filter(|(_, s)| in_scope(s))
        .cloned()
        .collect();
    let mut verdicts = decide(&judged)?.into_iter();
    snapshots
        .iter()
        .map(|(_, s)| match in_scope(s) {
            true => verdicts.next().ok_or_else(|| {
                Error::internal("the policy judged fewer snapshots than it was given")
            }),
            false => Ok(Verdict {
                keep: true,
                reasons: vec![format!("another cluster than --cluster {selector}")],
            }),
        })
        .collect()
}

/// Two prunes that start together both see each other's lock once their own is written; the
/// one that started later (ties: the larger token) backs off.
fn refuse_concurrent_prune(repo: &IndexedRepository, ours: &Locked) -> Result<()> {
    let ours = ours.lock();
    let now = crate::clock::now_ns();
    let older = repo.list_locks()?.into_iter().find(|other| {
        other.lock.kind == LockKind::Prune
            && other.lock.token != ours.token
            && other.lock.is_held(now)
            && (other.lock.started_ns, other.lock.token) < (ours.started_ns, ours.token)
    });
    match older {
        Some(other) => Err(Error::new(
            ErrorKind::Refused,
            format!(
                "another prune is running ({}); one at a time. If that process is gone, its \
                 lock {} goes stale {} minutes after its last refresh",
                other.lock.describe(),
                other.path,
                crate::repo::lock::STALE_AFTER.as_secs() / 60
            ),
        )),
        None => Ok(()),
    }
}

fn prune_locked(
    repo: &IndexedRepository,
    options: &PruneOptions,
    decide: &Decide<'_>,
    on_phase: &OnPhase<'_>,
    locked: Option<&Locked>,
) -> Result<PruneReport> {
    let check = || locked.map_or(Ok(()), Locked::check_current);
    on_phase("listing packs");
    // Before the index is learned: a pack written after this listing is not considered.
    let on_storage: HashSet<_> = repo
        .storage()
        .list(layout::DATA)?
        .iter()
        .filter_map(|name| layout::pack_from_listing(name))
        .collect();
    on_phase("reading the index");
    repo.sync_cache()?;
    on_phase("reading snapshots and the WAL catalogue");
    let snapshots = repo.load_snapshots()?;
    let catalogue = repo.wal_catalogue()?;

    // `--cluster`: the system identifiers it names, judged and expired alone.
    let scope = match &options.cluster {
        Some(selector) => Some((
            selector,
            selector.system_ids(snapshots.iter().filter_map(|(_, s)| s.postgres.as_ref()))?,
        )),
        None => None,
    };
    let scope = scope.as_ref().map(|(selector, ids)| (*selector, ids));
    let verdicts = judge(&snapshots, scope, decide)?;
    let kept: Vec<&Snapshot> = snapshots
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.keep)
        .map(|((_, s), _)| s)
        .collect();
    let histories = crate::archive::read_histories(repo, &catalogue)?;
    let mut expired = super::wal::expire(&kept, &catalogue, &histories, options.wal_cutoff_ns);
    if let Some((_, ids)) = scope {
        expired.retain(|e| ids.contains(&e.system_identifier));
    }
    let mut report = PruneReport {
        dry_run: options.dry_run,
        snapshots: snapshots
            .iter()
            .zip(&verdicts)
            .map(|((id, s), v)| SnapshotVerdict {
                id: *id,
                time: crate::clock::format_utc(s.started_ns.div_euclid(1_000_000_000)),
                started_ns: s.started_ns,
                system_identifier: s.postgres.as_ref().map(|pg| SystemId(pg.system_identifier)),
                keep: v.keep,
                reasons: v.reasons.clone(),
            })
            .collect(),
        wal_expired: expired
            .iter()
            .map(|e| ExpiredWal {
                system_identifier: SystemId(e.system_identifier),
                name: e.name.clone(),
                size: e.size,
            })
            .collect(),
        wal_untouched_clusters: super::wal::clusters_without_snapshots(&kept, &catalogue)
            .into_iter()
            .map(SystemId)
            .collect(),
        reached_blobs: 0,
        packs: GcPlan::default(),
        done: None,
        stale_locks_removed: 0,
        staging_removed: 0,
    };

    if !options.dry_run {
        check()?;
        on_phase("forgetting snapshots");
        for verdict in report.snapshots.iter().filter(|v| !v.keep) {
            repo.storage()
                .delete(&layout::snapshot(&verdict.id))
                .with_context(|| format!("forgetting snapshot {}", verdict.id))?;
        }
        on_phase("expiring WAL");
        for entry in &expired {
            repo.storage()
                .delete(&repo.wal_entry_path(entry.system_identifier, &entry.name))
                .with_context(|| format!("expiring WAL file {}", entry.name))?;
        }
    }

    // Everything committed before this instant is in the listings below: the walk's view.
    let listed_ns = crate::clock::now_ns();
    let (roots, entries) = if options.dry_run {
        let forgotten: HashSet<SnapshotId> = report
            .snapshots
            .iter()
            .filter(|v| !v.keep)
            .map(|v| v.id)
            .collect();
        let expired: HashSet<(u64, &str)> = expired
            .iter()
            .map(|e| (e.system_identifier, e.name.as_str()))
            .collect();
        let roots: Vec<(SnapshotId, Snapshot)> = snapshots
            .into_iter()
            .filter(|(id, _)| !forgotten.contains(id))
            .collect();
        let entries: Vec<WalEntry> = catalogue
            .iter()
            .filter(|e| !expired.contains(&(e.system_identifier, e.name.as_str())))
            .cloned()
            .collect();
        (roots, entries)
    } else {
        (repo.load_snapshots()?, repo.wal_catalogue()?)
    };

    // A writer may have written its index file after the sync above and committed before
    // the listing: learn those files, so its references are not taken for broken ones.
    repo.sync_cache()?;
    on_phase("finding what snapshots and WAL reference");
    let mut reach = Reach::begin(repo)?;
    let mut stop = |u: crate::repo::reach::Unreadable| -> Result<()> {
        Err(u.error.with_context(format!(
            "{:?} blob {} is referenced but cannot be read; prune deletes nothing while it \
             cannot see everything that is referenced (run `pgcairn verify`)",
            u.blob_type, u.id
        )))
    };
    for (_, snapshot) in &roots {
        reach.snapshot(snapshot, &mut stop)?;
    }
    for entry in &entries {
        reach.wal_entry(entry, &mut stop)?;
    }
    let unindexed = repo.with_cache(|c| c.reached_unindexed())?;
    if let Some((blob_type, id)) = unindexed.first() {
        return Err(Error::integrity(format!(
            "{} referenced blobs are in no index file (first: {blob_type:?} {id}); prune deletes \
             nothing while references are broken (run `pgcairn verify`, then `pgcairn repair \
             index`)",
            unindexed.len()
        )));
    }
    report.reached_blobs = repo.with_cache(|c| c.reached_count())?;

    on_phase("deciding what to reclaim");
    let use_ = repo.with_cache(|c| c.pack_use())?;
    let locks = repo.list_locks()?;
    let lock_values: Vec<_> = locks.iter().map(|l| l.lock.clone()).collect();
    report.packs = gc::plan(
        repo,
        &options.gc,
        &on_storage,
        &use_,
        &lock_values,
        listed_ns,
    )?;
    if options.dry_run {
        return Ok(report);
    }
    on_phase("reclaiming space");
    report.done = Some(gc::execute(repo, &report.packs, &check)?);
    let now_ns = crate::clock::now_ns();
    report.stale_locks_removed = repo.remove_stale_locks(&locks, now_ns)?;
    let grace = options.gc.grace.as_nanos() as i64;
    report.staging_removed = repo
        .storage()
        .remove_staging_older_than(now_ns.saturating_sub(grace))?;
    Ok(report)
}
