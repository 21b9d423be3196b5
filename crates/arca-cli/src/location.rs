//! Turning `--repo` into a backend.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use arca_backend::{Backend, LocalBackend, S3Backend, S3Config};

/// Where the repository is, and whether it is the implicit default one.
pub struct Location {
    pub backend: Arc<dyn Backend>,
    pub is_default: bool,
    /// The local folder, when the repository is on local disk.
    pub local_path: Option<PathBuf>,
}

pub fn default_repo_path() -> Result<PathBuf> {
    match dirs::data_dir() {
        Some(d) => Ok(d.join("arca").join("repo")),
        None => bail!("no data directory for the default repository (is HOME set?): give --repo"),
    }
}

/// The locations arca reads, for messages.
const FORMS: &str = "locations: a path, file:///path or s3://bucket/prefix";

/// The scheme of `s` when it is another tool's way to write a location
/// (restic's `s3:bucket/path`, `sftp:host:/path`, `rest:`…, or a URL
/// scheme without `//`). Taken as a local path, `s3:bucket/x` would create
/// a folder named `s3:bucket` and report success.
fn other_tools_scheme(s: &str) -> Option<&'static str> {
    const KNOWN: [&str; 17] = [
        "s3", "sftp", "ssh", "rest", "b2", "azure", "gs", "gcs", "swift", "rclone", "http", "https", "ftp",
        "file", "local", "smb", "webdav",
    ];
    let (scheme, _) = s.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    KNOWN.into_iter().find(|k| *k == scheme)
}

pub fn resolve(repo: Option<&str>) -> Result<Location> {
    let (path, is_default) = match repo {
        None => (default_repo_path()?, true),
        Some(s) if s.starts_with("s3://") => {
            let config = S3Config::from_url_and_env(s).map_err(anyhow::Error::msg)?;
            let backend = S3Backend::new(config)?;
            return Ok(Location { backend: Arc::new(backend), is_default: false, local_path: None });
        }
        Some(s) if s.starts_with("file://") => (PathBuf::from(&s["file://".len()..]), false),
        Some(s) if other_tools_scheme(s).is_some() => {
            let (scheme, rest) = s.split_once(':').unwrap_or((s, ""));
            let guess = match other_tools_scheme(s) {
                Some("s3") => format!("; did you mean s3://{}?", rest.trim_start_matches('/')),
                Some("file" | "local") => format!("; did you mean file:///{}?", rest.trim_start_matches('/')),
                _ => String::new(),
            };
            bail!(
                "repository {s}: {scheme}: is not a location arca reads{guess} ({FORMS}; a local folder \
                 whose name has a colon: ./{s})"
            )
        }
        Some(s) if s.contains("://") => {
            bail!("repository {s}: unknown URL scheme ({FORMS})")
        }
        Some("") => bail!("--repo is empty"),
        Some(s) => (PathBuf::from(s), false),
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(Location { backend: Arc::new(LocalBackend::new(path.clone())), is_default, local_path: Some(path) })
}
