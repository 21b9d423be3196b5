//! Bad input gives a one-line error naming the object and the cause, the
//! right exit code, and changes nothing.
use crate::common;

use std::fs;

use common::*;

#[test]
fn bad_input_errors() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 3, 1000, 2);
    let arca = Arca::new(&base);
    arca.init();
    let snap = arca.backup(&[&src], &[]);
    let id = jstr(&snap, "id").to_string();
    let state = snapshot_files(&arca.repo);
    let unchanged = |what: &str| {
        assert_eq!(snapshot_files(&arca.repo), state, "{what} changed the repository");
    };

    // Wrong password.
    let out = arca.with_password("not the password").run(&["snapshots"]).code_is(1);
    out.one_line_error();
    assert!(out.err_lower().contains("password"), "wrong password: {}", out.describe());
    unchanged("a wrong password");
    let out = arca
        .with_password("not the password")
        .run(&[std::ffi::OsStr::new("backup"), src.as_os_str()])
        .code_is(1);
    assert!(out.err_lower().contains("password"), "wrong password on backup: {}", out.describe());
    unchanged("a backup with a wrong password");

    // Missing password file.
    let pwfile = base.join("no-such-password-file");
    let mut cmd = arca.command(false, &["--password-file", pwfile.to_str().unwrap(), "snapshots"]);
    cmd.env_remove("ARCA_PASSWORD");
    let out = run_command(cmd).code_is(1);
    out.one_line_error();
    assert!(out.stderr.contains(pwfile.to_str().unwrap()), "names the password file: {}", out.describe());

    // Password from a file works.
    let good = base.join("pw");
    fs::write(&good, format!("{PASSWORD}\n")).unwrap();
    let mut cmd = arca.command(true, &["--password-file", good.to_str().unwrap(), "snapshots"]);
    cmd.env_remove("ARCA_PASSWORD");
    assert_eq!(run_command(cmd).ok().json().as_array().map(Vec::len), Some(1), "--password-file");

    // Missing repository.
    let missing = base.join("no-such-repo");
    let out = arca.at(&missing).run(&["snapshots"]).code_is(1);
    out.one_line_error();
    assert!(
        out.stderr.contains(missing.to_str().unwrap()),
        "names the missing repository: {}",
        out.describe()
    );
    assert!(!missing.exists(), "a read command created the missing repository");
    let out = arca.at(&missing).run(&[std::ffi::OsStr::new("backup"), src.as_os_str()]);
    assert_eq!(out.code, 1, "backup to a missing --repo: {}", out.describe());
    assert!(
        out.stderr.contains(missing.to_str().unwrap()),
        "names the missing repository: {}",
        out.describe()
    );

    // init over an existing repository.
    let out = arca.run(&["init"]).code_is(1);
    out.one_line_error();
    assert!(out.stderr.contains(arca.repo.to_str().unwrap()), "names the repository: {}", out.describe());
    assert!(out.err_lower().contains("exist"), "says it exists: {}", out.describe());
    unchanged("init over an existing repository");

    // Backup of a source that does not exist: no snapshot.
    let nothing = base.join("no-such-source");
    let out = arca.run(&[std::ffi::OsStr::new("backup"), nothing.as_os_str()]).code_is(1);
    out.one_line_error();
    assert!(out.stderr.contains(nothing.to_str().unwrap()), "names the missing source: {}", out.describe());
    assert_eq!(arca.snapshots().len(), 1, "a backup of a missing source wrote a snapshot");
    unchanged("a backup of a missing source");

    // Unknown snapshot id.
    let out = arca.run(&["info", "deadbeef"]).code_is(1);
    out.one_line_error();
    assert!(out.stderr.contains("deadbeef"), "names the snapshot: {}", out.describe());
    let t = base.join("restore-target");
    let out = arca
        .run(&[std::ffi::OsStr::new("restore"), "deadbeef".as_ref(), "--target".as_ref(), t.as_os_str()])
        .code_is(1);
    assert!(out.stderr.contains("deadbeef"), "names the snapshot: {}", out.describe());
    assert!(
        !t.exists() || fs::read_dir(&t).unwrap().next().is_none(),
        "restore of an unknown snapshot wrote files"
    );
    let out = arca.run(&["ls", "deadbeef"]).code_is(1);
    assert!(out.stderr.contains("deadbeef"), "{}", out.describe());
    unchanged("an unknown snapshot id");

    // Usage errors: exit 2.
    let out = arca
        .run(&[std::ffi::OsStr::new("backup"), src.as_os_str(), "--strategy".as_ref(), "bogus".as_ref()])
        .code_is(2);
    assert!(out.stderr.contains("bogus"), "names the bad value: {}", out.describe());
    let out = arca.run(&["restore", &id]).code_is(2);
    assert!(
        out.stderr.contains("--target") || out.err_lower().contains("target"),
        "names the missing option: {}",
        out.describe()
    );
    arca.run(&["no-such-command"]).code_is(2);
    arca.run(&["snapshots", "--no-such-flag"]).code_is(2);
    arca.run(&[std::ffi::OsStr::new("backup"), src.as_os_str(), "--time".as_ref(), "yesterday-ish".as_ref()])
        .code_is_any(&[1, 2]);
    assert_eq!(arca.snapshots().len(), 1);
    unchanged("usage errors");

    // A repository of a format version this binary does not know.
    let future = base.join("future-repo");
    cp_a(&arca.repo, &future);
    let config_path = future.join("config");
    let config = fs::read_to_string(&config_path).expect("the repository has a `config` file");
    let mut v: serde_json::Value = serde_json::from_str(&config).expect("config is JSON");
    assert!(v.get("version").is_some(), "config has a version field: {v}");
    v["version"] = serde_json::json!(99);
    fs::write(&config_path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let before = snapshot_files(&future);
    let out = arca.at(&future).run(&["snapshots"]).code_is(1);
    out.one_line_error();
    assert!(out.err_lower().contains("version"), "mentions the version: {}", out.describe());
    assert!(out.stderr.contains("99"), "names the unknown version: {}", out.describe());
    let out = arca.at(&future).run(&[std::ffi::OsStr::new("backup"), src.as_os_str()]).code_is(1);
    assert!(out.err_lower().contains("version"), "{}", out.describe());
    assert_eq!(snapshot_files(&future), before, "a refused repository was changed");

    // No password at all and no terminal: an error, not a hang.
    let mut cmd = arca.command(false, &["snapshots"]);
    cmd.env_remove("ARCA_PASSWORD");
    let out = run_command(cmd).code_is(1);
    out.one_line_error();
    assert!(out.err_lower().contains("password"), "says a password is needed: {}", out.describe());

    // A directory that is not a repository.
    let not_repo = base.join("not-a-repo");
    fs::create_dir_all(&not_repo).unwrap();
    fs::write(not_repo.join("hello"), b"x").unwrap();
    let out = arca.at(&not_repo).run(&["snapshots"]).code_is(1);
    out.one_line_error();
    assert!(out.stderr.contains(not_repo.to_str().unwrap()), "names the path: {}", out.describe());
    assert_eq!(fs::read_dir(&not_repo).unwrap().count(), 1, "a non-repository directory was changed");

    // ARCA_REPOSITORY stands in for --repo.
    let mut cmd = std::process::Command::new(ARCA);
    cmd.args(["--json", "snapshots"])
        .env("ARCA_REPOSITORY", &arca.repo)
        .env("ARCA_PASSWORD", PASSWORD)
        .env("HOME", &arca.home)
        .env("ARCA_CACHE_DIR", &arca.cache);
    assert_eq!(run_command(cmd).ok().json().as_array().map(Vec::len), Some(1), "ARCA_REPOSITORY");

    // A closed stdout (`arca ls ... | head -1`) is not an error.
    let mut cmd = arca.command(false, &["ls", &id]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away before arca writes
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "broken pipe panicked: {stderr}");
    assert_eq!(out.status.code(), Some(0), "a broken pipe is not an error; stderr: {stderr}");
    assert!(stderr.trim().is_empty(), "nothing to report on a broken pipe: {stderr}");

    // After all that, the repository is intact.
    arca.verify(&["--read-data"]).ok();
}
