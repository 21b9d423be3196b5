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

pub fn resolve(repo: Option<&str>) -> Result<Location> {
    let (path, is_default) = match repo {
        None => (default_repo_path()?, true),
        Some(s) if s.starts_with("s3://") => {
            let config = S3Config::from_url_and_env(s).map_err(anyhow::Error::msg)?;
            let backend = S3Backend::new(config)?;
            return Ok(Location { backend: Arc::new(backend), is_default: false, local_path: None });
        }
        Some(s) if s.starts_with("file://") => (PathBuf::from(&s["file://".len()..]), false),
        Some(s) if s.contains("://") => {
            bail!("repository {s}: unknown URL scheme (use a path, file:// or s3://)")
        }
        Some("") => bail!("--repo is empty"),
        Some(s) => (PathBuf::from(s), false),
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(Location { backend: Arc::new(LocalBackend::new(path.clone())), is_default, local_path: Some(path) })
}
