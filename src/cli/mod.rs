//! One module per command: options in, plan, execute, report out. Commands talk to the
//! repository only through `repo`.

pub mod archive_get;
pub mod archive_push;
pub mod backup;
pub mod check;
pub mod cluster_arg;
pub mod completions;
pub mod copy;
pub mod format;
pub mod global;
pub mod info;
pub mod init;
pub mod interrupt;
pub mod key;
pub mod logging;
pub mod man;
pub mod metrics;
pub mod output;
pub mod password;
pub mod policy_args;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod report;
pub mod restore;
pub mod restore_test;
pub mod snapshots;
pub mod verify;
pub mod worker;

pub use global::GlobalOptions;
