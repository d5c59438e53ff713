//! What verify found, as data: the `--json` output is this, serialised (docs/verify.md
//! documents the shape; fields are only ever added).

use serde::Serialize;

use crate::archive::window::{Point, Window};
use crate::clock::format_utc;
use crate::repo::id::{BlobId, IndexId, KeyId, PackId, SnapshotId};
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Where the repository is, and its id.
    pub repository: String,
    pub repository_id: String,
    pub checked: Checked,
    /// Damaged or missing objects, each with what it affects. Not empty: exit code 10.
    pub damage: Vec<Damage>,
    /// WAL gaps that cut a recoverable window: point-in-time recovery into the gap is
    /// impossible, but every snapshot still restores. Exit code 10 only with `--strict`.
    pub warnings: Vec<GapWarning>,
    /// What needs no action: packs no index lists (left by interrupted writers), names that
    /// are not objects, objects deleted while verify ran.
    pub info: Vec<Notice>,
    /// Per cluster and timeline: archived WAL, its gaps and the recoverable windows.
    pub wal: Vec<ClusterWal>,
    /// With `--read-data`: which packs were read.
    pub read_data: Option<ReadData>,
    pub seconds: f64,
}

impl VerifyReport {
    /// Whether the repository passed: no damage, and with `strict` no warnings either.
    pub fn passed(&self, strict: bool) -> bool {
        self.damage.is_empty() && (!strict || self.warnings.is_empty())
    }
}

/// How much verify looked at.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Checked {
    pub key_files: usize,
    pub index_files: usize,
    pub snapshots: usize,
    /// Packs the index lists, and their total size.
    pub packs: usize,
    pub pack_bytes: u64,
    pub packs_on_storage: usize,
    /// Pack headers compared with the index (`--read-headers`, and packs `--read-data` read).
    pub pack_headers: usize,
    /// Distinct blobs the snapshots and WAL files reference (data, trees and chunk lists).
    pub blobs_referenced: u64,
    /// Files in the WAL catalogue (segments, history and backup history files).
    pub wal_files: usize,
    /// Everything downloaded, in bytes.
    pub bytes_read: u64,
}

/// A stored object, or a file the repository should hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Object {
    Pack {
        id: String,
    },
    IndexFile {
        id: String,
    },
    Snapshot {
        id: String,
    },
    KeyFile {
        id: String,
    },
    /// A WAL catalogue entry object (`wal/<object>`); its cluster and file name when known.
    WalEntry {
        object: String,
        system_identifier: Option<String>,
        name: Option<String>,
    },
    /// A WAL file a snapshot needs that the catalogue does not hold.
    WalFile {
        system_identifier: String,
        name: String,
    },
    /// A referenced blob found neither in the index nor in any pack.
    Blob {
        blob_type: BlobKind,
        id: String,
    },
}

impl Object {
    pub fn pack(id: &PackId) -> Object {
        Object::Pack { id: id.to_hex() }
    }

    pub fn index_file(id: &IndexId) -> Object {
        Object::IndexFile { id: id.to_hex() }
    }

    pub fn snapshot(id: &SnapshotId) -> Object {
        Object::Snapshot { id: id.to_hex() }
    }

    pub fn key_file(id: &KeyId) -> Object {
        Object::KeyFile { id: id.to_hex() }
    }

    pub fn blob(blob_type: BlobType, id: &BlobId) -> Object {
        Object::Blob {
            blob_type: blob_type.into(),
            id: id.to_hex(),
        }
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Pack { id } => write!(f, "pack {id}"),
            Object::IndexFile { id } => write!(f, "index file {id}"),
            Object::Snapshot { id } => write!(f, "snapshot {id}"),
            Object::KeyFile { id } => write!(f, "key file {id}"),
            Object::WalEntry {
                object,
                system_identifier: Some(sysid),
                name: Some(name),
            } => write!(
                f,
                "WAL catalogue entry of {name} (cluster {sysid}; object {object})"
            ),
            Object::WalEntry { object, .. } => write!(f, "WAL catalogue entry {object}"),
            Object::WalFile {
                system_identifier,
                name,
            } => write!(f, "WAL file {name} of cluster {system_identifier}"),
            Object::Blob { blob_type, id } => write!(f, "{blob_type:?} blob {id}"),
        }
    }
}

/// A blob's type, as JSON names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    Data,
    Tree,
    ChunkList,
}

impl From<BlobType> for BlobKind {
    fn from(t: BlobType) -> Self {
        match t {
            BlobType::Data => BlobKind::Data,
            BlobType::Tree => BlobKind::Tree,
            BlobType::ChunkList => BlobKind::ChunkList,
        }
    }
}

/// What is wrong with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Not on storage, though the index lists it (a pack) or a snapshot needs it (a WAL
    /// file, a blob).
    Missing,
    /// On storage but not what it should be: fails its hash, authentication or decoding, its
    /// size differs from the index, or its header from the index.
    Damaged,
    /// A pack on storage that no index file lists, holding blobs that snapshots or WAL files
    /// reference: `pgcairn repair index` indexes it again.
    Unindexed,
    /// A snapshot whose own WAL (start to stop segment) is not all in its `pg_wal/`.
    WalIncomplete,
}

/// One damaged or missing object and what it affects.
#[derive(Clone, Debug, Serialize)]
pub struct Damage {
    pub object: Object,
    pub problem: Problem,
    /// What was found, one finding per line.
    pub details: Vec<String>,
    /// How many blobs that snapshots or WAL files reference it makes unreadable, and the
    /// first of them (at most [`BLOB_SAMPLE`]).
    pub blobs_affected: u64,
    pub blobs: Vec<BlobRef>,
    pub affects: Impact,
}

/// How many of the blobs a damage makes unreadable the report names.
pub const BLOB_SAMPLE: usize = 100;

impl Damage {
    pub fn new(object: Object, problem: Problem, detail: String) -> Damage {
        Damage {
            object,
            problem,
            details: vec![detail],
            blobs_affected: 0,
            blobs: Vec::new(),
            affects: Impact::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlobRef {
    pub blob_type: BlobKind,
    pub id: String,
}

/// What a damage takes away.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Impact {
    /// Snapshots that can no longer be restored whole (content unreadable, or their WAL
    /// incomplete).
    pub snapshots: Vec<SnapshotRef>,
    /// Archived WAL files that can no longer be read.
    pub wal_files: Vec<WalFileRef>,
    /// Recoverable windows that losing those WAL files shortens or splits.
    pub windows_cut: Vec<WindowCut>,
}

impl Impact {
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.wal_files.is_empty() && self.windows_cut.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotRef {
    pub id: String,
    pub time: String,
    pub hostname: String,
    pub system_identifier: Option<String>,
    pub timeline: Option<u32>,
}

impl SnapshotRef {
    pub fn new(id: &SnapshotId, snapshot: &Snapshot) -> SnapshotRef {
        SnapshotRef {
            id: id.to_hex(),
            time: format_utc(snapshot.started_ns.div_euclid(1_000_000_000)),
            hostname: snapshot.hostname.clone(),
            system_identifier: snapshot
                .postgres
                .as_ref()
                .map(|pg| pg.system_identifier.to_string()),
            timeline: snapshot.postgres.as_ref().map(|pg| pg.timeline),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WalFileRef {
    pub system_identifier: String,
    pub name: String,
}

/// A recoverable window before and after a loss.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowCut {
    pub system_identifier: String,
    pub timeline: u32,
    pub before: WindowRef,
    /// What remains of it: nothing, a shorter window, or pieces.
    pub after: Vec<WindowRef>,
}

/// A recoverable window: from a snapshot's consistency point to the end of the WAL that
/// follows it without a gap.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowRef {
    pub snapshot: String,
    pub earliest: PointRef,
    pub latest: PointRef,
    pub last_segment: String,
}

impl From<&Window> for WindowRef {
    fn from(w: &Window) -> Self {
        WindowRef {
            snapshot: w.snapshot.to_hex(),
            earliest: (&w.earliest).into(),
            latest: (&w.latest).into(),
            last_segment: w.last_segment.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PointRef {
    pub lsn: String,
    /// `YYYY-MM-DD HH:MM:SS` in UTC, as every time in pgcairn's JSON.
    pub time: String,
    pub time_us: i64,
    /// The time is when the last file was archived, not a commit's.
    pub time_approximate: bool,
}

impl From<&Point> for PointRef {
    fn from(p: &Point) -> Self {
        PointRef {
            lsn: p.lsn.to_string(),
            time: format_utc(p.time_us.div_euclid(1_000_000)),
            time_us: p.time_us,
            time_approximate: p.approximate,
        }
    }
}

/// A gap in the archived WAL of a timeline that ends a recoverable window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GapWarning {
    pub system_identifier: String,
    pub timeline: u32,
    pub gap: Gap,
    /// The window the gap ends: recovery from its snapshot cannot go past its latest point.
    pub window: WindowRef,
    /// Where the next window on the timeline starts (a later snapshot), if any: points in
    /// between cannot be recovered to.
    pub resumes: Option<PointRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub first_missing: String,
    pub last_missing: String,
    pub segments: u64,
}

/// Something worth knowing that needs no action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A pack no index file lists and nothing references: left by a writer that was
    /// interrupted, or being written right now; prune removes it.
    UnindexedPack { id: String, size: u64 },
    /// A name in the repository that is not an object pgcairn wrote.
    NotAnObject { name: String },
    /// An object deleted while verify ran (by a concurrent prune): not checked.
    Vanished { object: Object },
    /// A snapshot the previous verify on this host saw that is no longer there: forgotten by
    /// prune, or deleted otherwise (nothing references a snapshot, so nothing else can tell).
    SnapshotGone { id: String },
}

/// One cluster's archived WAL.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterWal {
    pub system_identifier: String,
    pub timelines: Vec<TimelineWal>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimelineWal {
    pub timeline: u32,
    pub segments: usize,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    pub gaps: Vec<Gap>,
    pub windows: Vec<WindowRef>,
}

/// What `--read-data` read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadData {
    /// `all`, `N%` (rotating) or `n/t`.
    pub subset: String,
    /// The sector of pack ids read: from `from` (16 hex digits of the id's first 8 bytes),
    /// `share` of the ring.
    pub from: String,
    pub share: f64,
    /// Where the next rotating run starts (`N%` only).
    pub next: Option<String>,
    /// Ids of the packs read, sorted.
    pub packs_read: Vec<String>,
    pub bytes_read: u64,
    /// WAL catalogue entries read again.
    pub wal_entries_read: usize,
}
