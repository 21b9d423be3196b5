//! One behaviour suite that every backend passes: the guarantees documented
//! on the `Backend` trait, checked against the local filesystem and against
//! a real S3 server (`s3s-fs` on loopback, see `s3server/mod.rs`) and a real
//! OpenSSH server (`sshd` on loopback, see `sshserver/mod.rs`), plus the
//! errors of an S3 backend that cannot reach its bucket and of an SFTP
//! backend whose server is unknown or whose connection drops.
//!
//! The same binary runs `in_async` (the backends called from inside tokio
//! runtimes): one test binary for the layer links once.
mod in_async;
mod s3server;
mod sshserver;
mod suite;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_backend::{
    Backend, BackendError, ErrorKind, FileKind, LocalBackend, S3Backend, S3Config, SftpBackend, SftpConfig,
};
use s3server::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};
use suite::{bytes, concurrent, exclusive_create, hex_name, suite};

#[test]
fn local_backend_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let b = LocalBackend::new(dir.path().join("repo"));
    b.create().unwrap();
    suite(&b);
    let b: Arc<dyn Backend> = Arc::new(b);
    concurrent(b.clone());
    exclusive_create(b, true);
}

fn s3_config(endpoint: &str, bucket: &str, prefix: &str, secret: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        endpoint: endpoint.to_string(),
        region: REGION.to_string(),
        access_key_id: ACCESS_KEY.to_string(),
        secret_access_key: secret.to_string(),
        virtual_host_style: false,
        concurrency: 8,
        retries: 2,
        timeout: Duration::from_secs(10),
    }
}

#[test]
fn s3_backend_behaviour() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) = S3Server::start_or_skip("s3_backend_behaviour", &tmp.path().join("s3")) else {
        return;
    };
    server.create_bucket("suite");
    let b = S3Backend::new(s3_config(&server.endpoint(), "suite", "repo/one", SECRET_KEY)).unwrap();
    b.create().unwrap();
    assert!(b.is_remote());
    let loc = b.location();
    assert!(
        loc.contains("suite") && loc.contains(&server.endpoint()),
        "location {loc} names neither bucket nor endpoint"
    );
    assert!(!loc.contains(SECRET_KEY));
    suite(&b);
    let b: Arc<dyn Backend> = Arc::new(b);
    concurrent(b.clone());
    // Not racing: the test server (s3s-fs) checks for the object and then
    // writes, so two PUTs at the same instant can both pass its check; S3
    // decides If-None-Match atomically. The header and the answer to it are
    // what this checks.
    exclusive_create(b, false);
    // Packs are listed folder by folder: one in another pack's folder, one
    // loose in data/ and one a level deeper are named as misplaced, never
    // listed as packs; the packs in their folders all are.
    let b = S3Backend::new(s3_config(&server.endpoint(), "suite", "repo/two", SECRET_KEY)).unwrap();
    let placed: Vec<String> = (0..40u64).map(|i| hex_name(i * 37)).collect();
    for n in &placed {
        b.put(FileKind::Pack, n, n.as_bytes()).unwrap();
    }
    let pack = hex_name(200);
    let other = if pack.starts_with("ff") { "00" } else { "ff" };
    let root = server.root.join("suite/repo/two");
    std::fs::create_dir_all(root.join("data").join(other)).unwrap();
    std::fs::write(root.join("data").join(other).join(&pack), b"elsewhere").unwrap();
    std::fs::write(root.join("data/loose"), b"x").unwrap();
    std::fs::create_dir_all(root.join("data/ab/deeper")).unwrap();
    std::fs::write(root.join("data/ab/deeper").join(&pack), b"deep").unwrap();
    let mut listed: Vec<String> = b.list(FileKind::Pack).unwrap().into_iter().map(|e| e.name).collect();
    listed.sort();
    let mut want = placed.clone();
    want.sort();
    want.dedup();
    assert_eq!(listed, want, "the packs in their folders, nothing else");
    let mut misplaced = b.misplaced(FileKind::Pack).unwrap();
    misplaced.sort();
    let mut expected =
        vec![format!("data/{other}/{pack}"), "data/loose".to_string(), format!("data/ab/deeper/{pack}")];
    expected.sort();
    assert_eq!(misplaced, expected);
    std::fs::remove_dir_all(&root).unwrap();
    // The prefix is honoured: nothing was written outside it.
    for e in std::fs::read_dir(server.root.join("suite")).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.file_name(), "repo", "object outside the prefix: {}", e.path().display());
    }
}

/// An SFTP backend for `path` on `server`, with the test's ssh config
/// (`ssh_config`: which known_hosts the client trusts).
fn sftp_backend(
    server: &sshserver::SshServer,
    path: &std::path::Path,
    ssh_config: &std::path::Path,
) -> SftpBackend {
    let config = ssh_config.display().to_string();
    let c = SftpConfig::from_url(&server.url(path), &|k| (k == "ARCA_SSH_CONFIG").then(|| config.clone()))
        .expect("an sftp:// URL");
    SftpBackend::new(c).expect("an SFTP backend")
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[test]
fn sftp_backend_behaviour() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) = sshserver::start_or_skip("sftp_backend_behaviour", &tmp.path().join("sshd")) else {
        return;
    };
    // The server is this machine: its files are ours to look at.
    let root = tmp.path().join("srv/arca/repo");
    let b = sftp_backend(&server, &root, &server.ssh_config);
    b.create().unwrap_or_else(|e| panic!("create: {}\n{}", e.report(), server.log()));
    assert!(b.is_remote());
    let loc = b.location();
    assert_eq!(loc, format!("sftp://{}@127.0.0.1:{}{}", server.user, server.port, root.display()));
    // Folders 0700 (the parents it made too), files 0600.
    for d in [root.clone(), root.parent().unwrap().to_path_buf(), root.join("data/ab"), root.join("keys")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    suite(&b);
    let key = hex_name(70);
    b.put(FileKind::Key, &key, b"secret-ish").unwrap();
    assert_eq!(mode(&root.join("keys").join(&key)), 0o600);
    assert_eq!(b.exposure(FileKind::Key, &key).unwrap(), None);
    std::fs::set_permissions(
        root.join("keys").join(&key),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let exposed = b.exposure(FileKind::Key, &key).unwrap().expect("a 0644 key is exposed");
    assert!(exposed.contains("0644") && exposed.contains(&loc), "{exposed}");
    b.delete(FileKind::Key, &key).unwrap();
    // A folder of a kind missing (never created, or removed): put makes it.
    b.put(FileKind::Wal, &hex_name(71), b"wal").unwrap();
    std::fs::remove_dir_all(root.join("wal")).unwrap();
    b.put(FileKind::Wal, &hex_name(71), b"wal again").unwrap();
    assert_eq!(b.get(FileKind::Wal, &hex_name(71)).unwrap(), b"wal again");
    assert_eq!(mode(&root.join("wal")), 0o700);
    b.delete(FileKind::Wal, &hex_name(71)).unwrap();

    // Temporaries: never listed, counted, removed; misplaced packs named.
    let pack = hex_name(72);
    b.put(FileKind::Pack, &pack, b"in place").unwrap();
    std::fs::write(root.join("data/ab/.tmp-0011223344556677"), b"partial").unwrap();
    std::fs::write(root.join("keys/.tmp-8899aabbccddeeff"), b"par").unwrap();
    assert!(!b.list(FileKind::Pack).unwrap().iter().any(|e| e.name.starts_with(".tmp-")));
    assert!(b.list(FileKind::Key).unwrap().is_empty());
    assert_eq!(b.temporaries_size().unwrap(), 10);
    assert_eq!(b.remove_temporaries().unwrap(), 10);
    assert_eq!(b.temporaries_size().unwrap(), 0);
    assert!(!root.join("data/ab/.tmp-0011223344556677").exists());
    let other = if pack.starts_with("ff") { "00" } else { "ff" };
    std::fs::rename(root.join(FileKind::Pack.path(&pack)), root.join("data").join(other).join(&pack))
        .unwrap();
    std::fs::write(root.join("data/loose"), b"x").unwrap();
    assert!(b.list(FileKind::Pack).unwrap().iter().all(|e| e.name != pack));
    let mut misplaced = b.misplaced(FileKind::Pack).unwrap();
    misplaced.retain(|m| m.contains(&pack) || m.contains("loose"));
    misplaced.sort();
    assert_eq!(misplaced, vec![format!("data/{other}/{pack}"), "data/loose".to_string()]);
    assert!(b.get(FileKind::Pack, &pack).unwrap_err().is_not_found());
    std::fs::remove_file(root.join("data").join(other).join(&pack)).unwrap();
    std::fs::remove_file(root.join("data/loose")).unwrap();
    // Everything was cleaned up after itself: no temporary left.
    assert_eq!(b.temporaries_size().unwrap(), 0);

    let b: Arc<dyn Backend> = Arc::new(b);
    concurrent(b.clone());
    exclusive_create(b.clone(), true);
    assert_eq!(b.temporaries_size().unwrap(), 0, "put_new left temporaries");
}

/// The connection drops (sshd's per-connection processes killed) under
/// requests from several threads: requests reconnect and go on, or fail
/// with a temporary error naming the object; afterwards every object that
/// was reported stored reads back whole.
#[test]
fn sftp_backend_reconnects() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) = sshserver::start_or_skip("sftp_backend_reconnects", &tmp.path().join("sshd")) else {
        return;
    };
    let root = tmp.path().join("repo");
    let b = Arc::new(sftp_backend(&server, &root, &server.ssh_config));
    b.create().unwrap();
    b.put(FileKind::Config, "config", b"first").unwrap();
    // Between requests: the next one finds the connection dead and reopens it.
    assert!(server.kill_connections() > 0, "no connection process found to kill");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.get(FileKind::Config, "config").unwrap(), b"first", "a read after the connection dropped");
    server.kill_connections();
    b.put(FileKind::Config, "config", b"second").unwrap();
    assert_eq!(b.get(FileKind::Config, "config").unwrap(), b"second");

    // During requests, several times.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (b, stop) = (b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut stored = Vec::new();
                let mut failures = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 400 {
                    let name = hex_name(20_000 + t * 1000 + i);
                    let data = bytes(200_000 + (i as usize % 7) * 100_003, t * 1000 + i);
                    match b.put(FileKind::Pack, &name, &data) {
                        Ok(()) => stored.push((name, data)),
                        Err(e) => failures.push(e),
                    }
                    i += 1;
                }
                (stored, failures)
            })
        })
        .collect();
    let mut kills = 0;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        kills += server.kill_connections();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(kills > 0);
    let (mut stored, mut failures) = (Vec::new(), Vec::new());
    for w in workers {
        let (s, f) = w.join().expect("a worker panicked");
        stored.extend(s);
        failures.extend(f);
    }
    eprintln!(
        "{} puts stored, {} failed, across {kills} killed connection processes",
        stored.len(),
        failures.len()
    );
    for e in &failures {
        let shown = e.report().to_string();
        assert!(e.temporary, "a dropped connection is a temporary error: {shown}");
        assert!(shown.contains(&b.location()), "the error names the object: {shown}");
    }
    assert!(!stored.is_empty(), "nothing was stored while connections were killed");
    for (name, data) in &stored {
        let got = b.get(FileKind::Pack, name).unwrap_or_else(|e| panic!("read back {name}: {}", e.report()));
        assert!(&got == data, "{name} came back different");
    }
    let listed: std::collections::HashSet<String> =
        b.list(FileKind::Pack).unwrap().into_iter().map(|e| e.name).collect();
    assert!(stored.iter().all(|(n, _)| listed.contains(n)));
    // Interrupted writes left at most temporaries, which maintenance removes.
    b.remove_temporaries().unwrap();
    assert_eq!(b.temporaries_size().unwrap(), 0);
}

/// A server whose host key is not in known_hosts is refused before anything
/// is written; the error names the host and the unknown key, and is not
/// temporary (waiting cures nothing).
#[test]
fn sftp_backend_refuses_an_unknown_host_key() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) =
        sshserver::start_or_skip("sftp_backend_refuses_an_unknown_host_key", &tmp.path().join("sshd"))
    else {
        return;
    };
    let untrusting = server.dir.join("ssh_config_untrusting");
    server.write_client_config(&untrusting, false);
    let root = tmp.path().join("repo");
    let b = sftp_backend(&server, &root, &untrusting);
    let start = Instant::now();
    for (what, r) in [
        ("create", b.create().map(|_| ())),
        ("put", b.put(FileKind::Config, "config", b"x")),
        ("list", b.list(FileKind::Snapshot).map(|_| ())),
    ] {
        let e = r.expect_err("an unknown host key is refused");
        let shown = e.report().to_string();
        assert!(!e.temporary, "{what}: {shown}");
        assert!(shown.contains(&format!("[127.0.0.1]:{}", server.port)), "{what}: names the host: {shown}");
        assert!(shown.contains("host key") && shown.contains("unknown"), "{what}: says why: {shown}");
        assert!(shown.contains("ssh-keyscan"), "{what}: says what to do: {shown}");
    }
    assert!(start.elapsed() < Duration::from_secs(30), "refusing took {:?}", start.elapsed());
    assert!(!root.exists(), "something was written on a server whose key is unknown");
    let known = std::fs::read_to_string(server.dir.join("ssh_config_untrusting.known_hosts")).unwrap();
    assert!(known.is_empty(), "the unknown key was added to known_hosts: {known}");
}

/// One backend call, its result shown as text.
type Op<'a> = Box<dyn Fn() -> Result<String, BackendError> + 'a>;

/// Every operation of `b` fails with an error that names the endpoint and the
/// bucket, never holds the secret, and comes within the time budget.
fn all_fail(
    b: &S3Backend,
    what: &str,
    endpoint: &str,
    bucket: &str,
    secrets: &[&str],
    with_puts: bool,
) -> Vec<String> {
    let name = hex_name(1);
    // Reads first: s3s-fs, unlike AWS, creates a missing bucket on PUT.
    let mut ops: Vec<(&str, Op<'_>)> = vec![
        ("create", Box::new(|| b.create().map(|v| format!("{v:?}")))),
        ("exists", Box::new(|| b.exists(FileKind::Snapshot, &name).map(|v| format!("{v:?}")))),
        ("get", Box::new(|| b.get(FileKind::Config, "config").map(|v| format!("{} bytes", v.len())))),
        (
            "get_range",
            Box::new(|| b.get_range(FileKind::Pack, &name, 0, 2).map(|v| format!("{} bytes", v.len()))),
        ),
        ("list", Box::new(|| b.list(FileKind::Snapshot).map(|v| format!("{v:?}")))),
        ("list config", Box::new(|| b.list(FileKind::Config).map(|v| format!("{v:?}")))),
        ("delete", Box::new(|| b.delete(FileKind::Lock, &name).map(|v| format!("{v:?}")))),
    ];
    if with_puts {
        ops.push(("put", Box::new(|| b.put(FileKind::Pack, &name, b"data").map(|v| format!("{v:?}")))));
        ops.push((
            "put config",
            Box::new(|| b.put(FileKind::Config, "config", b"{}").map(|v| format!("{v:?}"))),
        ));
    }
    let mut failures = Vec::new();
    for (op, f) in ops {
        let start = Instant::now();
        let r = f();
        let took = start.elapsed();
        eprintln!("{what}: {op} took {took:?}: {r:?}");
        // 3 attempts of at most 10 s each, plus back-off.
        if took > Duration::from_secs(45) {
            failures.push(format!("{what}: {op} took {took:?} (timeout 10 s, 2 retries)"));
        }
        // About one object, S3 answers a missing bucket as it answers a
        // missing object (HEAD has no body to say NoSuchBucket; DELETE of a
        // missing key succeeds): "absent" is a true answer there. Every
        // listing and every read still fails, and that is what arca relies on
        // to report the bucket (see the s3_missing_bucket CLI test).
        let object_level = what == "missing bucket" && matches!(op, "exists" | "list config" | "delete");
        match r {
            Ok(_) if object_level => {}
            Ok(v) => failures.push(format!("{what}: {op} succeeded ({v}) instead of failing")),
            Err(e) => {
                let shown = e.report().to_string();
                let debug = format!("{e:?}");
                if !shown.contains(endpoint) || !shown.contains(bucket) {
                    failures.push(format!(
                        "{what}: {op}: error does not name endpoint {endpoint} and bucket {bucket}: {shown}"
                    ));
                }
                for s in secrets {
                    if shown.contains(s) || debug.contains(s) {
                        failures.push(format!("{what}: {op}: error holds a secret key: {debug}"));
                    }
                }
            }
        }
    }
    failures
}

#[test]
fn s3_backend_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut server) = S3Server::start_or_skip("s3_backend_errors", &tmp.path().join("s3")) else {
        return;
    };
    server.create_bucket("present");
    let endpoint = server.endpoint();
    let mut failures = Vec::new();

    // A bucket that does not exist.
    let b = S3Backend::new(s3_config(&endpoint, "no-such-bucket", "p", SECRET_KEY)).unwrap();
    failures.extend(all_fail(&b, "missing bucket", &endpoint, "no-such-bucket", &[SECRET_KEY], false));
    assert!(
        !server.root.join("no-such-bucket").exists(),
        "the missing bucket was created by a read-only operation"
    );

    // A wrong secret key.
    let wrong = "wrongSecret-Xy7PqR2mN8vB4tK6";
    let b = S3Backend::new(s3_config(&endpoint, "present", "p", wrong)).unwrap();
    failures.extend(all_fail(&b, "wrong secret key", &endpoint, "present", &[SECRET_KEY, wrong], true));
    // ... and the error says what to check.
    let e = b.get(FileKind::Config, "config").unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "wrong secret key: {e}");
    let shown = e.report().to_string().to_lowercase();
    assert!(shown.contains("access") || shown.contains("credential"), "wrong secret key: {e}");

    // A server that is not running: nothing listens on the port.
    server.stop();
    let b = S3Backend::new(s3_config(&endpoint, "present", "p", SECRET_KEY)).unwrap();
    failures.extend(all_fail(&b, "stopped server", &endpoint, "present", &[SECRET_KEY], true));

    assert!(failures.is_empty(), "{} problems:\n  {}", failures.len(), failures.join("\n  "));
}
