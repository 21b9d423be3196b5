//! The HTTP API: JSON over HTTP, a bearer token on every route but
//! `/health`. Every route is in [`ROUTES`], which the OpenAPI document
//! (`openapi.json`, served at `/api/openapi.json`) is tested against.

mod browse;
mod dashboard;
mod health;
mod jobs;
mod repositories;
mod runs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::daemon::Daemon;

/// Every route: method and path (axum's `{param}` syntax).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/"),
    ("GET", "/assets/{file}"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs/{name}/run"),
    ("GET", "/api/runs"),
    ("GET", "/api/runs/{id}"),
    ("DELETE", "/api/runs/{id}"),
    ("GET", "/api/runs/{id}/events"),
    ("GET", "/api/snapshots"),
    ("GET", "/api/snapshots/{id}/tree"),
    ("GET", "/api/snapshots/{id}/file"),
    ("GET", "/api/sizes"),
    ("POST", "/api/restores"),
    ("POST", "/api/verifications"),
    ("GET", "/api/inventory"),
];

/// The OpenAPI 3 document of the routes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The API's router over `daemon`.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let authed = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/jobs", get(jobs::list))
        .route("/api/jobs/{name}/run", post(jobs::run))
        .route("/api/runs", get(runs::list))
        .route("/api/runs/{id}", get(runs::get).delete(runs::cancel))
        .route("/api/runs/{id}/events", get(runs::events))
        .route("/api/snapshots", get(repositories::snapshots))
        .route("/api/snapshots/{id}/tree", get(browse::tree))
        .route("/api/snapshots/{id}/file", get(browse::file))
        .route("/api/sizes", get(repositories::sizes))
        .route("/api/restores", post(repositories::restore))
        .route("/api/verifications", post(repositories::verify))
        .route("/api/inventory", get(repositories::inventory))
        // Only matched routes ask for the token: an unknown path is a 404
        // for everyone.
        .route_layer(axum::middleware::from_fn_with_state(daemon.clone(), auth));
    Router::new()
        .route("/health", get(health::health))
        // The dashboard's page and assets: no data, no token.
        .merge(dashboard::routes())
        .merge(authed)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(daemon)
}

/// Every error as `{"error": "…"}`, those of axum's own extractors (a body
/// that is not JSON, an id that is not a number) and of unknown routes too:
/// a client reads one shape.
async fn json_errors(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(parts.status.is_client_error() || parts.status.is_server_error()) {
        return Response::from_parts(parts, body);
    }
    let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).into_owned());
    let text = match text {
        Ok(t) if !t.trim().is_empty() => t,
        _ => parts.status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let mut r = error(parts.status, text);
    for (k, v) in parts.headers.iter().filter(|(k, _)| *k == header::ALLOW || *k == header::WWW_AUTHENTICATE)
    {
        r.headers_mut().insert(k.clone(), v.clone());
    }
    r
}

/// Refuses a request without `Authorization: Bearer <token>`.
async fn auth(State(daemon): State<Arc<Daemon>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if crate::token::same(t, &daemon.token) => next.run(req).await,
        _ => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: Authorization: Bearer <the token in the daemon's token file>",
            );
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// A JSON error: `{"error": "…"}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn metrics(State(daemon): State<Arc<Daemon>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        daemon.metrics.encode(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Serves `app` on `listener` until `stopping` is cancelled; over TLS
/// when a certificate and key are given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<(PathBuf, PathBuf)>,
    stopping: arca_core::Cancel,
) -> Result<(), String> {
    let stopped = async move {
        while !stopping.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    match tls {
        None => axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stopped)
            .await
            .map_err(|e| format!("serving the API: {e}")),
        Some((cert, key)) => crate::tls::serve(listener, app, &cert, &key, stopped).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> =
            ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        routes.sort();
        assert_eq!(documented, routes);
        // Every route but /health and the dashboard's files says it needs
        // the token.
        for (method, path) in &routes {
            let op = &doc["paths"][path][method.to_lowercase()];
            let open = op["security"].as_array().is_some_and(|s| s.is_empty());
            let public = matches!(path.as_str(), "/health" | "/" | "/assets/{file}");
            assert_eq!(open, public, "{method} {path}: security");
        }
    }
}
