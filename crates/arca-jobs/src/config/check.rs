//! Checking the file as written: every mistake is recorded with its line
//! and column, and checking goes on, so that one pass names them all.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use arca_core::ops::forget::{parse_duration, Policy};
use arca_core::Strategy;
use toml::Spanned;

use super::raw::{RawConfig, RawJob, RawPostgres, RawRepository, RawRetention};
use super::{
    line_column, parse_size, parse_verify, Config, ConfigError, Hooks, Job, PasswordSource, Repository,
    S3Settings, Source, VerifyAfter,
};

pub(super) struct Checker<'a> {
    text: &'a str,
    pub(super) errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(text: &'a str) -> Checker<'a> {
        Checker { text, errors: Vec::new() }
    }

    pub(super) fn error(&mut self, span: Range<usize>, message: String) {
        let (line, column) = line_column(self.text, span.start);
        self.errors.push(ConfigError { line, column, message });
    }

    pub(super) fn config(&mut self, raw: RawConfig) -> Config {
        let declared: Vec<String> = raw.repositories.keys().cloned().collect();
        let mut repositories = BTreeMap::new();
        for (name, r) in raw.repositories {
            let span = r.span();
            if let Some(repo) = self.repository(&name, r.into_inner(), span) {
                repositories.insert(name, repo);
            }
        }
        let daemon = self.daemon(raw.daemon);
        let smtp = daemon.smtp.is_some();
        let job_names: Vec<String> = raw.jobs.keys().cloned().collect();
        let mut jobs = BTreeMap::new();
        for (name, j) in raw.jobs {
            let span = j.span();
            if let Some(job) = self.job(&name, j.into_inner(), span, &repositories, &declared, smtp) {
                jobs.insert(name, job);
            }
        }
        let blackouts = raw.blackout.into_iter().filter_map(|b| self.blackout(b, &job_names)).collect();
        let notify = raw.notify.into_iter().filter_map(|n| self.notify("notify", n, smtp)).collect();
        Config { path: None, repositories, jobs, daemon, blackouts, notify }
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

    fn postgres(&mut self, what: &str, pg: &RawPostgres) -> Option<crate::postgres::Postgres> {
        let cluster = match crate::postgres::Postgres::check_url(pg.url.get_ref()) {
            Ok(c) => c,
            Err(e) => {
                self.error(pg.url.span(), format!("{what}: postgres url: {e}"));
                return None;
            }
        };
        let cluster = match &pg.cluster {
            Some(c)
                if c.get_ref().is_empty() || c.get_ref().contains('/') || c.get_ref().starts_with('.') =>
            {
                self.error(
                    c.span(),
                    format!("{what}: postgres cluster {:?}: a plain folder name", c.get_ref()),
                );
                return None;
            }
            Some(c) => c.get_ref().clone(),
            None => cluster,
        };
        let physical = pg.physical.as_ref().is_some_and(|p| *p.get_ref());
        if physical {
            if let Err(e) = arca_core::ops::wal::check_cluster_name(&cluster) {
                let span = pg.cluster.as_ref().map_or(pg.url.span(), |c| c.span());
                self.error(span, format!("{what}: postgres cluster: {e}"));
                return None;
            }
            if !pg.databases.is_empty() || !pg.schemas.is_empty() {
                let span = pg.physical.as_ref().expect("set").span();
                self.error(span, format!("{what}: a physical backup holds the whole cluster: databases and schemas are for dumps"));
                return None;
            }
        }
        Some(crate::postgres::Postgres {
            url: pg.url.get_ref().clone(),
            databases: pg.databases.clone(),
            schemas: pg.schemas.clone(),
            cluster,
            physical,
        })
    }

    fn job(
        &mut self,
        name: &str,
        j: RawJob,
        span: Range<usize>,
        repositories: &BTreeMap<String, Repository>,
        declared: &[String],
        smtp: bool,
    ) -> Option<Job> {
        let errors = self.errors.len();
        let what = format!("job {name}");
        // A database beside files: its own snapshot in each run, so that
        // one time brings both back (`restore --at … --pg-target`).
        let mut database = None;
        let source = if let (Some(pg), true) = (&j.postgres, j.sources.is_empty()) {
            if j.command.is_some() {
                self.error(pg.span(), format!("{what}: give one of command and postgres"));
                None
            } else {
                self.postgres(&what, pg.get_ref()).map(Source::Postgres)
            }
        } else {
            if let Some(pg) = &j.postgres {
                database = self.postgres(&what, pg.get_ref());
            }
            match (&j.command, j.sources.is_empty()) {
                (Some(c), true) if c.get_ref().is_empty() => {
                    self.error(
                        c.span(),
                        format!("{what}: command is empty: give the program and its arguments"),
                    );
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
                        format!("{what}: nothing to back up: give sources (paths), command or postgres"),
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
        let schedule = j.schedule.and_then(|s| self.schedule(&what, s));
        let retry = self.retry(&what, j.retry);
        let notify =
            j.notify.into_iter().filter_map(|n| self.notify(&format!("{what}: notify"), n, smtp)).collect();
        if self.errors.len() > errors {
            return None;
        }
        Some(Job {
            name: name.to_string(),
            source: source?,
            database,
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
            schedule,
            retry,
            notify,
        })
    }
}
