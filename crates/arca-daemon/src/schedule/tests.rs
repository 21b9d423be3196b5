//! The scheduler against a clock the tests move: downtime, clock jumps,
//! daylight saving changes, overlap, concurrency, blackout windows,
//! conditions and retries.

use super::*;
use arca_jobs::config::Config;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn config(jobs: &str, extra: &str) -> Arc<Config> {
    let text = format!(
        r#"
[repositories.a]
url = "/a"
password_env = "PW"
[repositories.b]
url = "/b"
password_env = "PW"
{extra}
{jobs}
"#
    );
    Arc::new(Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}")))
}

struct Machine {
    load: Option<f64>,
    free: Option<u64>,
}

impl Conditions for Machine {
    fn load_per_core(&self) -> Option<f64> {
        self.load
    }
    fn free_space(&self, _: &std::path::Path) -> Option<u64> {
        self.free
    }
}

const IDLE: Machine = Machine { load: Some(0.1), free: Some(u64::MAX) };

/// A scheduler and a counter of run ids.
struct Rig {
    s: Scheduler,
    next: i64,
}

fn no_jitter(_: u64) -> u64 {
    0
}

impl Rig {
    fn new(config: Arc<Config>, now: DateTime<Utc>) -> Rig {
        Rig { s: Scheduler::new(config, &HashMap::new(), now, &mut no_jitter), next: 1 }
    }

    fn resume(config: Arc<Config>, last: &[(&str, DateTime<Utc>)], now: DateTime<Utc>) -> Rig {
        let last = last.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Rig { s: Scheduler::new(config, &last, now, &mut no_jitter), next: 1 }
    }

    fn tick(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let next = &mut self.next;
        self.s.tick(
            now,
            &mut |_, _| {
                *next += 1;
                *next - 1
            },
            &mut no_jitter,
        )
    }

    fn api(&mut self, job: &str, kind: TaskKind, now: DateTime<Utc>) -> Option<Decision> {
        let next = &mut self.next;
        self.s.enqueue(Task { job: job.into(), kind }, Trigger::Api, now, &mut |_, _| {
            *next += 1;
            *next - 1
        })
    }

    /// Queues what is due, then starts and ends every run that may
    /// start: the queued runs.
    fn tick_and_run(&mut self, now: DateTime<Utc>) -> Vec<(i64, Trigger)> {
        let q = queued(&self.tick(now));
        for s in self.start(now, &IDLE) {
            self.s.finished(s.run_id);
        }
        q
    }

    /// The runs started at `now`.
    fn start(&mut self, now: DateTime<Utc>, m: &Machine) -> Vec<Queued> {
        self.s
            .dispatch(now, m)
            .into_iter()
            .filter_map(|d| match d {
                Decision::Start(q) => Some(q),
                _ => None,
            })
            .collect()
    }
}

fn queued(d: &[Decision]) -> Vec<(i64, Trigger)> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Queued { run_id, trigger, .. } => Some((*run_id, *trigger)),
            _ => None,
        })
        .collect()
}

const EVERY_10_MIN: &str = r#"
[jobs.home]
sources = ["/home"]
destinations = ["a"]
schedule = { incremental = "*/10 * * * *", tz = "UTC" }
"#;

#[test]
fn a_schedule_runs_on_time_once_per_time() {
    let mut r = Rig::new(config(EVERY_10_MIN, ""), t("2026-12-07T12:00:30Z"));
    assert!(r.tick(t("2026-12-07T12:09:59Z")).is_empty());
    let d = r.tick(t("2026-12-07T12:10:00Z"));
    assert_eq!(queued(&d), vec![(1, Trigger::Schedule)]);
    assert!(r.tick(t("2026-12-07T12:10:00Z")).is_empty(), "the same time does not queue twice");
    assert!(r.tick(t("2026-12-07T12:10:05Z")).is_empty());
    assert_eq!(r.s.plans()[0].next_slot(), Some(t("2026-12-07T12:20:00Z")));
    assert_eq!(r.s.next_wake(), Some(t("2026-12-07T12:20:00Z")));
}

#[test]
fn after_downtime_a_missed_schedule_runs_once_not_once_per_missed_time() {
    // The daemon last handled 12:00 and comes back at 14:35: 15 times
    // passed (12:10 … 14:30).
    let mut r = Rig::resume(
        config(EVERY_10_MIN, ""),
        &[("home/incremental", t("2026-12-07T12:00:00Z"))],
        t("2026-12-07T14:35:00Z"),
    );
    let d = r.tick(t("2026-12-07T14:35:00Z"));
    assert_eq!(queued(&d), vec![(1, Trigger::CatchUp)], "{d:?}");
    r.start(t("2026-12-07T14:35:00Z"), &IDLE);
    r.s.finished(1);
    let missed: Vec<_> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Missed { missed, latest, run_id, .. } => Some((*missed, *latest, *run_id)),
            _ => None,
        })
        .collect();
    assert_eq!(missed, vec![(15, t("2026-12-07T14:30:00Z"), Some(1))]);
    assert!(r.tick(t("2026-12-07T14:36:00Z")).is_empty(), "caught up: nothing more until 14:40");
    assert_eq!(queued(&r.tick(t("2026-12-07T14:40:00Z"))), vec![(2, Trigger::Schedule)]);
}

#[test]
fn with_policy_skip_missed_times_are_reported_and_not_run() {
    let jobs = EVERY_10_MIN.replace("tz = \"UTC\"", "tz = \"UTC\", missed = \"skip\"");
    let mut r = Rig::resume(
        config(&jobs, ""),
        &[("home/incremental", t("2026-12-07T12:00:00Z"))],
        t("2026-12-07T12:45:00Z"),
    );
    let d = r.tick(t("2026-12-07T12:45:00Z"));
    assert!(queued(&d).is_empty(), "{d:?}");
    assert!(matches!(d.as_slice(), [Decision::Missed { missed: 4, run_id: None, .. }]), "{d:?}");
}

#[test]
fn a_clock_jump_forward_runs_once_and_a_jump_back_runs_nothing_twice() {
    let mut r = Rig::new(config(EVERY_10_MIN, ""), t("2026-12-07T12:00:30Z"));
    assert_eq!(r.tick_and_run(t("2026-12-07T12:10:00Z")).len(), 1);
    // Suspended for a day, or the clock set forward.
    assert_eq!(r.tick_and_run(t("2026-12-08T12:05:00Z")), vec![(2, Trigger::CatchUp)]);
    // The clock set back two hours: the times already handled do not come again.
    for m in 0..125 {
        let now = t("2026-12-08T10:05:00Z") + chrono::Duration::minutes(m);
        assert!(r.tick_and_run(now).is_empty(), "at {now}");
    }
    assert_eq!(r.tick_and_run(t("2026-12-08T12:10:00Z")), vec![(3, Trigger::Schedule)]);
}

#[test]
fn a_fixed_time_runs_once_a_day_through_both_daylight_saving_changes() {
    let jobs = r#"
[jobs.home]
sources = ["/home"]
destinations = ["a"]
schedule = { full = "30 2 * * *", tz = "Europe/Berlin" }
"#;
    for (from, days) in [("2026-03-27T12:00:00Z", 4), ("2026-10-23T12:00:00Z", 4)] {
        let mut r = Rig::new(config(jobs, ""), t(from));
        let mut runs = Vec::new();
        // Minute by minute, as the daemon wakes.
        for m in 0..days * 24 * 60 {
            let now = t(from) + chrono::Duration::minutes(m);
            if !r.tick_and_run(now).is_empty() {
                runs.push(now.with_timezone(&chrono_tz::Europe::Berlin).format("%m-%d %H:%M %Z").to_string());
            }
        }
        assert_eq!(runs.len(), days as usize, "one run a day: {runs:?}");
        if from.starts_with("2026-03") {
            // 02:30 does not exist on the 29th: the run comes right after the gap.
            assert!(runs.contains(&"03-29 03:00 CEST".to_string()), "{runs:?}");
        } else {
            // 02:30 happens twice on the 25th: one run, the first.
            assert!(runs.contains(&"10-25 02:30 CEST".to_string()), "{runs:?}");
            assert!(!runs.contains(&"10-25 02:30 CET".to_string()), "{runs:?}");
        }
    }
}

#[test]
fn a_job_still_running_when_its_time_comes_is_not_started_twice() {
    let jobs = r#"
[jobs.home]
sources = ["/home"]
destinations = ["a"]
schedule = { incremental = "*/10 * * * *", full = "0 13 * * *", tz = "UTC" }
"#;
    let mut r = Rig::new(config(jobs, ""), t("2026-12-07T12:00:30Z"));
    r.tick(t("2026-12-07T12:10:00Z"));
    let started = r.start(t("2026-12-07T12:10:00Z"), &IDLE);
    assert_eq!(started.len(), 1);
    // Still running at 12:20 and 12:30: coalesced into the running one.
    for now in ["2026-12-07T12:20:00Z", "2026-12-07T12:30:00Z"] {
        let d = r.tick(t(now));
        assert!(matches!(d.as_slice(), [Decision::Coalesced { running: 1, .. }]), "{d:?}");
    }
    assert!(r.s.queue().is_empty());
    // At 13:00 a full and an incremental are due during the long run: the
    // full is stronger, so it waits for its turn; the incremental joins it.
    let d = r.tick(t("2026-12-07T13:00:00Z"));
    assert_eq!(queued(&d).len(), 1, "{d:?}");
    assert!(d.iter().any(|d| matches!(d, Decision::Joined { .. })), "{d:?}");
    let waiting: Vec<_> = r.s.queue().iter().map(|q| q.task.kind.clone()).collect();
    assert_eq!(waiting, vec![TaskKind::Backup(Strategy::Full)]);
    assert!(r.start(t("2026-12-07T13:00:00Z"), &IDLE).is_empty(), "the repository is busy");
    r.s.finished(1);
    let next = r.start(t("2026-12-07T13:01:00Z"), &IDLE);
    assert_eq!(next[0].task.kind, TaskKind::Backup(Strategy::Full));
}

const TWO_JOBS: &str = r#"
[jobs.low]
sources = ["/x"]
destinations = ["a"]
schedule = { incremental = "0 * * * *", tz = "UTC", priority = "low" }
[jobs.high]
sources = ["/y"]
destinations = ["b"]
schedule = { incremental = "0 * * * *", tz = "UTC", priority = "high" }
[jobs.same]
sources = ["/z"]
destinations = ["a"]
schedule = { incremental = "0 * * * *", tz = "UTC" }
"#;

#[test]
fn the_queue_starts_by_priority_within_the_limit_and_one_run_per_repository() {
    let mut r = Rig::new(config(TWO_JOBS, ""), t("2026-12-07T11:30:00Z"));
    assert_eq!(queued(&r.tick(t("2026-12-07T12:00:00Z"))).len(), 3);
    let first = r.start(t("2026-12-07T12:00:00Z"), &IDLE);
    assert_eq!(
        first.iter().map(|q| q.task.job.as_str()).collect::<Vec<_>>(),
        vec!["high"],
        "max_concurrent_jobs = 1"
    );
    let why: Vec<_> = r.s.queue().iter().map(|q| q.waiting.clone().unwrap()).collect();
    assert!(why.iter().all(|w| w.contains("max_concurrent_jobs = 1")), "{why:?}");
    r.s.finished(first[0].run_id);
    let second = r.start(t("2026-12-07T12:01:00Z"), &IDLE);
    assert_eq!(second[0].task.job, "same", "normal before low");

    // With room for three, the two jobs on repository a still take turns.
    let mut r = Rig::new(config(TWO_JOBS, "[daemon]\nmax_concurrent_jobs = 3"), t("2026-12-07T11:30:00Z"));
    r.tick(t("2026-12-07T12:00:00Z"));
    let started: Vec<_> = r.start(t("2026-12-07T12:00:00Z"), &IDLE).into_iter().map(|q| q.task.job).collect();
    assert_eq!(started, vec!["high", "same"]);
    let waiting = r.s.queue().iter().next().unwrap();
    assert_eq!(waiting.task.job, "low");
    assert!(waiting.waiting.as_ref().unwrap().contains("destination a is busy"), "{:?}", waiting.waiting);
}

#[test]
fn blackout_windows_hold_scheduled_runs_or_skip_them_but_not_a_persons_request() {
    let blackout = r#"
[[blackout]]
days = ["mon-fri"]
from = "09:00"
to = "17:00"
tz = "Europe/Berlin"
"#;
    let jobs = EVERY_10_MIN.replace("*/10 * * * *", "0 10 * * *").replace("\"UTC\"", "\"Europe/Berlin\"");
    // Monday 10:00 Berlin = 09:00 UTC.
    let mut r = Rig::new(config(&jobs, blackout), t("2026-12-07T08:00:00Z"));
    assert_eq!(queued(&r.tick(t("2026-12-07T09:00:00Z"))).len(), 1);
    assert!(r.start(t("2026-12-07T09:00:00Z"), &IDLE).is_empty());
    let why = r.s.queue().iter().next().unwrap().waiting.clone().unwrap();
    assert!(why.contains("blackout window until 2026-12-07T16:00:00"), "{why}");
    assert!(r.start(t("2026-12-07T15:59:59Z"), &IDLE).is_empty());
    assert_eq!(r.start(t("2026-12-07T16:00:00Z"), &IDLE).len(), 1, "starts when the window closes");

    let skip = blackout.replace("tz = \"Europe/Berlin\"", "tz = \"Europe/Berlin\"\npolicy = \"skip\"");
    let mut r = Rig::new(config(&jobs, &skip), t("2026-12-07T08:00:00Z"));
    r.tick(t("2026-12-07T09:00:00Z"));
    let d = r.s.dispatch(t("2026-12-07T09:00:00Z"), &IDLE);
    assert!(matches!(d.as_slice(), [Decision::Skipped { .. }]), "{d:?}");
    assert!(r.s.queue().is_empty());
    // A person asking now is not held.
    r.api("home", TaskKind::Backup(Strategy::Incremental), t("2026-12-07T09:05:00Z"));
    assert_eq!(r.start(t("2026-12-07T09:05:00Z"), &IDLE).len(), 1);
    // Nor is a scheduled run waiting in the window that a person's request
    // joins.
    let jobs = EVERY_10_MIN.replace("*/10 * * * *", "0 10 * * *").replace("\"UTC\"", "\"Europe/Berlin\"");
    let mut r = Rig::new(config(&jobs, blackout), t("2026-12-07T08:00:00Z"));
    r.tick(t("2026-12-07T09:00:00Z"));
    assert!(r.start(t("2026-12-07T09:00:00Z"), &IDLE).is_empty());
    let d = r.api("home", TaskKind::Backup(Strategy::Incremental), t("2026-12-07T09:01:00Z"));
    assert!(matches!(d, Some(Decision::Joined { run_id: 1, .. })), "{d:?}");
    assert_eq!(r.start(t("2026-12-07T09:01:00Z"), &IDLE).len(), 1);
}

#[test]
fn load_and_free_space_thresholds_hold_a_run_until_they_clear() {
    let jobs = EVERY_10_MIN
        .replace("tz = \"UTC\"", "tz = \"UTC\", max_load_per_core = 1.5, min_free_space = \"1G\"");
    let mut r = Rig::new(config(&jobs, ""), t("2026-12-07T12:00:30Z"));
    r.tick(t("2026-12-07T12:10:00Z"));
    assert!(r
        .start(t("2026-12-07T12:10:00Z"), &Machine { load: Some(3.0), free: Some(u64::MAX) })
        .is_empty());
    assert!(r
        .s
        .queue()
        .iter()
        .next()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .contains("load 3.00 per core is above 1.5"));
    assert!(r.start(t("2026-12-07T12:11:00Z"), &Machine { load: Some(0.5), free: Some(1 << 20) }).is_empty());
    assert!(r.s.queue().iter().next().unwrap().waiting.as_ref().unwrap().contains("below min_free_space"));
    assert_eq!(
        r.start(t("2026-12-07T12:12:00Z"), &Machine { load: Some(0.5), free: Some(2 << 30) }).len(),
        1
    );
}

#[test]
fn a_request_joins_the_same_waiting_work_and_raises_its_strategy() {
    let mut r = Rig::new(config(EVERY_10_MIN, ""), t("2026-12-07T12:00:30Z"));
    r.tick(t("2026-12-07T12:10:00Z"));
    let d = r.api("home", TaskKind::Backup(Strategy::Full), t("2026-12-07T12:10:01Z"));
    assert!(matches!(d, Some(Decision::Joined { run_id: 1, .. })), "{d:?}");
    assert_eq!(r.s.queue().iter().next().unwrap().task.kind, TaskKind::Backup(Strategy::Full));
    // A request while the job runs queues a run after it.
    r.start(t("2026-12-07T12:10:02Z"), &IDLE);
    let d = r.api("home", TaskKind::Backup(Strategy::Incremental), t("2026-12-07T12:10:03Z"));
    assert!(matches!(d, Some(Decision::Queued { run_id: 2, .. })), "{d:?}");
}

#[test]
fn a_retry_waits_for_its_delay() {
    let mut r = Rig::new(config(EVERY_10_MIN, ""), t("2026-12-07T12:00:30Z"));
    r.tick(t("2026-12-07T12:10:00Z"));
    let q = r.start(t("2026-12-07T12:10:00Z"), &IDLE).remove(0);
    r.s.finished(q.run_id);
    r.s.retry(q, t("2026-12-07T12:11:00Z"));
    assert_eq!(r.s.next_wake(), Some(t("2026-12-07T12:11:00Z")));
    assert!(r.start(t("2026-12-07T12:10:30Z"), &IDLE).is_empty());
    // A scheduled time during the delay joins the waiting retry rather
    // than running beside it.
    let d = r.tick(t("2026-12-07T12:20:00Z") - chrono::Duration::seconds(1));
    assert!(d.is_empty());
    let again = r.start(t("2026-12-07T12:11:00Z"), &IDLE);
    assert_eq!((again[0].run_id, again[0].attempt), (1, 2));
    r.s.finished(1);
    r.s.retry(again[0].clone(), t("2026-12-07T12:30:00Z"));
    let d = r.tick(t("2026-12-07T12:20:00Z"));
    assert!(matches!(d.as_slice(), [Decision::Joined { run_id: 1, .. }]), "{d:?}");
    assert_eq!(r.s.queue().len(), 1);
    assert!(r.start(t("2026-12-07T12:20:00Z"), &IDLE).is_empty(), "still waiting for its delay");
    // A person asking now does not wait for the delay.
    let d = r.api("home", TaskKind::Backup(Strategy::Incremental), t("2026-12-07T12:21:00Z"));
    assert!(matches!(d, Some(Decision::Joined { run_id: 1, .. })), "{d:?}");
    let now = r.start(t("2026-12-07T12:21:00Z"), &IDLE);
    assert_eq!((now[0].run_id, now[0].attempt), (1, 3));
}

#[test]
fn a_retry_that_finds_the_same_work_waiting_leaves_it_to_that_run() {
    let mut r = Rig::new(config(EVERY_10_MIN, ""), t("2026-12-07T12:00:30Z"));
    r.tick(t("2026-12-07T12:10:00Z"));
    let q = r.start(t("2026-12-07T12:10:00Z"), &IDLE).remove(0);
    // A person asks while it runs: a second run waits.
    let d = r.api("home", TaskKind::Backup(Strategy::Full), t("2026-12-07T12:10:30Z"));
    assert!(matches!(d, Some(Decision::Queued { run_id: 2, .. })), "{d:?}");
    r.s.finished(q.run_id);
    // The first fails in a way waiting may cure: the waiting run will do
    // the work, and it keeps the stronger strategy.
    assert_eq!(r.s.retry(q, t("2026-12-07T12:11:00Z")), Enqueued::Joined(2));
    let waiting: Vec<_> = r.s.queue().iter().map(|q| (q.run_id, q.task.kind.clone())).collect();
    assert_eq!(waiting, vec![(2, TaskKind::Backup(Strategy::Full))]);
}
