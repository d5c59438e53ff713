//! Snapshot objects: the root of one backup, with what PostgreSQL said about it.

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, SealedObject};

use super::id::{BlobId, SnapshotId};
use crate::pg::wal::{self, Lsn};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Version of the pgcairn that wrote it, for diagnostics.
    pub program_version: String,
    /// Start and end of the backup, nanoseconds since the Unix epoch.
    pub started_ns: i64,
    pub finished_ns: i64,
    pub hostname: String,
    pub tags: Vec<String>,
    /// The snapshot whose file metadata this one was compared against.
    pub parent: Option<SnapshotId>,
    /// The data directory's root entries, split across tree blobs.
    pub root: Vec<BlobId>,
    pub postgres: Option<PostgresBackup>,
    pub summary: Summary,
}

/// What the server reported for one non-exclusive low-level backup, and what the backup found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresBackup {
    /// `server_version_num`, e.g. 150008.
    pub server_version_num: u32,
    pub system_identifier: u64,
    /// The data directory's path on the host it was backed up from.
    pub pgdata: Vec<u8>,
    pub timeline: u32,
    pub start_lsn: u64,
    pub stop_lsn: u64,
    /// WAL segment names of the start and stop LSNs: the snapshot's `pg_wal/` holds this range.
    pub start_wal: String,
    pub stop_wal: String,
    pub wal_segment_size: u64,
    /// Returned by the backup stop function, byte for byte.
    pub backup_label: Vec<u8>,
    pub tablespace_map: Option<Vec<u8>>,
    pub data_checksums: bool,
    pub tablespaces: Vec<TablespaceBackup>,
    /// Pages whose checksum failed, read twice.
    pub bad_pages: Vec<BadPage>,
    /// Segments from `start_wal` through `stop_wal` that the snapshot does not carry in its
    /// `pg_wal/`: they were not archived within `--archive-timeout` and could no longer be
    /// read from the server. The snapshot restores only once the archive has them all.
    pub wal_missing: Vec<String>,
    /// The name the cluster was backed up under (`backup --cluster`, else the server's
    /// `cluster_name` setting): what `--cluster` selects by, besides the system identifier.
    /// Several system identifiers may share a name (a cluster re-created or upgraded).
    pub cluster_name: Option<String>,
}

/// A tablespace: where it lived, and its contents (the server's version directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablespaceBackup {
    pub oid: u32,
    pub location: Vec<u8>,
    pub root: Vec<BlobId>,
}

/// A data page whose stored checksum does not match its contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadPage {
    /// Path relative to the data directory (tablespaces under `pg_tblspc/<oid>/`).
    pub path: Vec<u8>,
    pub block: u32,
    /// The checksum computed from the page, and the one stored in it.
    pub expected: u16,
    pub found: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    /// Bytes of file content in the snapshot.
    pub logical_bytes: u64,
    /// Bytes read from disk (files taken unchanged from the parent are not read).
    pub read_bytes: u64,
    /// Files taken from the parent snapshot without reading them.
    pub reused_files: u64,
    /// Blobs and stored bytes (after dedup, compression, encryption) this backup added.
    pub new_blobs: u64,
    pub new_stored_bytes: u64,
}

impl PostgresBackup {
    /// The WAL files the snapshot needs to reach consistency: its `pg_wal/` holds them, but
    /// for those in `wal_missing`. Empty for a segment size PostgreSQL would not have.
    pub fn wal_needed(&self) -> Vec<String> {
        let size = self.wal_segment_size;
        if !wal::is_valid_segment_size(size) {
            return Vec::new();
        }
        let start = wal::segment_of(Lsn(self.start_lsn), size);
        let stop = wal::prev_segment_of(Lsn(self.stop_lsn), size).max(start);
        wal::backup_wal_names(self.timeline, start, stop, size)
    }
}

impl SealedObject for Snapshot {
    const KIND: ObjectKind = ObjectKind::Snapshot;
}
