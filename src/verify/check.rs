//! `verify`: checks a repository's structure (every object decodes, every indexed pack is on
//! storage with its size, every blob a snapshot or WAL file references is indexed and its pack
//! present, every tree and chunk list reads), its WAL (each snapshot's own WAL present, gaps
//! in the archive and the windows they cut), optionally every pack header against the index
//! and the data itself; then names, for each damaged or missing object, what it affects.
//!
//! The order of reads is what makes verify safe beside writers and prune (see `vanished`):
//! roots first (WAL catalogue, snapshots), then the index, then the pack listing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::archive::window::Histories;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::cache;
use crate::repo::id::{BlobId, IndexId, KeyId, PackId, SnapshotId};
use crate::repo::layout;
use crate::repo::pack::BlobType;
use crate::repo::reach::{Reach, Unreadable};
use crate::repo::snapshot::Snapshot;
use crate::repo::walcat::WalEntry;
use crate::repo::{IndexedRepository, Repository};

use super::parallel;
use super::report::{Damage, Notice, Object, Problem, VerifyReport};
use super::scratch::Scratch;
use super::seen::SeenSnapshots;
use super::subset::DataSubset;
use super::vanished::{Stored, Vanished, Verdict};

/// What to check beyond the structure.
pub struct VerifyOptions<'a> {
    /// Compare every pack's header with the index (one ranged read per pack).
    pub read_headers: bool,
    /// Download packs (all, or a subset) and check every byte.
    pub read_data: Option<DataSubset>,
    /// pgcairn's local cache directory (`--cache-dir`): the index cache, and where the
    /// rotation of `--read-data=PERCENT` is remembered.
    pub cache_dir: Option<&'a Path>,
    pub interrupted: &'a AtomicBool,
}

/// Where verify stands, for a progress line.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
    /// Bytes read from storage so far.
    pub bytes: u64,
}

/// Checks the repository and reports what it found. An error means verify could not finish
/// (storage unreachable, interrupted); damage is in the report.
pub fn verify(
    repo: Repository,
    options: &VerifyOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport> {
    let began = Instant::now();
    let repo_cache_dir = cache::base_dir(options.cache_dir)?.join(repo.config().id.to_hex());
    // The WAL catalogue first (roots before the index), through the shared cache, which
    // holds every entry read before: only new ones are read (`--read-data` reads the others
    // again).
    progress(&Progress {
        phase: "reading the WAL catalogue",
        done: 0,
        total: 0,
        bytes: 0,
    });
    let shared = repo.load_index_unsynced(options.cache_dir)?;
    let mut unreadable_entries = Vec::new();
    let catalogue = shared.wal_catalogue_with(&mut |object, e| {
        unreadable_entries.push((object, e));
        Ok(())
    })?;
    let scratch = Scratch::new(&repo_cache_dir)?;
    let repo = shared
        .into_repository()
        .load_index_private(scratch.path())?;
    repo.with_cache(|c| c.lost_reset())?;
    let mut v = Verifier {
        report: VerifyReport {
            repository: repo.storage().location().to_string(),
            repository_id: repo.config().id.to_hex(),
            ..VerifyReport::default()
        },
        repo,
        options,
        progress,
        repo_cache_dir: repo_cache_dir.clone(),
        damage_of: HashMap::new(),
        vanished: Vanished::default(),
        snapshots: Vec::new(),
        catalogue,
        damaged_wal: Vec::new(),
        bad_packs: HashSet::new(),
        lost_packs: Vec::new(),
        bad_copies: HashSet::new(),
        unindexed_packs: Vec::new(),
        histories: Histories::new(),
        seen: SeenSnapshots::new(&repo_cache_dir),
        listed_snapshots: BTreeSet::new(),
    };
    v.check_layout()?;
    v.check_catalogue(unreadable_entries)?;
    v.load_snapshots()?;
    v.load_index()?;
    v.check_packs()?;
    if options.read_headers {
        v.check_headers()?;
    }
    v.walk()?;
    if let Some(subset) = options.read_data {
        v.read_data(subset)?;
    }
    v.check_wal()?;
    v.attribute()?;
    let report = v.finish(began);
    // The private cache goes only after the repository that holds it open.
    drop(scratch);
    report
}

/// A verify in progress.
pub(super) struct Verifier<'a, 'p> {
    pub(super) repo: IndexedRepository,
    pub(super) options: &'a VerifyOptions<'a>,
    /// The repository's directory in the local cache: where verify keeps what it remembers
    /// between runs.
    pub(super) repo_cache_dir: std::path::PathBuf,
    pub(super) progress: &'p mut dyn FnMut(&Progress),
    pub(super) report: VerifyReport,
    /// Damage entries by object: one per object, its findings gathered.
    damage_of: HashMap<Object, usize>,
    pub(super) vanished: Vanished,
    /// Snapshots that read intact, oldest first.
    pub(super) snapshots: Vec<(SnapshotId, Snapshot)>,
    /// WAL catalogue entries that read intact (when they were first cached).
    pub(super) catalogue: Vec<WalEntry>,
    /// Catalogue entries that no longer read intact (found by `--read-data`), with their
    /// damage: their content is known from the cache, so what losing them cuts is reported
    /// against them rather than as a gap.
    pub(super) damaged_wal: Vec<(WalEntry, usize)>,
    /// Packs whose every blob counts as lost: missing, or of the wrong size.
    pub(super) bad_packs: HashSet<PackId>,
    /// Those packs with their damage numbers, marked in the `lost` table all at once before
    /// the impact is worked out (each marking is a pass over every blob of the index).
    pub(super) lost_packs: Vec<(PackId, u32)>,
    /// Blobs found unreadable in a pack that is there, so that the walk and `--read-data`
    /// report each once.
    bad_copies: HashSet<(PackId, BlobId)>,
    /// Packs on storage that no index file lists, with their sizes.
    unindexed_packs: Vec<(PackId, u64)>,
    /// The timeline history files of the catalogue, parsed.
    pub(super) histories: Histories,
    /// The snapshots listed, remembered for the next run when this one completes.
    seen: SeenSnapshots,
    listed_snapshots: BTreeSet<SnapshotId>,
}

impl Verifier<'_, '_> {
    /// Records a finding about an object: a new damage entry, or one more detail of the
    /// object's entry. Returns the entry's number (what the `lost` table refers to).
    pub(super) fn damage(&mut self, object: Object, problem: Problem, detail: String) -> usize {
        if let Some(&n) = self.damage_of.get(&object) {
            let details = &mut self.report.damage[n].details;
            if !details.contains(&detail) {
                details.push(detail);
            }
            return n;
        }
        let n = self.report.damage.len();
        self.damage_of.insert(object.clone(), n);
        self.report
            .damage
            .push(Damage::new(object, problem, detail));
        n
    }

    /// A pack whose every blob is lost (missing, truncated or grown).
    fn pack_lost(&mut self, id: PackId, problem: Problem, detail: String) -> Result<()> {
        let n = self.damage(Object::pack(&id), problem, detail);
        if self.bad_packs.insert(id) {
            self.lost_packs.push((id, damage_number(n)));
        }
        Ok(())
    }

    /// One blob of a pack that is there does not read.
    pub(super) fn blob_bad(
        &mut self,
        pack: PackId,
        blob_type: BlobType,
        id: BlobId,
        why: String,
    ) -> Result<()> {
        if !self.bad_copies.insert((pack, id)) {
            return Ok(());
        }
        let n = self.damage(Object::pack(&pack), Problem::Damaged, why);
        self.repo
            .with_cache(|c| c.lost_mark(blob_type, &id, damage_number(n)))
    }

    pub(super) fn notice(&mut self, notice: Notice) {
        self.report.info.push(notice);
    }

    pub(super) fn show(&mut self, phase: &'static str, done: usize, total: usize) {
        (self.progress)(&Progress {
            phase,
            done: done as u64,
            total: total as u64,
            bytes: self.repo.storage().bytes_read(),
        });
    }

    pub(super) fn check_interrupted(&self) -> Result<()> {
        if self.options.interrupted.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "verify interrupted; nothing was changed",
            ));
        }
        Ok(())
    }

    /// Names at the top level and in `keys/` that are not objects; every key file read and
    /// opened (a damaged key may be the only one some password opens).
    fn check_layout(&mut self) -> Result<()> {
        self.show("listing", 0, 0);
        const KNOWN: [&str; 7] = [
            "config",
            "keys/",
            "data/",
            "index/",
            "snapshots/",
            "wal/",
            "locks/",
        ];
        for name in self.repo.storage().list_top_level()? {
            if !KNOWN.contains(&name.as_str()) {
                self.notice(Notice::NotAnObject { name });
            }
        }
        let names = self.repo.storage().list(layout::KEYS)?;
        self.strays(layout::KEYS, &names, |n| KeyId::from_hex(n).is_ok());
        for key in self.repo.list_keys()? {
            self.report.checked.key_files += 1;
            if let Err(why) = key.description {
                self.damage(Object::key_file(&key.id), Problem::Damaged, why);
            }
        }
        Ok(())
    }

    /// Reports the names in `dir` that `is_object` rejects.
    fn strays(&mut self, dir: &str, names: &[String], is_object: impl Fn(&str) -> bool) {
        for name in names.iter().filter(|n| !is_object(n)) {
            self.notice(Notice::NotAnObject {
                name: format!("{dir}/{name}"),
            });
        }
    }

    /// The WAL catalogue as read: names that are not entries, and entries that did not read
    /// intact.
    fn check_catalogue(&mut self, unreadable: Vec<([u8; 32], Error)>) -> Result<()> {
        let names = self.repo.storage().list(layout::WAL)?;
        self.strays(layout::WAL, &names, |n| {
            layout::wal_object_from_listing(n).is_some()
        });
        for (object, e) in unreadable {
            if self
                .vanished
                .judge_one(&mut self.repo, Stored::WalEntry(object))?
                == Verdict::Present
            {
                let entry = Object::WalEntry {
                    object: hex::encode(object),
                    system_identifier: None,
                    name: None,
                };
                self.damage(entry, Problem::Damaged, e.to_string());
            }
        }
        self.report.checked.wal_files = self.catalogue.len();
        Ok(())
    }

    fn load_snapshots(&mut self) -> Result<()> {
        let names = self.repo.storage().list(layout::SNAPSHOTS)?;
        self.strays(layout::SNAPSHOTS, &names, |n| {
            SnapshotId::from_hex(n).is_ok()
        });
        let ids: Vec<SnapshotId> = names
            .iter()
            .filter_map(|n| SnapshotId::from_hex(n).ok())
            .collect();
        for (done, id) in ids.iter().enumerate() {
            self.show("reading snapshots", done, ids.len());
            self.check_interrupted()?;
            match self.repo.load_snapshot(id) {
                Ok(snapshot) => self.snapshots.push((*id, snapshot)),
                Err(e) if e.kind() == ErrorKind::Integrity => {
                    match self
                        .vanished
                        .judge_one(&mut self.repo, Stored::Snapshot(*id))?
                    {
                        Verdict::Present => {
                            self.damage(Object::snapshot(id), Problem::Damaged, e.to_string());
                        }
                        Verdict::Missing | Verdict::Vanished => continue,
                    }
                }
                Err(e) => return Err(e),
            }
            self.report.checked.snapshots += 1;
        }
        self.snapshots.sort_by_key(|(id, s)| (s.started_ns, *id));
        let listed: BTreeSet<SnapshotId> = ids.into_iter().collect();
        for id in self.seen.previous().difference(&listed) {
            self.notice(Notice::SnapshotGone { id: id.to_hex() });
        }
        self.listed_snapshots = listed;
        Ok(())
    }

    /// Every index file, into the private cache: what reads intact now, as a new reader
    /// would see it.
    fn load_index(&mut self) -> Result<()> {
        self.show("reading index files", 0, 0);
        let names = self.repo.storage().list(layout::INDEX)?;
        self.strays(layout::INDEX, &names, |n| IndexId::from_hex(n).is_ok());
        let mut failed = Vec::new();
        self.repo.sync_cache_with(&mut |id, e| {
            failed.push((id, e));
            Ok(())
        })?;
        let mut damaged = 0;
        for (id, e) in failed {
            if self
                .vanished
                .judge_one(&mut self.repo, Stored::IndexFile(id))?
                == Verdict::Present
            {
                self.damage(Object::index_file(&id), Problem::Damaged, e.to_string());
                damaged += 1;
            }
        }
        self.report.checked.index_files =
            self.repo.with_cache(|c| c.index_files())?.len() + damaged;
        Ok(())
    }

    /// The listing of `data/` (with sizes) against the index: packs missing or of another
    /// size, and packs no index lists.
    fn check_packs(&mut self) -> Result<()> {
        self.show("listing packs", 0, 0);
        let listed = self.repo.storage().list_with_sizes(layout::DATA)?;
        let mut on_storage: HashMap<PackId, u64> = HashMap::with_capacity(listed.len());
        for (name, size) in listed {
            match layout::pack_from_listing(&name) {
                Some(id) => {
                    on_storage.insert(id, size);
                }
                None => self.notice(Notice::NotAnObject {
                    name: format!("{}/{name}", layout::DATA),
                }),
            }
        }
        let indexed = self.repo.with_cache(|c| c.packs())?;
        let checked = &mut self.report.checked;
        checked.packs = indexed.len();
        checked.pack_bytes = indexed.iter().map(|(_, size)| size).sum();
        checked.packs_on_storage = on_storage.len();
        let mut absent = Vec::new();
        for (id, size) in &indexed {
            match on_storage.remove(id) {
                None => absent.push(Stored::Pack(*id)),
                Some(actual) if actual != *size => self.pack_lost(
                    *id,
                    Problem::Damaged,
                    format!("it is {actual} bytes on storage, the index says {size}"),
                )?,
                Some(_) => {}
            }
        }
        let verdicts = self.vanished.judge(&mut self.repo, &absent)?;
        for (object, verdict) in absent.iter().zip(verdicts) {
            if let (Stored::Pack(id), Verdict::Missing) = (object, verdict) {
                self.pack_lost(
                    *id,
                    Problem::Missing,
                    "an index file lists it, but it is not on storage".to_string(),
                )?;
            }
        }
        // Left by writers that were interrupted, or being written now; whether snapshots need
        // them is known after the walk.
        self.unindexed_packs = on_storage.into_iter().collect();
        self.unindexed_packs.sort();
        Ok(())
    }

    /// Every pack's header against the index, one ranged read each.
    fn check_headers(&mut self) -> Result<()> {
        let bad = self.bad_packs.clone();
        let repo = &self.repo;
        let results = parallel::for_each_pack(
            repo,
            &|id| !bad.contains(id),
            self.options.interrupted,
            &|job| repo.check_pack_header(&job.id, job.size, &job.entries),
            ("reading pack headers", self.report.checked.packs),
            &mut *self.progress,
        )?;
        self.check_interrupted()?;
        let mut unreadable = Vec::new();
        for (id, _, result) in results {
            self.report.checked.pack_headers += 1;
            match result {
                Ok(None) => {}
                Ok(Some(problem)) => {
                    self.damage(Object::pack(&id), Problem::Damaged, problem);
                }
                Err(e) => unreadable.push((id, e)),
            }
        }
        self.pack_read_failures(unreadable)
    }

    /// Packs that could not be read at all: missing (or deleted meanwhile), or storage failed.
    pub(super) fn pack_read_failures(&mut self, failures: Vec<(PackId, Error)>) -> Result<()> {
        let objects: Vec<Stored> = failures.iter().map(|(id, _)| Stored::Pack(*id)).collect();
        let verdicts = self.vanished.judge(&mut self.repo, &objects)?;
        for ((id, e), verdict) in failures.into_iter().zip(verdicts) {
            match verdict {
                Verdict::Vanished => {}
                Verdict::Missing => self.pack_lost(
                    id,
                    Problem::Missing,
                    format!("an index file lists it, but it is not on storage ({e})"),
                )?,
                Verdict::Present if e.kind() == ErrorKind::Integrity => {
                    self.pack_lost(id, Problem::Damaged, e.to_string())?
                }
                Verdict::Present => return Err(e),
            }
        }
        Ok(())
    }

    /// Walks every snapshot and WAL file, reading every tree and chunk list, marking every
    /// blob they reference; then names what is referenced and cannot be read.
    fn walk(&mut self) -> Result<()> {
        for u in self.walk_all()? {
            self.metadata_unreadable(u)?;
        }
        self.unindexed()
    }

    /// One walk of every root; the trees and chunk lists it could not read.
    fn walk_all(&mut self) -> Result<Vec<Unreadable>> {
        let mut unreadable = Vec::new();
        {
            let total = self.snapshots.len() + self.catalogue.len();
            let mut reach = Reach::begin(&self.repo)?;
            let mut on_unreadable = |u: Unreadable| {
                unreadable.push(u);
                Ok(())
            };
            for (done, (_, snapshot)) in self.snapshots.iter().enumerate() {
                if self.options.interrupted.load(Ordering::Relaxed) {
                    break;
                }
                (self.progress)(&Progress {
                    phase: "walking snapshots",
                    done: done as u64,
                    total: total as u64,
                    bytes: self.repo.storage().bytes_read(),
                });
                reach.snapshot(snapshot, &mut on_unreadable)?;
            }
            for entry in &self.catalogue {
                reach.wal_entry(entry, &mut on_unreadable)?;
            }
        }
        self.check_interrupted()?;
        self.report.checked.blobs_referenced = self.repo.with_cache(|c| c.reached_count())?;
        Ok(unreadable)
    }

    /// A tree or chunk list the walk could not read: its pack is damaged or gone. (Not
    /// indexed at all: reported with the other unindexed blobs.)
    pub(super) fn metadata_unreadable(&mut self, u: Unreadable) -> Result<()> {
        let Some(location) = self.repo.with_cache(|c| c.lookup(u.blob_type, &u.id))? else {
            return Ok(());
        };
        self.blob_unreadable(location, u.error)
    }

    /// A blob whose read from its pack failed.
    pub(super) fn blob_unreadable(&mut self, at: cache::BlobLocation, error: Error) -> Result<()> {
        if self.bad_packs.contains(&at.pack) {
            return Ok(());
        }
        match self
            .vanished
            .judge_one(&mut self.repo, Stored::Pack(at.pack))?
        {
            Verdict::Present if error.kind() == ErrorKind::Integrity => {
                self.blob_bad(at.pack, at.entry.blob_type, at.entry.id, error.to_string())
            }
            Verdict::Present => Err(error),
            Verdict::Missing => self.pack_lost(
                at.pack,
                Problem::Missing,
                "an index file lists it, but it is not on storage".to_string(),
            ),
            Verdict::Vanished => Ok(()),
        }
    }

    /// Referenced blobs that no index file lists: in a pack no index lists (`repair index`
    /// indexes it again), or nowhere.
    fn unindexed(&mut self) -> Result<()> {
        if self.repo.with_cache(|c| c.reached_unindexed())?.is_empty() {
            return self.unindexed_packs_are_leftovers(&HashSet::new());
        }
        // An index file written since the sync may hold them.
        self.vanished.refresh(&mut self.repo)?;
        if self.repo.with_cache(|c| c.reached_unindexed())?.is_empty() {
            return self.unindexed_packs_are_leftovers(&HashSet::new());
        }
        // The packs no index lists, indexed in the private cache from their own headers,
        // and a second walk: below a tree that only such a pack holds lie blobs the first
        // walk could not reach.
        let mut headers = Vec::new();
        let packs = self.unindexed_packs.clone();
        for (done, (pack, size)) in packs.iter().enumerate() {
            self.show("reading headers of unindexed packs", done, packs.len());
            if let Ok(header) = self.repo.read_pack_header_sized(pack, *size) {
                headers.push(header);
            }
        }
        if headers.is_empty() {
            self.blobs_nowhere()?;
            return self.unindexed_packs_are_leftovers(&HashSet::new());
        }
        let unlisted = unlisted_index_id();
        let ids: Vec<PackId> = headers.iter().map(|h| h.id).collect();
        self.repo.index_privately(&unlisted, headers.clone())?;
        let result = self.walk_unlisted(&ids);
        self.repo.forget_privately(&unlisted)?;
        let needed = result?;
        // Those needed stay indexed in the private cache for the rest of the run, as `repair
        // index` would index them: their contents are checked and what they hold attributed.
        headers.retain(|h| needed.contains(&h.id));
        if !headers.is_empty() {
            self.repo.index_privately(&unlisted, headers.clone())?;
            self.vanished.private = Some((unlisted, headers));
        }
        self.unindexed_packs_are_leftovers(&needed)
    }

    /// With the unlisted packs `ids` indexed privately: walks again, names the unlisted packs
    /// that hold referenced blobs no indexed pack holds, and the referenced blobs no pack
    /// holds. Returns the packs needed.
    fn walk_unlisted(&mut self, ids: &[PackId]) -> Result<HashSet<PackId>> {
        for u in self.walk_all()? {
            self.metadata_unreadable(u)?;
        }
        let mut needed = HashSet::new();
        let mut marks = Vec::new();
        for (pack, count) in self.repo.with_cache(|c| c.reached_only_in(ids))? {
            let n = self.damage(
                Object::pack(&pack),
                Problem::Unindexed,
                format!(
                    "no index file lists it, yet it holds {count} referenced blobs; `pgcairn \
                     repair index` indexes it again"
                ),
            );
            marks.push((pack, damage_number(n)));
            needed.insert(pack);
        }
        self.repo
            .with_cache(|c| c.lost_mark_reached_only_in(&marks))?;
        self.blobs_nowhere()?;
        Ok(needed)
    }

    /// Referenced blobs that neither the index nor any pack holds.
    fn blobs_nowhere(&mut self) -> Result<()> {
        for (blob_type, id) in self.repo.with_cache(|c| c.reached_unindexed())? {
            let n = self.damage(
                Object::blob(blob_type, &id),
                Problem::Missing,
                "referenced, but in no index file and in no pack".to_string(),
            );
            self.repo
                .with_cache(|c| c.lost_mark(blob_type, &id, damage_number(n)))?;
        }
        Ok(())
    }

    /// Unindexed packs that hold nothing referenced: harmless leftovers (those whose index
    /// file appeared since the listing are not: they were being written).
    fn unindexed_packs_are_leftovers(&mut self, needed: &HashSet<PackId>) -> Result<()> {
        for (id, size) in std::mem::take(&mut self.unindexed_packs) {
            if !needed.contains(&id) && !self.repo.with_cache(|c| c.contains_pack(&id))? {
                self.notice(Notice::UnindexedPack {
                    id: id.to_hex(),
                    size,
                });
            }
        }
        Ok(())
    }

    fn finish(mut self, began: Instant) -> Result<VerifyReport> {
        let mut damage = std::mem::take(&mut self.report.damage);
        damage.sort_by(|a, b| a.object.cmp(&b.object));
        self.report.damage = damage;
        let mut info = std::mem::take(&mut self.report.info);
        info.extend(
            std::mem::take(&mut self.vanished.objects)
                .into_iter()
                .map(|object| Notice::Vanished { object }),
        );
        self.report.info = info;
        // Only for the next run's information: not worth failing this one.
        if let Err(e) = self.seen.save(&self.listed_snapshots) {
            eprintln!("warning: {e}");
        }
        self.report.checked.bytes_read = self.repo.storage().bytes_read();
        self.report.seconds = began.elapsed().as_secs_f64();
        Ok(self.report)
    }
}

/// The id under which the packs no index file lists are indexed in verify's private cache:
/// a name no index file can have (it would have to hash to it).
fn unlisted_index_id() -> IndexId {
    IndexId(*blake3::hash(b"pgcairn verify: packs that no index file lists").as_bytes())
}

/// A damage entry's number as the `lost` table stores it.
pub(super) fn damage_number(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
