//! `arca.toml`: repositories (destinations) and named jobs, read and
//! checked as a whole. Every mistake is reported at once, each with the
//! line and column of the value at fault, so one `arca config check` shows
//! everything there is to fix. `raw` is the file as written (serde, with
//! the place of every value), `check` turns it into this module's model.

mod check;
mod daemon;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arca_core::ops::forget::Policy;
use arca_core::ops::verify::Subset;
use arca_core::Strategy;

use check::Checker;
pub use daemon::{
    mask_url, parse_interval, system_tz, Blackout, BlackoutPolicy, Channel, Cron, DaemonSettings, EventKind,
    Missed, Notify, Priority, Retry, Schedule, Smtp, SmtpTls, WebhookFormat,
};
use raw::RawConfig;

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line of the value at fault (0 when it has no place, e.g.
    /// the file could not be read).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, and what would be right.
    pub message: String,
}

/// Every mistake of a configuration file, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigErrors {
    /// The file, for messages (`arca.toml` when read from elsewhere).
    pub file: String,
    /// The mistakes, by line.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// `FILE:LINE:COLUMN: message`, one per line.
    pub fn render(&self) -> String {
        let lines: Vec<String> = self
            .errors
            .iter()
            .map(|e| match e.line {
                0 => format!("{}: {}", self.file, e.message),
                l => format!("{}:{}:{}: {}", self.file, l, e.column, e.message),
            })
            .collect();
        lines.join("\n")
    }
}

/// How a repository's password is found: never in the file itself.
/// Shown (`config show`) as its kind and file or variable; a command is
/// masked, since it may hold the password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    /// The first line of this file (which should be readable by its owner
    /// alone).
    File(PathBuf),
    /// The first line this shell command prints.
    Command(#[serde(serialize_with = "masked")] String),
    /// This environment variable.
    Env(String),
}

/// A repository a job backs up to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Repository {
    /// Its name in `[repositories.NAME]`.
    #[serde(skip)]
    pub name: String,
    /// Where it is: a path, `file:///path` or `s3://bucket/prefix`.
    pub url: String,
    /// Where its password comes from.
    pub password: PasswordSource,
    /// Lower first: the job backs up to the reachable destination of lowest
    /// priority and copies from it to the others.
    pub priority: u32,
    /// Retention here, replacing the job's.
    pub retention: Option<Policy>,
    /// Object storage settings of this repository, replacing the
    /// environment's `AWS_*` for it alone.
    #[serde(skip_serializing_if = "S3Settings::is_empty")]
    pub s3: S3Settings,
}

/// A repository's own object storage settings (each `None`: the
/// environment's).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct S3Settings {
    /// `AWS_ENDPOINT_URL` for this repository.
    pub endpoint: Option<String>,
    /// `AWS_REGION` for this repository.
    pub region: Option<String>,
    /// A file of `AWS_ACCESS_KEY_ID=…` and `AWS_SECRET_ACCESS_KEY=…` lines
    /// (readable by its owner only): the keys, never in arca.toml itself.
    pub keys_file: Option<PathBuf>,
    /// Virtual-host addressing (`bucket.host`), as `ARCA_S3_VIRTUAL_HOST_STYLE`.
    pub virtual_host_style: Option<bool>,
}

impl S3Settings {
    /// Nothing set: the environment's settings apply.
    pub fn is_empty(&self) -> bool {
        *self == S3Settings::default()
    }
}

/// What a job backs up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Files and folders.
    #[serde(rename = "sources")]
    Paths(Vec<PathBuf>),
    /// What a command prints (a database dump), stored as one file; the
    /// run fails, leaving no snapshot, when the command fails.
    Command {
        /// The program and its arguments (no shell).
        argv: Vec<String>,
        /// The name it is stored as: `/NAME` in the snapshot.
        filename: String,
    },
    /// A PostgreSQL cluster: its globals and a dump per database, in
    /// `/postgres/<cluster>/`.
    Postgres(crate::postgres::Postgres),
}

/// What a run checks after backing up, on every destination. Shown as
/// written in arca.toml (`read-data-subset:5%`).
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyAfter {
    /// Nothing.
    None,
    /// Every tree of the new snapshot and that every blob is indexed.
    Structure,
    /// The structure and every pack's data.
    ReadData,
    /// The structure and a share of the packs, rotating over runs.
    ReadDataSubset(Subset),
    /// The structure, and a restore of the new snapshot into a scratch
    /// folder, re-read against the snapshot.
    RestoreTest,
}

/// Shell commands run around a job (`sh -c`), with the run's context in
/// their environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hooks {
    /// Before anything; one that fails stops the run, with its reason.
    pub before: Vec<String>,
    /// After a run in which every destination succeeded.
    pub after: Vec<String>,
    /// After a run in which something failed.
    pub on_failure: Vec<String>,
    /// Last, whatever happened.
    pub finally: Vec<String>,
}

/// A named backup job.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Job {
    /// Its name in `[jobs.NAME]`.
    #[serde(skip)]
    pub name: String,
    /// What it backs up.
    #[serde(flatten)]
    pub source: Source,
    /// A PostgreSQL cluster backed up beside the files (`sources` and
    /// `postgres` both given): its own snapshot in each run, right after
    /// the files'.
    #[serde(rename = "postgres", skip_serializing_if = "Option::is_none")]
    pub database: Option<crate::postgres::Postgres>,
    /// Exclude globs, as `backup --exclude`.
    pub exclude: Vec<String>,
    /// Exclude globs ignoring case, as `backup --iexclude`.
    pub iexclude: Vec<String>,
    /// As `backup --exclude-caches`.
    pub exclude_caches: bool,
    /// As `backup --exclude-if-present`.
    pub exclude_if_present: Vec<String>,
    /// As `backup --exclude-larger-than`, in bytes.
    pub exclude_larger_than: Option<u64>,
    /// As `backup --one-file-system`.
    pub one_file_system: bool,
    /// Its destinations, by priority (lowest first), names of
    /// [`Config::repositories`].
    pub destinations: Vec<String>,
    /// How it backs up.
    pub strategy: Strategy,
    /// Retention on every destination that has none of its own; `None`:
    /// nothing is removed.
    pub retention: Option<Policy>,
    /// What is checked after the backup.
    pub verify_after_backup: VerifyAfter,
    /// Tags of its snapshots.
    pub tags: Vec<String>,
    /// The host name recorded (default: this machine's).
    pub host: Option<String>,
    /// Commands around the run.
    pub hooks: Hooks,
    /// When a run's snapshot is marked suspicious.
    #[serde(flatten)]
    pub guard: crate::guard::Guard,
    /// When the daemon runs it; `None`: only by hand (`arca run`, the API).
    pub schedule: Option<Schedule>,
    /// How the daemon retries a failure that waiting can cure.
    pub retry: Retry,
    /// Notifications the daemon sends about it (besides the file's
    /// `[[notify]]`, sent about every job).
    pub notify: Vec<Notify>,
}

/// A whole `arca.toml`, checked; serialized (`arca config show`) with every
/// default filled in and no secret.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Config {
    /// The file it was read from.
    #[serde(rename = "file")]
    pub path: Option<PathBuf>,
    /// The repositories, by name.
    pub repositories: BTreeMap<String, Repository>,
    /// The jobs, by name.
    pub jobs: BTreeMap<String, Job>,
    /// `[daemon]`.
    pub daemon: DaemonSettings,
    /// `[[blackout]]`: when no run starts.
    pub blackouts: Vec<Blackout>,
    /// `[[notify]]`: notifications about every job.
    pub notify: Vec<Notify>,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError { line: 0, column: 0, message: format!("cannot read it: {e}") }],
        })?;
        let mut config = Config::parse(&text, &file)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Reads and checks `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors { file: file.to_string(), errors };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
            fail(vec![ConfigError { line, column, message: e.message().trim().to_string() }])
        })?;
        let mut c = Checker::new(text);
        let config = c.config(raw);
        if c.errors.is_empty() {
            Ok(config)
        } else {
            c.errors.sort_by_key(|e| (e.line, e.column));
            Err(fail(c.errors))
        }
    }

    /// The job called `name`, or an error naming the jobs there are.
    pub fn job(&self, name: &str) -> Result<&Job, String> {
        self.jobs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            match known.is_empty() {
                true => format!("no job {name:?}: the configuration defines none"),
                false => format!("no job {name:?}: the jobs are {}", known.join(", ")),
            }
        })
    }
}

/// Where arca looks for its configuration when none is given: `ARCA_CONFIG`,
/// then `/etc/arca/arca.toml`, then `~/.config/arca/arca.toml`; the first
/// that exists (an `ARCA_CONFIG` that does not exist is returned all the
/// same, so that loading it says so).
pub fn discover() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ARCA_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let system = PathBuf::from("/etc/arca/arca.toml");
    let user = dirs::config_dir().map(|d| d.join("arca").join("arca.toml"));
    [Some(system), user].into_iter().flatten().find(|p| p.exists())
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A password command's place in `config show`.
fn masked<S: serde::Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("(masked)")
}

impl std::fmt::Display for VerifyAfter {
    /// As arca.toml writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyAfter::None => f.write_str("none"),
            VerifyAfter::Structure => f.write_str("structure"),
            VerifyAfter::ReadData => f.write_str("read-data"),
            VerifyAfter::ReadDataSubset(s) => write!(f, "read-data-subset:{s}"),
            VerifyAfter::RestoreTest => f.write_str("restore-test"),
        }
    }
}

impl serde::Serialize for VerifyAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `none`, `structure`, `read-data`, `read-data-subset:5%` (or `:2/5`),
/// `restore-test`.
fn parse_verify(s: &str) -> Result<VerifyAfter, String> {
    Ok(match s {
        "none" => VerifyAfter::None,
        "structure" => VerifyAfter::Structure,
        "read-data" => VerifyAfter::ReadData,
        "restore-test" => VerifyAfter::RestoreTest,
        s => match s.strip_prefix("read-data-subset:") {
            Some(subset) => VerifyAfter::ReadDataSubset(subset.parse()?),
            None => {
                return Err(format!(
                    "verify_after_backup {s:?}: use none, structure, read-data, read-data-subset:5% or restore-test"
                ))
            }
        },
    })
}

/// `500M`, `2G`, `1.5T`, `100K`, `4096` (bytes), powers of 1024.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let n: f64 = t[..split].parse().ok()?;
    let unit = match t[split..].trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    (n >= 0.0).then_some((n * unit as f64) as u64)
}
