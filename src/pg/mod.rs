//! Everything PostgreSQL: the connection, backup start/stop over one held session, the data
//! directory walk and its exclusions, WAL names and timelines, backup_label, pg_control, page
//! checksums and recovery configuration. Knows nothing of packs or the repository.

pub mod checksum;
pub mod conn;
pub mod control;
pub mod datadir;
pub mod label;
pub mod pgpass;
pub mod recovery;
pub mod session;
pub mod wal;
pub mod walpage;
