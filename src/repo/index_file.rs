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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files whose content this one replaces (written by prune; they may be deleted once
    /// this one is durable).
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexedPack>,
}

impl SealedObject for IndexFile {
    const KIND: ObjectKind = ObjectKind::Index;
}
