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

use crate::repo::tree::{Node, NodeKind};

/// How far before the parent's start a file's timestamps must be for it to count as settled.
pub const TIMESTAMP_MARGIN_NS: i64 = 2_000_000_000;

/// The parent snapshot's clock: when it started.
#[derive(Clone, Copy, Debug)]
pub struct ParentFiles {
    pub started_ns: i64,
}

impl ParentFiles {
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
}
