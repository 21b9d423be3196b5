//! One behaviour suite that every backend passes: the guarantees documented
//! on the `Backend` trait, checked against the local filesystem and against
//! a real S3 server (`s3s-fs` on loopback, see `s3server/mod.rs`) and a real
//! OpenSSH server (`sshd` on loopback, see `sshserver/mod.rs`), plus the
//! errors of an S3 backend that cannot reach its bucket and of an SFTP
//! backend whose server is unknown or whose connection drops.
mod s3server;
mod sshserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_backend::{
    Backend, BackendError, Entry, ErrorKind, FileKind, LocalBackend, S3Backend, S3Config, SftpBackend,
    SftpConfig,
};
use s3server::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};

/// Deterministic incompressible bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// A 64-hex-digit name derived from `i`.
fn hex_name(i: u64) -> String {
    bytes(32, 1000 + i).iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Every kind with a name to store it under.
fn kinds() -> Vec<(FileKind, String)> {
    vec![
        (FileKind::Config, "config".to_string()),
        (FileKind::Policy, "policy".to_string()),
        (FileKind::Key, hex_name(1)),
        (FileKind::Snapshot, hex_name(2)),
        (FileKind::Index, hex_name(3)),
        (FileKind::Pack, hex_name(4)),
        (FileKind::Lock, hex_name(5)),
        (FileKind::Parity, hex_name(6)),
        (FileKind::Wal, hex_name(8)),
    ]
}

/// The suite: `b` is an empty, created repository. Hard failures panic at
/// once; the wrong error kinds are collected and reported at the end so that
/// the rest of the suite still runs.
fn suite(b: &dyn Backend) {
    let mut problems: Vec<String> = Vec::new();
    let loc = b.location();
    assert!(!loc.is_empty());

    // An empty repository lists nothing, of every kind.
    for (kind, _) in kinds() {
        assert_eq!(b.list(kind).unwrap(), vec![], "{loc}: list {kind:?} of an empty repository");
    }

    // Round trip of every kind; names of 64 hex digits; exists.
    for (i, (kind, name)) in kinds().into_iter().enumerate() {
        let data = bytes(1000 + i * 37, i as u64);
        assert!(!b.exists(kind, &name).unwrap(), "{loc}: {kind:?} {name} exists before put");
        b.put(kind, &name, &data).unwrap_or_else(|e| panic!("{loc}: put {kind:?} {name}: {e}"));
        assert!(b.exists(kind, &name).unwrap(), "{loc}: {kind:?} {name} missing after put");
        assert_eq!(b.get(kind, &name).unwrap(), data, "{loc}: get {kind:?} {name}");
        assert_eq!(
            b.list(kind).unwrap(),
            vec![Entry { name: name.clone(), size: data.len() as u64 }],
            "{loc}: list {kind:?} after one put"
        );
    }
    // Kinds do not leak into each other's listing (Pack objects are listed by
    // bare name although stored under data/xx/).
    let pack = hex_name(4);
    let packs = b.list(FileKind::Pack).unwrap();
    assert_eq!(packs.len(), 1);
    assert_eq!(packs[0].name, pack, "{loc}: a pack is listed by its bare name");
    assert!(!packs[0].name.contains('/'));

    // put replaces.
    let snap = hex_name(2);
    let replaced = bytes(777, 99);
    b.put(FileKind::Snapshot, &snap, &replaced).unwrap();
    assert_eq!(b.get(FileKind::Snapshot, &snap).unwrap(), replaced, "{loc}: put did not replace");
    assert_eq!(b.list(FileKind::Snapshot).unwrap(), vec![Entry { name: snap.clone(), size: 777 }]);

    // A missing object is NotFound, of every kind.
    for kind in [FileKind::Snapshot, FileKind::Pack, FileKind::Index, FileKind::Key, FileKind::Lock] {
        let e = b.get(kind, &hex_name(500)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{loc}: get of a missing {kind:?}: {e}");
        assert!(e.is_not_found());
        let e = b.get_range(kind, &hex_name(500), 0, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{loc}: get_range of a missing {kind:?}: {e}");
    }

    // get_range: exact bytes; past the end is an error, never a short read.
    let data = bytes(100_000, 42);
    let name = hex_name(7);
    b.put(FileKind::Pack, &name, &data).unwrap();
    for (off, len) in [(0u64, 1u64), (0, 100_000), (1, 99_999), (12_345, 6_789), (99_999, 1), (50_000, 0)] {
        let got = b
            .get_range(FileKind::Pack, &name, off, len)
            .unwrap_or_else(|e| panic!("{loc}: range {off}+{len}: {e}"));
        assert_eq!(got, &data[off as usize..(off + len) as usize], "{loc}: range {off}+{len}");
    }
    for (off, len) in [(99_990u64, 11u64), (0, 100_001), (100_000, 1), (200_000, 10)] {
        match b.get_range(FileKind::Pack, &name, off, len) {
            Ok(v) => panic!("{loc}: range {off}+{len} of a 100000-byte object returned {} bytes", v.len()),
            Err(e) if e.kind == ErrorKind::ShortObject => {}
            Err(e) => problems.push(format!(
                "{loc}: get_range {off}+{len} past the end of a 100000-byte object fails with kind {:?}, \
                 not ShortObject: {e}",
                e.kind
            )),
        }
    }

    // list: names and sizes, Pack objects under different data/xx/ folders.
    let mut want =
        vec![Entry { name: pack.clone(), size: 1000 + 5 * 37 }, Entry { name: name.clone(), size: 100_000 }];
    for i in 10..20 {
        let n = hex_name(i);
        let d = bytes(i as usize * 11, i);
        b.put(FileKind::Pack, &n, &d).unwrap();
        want.push(Entry { name: n, size: d.len() as u64 });
    }
    assert_eq!(sorted(b.list(FileKind::Pack).unwrap()), sorted(want.clone()), "{loc}: list of packs");
    // Other kinds' listings did not change.
    assert_eq!(b.list(FileKind::Index).unwrap().len(), 1);
    assert_eq!(b.list(FileKind::Config).unwrap(), vec![Entry { name: "config".into(), size: 1000 }]);

    // delete, then delete again; exists false; listing shrinks.
    for (kind, name) in kinds() {
        b.delete(kind, &name).unwrap_or_else(|e| panic!("{loc}: delete {kind:?}: {e}"));
        assert!(!b.exists(kind, &name).unwrap(), "{loc}: {kind:?} exists after delete");
        b.delete(kind, &name).unwrap_or_else(|e| panic!("{loc}: second delete {kind:?}: {e}"));
        assert_eq!(b.get(kind, &name).unwrap_err().kind, ErrorKind::NotFound);
    }
    b.delete(FileKind::Snapshot, &hex_name(600)).expect("delete of a never-stored object");
    for kind in [
        FileKind::Config,
        FileKind::Policy,
        FileKind::Key,
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Lock,
    ] {
        assert_eq!(b.list(kind).unwrap(), vec![], "{loc}: list {kind:?} after deleting everything");
    }
    assert_eq!(b.list(FileKind::Pack).unwrap().len(), 11);

    // Big objects: 1 MiB and 20 MiB.
    for (i, size) in [(0u64, 1usize << 20), (1, 20 << 20)] {
        let n = hex_name(100 + i);
        let d = bytes(size, 100 + i);
        b.put(FileKind::Pack, &n, &d).unwrap_or_else(|e| panic!("{loc}: put {size} bytes: {e}"));
        let got = b.get(FileKind::Pack, &n).unwrap();
        assert!(got == d, "{loc}: {size}-byte object came back different ({} bytes)", got.len());
        let tail = b.get_range(FileKind::Pack, &n, size as u64 - 4096, 4096).unwrap();
        assert_eq!(tail, &d[size - 4096..]);
        assert!(b.list(FileKind::Pack).unwrap().contains(&Entry { name: n.clone(), size: size as u64 }));
        b.delete(FileKind::Pack, &n).unwrap();
    }

    assert!(problems.is_empty(), "{} problems:\n  {}", problems.len(), problems.join("\n  "));
}

/// 8 threads putting, reading back, listing and deleting at once.
fn concurrent(b: Arc<dyn Backend>) {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut mine = BTreeMap::new();
                for i in 0..12u64 {
                    let n = hex_name(10_000 + t * 100 + i);
                    let d = bytes(10_000 + (t * 1000 + i * 333) as usize, t * 100 + i);
                    let kind = if i % 2 == 0 { FileKind::Pack } else { FileKind::Index };
                    b.put(kind, &n, &d).unwrap_or_else(|e| panic!("thread {t}: put: {e}"));
                    assert_eq!(b.get(kind, &n).unwrap(), d, "thread {t}: get after put");
                    mine.insert(n, (kind, d));
                }
                let listed = b.list(FileKind::Pack).unwrap();
                for (n, (kind, d)) in &mine {
                    if *kind == FileKind::Pack {
                        assert!(
                            listed.contains(&Entry { name: n.clone(), size: d.len() as u64 }),
                            "thread {t}: {n} not listed"
                        );
                    }
                    assert_eq!(b.get_range(*kind, n, 100, 200).unwrap(), &d[100..300]);
                }
                for (n, (kind, _)) in &mine {
                    b.delete(*kind, n).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a worker thread panicked");
    }
    let left: Vec<_> = b.list(FileKind::Index).unwrap();
    assert!(left.is_empty(), "{}: objects left after every thread deleted its own: {left:?}", b.location());
}

/// `put_new` on a name that exists fails with `AlreadyExists` and leaves
/// the object as it was; with `racing`, from 8 threads at once on one name:
/// exactly one wins, the others get `AlreadyExists`, and the object is the
/// winner's, whole.
fn exclusive_create(b: Arc<dyn Backend>, racing: bool) {
    let name = hex_name(49_999);
    b.put_new(FileKind::Key, &name, b"first").unwrap_or_else(|e| panic!("{}: put_new: {e}", b.location()));
    let e = b.put_new(FileKind::Key, &name, b"second").expect_err("put_new over an existing object");
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{}: {e}", b.location());
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(b.get(FileKind::Key, &name).unwrap(), b"first", "{}: the first object stays", b.location());
    b.delete(FileKind::Key, &name).unwrap();
    for round in 0..if racing { 4u64 } else { 0 } {
        let name = hex_name(50_000 + round);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (b, name) = (b.clone(), name.clone());
                std::thread::spawn(move || {
                    let data = bytes(5000 + t as usize, round * 10 + t);
                    (b.put_new(FileKind::Key, &name, &data), data)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(r, _)| r.is_ok()).collect();
        assert_eq!(winners.len(), 1, "{}: round {round}: exactly one put_new wins", b.location());
        for (r, _) in &results {
            if let Err(e) = r {
                assert_eq!(e.kind, ErrorKind::AlreadyExists, "{}: the losers hear why: {e}", b.location());
            }
        }
        assert_eq!(
            b.get(FileKind::Key, &name).unwrap(),
            winners[0].1,
            "{}: the winner's object",
            b.location()
        );
        b.delete(FileKind::Key, &name).unwrap();
    }
    assert!(b.list(FileKind::Key).unwrap().is_empty(), "{}: put_new leaves nothing else", b.location());
}

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
