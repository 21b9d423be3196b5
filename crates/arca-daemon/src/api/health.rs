//! `GET /health`: whether everything is protected, for a load balancer or
//! a monitor, without a token and without a secret: `ok`, or `degraded`
//! with the reasons (a job's latest run failed, a destination did not
//! answer, a schedule is overdue).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};

use crate::daemon::{lock, Daemon};

/// The health document.
#[derive(serde::Serialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// What is wrong, one line each.
    pub reasons: Vec<String>,
    /// The daemon's version.
    pub version: &'static str,
    /// Runs going on.
    pub running: usize,
    /// Runs waiting.
    pub queued: usize,
}

pub(super) async fn health(State(daemon): State<Arc<Daemon>>) -> Response {
    let h = assess(&daemon);
    // 200 either way: degraded is a state to report, the daemon answers.
    (StatusCode::OK, Json(h)).into_response()
}

/// The daemon's health now.
pub fn assess(daemon: &Daemon) -> Health {
    let mut reasons = Vec::new();
    let config = daemon.config();
    let now = Utc::now();
    let (running, queued, plans) = {
        let s = lock(&daemon.sched);
        (s.running().len(), s.queue().len(), s.plans().to_vec())
    };
    {
        let history = lock(&daemon.history);
        for job in config.jobs.keys() {
            let latest = history
                .runs(Some(job), 20, None)
                .into_iter()
                .find(|r| r.task == "backup" && (r.status == "succeeded" || r.status == "failed"));
            if let Some(r) = latest.filter(|r| r.status == "failed") {
                reasons.push(format!("job {job}: the latest backup (run {}) failed", r.id));
            }
        }
        // Overdue: a backup schedule whose job has not succeeded within
        // twice its interval (a run held back, failing, or never started).
        for p in plans.iter().filter(|p| p.kind.name() == "backup") {
            let Some(next) = p.next_slot() else { continue };
            let stats = history.stats(&p.job, Some("backup"));
            let last = stats.last_success.and_then(|t| t.parse::<DateTime<Utc>>().ok());
            if let Some(last) = last.filter(|l| overdue(p.last_slot, next, *l, now)) {
                reasons.push(format!(
                    "job {}: overdue: the latest successful backup ended {} ({} schedule)",
                    p.job,
                    last.to_rfc3339(),
                    p.kind.schedule_name()
                ));
            }
        }
    }
    reasons.sort();
    reasons.dedup();
    for (name, why) in lock(&daemon.unreachable).iter() {
        // The storage's message names the object, never a credential.
        reasons.push(format!("destination {name} unreachable: {why}"));
    }
    Health {
        status: if reasons.is_empty() { "ok" } else { "degraded" },
        reasons,
        version: env!("CARGO_PKG_VERSION"),
        running,
        queued,
    }
}

/// Whether a schedule whose times are `last_slot` and then `next` is
/// overdue at `now`, its job's latest success being `last_success`: no
/// success within two of its intervals (a run held back, failing, or
/// never started), beyond the grace a late start gets.
pub fn overdue(
    last_slot: DateTime<Utc>,
    next: DateTime<Utc>,
    last_success: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let interval = next - last_slot;
    now - last_success > interval * 2 + crate::schedule::GRACE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_schedule_is_overdue_after_two_intervals_without_success() {
        // Every six hours; the last slot 12:00, the next 18:00.
        let (last, next) = (t("2026-12-07T12:00:00Z"), t("2026-12-07T18:00:00Z"));
        assert!(!overdue(last, next, t("2026-12-07T12:01:00Z"), t("2026-12-07T13:00:00Z")));
        assert!(
            !overdue(last, next, t("2026-12-07T06:01:00Z"), t("2026-12-07T18:00:00Z")),
            "one failure is not overdue"
        );
        assert!(
            overdue(last, next, t("2026-12-07T00:00:00Z"), t("2026-12-07T12:05:00Z")),
            "12 h and 5 min without success"
        );
    }
}
