//! `arca serve` and its client (`rest:` repositories) pass the behaviour
//! suite every backend passes, over HTTP and over HTTPS, with a user of a
//! users file logging in.

#[path = "../../arca-backend/tests/suite/mod.rs"]
mod suite;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arca_backend::{Backend, ErrorKind, FileKind, RestBackend, RestConfig};
use arca_daemon::serve::{app, users, ServeOptions};

/// Serves `opts` on a free loopback port from a runtime of its own;
/// returns the address (the runtime lives as long as the test).
fn start(opts: ServeOptions) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let router = app(&opts).unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(arca_daemon::api::serve(listener, router, opts.tls.clone(), arca_core::Cancel::new()));
    (addr, rt)
}

fn options(root: &Path, users: &Path) -> ServeOptions {
    ServeOptions {
        root: root.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        append_only: false,
        users: Some(users.to_path_buf()),
        no_auth: false,
        admins: Vec::new(),
        quota: None,
        tls: None,
    }
}

fn client(url: String, password: &str, ca: Option<&Path>) -> RestBackend {
    let mut c = RestConfig::from_url(&url, &|_| None).unwrap();
    c.password = Some(password.to_string());
    c.ca_cert = ca.map(Path::to_path_buf);
    c.retries = 1;
    RestBackend::new(c).unwrap()
}

fn run_suite(b: RestBackend) {
    b.create().unwrap();
    assert!(b.is_remote());
    suite::suite(&b);
    let b: Arc<dyn Backend> = Arc::new(b);
    suite::concurrent(b.clone());
    suite::exclusive_create(b, true);
}

#[test]
fn the_suite_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let users = tmp.path().join("users");
    std::fs::write(&users, users::line("alice", "a-secret", &[]).unwrap() + "\n").unwrap();
    let (addr, _rt) = start(options(&root, &users));
    let b = client(format!("rest:http://alice@{addr}/alice"), "a-secret", None);
    assert_eq!(b.location(), format!("rest:http://alice@{addr}/alice"));
    run_suite(b);
    // The objects are files of the repository's folder.
    assert!(root.join("alice/keys").is_dir());
    // A wrong password, another user's repository: refused, and said why.
    let e = client(format!("rest:http://alice@{addr}/alice"), "wrong", None).list(FileKind::Key).unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(e.report().to_string().contains("refused the login"), "{}", e.report());
    let other = client(format!("rest:http://alice@{addr}/bob"), "a-secret", None);
    let e = other.get(FileKind::Config, "config").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.report());
}

#[test]
fn the_suite_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    // A test CA and a certificate it signs for 127.0.0.1.
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    for args in [
        format!("req -x509 {ec} -days 1 -subj /CN=arca-test-CA -keyout {} -out {}", p("ca.key"), p("ca.pem")),
        format!("req {ec} -subj /CN=127.0.0.1 -keyout {} -out {}", p("key.pem"), p("leaf.csr")),
        format!(
            "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 1 -extfile {} -out {}",
            p("leaf.csr"),
            p("ca.pem"),
            p("ca.key"),
            p("leaf.ext"),
            p("cert.pem")
        ),
    ] {
        let out = Command::new("openssl")
            .args(args.split(' '))
            .output()
            .expect("openssl (installed by scripts/test.sh)");
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let users = dir.join("users");
    std::fs::write(&users, users::line("alice", "a-secret", &["laptop".into()]).unwrap() + "\n").unwrap();
    let mut opts = options(&root, &users);
    opts.tls = Some((dir.join("cert.pem"), dir.join("key.pem")));
    let (addr, _rt) = start(opts);
    let url = format!("rest:https://alice@{addr}/laptop");
    run_suite(client(url.clone(), "a-secret", Some(&dir.join("ca.pem"))));
    // Without the CA, the client refuses the server's certificate.
    let e = client(url, "a-secret", None).list(FileKind::Key).unwrap_err();
    assert!(e.report().to_string().contains("certificate"), "{}", e.report());
}
