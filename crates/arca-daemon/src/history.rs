//! The run history: every run the daemon queued, with its times, result,
//! figures and full report, in SQLite under the state folder, so that it
//! survives restarts; also each schedule line's latest handled time (what
//! a restart counts missed runs from) and each destination's size over
//! time. Runs older than `history_max_age` are dropped.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// One run as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRecord {
    /// Its id.
    pub id: i64,
    /// The job.
    pub job: String,
    /// `backup`, `retention`, `verify` or `restore`.
    pub task: String,
    /// A backup's strategy.
    pub strategy: Option<String>,
    /// `schedule`, `catch-up` or `api`.
    pub trigger: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Tries so far.
    pub attempts: u32,
    /// When it was asked for (RFC 3339).
    pub queued_at: String,
    /// When its latest try started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Bytes added to the repository it was backed up into.
    pub bytes_added: u64,
    /// Files in the new snapshot.
    pub files: u64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// The run's report (the `arca run --json` document), once it ended.
    pub report: Option<serde_json::Value>,
}

/// What one schedule's runs came to.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct RunStats {
    /// Runs ended (succeeded or failed; cancelled ones do not count).
    pub runs: u64,
    /// Of those, succeeded.
    pub succeeded: u64,
    /// succeeded / runs, 0 to 1; null without runs.
    pub success_rate: Option<f64>,
    /// The mean duration of the ended runs, in seconds.
    pub mean_duration_seconds: Option<f64>,
    /// When the latest successful run ended.
    pub last_success: Option<String>,
}

/// Which runs [`History::runs_where`] selects (each `None`: any).
#[derive(Debug, Default, Clone, Copy)]
pub struct RunFilter<'a> {
    /// Of this job.
    pub job: Option<&'a str>,
    /// Of this task: backup, retention, verify, restore.
    pub task: Option<&'a str>,
    /// With this status.
    pub status: Option<&'a str>,
}

/// The history database.
pub struct History {
    db: Connection,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl History {
    /// Opens (or creates, readable by its owner alone) the database at
    /// `path`. Runs a previous daemon left queued or running are recorded
    /// as cancelled: that daemon stopped before they ended.
    pub fn open(path: &Path) -> Result<History, String> {
        let fail = |e: rusqlite::Error| format!("history database {}: {e}", path.display());
        if !path.exists() {
            // Made 0600 before SQLite opens it: it holds job names, paths
            // and errors.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("history database {}: {e}", path.display()))?;
        }
        let db = Connection::open(path).map_err(fail)?;
        db.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 job TEXT NOT NULL,
                 task TEXT NOT NULL,
                 strategy TEXT,
                 trigger TEXT NOT NULL,
                 status TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 queued_at TEXT NOT NULL,
                 started_at TEXT,
                 finished_at TEXT,
                 bytes_read INTEGER NOT NULL DEFAULT 0,
                 bytes_added INTEGER NOT NULL DEFAULT 0,
                 files INTEGER NOT NULL DEFAULT 0,
                 error TEXT,
                 report TEXT
             );
             CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
             CREATE TABLE IF NOT EXISTS schedule_state (
                 key TEXT PRIMARY KEY,
                 last_slot TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS repository_sizes (
                 destination TEXT NOT NULL,
                 time TEXT NOT NULL,
                 size_bytes INTEGER NOT NULL,
                 snapshots INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS repository_sizes_time ON repository_sizes (destination, time);",
        )
        .map_err(fail)?;
        db.execute(
            "UPDATE runs SET status = 'cancelled', error = 'the daemon stopped before the run ended',
                 finished_at = COALESCE(finished_at, ?1)
             WHERE status IN ('queued', 'running')",
            params![ts(Utc::now())],
        )
        .map_err(fail)?;
        Ok(History { db })
    }

    /// Records a new waiting run; its id.
    pub fn queue(
        &self,
        job: &str,
        task: &str,
        strategy: Option<&str>,
        trigger: &str,
        now: DateTime<Utc>,
    ) -> i64 {
        let r = self.db.execute(
            "INSERT INTO runs (job, task, strategy, trigger, status, queued_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
            params![job, task, strategy, trigger, ts(now)],
        );
        if let Err(e) = r {
            tracing::error!("recording a queued run: {e}");
        }
        self.db.last_insert_rowid()
    }

    /// Run `id` changed its strategy (a stronger request joined it).
    pub fn set_strategy(&self, id: i64, strategy: &str) {
        self.exec("UPDATE runs SET strategy = ?2 WHERE id = ?1", params![id, strategy]);
    }

    /// Run `id` starts its try `attempt`.
    pub fn started(&self, id: i64, attempt: u32, now: DateTime<Utc>) {
        self.exec(
            "UPDATE runs SET status = 'running', attempts = ?2, started_at = ?3 WHERE id = ?1",
            params![id, attempt, ts(now)],
        );
    }

    /// Run `id` waits again (for a retry).
    pub fn requeued(&self, id: i64, error: &str) {
        self.exec("UPDATE runs SET status = 'queued', error = ?2 WHERE id = ?1", params![id, error]);
    }

    /// Run `id` ended with `status`.
    #[allow(clippy::too_many_arguments)]
    pub fn finished(
        &self,
        id: i64,
        status: &str,
        now: DateTime<Utc>,
        figures: (u64, u64, u64),
        error: Option<&str>,
        report: Option<&serde_json::Value>,
    ) {
        let (bytes_read, bytes_added, files) = figures;
        self.exec(
            "UPDATE runs SET status = ?2, finished_at = ?3, bytes_read = ?4, bytes_added = ?5, files = ?6,
                 error = ?7, report = ?8 WHERE id = ?1",
            params![
                id,
                status,
                ts(now),
                bytes_read as i64,
                bytes_added as i64,
                files as i64,
                error,
                report.map(|r| r.to_string())
            ],
        );
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params) {
        if let Err(e) = self.db.execute(sql, p) {
            tracing::error!("updating the run history: {e}");
        }
    }

    /// Run `id`.
    pub fn run(&self, id: i64) -> Option<RunRecord> {
        self.db
            .query_row(&format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"), params![id], record)
            .optional()
            .unwrap_or_else(|e| {
                tracing::error!("reading the run history: {e}");
                None
            })
    }

    /// The latest runs, newest first: of `job`, or of every job; at most
    /// `limit`, with ids below `before` when given (paging).
    pub fn runs(&self, job: Option<&str>, limit: u32, before: Option<i64>) -> Vec<RunRecord> {
        self.runs_where(&RunFilter { job, ..RunFilter::default() }, limit, before)
    }

    /// The latest runs that `filter` selects, newest first (as [`History::runs`]).
    pub fn runs_where(&self, filter: &RunFilter<'_>, limit: u32, before: Option<i64>) -> Vec<RunRecord> {
        let sql = format!(
            "SELECT {COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR id < ?2)
                 AND (?4 IS NULL OR task = ?4) AND (?5 IS NULL OR status = ?5)
             ORDER BY id DESC LIMIT ?3"
        );
        let rows = self.db.prepare(&sql).and_then(|mut st| {
            st.query_map(params![filter.job, before, limit, filter.task, filter.status], record)?
                .collect::<Result<Vec<_>, _>>()
        });
        rows.unwrap_or_else(|e| {
            tracing::error!("reading the run history: {e}");
            Vec::new()
        })
    }

    /// The ended runs of `job` (and of `task`, when given) in figures.
    pub fn stats(&self, job: &str, task: Option<&str>) -> RunStats {
        let r = self.db.query_row(
            "SELECT COUNT(*), COALESCE(SUM(status = 'succeeded'), 0),
                    AVG((julianday(finished_at) - julianday(started_at)) * 86400.0),
                    MAX(CASE WHEN status = 'succeeded' THEN finished_at END)
             FROM runs WHERE job = ?1 AND (?2 IS NULL OR task = ?2) AND status IN ('succeeded', 'failed')",
            params![job, task],
            |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get::<_, i64>(1)? as u64,
                    row.get::<_, Option<f64>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            },
        );
        match r {
            Ok((runs, succeeded, mean, last)) => RunStats {
                runs,
                succeeded,
                success_rate: (runs > 0).then(|| succeeded as f64 / runs as f64),
                mean_duration_seconds: mean,
                last_success: last,
            },
            Err(e) => {
                tracing::error!("reading the run history: {e}");
                RunStats::default()
            }
        }
    }

    /// The latest handled time of every schedule line, by key.
    pub fn last_slots(&self) -> HashMap<String, DateTime<Utc>> {
        let rows = self.db.prepare("SELECT key, last_slot FROM schedule_state").and_then(|mut st| {
            st.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        });
        rows.unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.parse::<DateTime<Utc>>().ok().map(|t| (k, t)))
            .collect()
    }

    /// Schedule line `key` handled its times up to `t`.
    pub fn set_last_slot(&self, key: &str, t: DateTime<Utc>) {
        self.exec(
            "INSERT INTO schedule_state (key, last_slot) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET last_slot = excluded.last_slot",
            params![key, ts(t)],
        );
    }

    /// Destination `name` measured `size` bytes in `snapshots` snapshots.
    pub fn record_size(&self, name: &str, now: DateTime<Utc>, size: u64, snapshots: u64) {
        self.exec(
            "INSERT INTO repository_sizes (destination, time, size_bytes, snapshots) VALUES (?1, ?2, ?3, ?4)",
            params![name, ts(now), size as i64, snapshots as i64],
        );
    }

    /// Destination sizes over time, oldest first: (destination, time,
    /// bytes, snapshots).
    pub fn sizes(&self, name: Option<&str>) -> Vec<(String, String, u64, u64)> {
        let rows = self
            .db
            .prepare(
                "SELECT destination, time, size_bytes, snapshots FROM repository_sizes
                 WHERE ?1 IS NULL OR destination = ?1 ORDER BY time",
            )
            .and_then(|mut st| {
                st.query_map(params![name], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)? as u64, row.get::<_, i64>(3)? as u64))
                })?
                .collect::<Result<Vec<_>, _>>()
            });
        rows.unwrap_or_default()
    }

    /// Drops runs and sizes recorded before `cutoff`; how many runs.
    pub fn prune(&self, cutoff: DateTime<Utc>) -> usize {
        let c = ts(cutoff);
        let n = self
            .db
            .execute(
                "DELETE FROM runs WHERE queued_at < ?1 AND status NOT IN ('queued', 'running')",
                params![c],
            )
            .unwrap_or(0);
        self.exec("DELETE FROM repository_sizes WHERE time < ?1", params![c]);
        n
    }
}

const COLUMNS: &str =
    "id, job, task, strategy, trigger, status, attempts, queued_at, started_at, finished_at,
                       bytes_read, bytes_added, files, error, report";

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        job: row.get(1)?,
        task: row.get(2)?,
        strategy: row.get(3)?,
        trigger: row.get(4)?,
        status: row.get(5)?,
        attempts: row.get::<_, i64>(6)? as u32,
        queued_at: row.get(7)?,
        started_at: row.get(8)?,
        finished_at: row.get(9)?,
        bytes_read: row.get::<_, i64>(10)? as u64,
        bytes_added: row.get::<_, i64>(11)? as u64,
        files: row.get::<_, i64>(12)? as u64,
        error: row.get(13)?,
        report: row.get::<_, Option<String>>(14)?.and_then(|r| serde_json::from_str(&r).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_survive_a_restart_and_unfinished_ones_become_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        let now: DateTime<Utc> = "2026-12-07T12:00:00Z".parse().unwrap();
        {
            let h = History::open(&path).unwrap();
            let a = h.queue("home", "backup", Some("incremental"), "schedule", now);
            h.started(a, 1, now);
            h.finished(a, "succeeded", now + chrono::Duration::seconds(30), (100, 10, 3), None, None);
            let b = h.queue("home", "backup", Some("full"), "api", now);
            h.started(b, 1, now);
            let c = h.queue("home", "verify", None, "schedule", now);
            h.set_last_slot("home/incremental", now);
            assert_eq!((a, b, c), (1, 2, 3));
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let h = History::open(&path).unwrap();
        let runs = h.runs(Some("home"), 10, None);
        let statuses: Vec<(i64, &str)> = runs.iter().map(|r| (r.id, r.status.as_str())).collect();
        assert_eq!(statuses, vec![(3, "cancelled"), (2, "cancelled"), (1, "succeeded")]);
        assert_eq!(runs[2].bytes_read, 100);
        let s = h.stats("home", Some("backup"));
        assert_eq!((s.runs, s.succeeded, s.success_rate), (1, 1, Some(1.0)));
        assert!((s.mean_duration_seconds.unwrap() - 30.0).abs() < 0.01, "{s:?}");
        assert_eq!(h.last_slots().get("home/incremental"), Some(&now));
        assert_eq!(h.queue("home", "backup", None, "api", now), 4, "ids keep growing");
        assert_eq!(h.prune(now + chrono::Duration::days(1)), 3, "the ended runs before the cutoff");
        assert_eq!(h.runs(None, 10, None).len(), 1);
    }
}
