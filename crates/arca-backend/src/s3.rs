//! S3-compatible object storage through OpenDAL.
//!
//! Retries with exponential backoff and jitter, timeouts and a concurrency
//! limit are OpenDAL layers, not code of ours. S3 `PUT` is atomic: an object
//! is either absent or complete, so `put` needs no temporary object.
//!
//! The engines are synchronous; this backend runs its requests on a small
//! tokio runtime of its own ([`crate::rt`]) and waits for each on a
//! channel, never with `block_on` on the calling thread.

use std::future::Future;
use std::io;
use std::time::Duration;

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{services, EntryMode, Operator};

use crate::{Backend, BackendError, Entry, ErrorKind, FileKind, Result};

/// Where and how to reach the bucket. Credentials are never displayed.
#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// e.g. `http://127.0.0.1:3900`; empty for AWS.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Use `bucket.host` addressing instead of `host/bucket` (path style is
    /// what self-hosted stores such as Garage and MinIO expect).
    pub virtual_host_style: bool,
    /// Parallel requests at most.
    pub concurrency: usize,
    /// Attempts for a request that fails with a temporary error.
    pub retries: usize,
    pub timeout: Duration,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Parses `s3://bucket/prefix`; endpoint, region and keys come from
    /// `AWS_ENDPOINT_URL`, `AWS_REGION` (or `AWS_DEFAULT_REGION`),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
    pub fn from_url_and_env(url: &str) -> std::result::Result<S3Config, String> {
        S3Config::from_url(url, &|k| std::env::var(k).ok())
    }

    /// Parses `s3://bucket/prefix`, taking the settings
    /// [`S3Config::from_url_and_env`] reads from the environment from
    /// `setting` instead (a configuration file's own values for one
    /// repository, falling back to the environment).
    pub fn from_url(
        url: &str,
        setting: &dyn Fn(&str) -> Option<String>,
    ) -> std::result::Result<S3Config, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url}: not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url}: no bucket name (use s3://bucket/prefix)"));
        }
        if !valid_bucket_name(bucket) {
            return Err(format!(
                "{url}: {bucket:?} is not a valid bucket name (3 to 63 lowercase letters, digits, dots and \
                 hyphens, starting and ending with a letter or digit)"
            ));
        }
        let env = |k: &str| setting(k).filter(|v| !v.is_empty());
        Ok(S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: env("AWS_ENDPOINT_URL").unwrap_or_default(),
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id: env("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            virtual_host_style: env("ARCA_S3_VIRTUAL_HOST_STYLE").is_some_and(|v| v == "1" || v == "true"),
            concurrency: 8,
            retries: 5,
            timeout: Duration::from_secs(60),
        })
    }

    /// The endpoint requests go to, for messages: the one configured, or
    /// AWS's for the region.
    pub fn endpoint_or_default(&self) -> String {
        if self.endpoint.is_empty() {
            format!("https://s3.{}.amazonaws.com", self.region)
        } else {
            self.endpoint.clone()
        }
    }

    /// `s3://bucket/prefix at endpoint`, for messages.
    pub fn describe(&self) -> String {
        let at = if self.endpoint.is_empty() { String::new() } else { format!(" at {}", self.endpoint) };
        if self.prefix.is_empty() {
            format!("s3://{}{at}", self.bucket)
        } else {
            format!("s3://{}/{}{at}", self.bucket, self.prefix)
        }
    }
}

/// S3's rules for bucket names (those every S3-compatible server accepts):
/// checked before any request, so that a typo is named as such rather than
/// as a failed request.
fn valid_bucket_name(b: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(b.chars().next())
        && edge(b.chars().last())
        && !b.contains("..")
        && b.parse::<std::net::Ipv4Addr>().is_err()
}

/// The innermost cause of an error (`connection refused`, a DNS failure),
/// without the layers of context around it.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = e.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

pub struct S3Backend {
    op: Operator,
    /// Where requests run.
    runtime: crate::rt::BackgroundRuntime,
    config: S3Config,
}

impl S3Backend {
    pub fn new(config: S3Config) -> Result<S3Backend> {
        let location = config.describe();
        let fail = |e: String| BackendError {
            kind: ErrorKind::Other,
            object: location.clone(),
            action: "configuring",
            temporary: false,
            source: io::Error::other(e),
        };
        let mut b = services::S3::default()
            .bucket(&config.bucket)
            .root(&format!("/{}", config.prefix))
            .region(&config.region)
            // Never ask the EC2 metadata address: it does not exist off AWS.
            .disable_ec2_metadata();
        if !config.endpoint.is_empty() {
            b = b.endpoint(&config.endpoint);
        }
        if !config.access_key_id.is_empty() {
            b = b.access_key_id(&config.access_key_id).secret_access_key(&config.secret_access_key);
        }
        if config.virtual_host_style {
            b = b.enable_virtual_host_style();
        }
        let op = Operator::new(b)
            .map_err(|e| fail(e.to_string()))?
            .layer(TimeoutLayer::new().with_timeout(config.timeout).with_io_timeout(config.timeout))
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_max_times(config.retries)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10)),
            )
            .layer(ConcurrentLimitLayer::new(config.concurrency.max(1)))
            .finish();
        let runtime = crate::rt::BackgroundRuntime::new("arca-s3").map_err(|e| fail(e.to_string()))?;
        Ok(S3Backend { op, runtime, config })
    }

    /// Runs a request on the backend's runtime and waits for its answer
    /// (see the module doc: safe from inside another runtime).
    fn run<T, F, Fut>(&self, request: F) -> opendal::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Operator) -> Fut,
        Fut: Future<Output = opendal::Result<T>> + Send + 'static,
    {
        self.runtime.run(request(self.op.clone())).unwrap_or_else(|| {
            Err(opendal::Error::new(
                opendal::ErrorKind::Unexpected,
                "the S3 request stopped before answering (its task panicked or the runtime stopped)",
            ))
        })
    }

    fn err(&self, action: &'static str, path: &str, e: opendal::Error) -> BackendError {
        let kind = match e.kind() {
            opendal::ErrorKind::NotFound => ErrorKind::NotFound,
            opendal::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            opendal::ErrorKind::RangeNotSatisfied => ErrorKind::ShortObject,
            // 412 to a PUT with If-None-Match: *.
            opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::AlreadyExists => {
                ErrorKind::AlreadyExists
            }
            _ => ErrorKind::Other,
        };
        // The message names the endpoint, bucket and key, never a credential.
        let text = e.to_string();
        // No answer at all (refused, reset, timed out): the endpoint may be
        // back later, even when the client's own retries gave up on it.
        let unanswered = text.contains("send http request");
        if text.contains("NoSuchBucket") {
            return BackendError {
                kind: ErrorKind::Other,
                object: self.config.describe(),
                action,
                temporary: false,
                source: io::Error::other(format!(
                    "bucket {:?} does not exist at this endpoint: create it (or fix the bucket name) first",
                    self.config.bucket
                )),
            };
        }
        let cause = match e.kind() {
            opendal::ErrorKind::PermissionDenied => {
                "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy"
                    .to_string()
            }
            opendal::ErrorKind::ConfigInvalid => format!("invalid configuration: {e}"),
            // The request never got an answer (refused, unresolvable, reset,
            // timed out): the HTTP client's context says nothing a person can
            // act on, its innermost cause does.
            _ if text.contains("send http request") => match root_cause(&e) {
                Some(root) => format!("cannot reach {}: {root}", self.config.endpoint_or_default()),
                None => text,
            },
            _ => text,
        };
        BackendError {
            kind,
            object: format!("{}/{}", self.config.describe(), path),
            action,
            temporary: e.is_temporary() || unanswered,
            source: io::Error::other(cause),
        }
    }
}

impl S3Backend {
    /// The objects of a kind at the key `get` reads, and the keys under its
    /// prefix that are anywhere else (`data/xx/<id>` whose `xx` is not the
    /// id's first two digits, or deeper keys): those are not listed, since
    /// no read under their name would find them.
    fn scan(&self, kind: FileKind) -> Result<(Vec<Entry>, Vec<String>)> {
        if matches!(kind, FileKind::Config | FileKind::Policy) {
            let name = kind.path("");
            let key = name.clone();
            return match self.run(|op| async move { op.stat(&key).await }) {
                Ok(m) => Ok((vec![Entry { name, size: m.content_length() }], Vec::new())),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok((Vec::new(), Vec::new())),
                Err(e) => Err(self.err("listing", &name, e)),
            };
        }
        let dir = format!("{}/", kind.dir());
        let key = dir.clone();
        let objects = self.run(|op| list_folders(op, key)).map_err(|e| self.err("listing", &dir, e))?;
        let (mut out, mut misplaced) = (Vec::new(), Vec::new());
        for Listed { key, size } in objects {
            let name = key.rsplit('/').next().unwrap_or(&key);
            if key == kind.path(name) {
                out.push(Entry { name: name.to_string(), size });
            } else {
                misplaced.push(key);
            }
        }
        Ok((out, misplaced))
    }
}

/// An object a listing found: its key below the repository's root, and its
/// size: a listing of a million packs keeps these, not OpenDAL's entries,
/// which carry every field of an object's metadata, several times as big.
struct Listed {
    key: String,
    size: u64,
}

fn listed(e: opendal::Entry) -> Listed {
    Listed { key: e.path().trim_start_matches('/').to_string(), size: e.metadata().content_length() }
}

/// Every object under `dir` (which ends in `/`), listed folder by folder,
/// [`LIST_IN_FLIGHT`] folders at once: `dir` first, then the folders it
/// holds (the 256 `data/xx/` of packs; none for the other kinds, which are
/// flat), then any below those. One recursive
/// listing pages through them 1,000 keys at a time, one request after the
/// other: for a repository of a million packs, a thousand round trips in
/// series on every backup.
async fn list_folders(op: Operator, dir: String) -> opendal::Result<Vec<Listed>> {
    use futures_util::{StreamExt, TryStreamExt};
    let (mut found, mut folders) = (Vec::new(), vec![dir]);
    while !folders.is_empty() {
        let round: Vec<(Vec<Listed>, Vec<String>)> = futures_util::stream::iter(std::mem::take(&mut folders))
            .map(|folder| {
                let op = op.clone();
                async move {
                    let (mut files, mut below) = (Vec::new(), Vec::new());
                    for e in op.list(&folder).await? {
                        let path = e.path().trim_start_matches('/');
                        // A listing may name the folder itself.
                        if path == folder {
                            continue;
                        }
                        if e.metadata().mode() == EntryMode::DIR {
                            below.push(path.to_string());
                        } else {
                            files.push(listed(e));
                        }
                    }
                    Ok::<_, opendal::Error>((files, below))
                }
            })
            .buffer_unordered(LIST_IN_FLIGHT)
            .try_collect()
            .await?;
        for (files, below) in round {
            found.extend(files);
            folders.extend(below);
        }
    }
    Ok(found)
}

/// Folders listed at once; the connection's concurrency limit (8 requests
/// by default) still applies.
const LIST_IN_FLIGHT: usize = 16;

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.config.describe()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn create(&self) -> Result<()> {
        // Object stores have no folders; check the bucket answers.
        self.run(|op| async move { op.list("config").await })
            .map(|_| ())
            .map_err(|e| self.err("listing", "", e))
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        let p = kind.path(name);
        let key = p.clone();
        self.run(|op| async move { op.exists(&key).await }).map_err(|e| self.err("checking", &p, e))
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let p = kind.path(name);
        let (key, data) = (p.clone(), data.to_vec());
        self.run(|op| async move { op.write(&key, data).await })
            .map(|_| ())
            .map_err(|e| self.err("writing", &p, e))
    }

    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let p = kind.path(name);
        let (key, data) = (p.clone(), data.to_vec());
        self.run(|op| async move { op.write_with(&key, data).if_not_exists(true).await })
            .map(|_| ())
            .map_err(|e| self.err("writing", &p, e))
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let p = kind.path(name);
        let key = p.clone();
        self.run(|op| async move { op.read(&key).await.map(|b| b.to_vec()) })
            .map_err(|e| self.err("reading", &p, e))
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let p = kind.path(name);
        let short = |what: String| BackendError {
            kind: ErrorKind::ShortObject,
            object: format!("{}/{}", self.config.describe(), p),
            action: "reading",
            temporary: false,
            source: io::Error::new(io::ErrorKind::UnexpectedEof, what),
        };
        let key = p.clone();
        let data = match self.run(|op| async move {
            op.read_with(&key).range(offset..offset + length).await.map(|b| b.to_vec())
        }) {
            Ok(b) => b,
            Err(e) => {
                // A range past the end fails in several ways (416, a short
                // body): tell a short object apart by its size.
                let key = p.clone();
                if let Ok(m) = self.run(|op| async move { op.stat(&key).await }) {
                    if m.content_length() < offset + length {
                        return Err(short(format!("{length} bytes at {offset} requested")));
                    }
                }
                return Err(self.err("reading", &p, e));
            }
        };
        if data.len() as u64 != length {
            return Err(short(format!("got {} of {length} bytes", data.len())));
        }
        Ok(data)
    }

    /// Streams the range into `buf`, reserved to its length first: reading
    /// a whole pack this way holds it once, where `get_range` holds the
    /// response's chunks and their copy at the same time.
    fn get_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let key = kind.path(name);
        let mut into = std::mem::take(buf);
        into.clear();
        into.reserve_exact(length as usize);
        let read = self.run(move |op| async move {
            op.reader(&key).await?.read_into(&mut into, offset..offset + length).await?;
            Ok(into)
        });
        match read {
            Ok(data) if data.len() as u64 == length => {
                *buf = data;
                Ok(())
            }
            // Short or failed: `get_range` tells which, as precisely as it can.
            _ => {
                *buf = self.get_range(kind, name, offset, length)?;
                Ok(())
            }
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<Entry>> {
        Ok(self.scan(kind)?.0)
    }

    fn misplaced(&self, kind: FileKind) -> Result<Vec<String>> {
        Ok(self.scan(kind)?.1)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let p = kind.path(name);
        // S3 DELETE of a missing key succeeds: idempotent as the trait asks.
        let key = p.clone();
        self.run(|op| async move { op.delete(&key).await }).map_err(|e| self.err("deleting", &p, e))
    }
}
