//! The web dashboard: one page and its scripts and style, compiled into the
//! binary (no file to install, nothing fetched at run time). They hold no
//! data, so they are served without the token; the page asks for the token
//! and sends it in a header on every API call, as a script would: the
//! dashboard can do nothing the API does not offer, and a forged
//! cross-site request carries no token.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error;
use crate::daemon::Daemon;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The files under `/assets/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("dashboard/app.css")),
    ("app.js", JS, include_str!("dashboard/app.js")),
    ("api.js", JS, include_str!("dashboard/api.js")),
    ("format.js", JS, include_str!("dashboard/format.js")),
    ("chart.js", JS, include_str!("dashboard/chart.js")),
    ("overview.js", JS, include_str!("dashboard/overview.js")),
    ("running.js", JS, include_str!("dashboard/running.js")),
    ("history.js", JS, include_str!("dashboard/history.js")),
    ("charts.js", JS, include_str!("dashboard/charts.js")),
    ("snapshots.js", JS, include_str!("dashboard/snapshots.js")),
    ("icon.svg", SVG, include_str!("dashboard/icon.svg")),
];

/// Scripts and styles from this origin only, none inline (an injected
/// `<script>` or `onclick=` does not run); API calls to this origin only;
/// no framing (clickjacking); no form submits anywhere (the token form is
/// handled by the script, and without it nothing is sent, least of all in
/// a URL).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) fn routes() -> Router<Arc<Daemon>> {
    Router::new().route("/", get(index)).route("/assets/{file}", get(asset))
}

async fn index() -> Response {
    serve(HTML, include_str!("dashboard/index.html"))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => serve(kind, body),
        None => error(StatusCode::NOT_FOUND, format!("no asset {file:?}")),
    }
}

fn serve(kind: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // A new binary serves a new page at once; never a stale script talking
    // to a newer API.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use tower_service::Service;

    use super::*;
    use crate::daemon::DaemonOptions;
    use crate::history::History;
    use crate::metrics::Metrics;
    use crate::notify::Notifier;
    use crate::schedule::Scheduler;

    /// A daemon without jobs, its state in `dir`: enough for the router.
    fn daemon(dir: &std::path::Path) -> Arc<Daemon> {
        let config = Arc::new(arca_jobs::config::Config::parse("", "test.toml").unwrap());
        let now = chrono::Utc::now();
        Arc::new(Daemon {
            sched: Mutex::new(Scheduler::new(config, &HashMap::new(), now, &mut |_| 0)),
            live: Mutex::new(HashMap::new()),
            history: Mutex::new(History::open(&dir.join("history.sqlite")).unwrap()),
            notifier: Mutex::new(Arc::new(Notifier::new(None))),
            metrics: Metrics::new(),
            token: "0123456789abcdef0123456789abcdef".into(),
            opts: DaemonOptions {
                config_path: dir.join("arca.toml"),
                listen: None,
                token_file: None,
                state_dir: dir.to_path_buf(),
                cache_root: None,
            },
            wake: tokio::sync::Notify::new(),
            stopping: arca_core::Cancel::new(),
            unreachable: Mutex::new(HashMap::new()),
        })
    }

    async fn get(app: &mut axum::Router, path: &str) -> Response {
        app.call(Request::get(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_without_the_token_with_strict_headers() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = super::super::router(daemon(dir.path()));
        for (path, kind) in [("/", HTML), ("/assets/app.js", JS), ("/assets/app.css", CSS)] {
            let r = get(&mut app, path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], kind, "{path}");
            assert_eq!(h[header::CACHE_CONTROL], "no-store", "{path}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.starts_with("default-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            assert!(body.len() > 100, "{path}: {} bytes", body.len());
        }
        // The page's scripts and style are all there, and none is inline.
        let page = include_str!("dashboard/index.html");
        assert!(!page.contains("<script>") && !page.contains(" style="), "inline script or style");
        let handler = page.split(" on").skip(1).find(|rest| {
            let name = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(handler.is_none(), "an inline event handler: on{}", handler.unwrap_or_default());
        for (name, _, body) in ASSETS {
            for import in body.split("from \"./").skip(1) {
                let file = import.split('"').next().unwrap();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == file), "{name} imports {file}, not served");
            }
        }
        assert_eq!(get(&mut app, "/assets/nothing.js").await.status(), StatusCode::NOT_FOUND);
        // Data still needs the token.
        assert_eq!(get(&mut app, "/api/jobs").await.status(), StatusCode::UNAUTHORIZED);
    }
}
