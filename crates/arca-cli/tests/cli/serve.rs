//! `arca serve` as users meet it: a real server process, clients backing up
//! over `rest:http://…`. In append-only mode a client's forget and prune,
//! and direct deletes and overwrites, are refused while backups go on; an
//! admin prunes; one user cannot reach another's repository; a quota
//! stops a backup cleanly; a SIGKILL of the server mid-upload loses nothing
//! it acknowledged.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// An `arca serve` process, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `arca serve ARGS --listen 127.0.0.1:PORT` and waits for its
    /// "listening on" line.
    fn start(args: &[&str], port: u16, log: &Path) -> Server {
        let mut child = Command::new(ARCA)
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arca serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = log.to_path_buf();
        std::thread::spawn(move || {
            let mut file = fs::File::create(&log).unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
                if line.contains("listening on") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("arca serve did not start: {:?}", child.wait().map(|s| s.to_string()))
            }
        };
        let addr = line.split("://").nth(1).unwrap().split([' ', ',']).next().unwrap().to_string();
        Server { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `arca serve --users FILE --add-user NAME [--repos …]` with the password.
fn add_user(users: &Path, name: &str, password: &str, repos: &str) {
    let mut cmd = Command::new(ARCA);
    cmd.args(["serve", "--users", users.to_str().unwrap(), "--add-user", name])
        .env("ARCA_REST_PASSWORD", password);
    if !repos.is_empty() {
        cmd.args(["--repos", repos]);
    }
    let out = run_command(cmd);
    assert_eq!(out.code, 0, "{}", out.describe());
}

/// A client of repository `repo` as `user`.
fn client(base: &Path, addr: &str, user: &str, password: &str, repo: &str) -> Arca {
    let home = base.join(format!("client-{user}-{repo}"));
    fs::create_dir_all(&home).unwrap();
    let mut a = Arca::with_repo(&home, Path::new(&format!("rest:http://{user}@{addr}/{repo}")));
    a.env.push((OsString::from("ARCA_REST_PASSWORD"), OsString::from(password)));
    a
}

fn http(method: &str, url: &str, auth: (&str, &str), body: Option<Vec<u8>>) -> u16 {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .basic_auth(auth.0, Some(auth.1));
    if let Some(b) = body {
        req = req.body(b);
    }
    req.send().unwrap().status().as_u16()
}

#[test]
fn an_append_only_server_keeps_what_a_client_cannot_destroy() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let root = base.join("root");
    fs::create_dir_all(&root).unwrap();
    let users = base.join("users");
    add_user(&users, "alice", "alice-pw", "alice,alice-copy");
    add_user(&users, "bob", "bob-pw", "");
    add_user(&users, "admin", "admin-pw", "");
    assert_eq!(fs::metadata(&users).unwrap().permissions().mode() & 0o777, 0o600);
    let port = crate::s3server::free_port();
    let log = base.join("serve.log");
    let users_arg = users.to_str().unwrap();
    let root_arg = root.to_str().unwrap();
    let server = Server::start(
        &["--root", root_arg, "--users", users_arg, "--append-only", "--admin", "admin"],
        port,
        &log,
    );
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a.bin"), 3 << 20, 1);
    fs::write(src.join("notes.txt"), "first").unwrap();

    let alice = client(&base, &server.addr, "alice", "alice-pw", "alice");
    alice.init();
    let first = alice.backup(&[&src], &[]);
    fs::write(src.join("notes.txt"), "second").unwrap();
    alice.backup(&[&src], &[]);
    assert_eq!(alice.snapshots().len(), 2);

    // What ransomware on the client would do: refused.
    let out = alice.run(&["forget", "--keep-last", "1", "--prune"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("append-only"), "{}", out.describe());
    let out = alice.run(&["prune"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("append-only"), "{}", out.describe());
    assert_eq!(alice.snapshots().len(), 2, "no snapshot lost");
    let snap = format!("http://{}/alice/snapshots/{}", server.addr, jstr(&first, "id"));
    assert_eq!(http("DELETE", &snap, ("alice", "alice-pw"), None), 403);
    assert_eq!(http("PUT", &snap, ("alice", "alice-pw"), Some(b"garbage".to_vec())), 403);
    let stored = fs::read(root.join("alice/snapshots").join(jstr(&first, "id"))).unwrap();
    assert_eq!(
        http("PUT", &snap, ("alice", "alice-pw"), Some(stored)),
        200,
        "the same bytes again: accepted"
    );
    assert_eq!(http("DELETE", &snap, ("bob", "bob-pw"), None), 404, "bob does not even see it");
    // Backups go on, and the repository is whole.
    fs::write(src.join("notes.txt"), "third").unwrap();
    alice.backup(&[&src], &[]);
    let v = alice.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");

    // One user never reaches another's repository.
    let bob = client(&base, &server.addr, "bob", "bob-pw", "alice");
    let out = bob.run(&["snapshots"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    let wrong = client(&base, &server.addr, "alice", "not-it", "alice");
    let out = wrong.run(&["snapshots"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("refused the login"), "{}", out.describe());
    assert!(!out.stderr.contains("not-it") && !out.stdout.contains("not-it"), "the password is never shown");

    // The admin forgets and prunes on alice's repository.
    let admin = client(&base, &server.addr, "admin", "admin-pw", "alice");
    let out = admin.run_env(
        false,
        &["forget", "--keep-last", "1", "--prune"],
        &[("ARCA_PASSWORD", &alice.password)],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(alice.snapshots().len(), 1);
    assert_eq!(alice.json(&["verify", "--read-data"])["valid"], true);

    // A copy into another repository of the server, and a job whose
    // destination is one.
    let copy = client(&base, &server.addr, "alice", "alice-pw", "alice-copy");
    copy.init();
    let out = alice.run_env(
        false,
        &["copy", "--to", &format!("rest:http://alice@{}/alice-copy", server.addr)],
        &[("ARCA_TO_PASSWORD", &copy.password)],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(copy.snapshots().len(), 1);
    let pw = base.join("pw");
    fs::write(&pw, &copy.password).unwrap();
    let config = base.join("arca.toml");
    fs::write(
        &config,
        format!(
            "[repositories.served]\nurl = \"rest:http://alice@{}/alice-copy\"\npassword_file = \"{}\"\n\n\
             [jobs.docs]\nsources = [\"{}\"]\ndestinations = [\"served\"]\n",
            server.addr,
            pw.display(),
            src.display()
        ),
    )
    .unwrap();
    let out = copy.run_env(false, &["--config", config.to_str().unwrap(), "run", "docs"], &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(copy.snapshots().len(), 2);
    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.contains("alice-pw") && !text.contains("admin-pw"), "{text}");
}

#[test]
fn a_quota_stops_a_backup_cleanly() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let root = base.join("root");
    fs::create_dir_all(&root).unwrap();
    let port = crate::s3server::free_port();
    let server = Server::start(
        &["--root", root.to_str().unwrap(), "--no-auth", "--quota", "2M"],
        port,
        &base.join("log"),
    );
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small.txt"), "small").unwrap();
    let a = client(&base, &server.addr, "anyone", "x", "team");
    a.init();
    a.backup(&[&src], &[]);
    write_random(&src.join("big.bin"), 6 << 20, 2);
    let out = a.run(&["backup", src.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("quota"), "{}", out.describe());
    assert_eq!(a.snapshots().len(), 1, "no snapshot of a backup that did not fit");
    assert_eq!(a.json(&["verify", "--read-data"])["valid"], true);
}

#[test]
fn a_server_killed_mid_upload_loses_nothing_it_acknowledged() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let root = base.join("root");
    fs::create_dir_all(&root).unwrap();
    let port = crate::s3server::free_port();
    let args = ["--root", root.to_str().unwrap(), "--no-auth"];
    let mut server = Server::start(&args, port, &base.join("log1"));
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("first.txt"), "kept").unwrap();
    let a = client(&base, &server.addr, "anyone", "x", "repo");
    a.init();
    let first = a.backup(&[&src], &[]);
    write_random(&src.join("big.bin"), 200 << 20, 3);
    let mut backup = a.spawn(false, &["backup", src.to_str().unwrap()], &base.join("backup"));
    // Kill the server once some packs of the big file are stored.
    let packs = |root: &Path| -> usize {
        fs::read_dir(root.join("repo/data"))
            .map(|d| d.flatten().map(|e| fs::read_dir(e.path()).map(|f| f.count()).unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    let before = packs(&root);
    let deadline = Instant::now() + Duration::from_secs(120);
    while packs(&root) < before + 2 {
        assert!(Instant::now() < deadline, "no pack stored in 120 s");
        assert!(backup.try_wait().unwrap().is_none(), "the backup ended before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    server.kill();
    let status = backup.wait().unwrap();
    assert!(!status.success(), "the backup cannot finish without its server");
    // Restarted: everything acknowledged is there and whole.
    let _server = Server::start(&args, port, &base.join("log2"));
    let v = a.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(a.snapshots().len(), 1);
    let out = base.join("out");
    a.restore(jstr(&first, "id"), &out, &[]);
    assert_eq!(fs::read_to_string(restored(&out, &src).join("first.txt")).unwrap(), "kept");
    // The next backup finishes, and it all verifies.
    a.backup(&[&src], &[]);
    let v = a.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");
    let again = base.join("again");
    a.restore("latest", &again, &[]);
    assert!(
        fs::read(restored(&again, &src).join("big.bin")).unwrap() == fs::read(src.join("big.bin")).unwrap()
    );
}
