//! Retention or verification of a job on its own, without a backup: what
//! the daemon's `retention` and `verify` schedules run, on every
//! destination of the job (or one) in parallel.

use std::time::Instant;

use arca_core::progress::Progress;
use arca_core::Repository;

use super::destination::{check, job_snapshots, open, retain};
use super::{Failed, RunOptions, RunReport, Warnings};
use crate::config::{Config, VerifyAfter};

/// What [`maintain`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum Maintenance {
    /// The retention of each destination (or else the job's): forget, then
    /// prune.
    Retention,
    /// Verification of the job's latest snapshot.
    Verify {
        /// What is checked.
        mode: VerifyAfter,
        /// Only this destination (a name of the job's).
        destination: Option<String>,
    },
}

/// Opens destination `name` of `config` with its password, for a caller
/// that works on it directly (the daemon's restores and snapshot lists).
pub fn open_destination(config: &Config, name: &str, opts: &RunOptions) -> Result<Repository, String> {
    let repo = config.repositories.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.repositories.keys().map(String::as_str).collect();
        format!("no destination {name:?}: the repositories are {}", known.join(", "))
    })?;
    open(repo, opts).map(|(r, _)| r).map_err(|e| e.message)
}

/// Runs `what` for job `name`. Errors are only those of the request (no
/// such job or destination); every failure of the work is in the report.
pub fn maintain(
    config: &Config,
    name: &str,
    what: &Maintenance,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport, String> {
    let job = config.job(name)?;
    let destinations = match what {
        Maintenance::Verify { destination: Some(d), .. } => {
            if !job.destinations.contains(d) {
                return Err(format!(
                    "{d:?} is not a destination of job {name} (they are {})",
                    job.destinations.join(", ")
                ));
            }
            vec![d.clone()]
        }
        _ => job.destinations.clone(),
    };
    let started = Instant::now();
    let mut report = RunReport::new(name, &destinations);
    let host = job.host.clone().unwrap_or_else(arca_core::hostname);
    let done: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = report
            .destinations
            .iter()
            .cloned()
            .map(|mut d| {
                let host = &host;
                s.spawn(move || {
                    let t = Instant::now();
                    let warn = Warnings { inner: progress, prefix: d.name.clone() };
                    match open(&config.repositories[&d.name], opts) {
                        Err(e) => d.fail(e.message, e.transient),
                        Ok((repo, _)) => match what {
                            Maintenance::Retention => {
                                d.success = retain(config, &repo, job, host, opts, &warn, &mut d);
                            }
                            Maintenance::Verify { mode, .. } => {
                                match job_snapshots(&repo, job, host).map(|l| l.last().map(|(id, _)| *id)) {
                                    Err(Failed { message, transient }) => d.fail(message, transient),
                                    Ok(None) => d.fail("no snapshot of the job to verify".into(), false),
                                    Ok(Some(id)) => {
                                        d.snapshot = Some(id.to_hex());
                                        check(&repo, mode, &id, opts, &warn, &mut d);
                                    }
                                }
                            }
                        },
                    }
                    d.duration_ms = t.elapsed().as_millis() as u64;
                    d
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    report.destinations = done;
    report.success = report.destinations.iter().all(|d| d.success);
    if !report.success {
        report.error =
            report.destinations.iter().find_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.name)));
        report.retryable = report.destinations.iter().all(|d| d.success || d.retryable);
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}
