//! Index files: immutable, sealed lists of packs and the blobs in each. The union of all index
//! files is the repository's index; the SQLite cache is a local copy of it.

use serde::{Deserialize, Serialize};

use super::object::{ObjectKind, SealedObject};

use super::id::{IndexId, PackId};
use super::pack::PackedBlob;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPack {
    pub id: PackId,
    /// Size of the pack file in bytes.
    pub size: u64,
    pub blobs: Vec<PackedBlob>,
}

/// A pack prune found unused (format-spec §13). Writers stop deduplicating against it; a later
/// prune deletes it once the grace period has passed, or takes it back into use if a writer
/// that started before the condemnation committed a reference to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CondemnedPack {
    pub id: PackId,
    /// When it was first condemned (the condemning prune's clock), ns since the Unix epoch.
    pub since_ns: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files whose content this one replaces (written by prune; they may be deleted once
    /// every file of the same prune is durable).
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexedPack>,
    /// Packs condemned by prune. A condemned pack may also be listed in `packs` (it can still
    /// be read until it is deleted) or in no index file at all (a crashed writer's leftover).
    pub condemned: Vec<CondemnedPack>,
}

impl SealedObject for IndexFile {
    const KIND: ObjectKind = ObjectKind::Index;
}
