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

const DAEMON: &str = r#"
[repositories.local]
url = "/srv/backup/arca"
password_file = "/etc/arca/local.pw"

[daemon]
listen = "127.0.0.1:9000"
max_concurrent_jobs = 2
history_max_age = "90d"
smtp = { host = "127.0.0.1", port = 2525, tls = "none", from = "arca@example.com" }

[[blackout]]
days = ["mon-fri"]
from = "09:00"
to = "17:00"
tz = "Europe/Berlin"

[[blackout]]
days = ["sat"]
from = "22:00"
to = "06:00"
tz = "UTC"
policy = "skip"
jobs = ["home"]

[[notify]]
email = "ops@example.com"

[jobs.home]
sources = ["/home"]
destinations = ["local"]
retry = { attempts = 5, initial = "30s", factor = 3, max = "2h" }
notify = [
  { webhook = "https://hooks.example.com/T000/B000/secret", format = "slack", on = ["failure"] },
  { ping = "https://hc-ping.com/0d1e2f/" },
]

[jobs.home.schedule]
full = "0 0 * * 0"
incremental = "0 */6 * * *"
verify = "0 3 * * 0"
tz = "Europe/Berlin"
jitter = "5m"
priority = "high"
missed = "skip"
"#;

#[test]
fn schedules_notifications_blackouts_and_daemon_settings_are_read() {
    let c = Config::parse(DAEMON, "arca.toml").unwrap();
    assert_eq!(c.daemon.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.daemon.max_concurrent_jobs, 2);
    assert_eq!(c.daemon.history_max_age_secs, 90 * 86400);
    let smtp = c.daemon.smtp.as_ref().unwrap();
    assert_eq!((smtp.port, smtp.tls), (2525, SmtpTls::None));
    let home = c.job("home").unwrap();
    let s = home.schedule.as_ref().unwrap();
    let strategies: Vec<Strategy> = s.backups.iter().map(|(st, _)| *st).collect();
    assert_eq!(strategies, vec![Strategy::Full, Strategy::Incremental]);
    assert_eq!(s.verify_mode, VerifyAfter::RestoreTest, "a scheduled verification restores by default");
    assert_eq!((s.jitter_secs, s.priority, s.missed), (300, Priority::High, Missed::Skip));
    assert_eq!(s.tz, chrono_tz::Europe::Berlin);
    assert_eq!(home.retry, Retry { attempts: 5, initial_secs: 30, factor: 3.0, max_secs: 7200 });
    assert_eq!(home.notify.len(), 2);
    assert_eq!(home.notify[0].on, vec![EventKind::Failure]);
    assert_eq!(home.notify[1].on, EventKind::ALL.to_vec(), "a ping hears everything by default");
    assert_eq!(c.notify[0].channel, Channel::Email { to: "ops@example.com".into() });
    assert_eq!(c.blackouts.len(), 2);
    assert_eq!(c.blackouts[0].days.len(), 5);
    assert_eq!(c.blackouts[1].policy, BlackoutPolicy::Skip);
    // Hook and ping URLs carry secrets: `config show` shows the host alone.
    let shown = serde_json::to_string(&c).unwrap();
    assert!(!shown.contains("secret") && !shown.contains("0d1e2f"), "{shown}");
    assert!(shown.contains("https://hooks.example.com/…"), "{shown}");
}

#[test]
fn daemon_mistakes_are_reported_with_their_place() {
    let text = r#"[repositories.r]
url = "/r"
password_env = "PW"
[jobs.j]
sources = ["/x"]
destinations = ["r"]
notify = [{ email = "ops@example.com" }, { webhook = "ftp://x" }]
[jobs.j.schedule]
full = "0 0 * *"
incremental = "0 61 * * *"
tz = "Mars/Olympus"
priority = "urgent"
[[blackout]]
days = ["mon-fri", "someday"]
from = "9am"
to = "17:00"
jobs = ["nope"]
"#;
    let e = errors(text);
    let has = |line: usize, what: &str| e.iter().any(|(l, _, m)| *l == line && m.contains(what));
    assert!(has(7, "email needs [daemon.smtp]"), "{e:?}");
    assert!(has(7, "not an http:// or https:// URL"), "{e:?}");
    assert!(has(9, "has 4 fields"), "{e:?}");
    assert!(has(10, "cron expression \"0 61 * * *\""), "{e:?}");
    assert!(has(11, "unknown time zone \"Mars/Olympus\""), "{e:?}");
    assert!(has(12, "priority \"urgent\""), "{e:?}");
    assert!(has(14, "\"someday\" is not a day"), "{e:?}");
    assert!(has(15, "from \"9am\": use HH:MM"), "{e:?}");
    assert!(has(17, "\"nope\" is not a job"), "{e:?}");
}

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}

#[test]
fn cron_times_follow_the_wall_clock_through_daylight_saving_changes() {
    let berlin = chrono_tz::Europe::Berlin;
    let daily_230: Cron = "30 2 * * *".parse().unwrap();
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist and
    // the run comes right after the gap, once.
    let next = daily_230.next_after(utc("2026-03-29T00:00:00Z"), berlin).unwrap();
    assert_eq!(next, utc("2026-03-29T01:00:00Z"), "03:00 CEST");
    assert_eq!(daily_230.next_after(next, berlin).unwrap(), utc("2026-03-30T00:30:00Z"));
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice
    // and the run happens once.
    let first = daily_230.next_after(utc("2026-10-24T23:00:00Z"), berlin).unwrap();
    assert_eq!(first, utc("2026-10-25T00:30:00Z"), "02:30 CEST");
    assert_eq!(
        daily_230.next_after(first, berlin).unwrap(),
        utc("2026-10-26T01:30:00Z"),
        "not again at 02:30 CET"
    );
    // Six fields: seconds first.
    let every_5s: Cron = "*/5 * * * * *".parse().unwrap();
    assert_eq!(
        every_5s.next_after(utc("2026-01-01T00:00:01Z"), berlin).unwrap(),
        utc("2026-01-01T00:00:05Z")
    );
    assert_eq!(
        every_5s.latest_until(utc("2026-01-01T00:00:09Z"), berlin).unwrap(),
        utc("2026-01-01T00:00:05Z")
    );
}

#[test]
fn a_blackout_window_knows_when_it_ends_overnight_and_in_its_zone() {
    let c = Config::parse(DAEMON, "arca.toml").unwrap();
    let (office, night) = (&c.blackouts[0], &c.blackouts[1]);
    // Monday 2026-12-07 10:00 Berlin (09:00Z) is inside; it ends 17:00 Berlin.
    assert_eq!(office.end_if_inside(utc("2026-12-07T09:00:00Z")), Some(utc("2026-12-07T16:00:00Z")));
    assert_eq!(office.end_if_inside(utc("2026-12-07T07:59:00Z")), None, "08:59 Berlin");
    assert_eq!(office.end_if_inside(utc("2026-12-12T10:00:00Z")), None, "a Saturday");
    // Saturday 22:00 to Sunday 06:00 UTC, held from Sunday's side too.
    assert_eq!(night.end_if_inside(utc("2026-12-13T03:00:00Z")), Some(utc("2026-12-13T06:00:00Z")));
    assert_eq!(night.end_if_inside(utc("2026-12-12T21:59:00Z")), None);
    assert!(night.holds("home") && !night.holds("other") && office.holds("other"));
}

#[test]
fn a_jitter_longer_than_half_the_interval_is_refused() {
    let text = r#"[repositories.r]
url = "/r"
password_env = "PW"
[jobs.j]
sources = ["/x"]
destinations = ["r"]
schedule = { incremental = "*/10 * * * *", jitter = "6m" }
"#;
    let e = errors(text);
    assert!(
        e.iter().any(|(l, _, m)| *l == 7 && m.contains("jitter \"6m\" is more than half the 600 s")),
        "{e:?}"
    );
    assert!(Config::parse(&text.replace("6m", "5m"), "t.toml").is_ok());
}

#[test]
fn a_postgres_source_is_read_and_its_mistakes_named() {
    let text = r#"[repositories.r]
url = "/r"
password_env = "PW"
[jobs.db]
postgres = { url = "postgresql://backup:pw@db.example.com:5433", databases = ["app"] }
destinations = ["r"]
[jobs.named]
postgres = { url = "postgresql://db", cluster = "main" }
destinations = ["r"]
"#;
    let c = Config::parse(text, "t.toml").unwrap();
    match &c.job("db").unwrap().source {
        Source::Postgres(p) => {
            assert_eq!(
                (p.cluster.as_str(), p.databases.clone()),
                ("db.example.com-5433", vec!["app".to_string()])
            )
        }
        other => panic!("{other:?}"),
    }
    match &c.job("named").unwrap().source {
        Source::Postgres(p) => assert_eq!(p.cluster, "main"),
        other => panic!("{other:?}"),
    }
    let shown = serde_json::to_string(&c).unwrap();
    assert!(!shown.contains(":pw@"), "{shown}");
    let bad = r#"[repositories.r]
url = "/r"
password_env = "PW"
[jobs.a]
postgres = { url = "mysql://x" }
destinations = ["r"]
[jobs.b]
command = ["pg_dump", "x"]
postgres = { url = "postgresql://db" }
destinations = ["r"]
[jobs.c]
postgres = { url = "postgresql://db", cluster = "../up" }
destinations = ["r"]
[jobs.d]
postgres = { url = "postgresql://db", physical = true, databases = ["app"] }
destinations = ["r"]
[jobs.e]
postgres = { url = "postgresql://db", physical = true, cluster = "a b" }
destinations = ["r"]
"#;
    let e = errors(bad);
    let has = |line: usize, what: &str| e.iter().any(|(l, _, m)| *l == line && m.contains(what));
    assert!(has(5, "postgres url: a PostgreSQL URL starts with postgresql://"), "{e:?}");
    assert!(has(9, "give one of command and postgres"), "{e:?}");
    assert!(has(12, "postgres cluster \"../up\""), "{e:?}");
    assert!(has(15, "a physical backup holds the whole cluster"), "{e:?}");
    assert!(has(18, "cannot name a cluster"), "{e:?}");
    // Files and a database in one job: the database is backed up beside them.
    let both = r#"[repositories.r]
url = "/r"
password_env = "PW"
[jobs.app]
sources = ["/srv/app"]
postgres = { url = "postgresql://db:5432", physical = true, cluster = "main" }
destinations = ["r"]
"#;
    let c = Config::parse(both, "t.toml").unwrap();
    let app = c.job("app").unwrap();
    assert_eq!(app.source, Source::Paths(vec!["/srv/app".into()]));
    let db = app.database.as_ref().expect("the database beside the files");
    assert_eq!((db.cluster.as_str(), db.physical), ("main", true));
}
