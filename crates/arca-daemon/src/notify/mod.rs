//! Notifications: an [`Event`] (a run started, succeeded, failed, found
//! damage; a schedule was missed) sent to every channel of the job's and
//! the file's `notify` lists that asks for its kind.

use arca_jobs::config::EventKind;
use serde::Serialize;

/// What happened, as sent to webhooks (JSON), commands (stdin and
/// environment), mails and pings (as text). docs/json.md, `Event`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// start, success, failure, damage or missed.
    pub kind: EventKind,
    /// The job.
    pub job: String,
    /// What ran: `backup`, `retention` or `verify`.
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
