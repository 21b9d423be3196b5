//! Runs: `GET /api/runs` (the history), `GET /api/runs/{id}` (status,
//! live progress, result), `GET /api/runs/{id}/events` (the same as
//! server-sent events until the run ends), `DELETE /api/runs/{id}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error;
use crate::daemon::{lock, Daemon};

/// A run's document: its record, with live progress while it runs.
pub fn document(daemon: &Daemon, id: i64) -> Option<Value> {
    let record = lock(&daemon.history).run(id)?;
    let live = lock(&daemon.live).get(&id).cloned();
    let waiting = lock(&daemon.sched).queue().get(id).and_then(|q| q.waiting.clone());
    let progress = live.as_ref().and_then(|l| l.state.as_ref()).map(|s| {
        let p = s.snapshot();
        let (done, total) =
            if p.bytes_total > 0 { (p.bytes_done, p.bytes_total) } else { (p.items_done, p.items_total) };
        let secs = p.phase_elapsed.as_secs_f64();
        json!({
            "phase": p.phase.map(|ph| ph.name()),
            // What `files` counts in this phase: files, packs, trees, snapshots.
            "unit": p.phase.map(|ph| ph.units().name()),
            "percentage": (total > 0).then(|| (done as f64 * 100.0 / total as f64).min(100.0)),
            "files": p.items_done,
            "files_total": p.items_total,
            "bytes": p.bytes_done,
            "bytes_total": p.bytes_total,
            "rate": if secs > 0.0 { p.bytes_done as f64 / secs } else { 0.0 },
            "eta_seconds": p.eta.map(|e| e.as_secs_f64()),
        })
    });
    Some(json!({
        "id": record.id,
        "job": record.job,
        "task": record.task,
        "strategy": record.strategy,
        "trigger": record.trigger,
        "status": record.status,
        "attempt": live.as_ref().map_or(record.attempts, |l| l.attempt),
        "waiting": waiting,
        "queued_at": record.queued_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "bytes_read": record.bytes_read,
        "bytes_added": record.bytes_added,
        "files": record.files,
        "error": record.error,
        "progress": progress,
        "result": record.report,
    }))
}

pub(super) async fn get(State(daemon): State<Arc<Daemon>>, Path(id): Path<i64>) -> Response {
    match document(&daemon, id) {
        Some(doc) => Json(doc).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no run {id}")),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    job: Option<String>,
    task: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    before: Option<i64>,
}

pub(super) async fn list(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> Response {
    let filter = crate::history::RunFilter {
        job: q.job.as_deref(),
        task: q.task.as_deref(),
        status: q.status.as_deref(),
    };
    let runs = lock(&daemon.history).runs_where(&filter, q.limit.unwrap_or(50).min(1000), q.before);
    Json(json!({ "runs": runs })).into_response()
}

pub(super) async fn cancel(State(daemon): State<Arc<Daemon>>, Path(id): Path<i64>) -> Response {
    if daemon.cancel(id) {
        (StatusCode::ACCEPTED, Json(json!({ "run_id": id, "cancelling": true }))).into_response()
    } else if lock(&daemon.history).run(id).is_some() {
        error(StatusCode::CONFLICT, format!("run {id} has already ended"))
    } else {
        error(StatusCode::NOT_FOUND, format!("no run {id}"))
    }
}

/// `status` events when the status changes, `progress` about twice a
/// second while it runs, and a last `end` event with the whole document.
pub(super) async fn events(State(daemon): State<Arc<Daemon>>, Path(id): Path<i64>) -> Response {
    if lock(&daemon.history).run(id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no run {id}"));
    }
    let stream = futures_util::stream::unfold(
        (daemon, None::<String>, None::<Value>, false),
        move |(daemon, status, progress, done)| async move {
            if done {
                return None;
            }
            loop {
                let doc = document(&daemon, id)?;
                let now_status = doc["status"].as_str().unwrap_or("").to_string();
                let ended = matches!(now_status.as_str(), "succeeded" | "failed" | "cancelled");
                if ended {
                    let e = SseEvent::default().event("end").json_data(&doc).ok()?;
                    return Some((Ok::<_, Infallible>(e), (daemon, Some(now_status), None, true)));
                }
                if status.as_deref() != Some(now_status.as_str()) {
                    let e = SseEvent::default()
                    .event("status")
                    .json_data(json!({ "status": now_status, "attempt": doc["attempt"], "waiting": doc["waiting"] }))
                    .ok()?;
                    return Some((Ok(e), (daemon, Some(now_status), progress, false)));
                }
                let p = doc["progress"].clone();
                if !p.is_null() && Some(&p) != progress.as_ref() {
                    let e = SseEvent::default().event("progress").json_data(&p).ok()?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return Some((Ok(e), (daemon, status, Some(p), false)));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
