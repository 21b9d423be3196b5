//! The repositories `arca serve` keeps under its root folder: each one a
//! local backend (so every object is written to a temporary file, synced
//! and renamed before the client hears it is stored), with the rules of
//! append-only mode and the per-repository quota.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arca_backend::{Backend, BackendError, ErrorKind, FileKind, LocalBackend};

/// Why a request is refused: an HTTP status and a message for the client.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// What the client is told.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }
}

/// One repository under the root.
pub struct Repo {
    name: String,
    backend: LocalBackend,
    /// Bytes stored, counted once when first needed (quota only).
    used: OnceLock<AtomicU64>,
}

/// The repositories under the root, and the rules they are served by.
pub struct Store {
    root: PathBuf,
    /// Refuse deleting and replacing objects (locks excepted).
    pub append_only: bool,
    /// Bytes each repository may hold at most.
    pub quota: Option<u64>,
    repos: Mutex<HashMap<String, Arc<Repo>>>,
}

/// What a request may do beyond the rules: an admin may delete in
/// append-only mode (server-side forget and prune).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// A user of the repository: bound by append-only mode.
    User,
    /// An admin (`--admin`): every repository, and deleting too.
    Admin,
}

fn folder_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

impl Store {
    /// The repositories below `root`.
    pub fn new(root: PathBuf, append_only: bool, quota: Option<u64>) -> Store {
        Store { root, append_only, quota, repos: Mutex::new(HashMap::new()) }
    }

    /// The repository `name` (which need not exist yet).
    pub fn repo(&self, name: &str) -> Arc<Repo> {
        let mut repos = self.repos.lock().unwrap_or_else(|p| p.into_inner());
        repos
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Repo {
                    name: name.to_string(),
                    backend: LocalBackend::new(self.root.join(name)),
                    used: OnceLock::new(),
                })
            })
            .clone()
    }

    fn used<'a>(&self, repo: &'a Repo) -> &'a AtomicU64 {
        repo.used.get_or_init(|| AtomicU64::new(folder_size(repo.backend.root())))
    }

    /// The answer to a backend error, naming the object by its path in the
    /// repository (never the server's folders).
    fn failed(repo: &Repo, path: &str, e: BackendError) -> Refusal {
        let status = match e.kind {
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists => 412,
            ErrorKind::ShortObject => 416,
            ErrorKind::NoSpace => 507,
            ErrorKind::PermissionDenied | ErrorKind::ReadOnly => 403,
            ErrorKind::Other => 500,
        };
        let cause = std::error::Error::source(&e).map(|c| c.to_string()).unwrap_or_default();
        Refusal::new(status, format!("{} {}/{path}: {cause}", e.action, repo.name))
    }

    fn object(path: &str) -> Result<(FileKind, String), Refusal> {
        FileKind::parse_path(path)
            .ok_or_else(|| Refusal::new(404, format!("{path:?} is no object of a repository")))
    }

    /// Creates the repository's folders.
    pub fn create(&self, repo: &Repo) -> Result<(), Refusal> {
        repo.backend.create().map_err(|e| Store::failed(repo, "", e))
    }

    /// The size of an object, if it exists.
    pub fn size(&self, repo: &Repo, path: &str) -> Result<Option<u64>, Refusal> {
        let (kind, name) = Store::object(path)?;
        match std::fs::metadata(repo.backend.root().join(kind.path(&name))) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Refusal::new(500, format!("reading {}/{path}: {e}", repo.name))),
        }
    }

    /// An object, or `range` (offset, length) of it.
    pub fn get(&self, repo: &Repo, path: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, Refusal> {
        let (kind, name) = Store::object(path)?;
        match range {
            Some((offset, length)) => repo.backend.get_range(kind, &name, offset, length),
            None => repo.backend.get(kind, &name),
        }
        .map_err(|e| Store::failed(repo, path, e))
    }

    /// Stores an object; `new_only`: only if the name is free.
    pub fn put(
        &self,
        repo: &Repo,
        path: &str,
        data: &[u8],
        new_only: bool,
        power: Power,
    ) -> Result<(), Refusal> {
        let (kind, name) = Store::object(path)?;
        let old = self.size(repo, path)?;
        if let (Some(_), true, Power::User, false) = (old, self.append_only, power, kind == FileKind::Lock) {
            if new_only {
                return Err(Refusal::new(412, format!("{}/{path} exists", repo.name)));
            }
            // Content-addressed objects come again with the same bytes
            // (a retried upload): accepted, nothing changes.
            let same = repo.backend.get(kind, &name).map_err(|e| Store::failed(repo, path, e))? == data;
            if same {
                return Ok(());
            }
            return Err(Refusal::new(
                403,
                format!("{}/{path} exists and this server is append-only: it is not replaced", repo.name),
            ));
        }
        let reserved = data.len() as u64;
        if let Some(quota) = self.quota {
            let used = self.used(repo);
            let before = old.unwrap_or(0);
            let fits = used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u.saturating_sub(before) + reserved <= quota).then(|| u.saturating_sub(before) + reserved)
            });
            if let Err(u) = fits {
                return Err(Refusal::new(
                    507,
                    format!(
                        "repository {} is over its quota of {quota} bytes ({u} used, {reserved} more asked)",
                        repo.name
                    ),
                ));
            }
        }
        let stored = if new_only {
            repo.backend.put_new(kind, &name, data)
        } else {
            repo.backend.put(kind, &name, data)
        };
        if let Err(e) = stored {
            if let Some(used) = self.quota.and(repo.used.get()) {
                // Given back: the reservation did not become an object.
                let before = old.unwrap_or(0);
                let _ = used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                    Some(u.saturating_sub(reserved) + before)
                });
            }
            return Err(Store::failed(repo, path, e));
        }
        Ok(())
    }

    /// Removes an object (idempotent), unless append-only refuses.
    pub fn delete(&self, repo: &Repo, path: &str, power: Power) -> Result<(), Refusal> {
        let (kind, name) = Store::object(path)?;
        if self.append_only && power == Power::User && kind != FileKind::Lock {
            return Err(Refusal::new(
                403,
                format!(
                    "this server is append-only: {}/{path} is not deleted (forget and prune run on the \
                     server, or as an admin user)",
                    repo.name
                ),
            ));
        }
        let old = self.size(repo, path)?;
        repo.backend.delete(kind, &name).map_err(|e| Store::failed(repo, path, e))?;
        if let (Some(size), Some(used)) = (old, self.quota.and(repo.used.get())) {
            let _ = used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| Some(u.saturating_sub(size)));
        }
        Ok(())
    }

    /// The objects of a kind (or those misplaced), as JSON.
    pub fn list(&self, repo: &Repo, slug: &str, misplaced: bool) -> Result<serde_json::Value, Refusal> {
        let kind = FileKind::from_slug(slug)
            .ok_or_else(|| Refusal::new(400, format!("{slug:?} is no kind of object")))?;
        if misplaced {
            let found = repo.backend.misplaced(kind).map_err(|e| Store::failed(repo, slug, e))?;
            return Ok(serde_json::json!(found));
        }
        let entries = match repo.backend.list(kind) {
            Ok(e) => e,
            // A repository not created yet lists nothing.
            Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Store::failed(repo, slug, e)),
        };
        Ok(serde_json::json!(entries
            .iter()
            .map(|e| serde_json::json!({"name": e.name, "size": e.size}))
            .collect::<Vec<_>>()))
    }

    /// The bytes of temporary files, or removes them (not in append-only mode, but for admins).
    pub fn temporaries(&self, repo: &Repo, remove: bool, power: Power) -> Result<u64, Refusal> {
        if remove {
            if self.append_only && power == Power::User {
                return Err(Refusal::new(
                    403,
                    "this server is append-only: temporary files are left to an admin",
                ));
            }
            repo.backend.remove_temporaries().map_err(|e| Store::failed(repo, "", e))
        } else {
            repo.backend.temporaries_size().map_err(|e| Store::failed(repo, "", e))
        }
    }
}
