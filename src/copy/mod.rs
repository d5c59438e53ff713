//! Copying snapshots and the WAL they need from one repository into another (an offsite
//! copy), re-encrypted for the target, sending only the chunks the target lacks.
//!
//! The target is written as a backup writes it (format-spec §12, §13): under a `Writer` lock
//! taken before its index is learned, packs first, then index files, then WAL catalogue entries
//! and snapshots, each commit made only while the lock is current. A copy stopped at any point
//! leaves whole entries and snapshots, and at worst packs nothing references (which prune
//! collects). The source is only read, without a lock, like `verify`.

pub mod select;
pub mod translate;
pub mod wal;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::archive::window::WalIndex;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::repo::IndexedRepository;
use crate::repo::cache::{self, translations};
use crate::repo::id::SnapshotId;
use crate::repo::layout;
use crate::repo::lock::Locked;
use crate::repo::packer::{Packer, PackerStats};
use crate::repo::snapshot::Snapshot;
use crate::repo::walcat::WalEntry;

use translate::{Counters, Translator};

/// A copy writes an index file after every this many packs (32 MiB with the default pack
/// size), not 64 as a backup does: its packs usually cross a slower link, and an interrupted
/// copy sends again only what no index file lists.
const PACKS_PER_INDEX_FILE: usize = 4;
/// How often a running copy reports progress.
const PROGRESS_PERIOD: Duration = Duration::from_millis(250);

/// Which snapshots to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    /// Ids, unique id prefixes, or `latest` (the newest snapshot).
    Named(Vec<String>),
}

/// A selected snapshot, and its id in the target if the target has it already.
#[derive(Clone, Debug)]
pub struct PlannedSnapshot {
    pub source_id: SnapshotId,
    pub snapshot: Snapshot,
    pub present_as: Option<SnapshotId>,
}

/// What a copy will do.
#[derive(Clone, Debug)]
pub struct CopyPlan {
    /// The selected snapshots, oldest first.
    pub snapshots: Vec<PlannedSnapshot>,
    /// The source's catalogue entries to copy, oldest name first.
    pub wal: Vec<WalEntry>,
    /// WAL files the snapshots need that the target holds already.
    pub wal_present: u64,
    /// The repositories share the chunk-id key: chunk ids need no translation.
    pub shared_ids: bool,
}

impl CopyPlan {
    pub fn to_copy(&self) -> impl Iterator<Item = &PlannedSnapshot> {
        self.snapshots.iter().filter(|s| s.present_as.is_none())
    }
}

/// The snapshots `selection` names, oldest first.
fn selected(
    source: &IndexedRepository,
    selection: &Selection,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let all = source.load_snapshots()?;
    let Selection::Named(names) = selection else {
        return Ok(all);
    };
    let mut wanted = std::collections::HashSet::new();
    for name in names {
        let id = if name == "latest" {
            all.last()
                .map(|(id, _)| *id)
                .ok_or_else(|| Error::usage("`latest`: the source repository has no snapshot"))?
        } else {
            source.find_snapshot(name)?
        };
        wanted.insert(id);
    }
    Ok(all
        .into_iter()
        .filter(|(id, _)| wanted.contains(id))
        .collect())
}

/// Works out what to copy: the selected snapshots, which of them the target has, and the WAL
/// they need that it lacks. Refuses a WAL file the target holds with other content.
pub fn plan(
    source: &IndexedRepository,
    target: &IndexedRepository,
    selection: &Selection,
) -> Result<CopyPlan> {
    if source.config().id == target.config().id {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} and {} are the same repository (id {}); copy into another one",
                source.storage().location(),
                target.storage().location(),
                source.config().id.short()
            ),
        ));
    }
    let snapshots = selected(source, selection).context("source repository")?;
    let present = select::already_present(&snapshots, &target.load_snapshots()?);
    let catalogue = source.wal_catalogue().context("source repository")?;
    let histories =
        crate::archive::read_histories(source, &catalogue).context("source repository")?;
    let refs: Vec<&Snapshot> = snapshots.iter().map(|(_, s)| s).collect();
    let needed = select::wal_needed(&refs, &catalogue, &histories);
    let in_target = target.wal_catalogue().context("target repository")?;
    let in_target = WalIndex::new(&in_target);
    let mut wal = Vec::new();
    let mut wal_present = 0;
    for entry in needed {
        match in_target.get(entry.system_identifier, &entry.name) {
            Some(existing) if select::same_file(existing, entry) => wal_present += 1,
            Some(existing) => return Err(wal::conflict(existing, entry)),
            None => wal.push(entry.clone()),
        }
    }
    Ok(CopyPlan {
        snapshots: snapshots
            .into_iter()
            .zip(present)
            .map(|((source_id, snapshot), present_as)| PlannedSnapshot {
                source_id,
                snapshot,
                present_as,
            })
            .collect(),
        wal,
        wal_present,
        shared_ids: target.shares_chunk_ids_with(source),
    })
}

/// Opens the id translations from `source` to `target` in the local cache directory, unless
/// the repositories share the chunk-id key (ids are then the same).
pub fn open_translations(
    source: &IndexedRepository,
    target: &IndexedRepository,
    cache_dir: Option<&Path>,
) -> Result<Option<translations::Translations>> {
    if target.shares_chunk_ids_with(source) {
        return Ok(None);
    }
    let path = translations::path(
        &cache::base_dir(cache_dir)?,
        &source.config().id,
        &target.config().id,
    );
    translations::Translations::open(&path, source.translation_key(target)).map(Some)
}

pub struct CopyRequest<'a> {
    pub translations: Option<translations::Translations>,
    pub interrupted: &'a AtomicBool,
    /// The target's writer lock, taken before its index was learned; checked before every
    /// commit.
    pub lock: &'a Locked,
}

/// What a running copy shows.
pub struct Progress<'a> {
    pub phase: &'a str,
    pub counters: &'a Counters,
}

/// One selected snapshot after the copy.
#[derive(Clone, Debug)]
pub struct CopiedSnapshot {
    pub source_id: SnapshotId,
    pub target_id: SnapshotId,
    pub snapshot: Snapshot,
    /// False: the target had it already.
    pub copied: bool,
}

#[derive(Clone, Debug)]
pub struct CopyReport {
    pub snapshots: Vec<CopiedSnapshot>,
    pub wal: wal::WalCopied,
    pub wal_present: u64,
    pub shared_ids: bool,
    pub packer: PackerStats,
    pub chunks: u64,
    pub chunks_known: u64,
    pub chunks_read: u64,
    pub bytes_read: u64,
}

/// Carries out `plan`: the WAL first, then each snapshot, oldest first.
pub fn execute(
    source: &IndexedRepository,
    target: &IndexedRepository,
    plan: &CopyPlan,
    request: CopyRequest,
    on_progress: &(dyn Fn(&Progress) + Sync),
) -> Result<CopyReport> {
    let translator = Translator::new(source, target, request.translations, request.interrupted)?;
    let phase = Mutex::new(String::from("starting"));
    let set_phase = |p: String| *phase.lock().unwrap_or_else(|e| e.into_inner()) = p;
    let tick = || {
        let phase = phase.lock().unwrap_or_else(|e| e.into_inner());
        on_progress(&Progress {
            phase: &phase,
            counters: &translator.counters,
        })
    };
    let mut stats = PackerStats::default();
    let outcome = crate::clock::while_ticking(PROGRESS_PERIOD, tick, || {
        let total = plan.wal.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let wal = wal::copy_entries(
            &translator,
            target,
            &plan.wal,
            request.lock,
            &mut stats,
            &|entry| {
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                set_phase(format!("WAL {n}/{total} ({})", entry.name));
            },
        )?;
        let snapshots =
            copy_snapshots(&translator, target, plan, request.lock, &mut stats, &|p| {
                set_phase(p)
            })?;
        Ok::<_, Error>((wal, snapshots))
    });
    let (wal, snapshots) = outcome?;
    let counters = &translator.counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    Ok(CopyReport {
        snapshots,
        wal,
        wal_present: plan.wal_present,
        shared_ids: translator.shared_ids(),
        packer: stats,
        chunks: load(&counters.chunks),
        chunks_known: load(&counters.chunks_known),
        chunks_read: load(&counters.chunks_read),
        bytes_read: load(&counters.bytes_read),
    })
}

fn copy_snapshots(
    translator: &Translator,
    target: &IndexedRepository,
    plan: &CopyPlan,
    lock: &Locked,
    stats: &mut PackerStats,
    set_phase: &dyn Fn(String),
) -> Result<Vec<CopiedSnapshot>> {
    // Source ids to target ids, so a copied snapshot's parent is its parent's copy.
    let mut ids: HashMap<SnapshotId, SnapshotId> = plan
        .snapshots
        .iter()
        .filter_map(|s| s.present_as.map(|t| (s.source_id, t)))
        .collect();
    let total = plan.to_copy().count();
    let mut in_target = TargetSnapshots::default();
    let mut out = Vec::new();
    let mut n = 0;
    for planned in &plan.snapshots {
        let (target_id, snapshot, copied) = match planned.present_as {
            Some(target_id) => (target_id, planned.snapshot.clone(), false),
            None => {
                n += 1;
                set_phase(format!(
                    "snapshot {} ({n}/{total})",
                    planned.source_id.short()
                ));
                copy_snapshot(
                    translator,
                    target,
                    planned,
                    &ids,
                    &mut in_target,
                    lock,
                    stats,
                )
                .with_context(|| format!("copying snapshot {}", planned.source_id.short()))?
            }
        };
        ids.insert(planned.source_id, target_id);
        out.push(CopiedSnapshot {
            source_id: planned.source_id,
            target_id,
            snapshot,
            copied,
        });
    }
    Ok(out)
}

/// Copies one snapshot: its blobs, then (unless the target got it meanwhile) the snapshot.
/// Returns its id in the target, the snapshot as there, and whether this copy wrote it.
fn copy_snapshot(
    translator: &Translator,
    target: &IndexedRepository,
    planned: &PlannedSnapshot,
    ids: &HashMap<SnapshotId, SnapshotId>,
    in_target: &mut TargetSnapshots,
    lock: &Locked,
    stats: &mut PackerStats,
) -> Result<(SnapshotId, Snapshot, bool)> {
    let snapshot = with_packer(target, stats, |packer| {
        translate_snapshot(translator, packer, &planned.snapshot, ids)
    })?;
    translator.record()?;
    // Another copy into the target may have committed it meanwhile.
    if let Some(target_id) = in_target.find(target, &planned.snapshot)? {
        return Ok((target_id, planned.snapshot.clone(), false));
    }
    lock.check_current()?;
    Ok((target.save_snapshot(&snapshot)?, snapshot, true))
}

/// Runs `work` with a new packer into the target, then flushes it, even when `work` failed
/// (what was stored is indexed, and the next copy finds it), adding what it wrote to `stats`.
/// When this returns `Ok`, everything `work` stored is durable and indexed.
pub(crate) fn with_packer<T>(
    target: &IndexedRepository,
    stats: &mut PackerStats,
    work: impl FnOnce(&Packer) -> Result<T>,
) -> Result<T> {
    let packer = target.packer().index_every(PACKS_PER_INDEX_FILE);
    let result = work(&packer);
    let flushed = packer.flush();
    if let Ok(s) = &flushed {
        *stats += *s;
    }
    let value = result?;
    flushed?;
    Ok(value)
}

/// The target's snapshots by what identifies their backups, learned incrementally: each look
/// lists the snapshots and reads only those not seen before.
#[derive(Default)]
struct TargetSnapshots {
    seen: std::collections::HashSet<SnapshotId>,
    by_key: HashMap<select::BackupKey, SnapshotId>,
}

impl TargetSnapshots {
    /// The id of `snapshot`'s backup in the target, if it is there now.
    fn find(
        &mut self,
        target: &IndexedRepository,
        snapshot: &Snapshot,
    ) -> Result<Option<SnapshotId>> {
        for id in target.list_snapshots()? {
            if self.seen.insert(id) {
                match target.load_snapshot(&id) {
                    Ok(found) => {
                        self.by_key.insert(select::BackupKey::of(&found), id);
                    }
                    // Forgotten by a prune of the target since the listing.
                    Err(_) if !target.storage().exists(&layout::snapshot(&id))? => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(self.by_key.get(&select::BackupKey::of(snapshot)).copied())
    }
}

/// The snapshot with its trees translated and its parent named by its id in the target (none
/// when the target lacks the parent); everything else is kept as the backup wrote it.
fn translate_snapshot(
    translator: &Translator,
    packer: &Packer,
    snapshot: &Snapshot,
    ids: &HashMap<SnapshotId, SnapshotId>,
) -> Result<Snapshot> {
    let mut out = snapshot.clone();
    out.root = translator.dir(packer, &snapshot.root)?;
    if let Some(pg) = &mut out.postgres {
        for tablespace in &mut pg.tablespaces {
            tablespace.root = translator
                .dir(packer, &tablespace.root)
                .with_context(|| format!("tablespace {}", tablespace.oid))?;
        }
    }
    out.parent = snapshot.parent.and_then(|p| ids.get(&p).copied());
    Ok(out)
}
