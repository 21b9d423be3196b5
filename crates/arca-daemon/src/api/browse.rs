//! Inside a snapshot: `GET /api/snapshots/{id}/tree` lists one folder,
//! `GET /api/snapshots/{id}/file` streams one file's content.

use std::io::Write;
use std::sync::Arc;

use arca_core::ops::archive::dump;
use arca_core::ops::ls::children;
use arca_core::Repository;
use arca_jobs::{open_destination, RunOptions};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error;

/// What to answer instead of the document: a status and why.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, why: impl Into<String>) -> Refusal {
    (status, why.into())
}
use crate::daemon::Daemon;

#[derive(serde::Deserialize)]
pub(super) struct At {
    destination: String,
    #[serde(default)]
    path: Option<String>,
}

/// The destination opened, the snapshot `id` (or prefix) found in it, and
/// its index loaded; or the error to answer.
fn open(
    daemon: &Daemon,
    destination: &str,
    id: &str,
) -> Result<(Repository, arca_core::SnapshotId, arca_core::Snapshot, arca_core::Index), Refusal> {
    let config = daemon.config();
    if !config.repositories.contains_key(destination) {
        return Err(refuse(StatusCode::NOT_FOUND, format!("no destination {destination:?}")));
    }
    let opts = RunOptions::default().cache_root(daemon.opts.cache_root.clone());
    let repo =
        open_destination(&config, destination, &opts).map_err(|e| refuse(StatusCode::BAD_GATEWAY, e))?;
    let (sid, snap) = repo.find_snapshot(id).map_err(|e| {
        let status = match e {
            arca_core::Error::SnapshotNotFound(_) => StatusCode::NOT_FOUND,
            // Too short, or matching several: the id is the caller's mistake.
            arca_core::Error::AmbiguousSnapshot(..) | arca_core::Error::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        };
        refuse(status, e.report().to_string())
    })?;
    let (index, _) =
        repo.load_index_lenient().map_err(|e| refuse(StatusCode::BAD_GATEWAY, e.report().to_string()))?;
    Ok((repo, sid, snap, index))
}

/// A path inside a snapshot: absolute. A `.` or `..` part names nothing
/// (no stored tree holds such a name): not found, never a step up.
fn clean(path: Option<&str>) -> Result<String, Refusal> {
    let p = path.unwrap_or("/");
    if !p.starts_with('/') {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("path {p:?}: give an absolute path inside the snapshot"),
        ));
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return Err(refuse(StatusCode::NOT_FOUND, format!("{p}: no such entry in the snapshot")));
    }
    Ok(p.to_string())
}

pub(super) async fn tree(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(at): Query<At>,
) -> Response {
    let path = match clean(at.path.as_deref()) {
        Ok(p) => p,
        Err((status, why)) => return error(status, why),
    };
    let listed = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, Refusal> {
        let (repo, sid, snap, index) = open(&daemon, &at.destination, &id)?;
        let nodes = children(&repo, &index, &snap.tree, &path).map_err(|e| {
            let status = if matches!(e, arca_core::Error::Invalid(_)) { StatusCode::NOT_FOUND } else { StatusCode::BAD_GATEWAY };
            refuse(status, e.report().to_string())
        })?;
        let base = path.trim_end_matches('/');
        let entries: Vec<_> = nodes
            .iter()
            .map(|n| {
                let name = String::from_utf8_lossy(&n.name).into_owned();
                let kind = match n.kind.name() {
                    k @ ("file" | "dir" | "symlink") => k,
                    _ => "other",
                };
                json!({
                    "name": name,
                    "path": format!("{base}/{name}"),
                    "type": kind,
                    "size": n.size,
                    "mtime": chrono::DateTime::from_timestamp(n.mtime.secs, n.mtime.nanos).map(|t| t.to_rfc3339()),
                })
            })
            .collect();
        Ok(json!({ "destination": at.destination, "snapshot": sid.to_hex(), "path": path, "entries": entries }))
    })
    .await;
    match listed {
        Ok(Ok(doc)) => Json(doc).into_response(),
        Ok(Err((status, why))) => error(status, why),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Sends what `dump` writes as body chunks.
struct ChunkWriter(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) async fn file(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(at): Query<At>,
) -> Response {
    let path = match clean(at.path.as_deref()) {
        Ok(p) => p,
        Err((status, why)) => return error(status, why),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<u64, Refusal>>();
    let name = path.rsplit('/').next().unwrap_or("file").to_string();
    tokio::task::spawn_blocking(move || {
        let found = open(&daemon, &at.destination, &id).and_then(|(repo, _, snap, index)| {
            if path.trim_end_matches('/').is_empty() {
                return Err(refuse(StatusCode::NOT_FOUND, "/ is the snapshot's root folder, not a file"));
            }
            let node = arca_core::ops::archive::find_node(&repo, &index, &snap.tree, &path)
                .map_err(|e| refuse(StatusCode::NOT_FOUND, e.report().to_string()))?;
            if node.kind != arca_core::NodeKind::File {
                // No file at that path: a folder or a link is there.
                return Err(refuse(
                    StatusCode::NOT_FOUND,
                    format!("{path} is a {}, not a file", node.kind.name()),
                ));
            }
            Ok((repo, snap, index, node.size))
        });
        match found {
            Err(r) => {
                let _ = ready_tx.send(Err(r));
            }
            Ok((repo, snap, index, size)) => {
                let _ = ready_tx.send(Ok(size));
                let mut w = std::io::BufWriter::with_capacity(256 << 10, ChunkWriter(tx.clone()));
                let done = dump(&repo, &index, &snap.tree, &path, &mut w)
                    .and_then(|_| w.flush().map_err(|e| arca_core::Error::io(&path, e)));
                if let Err(e) = done {
                    // The body ends in an error: the client sees a broken
                    // download, never a short file that looks whole.
                    tracing::warn!("sending {path}: {}", e.report());
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.report().to_string())));
                }
            }
        }
    });
    let size = match ready_rx.await {
        Ok(Ok(size)) => size,
        Ok(Err((status, why))) => return error(status, why),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be read"),
    };
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\r', '\n'], "_"));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
