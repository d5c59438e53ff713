//! `prune`: which snapshots a retention policy keeps, and the time windows it is given in.

pub mod duration;
pub mod policy;
