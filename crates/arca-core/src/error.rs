//! The library's error type. Every variant names the object and the cause.

use arca_backend::BackendError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("no repository at {0}: run `arca init` first, or check --repo / ARCA_REPOSITORY")]
    NoRepository(String),
    #[error("a repository already exists at {0}; refusing to overwrite it")]
    RepositoryExists(String),
    #[error(
        "repository {location} has format version {found}, this arca reads version {supported}: upgrade arca"
    )]
    UnsupportedVersion { location: String, found: u32, supported: u32 },
    #[error("wrong password: no key in {0} opens with it")]
    WrongPassword(String),
    #[error("a password is required for repository {0}")]
    PasswordRequired(String),
    #[error("{object} is damaged: {cause}")]
    Corrupt { object: String, cause: String },
    #[error("format error: {0}")]
    Format(String),
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("snapshot prefix {0} is ambiguous: it matches {1} snapshots, give more digits")]
    AmbiguousSnapshot(String, usize),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("repository {location} is locked: {detail}")]
    Locked { location: String, detail: String },
    #[error("repository {location} is out of space: {detail}")]
    NoSpace { location: String, detail: String },
    #[error("{0}")]
    Invalid(String),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }

    /// Whether this is the storage running full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
            || matches!(self, Error::Backend(b) if b.kind == arca_backend::ErrorKind::NoSpace)
    }

    pub fn corrupt(object: impl Into<String>, cause: impl Into<String>) -> Error {
        Error::Corrupt { object: object.into(), cause: cause.into() }
    }
}
