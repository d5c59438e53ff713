//! The config object: format version, repository id and the parameters every writer must use.

use serde::{Deserialize, Serialize};

use super::id::RepoId;
use super::object::{FORMAT_VERSION, ObjectKind, SealedObject};
use crate::chunk::ChunkerParams;
use crate::error::{Context, Error, ErrorKind, Result};

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

impl SealedObject for Config {
    const KIND: ObjectKind = ObjectKind::Config;
}

impl Config {
    /// Refuses a config this build cannot honour.
    pub fn validate(&self) -> Result<()> {
        if self.version != u32::from(FORMAT_VERSION) {
            return Err(Error::new(
                ErrorKind::UnsupportedFormat,
                format!("config declares format version {}", self.version),
            ));
        }
        self.chunker.validate().context("config")?;
        if !(1 << 20..=1 << 30).contains(&self.pack_size)
            || !(0..=22).contains(&self.compression_level)
        {
            return Err(Error::integrity(format!(
                "config: pack size {} or compression level {} out of range",
                self.pack_size, self.compression_level
            )));
        }
        Ok(())
    }
}
