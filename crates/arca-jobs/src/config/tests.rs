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
