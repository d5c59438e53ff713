//! Snapshot trees. A directory is a sequence of tree blobs, each holding a sorted run of its
//! entries; a file's content is a chunk list, itself split into chunk-list blobs when long.
//! Both are cut by content (entry names, chunk ids), so an unchanged directory, or an unchanged
//! stretch of a big file, produces the same blob ids and is not stored again.

use serde::{Deserialize, Serialize};

use super::id::BlobId;

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name bytes (no `/`, not `.` or `..`).
    pub name: Vec<u8>,
    /// `st_mode` permission and special bits (the file type is in `kind`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File {
        size: u64,
        content: ChunkList,
    },
    /// The directory's entries, in name order, split across tree blobs.
    Dir {
        trees: Vec<BlobId>,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// A tree blob: a run of a directory's entries, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// A reference to a blob and the number of file bytes it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: BlobId,
    pub len: u64,
}

/// A sequence of chunks. At level 0 the entries are data blobs; at level `n > 0` they are
/// chunk-list blobs of level `n - 1`, and `len` is the number of file bytes under each.
/// Stored inline in a file node, and as the content of a chunk-list blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkList {
    pub level: u8,
    pub entries: Vec<ChunkRef>,
}

/// The path of entry `name` of the directory at `dir` in a snapshot (`""` is the root): paths
/// in messages, bad-page records and exclusion rules are bytes with `/` separators.
pub fn join_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// Deepest chunk-list nesting a reader follows: a hostile tree cannot send it into a loop.
pub const MAX_LIST_LEVEL: u8 = 8;

/// How a writer splits sequences into blobs (format-spec/ "Splitting"). Not needed to read.
pub mod split {
    use super::{BlobId, ChunkRef};

    /// A file's chunk list stays inline in its node up to this many entries.
    pub const INLINE_ENTRIES: usize = 64;
    const LIST_MIN: usize = 16;
    const LIST_MAX: usize = 2048;
    /// Cut after an entry whose id's first u32 (LE) is ≡ 0 mod this: ~128 entries per blob.
    const LIST_DIVISOR: u32 = 128;

    /// A directory stays in one tree blob up to this many entries.
    pub const TREE_MIN: usize = 64;
    const TREE_MAX: usize = 4096;
    const TREE_DIVISOR: u32 = 256;

    fn first_u32(bytes: &[u8; 32]) -> u32 {
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    /// Splits chunk-list entries into runs for chunk-list blobs.
    pub fn list_runs(entries: &[ChunkRef]) -> Vec<&[ChunkRef]> {
        runs(entries, LIST_MIN, LIST_MAX, |e| {
            first_u32(e.id.as_bytes()) % LIST_DIVISOR == 0
        })
    }

    /// Splits a directory's sorted entries into runs for tree blobs; `name_hash` is a keyed
    /// hash of each entry's name, so boundaries do not move when a file's content changes.
    pub fn tree_runs<T>(nodes: &[T], name_hash: impl Fn(&T) -> BlobId) -> Vec<&[T]> {
        runs(nodes, TREE_MIN, TREE_MAX, |n| {
            first_u32(name_hash(n).as_bytes()) % TREE_DIVISOR == 0
        })
    }

    fn runs<T>(items: &[T], min: usize, max: usize, is_cut: impl Fn(&T) -> bool) -> Vec<&[T]> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, item) in items.iter().enumerate() {
            let len = i + 1 - start;
            if len >= max || (len >= min && is_cut(item)) {
                out.push(&items[start..=i]);
                start = i + 1;
            }
        }
        if start < items.len() {
            out.push(&items[start..]);
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn runs_cover_everything_and_respect_bounds() {
            let entries: Vec<ChunkRef> = (0..10_000u32)
                .map(|i| ChunkRef {
                    id: BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
                    len: 1,
                })
                .collect();
            let runs = list_runs(&entries);
            assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), entries.len());
            assert!(runs.iter().all(|r| r.len() <= LIST_MAX));
            assert!(runs[..runs.len() - 1].iter().all(|r| r.len() >= LIST_MIN));
            // Changing one entry leaves runs that do not contain it (or its neighbours) alone.
            let mut changed = entries.clone();
            changed[5000].id = BlobId([0xff; 32]);
            let after = list_runs(&changed);
            let same = runs.iter().filter(|r| after.contains(r)).count();
            assert!(
                same + 3 >= runs.len(),
                "{same} of {} runs reused",
                runs.len()
            );
        }
    }
}
