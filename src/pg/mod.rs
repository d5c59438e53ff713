//! Everything PostgreSQL: the connection, backup start/stop over one held session, the data
//! directory walk and its exclusions, WAL names and timelines, backup_label, pg_control, page
//! checksums and recovery configuration, and what WAL itself says (page headers, commit times
//! and restore points). Knows nothing of packs or the repository.

pub mod archive_command;
pub mod check;
pub mod checksum;
pub mod conn;
pub mod control;
pub mod datadir;
pub mod history;
pub mod label;
pub mod osuser;
pub mod pgpass;
pub mod primary;
pub mod recovery;
pub mod session;
pub mod target;
pub mod wal;
pub mod walpage;
pub mod walscan;
