//! Runs waiting to start: ordered by priority then age, at most one
//! waiting per job and task (a second request joins the first), and each
//! started only when nothing holds it back (the concurrency limit, a run
//! on one of its destinations, a blackout window, the load, free space,
//! a retry's delay).

use chrono::{DateTime, Utc};

use arca_jobs::config::Priority;

use super::{Task, TaskKind, Trigger};

/// A run waiting to start.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Its id in the history.
    pub run_id: i64,
    /// What it runs.
    pub task: Task,
    /// Its place among the others.
    pub priority: Priority,
    /// Why it was asked for.
    pub trigger: Trigger,
    /// When it was asked for: older first among equal priorities.
    pub enqueued: DateTime<Utc>,
    /// Its try (1 for the first; more after a failure that waiting may
    /// cure).
    pub attempt: u32,
    /// Not before this time (a retry's delay).
    pub not_before: Option<DateTime<Utc>>,
    /// Why it still waits, for a person (`GET /api/runs/{id}`).
    pub waiting: Option<String>,
}

impl Queued {
    /// A first try of `task`, asked for at `now`.
    pub fn first(
        run_id: i64,
        task: Task,
        priority: Priority,
        trigger: Trigger,
        now: DateTime<Utc>,
    ) -> Queued {
        Queued { run_id, task, priority, trigger, enqueued: now, attempt: 1, not_before: None, waiting: None }
    }
}

/// What a request to queue a run came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// It waits as run `0`.
    New(i64),
    /// A run of the same job and task already waits: this joined it (and
    /// raised its strategy, if this one's was stronger).
    Joined(i64),
}

/// The waiting runs.
#[derive(Debug, Default)]
pub struct Queue {
    items: Vec<Queued>,
}

impl Queue {
    /// Adds `q`, or joins the run of the same job and task already
    /// waiting.
    pub fn push(&mut self, q: Queued) -> Enqueued {
        if let Some(w) = self.items.iter_mut().find(|w| w.task.same_work(&q.task)) {
            if let (TaskKind::Backup(mine), TaskKind::Backup(theirs)) = (&mut w.task.kind, &q.task.kind) {
                if super::strength(*theirs) > super::strength(*mine) {
                    *mine = *theirs;
                }
            }
            w.priority = w.priority.max(q.priority);
            if q.trigger == Trigger::Api {
                // A person asked for it now: it no longer waits for a
                // retry's delay, a blackout window or a threshold.
                w.trigger = Trigger::Api;
                w.not_before = None;
            }
            return Enqueued::Joined(w.run_id);
        }
        let id = q.run_id;
        self.items.push(q);
        Enqueued::New(id)
    }

    /// The waiting run of this job and task, if any.
    pub fn find_work(&self, task: &Task) -> Option<&Queued> {
        self.items.iter().find(|w| w.task.same_work(task))
    }

    /// Takes run `id` out (cancelled, or started).
    pub fn remove(&mut self, id: i64) -> Option<Queued> {
        let i = self.items.iter().position(|q| q.run_id == id)?;
        Some(self.items.remove(i))
    }

    /// Run `id`, if waiting.
    pub fn get(&self, id: i64) -> Option<&Queued> {
        self.items.iter().find(|q| q.run_id == id)
    }

    /// The waiting runs in the order they would start.
    pub fn ordered(&mut self) -> &mut [Queued] {
        self.items.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.enqueued.cmp(&b.enqueued)));
        &mut self.items
    }

    /// The waiting runs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.items.iter()
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes every waiting run out.
    pub fn drain(&mut self) -> Vec<Queued> {
        std::mem::take(&mut self.items)
    }
}
