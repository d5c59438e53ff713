//! The config object: format version, repository id and the parameters every writer must use.

use serde::{Deserialize, Serialize};

use super::id::RepoId;
use crate::chunk::ChunkerParams;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repeats the object header's version inside the authenticated payload.
    pub version: u32,
    pub id: RepoId,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    pub chunker: ChunkerParams,
    /// Packs are closed once they reach this many bytes.
    pub pack_size: u32,
    /// zstd level for new blobs (0 = store uncompressed).
    pub compression_level: i32,
}
