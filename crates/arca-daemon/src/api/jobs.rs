//! `GET /api/jobs` (each job: its configuration, schedules with their next
//! times, latest run and statistics) and `POST /api/jobs/{name}/run`.

use std::sync::Arc;

use arca_core::Strategy;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error;
use crate::daemon::{lock, Daemon};
use crate::schedule::{Task, TaskKind};

pub(super) async fn list(State(daemon): State<Arc<Daemon>>) -> Response {
    let config = daemon.config();
    let (plans, queue, running) = {
        let s = lock(&daemon.sched);
        let queued: Vec<(String, i64)> = s.queue().iter().map(|q| (q.task.job.clone(), q.run_id)).collect();
        let running: Vec<(String, i64)> =
            s.running().values().map(|r| (r.queued.task.job.clone(), r.queued.run_id)).collect();
        (s.plans().to_vec(), queued, running)
    };
    let history = lock(&daemon.history);
    let jobs: Vec<serde_json::Value> = config
        .jobs
        .values()
        .map(|job| {
            let schedules: Vec<serde_json::Value> = plans
                .iter()
                .filter(|p| p.job == job.name)
                .map(|p| {
                    let task = p.kind.name();
                    serde_json::json!({
                        "name": p.kind.schedule_name(),
                        "task": task,
                        "next_run": p.due_at().map(|t| t.to_rfc3339()),
                        "last_scheduled": p.last_slot.to_rfc3339(),
                        "stats": history.stats(&job.name, Some(task)),
                    })
                })
                .collect();
            let last = history.runs(Some(&job.name), 1, None).into_iter().next();
            let next_run = plans.iter().filter(|p| p.job == job.name).filter_map(|p| p.due_at()).min();
            serde_json::json!({
                "name": job.name,
                "config": job,
                "schedules": schedules,
                "next_run": next_run.map(|t| t.to_rfc3339()),
                "last_run": last,
                "stats": history.stats(&job.name, None),
                "queued": queue.iter().filter(|(j, _)| *j == job.name).map(|(_, id)| id).collect::<Vec<_>>(),
                "running": running.iter().filter(|(j, _)| *j == job.name).map(|(_, id)| id).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(serde_json::json!({ "jobs": jobs })).into_response()
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    strategy: Option<String>,
}

pub(super) async fn run(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    body: Option<Json<RunBody>>,
) -> Response {
    let config = daemon.config();
    let Some(job) = config.jobs.get(&name) else {
        return error(StatusCode::NOT_FOUND, config.job(&name).err().unwrap_or_default());
    };
    let body = body.map(|b| b.0).unwrap_or_default();
    let strategy = match body.strategy.as_deref().map(str::parse::<Strategy>) {
        None => job.strategy,
        Some(Ok(s)) => s,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (run_id, joined) = daemon.request(Task { job: name, kind: TaskKind::Backup(strategy) });
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "run_id": run_id, "joined": joined }))).into_response()
}
