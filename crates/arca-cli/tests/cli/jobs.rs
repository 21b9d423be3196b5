//! Jobs of arca.toml: `config check` (every mistake with its line and
//! column; the shipped example accepted), `run` (the sources read once for
//! every destination, measured with strace; a destination that is down
//! fails alone and catches up when back, on a real S3 server; retention per
//! destination; hooks in order with their environment; a failing dump
//! leaves no snapshot anywhere), `--job`, and secrets never printed.
use crate::common;
use crate::s3server::S3Server;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use common::*;

/// The passwords of the test repositories: no output may ever hold them.
const LOCAL_PW: &str = "local-secret-Zq81";
const OTHER_PW: &str = "other-secret-Pw55";

/// A password file readable by its owner only.
fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, format!("{password}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// `arca --config FILE ...`, with no ARCA_PASSWORD: every password comes
/// from the configuration.
fn arca_with(base: &Path, config: &Path) -> Arca {
    let mut a = Arca::new(base);
    a.password = String::new();
    a.env.push(("ARCA_CONFIG".into(), config.into()));
    a
}

/// Creates repositories at `path` with `password`.
fn init(base: &Path, repo: &str, password: &str) {
    Arca::with_repo(base, Path::new(repo)).with_password(password).init();
}

/// Runs `arca [--json] ARGS` in `arca`'s environment, but with no
/// `--repo` (a job names its repository) and no ARCA_PASSWORD (every
/// password comes from the configuration).
fn run(arca: &Arca, json: bool, args: &[&str]) -> Out {
    let mut cmd = without_repo(arca.command(json, args));
    // Object storage settings come from arca.toml (or a test's own env).
    for k in
        ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"]
    {
        if !arca.env.iter().any(|(e, _)| e == k) {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("ARCA_PASSWORD");
    let out = run_command(cmd);
    no_secret(&out);
    out
}

fn no_secret(out: &Out) {
    for pw in [LOCAL_PW, OTHER_PW] {
        assert!(
            !out.stdout.contains(pw) && !out.stderr.contains(pw),
            "a password was printed: {}",
            out.describe()
        );
    }
}

fn destination<'a>(report: &'a Value, name: &str) -> &'a Value {
    jarr(report, "destinations")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {report}"))
}

#[test]
fn config_check_names_each_mistake_and_accepts_the_shipped_example() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let bad = base.join("arca.toml");
    fs::write(
        &bad,
        "[repositories.a]\nurl = \"/srv/a\"\npassword_file = \"/pw\"\n\n[jobs.j]\nsources = [\"rel\"]\ndestinations = [\"a\", \"b\"]\nretention = { max_age = \"soon\" }\n",
    )
    .unwrap();
    let arca = arca_with(&base, &bad);
    let out = run(&arca, false, &["config", "check"]).code_is(2);
    let f = bad.display().to_string();
    for want in [
        format!("{f}:6:12: job j: source \"rel\" is not an absolute path"),
        format!("{f}:7:22: job j: destination \"b\" is not a repository of this file (they are: a)"),
        format!("{f}:8:25: job j: max_age: invalid duration \"soon\""),
    ] {
        assert!(out.stderr.contains(&want), "want {want:?}: {}", out.describe());
    }
    let v = run(&arca, true, &["config", "check", bad.to_str().unwrap()]).code_is(2).json();
    assert_eq!(jarr(&v, "errors").len(), 3, "{v}");
    assert_eq!((ju64(&jarr(&v, "errors")[0], "line"), ju64(&jarr(&v, "errors")[0], "column")), (6, 12));
    // A file that is not TOML at all: its place too.
    fs::write(&bad, "[jobs.j\nsources = 1\n").unwrap();
    let out = run(&arca, false, &["config", "check"]).code_is(2);
    assert!(out.stderr.contains(&format!("{f}:1:")), "{}", out.describe());
    // Commands that need the file say what is wrong with it.
    let out = run(&arca, false, &["run", "j"]).code_is(1);
    assert!(out.stderr.contains("arca config check"), "{}", out.describe());
    let out = run(&arca, false, &["--config", "/nonexistent.toml", "config", "show"]).code_is(1);
    assert!(out.stderr.contains("/nonexistent.toml: cannot read it"), "{}", out.describe());

    // The shipped example is valid, and `config show` masks its command.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/arca.example.toml");
    let out = run(&arca, false, &["config", "check", example]).ok();
    assert!(out.stdout.contains("valid: 3 jobs, 3 repositories"), "{}", out.describe());
    let out = run(&arca, false, &["--config", example, "config", "show"]).ok();
    assert!(
        out.stdout.contains("command = \"(masked)\"") && !out.stdout.contains("offsite.pw\""),
        "{}",
        out.describe()
    );
}

/// Two local destinations and the job `home` over `src`.
struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    arca: Arca,
}

fn world(extra_repos: &str, job_extra: &str, destinations: &str) -> World {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 30, 200_000, 11);
    init(&base, base.join("first").to_str().unwrap(), LOCAL_PW);
    init(&base, base.join("second").to_str().unwrap(), OTHER_PW);
    let local_pw = password_file(&base, "local.pw", LOCAL_PW);
    let config = base.join("arca.toml");
    fs::write(
        &config,
        format!(
            r#"[repositories.first]
url = "{first}"
password_file = "{local_pw}"
priority = 1

[repositories.second]
url = "{second}"
password_command = "echo {OTHER_PW}"
priority = 2
{extra_repos}
[jobs.home]
sources = ["{src}"]
destinations = [{destinations}]
tags = ["home"]
{job_extra}
"#,
            first = base.join("first").display(),
            second = base.join("second").display(),
            local_pw = local_pw.display(),
            src = src.display(),
        ),
    )
    .unwrap();
    let arca = arca_with(&base, &config);
    World { _tmp: tmp, base, src, arca }
}

/// How many times each file below `src` was opened, from an strace log.
fn opens_below(log: &Path, src: &Path) -> BTreeMap<String, u32> {
    let text = fs::read_to_string(log).unwrap();
    let mut counts = BTreeMap::new();
    let prefix = format!("\"{}/", src.display());
    for line in text.lines().filter(|l| l.contains("openat(") && !l.contains("= -1")) {
        if let Some(at) = line.find(&prefix) {
            let path: String = line[at + 1..].chars().take_while(|c| *c != '"').collect();
            if !line.contains("O_DIRECTORY") {
                *counts.entry(path).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[test]
fn one_read_of_the_sources_reaches_every_destination() {
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        skip("one_read_of_the_sources_reaches_every_destination", "strace is not installed");
        return;
    }
    let w = world("", "verify_after_backup = \"read-data\"", "\"second\", \"first\"");
    let log = w.base.join("strace.log");
    let mut traced = w.arca.clone();
    traced.wrapper = vec![
        "strace".into(),
        "-f".into(),
        "-qq".into(),
        "-e".into(),
        "trace=openat".into(),
        "-o".into(),
        log.clone().into(),
    ];
    let report = run(&traced, true, &["run", "home"]).ok().json();
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(ju64(&report, "bytes_read"), tree_size(&w.src), "the sources' bytes, once: {report}");
    let opens = opens_below(&log, &w.src);
    assert_eq!(opens.len() as u64, file_count(&w.src), "every file opened: {opens:?}");
    assert!(opens.values().all(|n| *n == 1), "each file opened once for two destinations: {opens:?}");

    // Both destinations hold the same snapshot, each restorable on its own.
    let first = destination(&report, "first");
    let second = destination(&report, "second");
    assert_eq!(
        (first["primary"].as_bool(), second["primary"].as_bool()),
        (Some(true), Some(false)),
        "priority 1 first"
    );
    assert_eq!(ju64(second, "copied"), 1);
    assert_eq!(first["verify"]["valid"], true, "{report}");
    assert_eq!(jstr(&first["verify"], "mode"), "read-data");
    for (name, pw) in [("first", LOCAL_PW), ("second", OTHER_PW)] {
        let a = Arca::with_repo(&w.base, &w.base.join(name)).with_password(pw);
        let target = w.base.join(format!("restored-{name}"));
        a.restore("latest", &target, &[]);
        assert_trees_equal(&w.src, &restored(&target, &w.src), Compare::default());
        let snaps = a.snapshots();
        let tags: Vec<&str> = jarr(&snaps[0], "tags").iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(tags, vec!["home", "job:home"]);
    }
    // `--job` works on the job's first destination with its password.
    let out = run(&w.arca, false, &["--job", "home", "snapshots"]).ok();
    assert!(out.stdout.contains("1 snapshots") && out.stdout.contains("job:home"), "{}", out.describe());
    // --destination picks another destination of the job, with its own password.
    let out = run(&w.arca, true, &["--job", "home", "--destination", "second", "snapshots"]).ok();
    assert_eq!(jstr(&out.json()[0], "id"), jstr(second, "snapshot"), "{}", out.describe());
    let out = run(&w.arca, false, &["--job", "home", "--destination", "third", "snapshots"]).code_is(1);
    assert!(out.stderr.contains("its destinations are first, second"), "{}", out.describe());
    let out = run(&w.arca, false, &["--job", "home", "--repo", "/x", "snapshots"]).code_is(1);
    assert!(out.stderr.contains("either --job or --repo"), "{}", out.describe());
    let out = run(&w.arca, false, &["--job", "nope", "snapshots"]).code_is(1);
    assert!(out.stderr.contains("no job \"nope\": the jobs are home"), "{}", out.describe());
}

#[test]
fn retention_is_per_destination_and_a_failing_dump_leaves_nothing() {
    let w = world(
        "retention = { keep_last = 3 }\n",
        "retention = { keep_last = 1 }\n[jobs.dump]\ncommand = [\"sh\", \"-c\", \"echo partial; exit 3\"]\nstdin_filename = \"db.sql\"\ndestinations = [\"first\", \"second\"]\n",
        "\"first\", \"second\"",
    );
    // `second` has its own retention (keep 3), `first` the job's (keep 1).
    // A password file others can read works, with a warning.
    fs::set_permissions(w.base.join("local.pw"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&w.arca, true, &["run", "home"]).ok();
    let warnings = jarr(&out.json(), "warnings").clone();
    assert!(
        warnings.iter().any(|m| m
            .as_str()
            .unwrap()
            .contains("local.pw can be read by others (mode 0644): chmod 600 it")),
        "{}",
        out.describe()
    );
    fs::set_permissions(w.base.join("local.pw"), fs::Permissions::from_mode(0o600)).unwrap();
    for i in 0..4 {
        fs::write(w.src.join(format!("new-{i}")), format!("{i}")).unwrap();
        let report = run(&w.arca, true, &["run", "home"]).ok().json();
        assert_eq!(report["success"], true, "{report}");
    }
    let count = |name: &str, pw: &str| {
        Arca::with_repo(&w.base, &w.base.join(name)).with_password(pw).snapshots().len()
    };
    assert_eq!(count("first", LOCAL_PW), 1, "the job's keep_last 1");
    assert_eq!(count("second", OTHER_PW), 3, "the destination's own keep_last 3");
    let report = run(&w.arca, true, &["run", "home"]).ok().json();
    assert_eq!(destination(&report, "first")["retention"]["removed"], 1, "{report}");
    assert_eq!(destination(&report, "second")["retention"]["kept"], 3, "{report}");

    // A dump that fails: the run fails, and no destination has a snapshot of it.
    let out = run(&w.arca, true, &["run", "dump"]).code_is(1);
    let report = out.json();
    assert_eq!(report["success"], false);
    assert!(jstr(&report, "error").contains("exit"), "the command's failure is named: {report}");
    let dumps = |name: &str, pw: &str| {
        Arca::with_repo(&w.base, &w.base.join(name)).with_password(pw).json(&[
            "snapshots",
            "--tag",
            "job:dump",
        ])
    };
    assert_eq!(dumps("first", LOCAL_PW).as_array().unwrap().len(), 0);
    assert_eq!(dumps("second", OTHER_PW).as_array().unwrap().len(), 0);
}

#[test]
fn hooks_run_in_order_with_their_environment_and_a_failing_before_stops_the_run() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let log = base.join("hooks.log");
    let hook = |kind: &str| {
        format!(
            // An empty list of failed destinations prints nothing.
            "echo {kind} $ARCA_JOB $ARCA_HOOK ${{ARCA_RESULT:-none}} ${{ARCA_SNAPSHOT:-none}} ${{ARCA_PRIMARY:-none}} \
             ${{ARCA_FAILED_DESTINATIONS-unset}} >> {}",
            log.display()
        )
    };
    let hooks = format!(
        "[jobs.home.hooks]\nbefore = [\"{}\", \"test ! -e {}/stop\"]\nafter = [\"{}\"]\non_failure = [\"{}\"]\nfinally = [\"{}\"]\n",
        hook("before"),
        base.display(),
        hook("after"),
        hook("on_failure"),
        hook("finally")
    );
    let w = world("", &hooks, "\"first\"");
    let report = run(&w.arca, true, &["run", "home"]).ok().json();
    let id = jstr(&report["snapshot"], "id").to_string();
    let lines: Vec<String> = fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "before home before none none none unset".to_string(),
            format!("after home after success {id} first"),
            format!("finally home finally success {id} first"),
        ]
    );
    // A before-hook that fails: nothing backed up, the failure hooks run.
    fs::remove_file(&log).unwrap();
    fs::write(base.join("stop"), "").unwrap();
    let out = run(&w.arca, true, &["run", "home"]).code_is(1);
    let report = out.json();
    assert!(jstr(&report, "error").contains("before hook `test ! -e"), "{report}");
    assert!(report["snapshot"].is_null() && destination(&report, "first")["snapshot"].is_null(), "{report}");
    let lines: Vec<String> = fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "before home before none none none unset".to_string(),
            "on_failure home on_failure failure none none first".to_string(),
            "finally home finally failure none none first".to_string(),
        ]
    );
    let snaps = Arca::with_repo(&w.base, &w.base.join("first")).with_password(LOCAL_PW).snapshots();
    assert_eq!(snaps.len(), 1, "only the first run's snapshot");
}

#[test]
fn a_destination_that_is_down_fails_alone_and_catches_up_when_back() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(mut server) =
        S3Server::start_or_skip("a_destination_that_is_down_fails_alone", &base.join("s3"))
    else {
        return;
    };
    server.create_bucket("offsite");
    let s3 = "s3://offsite/host1";
    let mut s3_arca = Arca::with_repo(&base, Path::new(s3)).with_password(OTHER_PW);
    s3_arca.env.extend(server.aws_env());
    s3_arca.init();
    // The destination's own endpoint, region and keys (from a keys file),
    // none from the environment: arca.toml can name two clouds.
    let env: BTreeMap<String, String> = server
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
        .collect();
    let keys = base.join("offsite.keys");
    fs::write(
        &keys,
        format!(
            "# offsite\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        ),
    )
    .unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
    let w = world(
        &format!(
            "[repositories.offsite]\nurl = \"{s3}\"\npassword_env = \"OFFSITE_PW\"\npriority = 3\n\
             s3_endpoint = \"{}\"\ns3_region = \"{}\"\ns3_keys_file = \"{}\"\n",
            env["AWS_ENDPOINT_URL"],
            env["AWS_REGION"],
            keys.display()
        ),
        "verify_after_backup = \"structure\"",
        "\"first\", \"offsite\"",
    );
    let mut arca = w.arca.clone();
    arca.env.push(("OFFSITE_PW".into(), OTHER_PW.into()));

    let out = run(&arca, true, &["run", "home"]).ok();
    assert!(
        !out.stdout.contains(&env["AWS_SECRET_ACCESS_KEY"])
            && !out.stderr.contains(&env["AWS_SECRET_ACCESS_KEY"])
    );
    let report = out.json();
    assert_eq!(ju64(destination(&report, "offsite"), "copied"), 1, "{report}");
    let out = run(&arca, false, &["config", "show"]).ok();
    assert!(
        out.stdout.contains("offsite.keys") && !out.stdout.contains(&env["AWS_SECRET_ACCESS_KEY"]),
        "{}",
        out.describe()
    );

    // The S3 server goes down: the local destination still gets its
    // snapshot; the run fails, naming offsite.
    server.stop();
    fs::write(w.src.join("while-down"), "x").unwrap();
    let out = run(&arca, true, &["run", "home"]).code_is(1);
    let report = out.json();
    let local = destination(&report, "first");
    assert_eq!(
        (local["success"].as_bool(), local["primary"].as_bool()),
        (Some(true), Some(true)),
        "{report}"
    );
    let offsite = destination(&report, "offsite");
    assert_eq!(offsite["success"], false);
    assert!(
        jstr(offsite, "error").contains("refused") || jstr(offsite, "error").contains("reach"),
        "{report}"
    );
    assert!(jstr(&report, "error").starts_with("offsite: "), "{report}");
    // Waiting may cure an endpoint that does not answer: the daemon retries.
    assert_eq!(
        (offsite["retryable"].as_bool(), report["retryable"].as_bool()),
        (Some(true), Some(true)),
        "{report}"
    );

    // Back up: the next run copies what it missed, and the new one.
    server.restart();
    fs::write(w.src.join("after"), "y").unwrap();
    let report = run(&arca, true, &["run", "home"]).ok().json();
    let offsite = destination(&report, "offsite");
    assert_eq!((offsite["success"].as_bool(), ju64(offsite, "copied")), (Some(true), 2), "{report}");
    assert_eq!(s3_arca.snapshots().len(), 3, "every snapshot of the job is offsite now");
    let target = base.join("from-offsite");
    s3_arca.restore("latest", &target, &[]);
    assert_trees_equal(&w.src, &restored(&target, &w.src), Compare::default());
    // And a run with nothing missed copies only the new one.
    let report = run(&arca, true, &["run", "home"]).ok().json();
    assert_eq!(ju64(destination(&report, "offsite"), "copied"), 1, "{report}");
}

#[test]
fn a_mass_change_is_kept_marked_and_holds_retention_until_confirmed() {
    let w = world(
        "",
        "retention = { keep_last = 1 }\n\
         [jobs.quiet]\nsources = [\"SRC\"]\ndestinations = [\"first\"]\nmass_change_percent = 0\n\
         retention = { keep_last = 3 }\n",
        "\"first\", \"second\"",
    );
    // The world's tree is random: replace it by text, which compresses.
    fs::remove_dir_all(&w.src).unwrap();
    fs::create_dir_all(&w.src).unwrap();
    for i in 0..40 {
        let text: String = (0..1500).map(|l| format!("line {l} of file {i}: all is well\n")).collect();
        fs::write(w.src.join(format!("doc-{i}.txt")), text).unwrap();
    }
    let config = w.base.join("arca.toml");
    let text = fs::read_to_string(&config).unwrap().replace("SRC", w.src.to_str().unwrap());
    fs::write(&config, text).unwrap();
    for job in ["home", "quiet", "home", "quiet"] {
        let report = run(&w.arca, true, &["run", job]).ok().json();
        assert!(report["suspicious"].is_null(), "{report}");
    }

    // Every file overwritten with random bytes of the same size.
    let mut rng = Rng::new(7);
    for i in 0..40 {
        let p = w.src.join(format!("doc-{i}.txt"));
        let len = fs::metadata(&p).unwrap().len() as usize;
        fs::write(&p, rng.bytes(len)).unwrap();
    }
    // The job that only watches compression sees the data stop compressing
    // (run first: the other job's copy would make the data old news).
    let report = run(&w.arca, true, &["run", "quiet"]).code_is(5).json();
    assert!(jstr(&report, "suspicious").contains("does not compress any more"), "{report}");
    let out = run(&w.arca, true, &["run", "home"]).code_is(5);
    let report = out.json();
    assert_eq!(report["success"], true, "the snapshot is kept: {report}");
    assert!(jstr(&report, "suspicious").contains("100 % of the files changed"), "{report}");
    assert!(out.stderr.contains("marked suspicious"), "{}", out.describe());
    for d in ["first", "second"] {
        let r = &destination(&report, d)["retention"];
        assert_eq!(ju64(r, "removed"), 0, "{d}: retention holds: {report}");
        assert!(jstr(r, "held").contains("arca confirm"), "{report}");
    }
    let marked = |name: &str, pw: &str| {
        let a = Arca::with_repo(&w.base, &w.base.join(name)).with_password(pw);
        a.json(&["snapshots", "--suspicious"]).as_array().unwrap().len()
    };
    assert_eq!(
        (marked("first", LOCAL_PW), marked("second", OTHER_PW)),
        (2, 1),
        "marked in every destination (first also holds quiet's)"
    );

    // Held until confirmed: the next run removes nothing either.
    fs::write(w.src.join("doc-0.txt"), "fixed").unwrap();
    let report = run(&w.arca, true, &["run", "home"]).ok().json();
    assert!(report["suspicious"].is_null(), "{report}");
    assert_eq!(ju64(&destination(&report, "first")["retention"], "removed"), 0, "{report}");
    let out = run(&w.arca, false, &["--job", "home", "confirm"]).ok();
    assert!(out.stdout.contains("first: 1 suspicious snapshots confirmed"), "{}", out.describe());
    assert!(out.stdout.contains("second: 1 suspicious snapshots confirmed"), "{}", out.describe());
    assert_eq!(
        (marked("first", LOCAL_PW), marked("second", OTHER_PW)),
        (1, 0),
        "quiet's own mark stays in first"
    );
    let report = run(&w.arca, true, &["run", "home"]).ok().json();
    assert!(
        ju64(&destination(&report, "second")["retention"], "removed") >= 2,
        "retention applies again: {report}"
    );
    let left = Arca::with_repo(&w.base, &w.base.join("second")).with_password(OTHER_PW).snapshots().len();
    assert_eq!(left, 1, "keep_last 1");
}

#[test]
fn status_of_a_job_shows_each_destination_s_health() {
    if !require_root("status_of_a_job_shows_each_destination_s_health", "a read-only tmpfs as a destination")
    {
        return;
    }
    // A third destination on a tmpfs, remounted read-only later.
    let tmp = tempdir();
    let ro = canonical(tmp.path()).join("ro");
    fs::create_dir_all(&ro).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=20m", "tmpfs"])
        .arg(&ro)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        skip("status_of_a_job_shows_each_destination_s_health", "mount -t tmpfs failed");
        return;
    }
    let _guard = MountGuard(ro.clone());
    let ro_repo = ro.join("repo");
    init(tmp.path(), ro_repo.to_str().unwrap(), OTHER_PW);
    let w = world(
        &format!(
            "[repositories.third]\nurl = \"{}\"\npassword_env = \"THIRD_PW\"\npriority = 3\n",
            ro_repo.display()
        ),
        "",
        "\"first\", \"second\", \"third\"",
    );
    let mut arca = w.arca.clone();
    arca.env.push(("THIRD_PW".into(), OTHER_PW.into()));
    arca.env.push(("ARCA_STATE_DIR".into(), w.base.join("state").into()));
    let health = |code: i32| run(&arca, true, &["--job", "home", "status"]).code_is(code).json();
    let of =
        |h: &Value, name: &str| jarr(h, "destinations").iter().find(|d| d["name"] == name).unwrap().clone();

    // Before any run: reachable and writable, nothing on record.
    let h = health(0);
    assert!(h["last_run"].is_null() && h["healthy"] == true, "{h}");
    run(&arca, true, &["run", "home"]).ok();
    let h = health(0);
    assert_eq!(h["last_run"]["success"], true, "{h}");
    for name in ["first", "second", "third"] {
        let d = of(&h, name);
        assert_eq!((d["reachable"].as_bool(), d["writable"].as_bool()), (Some(true), Some(true)), "{d}");
        assert_eq!((ju64(&d, "snapshots"), ju64(&d, "missing")), (1, 0), "{d}");
        assert!(ju64(&d, "space_left") > 0, "a local store says its free space: {d}");
        assert_eq!(d["last_run"]["verify"]["valid"], true, "{d}");
    }
    assert!(ju64(&of(&h, "third"), "space_left") <= 20 << 20, "the tmpfs's own space: {h}");

    // `second` goes away for a run: unreachable, then missing what it missed.
    fs::rename(w.base.join("second"), w.base.join("second.away")).unwrap();
    let h = health(1);
    let d = of(&h, "second");
    assert!(d["reachable"] == false && jstr(&d, "error").starts_with("unreachable: "), "{d}");
    fs::write(w.src.join("more"), "more").unwrap();
    run(&arca, true, &["run", "home"]).code_is(1);
    fs::rename(w.base.join("second.away"), w.base.join("second")).unwrap();
    let h = health(1);
    let d = of(&h, "second");
    assert_eq!(ju64(&d, "missing"), 1, "{d}");
    assert!(jstr(&d, "error").contains("the last run failed here"), "{d}");
    assert_eq!(h["last_run"]["success"], false);
    run(&arca, true, &["run", "home"]).ok();
    assert_eq!(ju64(&of(&health(0), "second"), "missing"), 0);

    // A lock held in `first` is listed; `third` turned read-only is not writable.
    let mut cmd = Arca::with_repo(&w.base, &w.base.join("first"))
        .with_password(LOCAL_PW)
        .command(false, &["backup", "--stdin"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut held = cmd.spawn().unwrap();
    wait_for_file(&w.base.join("first/locks"));
    let remounted = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(&ro).status().unwrap();
    assert!(remounted.success());
    let h = health(1);
    held.kill().unwrap();
    held.wait().unwrap();
    let locks = jarr(&of(&h, "first"), "locks").clone();
    assert!(locks.len() == 1 && jstr(&locks[0], "holder").starts_with("backup by "), "{h}");
    let d = of(&h, "third");
    assert!(d["reachable"] == true && d["writable"] == false, "{d}");
    assert!(jstr(&d, "error").starts_with("not writable: "), "{d}");
    let out = run(&arca, false, &["--job", "home", "status"]).code_is(1);
    assert!(
        out.stdout.contains("job home: NOT HEALTHY") && out.stdout.contains("NOT WRITABLE"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_run_that_cannot_read_some_files_keeps_the_rest_and_exits_3() {
    use std::os::unix::fs::chown;
    const NOBODY: u32 = 65534;
    if !require_root("a_run_that_cannot_read_some_files", "switching to uid 65534 needs root") {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    chmod(&base, 0o777);
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("readable.txt"), "fine").unwrap();
    fs::write(src.join("secret.bin"), "unreadable").unwrap();
    let home = base.join("home");
    fs::create_dir_all(home.join("cache")).unwrap();
    for p in [&src, &src.join("readable.txt"), &src.join("secret.bin"), &home, &home.join("cache")] {
        chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    chmod(&src.join("secret.bin"), 0o000);
    let mut arca = Arca::new(&base);
    arca.wrapper = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"].map(Into::into).to_vec();
    arca.with_password(LOCAL_PW).init();
    let pw = password_file(&base, "pw", LOCAL_PW);
    chown(&pw, Some(NOBODY), Some(NOBODY)).unwrap();
    let config = base.join("arca.toml");
    fs::write(
        &config,
        format!(
            "[repositories.r]\nurl = \"{}\"\npassword_file = \"{}\"\n[jobs.j]\nsources = [\"{}\"]\ndestinations = [\"r\"]\n",
            arca.repo.display(),
            pw.display(),
            src.display()
        ),
    )
    .unwrap();
    arca.env.push(("ARCA_CONFIG".into(), config.into()));
    let out = run(&arca, true, &["run", "j"]).code_is(3);
    let report = out.json();
    assert_eq!(report["success"], true, "{report}");
    let errors = jarr(&report["snapshot"]["summary"], "errors");
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(jstr(&errors[0], "path"), src.join("secret.bin").display().to_string());
    assert!(out.stderr.contains("1 paths could not be read"), "{}", out.describe());
}

#[test]
fn the_example_and_docs_config_md_name_the_same_keys_and_discovery_finds_the_file() {
    // Every key the shipped example uses is documented in docs/config.md.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let example: toml::Table =
        fs::read_to_string(format!("{root}/contrib/arca.example.toml")).unwrap().parse().unwrap();
    let docs = fs::read_to_string(format!("{root}/docs/config.md")).unwrap();
    fn keys(t: &toml::Table, depth: usize, out: &mut Vec<String>) {
        for (k, v) in t {
            // The two tables (documented as [repositories.NAME] and
            // [jobs.NAME]) and the names in them (the user's).
            if depth >= 2 {
                out.push(k.clone());
            }
            if let toml::Value::Table(sub) = v {
                keys(sub, depth + 1, out);
            }
        }
    }
    let mut used = Vec::new();
    keys(&example, 0, &mut used);
    assert!(used.len() > 25, "{used:?}");
    for k in used {
        assert!(docs.contains(&format!("`{k}`")), "docs/config.md does not document `{k}`");
    }

    // Without --config or ARCA_CONFIG, ~/.config/arca/arca.toml is read.
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    let dir = arca.home.join(".config/arca");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("arca.toml"), "[repositories.r]\nurl = \"/srv/r\"\npassword_env = \"PW\"\n").unwrap();
    if Path::new("/etc/arca/arca.toml").exists() {
        skip("config discovery", "/etc/arca/arca.toml exists on this machine and comes first");
        return;
    }
    let out = run(&arca, false, &["config", "check"]).ok();
    assert!(out.stdout.contains(".config/arca/arca.toml: valid: 0 jobs, 1 repository"), "{}", out.describe());
    fs::remove_file(dir.join("arca.toml")).unwrap();
    let out = run(&arca, false, &["config", "check"]).code_is(1);
    assert!(out.stderr.contains("no arca.toml: give --config FILE, set ARCA_CONFIG"), "{}", out.describe());
}
