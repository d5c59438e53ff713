//! One module per command: options in, plan, execute, report out. Commands talk to the
//! repository only through `repo`.

pub mod global;
pub mod init;
pub mod key;
pub mod password;
pub mod progress;
pub mod repair;

pub use global::GlobalOptions;
