//! A run from start to end: the engine on a blocking thread, reporting
//! into a progress state the API reads and stopping through its cancel
//! handle; then the history, the metrics, a retry when waiting may cure the
//! failure, and the notifications.

use std::sync::Arc;

use arca_core::ops::restore::{restore, RestoreOptions};
use arca_core::progress::{Progress, State};
use arca_core::{Cancel, SnapshotFilter};
use arca_jobs::config::{Config, EventKind};
use arca_jobs::{job_tag, maintain, open_destination, run, Maintenance, RunOptions, RunReport};
use chrono::{DateTime, Utc};

use super::{lock, Daemon, DaemonOptions, Live};
use crate::notify::{Event, EventDestination};
use crate::schedule::{Enqueued, Queued, RestoreRequest, Task, TaskKind};

/// What a run came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `succeeded`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Failed in a way waiting may cure.
    pub retryable: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The run's document (a run report, or a restore's result).
    pub report: serde_json::Value,
    /// Bytes read, bytes added, files.
    pub figures: (u64, u64, u64),
    /// Per destination.
    pub destinations: Vec<EventDestination>,
    /// Files found damaged or missing.
    pub damaged: Vec<String>,
}

/// Starts run `q` on a blocking thread.
pub(super) fn start(daemon: Arc<Daemon>, q: Queued, now: DateTime<Utc>) {
    let state = Arc::new(State::new());
    let cancel = {
        let mut live = lock(&daemon.live);
        let l = live.entry(q.run_id).or_insert_with(|| Live {
            task: q.task.clone(),
            state: None,
            cancel: Cancel::new(),
            attempt: q.attempt,
            started: None,
        });
        l.task = q.task.clone();
        l.state = Some(state.clone());
        l.attempt = q.attempt;
        l.started = Some(now);
        l.cancel.clone()
    };
    lock(&daemon.history).started(q.run_id, q.attempt, now);
    tracing::info!(job = %q.task.job, run = q.run_id, "starting {} (try {})", q.task.kind.schedule_name(), q.attempt);
    daemon.notify(event(
        EventKind::Start,
        &q.task.job,
        q.task.kind.name(),
        q.task.kind.strategy(),
        Some(q.run_id),
        format!("{} of job {} started (try {})", q.task.kind.schedule_name(), q.task.job, q.attempt),
    ));
    let config = daemon.config();
    let opts = daemon.opts.clone();
    tokio::spawn(async move {
        let task = q.task.clone();
        let c = cancel.clone();
        let st = state.clone();
        let outcome = tokio::task::spawn_blocking(move || execute(&config, &task, &opts, c, &*st))
            .await
            .unwrap_or_else(|e| failed(format!("the run stopped unexpectedly: {e}")));
        let outcome = if cancel.is_cancelled() && outcome.status != "succeeded" {
            Outcome { status: "cancelled", retryable: false, ..outcome }
        } else {
            outcome
        };
        ended(&daemon, q, outcome, now);
    });
}

fn failed(error: String) -> Outcome {
    Outcome {
        status: "failed",
        retryable: false,
        error: Some(error.clone()),
        report: serde_json::json!({ "error": error }),
        figures: (0, 0, 0),
        destinations: Vec::new(),
        damaged: Vec::new(),
    }
}

/// Runs `task` to its end (on a blocking thread).
fn execute(
    config: &Config,
    task: &Task,
    opts: &DaemonOptions,
    cancel: Cancel,
    progress: &dyn Progress,
) -> Outcome {
    let run_opts = RunOptions::default()
        .cancel(cancel)
        .cache_root(opts.cache_root.clone())
        .state_dir(Some(opts.state_dir.clone()));
    let report = match &task.kind {
        TaskKind::Backup(s) => run(config, &task.job, &run_opts.strategy(Some(*s)), progress),
        TaskKind::Retention => maintain(config, &task.job, &Maintenance::Retention, &run_opts, progress),
        TaskKind::Verify { mode, destination } => maintain(
            config,
            &task.job,
            &Maintenance::Verify { mode: mode.clone(), destination: destination.clone() },
            &run_opts,
            progress,
        ),
        TaskKind::Restore(r) => return restore_job(config, r, &run_opts, progress),
    };
    match report {
        Ok(r) => from_report(r),
        Err(e) => failed(e),
    }
}

fn from_report(r: RunReport) -> Outcome {
    let destinations = r
        .destinations
        .iter()
        .map(|d| EventDestination {
            name: d.name.clone(),
            success: d.success,
            snapshot: d.snapshot.clone(),
            error: d.error.clone(),
        })
        .collect();
    let damaged =
        r.destinations.iter().filter_map(|d| d.verify.as_ref()).flat_map(|v| v.damaged.clone()).collect();
    let (added, files) = r.snapshot.as_ref().map_or((0, 0), |s| (s.summary.bytes_added, s.files));
    Outcome {
        status: if r.success { "succeeded" } else { "failed" },
        retryable: r.retryable,
        error: r.error.clone(),
        report: serde_json::to_value(&r).unwrap_or_default(),
        figures: (r.bytes_read, added, files),
        destinations,
        damaged,
    }
}

/// A restore asked for over the API, with the CLI's safety: the engine
/// opens folders relative to their parent and never follows a link out
/// of the target.
fn restore_job(config: &Config, r: &RestoreRequest, opts: &RunOptions, progress: &dyn Progress) -> Outcome {
    let go = || -> Result<Outcome, String> {
        let job = config.job(&r.job)?;
        let dest = r
            .destination
            .clone()
            .or_else(|| job.destinations.first().cloned())
            .ok_or("the job has no destination")?;
        if !job.destinations.contains(&dest) {
            return Err(format!("{dest:?} is not a destination of job {}", r.job));
        }
        if !r.target.is_absolute() {
            return Err(format!("target {} is not an absolute path", r.target.display()));
        }
        let repo = open_destination(config, &dest, opts)?;
        let filter = SnapshotFilter::new().tag(job_tag(&r.job));
        let spec = r.snapshot.clone().unwrap_or_else(|| "latest".into());
        let (id, _) = repo.find_snapshot_matching(&spec, &filter).map_err(|e| e.report().to_string())?;
        let ropts = RestoreOptions::default()
            .target(r.target.clone())
            .include(r.paths.clone())
            .cancel(opts.cancel.clone())
            .lock(opts.lock.clone());
        let result = restore(&repo, &id, &ropts, progress).map_err(|e| e.report().to_string())?;
        let error = (!result.success).then(|| {
            let first =
                result.errors.first().map(|e| format!(": {} ({})", e.path, e.error)).unwrap_or_default();
            format!("{} paths could not be restored{first}", result.errors.len())
        });
        Ok(Outcome {
            status: if result.success { "succeeded" } else { "failed" },
            retryable: false,
            error,
            report: serde_json::to_value(&result).unwrap_or_default(),
            figures: (0, 0, result.files),
            destinations: vec![EventDestination {
                name: dest,
                success: result.success,
                snapshot: Some(id.to_hex()),
                error: None,
            }],
            // Paths that could not be written are the target's trouble, not
            // damage in the repository: they are in the error and the result.
            damaged: Vec::new(),
        })
    };
    go().unwrap_or_else(failed)
}

/// The run's end: retry, or record, measure and tell.
fn ended(daemon: &Arc<Daemon>, q: Queued, outcome: Outcome, started: DateTime<Utc>) {
    let now = Utc::now();
    let job = q.task.job.clone();
    let config = daemon.config();
    lock(&daemon.sched).finished(q.run_id);
    let mut superseded = false;
    let retry = (outcome.status == "failed" && outcome.retryable && !daemon.stopping.is_cancelled())
        .then(|| {
            let policy = config.jobs.get(&job).map(|j| j.retry.clone()).unwrap_or_default();
            crate::retry::delay(&policy, q.attempt, &mut crate::schedule::random_upto)
        })
        .flatten();
    // What the destinations said, for /health.
    {
        let mut u = lock(&daemon.unreachable);
        for d in &outcome.destinations {
            match (&d.error, outcome.retryable) {
                (Some(e), true) => u.insert(d.name.clone(), e.clone()),
                _ => u.remove(&d.name),
            };
        }
    }
    let mut outcome = outcome;
    if let Some(secs) = retry {
        let at = now + chrono::Duration::seconds(secs as i64);
        let error = outcome.error.clone().unwrap_or_default();
        let id = q.run_id;
        let retried = lock(&daemon.sched).retry(q.clone(), at);
        match retried {
            Enqueued::New(_) => {
                tracing::warn!(job = %job, run = id, "try {} failed ({error}); waiting may cure it: try {} in {secs} s", q.attempt, q.attempt + 1);
                lock(&daemon.history).requeued(id, &error);
                if let Some(l) = lock(&daemon.live).get_mut(&id) {
                    l.state = None;
                }
                daemon.metrics_load();
                daemon.wake.notify_one();
                return;
            }
            Enqueued::Joined(other) => {
                // The same work already waits as another run: that one
                // tries again, and alerts if it fails too.
                tracing::warn!(job = %job, run = id, "failed ({error}); run {other}, already waiting, does the work again");
                outcome.error = Some(format!("{error} (run {other}, already waiting, does the work again)"));
                outcome.retryable = false;
                superseded = true;
            }
        }
    }
    lock(&daemon.live).remove(&q.run_id);
    lock(&daemon.history).finished(
        q.run_id,
        outcome.status,
        now,
        outcome.figures,
        outcome.error.as_deref(),
        Some(&outcome.report),
    );
    let seconds = (now - started).num_milliseconds() as f64 / 1000.0;
    daemon.metrics.run_ended(&job, outcome.status, seconds);
    match outcome.status {
        "succeeded" => {
            tracing::info!(job = %job, run = q.run_id, "{} succeeded in {seconds:.1} s", q.task.kind.schedule_name())
        }
        status => tracing::warn!(
            job = %job,
            run = q.run_id,
            "{} {status} after {seconds:.1} s: {}",
            q.task.kind.schedule_name(),
            outcome.error.as_deref().unwrap_or("")
        ),
    }
    if q.task.kind.name() == "backup" {
        daemon.metrics.backed_up(&job, outcome.figures.0, outcome.figures.1);
    }
    for d in outcome.destinations.iter().filter(|d| d.success) {
        if matches!(q.task.kind, TaskKind::Backup(_)) {
            daemon.metrics.succeeded_on(&job, &d.name, now.timestamp_millis() as f64 / 1000.0);
        }
    }
    if matches!(q.task.kind, TaskKind::Verify { .. } | TaskKind::Backup(_)) {
        daemon.metrics.damaged(&job, outcome.damaged.len() as u64);
    }
    daemon.metrics_load();
    daemon.wake.notify_one();
    // Sizes after the run, off the loop: listing a remote repository takes
    // its time.
    if outcome.status != "cancelled" && !matches!(q.task.kind, TaskKind::Restore(_)) {
        let (d2, names) =
            (daemon.clone(), outcome.destinations.iter().map(|d| d.name.clone()).collect::<Vec<_>>());
        tokio::task::spawn_blocking(move || measure(&d2, &names));
    }
    if outcome.status == "cancelled" || superseded {
        return;
    }
    let kind = q.task.kind.schedule_name();
    let mut summary = match outcome.status {
        "succeeded" => format!("{kind} of job {job} succeeded in {seconds:.0} s"),
        _ => format!("{kind} of job {job} failed after {} tries", q.attempt),
    };
    let per: Vec<String> = outcome
        .destinations
        .iter()
        .map(|d| format!("{} {}", d.name, if d.success { "ok" } else { "FAILED" }))
        .collect();
    if !per.is_empty() {
        summary.push_str(&format!(" ({})", per.join(", ")));
    }
    let result_kind = if outcome.status == "succeeded" { EventKind::Success } else { EventKind::Failure };
    let mut e =
        event(result_kind, &job, q.task.kind.name(), q.task.kind.strategy(), Some(q.run_id), summary.clone());
    e.result = Some(if outcome.status == "succeeded" { "success".into() } else { "failure".into() });
    e.error = outcome.error.clone();
    e.destinations = outcome.destinations.clone();
    if !outcome.damaged.is_empty() {
        let mut d = e.clone();
        d.kind = EventKind::Damage;
        d.summary = format!("{kind} of job {job} found {} damaged or missing files", outcome.damaged.len());
        d.damaged = outcome.damaged.clone();
        daemon.notify(d);
    }
    daemon.notify(e);
}

/// Measures each destination's size and snapshot count, for the metrics
/// and the size history.
fn measure(daemon: &Daemon, names: &[String]) {
    let config = daemon.config();
    for name in names {
        let measured = open_destination(
            &config,
            name,
            &RunOptions::default().cache_root(daemon.opts.cache_root.clone()),
        )
        .and_then(|repo| arca_core::ops::status::status(&repo).map_err(|e| e.report().to_string()));
        match measured {
            Ok(s) => {
                daemon.metrics.repository(name, s.total_size, s.snapshots as u64);
                lock(&daemon.history).record_size(name, Utc::now(), s.total_size, s.snapshots as u64);
            }
            Err(e) => tracing::warn!("measuring destination {name}: {e}"),
        }
    }
}

/// An event about `job` at this moment.
pub(super) fn event(
    kind: EventKind,
    job: &str,
    task: &str,
    strategy: Option<arca_core::Strategy>,
    run_id: Option<i64>,
    summary: String,
) -> Event {
    Event {
        kind,
        job: job.to_string(),
        task: task.to_string(),
        strategy: strategy.map(|s| s.as_str().to_string()),
        run_id,
        time: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        host: arca_core::hostname(),
        result: None,
        summary,
        error: None,
        destinations: Vec::new(),
        damaged: Vec::new(),
    }
}
