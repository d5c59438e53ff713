//! `pgcairn verify`: checks that the repository holds everything its snapshots and WAL need,
//! intact, and names what damage affects.

pub mod check;
mod impact;
mod parallel;
mod read_data;
pub mod report;
pub mod restore_test;
mod scratch;
mod seen;
pub mod subset;
mod vanished;
mod wal;
