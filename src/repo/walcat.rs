//! The WAL catalogue: one sealed object per archived WAL file, found by name without listing.
//!
//! An entry's object name is a keyed hash of the cluster's system identifier and the file name,
//! so storage learns neither, yet `archive-get` finds a file with one read and a missing
//! object is a positive "not archived". Entries are created, never replaced
//! ([`crate::storage::Storage::create_new`]): the first content archived under a name is the
//! one every later reader gets.

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, SealedObject};
use super::tree::{ChunkList, Node, NodeKind};
use crate::crypto::Key32;

/// The object name of the entry for WAL file `name` of cluster `system_identifier` (format-spec
/// §15): keyed with a key derived from the chunk-id key, so storage can neither read nor
/// confirm names.
pub fn entry_name(chunk_id_key: &Key32, system_identifier: u64, name: &str) -> [u8; 32] {
    let key = blake3::derive_key("pgcairn 2026-11 WAL catalogue names", &chunk_id_key.0);
    let mut hasher = blake3::Hasher::new_keyed(&key);
    hasher.update(&system_identifier.to_le_bytes());
    hasher.update(name.as_bytes());
    *hasher.finalize().as_bytes()
}

/// One archived WAL file: a segment, a `.partial` segment, a timeline history file or a
/// backup history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalEntry {
    /// The cluster the file belongs to; part of the object name, repeated here so a reader
    /// can check it got the entry it asked for.
    pub system_identifier: u64,
    /// The file name PostgreSQL gave it (`%f`).
    pub name: String,
    pub size: u64,
    /// Unkeyed BLAKE3 of the file's bytes: what duplicate pushes are compared by and what
    /// messages show.
    pub checksum: [u8; 32],
    pub content: ChunkList,
    /// When it was archived, nanoseconds since the Unix epoch, and from which host.
    pub archived_ns: i64,
    pub hostname: String,
    pub program_version: String,
    /// What the segment's records say about recovery targets; `None` for files that are not
    /// WAL segments, or segments too large to scan.
    pub summary: Option<WalSummary>,
}

/// Recovery points found in a segment's valid records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalSummary {
    pub commits: u64,
    /// Commit timestamps, microseconds since the Unix epoch.
    pub first_commit_us: Option<i64>,
    pub last_commit_us: Option<i64>,
    pub restore_points: Vec<RestorePoint>,
    /// The LSN just after the last valid record.
    pub end_lsn: u64,
    /// The span (modulo 2^32, `low` forward to `high`) of the transactions its commit records
    /// commit, prepared transactions aside: where a `--target-xid` may lie.
    pub committed_xids: Option<(u32, u32)>,
}

/// A named restore point (`pg_create_restore_point`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub name: String,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    pub lsn: u64,
}

impl SealedObject for WalEntry {
    const KIND: ObjectKind = ObjectKind::WalEntry;
}

impl WalEntry {
    pub fn checksum_hex(&self) -> String {
        hex::encode(self.checksum)
    }

    /// The file as a snapshot tree entry (a snapshot's `pg_wal/`, or a file to restore):
    /// private to `uid`, dated when it was archived.
    pub fn as_node(&self, uid: u32, gid: u32) -> Node {
        Node {
            name: self.name.as_bytes().to_vec(),
            mode: 0o600,
            uid,
            gid,
            mtime_ns: self.archived_ns,
            ctime_ns: self.archived_ns,
            inode: 0,
            kind: NodeKind::File {
                size: self.size,
                content: self.content.clone(),
            },
        }
    }
}
