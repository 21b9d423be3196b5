//! What `arca daemon` reads from arca.toml: a job's schedules, retries and
//! notifications, the blackout windows, and the daemon's own settings.
//! `arca run` ignores all of it; `arca config check` checks it all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use arca_core::ops::forget::parse_duration;
use arca_core::Strategy;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use toml::Spanned;

use super::check::Checker;
use super::raw::{RawBlackout, RawDaemon, RawNotify, RawRetry, RawSchedule, RawSmtp};
use super::{parse_size, parse_verify, VerifyAfter};

/// A cron expression (5 fields, or 6 with seconds first), read in a time
/// zone. Shown as written.
#[derive(Clone, Debug)]
pub struct Cron {
    expr: String,
    cron: croner::Cron,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.expr == other.expr
    }
}

impl serde::Serialize for Cron {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expr)
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

impl FromStr for Cron {
    type Err = String;
    fn from_str(s: &str) -> Result<Cron, String> {
        let fields = s.split_whitespace().count();
        if !(fields == 5 || fields == 6 || s.trim_start().starts_with('@')) {
            return Err(format!(
                "cron expression {s:?} has {fields} fields: give 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(s)
            .map_err(|e| format!("cron expression {s:?}: {e}"))?;
        Ok(Cron { expr: s.to_string(), cron })
    }
}

impl Cron {
    /// The first time strictly after `t` that the expression names, read
    /// on the wall clock of `tz`, by Vixie cron's rules: a fixed time (no
    /// `*`, step or list in its seconds, minutes and hours) that falls in a
    /// daylight saving gap runs right after the gap, and once in a repeated
    /// hour; an interval line skips the times of a gap and runs each time
    /// of a repeated hour.
    pub fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t.with_timezone(&tz), false).ok().map(|d| d.with_timezone(&Utc))
    }

    /// The latest time at or before `t` that the expression names.
    pub fn latest_until(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t.with_timezone(&tz), true).ok().map(|d| d.with_timezone(&Utc))
    }
}

/// The order in which waiting runs start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// After every other.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before every other.
    High,
}

/// What happens to the runs a schedule missed while the daemon was down,
/// the machine slept, or the clock jumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// One run, however many times were missed.
    #[default]
    RunOnce,
    /// None: the next run is the next scheduled time (a `missed`
    /// notification says so).
    Skip,
}

/// A job's schedules, each a cron expression in the schedule's time zone.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Schedule {
    /// Backups, one expression per strategy (when two fall on one time,
    /// the run uses the first of full, differential, incremental).
    pub backups: Vec<(Strategy, Cron)>,
    /// Retention (forget and prune) on every destination.
    pub retention: Option<Cron>,
    /// Verification of the latest snapshot on every destination.
    pub verify: Option<Cron>,
    /// What the scheduled verification checks (default: a restore test).
    pub verify_mode: VerifyAfter,
    /// The time zone the expressions are read in (default: the system's).
    #[serde(serialize_with = "tz_name")]
    pub tz: Tz,
    /// Each run starts up to this many seconds after its time, at random,
    /// so that many machines do not all start at once.
    pub jitter_secs: u64,
    /// Order among waiting runs.
    pub priority: Priority,
    /// Missed runs.
    pub missed: Missed,
    /// A run waits while the load average per core is above this.
    pub max_load_per_core: Option<f64>,
    /// A run waits while the file system of the first source has less
    /// free space than this (bytes).
    pub min_free_space: Option<u64>,
}

/// How a failure that waiting can cure (a destination unreachable, a
/// lock held, a time-out) is tried again: after a random delay up to
/// `initial × factor^(n−1)` (full jitter), capped at `max`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Retry {
    /// Tries in all, the first included (1: no retry).
    pub attempts: u32,
    /// The ceiling of the first delay, in seconds.
    pub initial_secs: u64,
    /// How much the ceiling grows with each try.
    pub factor: f64,
    /// The largest ceiling, in seconds.
    pub max_secs: u64,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry { attempts: 3, initial_secs: 60, factor: 2.0, max_secs: 3600 }
    }
}

/// What a notification is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A run started (pings: `/start`).
    Start,
    /// A run succeeded.
    Success,
    /// A run failed (after its last retry).
    Failure,
    /// Verification found damaged or missing files.
    Damage,
    /// A scheduled time passed without its run (downtime, a blackout with
    /// `policy = "skip"`, a clock jump).
    Missed,
}

impl EventKind {
    /// Every kind, as written in arca.toml.
    pub const ALL: [EventKind; 5] =
        [EventKind::Start, EventKind::Success, EventKind::Failure, EventKind::Damage, EventKind::Missed];

    /// As written in arca.toml.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Success => "success",
            EventKind::Failure => "failure",
            EventKind::Damage => "damage",
            EventKind::Missed => "missed",
        }
    }
}

/// The body of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The event as JSON (docs/daemon.md, "Notifications").
    #[default]
    Json,
    /// `{"text": "…"}`, which Slack, Mattermost, Rocket.Chat and Discord's
    /// Slack endpoint take.
    Slack,
}

/// Where a notification goes. URLs often carry a secret (a Slack hook, a
/// ping UUID): `config show` and the logs show their host alone.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An HTTP POST of the event.
    Webhook {
        /// The URL.
        #[serde(serialize_with = "masked_url")]
        url: String,
        /// The body.
        format: WebhookFormat,
    },
    /// healthchecks.io-style pings: `URL/start`, `URL` on success,
    /// `URL/fail` on failure, `URL/log` for the rest.
    Ping {
        /// The check's URL.
        #[serde(serialize_with = "masked_url")]
        url: String,
    },
    /// A mail through `[daemon.smtp]`.
    Email {
        /// The recipient.
        to: String,
    },
    /// A shell command (`sh -c`) with the event in its environment
    /// (`ARCA_EVENT`, `ARCA_JOB`, `ARCA_RESULT`, …) and as JSON on stdin.
    Command {
        /// The command.
        #[serde(serialize_with = "super::masked")]
        command: String,
    },
}

/// One notification: a channel and the events it is sent on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Notify {
    /// Where.
    #[serde(flatten)]
    pub channel: Channel,
    /// On what.
    pub on: Vec<EventKind>,
}

/// What a run that would start inside a blackout window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlackoutPolicy {
    /// It waits for the window's end.
    #[default]
    Wait,
    /// It does not run (a `missed` notification says so).
    Skip,
}

/// A time of the week in which no run starts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Blackout {
    /// The days on which the window opens (`from`); a window whose `to`
    /// is not after `from` ends on the next day.
    #[serde(serialize_with = "weekdays")]
    pub days: Vec<Weekday>,
    /// Opens at (wall clock of `tz`).
    #[serde(serialize_with = "hh_mm")]
    pub from: NaiveTime,
    /// Closes at.
    #[serde(serialize_with = "hh_mm")]
    pub to: NaiveTime,
    /// Its time zone (default: the system's).
    #[serde(serialize_with = "tz_name")]
    pub tz: Tz,
    /// Wait or skip.
    pub policy: BlackoutPolicy,
    /// The jobs it holds (empty: every job).
    pub jobs: Vec<String>,
}

impl Blackout {
    /// When the window holding `t` closes, if `t` is inside one of its
    /// openings.
    pub fn end_if_inside(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        // An opening that started today or (overnight) yesterday.
        for back in 0..=1 {
            let day = local.date_naive() - chrono::Days::new(back);
            if !self.days.contains(&day.weekday()) {
                continue;
            }
            let start = resolve(self.tz, day.and_time(self.from));
            let end_day = if self.to > self.from { day } else { day + chrono::Days::new(1) };
            let end = resolve(self.tz, end_day.and_time(self.to));
            if let (Some(s), Some(e)) = (start, end) {
                if s <= t && t < e {
                    return Some(e);
                }
            }
        }
        None
    }

    /// Whether it holds job `name`.
    pub fn holds(&self, name: &str) -> bool {
        self.jobs.is_empty() || self.jobs.iter().any(|j| j == name)
    }
}

/// A wall-clock time of `tz` as an instant: the earlier of a repeated
/// time, the first instant after a skipped one.
fn resolve(tz: Tz, t: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&t) {
        LocalResult::Single(d) => Some(d.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        LocalResult::None => {
            { (1..=180).find_map(|m| tz.from_local_datetime(&(t + chrono::Duration::minutes(m))).earliest()) }
                .map(|d| d.with_timezone(&Utc))
        }
    }
}

/// How mail leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (a relay on this machine).
    None,
    /// STARTTLS on the submission port (587).
    Starttls,
    /// TLS from the first byte (465).
    Tls,
}

/// The mail server notifications by email go through.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Smtp {
    /// Its host name.
    pub host: String,
    /// Its port (default: 25 without TLS, 587 with STARTTLS, 465 with TLS).
    pub port: u16,
    /// How the connection is protected (default: STARTTLS).
    pub tls: SmtpTls,
    /// The sender address.
    pub from: String,
    /// The login, if the server wants one.
    pub username: Option<String>,
    /// Where the login's password is: a file (first line) or a variable.
    pub password: Option<super::PasswordSource>,
}

/// The daemon's own settings (`[daemon]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DaemonSettings {
    /// Where the API listens (default `127.0.0.1:8747`).
    pub listen: SocketAddr,
    /// The file holding the API's token (default: `daemon.token` in the
    /// state folder); made, 0600, with a random token when absent.
    pub token_file: Option<PathBuf>,
    /// Runs at once, over every job (default 1).
    pub max_concurrent_jobs: u32,
    /// Runs older than this are dropped from the history, in seconds
    /// (default 400 days).
    pub history_max_age_secs: i64,
    /// Runs wait while the load average per core is above this, unless a
    /// job's schedule says otherwise.
    pub max_load_per_core: Option<f64>,
    /// A certificate chain and its key (PEM): the API speaks HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The mail server, for `email` notifications.
    pub smtp: Option<Smtp>,
}

impl Default for DaemonSettings {
    fn default() -> DaemonSettings {
        DaemonSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8747)),
            token_file: None,
            max_concurrent_jobs: 1,
            history_max_age_secs: 400 * 86400,
            max_load_per_core: None,
            tls: None,
            smtp: None,
        }
    }
}

/// The shortest time between two consecutive times of `c` over a stretch
/// of its times, in seconds.
fn shortest_gap(c: &Cron, tz: Tz) -> Option<u64> {
    let mut t = c.next_after(DateTime::<Utc>::from_timestamp(1_767_225_600, 0)?, tz)?; // 2026-01-01
    let mut shortest = u64::MAX;
    for _ in 0..16 {
        let next = c.next_after(t, tz)?;
        shortest = shortest.min((next - t).num_seconds().max(0) as u64);
        t = next;
    }
    Some(shortest)
}

/// The system's time zone (from `TZ` or /etc/localtime), UTC when it
/// cannot be told.
pub fn system_tz() -> Tz {
    std::env::var("TZ")
        .ok()
        .and_then(|t| t.trim_start_matches(':').parse().ok())
        .or_else(|| iana_time_zone::get_timezone().ok().and_then(|t| t.parse().ok()))
        .unwrap_or(Tz::UTC)
}

fn tz_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

fn hh_mm<S: serde::Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.format("%H:%M"))
}

fn weekdays<S: serde::Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(days.len()))?;
    for d in days {
        seq.serialize_element(&d.to_string().to_lowercase())?;
    }
    seq.end()
}

/// A URL as `scheme://host/…`: the path and query often are the secret.
pub fn mask_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => "(masked)".into(),
    }
}

fn masked_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(url))
}

/// `mon`, `mon-fri`, `sat,sun`, `weekdays`, `weekends`, `daily`.
fn parse_days(s: &str) -> Result<Vec<Weekday>, String> {
    let day =
        |d: &str| d.trim().parse::<Weekday>().map_err(|_| format!("{d:?} is not a day: use mon, tue, … sun"));
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim().to_ascii_lowercase();
        match part.as_str() {
            "daily" | "every day" | "*" => out.extend(week_from(Weekday::Mon, 7)),
            "weekdays" => out.extend(week_from(Weekday::Mon, 5)),
            "weekends" => out.extend([Weekday::Sat, Weekday::Sun]),
            p => match p.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let n = (b.num_days_from_monday() + 7 - a.num_days_from_monday()) % 7 + 1;
                    out.extend(week_from(a, n));
                }
                None => out.push(day(p)?),
            },
        }
    }
    out.sort_by_key(|d| d.num_days_from_monday());
    out.dedup();
    Ok(out)
}

fn week_from(first: Weekday, n: u32) -> impl Iterator<Item = Weekday> {
    (0..n).scan(first, |d, _| {
        let this = *d;
        *d = d.succ();
        Some(this)
    })
}

/// `90`, `30s`, `5m`, `1h30m`, `2d`, `1w`: seconds. Unlike retention
/// ages (where `m` is a month), `m` is a minute: these are short waits.
pub fn parse_interval(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "" | "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86400,
            "w" => 7 * 86400,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(secs)?)?;
    }
    Some(total)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S")).ok()
}

impl Checker<'_> {
    /// One of a few names (`options`), or `default` when absent; a name
    /// not among them is a mistake that lists them.
    fn choice<T: Copy>(
        &mut self,
        what: &str,
        field: &str,
        value: &Option<Spanned<String>>,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(v) = value else { return default };
        match options.iter().find(|(name, _)| name == v.get_ref()) {
            Some((_, t)) => *t,
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                let (last, rest) = names.split_last().expect("options are given");
                self.error(
                    v.span(),
                    format!("{what}: {field} {:?}: use {} or {last}", v.get_ref(), rest.join(", ")),
                );
                default
            }
        }
    }

    fn tz(&mut self, what: &str, tz: &Option<Spanned<String>>) -> Tz {
        match tz {
            None => system_tz(),
            Some(t) => {
                match t.get_ref().parse::<Tz>() {
                    Ok(tz) => tz,
                    Err(_) => {
                        self.error(
                        t.span(),
                        format!("{what}: unknown time zone {:?}: use an IANA name such as Europe/Berlin or UTC", t.get_ref()),
                    );
                        Tz::UTC
                    }
                }
            }
        }
    }

    fn cron(&mut self, what: &str, c: &Option<Spanned<String>>) -> Option<Cron> {
        let c = c.as_ref()?;
        match c.get_ref().parse::<Cron>() {
            Ok(cron) => Some(cron),
            Err(e) => {
                self.error(c.span(), format!("{what}: {e}"));
                None
            }
        }
    }

    /// A short interval (jitter, retry delays): `m` is minutes here.
    fn seconds(&mut self, what: &str, d: &Option<Spanned<String>>) -> Option<u64> {
        let d = d.as_ref()?;
        match parse_interval(d.get_ref()) {
            Some(secs) => Some(secs),
            None => {
                self.error(
                    d.span(),
                    format!("{what}: invalid interval {:?}: use e.g. 30s, 5m, 2h, 1d", d.get_ref()),
                );
                None
            }
        }
    }

    fn load(&mut self, what: &str, l: &Option<Spanned<f64>>) -> Option<f64> {
        let l = l.as_ref()?;
        let v = *l.get_ref();
        if !(v > 0.0 && v.is_finite()) {
            self.error(l.span(), format!("{what}: max_load_per_core must be above 0 (e.g. 1.5)"));
        }
        Some(v)
    }

    pub(super) fn schedule(&mut self, what: &str, s: Spanned<RawSchedule>) -> Option<Schedule> {
        let span = s.span();
        let s = s.into_inner();
        let what = format!("{what}: schedule");
        let mut backups = Vec::new();
        for (strategy, expr) in [
            (Strategy::Full, &s.full),
            (Strategy::Differential, &s.differential),
            (Strategy::Incremental, &s.incremental),
        ] {
            if let Some(c) = self.cron(&format!("{what}.{}", strategy.as_str()), expr) {
                backups.push((strategy, c));
            }
        }
        let retention = self.cron(&format!("{what}.retention"), &s.retention);
        let verify = self.cron(&format!("{what}.verify"), &s.verify);
        if [&s.full, &s.incremental, &s.differential, &s.retention, &s.verify].iter().all(|c| c.is_none()) {
            self.error(
                span.clone(),
                format!(
                    "{what}: nothing is scheduled: give full, incremental, differential, retention or verify"
                ),
            );
        }
        let verify_mode = match &s.verify_mode {
            None => VerifyAfter::RestoreTest,
            Some(v) => match parse_verify(v.get_ref()) {
                Ok(VerifyAfter::None) => {
                    self.error(
                        v.span(),
                        format!("{what}: verify_mode none checks nothing: leave verify out instead"),
                    );
                    VerifyAfter::None
                }
                Ok(v) => v,
                Err(e) => {
                    self.error(
                        v.span(),
                        format!("{what}: {}", e.replace("verify_after_backup", "verify_mode")),
                    );
                    VerifyAfter::None
                }
            },
        };
        if s.verify_mode.is_some() && s.verify.is_none() {
            self.error(span.clone(), format!("{what}: verify_mode without verify (when to verify)"));
        }
        let tz = self.tz(&what, &s.tz);
        let jitter_secs = self.seconds(&format!("{what}.jitter"), &s.jitter).unwrap_or(0);
        // A delay as long as the time between two runs would make every
        // run late, and so "missed".
        let lines = backups.iter().map(|(_, c)| c).chain(retention.iter()).chain(verify.iter());
        let shortest = lines.filter_map(|c| shortest_gap(c, tz)).min();
        if let (Some(gap), Some(j)) = (shortest, &s.jitter) {
            if jitter_secs > 0 && jitter_secs * 2 > gap {
                self.error(
                    j.span(),
                    format!(
                        "{what}: jitter {:?} is more than half the {gap} s between two runs: make it shorter",
                        j.get_ref()
                    ),
                );
            }
        }
        let priority = self.choice(
            &what,
            "priority",
            &s.priority,
            Priority::Normal,
            &[("high", Priority::High), ("normal", Priority::Normal), ("low", Priority::Low)],
        );
        let missed = self.choice(
            &what,
            "missed",
            &s.missed,
            Missed::RunOnce,
            &[("run-once", Missed::RunOnce), ("skip", Missed::Skip)],
        );
        let max_load_per_core = self.load(&what, &s.max_load_per_core);
        let min_free_space = s.min_free_space.as_ref().and_then(|m| {
            let n = parse_size(m.get_ref());
            if n.is_none() {
                self.error(m.span(), format!("{what}: min_free_space {:?}: use e.g. 500M, 20G", m.get_ref()));
            }
            n
        });
        Some(Schedule {
            backups,
            retention,
            verify,
            verify_mode,
            tz,
            jitter_secs,
            priority,
            missed,
            max_load_per_core,
            min_free_space,
        })
    }

    pub(super) fn retry(&mut self, what: &str, r: Option<Spanned<RawRetry>>) -> Retry {
        let mut retry = Retry::default();
        let Some(r) = r else { return retry };
        let r = r.into_inner();
        let what = format!("{what}: retry");
        if let Some(a) = &r.attempts {
            if *a.get_ref() == 0 {
                self.error(a.span(), format!("{what}: attempts counts the first try: at least 1"));
            }
            retry.attempts = (*a.get_ref()).max(1);
        }
        if let Some(f) = &r.factor {
            if !(*f.get_ref() >= 1.0 && f.get_ref().is_finite()) {
                self.error(f.span(), format!("{what}: factor must be 1 or more"));
            } else {
                retry.factor = *f.get_ref();
            }
        }
        if let Some(i) = self.seconds(&format!("{what}.initial"), &r.initial) {
            retry.initial_secs = i;
        }
        if let Some(m) = self.seconds(&format!("{what}.max"), &r.max) {
            retry.max_secs = m;
        }
        if retry.max_secs < retry.initial_secs {
            if let Some(m) = &r.max {
                self.error(m.span(), format!("{what}: max is below initial"));
            }
        }
        retry
    }

    pub(super) fn notify(&mut self, what: &str, n: Spanned<RawNotify>, smtp: bool) -> Option<Notify> {
        let span = n.span();
        let n = n.into_inner();
        let given = [&n.webhook, &n.ping, &n.email, &n.command].iter().filter(|c| c.is_some()).count();
        if given != 1 {
            self.error(span, format!("{what}: a notification names one of webhook, ping, email and command"));
            return None;
        }
        let url = |c: &mut Checker, u: &Spanned<String>| {
            let ok = u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://");
            if !ok {
                c.error(
                    u.span(),
                    format!("{what}: {} is not an http:// or https:// URL", mask_url(u.get_ref())),
                );
            }
            ok
        };
        let format = self.choice(
            what,
            "format",
            &n.format,
            WebhookFormat::Json,
            &[("json", WebhookFormat::Json), ("slack", WebhookFormat::Slack)],
        );
        if let (Some(f), None) = (&n.format, &n.webhook) {
            self.error(f.span(), format!("{what}: format is for a webhook"));
        }
        let (channel, default_on): (Channel, &[EventKind]) = if let Some(u) = &n.webhook {
            url(self, u).then_some(())?;
            (
                Channel::Webhook { url: u.get_ref().clone(), format },
                &[EventKind::Failure, EventKind::Damage, EventKind::Missed],
            )
        } else if let Some(u) = &n.ping {
            url(self, u).then_some(())?;
            (Channel::Ping { url: u.get_ref().trim_end_matches('/').to_string() }, &EventKind::ALL)
        } else if let Some(e) = &n.email {
            let addr = e.get_ref();
            if addr.parse::<lettre::Address>().is_err() {
                self.error(e.span(), format!("{what}: {addr:?} is not a mail address"));
                return None;
            }
            if !smtp {
                self.error(e.span(), format!("{what}: email needs [daemon.smtp] (the mail server)"));
                return None;
            }
            (Channel::Email { to: addr.clone() }, &[EventKind::Failure, EventKind::Damage, EventKind::Missed])
        } else {
            let c = n.command.as_ref().expect("one channel is given");
            (
                Channel::Command { command: c.get_ref().clone() },
                &[EventKind::Failure, EventKind::Damage, EventKind::Missed],
            )
        };
        let on = match &n.on {
            None => default_on.to_vec(),
            Some(list) => {
                let mut on = Vec::new();
                for k in list {
                    match EventKind::ALL.iter().find(|e| e.name() == k.get_ref()) {
                        Some(e) if !on.contains(e) => on.push(*e),
                        Some(_) => {}
                        None => self.error(
                            k.span(),
                            format!(
                                "{what}: on {:?}: use start, success, failure, damage or missed",
                                k.get_ref()
                            ),
                        ),
                    }
                }
                on
            }
        };
        Some(Notify { channel, on })
    }

    pub(super) fn blackout(&mut self, b: Spanned<RawBlackout>, jobs: &[String]) -> Option<Blackout> {
        let b = b.into_inner();
        let what = "blackout";
        let errors = self.errors.len();
        let mut days = Vec::new();
        match &b.days {
            None => days.extend(week_from(Weekday::Mon, 7)),
            Some(list) => {
                for d in list {
                    match parse_days(d.get_ref()) {
                        Ok(ds) => days.extend(ds),
                        Err(e) => self.error(d.span(), format!("{what}: days: {e}")),
                    }
                }
            }
        }
        days.sort_by_key(|d| d.num_days_from_monday());
        days.dedup();
        let mut time = |t: &Spanned<String>, field: &str| {
            let v = parse_time(t.get_ref());
            if v.is_none() {
                self.error(t.span(), format!("{what}: {field} {:?}: use HH:MM (24-hour)", t.get_ref()));
            }
            v
        };
        let (from, to) = (time(&b.from, "from"), time(&b.to, "to"));
        if let (Some(f), Some(t)) = (from, to) {
            if f == t {
                self.error(b.to.span(), format!("{what}: from and to are equal: the window would be empty"));
            }
        }
        let tz = self.tz(what, &b.tz);
        let policy = self.choice(
            what,
            "policy",
            &b.policy,
            BlackoutPolicy::Wait,
            &[("wait", BlackoutPolicy::Wait), ("skip", BlackoutPolicy::Skip)],
        );
        for j in &b.jobs {
            if !jobs.contains(j.get_ref()) {
                self.error(j.span(), format!("{what}: jobs: {:?} is not a job of this file", j.get_ref()));
            }
        }
        if self.errors.len() > errors {
            return None;
        }
        Some(Blackout {
            days,
            from: from?,
            to: to?,
            tz,
            policy,
            jobs: b.jobs.into_iter().map(Spanned::into_inner).collect(),
        })
    }

    pub(super) fn daemon(&mut self, d: Option<Spanned<RawDaemon>>) -> DaemonSettings {
        let mut out = DaemonSettings::default();
        let Some(d) = d else { return out };
        let d = d.into_inner();
        let what = "daemon";
        if let Some(l) = &d.listen {
            match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => out.listen = a,
                Err(_) => self.error(
                    l.span(),
                    format!(
                        "{what}: listen {:?}: give an address and port, e.g. 127.0.0.1:8747",
                        l.get_ref()
                    ),
                ),
            }
        }
        out.token_file = d.token_file.map(PathBuf::from);
        if let Some(m) = &d.max_concurrent_jobs {
            if *m.get_ref() == 0 {
                self.error(m.span(), format!("{what}: max_concurrent_jobs must be at least 1"));
            }
            out.max_concurrent_jobs = (*m.get_ref()).max(1);
        }
        if let Some(h) = &d.history_max_age {
            match parse_duration(h.get_ref()) {
                Ok(secs) => out.history_max_age_secs = secs,
                Err(e) => self.error(h.span(), format!("{what}: history_max_age: {e}")),
            }
        }
        out.max_load_per_core = self.load(what, &d.max_load_per_core);
        match (&d.tls_cert, &d.tls_key) {
            (Some(c), Some(k)) => out.tls = Some((c.get_ref().into(), k.get_ref().into())),
            (Some(s), None) | (None, Some(s)) => {
                self.error(s.span(), format!("{what}: give tls_cert and tls_key together"))
            }
            (None, None) => {}
        }
        out.smtp = d.smtp.and_then(|s| self.smtp(s));
        out
    }

    fn smtp(&mut self, s: Spanned<RawSmtp>) -> Option<Smtp> {
        let span = s.span();
        let s = s.into_inner();
        let what = "daemon.smtp";
        let tls = self.choice(
            what,
            "tls",
            &s.tls,
            SmtpTls::Starttls,
            &[("starttls", SmtpTls::Starttls), ("tls", SmtpTls::Tls), ("none", SmtpTls::None)],
        );
        if s.from.get_ref().parse::<lettre::Address>().is_err() {
            self.error(s.from.span(), format!("{what}: from {:?} is not a mail address", s.from.get_ref()));
        }
        let password = match (s.password_file, s.password_env) {
            (Some(f), None) => Some(super::PasswordSource::File(f.into())),
            (None, Some(v)) => Some(super::PasswordSource::Env(v)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.error(span.clone(), format!("{what}: give password_file or password_env, not both"));
                None
            }
        };
        if password.is_some() && s.username.is_none() {
            self.error(span, format!("{what}: a password without a username"));
        }
        let port = s.port.unwrap_or(match tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        Some(Smtp {
            host: s.host.into_inner(),
            port,
            tls,
            from: s.from.into_inner(),
            username: s.username,
            password,
        })
    }
}
