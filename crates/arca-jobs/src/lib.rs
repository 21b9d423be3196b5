//! arca-jobs: the backup *manager* over arca-core. An `arca.toml` names
//! repositories (destinations, each with its password source, priority and
//! retention) and jobs (sources, excludes, destinations, strategy,
//! retention, verification, tags, hooks); [`run`] runs a job once: one
//! read of the sources into the first reachable destination, copies to the
//! others in parallel, then each destination's retention and verification.
//! docs/config.md describes the file.

#![deny(missing_docs)]

pub mod config;
pub mod guard;
pub mod health;
mod hooks;
pub mod postgres;
pub mod run;
pub mod secrets;

pub use config::{discover, Config, ConfigError, ConfigErrors, Job};
pub use hooks::HookContext;
pub use run::{
    confirm, confirm_job, job_tag, maintain, open_destination, run, DestinationReport, Maintenance,
    RunOptions, RunReport,
};
