//! A real `arca daemon` for the tests that drive one (the daemon's API,
//! the dashboard): started on an ephemeral port, its address read from its
//! log, its token from the state folder; SIGKILLed on drop if still
//! running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{jarr, kill_after, without_repo, Arca};

/// A running `arca daemon`; SIGKILLed on drop if still running.
pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (or https).
    pub url: String,
    /// The API token.
    pub token: String,
    log: PathBuf,
    /// A client for the daemon's API.
    pub http: reqwest::blocking::Client,
}

impl Daemon {
    /// Starts `arca --config CONFIG daemon --listen 127.0.0.1:0` with its
    /// state in `state`, and waits for the line naming its address.
    pub fn start(arca: &Arca, state: &Path, log: &Path) -> Daemon {
        Daemon::start_with(arca, state, log, &[], reqwest::blocking::Client::builder())
    }

    /// With more arguments, and an HTTP client of the caller's (one that
    /// trusts a test certificate, say).
    pub fn start_with(
        arca: &Arca,
        state: &Path,
        log: &Path,
        extra: &[&str],
        client: reqwest::blocking::ClientBuilder,
    ) -> Daemon {
        let mut args = vec!["daemon", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let mut cmd = without_repo(arca.command(false, &args));
        cmd.env("ARCA_STATE_DIR", state).env_remove("ARCA_PASSWORD");
        let err = fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        let child = cmd.spawn().expect("spawn arca daemon");
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if let Some(at) = text.find("listening on http") {
                let rest = &text[at + "listening on ".len()..];
                break rest.split(|c: char| c.is_whitespace() || c == '"').next().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "the daemon did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let token = fs::read_to_string(state.join("daemon.token")).unwrap().trim().to_string();
        let http = client.timeout(Duration::from_secs(120)).build().unwrap();
        Daemon { child: Some(child), url, token, log: log.to_path_buf(), http }
    }

    pub fn send(&self, method: &str, path: &str, body: Option<Value>, token: Option<&str>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{method} {path}: {e:?}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.send("GET", path, None, Some(&self.token));
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    #[track_caller]
    pub fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.send("POST", path, Some(body), Some(&self.token));
        assert_eq!(status, 202, "POST {path}: {v}");
        v
    }

    /// Waits for run `id` to end; its document.
    #[track_caller]
    pub fn wait_run(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.get(&format!("/api/runs/{id}"));
            if matches!(v["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
                return v;
            }
            assert!(Instant::now() < deadline, "run {id} did not end: {v}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The runs in the history, oldest first.
    pub fn runs(&self) -> Vec<Value> {
        let mut runs = jarr(&self.get("/api/runs?limit=1000"), "runs").clone();
        runs.reverse();
        runs
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    }

    /// SIGTERM, and its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().unwrap();
        let status = kill_after(&mut child, Duration::from_secs(60));
        assert!(status.is_some(), "the daemon did not stop within 60 s of SIGTERM:\n{}", self.log());
        status.unwrap().code()
    }

    /// Waits until the log holds `text`.
    #[track_caller]
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "{text:?} is not in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
