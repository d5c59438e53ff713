//! `--read-data`: every pack of the chosen subset downloaded whole, its name (the hash of its
//! bytes), size and header checked, and every blob in it decrypted, decompressed and hashed
//! again; and the WAL catalogue entries of the same subset read again.

use crate::error::{ErrorKind, Result};
use crate::repo::id::PackId;
use crate::repo::walcat::WalEntry;

use super::check::Verifier;
use super::parallel;
use super::report::{Object, Problem, ReadData};
use super::subset::{DataSubset, Rotation, sector};
use super::vanished::{Stored, Verdict};

impl Verifier<'_, '_> {
    pub(super) fn read_data(&mut self, subset: DataSubset) -> Result<()> {
        let rotation = Rotation::new(&self.repo_cache_dir);
        let start = match subset {
            DataSubset::Rotating(_) => rotation.start(),
            DataSubset::All | DataSubset::Part { .. } => 0,
        };
        let sector = sector(subset, start);
        let bad = self.bad_packs.clone();
        let wanted = |id: &PackId| sector.contains(id.as_bytes()) && !bad.contains(id);
        let total = self
            .repo
            .with_cache(|c| c.packs())?
            .iter()
            .filter(|(id, _)| wanted(id))
            .count();
        let repo = &self.repo;
        let results = parallel::for_each_pack(
            repo,
            &wanted,
            self.options.interrupted,
            &|job| repo.verify_pack(&job.id, job.size, &job.entries),
            ("reading packs", total),
            &mut *self.progress,
        )?;
        self.check_interrupted()?;
        let mut read = ReadData {
            subset: subset.to_string(),
            from: format!("{:016x}", sector.start),
            share: sector.len as f64 / 2f64.powi(64),
            ..ReadData::default()
        };
        let mut unreadable = Vec::new();
        for (id, size, result) in results {
            match result {
                Ok(check) => {
                    self.report.checked.pack_headers += 1;
                    read.packs_read.push(id.to_hex());
                    read.bytes_read += size;
                    for problem in check.problems {
                        self.damage(Object::pack(&id), Problem::Damaged, problem);
                    }
                    for (entry, why) in check.bad_blobs {
                        self.blob_bad(id, entry.blob_type, entry.id, why)?;
                    }
                }
                Err(e) => unreadable.push((id, e)),
            }
        }
        self.pack_read_failures(unreadable)?;
        read.packs_read.sort();
        read.wal_entries_read = self.reread_wal_entries(&|object| sector.contains(object))?;
        if let DataSubset::Rotating(_) = subset {
            // Not saved, the next run reads this sector again: a warning, not a failure.
            if let Err(e) = rotation.save(sector.end()) {
                eprintln!("warning: the next --read-data run will start where this one did: {e}");
            }
            read.next = Some(format!("{:016x}", sector.end()));
        }
        self.report.read_data = Some(read);
        Ok(())
    }

    /// Reads again the catalogue entries whose object name `wanted` accepts (the cache holds
    /// them as they read when they first appeared). Returns how many were read.
    fn reread_wal_entries(&mut self, wanted: &dyn Fn(&[u8; 32]) -> bool) -> Result<usize> {
        let mut read = 0;
        let total = self.catalogue.len();
        let mut kept = Vec::with_capacity(total);
        for (done, entry) in std::mem::take(&mut self.catalogue).into_iter().enumerate() {
            let object = self
                .repo
                .wal_entry_name(entry.system_identifier, &entry.name);
            if !wanted(&object) {
                kept.push(entry);
                continue;
            }
            self.show("reading WAL catalogue entries", done, total);
            read += 1;
            match self.repo.read_wal_object(&object) {
                Ok(_) => kept.push(entry),
                Err(e) if e.kind() == ErrorKind::Integrity => {
                    match self
                        .vanished
                        .judge_one(&mut self.repo, Stored::WalEntry(object))?
                    {
                        Verdict::Present => {
                            let n = self.damage(
                                wal_object(&object, &entry),
                                Problem::Damaged,
                                e.to_string(),
                            );
                            self.damaged_wal.push((entry, n));
                        }
                        Verdict::Missing | Verdict::Vanished => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.catalogue = kept;
        Ok(read)
    }
}

/// The report's name for a catalogue entry whose content is known.
pub(super) fn wal_object(object: &[u8; 32], entry: &WalEntry) -> Object {
    Object::WalEntry {
        object: hex::encode(object),
        system_identifier: Some(entry.system_identifier.to_string()),
        name: Some(entry.name.clone()),
    }
}
