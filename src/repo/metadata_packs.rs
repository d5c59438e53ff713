//! Whole metadata packs kept in memory while a command walks trees, for remote repositories.
//!
//! Trees and chunk lists are small blobs packed together (`Packer` keeps them apart from
//! data), and a walk reads them one by one in roughly the order they were written. On a local
//! disk one read per blob costs microseconds; on an object store each is a request with its
//! round trip, and a restore of a cluster with a thousand files spent most of its time there.
//! Fetching the whole pack on the first blob turns those requests into one per pack.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::id::PackId;
use crate::error::Result;

/// Packs kept at once: metadata packs are at most the repository's pack size (8 MiB by
/// default), so this bounds the memory to a few tens of MiB.
const PACKS_KEPT: usize = 4;

#[derive(Default)]
pub struct MetadataPacks {
    /// Most recently used last.
    packs: Mutex<VecDeque<(PackId, Arc<Vec<u8>>)>>,
}

impl MetadataPacks {
    /// The pack's bytes, fetched with `fetch` unless kept. Two threads missing the same pack
    /// at once both fetch it (the lock is not held across the download); one copy is kept.
    pub fn get_or_fetch(
        &self,
        pack: &PackId,
        fetch: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some(bytes) = self.touch(pack) {
            return Ok(bytes);
        }
        let bytes = Arc::new(fetch()?);
        let mut packs = self.packs.lock().unwrap_or_else(|p| p.into_inner());
        if !packs.iter().any(|(id, _)| id == pack) {
            packs.push_back((*pack, bytes.clone()));
            if packs.len() > PACKS_KEPT {
                packs.pop_front();
            }
        }
        Ok(bytes)
    }

    /// The pack's bytes if kept, made the most recently used; one lock, so another thread
    /// never sees a kept pack missing.
    fn touch(&self, pack: &PackId) -> Option<Arc<Vec<u8>>> {
        let mut packs = self.packs.lock().unwrap_or_else(|p| p.into_inner());
        let at = packs.iter().position(|(id, _)| id == pack)?;
        let entry = packs.remove(at)?;
        let bytes = entry.1.clone();
        packs.push_back(entry);
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn id(n: u8) -> PackId {
        PackId([n; 32])
    }

    #[test]
    fn keeps_the_most_recently_used_packs_and_fetches_each_once() {
        let cache = MetadataPacks::default();
        let fetches = std::cell::Cell::new(0);
        let get = |n: u8| {
            cache
                .get_or_fetch(&id(n), || {
                    fetches.set(fetches.get() + 1);
                    Ok(vec![n; 3])
                })
                .unwrap()
        };
        assert_eq!(*get(1), vec![1; 3]);
        assert_eq!(*get(1), vec![1; 3]);
        assert_eq!(fetches.get(), 1);
        for n in 2..=PACKS_KEPT as u8 {
            get(n);
        }
        get(1); // most recent again
        get(PACKS_KEPT as u8 + 1); // evicts 2, the least recently used
        let before = fetches.get();
        get(1);
        assert_eq!(fetches.get(), before, "1 was kept");
        get(2);
        assert_eq!(fetches.get(), before + 1, "2 was evicted");
    }

    #[test]
    fn a_failed_fetch_keeps_nothing() {
        let cache = MetadataPacks::default();
        assert!(
            cache
                .get_or_fetch(&id(9), || Err(Error::integrity("gone")))
                .is_err()
        );
        let bytes = cache.get_or_fetch(&id(9), || Ok(vec![7])).unwrap();
        assert_eq!(*bytes, vec![7]);
    }
}
