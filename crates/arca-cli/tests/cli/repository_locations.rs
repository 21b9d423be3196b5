//! `--repo` forms: another tool's way to write a location (restic's
//! `s3:bucket/path`) is an error naming the accepted forms, never a local
//! folder named `s3:bucket`; a bucket name S3 refuses is named before any
//! request; an endpoint that does not answer fails with its root cause in
//! one line.
use crate::common;

use std::fs;
use std::process::Command;

use common::*;

/// `arca --repo REPO ARGS` run from `dir`, with `env` added.
fn run_in(arca: &Arca, repo: &str, dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd: Command = arca.at(std::path::Path::new(repo)).command(false, args);
    cmd.current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd)
}

#[test]
fn other_tools_location_forms_are_refused_and_create_nothing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let work = base.join("work");
    fs::create_dir_all(work.join("src")).unwrap();
    fs::write(work.join("src/f"), "data").unwrap();
    let arca = Arca::new(&base);
    for (repo, hint) in [
        ("s3:bucket/x", Some("s3://bucket/x")),
        ("S3:bucket/x", None),
        ("sftp:host:/srv/repo", Some("sftp://host/srv/repo")),
        ("file:/tmp/repo", Some("file:///tmp/repo")),
    ] {
        for args in [&["init"][..], &["backup", "src"], &["snapshots"]] {
            let out = run_in(&arca, repo, &work, args, &[]).code_is(1);
            out.one_line_error();
            assert!(out.stderr.contains("is not a location arca reads"), "{}", out.describe());
            assert!(
                out.stderr.contains("s3://bucket/prefix"),
                "names the accepted forms: {}",
                out.describe()
            );
            if let Some(h) = hint {
                assert!(out.stderr.contains(h), "suggests {h}: {}", out.describe());
            }
        }
        let made: Vec<_> = fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(made, ["src"], "{repo}: something was created in the current folder");
    }
    // restic's rest-server form without a repository name: arca serve's
    // form asks for one.
    for args in [&["init"][..], &["snapshots"]] {
        let out = run_in(&arca, "rest:http://host:8000/", &work, args, &[]).code_is(1);
        out.one_line_error();
        assert!(out.stderr.contains("give one repository name"), "{}", out.describe());
    }
    let made: Vec<_> = fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(made, ["src"], "rest: something was created in the current folder");
    // A local folder with a colon in its name is still reachable.
    let out = run_in(&arca, "./s3:bucket", &work, &["init"], &[]).ok();
    assert!(work.join("s3:bucket/config").exists(), "{}", out.describe());
}

/// sftp:// mistakes are named before ssh runs (a password in the URL never
/// echoed, a host that ssh would take as an option refused); a server where
/// nothing listens fails in one line naming it, as a temporary error.
#[test]
fn sftp_locations_fail_early_and_readably() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    for (url, want) in [
        ("sftp://nas", "no folder on the server"),
        ("sftp://nas/", "no folder on the server"),
        ("sftp://me:hunter2@nas/srv/arca", "takes no password"),
        ("sftp://-oProxyCommand=touch_x/srv", "not a host name"),
        ("sftp://nas:ssh/srv", "not a port number"),
        ("sftp://nas/srv/../etc", "plain and absolute"),
    ] {
        let out = run_in(&arca, url, &base, &["snapshots"], &[]).code_is(1);
        out.one_line_error();
        assert!(out.stderr.contains(want), "{url}: {}", out.describe());
        assert!(!out.stderr.contains("hunter2"), "the password was echoed: {}", out.describe());
    }
    assert!(!base.join("touch_x").exists());
    if crate::sshserver::missing().is_some() {
        skip("sftp_locations_fail_early_and_readably", "ssh is not installed");
        return;
    }
    let port = crate::sshserver::free_port();
    let url = format!("sftp://me@127.0.0.1:{port}/srv/repo");
    let out = run_in(&arca, &url, &base, &["snapshots"], &[("ARCA_SSH_CONFIG", "/dev/null")]);
    assert_ne!(out.code, 0, "{}", out.describe());
    out.one_line_error();
    assert!(out.stderr.contains(&format!("cannot connect to [127.0.0.1]:{port}")), "{}", out.describe());
    assert!(out.stderr.contains(&url), "names the repository: {}", out.describe());
}

/// Against an endpoint where nothing listens: a bucket name S3 refuses
/// fails before any request (a request would say "cannot reach"), and a
/// valid one fails with the connection's root cause in one line.
#[test]
fn s3_locations_fail_early_and_readably() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    let endpoint = format!("http://127.0.0.1:{}", crate::s3server::free_port());
    let env =
        [("AWS_ENDPOINT_URL", endpoint.as_str()), ("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")];
    for bucket in ["My_Bucket", "ab", "-bucket", "bucket-", "a..b", "192.168.1.1"] {
        let url = format!("s3://{bucket}/repo");
        let out = run_in(&arca, &url, &base, &["snapshots"], &env).code_is(1);
        out.one_line_error();
        assert!(out.stderr.contains("is not a valid bucket name"), "{}", out.describe());
        assert!(out.stderr.contains(&format!("{bucket:?}")), "names the bucket: {}", out.describe());
    }
    let out = run_in(&arca, "s3://bucket/repo", &base, &["snapshots"], &env).code_is(1);
    out.one_line_error();
    let err = out.err_lower();
    assert!(err.contains(&format!("cannot reach {endpoint}")), "{}", out.describe());
    assert!(err.contains("connection refused"), "{}", out.describe());
    assert!(
        !err.contains("context:") && !err.contains("http_util"),
        "the client's context: {}",
        out.describe()
    );
}
