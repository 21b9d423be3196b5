//! One schedule line of a job (`full = "0 0 * * 0"`): its next time, and
//! what to do when the clock reaches it — run, or, when times were missed
//! (the daemon down, the machine asleep, the clock jumped), run once or
//! skip, never once per missed time.

use arca_jobs::config::{Cron, Missed};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::TaskKind;

/// A run this late after its time counts as missed rather than on time:
/// the daemon wakes at least every second, so only downtime, a suspended
/// machine or a clock jump make a run this late.
pub const GRACE: Duration = Duration::seconds(90);

/// What the clock reaching a plan's time means.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// Run now, on time.
    Run,
    /// `missed` times passed without their run (the latest is `latest`);
    /// `run` tells whether one catch-up run goes ahead.
    Missed {
        /// How many scheduled times were passed (at least 1, counted up to
        /// 1,000).
        missed: u32,
        /// The latest of them.
        latest: DateTime<Utc>,
        /// Whether one run catches up (policy `run-once`).
        run: bool,
    },
}

/// A schedule line and where it stands.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The job.
    pub job: String,
    /// What it runs.
    pub kind: TaskKind,
    cron: Cron,
    tz: Tz,
    jitter_secs: u64,
    missed: Missed,
    /// The latest scheduled time handled (run, coalesced or skipped);
    /// kept in the history so that a restart knows what it missed.
    pub last_slot: DateTime<Utc>,
    /// The next scheduled time and when it is due (that time plus a
    /// random jitter).
    next: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Plan {
    /// A plan whose times up to `last_slot` are handled. A plan never seen
    /// before starts from now: nothing before the daemon first knew of it
    /// counts as missed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job: &str,
        kind: TaskKind,
        cron: Cron,
        tz: Tz,
        jitter_secs: u64,
        missed: Missed,
        last_slot: DateTime<Utc>,
        jitter: &mut dyn FnMut(u64) -> u64,
    ) -> Plan {
        let mut plan =
            Plan { job: job.to_string(), kind, cron, tz, jitter_secs, missed, last_slot, next: None };
        plan.advance(jitter);
        plan
    }

    /// The key the plan's progress is kept under: `job/kind`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.job, self.kind.schedule_name())
    }

    /// When it is next due, if ever.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        self.next.map(|(_, due)| due)
    }

    /// Its next scheduled time (without jitter).
    pub fn next_slot(&self) -> Option<DateTime<Utc>> {
        self.next.map(|(slot, _)| slot)
    }

    fn advance(&mut self, jitter: &mut dyn FnMut(u64) -> u64) {
        self.next = self.cron.next_after(self.last_slot, self.tz).map(|slot| {
            let delay = if self.jitter_secs > 0 { jitter(self.jitter_secs) } else { 0 };
            (slot, slot + Duration::seconds(delay as i64))
        });
    }

    /// Whether the plan is due at `now`, and how; when it is, the plan
    /// moves past every time up to `now`. A clock set back finds the next
    /// time still ahead: nothing runs twice.
    pub fn poll(&mut self, now: DateTime<Utc>, jitter: &mut dyn FnMut(u64) -> u64) -> Option<Due> {
        let (slot, due) = self.next?;
        if due > now {
            return None;
        }
        let latest = self.cron.latest_until(now, self.tz).unwrap_or(slot).max(slot);
        let mut missed = 0u32;
        let mut t = Some(slot);
        while let Some(s) = t.filter(|s| *s <= now && missed < 1000) {
            missed += 1;
            t = self.cron.next_after(s, self.tz);
        }
        self.last_slot = latest;
        self.advance(jitter);
        if missed <= 1 && now - due <= GRACE {
            Some(Due::Run)
        } else {
            Some(Due::Missed { missed, latest, run: self.missed == Missed::RunOnce })
        }
    }
}
