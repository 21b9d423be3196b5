//! `arca serve`: repositories under one folder, served over HTTP(S) to
//! arca clients (`--repo rest:http://user@host:port/NAME`, the protocol of
//! arca-backend's `rest` module), on the daemon's stack: axum, rustls, the
//! same graceful stop.
//!
//! Each user of the users file reaches only their own repositories; with
//! `--append-only` nothing can be deleted or replaced but locks, so a
//! client taken over by ransomware can add garbage and never destroy
//! history: forget and prune then run on the server (`arca --repo DIR/NAME
//! forget …`) or as an admin user.

pub mod store;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use store::{Power, Refusal, Store};
use users::Users;

/// How `arca serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The folder holding one folder per repository.
    pub root: PathBuf,
    /// The address and port to listen on.
    pub listen: SocketAddr,
    /// Refuse deleting and replacing objects (locks excepted), but for admins.
    pub append_only: bool,
    /// The users file; `None` only with `no_auth`.
    pub users: Option<PathBuf>,
    /// Serve without logging anyone in (every repository to anyone).
    pub no_auth: bool,
    /// Users who may use every repository and delete in append-only mode.
    pub admins: Vec<String>,
    /// Bytes each repository may hold at most.
    pub quota: Option<u64>,
    /// PEM certificate chain and key: HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

struct Served {
    store: Store,
    users: Option<Users>,
    admins: Vec<String>,
}

/// The server's routes for `opts`, with its users file read: what [`run`]
/// serves, for a program (or a test) that serves it on its own listener.
pub fn app(opts: &ServeOptions) -> Result<Router, String> {
    let users = match (&opts.users, opts.no_auth) {
        (Some(path), _) => Some(Users::load(path)?),
        (None, true) => None,
        (None, false) => {
            return Err(
                "give --users FILE (who may log in), or --no-auth to serve every repository to anyone".into(),
            )
        }
    };
    if let Some(a) = opts.admins.iter().find(|a| users.as_ref().is_some_and(|u| !u.has(a))) {
        return Err(format!("--admin {a}: no such user in the users file"));
    }
    if !opts.root.is_dir() {
        return Err(format!(
            "{}: not a folder (create it, owned by the user arca serve runs as)",
            opts.root.display()
        ));
    }
    Ok(router(Arc::new(Served {
        store: Store::new(opts.root.clone(), opts.append_only, opts.quota),
        users,
        admins: opts.admins.clone(),
    })))
}

/// Serves until SIGTERM or SIGINT.
pub fn run(opts: ServeOptions) -> Result<(), String> {
    let app = app(&opts)?;
    let runtime = crate::server_runtime()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", opts.listen))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        if !bound.ip().is_loopback() && opts.tls.is_none() {
            tracing::warn!("serving on {bound}, beyond this machine, without TLS: passwords and data cross the network in clear; give --tls-cert and --tls-key");
        }
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let mode = if opts.append_only { " (append-only)" } else { "" };
        // The one line a supervisor or a test waits for.
        tracing::info!("listening on {scheme}://{bound}{mode}, repositories in {}", opts.root.display());
        let stopping = arca_core::Cancel::new();
        let server = tokio::spawn(crate::api::serve(listener, app, opts.tls.clone(), stopping.clone()));
        stop_signal().await;
        tracing::info!("stopping");
        stopping.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
        Ok(())
    })
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route("/{repo}", any(at_root))
        .route("/{repo}/", any(at_root))
        .route("/{repo}/{*path}", any(at_object))
        // A pack is tens of MiB; one object is never more than this.
        .layer(DefaultBodyLimit::max(1 << 30))
        .with_state(served)
}

fn answer(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, message).into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        answer(self.status, self.message)
    }
}

/// The user the request logs in as, and what they may do with `repo`.
fn admit(served: &Served, headers: &HeaderMap, repo: &str) -> Result<Power, Refusal> {
    if !users::plain_name(repo) {
        return Err(Refusal { status: 404, message: format!("{repo:?} is not a repository name") });
    }
    let Some(users) = &served.users else { return Ok(Power::User) };
    let unauthorized =
        || Refusal { status: 401, message: "log in: a user and password of the server".into() };
    let (name, password) = basic_auth(headers).ok_or_else(unauthorized)?;
    let user = users.check(&name, &password).ok_or_else(unauthorized)?;
    if served.admins.contains(&name) {
        return Ok(Power::Admin);
    }
    if !user.repos.iter().any(|r| r == repo) {
        // The same answer as for a repository that is not there: one user
        // does not learn which repositories others have.
        return Err(Refusal { status: 404, message: format!("no repository {repo} for {name}") });
    }
    Ok(Power::User)
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Runs blocking storage work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(Refusal { status: 500, message: "the request's work stopped".into() }))
}

fn query_value<'a>(query: &'a Option<String>, key: &str) -> Option<&'a str> {
    query.as_deref()?.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == key => Some(v),
        None if kv == key => Some(""),
        _ => None,
    })
}

/// `/{repo}/?create`, `?list=KIND`, `?misplaced=KIND`, `?temporaries`.
async fn at_root(
    State(served): State<Arc<Served>>,
    Path(repo): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let power = match admit(&served, &headers, &repo) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let s = served.clone();
    let result: Result<Response, Refusal> = blocking(move || {
        let r = s.store.repo(&repo);
        let store = &s.store;
        match (method, &query) {
            (Method::POST, _) if query_value(&query, "create").is_some() => {
                store.create(&r).map(|_| StatusCode::CREATED.into_response())
            }
            (Method::GET, _) if query_value(&query, "list").is_some() => store
                .list(&r, query_value(&query, "list").unwrap_or(""), false)
                .map(|v| axum::Json(v).into_response()),
            (Method::GET, _) if query_value(&query, "misplaced").is_some() => store
                .list(&r, query_value(&query, "misplaced").unwrap_or(""), true)
                .map(|v| axum::Json(v).into_response()),
            (Method::GET, _) if query_value(&query, "temporaries").is_some() => {
                store.temporaries(&r, false, power).map(|n| axum::Json(n).into_response())
            }
            (Method::DELETE, _) if query_value(&query, "temporaries").is_some() => {
                store.temporaries(&r, true, power).map(|n| n.to_string().into_response())
            }
            _ => Err(Refusal {
                status: 400,
                message: "ask for ?create, ?list=KIND, ?misplaced=KIND or ?temporaries".into(),
            }),
        }
    })
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `Range: bytes=a-b` as (offset, length).
fn range(headers: &HeaderMap) -> Option<Result<(u64, u64), Refusal>> {
    let value = headers.get(axum::http::header::RANGE)?.to_str().ok()?;
    let bad = || Refusal { status: 416, message: format!("range {value:?}: give bytes=FIRST-LAST") };
    let spec = value.strip_prefix("bytes=")?;
    let parsed =
        spec.split_once('-').and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    Some(match parsed {
        Some((a, b)) if b >= a => Ok((a, b - a + 1)),
        _ => Err(bad()),
    })
}

async fn at_object(
    State(served): State<Arc<Served>>,
    Path((repo, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let power = match admit(&served, &headers, &repo) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let s = served.clone();
    let new_only = headers.get(axum::http::header::IF_NONE_MATCH).is_some_and(|v| v == "*");
    let wanted = match range(&headers) {
        Some(Err(r)) => return r.into_response(),
        Some(Ok(r)) => Some(r),
        None => None,
    };
    let result: Result<Response, Refusal> = blocking(move || {
        let r = s.store.repo(&repo);
        let store = &s.store;
        match method {
            Method::HEAD => {
                match store.size(&r, &path)? {
                    Some(n) => Ok(([(axum::http::header::CONTENT_LENGTH, n.to_string())], StatusCode::OK)
                        .into_response()),
                    None => Err(Refusal { status: 404, message: format!("{repo}/{path} not found") }),
                }
            }
            Method::GET => {
                let data = store.get(&r, &path, wanted)?;
                let status = if wanted.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
                Ok((status, data).into_response())
            }
            Method::PUT => {
                store.put(&r, &path, &body, new_only, power)?;
                tracing::debug!("stored {repo}/{path} ({} bytes)", body.len());
                Ok(StatusCode::OK.into_response())
            }
            Method::DELETE => store.delete(&r, &path, power).map(|_| StatusCode::NO_CONTENT.into_response()),
            m => Err(Refusal { status: 405, message: format!("{m} is not served") }),
        }
    })
    .await;
    result.unwrap_or_else(|r| {
        if r.status >= 500 {
            tracing::warn!("{}", r.message);
        }
        r.into_response()
    })
}
