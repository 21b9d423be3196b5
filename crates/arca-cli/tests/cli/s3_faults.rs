//! S3 faults, end to end: a server that is down, wrong credentials, a
//! missing bucket, a server killed (SIGKILL) in the middle of a backup and a
//! slow network. Each gives a clear error naming the endpoint and the bucket
//! (never a credential), leaves no partial snapshot and a repository that
//! verifies and accepts the next backup.
use crate::common;
use crate::s3server;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use s3server::{S3Server, SECRET_KEY};
use serde_json::Value;

const BUCKET: &str = "arca";
const WRONG_SECRET: &str = "wrongSecret-Hq4Ns8Lx2Tz6Vb0Pm";

fn s3_arca(base: &Path, server: &S3Server, bucket: &str, prefix: &str) -> Arca {
    let mut a = Arca::new(base).at(Path::new(&format!("s3://{bucket}/{prefix}")));
    a.env.extend(server.aws_env());
    a
}

/// Asserts that no output of a run holds a secret key.
#[track_caller]
fn no_secret(out: Out) -> Out {
    for s in [SECRET_KEY, WRONG_SECRET] {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "a secret key appears in the output: {}",
            out.describe()
        );
    }
    out
}

#[track_caller]
fn json(a: &Arca, args: &[&str]) -> Value {
    no_secret(a.run_json(args)).ok().json()
}

#[track_caller]
fn snapshot_count(a: &Arca) -> usize {
    json(a, &["snapshots"]).as_array().expect("snapshots --json is an array").len()
}

#[track_caller]
fn verify_read_data(a: &Arca) {
    let out = no_secret(a.verify(&["--read-data"]));
    assert_eq!(out.code, 0, "verify --read-data: {}", out.describe());
}

/// A failed run: exit 1, a message naming the endpoint and the bucket.
#[track_caller]
fn assert_s3_failure(out: &Out, endpoint: &str, bucket: &str) {
    assert_eq!(out.code, 1, "expected exit 1: {}", out.describe());
    assert!(
        out.stderr.contains(endpoint) && out.stderr.contains(bucket),
        "the error does not name endpoint {endpoint} and bucket {bucket}: {}",
        out.describe()
    );
}

fn small_tree(root: &Path, seed: u64) -> u64 {
    let n = make_random_tree(root, 8, 100_000, seed);
    fs::write(root.join("text.txt"), "some text\n".repeat(3000)).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("text.txt", root.join("link")).unwrap();
    n
}

#[test]
fn s3_server_down() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(mut server) = S3Server::start_or_skip("s3_server_down", &base.join("s3")) else { return };
    server.create_bucket(BUCKET);
    let arca = s3_arca(&base, &server, BUCKET, "repo");
    let src = base.join("src");
    small_tree(&src, 1);
    arca.init();
    json(&arca, &["backup", src.to_str().unwrap()]);

    server.stop();
    fs::write(src.join("new.bin"), Rng::new(3).bytes(300_000)).unwrap();
    let endpoint = server.endpoint();
    let start = Instant::now();
    let out = no_secret(arca.run_json(&["backup", src.to_str().unwrap()]));
    let took = start.elapsed();
    eprintln!("TIMING backup against a stopped server gave up after {took:?} (exit {})", out.code);
    eprintln!("stderr: {}", out.stderr);
    assert_s3_failure(&out, &endpoint, BUCKET);
    assert!(took < Duration::from_secs(60), "backup took {took:?} to give up on a stopped server");

    let start = Instant::now();
    let out = no_secret(arca.run(&["snapshots"]));
    eprintln!("TIMING snapshots against a stopped server gave up after {:?}", start.elapsed());
    assert_s3_failure(&out, &endpoint, BUCKET);

    server.restart();
    assert_eq!(snapshot_count(&arca), 1, "a partial snapshot exists after the failed backup");
    verify_read_data(&arca);
    let b = json(&arca, &["backup", src.to_str().unwrap()]);
    assert!(ju64(&b["summary"], "bytes_added") > 0, "{b}");
    assert_eq!(snapshot_count(&arca), 2);
    verify_read_data(&arca);
}

#[test]
fn s3_wrong_credentials() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = S3Server::start_or_skip("s3_wrong_credentials", &base.join("s3")) else { return };
    server.create_bucket(BUCKET);
    let arca = s3_arca(&base, &server, BUCKET, "repo");
    let src = base.join("src");
    small_tree(&src, 2);
    arca.init();
    json(&arca, &["backup", src.to_str().unwrap()]);

    let mut wrong = arca.clone();
    wrong.env.extend(s3server::aws_env(&server.endpoint(), WRONG_SECRET));
    for args in [vec!["backup", src.to_str().unwrap()], vec!["snapshots"], vec!["init"]] {
        let out = no_secret(wrong.run(&args));
        assert_s3_failure(&out, &server.endpoint(), BUCKET);
        let e = out.err_lower();
        assert!(
            e.contains("access") || e.contains("credential"),
            "the error does not point at access/credentials: {}",
            out.describe()
        );
    }
    // A wrong key id too.
    let mut wrong_id = arca.clone();
    wrong_id.env.push(("AWS_ACCESS_KEY_ID".into(), "nosuchkeyid".into()));
    let out = no_secret(wrong_id.run(&["snapshots"]));
    assert_s3_failure(&out, &server.endpoint(), BUCKET);

    assert_eq!(snapshot_count(&arca), 1);
    verify_read_data(&arca);
    json(&arca, &["backup", src.to_str().unwrap()]);
}

#[test]
fn s3_missing_bucket() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = S3Server::start_or_skip("s3_missing_bucket", &base.join("s3")) else { return };
    server.create_bucket(BUCKET);
    let missing = "arca-absent-7f3c";
    let arca = s3_arca(&base, &server, missing, "repo");
    let src = base.join("src");
    small_tree(&src, 3);
    let mut problems = Vec::new();
    for args in [vec!["init"], vec!["backup", src.to_str().unwrap()], vec!["snapshots"], vec!["verify"]] {
        let out = no_secret(arca.run(&args));
        eprintln!("{args:?} on a missing bucket: exit {}: {}", out.code, out.stderr.trim());
        assert_s3_failure(&out, &server.endpoint(), missing);
        // The cause is the bucket, not a missing repository or a bad
        // configuration: say so, and do not advise `arca init`.
        let e = out.err_lower();
        problems.extend(
            (!e.contains("bucket") || e.contains("run `arca init`"))
                .then(|| format!("the error does not say the bucket is missing: {}", out.stderr.trim())),
        );
    }
    // Nothing was written: s3s-fs (unlike AWS) would create the bucket on a
    // PUT.
    assert!(!server.root.join(missing).exists(), "arca wrote objects into a bucket that does not exist");
    assert!(problems.is_empty(), "{} problems:\n  {}", problems.len(), problems.join("\n  "));
}

/// Waits for a child with a deadline; returns its exit code (or -signal).
fn wait_child(child: &mut std::process::Child, timeout: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return st.code().unwrap_or_else(|| -st.signal().unwrap_or(0));
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("arca did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server is killed (SIGKILL) 0.5 s into a backup of 100 MB, once a
/// first pack has arrived, and restarted on the same port after 1 s: the
/// backup's retries may ride over the gap.
#[test]
fn s3_server_killed_during_backup_and_restarted() {
    killed_during_backup("s3_server_killed_during_backup_and_restarted", false);
}

/// The same, but the server stays down until the backup has given up: the
/// backup must fail cleanly, and the next one reuse what was uploaded.
#[test]
fn s3_server_killed_during_backup_until_it_gives_up() {
    killed_during_backup("s3_server_killed_during_backup_until_it_gives_up", true);
}

fn killed_during_backup(test: &str, until_exit: bool) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(mut server) = S3Server::start_or_skip(test, &base.join("s3")) else {
        return;
    };
    server.create_bucket(BUCKET);
    let arca = s3_arca(&base, &server, BUCKET, "repo");
    let src = base.join("src");
    let total = make_random_tree(&src, 25, 4 << 20, 4);
    arca.init();
    let data_dir = server.root.join(BUCKET).join("repo/data");

    let log = base.join("backup1");
    let start = Instant::now();
    let mut child = arca.spawn(true, &["backup", src.to_str().unwrap()], &log);
    // Kill the server once the first pack has arrived (and, when it comes
    // back soon, not before 0.5 s). Kept down, it is killed at the first
    // pack: 100 MB upload in about half a second here, and a later kill can
    // land after the snapshot is already stored.
    let min_wait = Duration::from_millis(if until_exit { 0 } else { 500 });
    let mut exited = None;
    while start.elapsed() < min_wait || dir_bytes_or_zero(&data_dir) == 0 {
        if let Some(st) = child.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no pack uploaded within 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed_at = start.elapsed();
    server.stop();
    let uploaded_at_kill = dir_bytes_or_zero(&data_dir);
    eprintln!(
        "TIMING {test}: s3s-fs killed {killed_at:?} into the backup, {uploaded_at_kill} of {total} bytes in packs \
         (backup exited before: {exited:?})"
    );
    let code = if until_exit {
        let code = wait_child(&mut child, Duration::from_secs(180));
        eprintln!("TIMING {test}: the backup exited {:?} after the kill", start.elapsed() - killed_at);
        server.restart();
        code
    } else {
        std::thread::sleep(Duration::from_secs(1));
        server.restart();
        wait_child(&mut child, Duration::from_secs(180))
    };
    let stdout = fs::read_to_string(log.with_extension("stdout")).unwrap();
    let stderr = fs::read_to_string(log.with_extension("stderr")).unwrap();
    eprintln!(
        "TIMING {test}: first backup ended after {:?} with exit {code}\nstderr: {stderr}",
        start.elapsed()
    );
    for s in [&stdout, &stderr] {
        assert!(!s.contains(SECRET_KEY), "the secret key appears in the output: {s}");
        assert!(!s.contains("panicked"), "arca panicked: {s}");
    }
    let snaps = snapshot_count(&arca);
    if until_exit {
        assert_ne!(code, 0, "the backup succeeded although the server stayed down until it exited");
    }
    if code == 0 {
        eprintln!("RESULT {test}: the backup survived the server restart (retried long enough)");
        assert_eq!(snaps, 1);
    } else {
        eprintln!("RESULT {test}: the backup failed when the server was killed");
        assert_eq!(code, 1, "unexpected exit code; stderr: {stderr}");
        assert!(
            stderr.contains(&server.endpoint()) && stderr.contains(BUCKET),
            "the error does not name endpoint and bucket: {stderr}"
        );
        assert_eq!(snaps, 0, "a snapshot exists after a failed backup");
    }
    // No snapshot references missing data; whatever was uploaded is sound.
    verify_read_data(&arca);

    let packs_before = dir_bytes_or_zero(&data_dir);
    let b = json(&arca, &["backup", src.to_str().unwrap()]);
    let added = ju64(&b["summary"], "bytes_added");
    eprintln!("RESULT {test}: second backup added {added} of {total} bytes; {packs_before} bytes of packs were stored before it");
    assert!(jarr(&b["summary"], "errors").is_empty(), "{b}");
    if code == 0 {
        // Only the tree blobs of the source's ancestors (/tmp changes while
        // tests run) may be new.
        assert!(added <= 4096, "nothing changed since the successful backup, yet it added data: {b}");
        assert_eq!(ju64(&b["summary"], "bytes_read"), 0, "{b}");
    } else if packs_before > 8 << 20 {
        assert!(
            added + packs_before / 2 < total,
            "the second backup did not reuse the {packs_before} bytes of packs the first one uploaded: \
             it added {added} of {total} bytes"
        );
    }
    assert_eq!(snapshot_count(&arca), if code == 0 { 2 } else { 1 });
    verify_read_data(&arca);
}

fn dir_bytes_or_zero(dir: &Path) -> u64 {
    if dir.is_dir() {
        dir_bytes(dir)
    } else {
        0
    }
}

// ---------------------------------------------------------------------------
// A slow network: a TCP proxy that sleeps before forwarding every read.

struct SlowProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    fn start(server_port: u16, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(upstream) = TcpStream::connect(("127.0.0.1", server_port)) else {
                            continue;
                        };
                        let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        let s = stop2.clone();
                        std::thread::spawn(move || pump(client, upstream, delay, s));
                        let s = stop2.clone();
                        std::thread::spawn(move || pump(u2, c2, delay, s));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowProxy { port, stop }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                std::thread::sleep(delay);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn s3_slow_network() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = S3Server::start_or_skip("s3_slow_network", &base.join("s3")) else { return };
    server.create_bucket(BUCKET);
    let proxy = SlowProxy::start(server.port, Duration::from_millis(50));
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut arca = Arca::new(&base).at(Path::new(&format!("s3://{BUCKET}/slow")));
    arca.env.extend(s3server::aws_env(&endpoint, SECRET_KEY));
    let src = base.join("src");
    small_tree(&src, 5);

    let start = Instant::now();
    arca.init();
    let b = json(&arca, &["backup", src.to_str().unwrap()]);
    eprintln!("TIMING init + backup through a 50 ms-per-read proxy: {:?}", start.elapsed());
    assert!(jarr(&b["summary"], "errors").is_empty(), "{b}");
    let start = Instant::now();
    let target = base.join("target");
    let res = json(&arca, &["restore", "latest", "--target", target.to_str().unwrap()]);
    eprintln!("TIMING restore through the proxy: {:?}", start.elapsed());
    assert_eq!(res["success"], true, "{res}");
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());
    let start = Instant::now();
    verify_read_data(&arca);
    eprintln!("TIMING verify --read-data through the proxy: {:?}", start.elapsed());
    drop(proxy);
}
