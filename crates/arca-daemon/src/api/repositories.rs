//! What is stored: `GET /api/snapshots`, `GET /api/inventory`; and work on
//! it: `POST /api/restores`, `POST /api/verifications` (queued runs, as
//! backups are).

use std::collections::BTreeMap;
use std::sync::Arc;

use arca_core::SnapshotFilter;
use arca_jobs::config::VerifyAfter;
use arca_jobs::{job_tag, open_destination, RunOptions};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error;
use crate::daemon::Daemon;
use crate::schedule::{RestoreRequest, Task, TaskKind};

#[derive(serde::Deserialize)]
pub(super) struct SnapshotsQuery {
    job: Option<String>,
    destination: Option<String>,
}

/// The destinations to look at: one, a job's, or every repository.
fn destinations(
    daemon: &Daemon,
    job: Option<&str>,
    destination: Option<&str>,
) -> Result<Vec<String>, String> {
    let config = daemon.config();
    let of_job = match job {
        Some(j) => config.job(j)?.destinations.clone(),
        None => config.repositories.keys().cloned().collect(),
    };
    match destination {
        Some(d) if of_job.iter().any(|x| x == d) => Ok(vec![d.to_string()]),
        Some(d) => Err(format!(
            "{d:?} is not a destination{}",
            job.map(|j| format!(" of job {j}")).unwrap_or_default()
        )),
        None => Ok(of_job),
    }
}

pub(super) async fn snapshots(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<SnapshotsQuery>,
) -> Response {
    let names = match destinations(&daemon, q.job.as_deref(), q.destination.as_deref()) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let d = daemon.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let config = d.config();
        let opts = RunOptions::default().cache_root(d.opts.cache_root.clone());
        names
            .into_iter()
            .map(|name| {
                let filter = match &q.job {
                    Some(j) => SnapshotFilter::new().tag(job_tag(j)),
                    None => SnapshotFilter::new(),
                };
                let r = open_destination(&config, &name, &opts).and_then(|repo| {
                    let (list, _) = repo.snapshots_matching(&filter).map_err(|e| e.report().to_string())?;
                    Ok(list.iter().map(|(id, s)| s.metadata(id)).collect::<Vec<_>>())
                });
                match r {
                    Ok(list) => json!({ "destination": name, "snapshots": list, "error": null }),
                    Err(e) => json!({ "destination": name, "snapshots": [], "error": e }),
                }
            })
            .collect::<Vec<_>>()
    })
    .await;
    match listed {
        Ok(l) => Json(json!({ "destinations": l })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(super) async fn restore(State(daemon): State<Arc<Daemon>>, Json(r): Json<RestoreRequest>) -> Response {
    if let Err(e) = destinations(&daemon, Some(&r.job), r.destination.as_deref()) {
        return error(StatusCode::NOT_FOUND, e);
    }
    if !r.target.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("target {} is not an absolute path", r.target.display()),
        );
    }
    let (run_id, _) = daemon.request(Task { job: r.job.clone(), kind: TaskKind::Restore(r) });
    (StatusCode::ACCEPTED, Json(json!({ "run_id": run_id }))).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyBody {
    job: String,
    destination: Option<String>,
    /// As verify_mode in arca.toml (default: restore-test).
    mode: Option<String>,
}

pub(super) async fn verify(State(daemon): State<Arc<Daemon>>, Json(v): Json<VerifyBody>) -> Response {
    if let Err(e) = destinations(&daemon, Some(&v.job), v.destination.as_deref()) {
        return error(StatusCode::NOT_FOUND, e);
    }
    let mode = match v.mode.as_deref().unwrap_or("restore-test") {
        "structure" => VerifyAfter::Structure,
        "read-data" => VerifyAfter::ReadData,
        "restore-test" => VerifyAfter::RestoreTest,
        m => match m.strip_prefix("read-data-subset:").map(str::parse) {
            Some(Ok(s)) => VerifyAfter::ReadDataSubset(s),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("mode {m:?}: use structure, read-data, read-data-subset:5% or restore-test"),
                )
            }
        },
    };
    let (run_id, joined) =
        daemon.request(Task { job: v.job, kind: TaskKind::Verify { mode, destination: v.destination } });
    (StatusCode::ACCEPTED, Json(json!({ "run_id": run_id, "joined": joined }))).into_response()
}

pub(super) async fn inventory(State(daemon): State<Arc<Daemon>>) -> Response {
    let d = daemon.clone();
    let counted = tokio::task::spawn_blocking(move || {
        let config = d.config();
        let opts = RunOptions::default().cache_root(d.opts.cache_root.clone());
        let mut by_strategy: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut by_destination = Vec::new();
        let (mut total, mut size) = (0u64, 0u64);
        for name in config.repositories.keys() {
            let r = open_destination(&config, name, &opts).and_then(|repo| {
                let status = arca_core::ops::status::status(&repo).map_err(|e| e.report().to_string())?;
                let (list, _) = repo.snapshots_lenient().map_err(|e| e.report().to_string())?;
                Ok((status, list))
            });
            match r {
                Ok((status, list)) => {
                    total += status.snapshots as u64;
                    size += status.total_size;
                    for (_, s) in &list {
                        let e = by_strategy.entry(s.strategy.as_str().to_string()).or_default();
                        e.0 += 1;
                        e.1 += s.summary.bytes_added;
                    }
                    by_destination.push(json!({
                        "destination": name, "snapshots": status.snapshots, "size_bytes": status.total_size, "error": null
                    }));
                }
                Err(e) => by_destination.push(json!({ "destination": name, "snapshots": null, "size_bytes": null, "error": e })),
            }
        }
        json!({
            "total_backups": total,
            "total_size_bytes": size,
            "by_strategy": by_strategy.into_iter().map(|(k, (n, b))| json!({ "strategy": k, "backups": n, "bytes_added": b })).collect::<Vec<_>>(),
            "by_destination": by_destination,
        })
    })
    .await;
    match counted {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct SizesQuery {
    destination: Option<String>,
}

/// Each destination's size and snapshot count as measured after each run,
/// oldest first.
pub(super) async fn sizes(State(daemon): State<Arc<Daemon>>, Query(q): Query<SizesQuery>) -> Response {
    let sizes: Vec<_> = crate::daemon::lock(&daemon.history)
        .sizes(q.destination.as_deref())
        .into_iter()
        .map(|(destination, time, size_bytes, snapshots)| {
            json!({ "destination": destination, "time": time, "size_bytes": size_bytes, "snapshots": snapshots })
        })
        .collect();
    Json(json!({ "sizes": sizes })).into_response()
}
