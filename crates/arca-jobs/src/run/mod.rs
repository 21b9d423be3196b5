//! One run of a job: read the sources once into the first reachable
//! destination, copy what the others lack from it in parallel, then apply
//! each destination's retention and verification on its own.
//!
//! Why back up once and copy (rather than one read feeding a packer per
//! destination): every destination gets the same snapshot (one database
//! dump, one point in time), a destination that was down catches up on its
//! next run with every snapshot it missed (a copy of each, oldest first),
//! and the backup engine stays one engine. The source is read once; the
//! copies read the primary repository, never the source.
//!
//! A destination's failure (unreachable, full, a wrong password) is
//! reported in its own result and never stops the others; the run fails
//! when any destination failed.

use std::path::PathBuf;
use std::time::Instant;

mod destination;
mod maintain;
mod suspicious;

use arca_core::progress::Progress;
use arca_core::{Cancel, Error, LockOptions, Repository, SnapshotId};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Job};
use crate::hooks::{run_hooks, HookContext};

pub(crate) use destination::open;
use destination::{backup_database, backup_job, catch_up, finish, job_snapshots};
pub use maintain::{maintain, open_destination, Maintenance};
use suspicious::mark_suspicious;
pub use suspicious::{confirm, confirm_job, Confirmed};
/// How a run runs.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Overrides the job's strategy for this run.
    pub strategy: Option<arca_core::Strategy>,
    /// Stops the run between steps, and the engines inside it.
    pub cancel: Cancel,
    /// How locks are waited for.
    pub lock: LockOptions,
    /// Where each repository's cache goes (`<root>/<repository id>`).
    pub cache_root: Option<PathBuf>,
    /// Where a restore test restores (a fresh folder below it, removed
    /// afterwards); the system's temporary folder by default.
    pub scratch: Option<PathBuf>,
    /// Where the run's report is kept as the job's last run (for
    /// `status --job`); none: not kept.
    pub state_dir: Option<PathBuf>,
}

impl RunOptions {
    /// Overrides the job's strategy.
    pub fn strategy(mut self, s: Option<arca_core::Strategy>) -> Self {
        self.strategy = s;
        self
    }
    /// The cancel handle.
    pub fn cancel(mut self, c: Cancel) -> Self {
        self.cancel = c;
        self
    }
    /// Lock waiting.
    pub fn lock(mut self, l: LockOptions) -> Self {
        self.lock = l;
        self
    }
    /// The cache root.
    pub fn cache_root(mut self, r: Option<PathBuf>) -> Self {
        self.cache_root = r;
        self
    }
    /// The restore tests' scratch folder.
    pub fn scratch(mut self, s: Option<PathBuf>) -> Self {
        self.scratch = s;
        self
    }
    /// The folder the last run is kept in.
    pub fn state_dir(mut self, d: Option<PathBuf>) -> Self {
        self.state_dir = d;
        self
    }
}

/// What retention did on one destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetentionReport {
    /// Snapshots removed.
    pub removed: u64,
    /// Snapshots of the job kept.
    pub kept: u64,
    /// Bytes the prune after it gave back.
    pub bytes_reclaimed: u64,
    /// Why nothing was removed although a policy applies: a snapshot of the
    /// job here is marked suspicious and waits for `arca confirm`.
    pub held: Option<String>,
}

/// What verification found on one destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifyReport {
    /// Nothing damaged or missing, and the restore test (if any) passed.
    pub valid: bool,
    /// What was checked: `structure`, `read-data`, `read-data-subset`,
    /// `restore-test`.
    pub mode: String,
    /// Files damaged or gone, by path.
    pub damaged: Vec<String>,
}

/// One destination's part of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationReport {
    /// Its name in the configuration.
    pub name: String,
    /// Whether everything asked of it succeeded.
    pub success: bool,
    /// The destination the sources were backed up into (the others copy
    /// from it).
    pub primary: bool,
    /// The run's snapshot here (its id in this repository), when it got it.
    pub snapshot: Option<String>,
    /// Snapshots of the job copied here this run: the new one, and those
    /// it missed while it was unreachable.
    pub copied: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// The failure is one that waiting may cure (the storage did not
    /// answer, a lock was held): the daemon tries again later.
    pub retryable: bool,
    /// Retention, when the job or destination has a policy and the
    /// snapshot arrived.
    pub retention: Option<RetentionReport>,
    /// Verification, when asked for and the snapshot arrived.
    pub verify: Option<VerifyReport>,
    /// How long its part took.
    pub duration_ms: u64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The job's name.
    pub job: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// Every destination succeeded.
    pub success: bool,
    /// Bytes read from the sources: once, whatever the number of
    /// destinations.
    pub bytes_read: u64,
    /// The new snapshot, as metadata of the primary destination's copy.
    pub snapshot: Option<arca_core::BackupMetadata>,
    /// With a database beside the files (`sources` and `postgres`): its
    /// snapshot, taken right after the files', in the primary destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<arca_core::BackupMetadata>,
    /// What stopped the run before any destination (a before-hook, every
    /// destination unreachable), or the first failure.
    pub error: Option<String>,
    /// Failed, and every failure is one that waiting may cure (see
    /// [`DestinationReport::retryable`]).
    pub retryable: bool,
    /// Why the new snapshot looks like a mass change (see
    /// [`crate::guard`]): it is kept, tagged `suspicious`, and retention
    /// holds still until `arca confirm`.
    pub suspicious: Option<String>,
    /// Warnings (a password file others can read, a hook that failed
    /// after the run).
    pub warnings: Vec<String>,
    /// Per destination, in priority order.
    pub destinations: Vec<DestinationReport>,
    /// How long the run took.
    pub duration_ms: u64,
}

impl RunReport {
    /// A report of a run of job `name` that has done nothing yet on
    /// `destinations`.
    pub(crate) fn new(job: &str, destinations: &[String]) -> RunReport {
        RunReport {
            job: job.to_string(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            success: false,
            bytes_read: 0,
            snapshot: None,
            database: None,
            error: None,
            retryable: false,
            suspicious: None,
            warnings: Vec::new(),
            destinations: destinations
                .iter()
                .map(|d| DestinationReport {
                    name: d.clone(),
                    success: false,
                    primary: false,
                    snapshot: None,
                    copied: 0,
                    error: None,
                    retryable: false,
                    retention: None,
                    verify: None,
                    duration_ms: 0,
                })
                .collect(),
            duration_ms: 0,
        }
    }
}

/// The tag every snapshot of job `name` carries: how a run finds the job's
/// snapshots for retention and catch-up, and how a person lists them
/// (`arca snapshots --tag job:home`).
pub fn job_tag(name: &str) -> String {
    format!("job:{name}")
}

/// Forwards warnings, prefixed with the destination's name; counts and
/// phases of parallel work stay out of a single progress display.
struct Warnings<'a> {
    inner: &'a dyn Progress,
    prefix: String,
}

impl Progress for Warnings<'_> {
    fn warn(&self, message: &str) {
        self.inner.warn(&format!("{}: {message}", self.prefix));
    }
}

/// Runs job `name` of `config` once. `progress` shows the backup; the
/// copies, retention and verification report their warnings through it.
/// Errors are only those of the configuration (no such job); every
/// failure of the run itself is in the report.
pub fn run(
    config: &Config,
    name: &str,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport, String> {
    let job = config.job(name)?;
    let started = Instant::now();
    let mut report = RunReport::new(&job.name, &job.destinations);
    let context = HookContext { job: job.name.clone(), ..HookContext::default() };
    match run_hooks("before", &job.hooks.before, &context) {
        Ok(()) => run_destinations(config, job, opts, progress, &mut report),
        Err(e) => report.error = Some(e),
    }
    report.success = report.error.is_none() && report.destinations.iter().all(|d| d.success);
    if report.error.is_none() && !report.success {
        report.error =
            report.destinations.iter().find_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.name)));
        report.retryable = report.destinations.iter().all(|d| d.success || d.retryable);
    }
    let context = HookContext {
        job: job.name.clone(),
        success: Some(report.success),
        snapshot: report.snapshot.as_ref().map(|m| m.id.clone()),
        error: report.error.clone(),
        primary: report.destinations.iter().find(|d| d.primary).map(|d| d.name.clone()),
        failed: report.destinations.iter().filter(|d| !d.success).map(|d| d.name.clone()).collect(),
    };
    let after = if report.success { &job.hooks.after } else { &job.hooks.on_failure };
    let kind = if report.success { "after" } else { "on_failure" };
    for (kind, hooks) in [(kind, after), ("finally", &job.hooks.finally)] {
        if let Err(e) = run_hooks(kind, hooks, &context) {
            report.warnings.push(e);
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(dir) = &opts.state_dir {
        if let Err(e) = crate::health::save_last_run(dir, &report) {
            report.warnings.push(format!("keeping the run's report in {}: {e}", dir.display()));
        }
    }
    Ok(report)
}

/// Why a step failed, and whether waiting may cure it.
pub(crate) struct Failed {
    pub(crate) message: String,
    pub(crate) transient: bool,
}

impl Failed {
    /// A failure that trying again will not cure (a password file that is
    /// missing, a bad id).
    pub(crate) fn lasting(message: String) -> Failed {
        Failed { message, transient: false }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Failed {
        Failed { message: e.report().to_string(), transient: e.is_transient() }
    }
}

impl DestinationReport {
    fn fail(&mut self, message: String, transient: bool) {
        self.error = Some(message);
        self.retryable = transient;
    }
}

/// A destination opened (with warnings about its secret files), or why not.
type Opened = Result<(Repository, Vec<String>), Failed>;
/// A destination's copy of the new snapshot and how many were copied, or why not.
type Copied = Result<(SnapshotId, u64), Failed>;

fn run_destinations(
    config: &Config,
    job: &Job,
    opts: &RunOptions,
    progress: &dyn Progress,
    report: &mut RunReport,
) {
    // Open every destination at once: an unreachable one costs its own
    // timeout, not the others'.
    let opened: Vec<(Opened, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = job
            .destinations
            .iter()
            .map(|d| {
                let repo = &config.repositories[d];
                s.spawn(move || {
                    let t = Instant::now();
                    let r = open(repo, opts);
                    (r, t.elapsed().as_millis() as u64)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| (Err(Failed::lasting("opening it panicked".into())), 0)))
            .collect()
    });
    let mut repos: Vec<Option<Repository>> = Vec::new();
    for ((r, ms), d) in opened.into_iter().zip(&mut report.destinations) {
        d.duration_ms = ms;
        match r {
            Ok((repo, warning)) => {
                report.warnings.extend(warning);
                repos.push(Some(repo));
            }
            Err(e) => {
                d.fail(e.message, e.transient);
                repos.push(None);
            }
        }
    }
    // Back up into the first destination that takes it, by priority.
    let mut primary = None;
    let mut database_failed: Option<(usize, String)> = None;
    for (i, repo) in repos.iter().enumerate() {
        let Some(repo) = repo else { continue };
        let t = Instant::now();
        let result = backup_job(repo, job, opts, progress);
        let d = &mut report.destinations[i];
        d.duration_ms += t.elapsed().as_millis() as u64;
        match result {
            Ok(done) => {
                let mut id = done.id.expect("not a dry run");
                let mut snap = done.snapshot;
                report.bytes_read += snap.summary.bytes_read;
                // Compression is compared with the job's latest backup that
                // read enough to tell (one with nothing changed reads nothing).
                let earlier = job_snapshots(repo, job, &snap.host).unwrap_or_default();
                let baseline = earlier
                    .iter()
                    .rev()
                    .filter(|(e, _)| *e != id)
                    .map(|(_, s)| &s.summary)
                    .find(|s| s.bytes_read >= crate::guard::MIN_BYTES);
                if let Some(why) = job.guard.judge(&snap.summary, baseline) {
                    // Marked before any copy, so every destination holds
                    // it marked, and its retention holds still.
                    match mark_suspicious(repo, &id, opts, progress) {
                        Ok(marked) => (id, snap) = marked,
                        Err(e) => report.warnings.push(format!("marking the snapshot suspicious: {e}")),
                    }
                    report.suspicious = Some(why);
                }
                report.snapshot = Some(snap.metadata(&id));
                d.primary = true;
                d.snapshot = Some(id.to_hex());
                primary = Some((i, id, snap));
                // The database right after the files, into the same
                // destination; the copies below carry both.
                if let Some(pg) = &job.database {
                    let t = Instant::now();
                    match backup_database(repo, job, pg, opts, progress) {
                        Ok(db) => {
                            report.bytes_read += db.snapshot.summary.bytes_read;
                            report.database = Some(db.snapshot.metadata(&db.id.expect("not a dry run")));
                        }
                        Err(e) => {
                            database_failed = Some((i, format!("backup of the database: {}", e.report())));
                        }
                    }
                    report.destinations[i].duration_ms += t.elapsed().as_millis() as u64;
                }
                break;
            }
            Err(e) => {
                let storage = matches!(e, Error::Backend(_));
                d.fail(e.report().to_string(), e.is_transient());
                if !storage || opts.cancel.is_cancelled() {
                    // The sources failed (a dump exited non-zero, …):
                    // another destination would fail alike.
                    report.error = Some(format!("backup into {}: {}", d.name, e.report()));
                    // A lock another operation holds passes; a dump that
                    // failed does not.
                    report.retryable = e.is_transient() && !opts.cancel.is_cancelled();
                    return;
                }
            }
        }
    }
    let Some((p, new_id, new_snap)) = primary else {
        if report.error.is_none() {
            // Each one's reason: the alert a person reads names the cause.
            let why: Vec<String> = report
                .destinations
                .iter()
                .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.name)))
                .collect();
            report.error = Some(format!("no destination could be backed up to ({})", why.join("; ")));
            report.retryable = report.destinations.iter().all(|d| d.retryable);
        }
        return;
    };
    let source = repos[p].as_ref().expect("the primary is open");
    let host = new_snap.host.clone();
    // First the copies, in parallel, each reading the primary under a
    // shared lock; only then retention, whose prune locks the primary
    // exclusively.
    let copies: Vec<(usize, Copied, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = repos
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != p)
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
            .map(|(i, repo)| {
                let warn = Warnings { inner: progress, prefix: report.destinations[i].name.clone() };
                let (host, new_snap) = (&host, &new_snap);
                s.spawn(move || {
                    let t = Instant::now();
                    let r = catch_up(source, repo, job, host, &new_id, new_snap, opts, &warn);
                    (i, r, t.elapsed().as_millis() as u64)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut arrived: Vec<(usize, SnapshotId)> = vec![(p, new_id)];
    for (i, r, ms) in copies {
        let d = &mut report.destinations[i];
        d.duration_ms += ms;
        match r {
            Ok((id, n)) => {
                d.copied = n;
                d.snapshot = Some(id.to_hex());
                arrived.push((i, id));
            }
            Err(e) => d.fail(e.message, e.transient),
        }
    }
    // Then each destination's retention and verification, in parallel:
    // each works on its own repository.
    let finished: Vec<(usize, DestinationReport)> = std::thread::scope(|s| {
        let handles: Vec<_> = arrived
            .iter()
            .map(|(i, id)| {
                let (i, id) = (*i, *id);
                let repo = repos[i].as_ref().expect("arrived destinations are open");
                let mut d = report.destinations[i].clone();
                let host = &host;
                s.spawn(move || {
                    let t = Instant::now();
                    let warn = Warnings { inner: progress, prefix: d.name.clone() };
                    finish(config, repo, job, host, &id, opts, &warn, &mut d);
                    d.duration_ms += t.elapsed().as_millis() as u64;
                    (i, d)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (i, d) in finished {
        report.destinations[i] = d;
    }
    if let Some((i, why)) = database_failed {
        let d = &mut report.destinations[i];
        d.success = false;
        d.fail(why, false);
    }
}
