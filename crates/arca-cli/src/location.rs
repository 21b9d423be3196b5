//! Turning `--repo` into a backend: the forms are arca-backend's
//! (`arca_backend::location`); the default repository is the CLI's.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use arca_backend::{Backend, LocalBackend};

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
    match repo {
        None => {
            let path = default_repo_path()?;
            let path = std::path::absolute(&path).unwrap_or(path);
            Ok(Location {
                backend: Arc::new(LocalBackend::new(path.clone())),
                is_default: true,
                local_path: Some(path),
            })
        }
        Some("") => bail!("--repo is empty"),
        Some(s) => {
            let l = arca_backend::location::open(s)?;
            Ok(Location { backend: l.backend, is_default: false, local_path: l.local_path })
        }
    }
}
