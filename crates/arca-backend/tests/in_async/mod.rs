//! The S3 backend called from inside tokio runtimes, as an async program
//! embedding arca would: from an async task directly (a multi-thread and a
//! current-thread runtime), through `block_in_place` and `spawn_blocking`,
//! and dropped inside the runtime. Blocking on the backend's own runtime
//! there would panic ("Cannot start a runtime from within a runtime"); it
//! must answer and must not deadlock, against a real S3 server (`s3s-fs`,
//! see `s3server/mod.rs`); the SFTP backend likewise, against a real sshd
//! (see `sshserver/mod.rs`).
use std::sync::Arc;
use std::time::Duration;

use crate::s3server::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};
use arca_backend::{Backend, FileKind, S3Backend, S3Config, SftpBackend, SftpConfig};

fn backend(server: &S3Server, bucket: &str) -> S3Backend {
    server.create_bucket(bucket);
    S3Backend::new(S3Config {
        bucket: bucket.to_string(),
        prefix: "repo".to_string(),
        endpoint: server.endpoint(),
        region: REGION.to_string(),
        access_key_id: ACCESS_KEY.to_string(),
        secret_access_key: SECRET_KEY.to_string(),
        virtual_host_style: false,
        concurrency: 4,
        retries: 2,
        timeout: Duration::from_secs(10),
    })
    .expect("an S3 backend")
}

/// Every kind of request once; `tag` keeps the objects of each caller apart.
fn requests(b: &dyn Backend, tag: u8) {
    let name = format!("{tag:02x}").repeat(32);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i as u8) ^ tag).collect();
    b.create().unwrap();
    assert!(!b.exists(FileKind::Snapshot, &name).unwrap());
    b.put(FileKind::Snapshot, &name, &data).unwrap();
    assert!(b.exists(FileKind::Snapshot, &name).unwrap());
    assert_eq!(b.get(FileKind::Snapshot, &name).unwrap(), data);
    assert_eq!(b.get_range(FileKind::Snapshot, &name, 100, 50).unwrap(), data[100..150]);
    assert!(b.list(FileKind::Snapshot).unwrap().iter().any(|e| e.name == name && e.size == 10_000));
    let e = b.put_new(FileKind::Snapshot, &name, b"again").unwrap_err();
    assert_eq!(e.kind, arca_backend::ErrorKind::AlreadyExists, "{e}");
    b.delete(FileKind::Snapshot, &name).unwrap();
    assert!(!b.exists(FileKind::Snapshot, &name).unwrap());
}

/// Runs `f` as `#[tokio::test]` would, on a runtime built here (the
/// `macros` feature would build tokio, and opendal, a second time).
fn within(rt: tokio::runtime::Runtime, f: impl std::future::Future<Output = ()>) {
    rt.block_on(f)
}

#[test]
fn s3_backend_inside_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    within(rt, multi_thread());
}

async fn multi_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) =
        S3Server::start_or_skip("s3_backend_inside_a_multi_thread_runtime", &tmp.path().join("s3"))
    else {
        return;
    };
    // Made inside the runtime, too.
    let b = Arc::new(backend(&server, "multi"));
    // Straight from the async task: it blocks this worker, and answers.
    requests(&*b, 1);
    tokio::task::block_in_place(|| requests(&*b, 2));
    let b2 = b.clone();
    tokio::task::spawn_blocking(move || requests(&*b2, 3)).await.unwrap();
    // Several tasks at once, each on spawn_blocking.
    let tasks: Vec<_> = (4..8u8)
        .map(|t| {
            let b = b.clone();
            tokio::task::spawn_blocking(move || requests(&*b, t))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // The last reference dropped inside the runtime.
    drop(b);
}

#[test]
fn s3_backend_inside_a_current_thread_runtime() {
    within(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(), current_thread());
}

async fn current_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) =
        S3Server::start_or_skip("s3_backend_inside_a_current_thread_runtime", &tmp.path().join("s3"))
    else {
        return;
    };
    let b = Arc::new(backend(&server, "current"));
    // The runtime's only thread waits: the request runs on the backend's own.
    requests(&*b, 9);
    let b2 = b.clone();
    tokio::task::spawn_blocking(move || requests(&*b2, 10)).await.unwrap();
    drop(b);
}

fn sftp_backend(server: &crate::sshserver::SshServer, path: &std::path::Path) -> SftpBackend {
    let config = server.ssh_config.display().to_string();
    let c = SftpConfig::from_url(&server.url(path), &|k| (k == "ARCA_SSH_CONFIG").then(|| config.clone()))
        .expect("an sftp:// URL");
    SftpBackend::new(c).expect("an SFTP backend")
}

#[test]
fn sftp_backend_inside_runtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) =
        crate::sshserver::start_or_skip("sftp_backend_inside_runtimes", &tmp.path().join("sshd"))
    else {
        return;
    };
    let root = tmp.path().join("repo");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    within(rt, async {
        let b = Arc::new(sftp_backend(&server, &root));
        requests(&*b, 1);
        tokio::task::block_in_place(|| requests(&*b, 2));
        let tasks: Vec<_> = (3..7u8)
            .map(|t| {
                let b = b.clone();
                tokio::task::spawn_blocking(move || requests(&*b, t))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        drop(b);
    });
    within(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(), async {
        // The runtime's only thread waits: the request runs on the backend's own.
        let b = Arc::new(sftp_backend(&server, &root));
        requests(&*b, 9);
        let b2 = b.clone();
        tokio::task::spawn_blocking(move || requests(&*b2, 10)).await.unwrap();
        drop(b);
    });
}
