//! arca-daemon: runs the jobs of an `arca.toml` on their schedules.
#![deny(missing_docs)]
pub mod history;
pub mod notify;
pub mod schedule;
