//! pgcairn: deduplicating, encrypted, incremental-forever backups of PostgreSQL clusters.
//!
//! Data flows one way: `chunk` cuts files → `repo` deduplicates, compresses, encrypts
//! (`crypto`) and packs → `storage` writes. `cli` holds one module per command.

pub mod archive;
pub mod backup;
pub mod chunk;
pub mod cli;
pub mod clock;
pub mod copy;
pub mod crypto;
pub mod error;
pub mod pg;
pub mod prune;
pub mod repo;
pub mod report;
pub mod restore;
pub mod storage;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
