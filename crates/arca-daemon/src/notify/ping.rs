//! Pings, by the convention of healthchecks.io and Uptime Kuma: the check's
//! URL itself on success, with `/start`, `/fail` or `/log` for the rest;
//! the summary (and error) as the body, which those services keep.

use arca_jobs::config::EventKind;

use super::{webhook, Event, Notifier, Outcome};

/// POSTs `event` to the URL of its kind under the check's `url`.
pub(super) async fn send(n: &Notifier, event: &Event, url: &str) -> Outcome {
    let mut body = event.summary.clone();
    if let Some(error) = &event.error {
        body.push_str("\n\n");
        body.push_str(error);
    }
    webhook::post(n, &url_for(url, event.kind), "text/plain; charset=utf-8", body.into_bytes()).await
}

/// `url` with the suffix of `kind`, before any query string.
pub(super) fn url_for(url: &str, kind: EventKind) -> String {
    let suffix = match kind {
        EventKind::Start => "/start",
        EventKind::Success => "",
        // Damage is a failure to whoever watches the check.
        EventKind::Failure | EventKind::Damage => "/fail",
        // A missed run is neither a success nor a failure: it is logged,
        // and the check's own schedule notices the missing success.
        EventKind::Missed => "/log",
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = format!("{}{suffix}", base.trim_end_matches('/'));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}
