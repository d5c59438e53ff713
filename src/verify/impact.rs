//! What each damage takes away: the snapshots and WAL files that reference a blob it made
//! unreadable, the recoverable windows that losing those WAL files cuts, and the snapshots
//! that can no longer reach consistency.
//!
//! Each damage marked the blobs it makes unreadable in the cache's `lost` table. The main walk
//! left every referenced blob in `reached`: their intersection counts what each damage takes.
//! Only when that is not empty are the roots walked again, one at a time, each walk compared
//! with `lost`; memory stays bounded by the cache, not by the repository's size.

use std::collections::{BTreeSet, HashSet};

use crate::archive::window::{self, WalIndex};
use crate::error::Result;
use crate::repo::id::SnapshotId;
use crate::repo::reach::Reach;
use crate::repo::walcat::WalEntry;

use super::check::Verifier;
use super::report::{BLOB_SAMPLE, BlobRef, Object, Problem, SnapshotRef, WalFileRef};
use super::vanished::{Stored, Verdict};
use super::wal::windows_cut;

impl Verifier<'_, '_> {
    pub(super) fn attribute(&mut self) -> Result<()> {
        let lost_packs = std::mem::take(&mut self.lost_packs);
        self.repo.with_cache(|c| c.lost_mark_packs(&lost_packs))?;
        for (entry, n) in self.damaged_wal.clone() {
            self.report.damage[n]
                .affects
                .wal_files
                .push(wal_file(&entry));
        }
        let counts = self.repo.with_cache(|c| c.reached_lost())?;
        for &(n, count) in &counts {
            let blobs = self
                .repo
                .with_cache(|c| c.reached_lost_blobs(n, BLOB_SAMPLE))?;
            let damage = &mut self.report.damage[n as usize];
            damage.blobs_affected = count;
            damage.blobs = blobs
                .into_iter()
                .map(|(blob_type, id)| BlobRef {
                    blob_type: blob_type.into(),
                    id: id.to_hex(),
                })
                .collect();
        }
        if !counts.is_empty() {
            self.walk_each_root()?;
        }
        self.wal_losses()?;
        self.forget_roots_deleted_meanwhile()
    }

    /// Walks each snapshot and each WAL file alone, and adds it to the damages whose lost
    /// blobs it reaches.
    fn walk_each_root(&mut self) -> Result<()> {
        let all = self.catalogue_whole();
        let total = self.snapshots.len() + all.len();
        for (done, (id, snapshot)) in self.snapshots.clone().iter().enumerate() {
            self.show("finding what the damage affects", done, total);
            self.check_interrupted()?;
            let mut reach = Reach::begin(&self.repo)?;
            reach.snapshot(snapshot, &mut |_| Ok(()))?;
            let who = SnapshotRef::new(id, snapshot);
            for (n, _) in self.repo.with_cache(|c| c.reached_lost())? {
                self.affects_snapshot(n as usize, &who);
            }
        }
        for (done, entry) in all.iter().enumerate() {
            self.show(
                "finding what the damage affects",
                total - all.len() + done,
                total,
            );
            self.check_interrupted()?;
            let mut reach = Reach::begin(&self.repo)?;
            reach.wal_entry(entry, &mut |_| Ok(()))?;
            let file = wal_file(entry);
            for (n, _) in self.repo.with_cache(|c| c.reached_lost())? {
                let files = &mut self.report.damage[n as usize].affects.wal_files;
                if !files.contains(&file) {
                    files.push(file.clone());
                }
            }
        }
        Ok(())
    }

    /// For each damage that makes WAL files unreadable: the windows it cuts and the snapshots
    /// it leaves unable to reach consistency, against the catalogue as it would be intact.
    fn wal_losses(&mut self) -> Result<()> {
        let all = self.catalogue_whole();
        let before = window::clusters(&self.snapshots, &all, &self.histories);
        let archive_before = WalIndex::new(&all);
        for n in 0..self.report.damage.len() {
            let lost: HashSet<WalFileRef> = self.report.damage[n]
                .affects
                .wal_files
                .iter()
                .cloned()
                .collect();
            if lost.is_empty() {
                continue;
            }
            let reduced: Vec<WalEntry> = all
                .iter()
                .filter(|e| !lost.contains(&wal_file(e)))
                .cloned()
                .collect();
            let after = window::clusters(&self.snapshots, &reduced, &self.histories);
            self.report.damage[n].affects.windows_cut = windows_cut(&before, &after);
            self.report.damage[n].affects.wal_files.sort();
            let archive_after = WalIndex::new(&reduced);
            let stranded: Vec<SnapshotRef> = self
                .snapshots
                .iter()
                .filter(|(_, s)| {
                    s.postgres.as_ref().is_some_and(|pg| {
                        window::missing_wal(pg, &archive_before).is_empty()
                            && !window::missing_wal(pg, &archive_after).is_empty()
                    })
                })
                .map(|(id, s)| SnapshotRef::new(id, s))
                .collect();
            for who in &stranded {
                self.affects_snapshot(n, who);
            }
        }
        Ok(())
    }

    /// A root deleted while verify ran (prune forgot a snapshot, expired a WAL file) no longer
    /// needs what is missing: it leaves the impact of missing objects, and a missing blob or
    /// WAL file that no remaining root needs is no damage.
    fn forget_roots_deleted_meanwhile(&mut self) -> Result<()> {
        let about_missing =
            |problem: Problem| matches!(problem, Problem::Missing | Problem::Unindexed);
        let mut snapshots: BTreeSet<String> = BTreeSet::new();
        let mut files: BTreeSet<WalFileRef> = BTreeSet::new();
        for damage in self
            .report
            .damage
            .iter()
            .filter(|d| about_missing(d.problem))
        {
            snapshots.extend(damage.affects.snapshots.iter().map(|s| s.id.clone()));
            files.extend(damage.affects.wal_files.iter().cloned());
        }
        let mut roots = Vec::with_capacity(snapshots.len() + files.len());
        for id in &snapshots {
            roots.push(Stored::Snapshot(SnapshotId::from_hex(id)?));
        }
        for file in &files {
            roots.push(Stored::WalEntry(self.wal_file_object(file)?));
        }
        if roots.is_empty() {
            return Ok(());
        }
        let verdicts = self.vanished.judge(&mut self.repo, &roots)?;
        let (of_snapshots, of_files) = verdicts.split_at(snapshots.len());
        let gone = |v: &Verdict| *v == Verdict::Vanished;
        let gone_snapshots: HashSet<&String> = snapshots
            .iter()
            .zip(of_snapshots)
            .filter_map(|(id, v)| gone(v).then_some(id))
            .collect();
        let gone_files: HashSet<&WalFileRef> = files
            .iter()
            .zip(of_files)
            .filter_map(|(f, v)| gone(v).then_some(f))
            .collect();
        for damage in self
            .report
            .damage
            .iter_mut()
            .filter(|d| about_missing(d.problem))
        {
            damage
                .affects
                .snapshots
                .retain(|s| !gone_snapshots.contains(&s.id));
            damage.affects.wal_files.retain(|f| !gone_files.contains(f));
        }
        self.report.damage.retain(|d| {
            !(matches!(d.object, Object::Blob { .. } | Object::WalFile { .. })
                && d.affects.is_empty())
        });
        Ok(())
    }

    fn wal_file_object(&self, file: &WalFileRef) -> Result<[u8; 32]> {
        let sysid: u64 = file.system_identifier.parse().map_err(|_| {
            crate::Error::internal(format!("bad system identifier {}", file.system_identifier))
        })?;
        Ok(self.repo.wal_entry_name(sysid, &file.name))
    }
}

fn wal_file(entry: &WalEntry) -> WalFileRef {
    WalFileRef {
        system_identifier: entry.system_identifier.to_string(),
        name: entry.name.clone(),
    }
}
