//! `arca daemon` as a user runs it: a real daemon process on an ephemeral
//! port, real repositories (local and on a real S3 server), schedules every
//! few seconds, webhooks and pings received by a real HTTP server of the
//! test, the API driven end to end with the token, metrics read by the
//! Prometheus client library's parser, SIGTERM and SIGHUP.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::daemon::Daemon;
use crate::common::*;
use crate::s3server::S3Server;

const PW: &str = "daemon-secret-Hk27";

/// A child process killed when dropped (a test's server).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request an [`HttpSink`] received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    body: String,
}

/// A real HTTP server on loopback that answers 200 to everything and keeps
/// what it was sent: the webhook and ping receiver.
struct HttpSink {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl HttpSink {
    fn start() -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = r.read_exact(&mut body);
                    keep.lock().unwrap().push(Received {
                        method,
                        path,
                        body: String::from_utf8_lossy(&body).into(),
                    });
                    let mut s = stream;
                    let _ =
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                });
            }
        });
        HttpSink { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The webhook events received (JSON bodies posted to `/hook`).
    fn events(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter(|r| r.path == "/hook")
            .map(|r| serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body)))
            .collect()
    }

    /// Waits until `pred` holds for the received requests.
    #[track_caller]
    fn wait(&self, what: &str, pred: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pred(&self.received()) {
            assert!(Instant::now() < deadline, "{what}: not received: {:#?}", self.received());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A folder of files, a password file, and a local repository.
struct Setup {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    pw: PathBuf,
    config: PathBuf,
    state: PathBuf,
    arca: Arca,
}

fn setup(files: usize, size: u64) -> Setup {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, files, size, 7);
    let pw = base.join("repo.pw");
    fs::write(&pw, format!("{PW}\n")).unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    Arca::with_repo(&base, &base.join("local")).with_password(PW).init();
    let config = base.join("arca.toml");
    let mut arca = Arca::new(&base);
    arca.password = String::new();
    arca.env.push(("ARCA_CONFIG".into(), config.clone().into()));
    let state = base.join("state");
    Setup { _tmp: tmp, base, src, pw, config, state, arca }
}

impl Setup {
    fn write_config(&self, text: &str) {
        let local = format!(
            "[repositories.local]\nurl = \"{}\"\npassword_file = \"{}\"\n",
            self.base.join("local").display(),
            self.pw.display()
        );
        fs::write(&self.config, format!("{local}\n{text}")).unwrap();
    }

    fn local(&self) -> Arca {
        Arca::with_repo(&self.base, &self.base.join("local")).with_password(PW)
    }
}

/// Reads OpenMetrics text with the Prometheus client library's own parser
/// (Python's prometheus_client): `name{labels}` → value, for every sample.
fn parse_metrics(text: &str) -> Option<BTreeMap<String, f64>> {
    let Some(python) = std::env::var_os("ARCA_TEST_PYTHON") else {
        skip(
            "parse_metrics",
            "ARCA_TEST_PYTHON (a python with prometheus_client, made by scripts/test.sh) is not set",
        );
        return None;
    };
    let script = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the metrics parser");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Every log line of the daemon, checked for secrets.
fn no_secret_in(log: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!log.contains(s), "a secret ({s}) is in the daemon's log:\n{log}");
    }
}

#[test]
fn the_api_runs_follows_cancels_restores_and_verifies_a_job_with_its_token() {
    let s = setup(40, 400_000);
    let hook = HttpSink::start();
    s.write_config(&format!(
        r#"[jobs.home]
sources = ["{src}"]
destinations = ["local"]
notify = [{{ webhook = "{hook}/hook", on = ["start", "success", "failure", "damage"] }}]

[jobs.endless]
command = ["sh", "-c", "while :; do head -c 1048576 /dev/urandom; sleep 0.05; done"]
stdin_filename = "endless.bin"
destinations = ["local"]
"#,
        src = s.src.display(),
        hook = hook.url
    ));
    let mut d = Daemon::start(&s.arca, &s.state, &s.base.join("daemon.log"));
    let token_file = s.state.join("daemon.token");
    assert_eq!(fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(d.token.len(), 64);

    // Every route but /health and the dashboard's files (no data in them)
    // refuses a request without the token, or with a wrong one.
    let routes: Value = serde_json::from_str(&d.get("/api/openapi.json").to_string()).unwrap();
    let paths = routes["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{paths:?}");
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{name}", "home").replace("{id}", "1").replace("{file}", "app.js");
            let body = (method == "post").then(|| json!({}));
            for token in [None, Some("0123456789abcdef0123456789abcdef")] {
                let (status, v) = d.send(&method.to_uppercase(), &concrete, body.clone(), token);
                if matches!(path.as_str(), "/health" | "/" | "/assets/{file}") {
                    assert_eq!(status, 200, "{method} {path}: {v}");
                } else {
                    assert_eq!(status, 401, "{method} {path} with token {token:?}: {v}");
                }
            }
        }
    }
    let health = d.send("GET", "/health", None, None).1;
    assert_eq!(health["status"], "ok", "{health}");

    // Run now, and follow it as server-sent events to its end.
    let run_id = d.post("/api/jobs/home/run", json!({ "strategy": "full" }))["run_id"].as_i64().unwrap();
    let resp =
        d.http.get(format!("{}/api/runs/{run_id}/events", d.url)).bearer_auth(&d.token).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut events: Vec<(String, Value)> = Vec::new();
    let mut event = String::new();
    for line in BufReader::new(resp).lines() {
        let line = line.unwrap();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((event.clone(), serde_json::from_str(data).unwrap()));
            if event == "end" {
                break;
            }
        }
    }
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert!(kinds.contains(&"status"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    let end = &events.last().unwrap().1;
    assert_eq!(end["status"], "succeeded", "{end}");
    assert_eq!(end["strategy"], "full");
    assert_eq!(end["trigger"], "api");
    // The result is the `arca run --json` document.
    let result = &end["result"];
    assert_eq!(result["job"], "home");
    assert!(is_hex(jstr(&result["destinations"][0], "snapshot")), "{result}");
    assert_eq!(result["bytes_read"].as_u64(), Some(tree_size(&s.src)));
    let doc = d.get(&format!("/api/runs/{run_id}"));
    assert_eq!((doc["status"].as_str(), doc["progress"].is_null()), (Some("succeeded"), true), "{doc}");

    // The snapshot is listed, restored through the API, and verified.
    let snaps = d.get("/api/snapshots?job=home");
    let listed = &snaps["destinations"][0];
    assert_eq!(
        (listed["destination"].as_str(), jarr(listed, "snapshots").len()),
        (Some("local"), 1),
        "{snaps}"
    );
    // Browsing it: one folder at a time, and one file's bytes.
    let snap_id = jstr(&jarr(listed, "snapshots")[0], "id").to_string();
    let mut a_file = None;
    walk(&s.src, &mut |p, m| {
        if m.is_file() && a_file.is_none() {
            a_file = Some(p.to_path_buf());
        }
    });
    let a_file = a_file.expect("the source has files");
    let parent = a_file.parent().unwrap();
    let folder =
        d.get(&format!("/api/snapshots/{}/tree?destination=local&path={}", &snap_id[..8], parent.display()));
    let mut names: Vec<String> =
        jarr(&folder, "entries").iter().map(|e| jstr(e, "name").to_string()).collect();
    names.sort();
    let mut expected: Vec<String> =
        fs::read_dir(parent).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    expected.sort();
    assert_eq!(names, expected, "{folder}");
    assert_eq!(jstr(&folder, "snapshot"), snap_id);
    let name = a_file.file_name().unwrap().to_str().unwrap();
    let entry =
        jarr(&folder, "entries").iter().find(|e| e["name"] == name).expect("the file is listed").clone();
    assert_eq!(entry["type"], "file");
    let on_disk = fs::read(&a_file).unwrap();
    assert_eq!(ju64(&entry, "size"), on_disk.len() as u64);
    let resp = d
        .http
        .get(format!(
            "{}/api/snapshots/{snap_id}/file?destination=local&path={}",
            d.url,
            jstr(&entry, "path")
        ))
        .bearer_auth(&d.token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let disposition = resp.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.contains(jstr(&entry, "name")), "{disposition}");
    assert!(resp.bytes().unwrap().as_ref() == on_disk.as_slice(), "the downloaded file differs");
    for (path, status) in [
        (format!("/api/snapshots/{snap_id}/file?destination=local&path={}", s.src.display()), 404),
        (
            format!("/api/snapshots/{snap_id}/file?destination=local&path={}/../etc/passwd", s.src.display()),
            404,
        ),
        (format!("/api/snapshots/{snap_id}/file?destination=local&path=relative"), 400),
        (format!("/api/snapshots/{snap_id}/tree?destination=local&path={}/missing", s.src.display()), 404),
        ("/api/snapshots/ffffffff/tree?destination=local".to_string(), 404),
        ("/api/snapshots/0/tree?destination=local".to_string(), 400),
        (format!("/api/snapshots/{snap_id}/tree?destination=nowhere"), 404),
    ] {
        let (got, v) = d.send("GET", &path, None, Some(&d.token));
        assert_eq!(got, status, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }

    let target = s.base.join("restored");
    let id = d.post("/api/restores", json!({ "job": "home", "target": target }))["run_id"].as_i64().unwrap();
    let restored = d.wait_run(id);
    assert_eq!(restored["status"], "succeeded", "{restored}");
    assert_trees_equal(&s.src, &crate::common::restored(&target, &s.src), Compare::default());
    let (status, v) = d.send(
        "POST",
        "/api/restores",
        Some(json!({ "job": "home", "target": "relative/x" })),
        Some(&d.token),
    );
    assert_eq!(status, 400, "{v}");
    assert!(jstr(&v, "error").contains("not an absolute path"), "{v}");
    let id = d.post("/api/verifications", json!({ "job": "home" }))["run_id"].as_i64().unwrap();
    let verified = d.wait_run(id);
    assert_eq!(verified["status"], "succeeded", "{verified}");
    assert_eq!(verified["result"]["destinations"][0]["verify"]["mode"], "restore-test", "{verified}");
    let restores = d.get("/api/runs?task=restore&status=succeeded");
    assert_eq!(jarr(&restores, "runs").len(), 1, "{restores}");
    let inventory = d.get("/api/inventory");
    assert_eq!(inventory["total_backups"], 1, "{inventory}");
    assert_eq!(inventory["by_strategy"][0]["strategy"], "full", "{inventory}");

    // A run that would never end shows moving progress, and is cancelled.
    let id = d.post("/api/jobs/endless/run", json!({}))["run_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let moving = loop {
        let v = d.get(&format!("/api/runs/{id}"));
        if v["progress"]["bytes"].as_u64().unwrap_or(0) > 2 << 20 {
            break v;
        }
        assert!(Instant::now() < deadline, "no progress: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(moving["status"], "running", "{moving}");
    assert!(moving["progress"]["rate"].as_f64().unwrap() > 0.0, "{moving}");
    let (status, v) = d.send("DELETE", &format!("/api/runs/{id}"), None, Some(&d.token));
    assert_eq!(status, 202, "{v}");
    let cancelled = d.wait_run(id);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (status, _) = d.send("DELETE", &format!("/api/runs/{id}"), None, Some(&d.token));
    assert_eq!(status, 409, "an ended run cannot be cancelled again");
    // The repository is left resumable: nothing half-written, no lock.
    s.local().verify(&[]).ok();

    // Webhook: start and success of the backup, with the event's fields.
    hook.wait("success event", |r| r.iter().any(|r| r.body.contains("\"success\"")));
    let events = hook.events();
    let of_run: Vec<&Value> = events.iter().filter(|e| e["run_id"] == run_id).collect();
    let kinds: Vec<&str> = of_run.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"start") && kinds.contains(&"success"), "{events:?}");
    let success = of_run.iter().find(|e| e["kind"] == "success").unwrap();
    assert_eq!(
        (success["job"].as_str(), success["result"].as_str()),
        (Some("home"), Some("success")),
        "{success}"
    );
    assert_eq!(success["destinations"][0]["name"], "local", "{success}");

    // The metrics, read by Prometheus's own parser.
    let text = d.http.get(format!("{}/metrics", d.url)).bearer_auth(&d.token).send().unwrap().text().unwrap();
    if let Some(m) = parse_metrics(&text) {
        let get = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("{k} missing: {m:#?}"));
        assert_eq!(
            get(r#"arca_job_runs_total{job="home",result="succeeded"}"#),
            3.0,
            "backup, restore, verify"
        );
        assert_eq!(get(r#"arca_job_runs_total{job="endless",result="cancelled"}"#), 1.0);
        assert_eq!(get(r#"arca_job_last_run_status{job="home"}"#), 1.0);
        let last = get(r#"arca_job_last_success_timestamp_seconds{destination="local",job="home"}"#);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(now - last < 300.0 && last <= now + 1.0, "{last} vs {now}");
        assert_eq!(get(r#"arca_backup_bytes_read_total{job="home"}"#), tree_size(&s.src) as f64);
        assert_eq!(get(r#"arca_verify_damaged_files{job="home"}"#), 0.0);
        assert!(m.keys().any(|k| k.starts_with("arca_build_info{")), "{m:#?}");
        assert!(get(r#"arca_job_duration_seconds_count{job="home"}"#) >= 3.0);
        // Sizes are measured after each run, in the background.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = d
                .http
                .get(format!("{}/metrics", d.url))
                .bearer_auth(&d.token)
                .send()
                .unwrap()
                .text()
                .unwrap();
            let m = parse_metrics(&text).unwrap();
            if m.get(r#"arca_repository_size_bytes{destination="local"}"#).is_some_and(|v| *v > 0.0) {
                assert!(m[r#"arca_snapshots{destination="local"}"#] >= 1.0);
                let sizes = d.get("/api/sizes?destination=local");
                let last = jarr(&sizes, "sizes").last().cloned().unwrap_or_default();
                assert!(ju64(&last, "size_bytes") > 0 && ju64(&last, "snapshots") >= 1, "{sizes}");
                break;
            }
            assert!(Instant::now() < deadline, "no repository size: {m:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Damage: a byte flipped in the largest pack. A verification that reads
    // the data finds it, names the files, alerts, and the metric says how
    // many.
    let mut packs: Vec<(u64, PathBuf)> = Vec::new();
    walk(&s.base.join("local/data"), &mut |p, m| {
        if m.is_file() {
            packs.push((m.len(), p.to_path_buf()));
        }
    });
    let (len, pack) = packs.into_iter().max().expect("packs");
    let mut bytes = fs::read(&pack).unwrap();
    bytes[len as usize / 2] ^= 0x20;
    fs::write(&pack, bytes).unwrap();
    let id = d.post("/api/verifications", json!({ "job": "home", "mode": "read-data" }))["run_id"]
        .as_i64()
        .unwrap();
    let v = d.wait_run(id);
    assert_eq!(v["status"], "failed", "{v}");
    let damaged = jarr(&v["result"]["destinations"][0]["verify"], "damaged").clone();
    assert!(!damaged.is_empty(), "{v}");
    hook.wait("a damage event", |r| r.iter().any(|r| r.body.contains("\"damage\"")));
    let event = hook.events().into_iter().find(|e| e["kind"] == "damage").unwrap();
    assert_eq!(
        (event["run_id"].as_i64(), jarr(&event, "damaged").len()),
        (Some(id), damaged.len()),
        "{event}"
    );
    let text = d.http.get(format!("{}/metrics", d.url)).bearer_auth(&d.token).send().unwrap().text().unwrap();
    if let Some(m) = parse_metrics(&text) {
        assert_eq!(m[r#"arca_verify_damaged_files{job="home"}"#], damaged.len() as f64);
    }
    assert_eq!(d.stop(), Some(0));
    no_secret_in(&d.log(), &[PW, &d.token]);
}

#[test]
fn the_api_speaks_https_with_the_configured_certificate() {
    let s = setup(2, 1000);
    // A test CA and a certificate it signs for 127.0.0.1 (webpki refuses a
    // self-signed CA certificate as the server's own).
    let (cert, key) = (s.base.join("cert.pem"), s.base.join("key.pem"));
    let (ca, ca_key, csr, ext) =
        (s.base.join("ca.pem"), s.base.join("ca.key"), s.base.join("leaf.csr"), s.base.join("leaf.ext"));
    fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let openssl = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split(' '))
            .output()
            .expect("openssl (installed by scripts/test.sh)");
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!("req -x509 {ec} -days 1 -subj /CN=arca-test-CA -keyout {} -out {}", p(&ca_key), p(&ca)));
    openssl(&format!("req {ec} -subj /CN=127.0.0.1 -keyout {} -out {}", p(&key), p(&csr)));
    openssl(&format!(
        "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 1 -extfile {} -out {}",
        p(&csr),
        p(&ca),
        p(&ca_key),
        p(&ext),
        p(&cert)
    ));
    s.write_config(&format!(
        "[daemon]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[jobs.home]\nsources = [\"{}\"]\ndestinations = [\"local\"]\n",
        cert.display(),
        key.display(),
        s.src.display()
    ));
    let trust = reqwest::Certificate::from_pem(&fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder().add_root_certificate(trust).https_only(true);
    let mut d = Daemon::start_with(&s.arca, &s.state, &s.base.join("daemon.log"), &[], client);
    assert!(d.url.starts_with("https://127.0.0.1:"), "{}", d.url);
    assert_eq!(d.send("GET", "/health", None, None).1["status"], "ok");
    assert_eq!(d.send("GET", "/api/jobs", None, None).0, 401);
    let id = d.post("/api/jobs/home/run", json!({}))["run_id"].as_i64().unwrap();
    assert_eq!(d.wait_run(id)["status"], "succeeded");
    // Plain HTTP to the same port gets no answer; a client that does not
    // trust the certificate refuses the server.
    let plain = d.url.replace("https://", "http://");
    let r = reqwest::blocking::Client::new().get(format!("{plain}/health")).send();
    assert!(r.map(|r| !r.status().is_success()).unwrap_or(true));
    assert!(reqwest::blocking::Client::new().get(format!("{}/health", d.url)).send().is_err());
    assert_eq!(d.stop(), Some(0));
    // Started again, the metrics know the last success from the history.
    let trust = reqwest::Certificate::from_pem(&fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder().add_root_certificate(trust);
    let mut d = Daemon::start_with(&s.arca, &s.state, &s.base.join("daemon2.log"), &[], client);
    let text = d.http.get(format!("{}/metrics", d.url)).bearer_auth(&d.token).send().unwrap().text().unwrap();
    assert!(
        text.contains("arca_job_last_success_timestamp_seconds{job=\"home\",destination=\"local\"}"),
        "{text}"
    );
    assert!(text.contains("arca_job_last_run_status{job=\"home\"} 1"), "{text}");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn schedules_retry_with_backoff_alert_recover_and_catch_up_once_after_downtime() {
    let s = setup(10, 20_000);
    let Some(mut server) = S3Server::start_or_skip("daemon schedules", &s.base.join("s3")) else {
        return;
    };
    server.create_bucket("offsite");
    let env: BTreeMap<String, String> = server
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
        .collect();
    let mut s3 = Arca::with_repo(&s.base, Path::new("s3://offsite/daemon")).with_password(PW);
    s3.env.extend(server.aws_env());
    s3.init();
    let keys = s.base.join("offsite.keys");
    fs::write(
        &keys,
        format!(
            "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        ),
    )
    .unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
    let hook = HttpSink::start();
    // Mail goes to a real SMTP server (aiosmtpd) on loopback.
    let maildir = s.base.join("mail");
    let smtp_port = crate::s3server::free_port();
    let _smtp = match std::env::var_os("ARCA_TEST_AIOSMTPD") {
        Some(bin) => {
            let child = Command::new(bin)
                .args(["-n", "-l", &format!("127.0.0.1:{smtp_port}"), "-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start aiosmtpd");
            assert!(
                crate::s3server::wait_for_port(smtp_port, Duration::from_secs(20)),
                "aiosmtpd did not start"
            );
            Some(KillOnDrop(child))
        }
        None => {
            skip("daemon email", "ARCA_TEST_AIOSMTPD (made by scripts/test.sh) is not set");
            None
        }
    };
    // The secret part of a ping URL, which must never be logged.
    let ping_secret = "5f0c1e6a-ping-secret";
    s.write_config(&format!(
        r#"[daemon.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "arca@example.com"

[repositories.offsite]
url = "s3://offsite/daemon"
password_file = "{pw}"
s3_endpoint = "{endpoint}"
s3_region = "{region}"
s3_keys_file = "{keys}"

[jobs.offsite]
sources = ["{src}"]
destinations = ["offsite"]
retry = {{ attempts = 3, initial = "1s", factor = 2, max = "2s" }}
notify = [
  {{ webhook = "{hook}/hook", on = ["success", "failure", "missed"] }},
  {{ ping = "{hook}/ping/{ping_secret}" }},
  {{ email = "ops@example.com", on = ["failure"] }},
]
[jobs.offsite.schedule]
incremental = "*/3 * * * * *"
tz = "UTC"
"#,
        pw = s.pw.display(),
        endpoint = env["AWS_ENDPOINT_URL"],
        region = env["AWS_REGION"],
        keys = keys.display(),
        src = s.src.display(),
        hook = hook.url,
    ));
    // The destination is down when the daemon starts.
    server.stop();
    let mut d = Daemon::start(&s.arca, &s.state, &s.base.join("daemon.log"));
    // The first scheduled run fails three times, a random delay (at most
    // 1 s, then 2 s) between tries, and only then alerts.
    hook.wait("a failure event", |r| r.iter().any(|r| r.path == "/hook" && r.body.contains("\"failure\"")));
    let failure = hook.events().into_iter().find(|e| e["kind"] == "failure").unwrap();
    let first = failure["run_id"].as_i64().unwrap();
    let record = d.get(&format!("/api/runs/{first}"));
    assert_eq!(
        (record["status"].as_str(), record["attempt"].as_i64()),
        (Some("failed"), Some(3)),
        "{record}"
    );
    assert!(jstr(&failure, "error").contains("offsite"), "{failure}");
    assert_eq!(record["result"]["retryable"], true, "{record}");
    // Scheduled times during the retries joined the waiting retry: no run
    // was queued beside it, and no failure alert came for any try but the
    // last.
    let runs = d.runs();
    let ended = jstr(&record, "finished_at").to_string();
    let beside: Vec<&Value> =
        runs.iter().filter(|r| r["id"] != first && jstr(r, "queued_at") < ended.as_str()).collect();
    assert!(beside.is_empty(), "{runs:?}");
    assert_eq!(hook.events().iter().filter(|e| e["kind"] == "failure" && e["run_id"] == first).count(), 1);
    // The ping saw the start of each try and one failure.
    let pings: Vec<Received> = hook.received().into_iter().filter(|r| r.path.starts_with("/ping/")).collect();
    assert!(pings.iter().any(|p| p.path.ends_with("/start")), "{pings:?}");
    assert!(pings.iter().any(|p| p.path.ends_with("/fail")), "{pings:?}");
    if _smtp.is_some() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mail = loop {
            let found = fs::read_dir(maildir.join("new"))
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| fs::read_to_string(e.unwrap().path()).ok());
            if let Some(m) = found {
                break m;
            }
            assert!(Instant::now() < deadline, "no mail arrived");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(mail.contains("Subject: arca: offsite failure"), "{mail}");
        assert!(mail.contains("To: ops@example.com") && mail.contains("cannot reach"), "{mail}");
    }
    let health = d.send("GET", "/health", None, None).1;
    assert_eq!(health["status"], "degraded", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("job offsite: the latest backup")
            && reasons.contains("destination offsite unreachable"),
        "{health}"
    );

    // The destination comes back: the next scheduled run succeeds, the
    // ping hears success, and health is ok again.
    server.restart();
    hook.wait("a success event", |r| r.iter().any(|r| r.path == "/hook" && r.body.contains("\"success\"")));
    hook.wait("a success ping", |r| {
        r.iter().any(|r| r.path == format!("/ping/{ping_secret}") && r.method == "POST")
    });
    let health = d.send("GET", "/health", None, None).1;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(!s3.snapshots().is_empty());

    // Down for a while: the daemon stops cleanly, several scheduled times
    // pass, and on its return one run catches up, not one per time.
    assert!(d.runs().iter().all(|r| r["trigger"] != "catch-up"), "nothing was missed yet");
    assert_eq!(d.stop(), Some(0));
    let missed_before = hook.events().iter().filter(|e| e["kind"] == "missed").count();
    std::thread::sleep(Duration::from_secs(10));
    let log2 = s.base.join("daemon2.log");
    let mut d = Daemon::start(&s.arca, &s.state, &log2);
    hook.wait("a missed event", |r| {
        r.iter().filter(|r| r.body.contains("\"missed\"")).count() > missed_before
    });
    let missed = hook.events().into_iter().rfind(|e| e["kind"] == "missed").unwrap();
    assert!(jstr(&missed, "summary").contains("scheduled times passed"), "{missed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let catch_up = loop {
        let runs = d.runs();
        if let Some(r) = runs
            .iter()
            .find(|r| r["trigger"] == "catch-up" && r["status"] != "running" && r["status"] != "queued")
        {
            break (r.clone(), runs);
        }
        assert!(Instant::now() < deadline, "no catch-up run: {runs:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (run, runs) = catch_up;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(runs.iter().filter(|r| r["trigger"] == "catch-up").count(), 1, "{runs:?}");
    assert_eq!(d.stop(), Some(0));
    for log in [d.log(), fs::read_to_string(s.base.join("daemon.log")).unwrap()] {
        no_secret_in(&log, &[PW, ping_secret, &env["AWS_SECRET_ACCESS_KEY"], &d.token]);
    }
}

#[test]
fn sigterm_cancels_a_running_job_cleanly_and_sighup_reloads_or_keeps_the_config() {
    let s = setup(5, 10_000);
    let endless = r#"[jobs.endless]
command = ["sh", "-c", "while :; do head -c 1048576 /dev/urandom; sleep 0.05; done"]
stdin_filename = "endless.bin"
destinations = ["local"]
"#;
    s.write_config(endless);
    let mut d = Daemon::start(&s.arca, &s.state, &s.base.join("daemon.log"));

    // A bad file is refused, and the configuration in force stays.
    fs::write(&s.config, "[jobs.broken]\nsources = [\"relative\"]\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("reload refused");
    let names = |d: &Daemon| -> Vec<String> {
        jarr(&d.get("/api/jobs"), "jobs").iter().map(|j| jstr(j, "name").to_string()).collect()
    };
    assert_eq!(names(&d), vec!["endless"]);
    // A good one is taken, with its new job and schedule.
    s.write_config(&format!(
        "{endless}\n[jobs.home]\nsources = [\"{}\"]\ndestinations = [\"local\"]\nschedule = {{ full = \"0 3 * * *\", tz = \"UTC\" }}\n",
        s.src.display()
    ));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("reloaded");
    let jobs = d.get("/api/jobs");
    assert_eq!(names(&d), vec!["endless", "home"]);
    let home = &jarr(&jobs, "jobs")[1];
    assert!(jstr(home, "next_run").contains("T03:00:00"), "{home}");

    // SIGTERM in the middle of a run: cancelled through the engine, the
    // daemon exits 0, and the history says so.
    let id = d.post("/api/jobs/endless/run", json!({}))["run_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.get(&format!("/api/runs/{id}"))["progress"]["bytes"].as_u64().unwrap_or(0) < 1 << 20 {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.stop(), Some(0));
    assert!(d.log().contains("stopping: cancelling the runs going on"), "{}", d.log());
    s.local().verify(&[]).ok();
    // Started again, with JSON logs: the history kept the cancelled run.
    let client = reqwest::blocking::Client::builder();
    let mut d =
        Daemon::start_with(&s.arca, &s.state, &s.base.join("daemon2.log"), &["--log-format", "json"], client);
    let record = d.get(&format!("/api/runs/{id}"));
    assert_eq!(record["status"], "cancelled", "{record}");
    assert_eq!(d.stop(), Some(0));
    let log = d.log();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(log.contains("\"message\":\"stopped\""), "{log}");
    no_secret_in(&log, &[PW, &d.token]);
}

#[test]
fn a_blackout_window_holds_scheduled_runs_but_not_a_persons_request() {
    let s = setup(3, 1000);
    // A window over the whole day, every day: scheduled runs wait.
    s.write_config(&format!(
        r#"[[blackout]]
days = ["daily"]
from = "00:00"
to = "23:59:59"
tz = "UTC"

[jobs.home]
sources = ["{}"]
destinations = ["local"]
schedule = {{ incremental = "*/2 * * * * *", tz = "UTC" }}
"#,
        s.src.display()
    ));
    let mut d = Daemon::start(&s.arca, &s.state, &s.base.join("daemon.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        if let Some(r) = d.runs().into_iter().find(|r| r["trigger"] == "schedule") {
            let doc = d.get(&format!("/api/runs/{}", r["id"]));
            if doc["waiting"].is_string() {
                break doc;
            }
        }
        assert!(Instant::now() < deadline, "no scheduled run waits: {:?}", d.runs());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert!(jstr(&waiting, "waiting").contains("inside a blackout window until"), "{waiting}");
    // Later times join the one waiting run rather than piling up.
    std::thread::sleep(Duration::from_secs(5));
    let scheduled = d.runs().into_iter().filter(|r| r["trigger"] == "schedule").count();
    assert_eq!(scheduled, 1, "{:?}", d.runs());
    assert!(d.log().contains("joins the waiting run"), "{}", d.log());
    // A waiting run is cancelled at once (and the daemon goes on answering).
    let (status, v) = d.send("DELETE", &format!("/api/runs/{}", waiting["id"]), None, Some(&d.token));
    assert_eq!(status, 202, "{v}");
    assert_eq!(d.wait_run(waiting["id"].as_i64().unwrap())["status"], "cancelled");
    // The next time queues a new one; a person asking now is not held,
    // and joins it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = loop {
        let runs = d.runs();
        if let Some(r) = runs.iter().find(|r| r["trigger"] == "schedule" && r["status"] == "queued") {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "no new scheduled run: {runs:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let asked = d.post("/api/jobs/home/run", json!({}));
    assert_eq!(
        (asked["run_id"].as_i64(), asked["joined"].as_bool()),
        (next["id"].as_i64(), Some(true)),
        "{asked}"
    );
    let done = d.wait_run(next["id"].as_i64().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn the_api_holds_to_its_openapi_document_under_schemathesis() {
    let Some(st) = std::env::var_os("ARCA_TEST_SCHEMATHESIS") else {
        skip(
            "schemathesis",
            "ARCA_TEST_SCHEMATHESIS (schemathesis, installed by scripts/test.sh) is not set",
        );
        return;
    };
    let s = setup(2, 1000);
    s.write_config(&format!(
        "[jobs.home]\nsources = [\"{}\"]\ndestinations = [\"local\"]\n",
        s.src.display()
    ));
    let mut d = Daemon::start(&s.arca, &s.state, &s.base.join("daemon.log"));
    // Restores are left out: generated targets are absolute paths anywhere
    // on this machine. DELETE cancels a run, which stays in the history:
    // not the "deleted resource" that use_after_free expects gone.
    let out = Command::new(st)
        .current_dir(&s.base)
        .args(["run", &format!("{}/api/openapi.json", d.url), "--url", &d.url])
        .args(["-H", &format!("Authorization: Bearer {}", d.token)])
        .args(["--max-examples", "20", "--seed", "20261207", "--generation-deterministic"])
        .args(["--exclude-path", "/api/restores", "--exclude-checks", "use_after_free"])
        .args(["--request-timeout", "30"])
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested: 16"), "{report}");
    assert_eq!(d.stop(), Some(0));
    no_secret_in(&d.log(), &[PW, &d.token]);
}

#[test]
fn config_check_names_the_daemon_settings_mistakes() {
    let s = setup(1, 10);
    s.write_config(
        r#"[daemon]
listen = "localhost"
[[blackout]]
days = ["mon-fri"]
from = "25:00"
to = "17:00"
[jobs.home]
sources = ["/srv"]
destinations = ["local"]
notify = [{ email = "ops@example.com" }]
retry = { attempts = 0 }
[jobs.home.schedule]
full = "0 0 * * 8"
tz = "Europe/Nowhere"
"#,
    );
    let mut cmd = without_repo(s.arca.command(false, &["config", "check"]));
    cmd.env_remove("ARCA_PASSWORD");
    let out = run_command(cmd).code_is(2);
    for (line, what) in [
        (6, "listen \"localhost\""),
        (9, "from \"25:00\""),
        (14, "email needs [daemon.smtp]"),
        (15, "attempts counts the first try"),
        (17, "cron expression \"0 0 * * 8\""),
        (18, "unknown time zone \"Europe/Nowhere\""),
    ] {
        assert!(
            out.stderr.lines().any(|l| l.contains(&format!(":{line}:")) && l.contains(what)),
            "line {line}: {what}: {}",
            out.describe()
        );
    }
}
