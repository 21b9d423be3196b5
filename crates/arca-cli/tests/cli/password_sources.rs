//! Where passwords come from: a flag on the command line wins over the
//! environment (a password exported for another repository must not be
//! used for this one), every source is listed in `--help`, and a flag that
//! would do nothing (`--config`, before jobs exist) is refused.
use crate::common;

use std::fs;
use std::path::Path;

use common::*;

/// `arca ARGS` with `env` set (and `ARCA_PASSWORD` only when `env` sets it).
fn run_with(arca: &Arca, json: bool, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = arca.command(json, args);
    cmd.env_remove("ARCA_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd)
}

fn write(path: &Path, text: &str) -> String {
    fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_flag_wins_over_the_environment() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let good = write(&base.join("good"), &format!("{PASSWORD}\n"));
    let wrong = write(&base.join("wrong"), "not the password\n");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (&["--password-file", &good], &[("ARCA_PASSWORD", "not the password")]),
        (&["--password-file", &good], &[("ARCA_PASSWORD_COMMAND", "echo not the password")]),
        (&["--password-command", &format!("cat {good}")], &[("ARCA_PASSWORD", "not the password")]),
        (&["--password-command", &format!("cat {good}")], &[("ARCA_PASSWORD_FILE", &wrong)]),
    ];
    for (flags, env) in cases {
        let mut args = flags.to_vec();
        args.push("snapshots");
        let out = run_with(&arca, true, &args, env).ok();
        assert_eq!(out.json().as_array().map(Vec::len), Some(0), "{flags:?} with {env:?}");
    }
    // Among the variables, ARCA_PASSWORD comes first.
    run_with(&arca, false, &["snapshots"], &[("ARCA_PASSWORD", PASSWORD), ("ARCA_PASSWORD_FILE", &wrong)])
        .ok();
    // The two flags together are a usage error.
    let out =
        run_with(&arca, false, &["--password-file", &good, "--password-command", "true", "snapshots"], &[]);
    out.code_is(2);
}

#[test]
fn a_password_file_or_command_with_windows_line_ends_gives_the_same_password() {
    // As arca.toml's password_file reads it: the first line, without "\r".
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let crlf = write(&base.join("crlf"), &format!("{PASSWORD}\r\nsecond line\r\n"));
    run_with(&arca, false, &["--password-file", &crlf, "snapshots"], &[]).ok();
    run_with(&arca, false, &["snapshots"], &[("ARCA_PASSWORD_FILE", &crlf)]).ok();
    run_with(&arca, false, &["--password-command", &format!("cat {crlf}"), "snapshots"], &[]).ok();
}

#[test]
fn a_failing_password_command_is_named_but_never_shown() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let out = run_with(
        &arca,
        false,
        &["--password-command", "echo s3cr3t-token >/dev/null; exit 3", "snapshots"],
        &[],
    )
    .code_is(1);
    out.one_line_error();
    assert!(out.stderr.contains("--password-command"), "{}", out.describe());
    assert!(
        !out.stderr.contains("s3cr3t"),
        "the command (which may hold a secret) is printed: {}",
        out.describe()
    );
    let out = run_with(&arca, false, &["--password-command", "true", "snapshots"], &[]).code_is(1);
    assert!(out.stderr.contains("printed no password"), "{}", out.describe());
}

#[test]
fn new_and_target_password_files_win_over_their_variables() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    // key add: the file's password is the new key's, not ARCA_NEW_PASSWORD's.
    let new = write(&base.join("new"), "the new password\n");
    let mut cmd = arca.command(false, &["key", "add", "--new-password-file", &new]);
    cmd.env("ARCA_NEW_PASSWORD", "the variable's password");
    run_command(cmd).ok();
    arca.with_password("the new password").run(&["snapshots"]).ok();
    arca.with_password("the variable's password").run(&["snapshots"]).code_is(1);
    // copy: --to-password-file wins over ARCA_TO_PASSWORD.
    let other = arca.at(&base.join("other")).with_password("other password");
    other.init();
    let to_pw = write(&base.join("to"), "other password\n");
    let mut cmd =
        arca.command(false, &["copy", "--to", other.repo.to_str().unwrap(), "--to-password-file", &to_pw]);
    cmd.env("ARCA_TO_PASSWORD", "not the target's password");
    run_command(cmd).ok();
}

#[test]
fn help_lists_every_password_variable_and_config_is_refused() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    let help = arca.run(&["--help"]).ok();
    for var in [
        "ARCA_REPOSITORY",
        "ARCA_PASSWORD ",
        "ARCA_PASSWORD_FILE",
        "ARCA_PASSWORD_COMMAND",
        "ARCA_NEW_PASSWORD",
        "ARCA_TO_PASSWORD ",
        "ARCA_TO_PASSWORD_FILE",
        "ARCA_CACHE_DIR",
        "--password-command",
    ] {
        assert!(help.stdout.contains(var), "--help does not name {var}: {}", help.describe());
    }
    // `--config` is for `run`, `config` and --job: with any other command
    // and no --job it is refused, not ignored, even with a file that exists.
    let cfg = write(&base.join("arca.toml"), "[jobs]\n");
    let out = arca.run(&["--config", &cfg, "snapshots"]).code_is(1);
    assert!(
        out.stderr.contains("--config is read by `arca run`, `arca config` and --job"),
        "{}",
        out.describe()
    );
}
