//! Webhooks: the event POSTed as JSON, or as a chat message. Also the HTTP
//! POST with retries that pings use.

use std::error::Error as _;
use std::time::Duration;

use arca_jobs::config::{mask_url, WebhookFormat};
use reqwest::header::CONTENT_TYPE;

use super::{one_line, Event, Notifier, Outcome};

/// POSTs `event` to `url` in `format`.
pub(super) async fn send(n: &Notifier, event: &Event, url: &str, format: WebhookFormat) -> Outcome {
    let body = match format {
        WebhookFormat::Json => serde_json::to_vec(event),
        WebhookFormat::Slack => serde_json::to_vec(&serde_json::json!({ "text": chat_line(event) })),
    };
    match body {
        Ok(body) => post(n, url, "application/json", body).await,
        Err(e) => Outcome::failed(0, format!("the event as JSON: {e}")),
    }
}

/// `arca: job home failure — backup of home failed on nas`.
pub(super) fn chat_line(event: &Event) -> String {
    format!("arca: job {} {} — {}", one_line(&event.job), event.kind.name(), one_line(&event.summary))
}

/// POSTs `body` to `url`, trying again after a connection error, a
/// time-out, a 5xx or a 429 (the receiver may be restarting or busy), but
/// not after another 4xx: the same request would be refused again.
pub(super) async fn post(n: &Notifier, url: &str, content_type: &'static str, body: Vec<u8>) -> Outcome {
    let client = match &n.http {
        Ok(c) => c,
        Err(e) => return Outcome::failed(0, e.clone()),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client
            .post(url)
            .header(CONTENT_TYPE, content_type)
            .timeout(n.limits.http_timeout)
            .body(body.clone())
            .send()
            .await;
        let (again, error) = match sent {
            Ok(r) if r.status().is_success() => return Outcome { attempts: attempt, result: Ok(()) },
            Ok(r) => {
                let status = r.status();
                (status.is_server_error() || status.as_u16() == 429, format!("HTTP {status}"))
            }
            Err(e) => {
                let again = e.is_connect() || e.is_timeout() || e.is_request();
                let what = if e.is_timeout() {
                    format!("no answer within {} s: {}", n.limits.http_timeout.as_secs_f64(), describe(e))
                } else {
                    describe(e)
                };
                (again, what)
            }
        };
        if !again || attempt >= n.limits.http_attempts {
            return Outcome::failed(attempt, scrub(&error, url));
        }
        tokio::time::sleep(backoff(n.limits.backoff_base, attempt)).await;
    }
}

/// A reqwest error and its causes on one line, without the URL (reqwest
/// names it, and its path is often the secret).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `text` with `url`, its path and query, and any user and password in it
/// replaced: whatever a library or a receiver put in an error, it must
/// not carry the secret into logs or the run history.
pub(super) fn scrub(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &mask_url(url));
    if let Some((_, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, secret) = rest.split_at(end);
        if secret.len() > 1 {
            text = text.replace(secret, "/…");
        }
        if let Some((user, _)) = authority.rsplit_once('@') {
            if !user.is_empty() {
                text = text.replace(user, "…");
            }
        }
    }
    text
}

/// The wait before try `attempt + 1`: at random up to `base × 2^(attempt−1)`
/// ("full jitter"), so that many daemons whose receiver came back do not
/// all retry at the same moment.
pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1 << (attempt - 1).min(16));
    let mut bytes = [0u8; 8];
    // Without randomness, the full ceiling: later, never sooner.
    let fraction = match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) as f64 / u64::MAX as f64,
        Err(_) => 1.0,
    };
    ceiling.mul_f64(fraction)
}
