//! A repository served by `arca serve` over HTTP(S):
//! `rest:http(s)://[user[:password]@]host:port/NAME`.
//!
//! The protocol is arca's own, one request per backend call, objects at
//! the paths [`FileKind::path`] gives, below `/NAME/`:
//! - `HEAD`, `GET` (with `Range: bytes=a-b`), `PUT` (with `If-None-Match: *`
//!   for [`Backend::put_new`]) and `DELETE` on an object;
//! - `GET /NAME/?list=KIND` and `?misplaced=KIND`: JSON listings;
//! - `POST /NAME/?create`; `GET` and `DELETE /NAME/?temporaries`.
//!
//! The server stores each `PUT` as the local backend does (temporary
//! file, fsync, rename) and answers only once it is durable, so an
//! acknowledged object survives the server's crash. Requests run on the
//! backend's own runtime ([`crate::rt`]); temporary failures (no answer, a
//! 5xx) are tried again with backoff.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Backend, BackendError, Entry, ErrorKind, FileKind, Result};

/// Where the repository is and how to log in. The password is never shown.
#[derive(Clone, Default)]
pub struct RestConfig {
    /// `http(s)://host:port/NAME`, without credentials.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A PEM file of certificates to trust besides the usual roots (a
    /// server with a certificate of its own).
    pub ca_cert: Option<PathBuf>,
    pub timeout: Duration,
    /// Attempts for a request that fails with a temporary error.
    pub retries: usize,
}

impl std::fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestConfig").field("url", &self.url).field("user", &self.user).finish_non_exhaustive()
    }
}

impl RestConfig {
    /// Parses `rest:http(s)://[user[:password]@]host[:port]/NAME`; the user
    /// and password may instead come from `ARCA_REST_USER` and
    /// `ARCA_REST_PASSWORD`, a certificate to trust from `ARCA_REST_CACERT`,
    /// all read through `setting`.
    pub fn from_url(
        s: &str,
        setting: &dyn Fn(&str) -> Option<String>,
    ) -> std::result::Result<RestConfig, String> {
        let url = s.strip_prefix("rest:").ok_or_else(|| format!("{s}: not a rest: location"))?;
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(sch, _)| *sch == "http" || *sch == "https")
            .ok_or_else(|| format!("repository {s}: use rest:http://host:port/NAME or rest:https://…"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let name = path.trim_end_matches('/');
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!(
                "repository {}: give one repository name after the server (rest:{scheme}://host:port/NAME)",
                shown(scheme, authority, name)
            ));
        }
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(format!("repository rest:{scheme}://…/{name}: no server named"));
        }
        let (mut user, mut password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(decode(u)), Some(decode(p))),
                None => (Some(decode(u)), None),
            },
            None => (None, None),
        };
        user = user.or_else(|| setting("ARCA_REST_USER").filter(|v| !v.is_empty()));
        password = password.or_else(|| setting("ARCA_REST_PASSWORD").filter(|v| !v.is_empty()));
        Ok(RestConfig {
            url: format!("{scheme}://{host}/{name}"),
            user,
            password,
            ca_cert: setting("ARCA_REST_CACERT").filter(|v| !v.is_empty()).map(PathBuf::from),
            timeout: Duration::from_secs(120),
            retries: 4,
        })
    }

    /// The location as messages show it: with the user, never the password.
    pub fn describe(&self) -> String {
        match (&self.user, self.url.split_once("://")) {
            (Some(u), Some((scheme, rest))) => format!("rest:{scheme}://{u}@{rest}"),
            _ => format!("rest:{}", self.url),
        }
    }
}

fn shown(scheme: &str, authority: &str, name: &str) -> String {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("rest:{scheme}://{host}/{name}")
}

/// Percent-decoding of a URL's user or password.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct RestBackend {
    client: reqwest::Client,
    runtime: crate::rt::BackgroundRuntime,
    config: RestConfig,
}

/// One answer: status, body, and the length the server declared.
struct Answer {
    status: u16,
    body: Vec<u8>,
    length: Option<u64>,
}

#[derive(serde::Deserialize)]
struct Listed {
    name: String,
    size: u64,
}

impl RestBackend {
    pub fn new(config: RestConfig) -> Result<RestBackend> {
        let fail = |e: String| BackendError {
            kind: ErrorKind::Other,
            object: config.describe(),
            action: "configuring",
            temporary: false,
            source: io::Error::other(e),
        };
        let mut builder = reqwest::Client::builder().timeout(config.timeout).pool_max_idle_per_host(16);
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| fail(format!("{}: not a PEM certificate: {e}", path.display())))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| fail(e.to_string()))?;
        let runtime = crate::rt::BackgroundRuntime::new("arca-rest").map_err(|e| fail(e.to_string()))?;
        Ok(RestBackend { client, runtime, config })
    }

    fn object(&self, path: &str) -> String {
        format!("{}/{path}", self.config.describe())
    }

    /// One request, tried again on a temporary failure. `path` is below
    /// the repository (`keys/<id>`, or empty for the repository itself).
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        headers: &[(&'static str, String)],
        body: Option<Vec<u8>>,
        action: &'static str,
    ) -> Result<Answer> {
        let url = format!("{}/{path}{query}", self.config.url);
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.client.request(method.clone(), &url);
            if let Some(u) = &self.config.user {
                req = req.basic_auth(u, self.config.password.as_ref());
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let answer = self.runtime.run(async move {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let length = resp
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let body = resp.bytes().await?.to_vec();
                Ok::<_, reqwest::Error>(Answer { status, body, length })
            });
            let failure = match answer {
                Some(Ok(a)) if a.status < 500 => return Ok(a),
                Some(Ok(a)) => {
                    format!("the server answered {}: {}", a.status, String::from_utf8_lossy(&a.body).trim())
                }
                // No answer at all (refused, reset, timed out): the server
                // may be back in a moment.
                Some(Err(e)) => format!("no answer from the server: {}", root_cause(&e)),
                None => "the request stopped before answering".to_string(),
            };
            if attempt > self.config.retries {
                return Err(BackendError {
                    kind: ErrorKind::Other,
                    object: self.object(path),
                    action,
                    temporary: true,
                    source: io::Error::other(failure),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// The error an answer other than success means.
    fn refused(&self, path: &str, action: &'static str, a: &Answer) -> BackendError {
        let said = String::from_utf8_lossy(&a.body).trim().to_string();
        let (kind, why) = match a.status {
            401 => (
                ErrorKind::PermissionDenied,
                "the server refused the login: check the user and password (in the URL, or \
                 ARCA_REST_USER and ARCA_REST_PASSWORD)"
                    .to_string(),
            ),
            403 => (ErrorKind::PermissionDenied, said),
            404 => (ErrorKind::NotFound, said),
            412 => (ErrorKind::AlreadyExists, said),
            416 => (ErrorKind::ShortObject, said),
            507 => (ErrorKind::NoSpace, said),
            s => (ErrorKind::Other, format!("the server answered {s}: {said}")),
        };
        let why = if why.is_empty() { format!("the server answered {}", a.status) } else { why };
        BackendError {
            kind,
            object: self.object(path),
            action,
            temporary: false,
            source: io::Error::other(why),
        }
    }

    /// A read that found the object shorter than asked.
    fn short(&self, path: &str, why: String) -> BackendError {
        BackendError {
            kind: ErrorKind::ShortObject,
            object: self.object(path),
            action: "reading",
            temporary: false,
            source: io::Error::new(io::ErrorKind::UnexpectedEof, why),
        }
    }

    fn expect(&self, a: Answer, path: &str, action: &'static str) -> Result<Vec<u8>> {
        if (200..300).contains(&a.status) {
            Ok(a.body)
        } else {
            Err(self.refused(path, action, &a))
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, query: &str, action: &'static str) -> Result<T> {
        let a = self.request(reqwest::Method::GET, "", query, &[], None, action)?;
        let body = self.expect(a, "", action)?;
        serde_json::from_slice(&body).map_err(|e| BackendError {
            kind: ErrorKind::Other,
            object: self.config.describe(),
            action,
            temporary: false,
            source: io::Error::other(format!("the server's answer is not what arca serve sends: {e}")),
        })
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl Backend for RestBackend {
    fn location(&self) -> String {
        self.config.describe()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn create(&self) -> Result<()> {
        let a = self.request(reqwest::Method::POST, "", "?create", &[], None, "creating")?;
        self.expect(a, "", "creating").map(|_| ())
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        let p = kind.path(name);
        let a = self.request(reqwest::Method::HEAD, &p, "", &[], None, "checking")?;
        match a.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.refused(&p, "checking", &a)),
        }
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let p = kind.path(name);
        let a = self.request(reqwest::Method::PUT, &p, "", &[], Some(data.to_vec()), "writing")?;
        self.expect(a, &p, "writing").map(|_| ())
    }

    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let p = kind.path(name);
        let headers = [("if-none-match", "*".to_string())];
        let a = self.request(reqwest::Method::PUT, &p, "", &headers, Some(data.to_vec()), "writing")?;
        self.expect(a, &p, "writing").map(|_| ())
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let p = kind.path(name);
        let a = self.request(reqwest::Method::GET, &p, "", &[], None, "reading")?;
        self.expect(a, &p, "reading")
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let p = kind.path(name);
        if length == 0 {
            // A range of nothing: the object must exist and reach `offset`.
            let a = self.request(reqwest::Method::HEAD, &p, "", &[], None, "reading")?;
            if !(200..300).contains(&a.status) {
                return Err(self.refused(&p, "reading", &a));
            }
            if a.length.unwrap_or(0) < offset {
                return Err(self.short(&p, format!("the object ends before {offset}")));
            }
            return Ok(Vec::new());
        }
        let range = [("range", format!("bytes={offset}-{}", offset + length - 1))];
        let a = self.request(reqwest::Method::GET, &p, "", &range, None, "reading")?;
        let body = self.expect(a, &p, "reading")?;
        if body.len() as u64 != length {
            return Err(self.short(&p, format!("{length} bytes at {offset} asked, {} received", body.len())));
        }
        Ok(body)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<Entry>> {
        let listed: Vec<Listed> = self.json(&format!("?list={}", kind.slug()), "listing")?;
        Ok(listed.into_iter().map(|l| Entry { name: l.name, size: l.size }).collect())
    }

    fn misplaced(&self, kind: FileKind) -> Result<Vec<String>> {
        self.json(&format!("?misplaced={}", kind.slug()), "listing")
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let p = kind.path(name);
        let a = self.request(reqwest::Method::DELETE, &p, "", &[], None, "deleting")?;
        match a.status {
            200..=299 | 404 => Ok(()),
            _ => Err(self.refused(&p, "deleting", &a)),
        }
    }

    fn remove_temporaries(&self) -> Result<u64> {
        let a = self.request(reqwest::Method::DELETE, "", "?temporaries", &[], None, "deleting")?;
        let body = self.expect(a, "", "deleting")?;
        Ok(String::from_utf8_lossy(&body).trim().parse().unwrap_or(0))
    }

    fn temporaries_size(&self) -> Result<u64> {
        self.json("?temporaries", "listing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_read_and_the_password_is_never_shown() {
        let none = |_: &str| None;
        let c = RestConfig::from_url("rest:https://alice:s%40cret@backup.example.com:8000/laptop", &none)
            .unwrap();
        assert_eq!(c.url, "https://backup.example.com:8000/laptop");
        assert_eq!((c.user.as_deref(), c.password.as_deref()), (Some("alice"), Some("s@cret")));
        assert_eq!(c.describe(), "rest:https://alice@backup.example.com:8000/laptop");
        assert!(!format!("{c:?}").contains("cret"));
        let env = |k: &str| match k {
            "ARCA_REST_USER" => Some("bob".to_string()),
            "ARCA_REST_PASSWORD" => Some("pw".to_string()),
            _ => None,
        };
        let c = RestConfig::from_url("rest:http://127.0.0.1:8000/bob/", &env).unwrap();
        assert_eq!(
            (c.url.as_str(), c.user.as_deref(), c.password.as_deref()),
            ("http://127.0.0.1:8000/bob", Some("bob"), Some("pw"))
        );
        for bad in ["rest:ftp://h/x", "rest:http://h", "rest:http://h/a/b", "rest:http:///x", "rest:h:/x"] {
            assert!(RestConfig::from_url(bad, &none).is_err(), "{bad}");
        }
        let e = RestConfig::from_url("rest:http://alice:secret@h/a/b", &none).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
