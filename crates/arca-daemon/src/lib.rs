//! arca-daemon: runs the jobs of an `arca.toml` on their schedules
//! (`arca daemon`). The loop in [`daemon`] asks the [`schedule`]r what is
//! due and what may start, runs it on a blocking thread through arca-jobs
//! (cancelled through the core's cancel handle), records it in the
//! [`history`], updates the [`metrics`], retries what waiting may cure
//! ([`retry`]) and sends [`notify`] events; the [`api`] serves all of it
//! over HTTP (or HTTPS, [`tls`]) behind a bearer [`token`]. On the same
//! stack, [`serve`] is `arca serve`: repositories served to arca clients.

#![deny(missing_docs)]

pub mod api;
pub mod daemon;
pub mod history;
pub mod logging;
pub mod machine;
pub mod metrics;
pub mod notify;
pub mod retry;
pub mod schedule;
pub mod serve;
pub mod tls;
pub mod token;

pub use daemon::{run, Daemon, DaemonOptions};

/// The runtime of a server (the daemon, `arca serve`): two workers for the
/// requests, and room for the blocking work (engines, storage) they hand
/// off.
pub(crate) fn server_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))
}
