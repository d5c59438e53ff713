//! Prune: forget snapshots outside a retention policy, expire the WAL no kept snapshot needs,
//! and reclaim the space of packs nothing references, safely while backups and archive-push
//! run (format-spec §13).

pub mod duration;
pub mod gc;
pub mod policy;
pub mod run;
pub mod wal;
