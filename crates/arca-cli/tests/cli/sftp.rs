//! End to end over SFTP: the real `arca` binary against a real OpenSSH
//! server (`sshd` on loopback with its own keys, see
//! `crates/arca-backend/tests/sshserver/mod.rs`), the client configured
//! through `ARCA_SSH_CONFIG`: init, backup, restore (byte-identical) and
//! verify on `sftp://`; `copy --to sftp://`; the connection killed in the
//! middle of a backup; a server whose host key is unknown refused before
//! anything is written; and a job whose destination is an `sftp://`
//! repository of arca.toml.
use crate::common;
use crate::sshserver;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sshserver::SshServer;

/// A server in `base/sshd`, or `None` after [`skip`] (a failure under
/// `ARCA_TEST_REQUIRE_ROOT`) when sshd is not installed.
fn server_or_skip(test: &str, base: &Path) -> Option<SshServer> {
    if let Some(why) = sshserver::missing() {
        skip(test, &why);
        return None;
    }
    Some(SshServer::start(&base.join("sshd")))
}

/// `arca` against `path` on `server`, HOME and cache under `base`.
fn sftp_arca(base: &Path, server: &SshServer, path: &Path) -> Arca {
    let mut a = Arca::new(base).at(Path::new(&server.url(path)));
    a.env.extend(server.env());
    a
}

#[track_caller]
fn verify_read_data(a: &Arca) {
    let out = a.verify(&["--read-data"]);
    assert_eq!(out.code, 0, "verify --read-data: {}", out.describe());
}

#[track_caller]
fn restore_and_compare(a: &Arca, snap: &str, src: &Path, target: &Path) {
    let res = a.restore(snap, target, &[]);
    assert_eq!(res["success"], true, "restore: {res}");
    assert!(jarr(&res, "errors").is_empty(), "restore reported errors: {res}");
    assert_trees_equal(src, &restored(target, src), Compare::default());
}

/// Every file below `dir`, with its mode.
fn files_and_modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    walk(dir, &mut |p, m| out.push((p.to_path_buf(), m.permissions().mode() & 0o7777)));
    out
}

#[test]
fn sftp_backup_restore_verify_and_copy() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = server_or_skip("sftp_backup_restore_verify_and_copy", &base) else { return };
    let repo = base.join("srv/arca/repo");
    let arca = sftp_arca(&base, &server, &repo);
    let src = base.join("special");
    build_special_tree(&src);
    let big = base.join("big");
    let total = make_random_tree(&big, 8, 8 << 20, 7);

    let init = arca.json(&["init"]);
    assert!(init.get("id").is_some(), "{init}");
    assert!(repo.join("config").is_file(), "no config on the server");
    let again = arca.run(&["init"]);
    assert_ne!(again.code, 0, "init of an existing SFTP repository succeeded: {}", again.describe());

    let b1 = arca.backup(&[&src], &[]);
    assert!(jarr(&b1["summary"], "errors").is_empty(), "{b1}");
    restore_and_compare(&arca, "latest", &src, &base.join("t1"));
    let start = Instant::now();
    let b2 = arca.backup(&[&big], &[]);
    let took = start.elapsed();
    eprintln!(
        "TIMING sftp: backup of {} MB of random data over sftp on loopback: {took:?} ({:.0} MB/s)",
        total >> 20,
        total as f64 / 1e6 / took.as_secs_f64()
    );
    assert!(jarr(&b2["summary"], "errors").is_empty(), "{b2}");
    let start = Instant::now();
    restore_and_compare(&arca, "latest", &big, &base.join("t2"));
    eprintln!("TIMING sftp: restore of {} MB over sftp on loopback: {:?}", total >> 20, start.elapsed());
    verify_read_data(&arca);
    assert_eq!(arca.snapshots().len(), 2);

    // On the server: folders 0700, files 0600, no temporary left behind.
    for (p, mode) in files_and_modes(&repo) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "a temporary was left: {}", p.display());
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} has mode {mode:o}", p.display());
    }

    // copy --to sftp://: a local repository's snapshots to another folder
    // of the server, read back from there.
    const TO_PASSWORD: &str = "the sftp target's own password";
    let local = Arca::new(&base).at(&base.join("local-repo"));
    local.init();
    let small = base.join("small");
    make_random_tree(&small, 10, 100_000, 9);
    local.backup(&[&small], &[]);
    let target_repo = base.join("srv/arca/copied");
    let target = sftp_arca(&base, &server, &target_repo).with_password(TO_PASSWORD);
    target.init();
    let mut cmd = local.command(true, &["copy", "latest", "--to", &server.url(&target_repo)]);
    cmd.env("ARCA_TO_PASSWORD", TO_PASSWORD);
    for (k, v) in server.env() {
        cmd.env(k, v);
    }
    let out = run_command(cmd);
    assert_eq!(out.code, 0, "copy --to sftp://: {}", out.describe());
    assert_eq!(target.snapshots().len(), 1);
    restore_and_compare(&target, "latest", &small, &base.join("t3"));
    verify_read_data(&target);
}

/// The ssh connection is killed (sshd's processes for it, not the
/// listener) a few times while a backup of 256 MB of random data runs: the
/// backup reconnects and finishes, or fails with an error naming the
/// repository and the broken connection; either way the repository
/// verifies, the next backup succeeds, and `verify --read-data` is clean.
#[test]
fn sftp_connection_killed_during_backup() {
    let test = "sftp_connection_killed_during_backup";
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = server_or_skip(test, &base) else { return };
    let repo = base.join("srv/repo");
    let arca = sftp_arca(&base, &server, &repo);
    let src = base.join("src");
    let total = make_random_tree(&src, 32, 8 << 20, 4);
    arca.init();
    let data_dir = repo.join("data");

    let log = base.join("backup1");
    let start = Instant::now();
    let mut child = arca.spawn(true, &["backup", src.to_str().unwrap()], &log);
    // Once the first pack is stored, kill the connection, three times.
    let mut kills = Vec::new();
    let mut exited = None;
    while exited.is_none() && kills.len() < 3 {
        if let Some(st) = child.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no pack stored within 120 s");
        if dir_bytes(&data_dir) > (kills.len() as u64 + 1) * (16 << 20) {
            let killed = server.kill_connections();
            if killed > 0 {
                kills.push((start.elapsed(), dir_bytes(&data_dir), killed));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, stdout, stderr) = wait_logged(&mut child, &log);
    let code = code.expect("arca was not killed");
    eprintln!(
        "TIMING {test}: connections killed at {kills:?} (time, bytes of packs, processes) of {total} bytes; \
         the backup ended after {:?} with exit {code} (exited before the kills: {exited:?})\nstderr: {stderr}",
        start.elapsed()
    );
    assert!(!kills.is_empty() || exited.is_some(), "nothing was killed");
    let snaps = arca.snapshots().len();
    if code == 0 {
        eprintln!("RESULT {test}: the backup reconnected and finished");
        assert_eq!(snaps, 1, "{stdout}");
    } else {
        eprintln!("RESULT {test}: the backup failed when its connection was killed");
        assert_eq!(code, 1, "unexpected exit code; stderr: {stderr}");
        assert!(
            stderr.contains(&server.url(&repo)) && stderr.contains("connection"),
            "the error names neither the repository nor the connection: {stderr}"
        );
        assert_eq!(snaps, 0, "a snapshot exists after a failed backup");
    }
    verify_read_data(&arca);

    let b = arca.backup(&[&src], &[]);
    assert!(jarr(&b["summary"], "errors").is_empty(), "{b}");
    assert_eq!(arca.snapshots().len(), snaps + 1);
    verify_read_data(&arca);
    restore_and_compare(&arca, "latest", &src, &base.join("restored"));
}

/// The whole server goes down (listener and connections killed) once a
/// backup has stored its first pack, and stays down: the backup's
/// reconnections are refused, it fails in one line naming the repository
/// and the server it cannot connect to, and leaves no snapshot; with the server back, the
/// repository verifies and the next backup succeeds.
#[test]
fn sftp_server_down_during_backup_fails_cleanly() {
    let test = "sftp_server_down_during_backup_fails_cleanly";
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(mut server) = server_or_skip(test, &base) else { return };
    let repo = base.join("srv/repo");
    let arca = sftp_arca(&base, &server, &repo);
    let src = base.join("src");
    make_random_tree(&src, 16, 8 << 20, 5);
    arca.init();
    let log = base.join("backup1");
    let start = Instant::now();
    let mut child = arca.spawn(true, &["backup", src.to_str().unwrap()], &log);
    while dir_bytes(&repo.join("data")) < 8 << 20 {
        assert!(child.try_wait().unwrap().is_none(), "the backup ended before its first pack was stored");
        assert!(start.elapsed() < Duration::from_secs(120), "no pack stored within 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.stop();
    let stopped = start.elapsed();
    let (code, _, stderr) = wait_logged(&mut child, &log);
    eprintln!(
        "TIMING {test}: server stopped after {stopped:?}; the backup exited {code:?} after {:?}: {stderr}",
        start.elapsed()
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&server.url(&repo)), "the error names the repository: {stderr}");
    assert!(
        stderr.contains(&format!("[127.0.0.1]:{}", server.port)) && stderr.contains("connect"),
        "the error says the server cannot be reached: {stderr}"
    );
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{stderr}");
    server.restart();
    assert_eq!(arca.snapshots().len(), 0, "a snapshot exists after a failed backup");
    verify_read_data(&arca);
    let b = arca.backup(&[&src], &[]);
    assert!(jarr(&b["summary"], "errors").is_empty(), "{b}");
    assert_eq!(arca.snapshots().len(), 1);
    verify_read_data(&arca);
}

/// known_hosts without the server's key: every command fails (non-zero),
/// the message names the host and its unknown key, and nothing is written
/// on the server.
#[test]
fn sftp_unknown_host_key_is_refused() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = server_or_skip("sftp_unknown_host_key_is_refused", &base) else { return };
    let untrusting = server.dir.join("ssh_config_untrusting");
    server.write_client_config(&untrusting, false);
    let repo = base.join("srv/repo");
    let mut arca = sftp_arca(&base, &server, &repo);
    arca.env.retain(|(k, _)| k != "ARCA_SSH_CONFIG");
    arca.env.push(("ARCA_SSH_CONFIG".into(), untrusting.clone().into()));
    let src = base.join("src");
    make_random_tree(&src, 3, 10_000, 1);
    for args in [vec!["init"], vec!["backup", src.to_str().unwrap()], vec!["snapshots"]] {
        let out = arca.run(&args);
        assert_ne!(out.code, 0, "{args:?} succeeded against an unknown host: {}", out.describe());
        let err = out.stderr.to_lowercase();
        assert!(
            err.contains("host key") && err.contains("unknown"),
            "{args:?}: the message does not name the host key problem: {}",
            out.describe()
        );
        assert!(out.stderr.contains(&format!("[127.0.0.1]:{}", server.port)), "{args:?}: {}", out.describe());
        eprintln!("{args:?}: {}", out.stderr.trim());
    }
    assert!(!repo.exists() && !base.join("srv").exists(), "something was written on the server");
    let known = fs::read_to_string(server.dir.join("ssh_config_untrusting.known_hosts")).unwrap();
    assert!(known.is_empty(), "the unknown host key was added to known_hosts: {known}");
}

/// A job whose destination is an `sftp://` repository of arca.toml.
#[test]
fn sftp_job_destination() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = server_or_skip("sftp_job_destination", &base) else { return };
    const PW: &str = "offsite-secret-Vt73";
    let repo = base.join("srv/offsite");
    let offsite = sftp_arca(&base, &server, &repo).with_password(PW);
    offsite.init();
    let pw_file = base.join("offsite.pw");
    fs::write(&pw_file, format!("{PW}\n")).unwrap();
    fs::set_permissions(&pw_file, fs::Permissions::from_mode(0o600)).unwrap();
    let src = base.join("src");
    make_random_tree(&src, 12, 100_000, 3);
    let config = base.join("arca.toml");
    fs::write(
        &config,
        format!(
            "[repositories.offsite]\nurl = \"{url}\"\npassword_file = \"{pw}\"\n\n\
             [jobs.home]\nsources = [\"{src}\"]\ndestinations = [\"offsite\"]\n",
            url = server.url(&repo),
            pw = pw_file.display(),
            src = src.display(),
        ),
    )
    .unwrap();
    let mut arca = Arca::new(&base);
    arca.env.extend(server.env());
    arca.env.push(("ARCA_CONFIG".into(), config.clone().into()));
    let check = run_command(without_repo(arca.command(false, &["config", "check"])));
    assert_eq!(check.code, 0, "config check: {}", check.describe());
    let mut cmd = without_repo(arca.command(true, &["run", "home"]));
    cmd.env_remove("ARCA_PASSWORD");
    let out = run_command(cmd);
    assert_eq!(out.code, 0, "run home: {}", out.describe());
    assert!(!out.stdout.contains(PW) && !out.stderr.contains(PW), "the password was printed");
    let report: Value = out.json();
    let dest = jarr(&report, "destinations").iter().find(|d| d["name"] == "offsite").expect("offsite");
    assert_eq!(dest["success"], true, "{report}");
    assert_eq!(offsite.snapshots().len(), 1);
    restore_and_compare(&offsite, "latest", &src, &base.join("restored"));
    verify_read_data(&offsite);
}
