//! The daemon: one loop that wakes at the next due time (or every second,
//! so that a suspended machine or a clock jump is noticed), asks the
//! scheduler what is due and what may start, and starts runs on blocking
//! threads; the HTTP API beside it; SIGTERM stops both, cancelling the
//! runs through the core; SIGHUP reloads arca.toml.

mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arca_core::progress::State;
use arca_core::Cancel;
use arca_jobs::config::{Config, EventKind};
use chrono::{DateTime, Utc};

use crate::history::History;
use crate::metrics::Metrics;
use crate::notify::{Event, Notifier};
use crate::schedule::{random_upto, Decision, Scheduler, Task, Trigger};

pub use worker::Outcome;

/// How the daemon is started (`arca daemon`).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// arca.toml.
    pub config_path: PathBuf,
    /// Overrides `[daemon] listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `[daemon] token_file`.
    pub token_file: Option<PathBuf>,
    /// The history database, the token and the jobs' last runs go here.
    pub state_dir: PathBuf,
    /// Repository caches.
    pub cache_root: Option<PathBuf>,
}

/// A run the daemon knows is not over: waiting or going on.
#[derive(Clone)]
pub struct Live {
    /// What it runs.
    pub task: Task,
    /// Its progress, while it runs.
    pub state: Option<Arc<State>>,
    /// Stops it.
    pub cancel: Cancel,
    /// Its try.
    pub attempt: u32,
    /// When its try started.
    pub started: Option<DateTime<Utc>>,
}

/// What the loop, the runs and the API share.
pub struct Daemon {
    pub(crate) sched: Mutex<Scheduler>,
    pub(crate) live: Mutex<HashMap<i64, Live>>,
    pub(crate) history: Mutex<History>,
    pub(crate) notifier: Mutex<Arc<Notifier>>,
    pub(crate) metrics: Metrics,
    pub(crate) token: String,
    pub(crate) opts: DaemonOptions,
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) stopping: Cancel,
    /// Destinations that did not answer in the latest run that tried
    /// them, with why (for `/health`).
    pub(crate) unreachable: Mutex<HashMap<String, String>>,
}

/// Locks `m`, taking the data of a holder that panicked (nothing here is
/// left half-changed by a panic that matters more than stopping would).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Daemon {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        lock(&self.sched).config().clone()
    }

    /// Queues `task` as a person asked (the API); the run's id, and
    /// whether it joined a run already waiting.
    pub fn request(&self, task: Task) -> (i64, bool) {
        let now = Utc::now();
        let decision = {
            let mut s = lock(&self.sched);
            let h = lock(&self.history);
            s.enqueue(task, Trigger::Api, now, &mut |t, trig| queue_row(&h, t, trig, now))
        };
        self.wake.notify_one();
        match decision {
            Some(Decision::Joined { run_id, .. }) => {
                self.joined(run_id);
                (run_id, true)
            }
            Some(Decision::Queued { run_id, .. }) => (run_id, false),
            other => unreachable!("a request is queued or joins: {other:?}"),
        }
    }

    /// Cancels run `id`: a waiting run is dropped, a running one stopped
    /// through the core (its end is recorded when its engine returns).
    /// Whether it was found not over.
    pub fn cancel(&self, id: i64) -> bool {
        // Its own statement: the scheduler's lock is let go before the
        // metrics take it again.
        let waiting = lock(&self.sched).cancel_queued(id);
        if waiting.is_some() {
            lock(&self.live).remove(&id);
            lock(&self.history).finished(
                id,
                "cancelled",
                Utc::now(),
                (0, 0, 0),
                Some("cancelled over the API"),
                None,
            );
            self.metrics_load();
            return true;
        }
        let running = lock(&self.live).get(&id).map(|l| l.cancel.clone());
        match running {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }

    /// A request joined waiting run `id`, which may now back up with a
    /// stronger strategy: the history says which.
    fn joined(&self, id: i64) {
        let strategy = lock(&self.sched).queue().get(id).and_then(|q| q.task.kind.strategy());
        if let Some(st) = strategy {
            lock(&self.history).set_strategy(id, st.as_str());
        }
    }

    pub(crate) fn metrics_load(&self) {
        let s = lock(&self.sched);
        self.metrics.load(s.queue().len(), s.running().len());
    }

    /// Sends `event` to the job's and the file's notifications, in the
    /// background.
    pub(crate) fn notify(self: &Arc<Self>, event: Event) {
        let config = self.config();
        let notifier = lock(&self.notifier).clone();
        tokio::spawn(async move {
            let job_targets = config.jobs.get(&event.job).map(|j| j.notify.clone()).unwrap_or_default();
            let targets: Vec<_> = job_targets.iter().chain(config.notify.iter()).collect();
            if targets.is_empty() {
                return;
            }
            // Each failed delivery is logged by the notifier, naming the
            // channel masked.
            notifier.send(&event, &targets).await;
        });
    }

    /// One pass of the loop at `now`: queue what is due, start what may.
    fn step(self: &Arc<Self>, now: DateTime<Utc>) {
        let mut decisions = {
            let mut s = lock(&self.sched);
            let h = lock(&self.history);
            let d = s.tick(now, &mut |t, trig| queue_row(&h, t, trig, now), &mut random_upto);
            if !d.is_empty() {
                for p in s.plans() {
                    h.set_last_slot(&p.key(), p.last_slot);
                }
            }
            d
        };
        decisions.extend(lock(&self.sched).dispatch(now, &crate::machine::Machine));
        for d in decisions {
            self.decided(d, now);
        }
        self.metrics_load();
    }

    fn decided(self: &Arc<Self>, d: Decision, now: DateTime<Utc>) {
        match d {
            Decision::Queued { run_id, task, trigger } => {
                tracing::info!(job = %task.job, run = run_id, "queued {} ({})", task.kind.schedule_name(), trigger.name());
                let cancel = Cancel::new();
                lock(&self.live)
                    .insert(run_id, Live { task, state: None, cancel, attempt: 1, started: None });
            }
            Decision::Joined { run_id, task } => {
                tracing::info!(job = %task.job, run = run_id, "{} joins the waiting run", task.kind.schedule_name());
                self.joined(run_id);
            }
            Decision::Coalesced { task, running } => {
                tracing::info!(job = %task.job, run = running, "{} is due while the job still runs: not started twice", task.kind.schedule_name());
                self.metrics.coalesced(&task.job);
            }
            Decision::Missed { job, kind, missed, latest, reason, run_id } => {
                self.metrics.missed(&job, u64::from(missed));
                let what = match run_id {
                    Some(id) => format!("one run catches up (run {id})"),
                    None => "skipped (missed = \"skip\")".to_string(),
                };
                tracing::warn!(job = %job, "{} schedule: {reason}; {what}", kind.schedule_name());
                let summary = format!(
                    "{} schedule of job {job}: {reason} (the latest at {}); {what}",
                    kind.schedule_name(),
                    latest.to_rfc3339()
                );
                self.notify(worker::event(
                    EventKind::Missed,
                    &job,
                    kind.name(),
                    kind.strategy(),
                    run_id,
                    summary,
                ));
            }
            Decision::Skipped { queued, reason } => {
                let job = queued.task.job.clone();
                tracing::warn!(job = %job, run = queued.run_id, "skipped: {reason}");
                lock(&self.live).remove(&queued.run_id);
                lock(&self.history).finished(
                    queued.run_id,
                    "cancelled",
                    now,
                    (0, 0, 0),
                    Some(&format!("skipped: {reason}")),
                    None,
                );
                self.metrics.missed(&job, 1);
                let summary = format!("{} of job {job} skipped: {reason}", queued.task.kind.schedule_name());
                self.notify(worker::event(
                    EventKind::Missed,
                    &job,
                    queued.task.kind.name(),
                    queued.task.kind.strategy(),
                    Some(queued.run_id),
                    summary,
                ));
            }
            Decision::Start(q) => {
                let lag = (now - q.not_before.unwrap_or(q.enqueued)).num_milliseconds() as f64 / 1000.0;
                self.metrics.lag(&q.task.job, lag.max(0.0));
                worker::start(self.clone(), q, now);
            }
        }
    }

    /// Reads arca.toml again; a file with mistakes is refused and the
    /// configuration in force kept.
    pub fn reload(&self) -> Result<(), String> {
        let config = Config::load(&self.opts.config_path).map_err(|e| e.to_string())?;
        *lock(&self.notifier) = Arc::new(Notifier::new(config.daemon.smtp.clone()));
        lock(&self.sched).reload(Arc::new(config), Utc::now(), &mut random_upto);
        self.wake.notify_one();
        Ok(())
    }
}

/// Metrics start from the history, so that a restart does not make a job
/// look as if it never succeeded: each job's latest success per
/// destination and its latest backup's result.
fn seed_metrics(history: &History, metrics: &Metrics, config: &Config) {
    for job in config.jobs.keys() {
        let backups: Vec<_> = history
            .runs(Some(job), 200, None)
            .into_iter()
            .filter(|r| r.task == "backup" && (r.status == "succeeded" || r.status == "failed"))
            .collect();
        if let Some(latest) = backups.first() {
            metrics.last_status(job, latest.status == "succeeded");
        }
        let mut seen = std::collections::HashSet::new();
        for r in &backups {
            let (Some(report), Some(end)) = (&r.report, &r.finished_at) else { continue };
            let Ok(end) = end.parse::<DateTime<Utc>>() else { continue };
            let destinations = report["destinations"].as_array().cloned().unwrap_or_default();
            for d in destinations.iter().filter(|d| d["success"] == true) {
                if let Some(name) = d["name"].as_str().filter(|n| seen.insert(n.to_string())) {
                    metrics.succeeded_on(job, name, end.timestamp_millis() as f64 / 1000.0);
                }
            }
        }
    }
}

fn queue_row(h: &History, t: &Task, trig: Trigger, now: DateTime<Utc>) -> i64 {
    h.queue(&t.job, t.kind.name(), t.kind.strategy().map(|s| s.as_str()), trig.name(), now)
}

/// Runs the daemon until SIGTERM or SIGINT: reads the configuration,
/// opens the history, serves the API, and runs the schedules.
pub fn run(opts: DaemonOptions) -> Result<(), String> {
    let config = Config::load(&opts.config_path).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| format!("state folder {}: {e}", opts.state_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&opts.state_dir, std::fs::Permissions::from_mode(0o700));
    }
    let token_file = opts
        .token_file
        .clone()
        .or_else(|| config.daemon.token_file.clone())
        .unwrap_or_else(|| opts.state_dir.join("daemon.token"));
    let token = crate::token::load_or_create(&token_file)?;
    let history = History::open(&opts.state_dir.join("history.sqlite"))?;
    let metrics = Metrics::new();
    let cutoff = Utc::now() - chrono::Duration::seconds(config.daemon.history_max_age_secs);
    history.prune(cutoff);
    seed_metrics(&history, &metrics, &config);
    let listen = opts.listen.unwrap_or(config.daemon.listen);
    let tls = config.daemon.tls.clone();
    let now = Utc::now();
    let sched = Scheduler::new(Arc::new(config.clone()), &history.last_slots(), now, &mut random_upto);
    let daemon = Arc::new(Daemon {
        sched: Mutex::new(sched),
        live: Mutex::new(HashMap::new()),
        history: Mutex::new(history),
        notifier: Mutex::new(Arc::new(Notifier::new(config.daemon.smtp.clone()))),
        metrics,
        token,
        opts,
        wake: tokio::sync::Notify::new(),
        stopping: Cancel::new(),
        unreachable: Mutex::new(HashMap::new()),
    });
    let runtime = crate::server_runtime()?;
    runtime.block_on(serve(daemon, listen, tls))
}

async fn serve(
    daemon: Arc<Daemon>,
    listen: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("listening on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    if !bound.ip().is_loopback() && tls.is_none() {
        tracing::warn!("the API listens on {bound}, beyond this machine, without TLS: set tls_cert and tls_key in [daemon]");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The one line a supervisor or a test waits for.
    tracing::info!("listening on {scheme}://{bound}");
    let app = crate::api::router(daemon.clone());
    let server = {
        let daemon = daemon.clone();
        tokio::spawn(async move { crate::api::serve(listener, app, tls, daemon.stopping.clone()).await })
    };
    let scheduler = tokio::spawn(run_loop(daemon.clone()));
    signals(daemon.clone()).await;
    tracing::info!("stopping: cancelling the runs going on");
    daemon.stopping.cancel();
    daemon.wake.notify_one();
    let live: Vec<Live> = lock(&daemon.live).values().cloned().collect();
    for l in &live {
        l.cancel.cancel();
    }
    // Engines stop at their next check; give them time to leave the
    // repositories resumable and their runs recorded.
    for _ in 0..600 {
        if lock(&daemon.sched).running().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Runs that never started are recorded cancelled too.
    let waiting: Vec<i64> = lock(&daemon.sched).queue().iter().map(|q| q.run_id).collect();
    for id in waiting {
        lock(&daemon.history).finished(
            id,
            "cancelled",
            Utc::now(),
            (0, 0, 0),
            Some("the daemon stopped"),
            None,
        );
    }
    scheduler.abort();
    // The server stops taking connections and waits for those open to
    // end: a client that keeps one open (an event stream left open) must
    // not keep the daemon from stopping.
    if tokio::time::timeout(Duration::from_secs(10), server).await.is_err() {
        tracing::warn!("connections still open 10 s after the stop: closed");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn signals(daemon: Arc<Daemon>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot listen for signals");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => match daemon.reload() {
                Ok(()) => tracing::info!("reloaded {}", daemon.opts.config_path.display()),
                // One line: the journal keeps a line as one entry.
                Err(e) => tracing::error!("reload refused, the configuration in force stays: {}", e.replace('\n', "; ")),
            },
        }
    }
}

async fn run_loop(daemon: Arc<Daemon>) {
    let mut pruned = Utc::now();
    loop {
        if daemon.stopping.is_cancelled() {
            return;
        }
        let now = Utc::now();
        daemon.step(now);
        // The history keeps history_max_age: looked at hourly.
        if now - pruned > chrono::Duration::hours(1) {
            pruned = now;
            let cutoff = now - chrono::Duration::seconds(daemon.config().daemon.history_max_age_secs);
            let n = lock(&daemon.history).prune(cutoff);
            if n > 0 {
                tracing::info!("dropped {n} runs older than history_max_age from the history");
            }
        }
        let next = lock(&daemon.sched).next_wake();
        // At most a second: the wall clock is read again, so a suspend or
        // a clock change is seen at once.
        let wait = next
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = daemon.wake.notified() => {}
        }
    }
}
