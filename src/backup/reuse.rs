//! When a file may be taken from the parent snapshot without reading it.
//!
//! The parent read each file at some moment after it started. A file whose size, inode,
//! mtime and ctime are the same now as in the parent, and whose mtime and ctime were already
//! more than [`TIMESTAMP_MARGIN`] in the past when the parent started, cannot have changed
//! since the parent read it: any write after that read, or any `utime` that put mtime back,
//! would have set ctime to a time after the parent started. The margin covers filesystems
//! that store timestamps coarsely (ext3, some network filesystems: whole seconds) and the
//! kernel's timestamp granularity, so a write in the same tick as the parent's read is never
//! mistaken for an old one. Files modified shortly before or during the parent backup are
//! read again; on a busy cluster those are exactly the files that change.
//!
//! pgBackRest reaches the same place the other way round: it waits out the timestamp
//! resolution at the end of each backup. `backup --reread` reads every file regardless.
//!
//! A file in which the parent found pages failing their checksum is always read again: the
//! damage is usually older than any backup, and a snapshot that took the file unread would
//! hold the bad page without reporting it (nor fail with `--fail-on-checksum-error`).

use std::collections::HashSet;

use crate::repo::tree::{Node, NodeKind};

/// How far before the parent's start a file's timestamps must be for it to count as settled.
pub const TIMESTAMP_MARGIN_NS: i64 = 2_000_000_000;

/// The parent snapshot's clock, and the files it found bad pages in.
#[derive(Clone, Debug, Default)]
pub struct ParentFiles {
    pub started_ns: i64,
    /// Paths (as in the snapshot) of the files with bad pages in the parent.
    pub bad_page_files: HashSet<Vec<u8>>,
}

impl ParentFiles {
    /// Whether the file at `rel` may be taken from the parent without reading: it is
    /// [`unchanged`](Self::unchanged), and the parent found no bad pages in it.
    pub fn reusable(&self, rel: &[u8], old: &Node, fresh: &Node) -> bool {
        !self.bad_page_files.contains(rel) && self.unchanged(old, fresh)
    }

    /// Whether `fresh` (metadata of the file now) is the file `old` (its node in the parent),
    /// unchanged since the parent read it.
    pub fn unchanged(&self, old: &Node, fresh: &Node) -> bool {
        let (NodeKind::File { size: old_size, .. }, NodeKind::File { size, .. }) =
            (&old.kind, &fresh.kind)
        else {
            return false;
        };
        let settled = self.started_ns - TIMESTAMP_MARGIN_NS;
        old_size == size
            && old.inode == fresh.inode
            && old.mtime_ns == fresh.mtime_ns
            && old.ctime_ns == fresh.ctime_ns
            && old.mtime_ns < settled
            && old.ctime_ns < settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::ChunkList;

    fn file(size: u64, mtime_ns: i64, ctime_ns: i64, inode: u64) -> Node {
        Node {
            name: b"16384".to_vec(),
            mode: 0o600,
            uid: 1,
            gid: 1,
            mtime_ns,
            ctime_ns,
            inode,
            kind: NodeKind::File {
                size,
                content: ChunkList::default(),
            },
        }
    }

    #[test]
    fn only_settled_identical_files_are_reused() {
        let parent = ParentFiles {
            started_ns: 100_000_000_000,
            ..ParentFiles::default()
        };
        let old = file(8192, 50_000_000_000, 50_000_000_000, 7);
        assert!(parent.unchanged(&old, &old.clone()));
        // Any difference in what stat reports means a read.
        assert!(!parent.unchanged(&old, &file(16384, 50_000_000_000, 50_000_000_000, 7)));
        assert!(!parent.unchanged(&old, &file(8192, 50_000_000_001, 50_000_000_000, 7)));
        assert!(!parent.unchanged(&old, &file(8192, 50_000_000_000, 60_000_000_000, 7)));
        assert!(!parent.unchanged(&old, &file(8192, 50_000_000_000, 50_000_000_000, 8)));
        // Modified within the margin before the parent started: it may have changed again in
        // the same timestamp tick after the parent read it.
        let recent = file(8192, 99_000_000_000, 99_000_000_000, 7);
        assert!(!parent.unchanged(&recent, &recent.clone()));
        let ctime_recent = file(8192, 50_000_000_000, 99_500_000_000, 7);
        assert!(!parent.unchanged(&ctime_recent, &ctime_recent.clone()));
    }

    #[test]
    fn files_with_bad_pages_in_the_parent_are_read_again() {
        let parent = ParentFiles {
            started_ns: 100_000_000_000,
            bad_page_files: HashSet::from([b"base/5/16384".to_vec()]),
        };
        let old = file(8192, 50_000_000_000, 50_000_000_000, 7);
        assert!(!parent.reusable(b"base/5/16384", &old, &old.clone()));
        assert!(parent.reusable(b"base/5/16385", &old, &old.clone()));
    }
}
