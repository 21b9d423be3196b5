//! `arca.toml`: repositories (destinations) and named jobs, read and
//! checked as a whole. Every mistake is reported at once, each with the
//! line and column of the value at fault, so one `arca config check` shows
//! everything there is to fix.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use arca_core::ops::forget::{parse_duration, Policy};
use arca_core::ops::verify::Subset;
use arca_core::Strategy;
use serde::Deserialize;
use toml::Spanned;

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
        let mut c = Checker { text, errors: Vec::new() };
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

// ---------------------------------------------------------------------------
// The file as written, before it is checked.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    repositories: BTreeMap<String, Spanned<RawRepository>>,
    #[serde(default)]
    jobs: BTreeMap<String, Spanned<RawJob>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    url: Spanned<String>,
    password_file: Option<Spanned<String>>,
    password_command: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    #[serde(default = "default_priority")]
    priority: u32,
    retention: Option<Spanned<RawRetention>>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_keys_file: Option<String>,
    s3_virtual_host_style: Option<bool>,
}

fn default_priority() -> u32 {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Spanned<String>>,
    #[serde(default)]
    keep_tags: Vec<String>,
    max_versions: Option<u32>,
    max_age: Option<Spanned<String>>,
    #[serde(default)]
    allow_empty: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(default)]
    sources: Vec<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    stdin_filename: Option<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    iexclude: Vec<Spanned<String>>,
    #[serde(default)]
    exclude_caches: bool,
    #[serde(default)]
    exclude_if_present: Vec<String>,
    exclude_larger_than: Option<Spanned<String>>,
    #[serde(default)]
    one_file_system: bool,
    destinations: Spanned<Vec<Spanned<String>>>,
    strategy: Option<Spanned<String>>,
    retention: Option<Spanned<RawRetention>>,
    verify_after_backup: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    host: Option<String>,
    #[serde(default)]
    hooks: RawHooks,
    mass_change_percent: Option<Spanned<u32>>,
    mass_change_compression: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    on_failure: Vec<String>,
    #[serde(default)]
    finally: Vec<String>,
}

// ---------------------------------------------------------------------------
// Checking: every mistake is recorded with its place, and checking goes on.

struct Checker<'a> {
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: String) {
        let (line, column) = line_column(self.text, span.start);
        self.errors.push(ConfigError { line, column, message });
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let declared: Vec<String> = raw.repositories.keys().cloned().collect();
        let mut repositories = BTreeMap::new();
        for (name, r) in raw.repositories {
            let span = r.span();
            if let Some(repo) = self.repository(&name, r.into_inner(), span) {
                repositories.insert(name, repo);
            }
        }
        let mut jobs = BTreeMap::new();
        for (name, j) in raw.jobs {
            let span = j.span();
            if let Some(job) = self.job(&name, j.into_inner(), span, &repositories, &declared) {
                jobs.insert(name, job);
            }
        }
        Config { path: None, repositories, jobs }
    }

    fn repository(&mut self, name: &str, r: RawRepository, span: Range<usize>) -> Option<Repository> {
        let mut ok = true;
        if let Err(e) = arca_backend::location::parse(r.url.get_ref()) {
            self.error(r.url.span(), format!("repository {name}: {e}"));
            ok = false;
        }
        let sources: Vec<PasswordSource> = [
            r.password_file.as_ref().map(|f| PasswordSource::File(PathBuf::from(f.get_ref()))),
            r.password_command.as_ref().map(|c| PasswordSource::Command(c.get_ref().clone())),
            r.password_env.as_ref().map(|v| PasswordSource::Env(v.get_ref().clone())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let password = match <[PasswordSource; 1]>::try_from(sources) {
            Ok([one]) => Some(one),
            Err(none) if none.is_empty() => {
                self.error(
                    span,
                    format!(
                        "repository {name}: no password source: give password_file, password_command or \
                         password_env (a password itself never goes in this file)"
                    ),
                );
                None
            }
            Err(_) => {
                self.error(
                    span,
                    format!(
                        "repository {name}: give one of password_file, password_command and password_env"
                    ),
                );
                None
            }
        };
        let retention = r.retention.and_then(|p| self.retention(&format!("repository {name}"), p));
        let s3 = S3Settings {
            endpoint: r.s3_endpoint,
            region: r.s3_region,
            keys_file: r.s3_keys_file.map(PathBuf::from),
            virtual_host_style: r.s3_virtual_host_style,
        };
        if !s3.is_empty() && !r.url.get_ref().starts_with("s3://") {
            self.error(r.url.span(), format!("repository {name}: s3_* settings are for an s3:// url"));
            ok = false;
        }
        match (ok, password) {
            (true, Some(password)) => Some(Repository {
                name: name.to_string(),
                url: r.url.into_inner(),
                password,
                priority: r.priority,
                retention,
                s3,
            }),
            _ => None,
        }
    }

    fn duration(&mut self, what: &str, d: &Option<Spanned<String>>) -> Option<i64> {
        let d = d.as_ref()?;
        match parse_duration(d.get_ref()) {
            Ok(secs) => Some(secs),
            Err(e) => {
                self.error(d.span(), format!("{what}: {e}"));
                None
            }
        }
    }

    fn retention(&mut self, what: &str, p: Spanned<RawRetention>) -> Option<Policy> {
        let span = p.span();
        let p = p.into_inner();
        let mut policy = Policy {
            keep_last: p.keep_last,
            keep_hourly: p.keep_hourly,
            keep_daily: p.keep_daily,
            keep_weekly: p.keep_weekly,
            keep_monthly: p.keep_monthly,
            keep_yearly: p.keep_yearly,
            keep_within_secs: self.duration(&format!("{what}: keep_within"), &p.keep_within),
            keep_tags: p.keep_tags,
            max_versions: p.max_versions,
            max_age_secs: self.duration(&format!("{what}: max_age"), &p.max_age),
            allow_empty: p.allow_empty,
        };
        if (p.keep_within.is_some() && policy.keep_within_secs.is_none())
            || (p.max_age.is_some() && policy.max_age_secs.is_none())
        {
            return None;
        }
        if policy == (Policy { allow_empty: policy.allow_empty, ..Policy::default() }) {
            self.error(span, format!("{what}: the retention keeps nothing and removes nothing: give at least one rule (keep_last, keep_daily, max_age, …)"));
            return None;
        }
        policy.keep_tags.sort();
        Some(policy)
    }

    fn job(
        &mut self,
        name: &str,
        j: RawJob,
        span: Range<usize>,
        repositories: &BTreeMap<String, Repository>,
        declared: &[String],
    ) -> Option<Job> {
        let errors = self.errors.len();
        let what = format!("job {name}");
        let source = match (&j.command, j.sources.is_empty()) {
            (Some(c), true) if c.get_ref().is_empty() => {
                self.error(c.span(), format!("{what}: command is empty: give the program and its arguments"));
                None
            }
            (Some(c), true) => Some(Source::Command {
                argv: c.get_ref().clone(),
                filename: j
                    .stdin_filename
                    .as_ref()
                    .map_or_else(|| "stdin".to_string(), |f| f.get_ref().clone()),
            }),
            (Some(c), false) => {
                self.error(c.span(), format!("{what}: give sources or command, not both"));
                None
            }
            (None, true) => {
                self.error(
                    span.clone(),
                    format!("{what}: nothing to back up: give sources (paths) or command"),
                );
                None
            }
            (None, false) => {
                let mut paths = Vec::new();
                for s in &j.sources {
                    let p = PathBuf::from(s.get_ref());
                    if !p.is_absolute() {
                        self.error(
                            s.span(),
                            format!("{what}: source {:?} is not an absolute path", s.get_ref()),
                        );
                    }
                    paths.push(p);
                }
                Some(Source::Paths(paths))
            }
        };
        if let Some(f) = &j.stdin_filename {
            let name = f.get_ref();
            if j.command.is_none() {
                self.error(f.span(), format!("{what}: stdin_filename is for a command source"));
            } else if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                self.error(f.span(), format!("{what}: stdin_filename must be a plain file name (no `/`)"));
            }
        }
        for (list, fold) in [(&j.exclude, false), (&j.iexclude, true)] {
            for g in list {
                let pattern = g.get_ref().trim_end_matches('/');
                let full =
                    if pattern.starts_with('/') { pattern.to_string() } else { format!("**/{pattern}") };
                let glob =
                    globset::GlobBuilder::new(&full).literal_separator(true).case_insensitive(fold).build();
                if pattern.is_empty() {
                    self.error(
                        g.span(),
                        format!("{what}: an empty exclude pattern would exclude everything"),
                    );
                } else if let Err(e) = glob {
                    self.error(
                        g.span(),
                        format!("{what}: bad exclude pattern {:?}: {}", g.get_ref(), e.kind()),
                    );
                }
            }
        }
        let exclude_larger_than =
            j.exclude_larger_than.as_ref().and_then(|s| match parse_size(s.get_ref()) {
                Some(n) => Some(n),
                None => {
                    self.error(
                        s.span(),
                        format!("{what}: invalid size {:?}: use e.g. 500M, 2G", s.get_ref()),
                    );
                    None
                }
            });
        let mut destinations: Vec<(u32, String)> = Vec::new();
        if j.destinations.get_ref().is_empty() {
            self.error(
                j.destinations.span(),
                format!("{what}: no destinations: name at least one repository"),
            );
        }
        for d in j.destinations.get_ref() {
            match repositories.get(d.get_ref()) {
                Some(r) if destinations.iter().any(|(_, n)| n == &r.name) => {
                    self.error(d.span(), format!("{what}: destination {:?} is named twice", d.get_ref()));
                }
                Some(r) => destinations.push((r.priority, r.name.clone())),
                // Declared with mistakes of its own, reported there.
                None if declared.contains(d.get_ref()) => {}
                None => {
                    let known: Vec<&str> = declared.iter().map(String::as_str).collect();
                    self.error(
                        d.span(),
                        format!(
                            "{what}: destination {:?} is not a repository of this file (they are: {})",
                            d.get_ref(),
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
            }
        }
        destinations.sort();
        let strategy = match &j.strategy {
            None => Strategy::Incremental,
            Some(s) => match s.get_ref().parse::<Strategy>() {
                Ok(s) => s,
                Err(e) => {
                    self.error(s.span(), format!("{what}: {e}"));
                    Strategy::Incremental
                }
            },
        };
        let verify_after_backup = match &j.verify_after_backup {
            None => VerifyAfter::Structure,
            Some(v) => match parse_verify(v.get_ref()) {
                Ok(v) => v,
                Err(e) => {
                    self.error(v.span(), format!("{what}: {e}"));
                    VerifyAfter::None
                }
            },
        };
        for t in &j.tags {
            if t.get_ref().is_empty() || t.get_ref().contains(',') {
                self.error(
                    t.span(),
                    format!("{what}: tag {:?}: a tag is not empty and has no comma", t.get_ref()),
                );
            }
        }
        let retention = j.retention.and_then(|p| self.retention(&what, p));
        let mut guard = crate::guard::Guard::default();
        if let Some(p) = &j.mass_change_percent {
            if *p.get_ref() > 100 {
                self.error(
                    p.span(),
                    format!("{what}: mass_change_percent is a share of the files: 0 (off) to 100"),
                );
            }
            guard.changed_percent = f64::from(*p.get_ref());
        }
        if let Some(c) = j.mass_change_compression {
            guard.compression = c;
        }
        if self.errors.len() > errors {
            return None;
        }
        Some(Job {
            name: name.to_string(),
            source: source?,
            exclude: j.exclude.into_iter().map(Spanned::into_inner).collect(),
            iexclude: j.iexclude.into_iter().map(Spanned::into_inner).collect(),
            exclude_caches: j.exclude_caches,
            exclude_if_present: j.exclude_if_present,
            exclude_larger_than,
            one_file_system: j.one_file_system,
            destinations: destinations.into_iter().map(|(_, n)| n).collect(),
            strategy,
            retention,
            verify_after_backup,
            tags: j.tags.into_iter().map(Spanned::into_inner).collect(),
            host: j.host,
            hooks: Hooks {
                before: j.hooks.before,
                after: j.hooks.after,
                on_failure: j.hooks.on_failure,
                finally: j.hooks.finally,
            },
            guard,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[repositories.local]
url = "/srv/backup/arca"
password_file = "/etc/arca/local.pw"
priority = 1

[repositories.offsite]
url = "s3://backups/host1"
password_command = "cat /etc/arca/offsite.pw"
priority = 2
retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12, keep_within = "30d", max_versions = 50 }

[jobs.home]
sources = ["/home", "/etc"]
exclude = ["*.tmp", "**/.cache"]
destinations = ["offsite", "local"]
strategy = "incremental"
retention = { keep_last = 5, max_age = "30d" }
verify_after_backup = "read-data-subset:5%"
tags = ["home"]

[jobs.db]
command = ["pg_dump", "mydb"]
stdin_filename = "mydb.sql"
destinations = ["local"]
hooks = { before = ["echo start"], finally = ["echo done"] }
"#;

    #[test]
    fn a_good_file_reads_into_jobs_with_destinations_by_priority() {
        let c = Config::parse(GOOD, "arca.toml").unwrap();
        let home = c.job("home").unwrap();
        assert_eq!(home.destinations, vec!["local", "offsite"], "by priority, not as listed");
        assert_eq!(home.source, Source::Paths(vec!["/home".into(), "/etc".into()]));
        assert_eq!(home.retention.as_ref().unwrap().max_age_secs, Some(30 * 86400));
        assert!(matches!(home.verify_after_backup, VerifyAfter::ReadDataSubset(_)));
        let offsite = &c.repositories["offsite"];
        assert_eq!(offsite.password, PasswordSource::Command("cat /etc/arca/offsite.pw".into()));
        assert_eq!(offsite.retention.as_ref().unwrap().keep_within_secs, Some(30 * 86400));
        let db = c.job("db").unwrap();
        assert_eq!(
            db.source,
            Source::Command { argv: vec!["pg_dump".into(), "mydb".into()], filename: "mydb.sql".into() }
        );
        assert_eq!(db.hooks.before, vec!["echo start"]);
        assert_eq!(db.verify_after_backup, VerifyAfter::Structure, "the default");
        assert!(c.job("nope").unwrap_err().contains("the jobs are db, home"));
    }

    fn errors(text: &str) -> Vec<(usize, usize, String)> {
        let e = Config::parse(text, "t.toml").unwrap_err();
        e.errors.into_iter().map(|e| (e.line, e.column, e.message)).collect()
    }

    #[test]
    fn every_mistake_is_reported_with_its_line_and_column() {
        let text = r#"[repositories.a]
url = "s3:bucket/x"
[repositories.b]
url = "/srv/b"
password_file = "/pw"
password_env = "PW"
[repositories.c]
url = "/srv/c"
[jobs.j]
sources = ["relative/path"]
exclude = ["a["]
destinations = ["b", "nowhere"]
strategy = "sometimes"
retention = { max_age = "30 days" }
verify_after_backup = "always"
exclude_larger_than = "lots"
"#;
        let got = errors(text);
        let want_at = [
            (1, 1, "repository a: no password source"),
            (2, 7, "did you mean s3://bucket/x?"),
            (3, 1, "give one of password_file"),
            (7, 1, "no password source"),
            (10, 12, "not an absolute path"),
            (11, 12, "bad exclude pattern"),
            (12, 22, "destination \"nowhere\" is not a repository"),
            (13, 12, "sometimes"),
            (14, 25, "max_age"),
            (15, 23, "verify_after_backup \"always\""),
            (16, 23, "invalid size \"lots\""),
        ];
        assert_eq!(got.len(), want_at.len(), "{got:#?}");
        for ((line, col, msg), (wl, wc, wm)) in got.iter().zip(want_at) {
            assert!(
                (*line, *col) == (wl, wc) && msg.contains(wm),
                "want {wl}:{wc} {wm:?}, got {line}:{col} {msg:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors_of_the_parser_with_their_place() {
        let got = errors("[repositories.a]\nurl = \"/x\"\npasword_file = \"/pw\"\n");
        assert_eq!((got[0].0, got[0].1), (3, 1), "{got:?}");
        assert!(got[0].2.contains("unknown field `pasword_file`"), "{got:?}");
        let got = errors("[jobs.j]\nsources = \"/home\"\ndestinations = []\n");
        assert_eq!((got[0].0, got[0].1), (2, 11), "{got:?}");
        assert!(got[0].2.contains("invalid type"), "{got:?}");
        let got = errors("[jobs.j]\nsources = [\"/home\"]\n");
        assert!(got[0].2.contains("missing field `destinations`"), "{got:?}");
    }

    #[test]
    fn object_storage_settings_are_for_s3_urls_only() {
        let ok = "[repositories.b2]\nurl = \"s3://bucket/x\"\npassword_env = \"PW\"\ns3_endpoint = \"https://e\"\ns3_keys_file = \"/k\"\n";
        let c = Config::parse(ok, "t.toml").unwrap();
        assert_eq!(c.repositories["b2"].s3.keys_file, Some(PathBuf::from("/k")));
        let got = errors("[repositories.l]\nurl = \"/srv/l\"\npassword_env = \"PW\"\ns3_region = \"x\"\n");
        assert_eq!((got[0].0, got[0].1), (2, 7), "{got:?}");
        assert!(got[0].2.contains("s3_* settings are for an s3:// url"), "{got:?}");
    }

    #[test]
    fn sizes_and_places() {
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(line_column("ab\ncdé\nf", 7), (2, 4));
    }
}
