//! The health of a job's destinations, as `arca status --job JOB` shows
//! it: whether each is reachable and takes writes, the space its store
//! says is left, the job's snapshots there and the newest one's time, the
//! snapshots it lacks compared with the job's other destinations (what the
//! next run copies to it), the locks held in it, and what the job's last
//! run found there (kept in the state folder by [`save_last_run`]).

use std::path::{Path, PathBuf};

use arca_core::ops::status::{probe_write, status};
use serde::Serialize;

use crate::config::Config;
use crate::run::{job_tag, DestinationReport, RunOptions, RunReport};

/// One lock of a destination.
#[derive(Debug, Clone, Serialize)]
pub struct LockHeld {
    /// Who holds it: `backup by root@host pid 123`, or `unreadable`.
    pub holder: String,
    /// Exclusive (deletes) or shared.
    pub exclusive: bool,
    /// No heartbeat for longer than a live holder leaves: `arca unlock`
    /// removes it.
    pub stale: bool,
}

/// One destination's health.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationHealth {
    /// Its name in the configuration.
    pub name: String,
    /// Where it is.
    pub url: String,
    /// Opened (reached, and its password opens it).
    pub reachable: bool,
    /// A lock could be written and removed in it.
    pub writable: bool,
    /// Bytes left on its filesystem, where the store says (local folders);
    /// `None` for object storage.
    pub space_left: Option<u64>,
    /// The job's snapshots there.
    pub snapshots: u64,
    /// When the newest of them was taken (RFC 3339).
    pub last_snapshot: Option<String>,
    /// Snapshots of the job its other destinations have, newer than its
    /// newest: what the next run copies to it.
    pub missing: u64,
    /// Locks in it.
    pub locks: Vec<LockHeld>,
    /// What the job's last run reported for it, if any run is on record.
    pub last_run: Option<DestinationReport>,
    /// Why it is not healthy: unreachable, not writable, a failed last run.
    pub error: Option<String>,
}

/// The health of every destination of job `name`.
#[derive(Debug, Clone, Serialize)]
pub struct JobHealth {
    /// The job.
    pub job: String,
    /// Every destination reachable and writable, and the last run (if any)
    /// a success.
    pub healthy: bool,
    /// When the last run on record started, and whether it succeeded.
    pub last_run: Option<LastRun>,
    /// Per destination, by priority.
    pub destinations: Vec<DestinationHealth>,
}

/// The last run on record.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// When it started (RFC 3339).
    pub started: String,
    /// Whether it succeeded.
    pub success: bool,
    /// What failed.
    pub error: Option<String>,
}

/// The file holding job `job`'s last run report in `state_dir`.
fn last_run_file(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join("jobs").join(format!("{job}.last-run.json"))
}

/// Keeps `report` as the job's last run in `state_dir` (created 0700, the
/// file 0600: it names repositories and paths), replacing the previous one
/// atomically.
pub fn save_last_run(state_dir: &Path, report: &RunReport) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = state_dir.join("jobs");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    let path = last_run_file(state_dir, &report.job);
    let tmp = dir.join(format!(".{}.tmp-{}", report.job, std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The job's last run report in `state_dir`, if one is kept and reads.
pub fn load_last_run(state_dir: &Path, job: &str) -> Option<RunReport> {
    let bytes = std::fs::read(last_run_file(state_dir, job)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Looks at every destination of job `name` (in parallel); `state_dir`
/// holds the last run on record.
pub fn health(
    config: &Config,
    name: &str,
    opts: &RunOptions,
    state_dir: Option<&Path>,
) -> Result<JobHealth, String> {
    let job = config.job(name)?;
    let last = state_dir.and_then(|d| load_last_run(d, name));
    let tag = job_tag(name);
    let mut found: Vec<(DestinationHealth, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = job
            .destinations
            .iter()
            .map(|d| {
                let repo_config = &config.repositories[d];
                let last = last.as_ref().and_then(|r| r.destinations.iter().find(|x| &x.name == d).cloned());
                let tag = &tag;
                s.spawn(move || look(repo_config, tag, opts, last))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    // What each lacks compared with the others: snapshots (by the time
    // they were taken, which copies keep) newer than its newest.
    let all: Vec<String> = found.iter().flat_map(|(_, times)| times.clone()).collect();
    for (h, _) in &mut found {
        let newest = h.last_snapshot.clone();
        let mut newer: Vec<&String> = all.iter().filter(|t| newest.as_ref().is_none_or(|n| *t > n)).collect();
        newer.sort();
        newer.dedup();
        h.missing = if h.reachable { newer.len() as u64 } else { 0 };
    }
    let destinations: Vec<DestinationHealth> = found.into_iter().map(|(h, _)| h).collect();
    let last_run = last.as_ref().map(|r| LastRun {
        started: r.started.clone(),
        success: r.success,
        error: r.error.clone(),
    });
    let healthy = destinations.iter().all(|d| d.error.is_none()) && last.as_ref().is_none_or(|r| r.success);
    Ok(JobHealth { job: name.to_string(), healthy, last_run, destinations })
}

/// One destination's health, and the times of the job's snapshots there.
fn look(
    repo_config: &crate::config::Repository,
    tag: &str,
    opts: &RunOptions,
    last_run: Option<DestinationReport>,
) -> (DestinationHealth, Vec<String>) {
    let mut h = DestinationHealth {
        name: repo_config.name.clone(),
        url: repo_config.url.clone(),
        reachable: false,
        writable: false,
        space_left: None,
        snapshots: 0,
        last_snapshot: None,
        missing: 0,
        locks: Vec::new(),
        last_run,
        error: None,
    };
    let repo = match crate::run::open(repo_config, opts) {
        Ok((repo, _)) => repo,
        Err(e) => {
            h.error = Some(format!("unreachable: {e}"));
            return (h, Vec::new());
        }
    };
    h.reachable = true;
    if let Ok(arca_backend::location::Parsed::Local(path)) = arca_backend::location::parse(&repo_config.url) {
        h.space_left = rustix::fs::statvfs(&path).ok().map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    }
    match probe_write(&repo) {
        Ok(()) => h.writable = true,
        Err(e) => h.error = Some(format!("not writable: {}", e.report())),
    }
    let mut times = Vec::new();
    match status(&repo) {
        Ok(st) => {
            h.locks = st
                .locks
                .iter()
                .map(|l| match &l.info {
                    Some(i) => LockHeld {
                        holder: format!("{} by {}@{} pid {}", i.operation, i.user, i.host, i.pid),
                        exclusive: i.exclusive,
                        stale: i.is_stale(),
                    },
                    None => LockHeld { holder: "unreadable".into(), exclusive: false, stale: false },
                })
                .collect();
        }
        Err(e) => h.error = h.error.take().or(Some(format!("status: {}", e.report()))),
    }
    match repo.snapshots_matching(&arca_core::SnapshotFilter::new().tag(tag)) {
        Ok((list, _)) => {
            times = list
                .iter()
                .map(|(_, s)| {
                    s.timestamp()
                        .with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                })
                .collect();
            h.snapshots = list.len() as u64;
            h.last_snapshot = times.iter().max().cloned();
        }
        Err(e) => h.error = h.error.take().or(Some(format!("listing snapshots: {}", e.report()))),
    }
    if h.error.is_none() {
        if let Some(e) = h.last_run.as_ref().and_then(|r| r.error.clone()) {
            h.error = Some(format!("the last run failed here: {e}"));
        }
    }
    (h, times)
}
