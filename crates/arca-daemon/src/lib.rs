//! arca-daemon: runs the jobs of an `arca.toml` on their schedules.
#![deny(missing_docs)]
pub mod history;
pub mod machine;
pub mod metrics;
pub mod notify;
pub mod retry;
pub mod schedule;
pub mod token;
