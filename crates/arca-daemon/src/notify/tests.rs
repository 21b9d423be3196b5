//! Notifications against real receivers: an HTTP server on loopback (in
//! this file), `sh`, and aiosmtpd as the mail server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arca_jobs::config::{Channel, EventKind, Notify, PasswordSource, Smtp, SmtpTls, WebhookFormat};

use super::{email, ping, webhook, Delivery, Event, EventDestination, Notifier};

// ---------------------------------------------------------------- helpers

fn event(kind: EventKind) -> Event {
    let failed = matches!(kind, EventKind::Failure | EventKind::Damage);
    Event {
        kind,
        job: "home".into(),
        task: "backup".into(),
        strategy: Some("incremental".into()),
        run_id: (kind != EventKind::Missed).then_some(42),
        time: "2026-03-01T02:00:05Z".into(),
        host: "pc1".into(),
        result: match kind {
            EventKind::Success => Some("success".into()),
            EventKind::Failure | EventKind::Damage => Some("failure".into()),
            _ => None,
        },
        summary: format!("backup of home: {}", kind.name()),
        error: failed.then(|| "nas: connection refused".into()),
        destinations: vec![
            EventDestination { name: "nas".into(), success: !failed, snapshot: None, error: None },
            EventDestination {
                name: "offsite".into(),
                success: true,
                snapshot: Some("1a2b3c4d".into()),
                error: None,
            },
        ],
        damaged: if kind == EventKind::Damage {
            (0..105).map(|i| format!("/home/a/file-{i:03}")).collect()
        } else {
            Vec::new()
        },
    }
}

fn target(channel: Channel, on: &[EventKind]) -> Notify {
    Notify { channel, on: on.to_vec() }
}

/// Shorter waits between tries, for tests that only count them.
fn quick(mut n: Notifier) -> Notifier {
    n.limits.backoff_base = Duration::from_millis(20);
    n
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering request n with `statuses[n]`
/// (the last one again once they run out), one request per connection.
struct Receiver {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, statuses) = (requests.clone(), statuses.to_vec());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else { continue };
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(request);
                    seen.len()
                };
                let status = statuses[(n - 1).min(statuses.len() - 1)];
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { base, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}

/// What the notifier logs, at every level, while the guard lives (on this
/// thread: the tests run on a current-thread runtime).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Fails when a secret is in a delivery or a log line.
fn assert_no_secret(deliveries: &[Delivery], logs: &Logs, secrets: &[&str]) {
    let logs = logs.text();
    for s in secrets {
        for d in deliveries {
            assert!(!format!("{d:?}").contains(s), "{s:?} in delivery {d:?}");
        }
        assert!(!logs.contains(s), "{s:?} in the logs:\n{logs}");
    }
}

/// A port nothing listens on (one just let go).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------- webhooks

#[tokio::test]
async fn webhook_json_body_is_the_event() {
    let rx = Receiver::start(&[200]);
    let url = format!("{}/hooks/T0/secret-token-123", rx.base);
    let t = target(Channel::Webhook { url, format: WebhookFormat::Json }, &[EventKind::Failure]);
    let (logs, _guard) = Logs::capture();
    let ev = event(EventKind::Failure);
    let out = Notifier::new(None).send(&ev, &[&t]).await;
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0],
        Delivery { channel: format!("webhook {}/…", rx.base), ok: true, attempts: 1, error: None }
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/hooks/T0/secret-token-123"));
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["kind"], "failure");
    assert_eq!(body["job"], "home");
    assert_eq!(body["task"], "backup");
    assert_eq!(body["strategy"], "incremental");
    assert_eq!(body["run_id"], 42);
    assert_eq!(body["time"], ev.time);
    assert_eq!(body["host"], "pc1");
    assert_eq!(body["result"], "failure");
    assert_eq!(body["summary"], ev.summary);
    assert_eq!(body["error"], "nas: connection refused");
    assert_eq!(body["destinations"][1]["name"], "offsite");
    assert_eq!(body["destinations"][1]["snapshot"], "1a2b3c4d");
    assert_eq!(body["destinations"][0]["success"], false);
    assert_eq!(body["damaged"], serde_json::json!([]));
    assert_no_secret(&out, &logs, &["secret-token-123"]);
}

#[tokio::test]
async fn webhook_slack_body_has_text() {
    let rx = Receiver::start(&[200]);
    let url = format!("{}/services/T0/B0/xoxb-secret", rx.base);
    let t = target(Channel::Webhook { url, format: WebhookFormat::Slack }, &[EventKind::Failure]);
    let out = Notifier::new(None).send(&event(EventKind::Failure), &[&t]).await;
    assert!(out[0].ok, "{out:?}");
    let reqs = rx.requests();
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body, serde_json::json!({ "text": "arca: job home failure — backup of home: failure" }));
}

#[tokio::test]
async fn webhook_retries_5xx_until_it_succeeds() {
    let rx = Receiver::start(&[500, 500, 200]);
    let t = target(
        Channel::Webhook { url: format!("{}/hook", rx.base), format: WebhookFormat::Json },
        &[EventKind::Failure],
    );
    // The daemon's own waits (500 ms, then up to 1 s).
    let out = Notifier::new(None).send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].ok, out[0].attempts, out[0].error.as_deref()), (true, 3, None));
    assert_eq!(rx.requests().len(), 3);
}

#[tokio::test]
async fn webhook_retries_429_and_gives_up_after_4_tries() {
    let rx = Receiver::start(&[429]);
    let t = target(
        Channel::Webhook { url: format!("{}/hook", rx.base), format: WebhookFormat::Json },
        &[EventKind::Failure],
    );
    let out = quick(Notifier::new(None)).send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].ok, out[0].attempts), (false, 4));
    assert!(out[0].error.as_deref().unwrap().contains("429"), "{out:?}");
    assert_eq!(rx.requests().len(), 4);
}

#[tokio::test]
async fn webhook_404_is_not_retried() {
    let rx = Receiver::start(&[404, 200]);
    let t = target(
        Channel::Webhook { url: format!("{}/hook/secret-path", rx.base), format: WebhookFormat::Json },
        &[EventKind::Failure],
    );
    let (logs, _guard) = Logs::capture();
    let out = quick(Notifier::new(None)).send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].ok, out[0].attempts), (false, 1));
    assert!(out[0].error.as_deref().unwrap().contains("HTTP 404"), "{out:?}");
    assert_eq!(rx.requests().len(), 1);
    assert!(logs.text().contains("notification not delivered"), "{}", logs.text());
    assert_no_secret(&out, &logs, &["secret-path"]);
}

#[tokio::test]
async fn target_not_on_the_kind_gets_nothing() {
    let (on, off) = (Receiver::start(&[200]), Receiver::start(&[200]));
    let json =
        |rx: &Receiver| Channel::Webhook { url: format!("{}/h", rx.base), format: WebhookFormat::Json };
    let wants = target(json(&on), &[EventKind::Failure, EventKind::Damage]);
    let not = target(json(&off), &[EventKind::Success, EventKind::Start]);
    let n = Notifier::new(None);
    let out = n.send(&event(EventKind::Failure), &[&not, &wants]).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].channel, format!("webhook {}/…", on.base));
    assert!(n.send(&event(EventKind::Missed), &[&not, &wants]).await.is_empty());
    assert_eq!(on.requests().len(), 1);
    assert_eq!(off.requests().len(), 0);
}

#[tokio::test]
async fn unreachable_webhook_fails_after_retries_without_its_secret() {
    let url = format!("http://127.0.0.1:{}/hooks/secret-token-456?key=hidden-key", closed_port());
    let t = target(Channel::Webhook { url, format: WebhookFormat::Json }, &[EventKind::Failure]);
    let (logs, _guard) = Logs::capture();
    let out = Notifier::new(None).send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].ok, out[0].attempts), (false, 4), "{out:?}");
    let error = out[0].error.as_deref().unwrap();
    assert!(error.contains("onnect"), "{error}");
    assert!(logs.text().contains("notification not delivered"), "{}", logs.text());
    assert_no_secret(&out, &logs, &["secret-token-456", "hidden-key", "/hooks"]);
}

#[tokio::test]
async fn webhook_time_out_is_retried() {
    // Accepts, reads nothing, answers nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let t = target(Channel::Webhook { url, format: WebhookFormat::Json }, &[EventKind::Failure]);
    let mut n = quick(Notifier::new(None));
    n.limits.http_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let out = n.send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].ok, out[0].attempts), (false, 4), "{out:?}");
    assert!(out[0].error.as_deref().unwrap().contains("no answer within 0.3 s"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn backoff_is_full_jitter_under_a_doubling_ceiling() {
    let base = Duration::from_millis(500);
    for attempt in 1..=3 {
        let ceiling = base * (1 << (attempt - 1));
        let waits: Vec<Duration> = (0..64).map(|_| webhook::backoff(base, attempt)).collect();
        assert!(waits.iter().all(|w| *w <= ceiling), "{attempt}: {waits:?}");
        // 64 draws all in one half of the range: 2^-63.
        assert!(waits.iter().any(|w| *w > ceiling / 2), "{attempt}: {waits:?}");
        assert!(waits.iter().any(|w| *w < ceiling / 2), "{attempt}: {waits:?}");
    }
}

#[test]
fn errors_are_scrubbed_of_the_url_secrets() {
    let url = "https://bot:pa55@hooks.example.com/services/T0/B0/XyZ?token=abc";
    let text =
        format!("error sending request for url ({url}); 404 Cannot POST /services/T0/B0/XyZ?token=abc");
    let out = webhook::scrub(&text, url);
    assert_eq!(out, "error sending request for url (https://hooks.example.com/…); 404 Cannot POST /…");
}

// ---------------------------------------------------------------- pings

#[tokio::test]
async fn pings_hit_the_url_of_each_kind() {
    let rx = Receiver::start(&[200]);
    let t = target(Channel::Ping { url: format!("{}/ping/uuid-secret", rx.base) }, &EventKind::ALL);
    let (logs, _guard) = Logs::capture();
    let n = Notifier::new(None);
    let mut out = Vec::new();
    for kind in EventKind::ALL {
        out.extend(n.send(&event(kind), &[&t]).await);
    }
    assert!(out.iter().all(|d| d.ok && d.attempts == 1 && d.channel == format!("ping {}/…", rx.base)));
    let reqs = rx.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/ping/uuid-secret/start",
            "/ping/uuid-secret",
            "/ping/uuid-secret/fail",
            "/ping/uuid-secret/fail",
            "/ping/uuid-secret/log"
        ]
    );
    assert!(reqs.iter().all(|r| r.method == "POST"));
    assert_eq!(reqs[0].header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(String::from_utf8_lossy(&reqs[0].body), "backup of home: start");
    assert_eq!(String::from_utf8_lossy(&reqs[2].body), "backup of home: failure\n\nnas: connection refused");
    assert_no_secret(&out, &logs, &["uuid-secret"]);
}

#[test]
fn ping_suffix_goes_before_the_query() {
    assert_eq!(
        ping::url_for("https://hc.example/p/k/slug?create=1", EventKind::Start),
        "https://hc.example/p/k/slug/start?create=1"
    );
    assert_eq!(ping::url_for("https://hc.example/uuid/", EventKind::Missed), "https://hc.example/uuid/log");
    assert_eq!(ping::url_for("https://hc.example/uuid", EventKind::Success), "https://hc.example/uuid");
}

#[tokio::test]
async fn failing_ping_is_retried_and_masked() {
    let rx = Receiver::start(&[503, 200]);
    let t = target(Channel::Ping { url: format!("{}/uuid-secret", rx.base) }, &[EventKind::Damage]);
    let out = quick(Notifier::new(None)).send(&event(EventKind::Damage), &[&t]).await;
    assert_eq!((out[0].ok, out[0].attempts), (true, 2), "{out:?}");
    assert_eq!(rx.requests()[1].path, "/uuid-secret/fail");
}

// ---------------------------------------------------------------- commands

#[tokio::test]
async fn command_gets_the_event_in_env_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let vars = "EVENT|JOB|TASK|RESULT|RUN_ID|SUMMARY|ERROR";
    let command = format!("env | grep -E '^ARCA_({vars})=' | sort > '{d}/env' && cat > '{d}/stdin'");
    let t = target(Channel::Command { command }, &EventKind::ALL);
    let n = Notifier::new(None);

    let ev = event(EventKind::Failure);
    let out = n.send(&ev, &[&t]).await;
    assert_eq!(out, [Delivery { channel: "command".into(), ok: true, attempts: 1, error: None }]);
    let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        [
            "ARCA_ERROR=nas: connection refused",
            "ARCA_EVENT=failure",
            "ARCA_JOB=home",
            "ARCA_RESULT=failure",
            "ARCA_RUN_ID=42",
            "ARCA_SUMMARY=backup of home: failure",
            "ARCA_TASK=backup",
        ]
    );
    let stdin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("stdin")).unwrap()).unwrap();
    assert_eq!(stdin, serde_json::to_value(&ev).unwrap());

    // No run, no result, no error: those variables are absent.
    let out = n.send(&event(EventKind::Missed), &[&t]).await;
    assert!(out[0].ok, "{out:?}");
    let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        ["ARCA_EVENT=missed", "ARCA_JOB=home", "ARCA_SUMMARY=backup of home: missed", "ARCA_TASK=backup"]
    );
}

#[tokio::test]
async fn command_exiting_3_is_a_failed_delivery() {
    let t =
        target(Channel::Command { command: "TOKEN=cmd-secret-789; exit 3".into() }, &[EventKind::Failure]);
    let (logs, _guard) = Logs::capture();
    let out = Notifier::new(None).send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].channel.as_str(), out[0].ok, out[0].attempts), ("command", false, 1));
    assert!(out[0].error.as_deref().unwrap().contains("exit status: 3"), "{out:?}");
    assert!(logs.text().contains("exit status: 3"), "{}", logs.text());
    assert_no_secret(&out, &logs, &["cmd-secret-789"]);
}

#[tokio::test]
async fn command_is_killed_after_its_time_limit_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let command = format!("sleep 30 & echo $! > '{}'; wait", pid_file.display());
    let t = target(Channel::Command { command }, &[EventKind::Failure]);
    let mut n = Notifier::new(None);
    n.limits.command_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let out = n.send(&event(EventKind::Failure), &[&t]).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!out[0].ok);
    assert!(out[0].error.as_deref().unwrap().contains("killed"), "{out:?}");
    // The sleep started in the background is gone too (or a zombie
    // waiting for its new parent).
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(&stat) {
            Err(_) => break,
            Ok(s) if s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')) => break,
            Ok(s) => assert!(Instant::now() < deadline, "the background sleep still runs: {s}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- email

#[test]
fn mail_body_lists_at_most_100_damaged_files() {
    let body = email::body(&event(EventKind::Damage));
    assert!(body.starts_with("backup of home: damage\n\nError: nas: connection refused\n"), "{body}");
    assert!(body.contains("\n  nas: failed\n  offsite: succeeded, snapshot 1a2b3c4d\n"), "{body}");
    assert!(body.contains("Damaged or missing files (105):\n  /home/a/file-000\n"), "{body}");
    assert!(body.contains("/home/a/file-099\n  and 5 more\n"), "{body}");
    assert!(!body.contains("file-100"), "{body}");
    assert!(
        body.contains(
            "Job: home (backup, strategy incremental)\nRun: 42\nTime: 2026-03-01T02:00:05Z\nHost: pc1\n"
        ),
        "{body}"
    );
}

#[test]
fn smtp_password_is_the_files_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret pw\r\nsecond line\n").unwrap();
    assert_eq!(email::read_password(&PasswordSource::File(file.clone())).unwrap(), "s3cret pw");
    std::fs::write(&file, "only-line").unwrap();
    assert_eq!(email::read_password(&PasswordSource::File(file.clone())).unwrap(), "only-line");
    std::fs::write(&file, "\nlater").unwrap();
    assert!(email::read_password(&PasswordSource::File(file)).unwrap_err().contains("empty"));
    let missing = dir.path().join("missing");
    assert!(email::read_password(&PasswordSource::File(missing)).unwrap_err().contains("missing"));
    assert_eq!(
        email::read_password(&PasswordSource::Env("PATH".into())).unwrap(),
        std::env::var("PATH").unwrap()
    );
    assert!(email::read_password(&PasswordSource::Env("ARCA_TEST_NO_SUCH_VAR_X".into())).is_err());
    assert!(email::read_password(&PasswordSource::Command("echo pw".into())).is_err());
}

#[tokio::test]
async fn email_without_smtp_fails() {
    let t = target(Channel::Email { to: "ops@example.org".into() }, &[EventKind::Failure]);
    let out = Notifier::new(None).send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].channel.as_str(), out[0].ok, out[0].attempts), ("email ops@example.org", false, 0));
    assert!(out[0].error.as_deref().unwrap().contains("[daemon.smtp]"));
}

/// `$ARCA_TEST_AIOSMTPD` (scripts/test.sh installs it), or why not: a
/// failure where the suite must run in full, else a skip, said.
fn aiosmtpd(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ARCA_TEST_AIOSMTPD").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let why = "ARCA_TEST_AIOSMTPD is not set (scripts/test.sh installs aiosmtpd and sets it)";
    let required =
        ["ARCA_TEST_REQUIRE_ROOT", "CI"].iter().any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if required {
        panic!("{test}: {why}; ARCA_TEST_REQUIRE_ROOT or CI is set, so this is a failure, not a skip");
    }
    eprintln!("SKIP {test}: {why}");
    println!("SKIP {test}: {why}");
    None
}

/// A mail server on loopback, killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl SmtpSink {
    /// Runs `program args…` (which listen on `port`) until it accepts
    /// connections.
    fn start(mut cmd: std::process::Command, port: u16, maildir: PathBuf) -> SmtpSink {
        let child = cmd.stdin(Stdio::null()).spawn().expect("start the SMTP server");
        let mut sink = SmtpSink { child, port, maildir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = sink.child.try_wait().unwrap() {
                panic!("the SMTP server exited: {status}");
            }
            assert!(Instant::now() < deadline, "the SMTP server does not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        sink
    }

    fn smtp(&self, username: Option<&str>, password: Option<PasswordSource>) -> Smtp {
        Smtp {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: SmtpTls::None,
            from: "arca@example.org".into(),
            username: username.map(str::to_string),
            password,
        }
    }

    /// The mails it received, as text.
    fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mail's header `name` (unfolded) and its body.
fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let head = mail.split("\n\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server() {
    let Some(aiosmtpd) = aiosmtpd("email_reaches_a_real_smtp_server") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (port, maildir) = (closed_port(), dir.path().join("maildir"));
    let mut cmd = std::process::Command::new(&aiosmtpd);
    cmd.args(["-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"]).arg(&maildir);
    let sink = SmtpSink::start(cmd, port, maildir);

    let t = target(Channel::Email { to: "ops@example.org".into() }, &[EventKind::Damage]);
    let n = Notifier::new(Some(sink.smtp(None, None)));
    let out = n.send(&event(EventKind::Damage), &[&t]).await;
    assert_eq!(
        out,
        [Delivery { channel: "email ops@example.org".into(), ok: true, attempts: 1, error: None }]
    );

    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = mails[0].replace("\r\n", "\n");
    assert_eq!(header(&mail, "To"), Some("ops@example.org"), "{mail}");
    assert_eq!(header(&mail, "From"), Some("arca@example.org"), "{mail}");
    assert_eq!(header(&mail, "Subject"), Some("arca: home damage"), "{mail}");
    let body = mail.split_once("\n\n").unwrap().1;
    assert_eq!(body.trim_end(), email::body(&event(EventKind::Damage)).trim_end(), "{mail}");
    assert!(body.contains("and 5 more"));
}

/// aiosmtpd with logins (its command line cannot ask for them): accepts
/// the password given, records every login.
const AUTH_SERVER: &str = r#"
import logging, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

# Not its notice that Session.login_data is deprecated, on every login.
logging.getLogger("mail.log").setLevel(logging.ERROR)
port, maildir, logins, expected = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].encode()

def authenticator(server, session, envelope, mechanism, data):
    if not isinstance(data, LoginPassword):
        return AuthResult(success=False, handled=False)
    with open(logins, "ab") as f:
        f.write(data.login + b"\t" + data.password + b"\n")
    # handled=False: aiosmtpd answers 535 (else nothing: it would wait)
    return AuthResult(success=data.password == expected, handled=False)

Controller(Mailbox(maildir), hostname="127.0.0.1", port=port, authenticator=authenticator,
           auth_require_tls=False).start()
while True:
    time.sleep(3600)
"#;

/// The Python that runs `aiosmtpd` (its `#!` line).
fn python_of(script: &Path) -> PathBuf {
    let text = std::fs::read_to_string(script).unwrap_or_default();
    match text.lines().next().and_then(|l| l.strip_prefix("#!")) {
        Some(p) if !p.contains(' ') => p.trim().into(),
        _ => script.with_file_name("python3"),
    }
}

#[tokio::test]
async fn email_logs_in_with_the_password_files_first_line() {
    let test = "email_logs_in_with_the_password_files_first_line";
    let Some(aiosmtpd) = aiosmtpd(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (port, maildir, logins) = (closed_port(), dir.path().join("maildir"), dir.path().join("logins"));
    let script = dir.path().join("auth_server.py");
    std::fs::write(&script, AUTH_SERVER).unwrap();
    let mut cmd = std::process::Command::new(python_of(&aiosmtpd));
    cmd.env("PYTHONWARNINGS", "ignore")
        .arg(&script)
        .arg(port.to_string())
        .arg(&maildir)
        .arg(&logins)
        .arg("right-pw-123");
    let sink = SmtpSink::start(cmd, port, maildir);
    let t = target(Channel::Email { to: "ops@example.org".into() }, &[EventKind::Failure]);
    let (logs, _guard) = Logs::capture();

    let right = dir.path().join("right");
    std::fs::write(&right, "right-pw-123\r\nnot this\n").unwrap();
    let n = Notifier::new(Some(sink.smtp(Some("arca-user"), Some(PasswordSource::File(right)))));
    let out = n.send(&event(EventKind::Failure), &[&t]).await;
    assert!(out[0].ok, "{out:?}");
    assert_eq!(std::fs::read_to_string(&logins).unwrap(), "arca-user\tright-pw-123\n");
    assert_eq!(sink.mails().len(), 1);

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "wrong-pw-456\n").unwrap();
    let n = Notifier::new(Some(sink.smtp(Some("arca-user"), Some(PasswordSource::File(wrong)))));
    let out = n.send(&event(EventKind::Failure), &[&t]).await;
    assert_eq!((out[0].ok, out[0].attempts), (false, 1), "{out:?}");
    assert!(out[0].error.as_deref().unwrap().contains("535"), "{out:?}");
    assert_eq!(sink.mails().len(), 1);
    assert!(logs.text().contains("email ops@example.org"), "{}", logs.text());
    assert_no_secret(&out, &logs, &["wrong-pw-456", "right-pw-123"]);
}

#[test]
fn sending_can_be_spawned() {
    // The daemon runs it on a task of its own (tokio::spawn needs Send).
    fn is_send<T: Send>(_: T) {}
    let (n, ev) = (Notifier::new(None), event(EventKind::Start));
    is_send(n.send(&ev, &[]));
    fn is_shared<T: Send + Sync>() {}
    is_shared::<Notifier>();
}

#[tokio::test]
async fn all_targets_are_sent_to_at_once() {
    // Each command waits for the other's file: one at a time, they would
    // both time out.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let wait_for = |mine: &str, other: &str| {
        format!("touch '{d}/{mine}'; i=0; while [ ! -e '{d}/{other}' ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; [ -e '{d}/{other}' ]")
    };
    let a = target(Channel::Command { command: wait_for("a", "b") }, &[EventKind::Failure]);
    let b = target(Channel::Command { command: wait_for("b", "a") }, &[EventKind::Failure]);
    let out = Notifier::new(None).send(&event(EventKind::Failure), &[&a, &b]).await;
    assert!(out.iter().all(|d| d.ok), "{out:?}");
}
