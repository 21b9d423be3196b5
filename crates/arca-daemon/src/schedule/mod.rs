//! When runs start: the plans (one per schedule line of a job) say what is
//! due, the queue holds what waits, and [`Scheduler::dispatch`] starts what
//! may start. Everything here is driven by the time it is given, never by
//! the system clock, so tests play days of schedules, clock jumps,
//! daylight saving changes and blackout windows in microseconds.

mod plan;
mod queue;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use arca_core::Strategy;
use arca_jobs::config::{BlackoutPolicy, Config, Priority, VerifyAfter};
use chrono::{DateTime, Utc};

pub use plan::{Due, Plan, GRACE};
pub use queue::{Enqueued, Queue, Queued};

/// What a run does.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    /// A backup of the job (with copies, retention and verification after,
    /// as `arca run`).
    Backup(Strategy),
    /// Retention (forget and prune) on every destination.
    Retention,
    /// Verification of the job's latest snapshot on its destinations (or
    /// one of them).
    Verify {
        /// What is checked.
        mode: VerifyAfter,
        /// One destination, or every one.
        destination: Option<String>,
    },
    /// A restore of a snapshot of the job into a folder of this machine.
    Restore(RestoreRequest),
}

/// What `POST /api/restores` asks for.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct RestoreRequest {
    /// The job whose snapshot is restored.
    pub job: String,
    /// The destination it is read from (default: the job's first).
    #[serde(default)]
    pub destination: Option<String>,
    /// The snapshot (id or prefix; default: the job's latest).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Only these paths of the snapshot (default: all of it).
    #[serde(default)]
    pub paths: Vec<String>,
    /// The folder restored into (absolute; made when missing).
    pub target: PathBuf,
}

impl TaskKind {
    /// Its name: `backup`, `retention`, `verify`, `restore`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Backup(_) => "backup",
            TaskKind::Retention => "retention",
            TaskKind::Verify { .. } => "verify",
            TaskKind::Restore(_) => "restore",
        }
    }

    /// Its schedule line's name: `full`, `incremental`, `differential`,
    /// `retention`, `verify`.
    pub fn schedule_name(&self) -> &'static str {
        match self {
            TaskKind::Backup(s) => s.as_str(),
            other => other.name(),
        }
    }

    /// The strategy of a backup.
    pub fn strategy(&self) -> Option<Strategy> {
        match self {
            TaskKind::Backup(s) => Some(*s),
            _ => None,
        }
    }
}

/// How much a backup reads: a full run does everything an incremental one
/// would, so a full request absorbs an incremental one, never the reverse.
pub fn strength(s: Strategy) -> u8 {
    match s {
        Strategy::Incremental => 0,
        Strategy::Differential => 1,
        Strategy::Full => 2,
    }
}

/// A run of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The job.
    pub job: String,
    /// What it does.
    pub kind: TaskKind,
}

impl Task {
    /// Whether `other` does the same work (backups of any strategy are the
    /// same work; restores never are).
    pub fn same_work(&self, other: &Task) -> bool {
        self.job == other.job
            && match (&self.kind, &other.kind) {
                (TaskKind::Backup(_), TaskKind::Backup(_)) => true,
                (TaskKind::Restore(_), _) | (_, TaskKind::Restore(_)) => false,
                (a, b) => a == b,
            }
    }

    /// The destinations it works on, by name.
    pub fn destinations(&self, config: &Config) -> Vec<String> {
        let all = || config.jobs.get(&self.job).map(|j| j.destinations.clone()).unwrap_or_default();
        match &self.kind {
            TaskKind::Verify { destination: Some(d), .. } => vec![d.clone()],
            TaskKind::Restore(r) => match &r.destination {
                Some(d) => vec![d.clone()],
                None => all().into_iter().take(1).collect(),
            },
            _ => all(),
        }
    }
}

/// Why a run was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its scheduled time came.
    Schedule,
    /// Scheduled times were missed; this one run catches up.
    CatchUp,
    /// Asked for over the API.
    Api,
}

impl Trigger {
    /// As stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::Api => "api",
        }
    }
}

/// What the scheduler decided, for the daemon to record, log and notify.
#[derive(Debug, Clone)]
pub enum Decision {
    /// A run waits as `run_id`.
    Queued {
        /// Its id.
        run_id: i64,
        /// What it runs.
        task: Task,
        /// Why.
        trigger: Trigger,
    },
    /// A request joined the waiting run `run_id` of the same work.
    Joined {
        /// The run joined.
        run_id: i64,
        /// What was asked.
        task: Task,
    },
    /// A scheduled time came while the same work was running: it is not
    /// started twice.
    Coalesced {
        /// What was due.
        task: Task,
        /// The run still going.
        running: i64,
    },
    /// Scheduled times passed without their run.
    Missed {
        /// The job.
        job: String,
        /// The schedule line.
        kind: TaskKind,
        /// How many times.
        missed: u32,
        /// The latest of them.
        latest: DateTime<Utc>,
        /// Why: a restart or clock jump, or a blackout window's skip
        /// policy.
        reason: String,
        /// The catch-up run, if one was queued.
        run_id: Option<i64>,
    },
    /// A waiting run was dropped without running (a blackout window with
    /// `policy = "skip"`).
    Skipped {
        /// The run.
        queued: Queued,
        /// Why.
        reason: String,
    },
    /// Start this run now.
    Start(Queued),
}

/// What the machine looks like, for the conditions a run waits on.
pub trait Conditions {
    /// The 1-minute load average divided by the number of cores.
    fn load_per_core(&self) -> Option<f64>;
    /// Free bytes on the file system holding `path`.
    fn free_space(&self, path: &std::path::Path) -> Option<u64>;
}

/// A run going on.
#[derive(Debug, Clone)]
pub struct Running {
    /// What it runs.
    pub queued: Queued,
    /// The destinations it holds.
    pub destinations: Vec<String>,
    /// Since when.
    pub started: DateTime<Utc>,
}

/// The plans, the queue and the runs going on.
pub struct Scheduler {
    config: Arc<Config>,
    plans: Vec<Plan>,
    queue: Queue,
    running: BTreeMap<i64, Running>,
}

/// A uniform random number in `0..=max` (jitter), from the system's
/// random source; tests give their own.
pub fn random_upto(max: u64) -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b) % (max + 1)
}

impl Scheduler {
    /// The plans of every job of `config`, each resuming from its
    /// `last_slots` entry (by [`Plan::key`]) or from `now`.
    pub fn new(
        config: Arc<Config>,
        last_slots: &HashMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
        jitter: &mut dyn FnMut(u64) -> u64,
    ) -> Scheduler {
        let plans = plans(&config, last_slots, now, jitter);
        Scheduler { config, plans, queue: Queue::default(), running: BTreeMap::new() }
    }

    /// A new configuration: plans are made anew, each keeping its progress
    /// when its job and line remain; waiting and running runs stay.
    pub fn reload(&mut self, config: Arc<Config>, now: DateTime<Utc>, jitter: &mut dyn FnMut(u64) -> u64) {
        let last: HashMap<String, DateTime<Utc>> =
            self.plans.iter().map(|p| (p.key(), p.last_slot)).collect();
        self.plans = plans(&config, &last, now, jitter);
        self.config = config;
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The plans.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// The waiting runs.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The runs going on.
    pub fn running(&self) -> &BTreeMap<i64, Running> {
        &self.running
    }

    /// Queues what is due at `now`; `new_id` gives a new run its id.
    pub fn tick(
        &mut self,
        now: DateTime<Utc>,
        new_id: &mut dyn FnMut(&Task, Trigger) -> i64,
        jitter: &mut dyn FnMut(u64) -> u64,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        let mut due = Vec::new();
        for p in &mut self.plans {
            if let Some(d) = p.poll(now, jitter) {
                due.push((Task { job: p.job.clone(), kind: p.kind.clone() }, d));
            }
        }
        // Lines due together (a full and an incremental at midnight): the
        // stronger backup goes first, and the other joins it.
        due.sort_by_key(|(t, _)| std::cmp::Reverse(t.kind.strategy().map_or(0, strength)));
        for (task, d) in due {
            match d {
                Due::Run => out.extend(self.enqueue(task, Trigger::Schedule, now, new_id)),
                Due::Missed { missed, latest, run } => {
                    let mut run_id = None;
                    if run {
                        let d = self.enqueue(task.clone(), Trigger::CatchUp, now, new_id);
                        if let Some(
                            Decision::Queued { run_id: id, .. } | Decision::Joined { run_id: id, .. },
                        ) = &d
                        {
                            run_id = Some(*id);
                        }
                        out.extend(d);
                    }
                    let reason = format!(
                        "{missed} scheduled time{} passed while the daemon was not running or the clock jumped",
                        if missed == 1 { "" } else { "s" }
                    );
                    out.push(Decision::Missed {
                        job: task.job,
                        kind: task.kind,
                        missed,
                        latest,
                        reason,
                        run_id,
                    });
                }
            }
        }
        out
    }

    /// Queues `task` for `trigger`: joins the same work already waiting
    /// (a first try, or a retry waiting for its delay: that retry will do
    /// the work);
    /// a scheduled time that finds the same work running is coalesced into
    /// it, unless it asks for a stronger backup (a weekly full during a
    /// long incremental runs after it).
    pub fn enqueue(
        &mut self,
        task: Task,
        trigger: Trigger,
        now: DateTime<Utc>,
        new_id: &mut dyn FnMut(&Task, Trigger) -> i64,
    ) -> Option<Decision> {
        let priority = self.priority(&task.job);
        if let Some(w) = self.queue.find_work(&task) {
            let id = w.run_id;
            self.queue.push(Queued::first(id, task.clone(), priority, trigger, now));
            return Some(Decision::Joined { run_id: id, task });
        }
        if trigger != Trigger::Api {
            let busy = self.running.values().find(|r| r.queued.task.same_work(&task)).map(|r| {
                let stronger = match (&task.kind, &r.queued.task.kind) {
                    (TaskKind::Backup(new), TaskKind::Backup(old)) => strength(*new) > strength(*old),
                    _ => false,
                };
                (r.queued.run_id, stronger)
            });
            if let Some((running, false)) = busy {
                return Some(Decision::Coalesced { task, running });
            }
        }
        let run_id = new_id(&task, trigger);
        self.queue.push(Queued::first(run_id, task.clone(), priority, trigger, now));
        Some(Decision::Queued { run_id, task, trigger })
    }

    /// Puts a run that failed in a way waiting may cure back in the
    /// queue, to start at `at` at the earliest.
    /// When the same work already waits (a person asked during the run,
    /// or a stronger backup came due), that run does it instead: the
    /// answer is [`Enqueued::Joined`] with its id, and this run is over.
    pub fn retry(&mut self, mut q: Queued, at: DateTime<Utc>) -> Enqueued {
        q.attempt += 1;
        q.not_before = Some(at);
        q.waiting = Some(format!("try {} at {}", q.attempt, at.to_rfc3339()));
        self.queue.push(q)
    }

    /// Takes waiting run `id` out of the queue.
    pub fn cancel_queued(&mut self, id: i64) -> Option<Queued> {
        self.queue.remove(id)
    }

    /// Run `id` ended.
    pub fn finished(&mut self, id: i64) -> Option<Running> {
        self.running.remove(&id)
    }

    fn priority(&self, job: &str) -> Priority {
        self.config.jobs.get(job).and_then(|j| j.schedule.as_ref()).map_or(Priority::Normal, |s| s.priority)
    }

    /// Starts what may start at `now`, in priority order; notes on each run
    /// left waiting why it waits.
    pub fn dispatch(&mut self, now: DateTime<Utc>, conditions: &dyn Conditions) -> Vec<Decision> {
        let mut out = Vec::new();
        let max = self.config.daemon.max_concurrent_jobs as usize;
        let mut busy: Vec<(String, i64)> = self
            .running
            .values()
            .flat_map(|r| r.destinations.iter().map(move |d| (d.clone(), r.queued.run_id)))
            .collect();
        let mut running = self.running.len();
        let mut load = None;
        let mut start = Vec::new();
        let mut skip = Vec::new();
        let config = self.config.clone();
        for q in self.queue.ordered() {
            let Some(job) = config.jobs.get(&q.task.job) else {
                skip.push((q.run_id, format!("job {} is no longer in the configuration", q.task.job)));
                continue;
            };
            let waiting = (|| {
                if let Some(at) = q.not_before.filter(|t| *t > now) {
                    return Some(format!("try {} at {}", q.attempt, at.to_rfc3339()));
                }
                // A person asking over the API means now: windows and
                // thresholds are for scheduled runs.
                if q.trigger != Trigger::Api {
                    for b in config.blackouts.iter().filter(|b| b.holds(&job.name)) {
                        if let Some(end) = b.end_if_inside(now) {
                            let why = format!("inside a blackout window until {}", end.to_rfc3339());
                            if b.policy == BlackoutPolicy::Skip {
                                return Some(format!("skip: {why}"));
                            }
                            return Some(why);
                        }
                    }
                    let schedule = job.schedule.as_ref();
                    let limit =
                        schedule.and_then(|s| s.max_load_per_core).or(config.daemon.max_load_per_core);
                    if let Some(limit) = limit {
                        let l = *load.get_or_insert_with(|| conditions.load_per_core());
                        if let Some(l) = l.filter(|l| *l > limit) {
                            return Some(format!("load {l:.2} per core is above {limit}"));
                        }
                    }
                    if let (Some(min), arca_jobs::config::Source::Paths(paths)) =
                        (schedule.and_then(|s| s.min_free_space), &job.source)
                    {
                        if let Some(free) = paths.first().and_then(|p| conditions.free_space(p)) {
                            if free < min {
                                return Some(format!(
                                    "{} has {} bytes free, below min_free_space {min}",
                                    paths[0].display(),
                                    free
                                ));
                            }
                        }
                    }
                }
                if running >= max {
                    return Some(format!("{running} runs going on (max_concurrent_jobs = {max})"));
                }
                let dests = q.task.destinations(&config);
                if let Some((d, id)) = busy.iter().find(|(d, _)| dests.contains(d)) {
                    return Some(format!("destination {d} is busy with run {id}"));
                }
                None
            })();
            match waiting {
                Some(why) if why.starts_with("skip: ") => {
                    skip.push((q.run_id, why["skip: ".len()..].to_string()));
                }
                Some(why) => q.waiting = Some(why),
                None => {
                    q.waiting = None;
                    running += 1;
                    busy.extend(q.task.destinations(&config).into_iter().map(|d| (d, q.run_id)));
                    start.push(q.run_id);
                }
            }
        }
        for (id, reason) in skip {
            if let Some(queued) = self.queue.remove(id) {
                out.push(Decision::Skipped { queued, reason });
            }
        }
        for id in start {
            if let Some(q) = self.queue.remove(id) {
                let destinations = q.task.destinations(&self.config);
                self.running.insert(id, Running { queued: q.clone(), destinations, started: now });
                out.push(Decision::Start(q));
            }
        }
        out
    }

    /// The earliest time a plan is due or a retry may start.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let plans = self.plans.iter().filter_map(Plan::due_at);
        let retries = self.queue.iter().filter_map(|q| q.not_before);
        plans.chain(retries).min()
    }
}

fn plans(
    config: &Config,
    last_slots: &HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
    jitter: &mut dyn FnMut(u64) -> u64,
) -> Vec<Plan> {
    let mut out = Vec::new();
    for job in config.jobs.values() {
        let Some(s) = &job.schedule else { continue };
        let lines = s
            .backups
            .iter()
            .map(|(st, c)| (TaskKind::Backup(*st), c))
            .chain(s.retention.iter().map(|c| (TaskKind::Retention, c)))
            .chain(
                s.verify
                    .iter()
                    .map(|c| (TaskKind::Verify { mode: s.verify_mode.clone(), destination: None }, c)),
            );
        for (kind, cron) in lines {
            let key = format!("{}/{}", job.name, kind.schedule_name());
            let last = last_slots.get(&key).copied().unwrap_or(now);
            out.push(Plan::new(&job.name, kind, cron.clone(), s.tz, s.jitter_secs, s.missed, last, jitter));
        }
    }
    out
}
