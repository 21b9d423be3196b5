//! Notifications: an [`Event`] (a run started, succeeded, failed, found
//! damage; a schedule was missed) sent to every channel of the job's and
//! the file's `notify` lists that asks for its kind.

mod command;
mod email;
mod ping;
#[cfg(test)]
mod tests;
mod webhook;

use std::time::Duration;

use arca_jobs::config::{mask_url, Channel, EventKind, Notify, Smtp};
use futures_util::future::join_all;
use serde::Serialize;

/// What happened, as sent to webhooks (JSON), commands (stdin and
/// environment), mails and pings (as text). docs/daemon.md, "Notifications".
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// start, success, failure, damage or missed.
    pub kind: EventKind,
    /// The job.
    pub job: String,
    /// What ran: `backup`, `retention`, `verify` or `restore`.
    pub task: String,
    /// The backup's strategy, for a backup.
    pub strategy: Option<String>,
    /// The run in the daemon's history (`GET /api/runs/{id}`); none for a
    /// missed schedule.
    pub run_id: Option<i64>,
    /// When it happened (RFC 3339, UTC).
    pub time: String,
    /// The machine the daemon runs on.
    pub host: String,
    /// `success` or `failure` once a run ended, else null.
    pub result: Option<String>,
    /// One line for a person: what ran, on which destinations, with what
    /// outcome.
    pub summary: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Per destination, for a run that reached them.
    pub destinations: Vec<EventDestination>,
    /// Files found damaged or missing (a `damage` event).
    pub damaged: Vec<String>,
}

/// One destination's part in an [`Event`].
#[derive(Debug, Clone, Serialize)]
pub struct EventDestination {
    /// Its name in arca.toml.
    pub name: String,
    /// Whether its part succeeded.
    pub success: bool,
    /// The run's snapshot there.
    pub snapshot: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What sending an [`Event`] to one channel came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The channel without its secrets: `webhook https://host/…`,
    /// `ping https://host/…`, `email ADDRESS` or `command` (a command line
    /// may hold a token, so it is never shown).
    pub channel: String,
    /// Whether it arrived.
    pub ok: bool,
    /// Tries made (webhooks and pings try up to 4 times; 0 when nothing
    /// could be tried, e.g. email without `[daemon.smtp]`).
    pub attempts: u32,
    /// Why it did not arrive; never holds a URL's path or a password.
    pub error: Option<String>,
}

/// Sends events to the channels of `notify` lists. One per daemon: it
/// holds the HTTP client (and its connection pool) and the mail server.
pub struct Notifier {
    smtp: Option<Smtp>,
    /// An error when the HTTP client cannot be made (its TLS setup
    /// failed): webhooks and pings then fail with it instead of panicking.
    http: Result<reqwest::Client, String>,
    limits: Limits,
}

// By hand: the smtp settings' Debug would show a password command.
impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let smtp = self.smtp.as_ref().map(|s| format!("{}:{}", s.host, s.port));
        f.debug_struct("Notifier").field("smtp", &smtp).field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// Time limits and tries. Fixed in the daemon; the tests shorten them.
#[derive(Debug, Clone)]
struct Limits {
    /// Per HTTP request, connection included.
    http_timeout: Duration,
    /// HTTP tries in all, the first included.
    http_attempts: u32,
    /// The ceiling of the first wait between HTTP tries; it doubles after
    /// each.
    backoff_base: Duration,
    /// Per read or write of the SMTP conversation.
    smtp_timeout: Duration,
    /// A command is killed after it.
    command_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            http_timeout: Duration::from_secs(10),
            http_attempts: 4,
            backoff_base: Duration::from_millis(500),
            smtp_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(60),
        }
    }
}

/// One channel's result before it becomes a [`Delivery`].
struct Outcome {
    attempts: u32,
    result: Result<(), String>,
}

impl Outcome {
    fn failed(attempts: u32, error: impl Into<String>) -> Outcome {
        Outcome { attempts, result: Err(error.into()) }
    }
}

impl Notifier {
    /// A notifier sending mail through `smtp` (`[daemon.smtp]`; without
    /// it, email deliveries fail).
    pub fn new(smtp: Option<Smtp>) -> Notifier {
        let http = reqwest::Client::builder()
            .user_agent(concat!("arca/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET, or carry the
            // event to another host: a 3xx is reported instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"));
        Notifier { smtp, http, limits: Limits::default() }
    }

    /// Sends `event` to each of `targets` whose `on` holds its kind, all at
    /// once, and says how each went (one [`Delivery`] per target sent to,
    /// in the order of `targets`). Failures are also logged (a warning).
    pub async fn send(&self, event: &Event, targets: &[&Notify]) -> Vec<Delivery> {
        let sends =
            targets.iter().filter(|t| t.on.contains(&event.kind)).map(|t| self.deliver(event, &t.channel));
        join_all(sends).await
    }

    async fn deliver(&self, event: &Event, channel: &Channel) -> Delivery {
        let (name, outcome) = match channel {
            Channel::Webhook { url, format } => {
                (format!("webhook {}", mask_url(url)), webhook::send(self, event, url, *format).await)
            }
            Channel::Ping { url } => (format!("ping {}", mask_url(url)), ping::send(self, event, url).await),
            Channel::Email { to } => (format!("email {to}"), email::send(self, event, to).await),
            Channel::Command { command } => ("command".to_string(), command::run(self, event, command).await),
        };
        match &outcome.result {
            Ok(()) => {
                tracing::debug!(channel = %name, job = %event.job, kind = event.kind.name(), "notification sent")
            }
            Err(error) => tracing::warn!(
                channel = %name,
                job = %event.job,
                kind = event.kind.name(),
                attempts = outcome.attempts,
                %error,
                "notification not delivered"
            ),
        }
        Delivery {
            channel: name,
            ok: outcome.result.is_ok(),
            attempts: outcome.attempts,
            error: outcome.result.err(),
        }
    }
}

/// `text` on one line (a summary is meant to be one, but a chat message or
/// a subject must be).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
