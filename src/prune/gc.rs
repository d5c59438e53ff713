//! Garbage collection of packs, by the two-phase protocol of format-spec §13: a pack nothing
//! reaches is first *condemned* in an index file; a later prune deletes it once the grace
//! period has passed and no writer that could still reference it holds a lock, or takes it
//! back into use if a reference to it was committed meanwhile.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Context, Error, Result};
use crate::repo::IndexedRepository;
use crate::repo::cache::PackUse;
use crate::repo::id::{IndexId, PackId};
use crate::repo::index_file::{CondemnedPack, IndexFile, IndexedPack};
use crate::repo::layout;
use crate::repo::lock::{Lock, LockKind};
use crate::repo::pack;

/// Index files prune writes hold at most this many blobs (a few MiB each), so writing the
/// index of a repository of any size needs memory for one file only.
const BLOBS_PER_INDEX_FILE: usize = 50_000;

#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// How long a pack stays condemned before it may be deleted.
    pub grace: Duration,
    /// A pack whose unused share of bytes exceeds this fraction is repacked.
    pub max_unused: f64,
}

/// A pack and its size.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PackSize {
    #[serde(serialize_with = "crate::repo::id::serialize_hex")]
    pub pack: PackId,
    pub size: u64,
}

/// What prune does with packs, decided before anything changes (what `--dry-run` shows).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcPlan {
    /// Indexed packs nothing reaches: condemned now.
    pub condemn: Vec<PackSize>,
    /// Packs on storage that no index file lists, older than the grace period (a crashed
    /// writer's leftovers): condemned now.
    pub condemn_unindexed: Vec<PackSize>,
    /// Packs whose live blobs are copied into new packs; condemned once the copies are durable.
    pub repack: Vec<PackSize>,
    /// Bytes of live blobs the repacking copies.
    pub repack_live_bytes: u64,
    /// Condemned packs a committed snapshot or WAL entry reaches again: back in use.
    pub recover: Vec<PackSize>,
    /// Condemned packs past their grace period, deleted now.
    pub delete: Vec<PackSize>,
    /// Condemned packs still in their grace period or held by a writer's lock.
    pub waiting: Vec<PackSize>,
    /// When the first waiting pack may go, ns since the Unix epoch (if no lock holds it).
    pub next_deletion_ns: Option<i64>,
    /// The same, as `YYYY-MM-DD HH:MM:SS` UTC.
    pub next_deletion: Option<String>,
    /// Writers whose locks defer deletions.
    pub deferred_by: Vec<String>,
    /// Packs kept as they are.
    pub kept: u64,
    pub kept_bytes: u64,
    /// Condemnations carried into the new index (earliest time per pack).
    #[serde(skip)]
    condemned: Vec<CondemnedPack>,
}

impl GcPlan {
    pub fn deleted_bytes(&self) -> u64 {
        self.delete.iter().map(|p| p.size).sum()
    }

    /// Whether the index needs rewriting for this plan's sake.
    fn changes_index(&self) -> bool {
        !(self.condemn.is_empty()
            && self.condemn_unindexed.is_empty()
            && self.repack.is_empty()
            && self.recover.is_empty()
            && self.delete.is_empty())
    }
}

/// Decides every pack's fate. `on_storage` is a listing of data/ taken before the index cache
/// was synced; `use_` comes from [`crate::repo::cache::IndexCache::pack_use`] after the walk;
/// `locks` are the locks on storage; `listed_ns` is when the walk's listing of snapshots and
/// WAL entries began.
pub fn plan(
    repo: &IndexedRepository,
    options: &GcOptions,
    on_storage: &HashSet<PackId>,
    use_: &[PackUse],
    locks: &[Lock],
    listed_ns: i64,
) -> Result<GcPlan> {
    let condemned = repo.with_cache(|c| c.condemned_packs())?;
    let grace = options.grace.as_nanos() as i64;
    let fresh_writers: Vec<&Lock> = locks
        .iter()
        .filter(|l| l.kind == LockKind::Writer && l.is_held(listed_ns))
        .collect();
    let mut plan = GcPlan::default();
    let mut deferred_by = HashSet::new();
    let mut decide_condemned = |plan: &mut GcPlan, pack: PackSize, since: i64| {
        // A writer that started before the condemnation could be visible everywhere may
        // hold references it learned before it; it commits them before its lock goes stale.
        let holders: Vec<&&Lock> = fresh_writers
            .iter()
            .filter(|l| l.started_ns < since.saturating_add(grace))
            .collect();
        if listed_ns >= since.saturating_add(grace) && holders.is_empty() {
            plan.delete.push(pack);
            return;
        }
        for holder in holders {
            deferred_by.insert(holder.describe());
        }
        let at = since.saturating_add(grace);
        plan.next_deletion_ns = Some(plan.next_deletion_ns.map_or(at, |t: i64| t.min(at)));
        plan.waiting.push(pack);
        plan.condemned.push(CondemnedPack {
            id: pack.pack,
            since_ns: since,
        });
    };
    let mut indexed = HashSet::new();
    for u in use_ {
        indexed.insert(u.pack);
        let pack = PackSize {
            pack: u.pack,
            size: u.size,
        };
        if !on_storage.contains(&u.pack) && repo.storage().exists(&layout::pack(&u.pack))? {
            // Written after the listing of data/ (the index was synced again after it): a
            // running writer's, too new to judge.
            plan.kept += 1;
            plan.kept_bytes += u.size;
            continue;
        }
        if !on_storage.contains(&u.pack) {
            // Listed but gone: deleted by an earlier prune that stopped before rewriting the
            // index, or lost. Readers of a live blob would fail; the walk found none, so the
            // new index simply omits it (verify reports lost packs that something needs).
            if u.live_blobs > 0 {
                return Err(Error::integrity(format!(
                    "pack {} holds {} blobs that snapshots or WAL entries need, but it is not \
                     on storage; prune stops before changing anything (run `pgcairn verify`)",
                    u.pack, u.live_blobs
                )));
            }
            plan.delete.push(PackSize { size: 0, ..pack });
            continue;
        }
        match condemned.get(&u.pack) {
            Some(_) if u.live_blobs > 0 => plan.recover.push(pack),
            Some(&since) => decide_condemned(&mut plan, pack, since),
            None if u.live_blobs == 0 => plan.condemn.push(pack),
            None if unused_share(u) > options.max_unused => {
                plan.repack_live_bytes += u.live_bytes;
                plan.repack.push(pack);
            }
            None => {
                plan.kept += 1;
                plan.kept_bytes += u.size;
            }
        }
    }
    let now = crate::clock::now_ns();
    let mut unindexed: Vec<&PackId> = on_storage.difference(&indexed).collect();
    unindexed.sort();
    for id in unindexed {
        let path = layout::pack(id);
        let (size, modified) = repo
            .storage()
            .size_and_modified(&path)
            .with_context(|| format!("pack {id}, which no index file lists"))?;
        let pack = PackSize { pack: *id, size };
        if let Some(&since) = condemned.get(id) {
            decide_condemned(&mut plan, pack, since);
            continue;
        }
        // A writer uploads packs before the index file that lists them: only packs older
        // than the grace period are leftovers.
        if modified.is_some_and(|m| now.saturating_sub(m) > grace) {
            plan.condemn_unindexed.push(pack);
        }
    }
    plan.deferred_by = deferred_by.into_iter().collect();
    plan.deferred_by.sort();
    plan.next_deletion = plan
        .next_deletion_ns
        .map(|t| crate::clock::format_utc(t.div_euclid(1_000_000_000)));
    for pack in plan
        .condemn
        .iter()
        .chain(&plan.condemn_unindexed)
        .chain(&plan.repack)
    {
        plan.condemned.push(CondemnedPack {
            id: pack.pack,
            since_ns: now,
        });
    }
    Ok(plan)
}

/// The share of a pack's blob bytes that no kept blob uses (its header aside: a small pack
/// is not wasteful for having one).
fn unused_share(u: &PackUse) -> f64 {
    if u.blob_bytes == 0 {
        return 0.0;
    }
    1.0 - u.live_bytes as f64 / u.blob_bytes as f64
}

/// What executing a plan did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcOutcome {
    pub copied_blobs: u64,
    pub new_packs: u64,
    pub index_files_written: u64,
    pub index_files_deleted: u64,
    pub packs_deleted: u64,
}

/// Carries out a plan in the order format-spec §13 proves safe: copies first, then the new
/// index (with the condemnations), then the index files it supersedes, then the packs.
/// `check` runs before each deletion step (the prune lock must still be current).
pub fn execute(
    repo: &IndexedRepository,
    plan: &GcPlan,
    check: &dyn Fn() -> Result<()>,
) -> Result<GcOutcome> {
    let mut outcome = GcOutcome::default();
    if !plan.repack.is_empty() {
        let packer = repo.packer();
        for pack in &plan.repack {
            outcome.copied_blobs += copy_live_blobs(repo, &packer, &pack.pack)?;
        }
        let stats = packer.flush()?;
        outcome.new_packs = stats.packs;
    }
    let superseded: Vec<IndexId> = repo.with_cache(|c| c.index_files())?.into_iter().collect();
    if !plan.changes_index() && superseded.len() <= 1 {
        return Ok(outcome);
    }
    let deleted: HashSet<PackId> = plan.delete.iter().map(|p| p.pack).collect();
    outcome.index_files_written = write_index(repo, &superseded, &deleted, &plan.condemned)?;
    check()?;
    for id in &superseded {
        repo.storage()
            .delete(&layout::index(id))
            .with_context(|| format!("deleting superseded index file {id}"))?;
        outcome.index_files_deleted += 1;
    }
    check()?;
    for pack in &plan.delete {
        repo.storage()
            .delete(&layout::pack(&pack.pack))
            .with_context(|| format!("deleting pack {}", pack.pack))?;
        outcome.packs_deleted += 1;
    }
    repo.sync_cache()?;
    Ok(outcome)
}

/// Reads a pack once and copies its live blobs' envelopes, each checked first (decrypted and
/// re-hashed), into the packer.
fn copy_live_blobs(
    repo: &IndexedRepository,
    packer: &crate::repo::Packer<'_>,
    id: &PackId,
) -> Result<u64> {
    let path = layout::pack(id);
    let bytes = repo
        .storage()
        .read(&path)
        .with_context(|| format!("repacking pack {path}"))?;
    pack::check_whole(id, &bytes).with_context(|| format!("repacking pack {path}"))?;
    let mut copied = 0;
    for entry in repo.with_cache(|c| c.live_blobs_in(id))? {
        let start = entry.offset as usize;
        let envelope = bytes
            .get(start..start + entry.stored_len as usize)
            .ok_or_else(|| {
                Error::integrity(format!(
                    "pack {path}: blob {} lies beyond the end of the pack",
                    entry.id
                ))
            })?;
        let location = crate::repo::cache::BlobLocation { pack: *id, entry };
        repo.open_blob(&location, envelope)?;
        if packer.add_sealed(entry.blob_type, entry.id, envelope.to_vec(), entry.raw_len)? {
            copied += 1;
        }
    }
    Ok(copied)
}

/// Writes the whole index anew, minus `deleted`, in files of bounded size, streaming packs
/// from the cache. Every file supersedes all of `superseded`; the condemnations go in the
/// first. Returns how many files were written.
fn write_index(
    repo: &IndexedRepository,
    superseded: &[IndexId],
    deleted: &HashSet<PackId>,
    condemned: &[CondemnedPack],
) -> Result<u64> {
    let mut written = 0u64;
    let mut file = IndexFile {
        supersedes: superseded.to_vec(),
        packs: Vec::new(),
        condemned: condemned.to_vec(),
    };
    let mut blobs_in_file = 0usize;
    let mut save = |file: &mut IndexFile| -> Result<()> {
        if file.packs.is_empty() && file.condemned.is_empty() {
            return Ok(());
        }
        repo.save_index_file(file)?;
        written += 1;
        file.packs.clear();
        file.condemned.clear();
        Ok(())
    };
    // Only storage is written inside: the cache lock is not taken twice.
    repo.with_cache(|c| {
        c.for_each_pack(&|id| !deleted.contains(id), &mut |id, size, blobs| {
            blobs_in_file += blobs.len();
            file.packs.push(IndexedPack { id, size, blobs });
            if blobs_in_file >= BLOBS_PER_INDEX_FILE {
                blobs_in_file = 0;
                save(&mut file)?;
            }
            Ok(true)
        })
    })?;
    save(&mut file)?;
    Ok(written)
}
