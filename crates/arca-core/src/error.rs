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
    /// A tree blob that does not decode or breaks the tree rules (a bad
    /// entry name, duplicates, disorder, fields that contradict the kind).
    #[error("tree {tree} is damaged: {source}")]
    Tree { tree: String, source: crate::format::tree::TreeError },
    /// A walk met more entries than any real snapshot has
    /// ([`crate::repository::walk::MAX_ENTRIES`]): folders that share subtrees can make
    /// a few small trees expand without bound.
    #[error("snapshot expands to more than {limit} entries: the repository may be crafted")]
    TooManyEntries { limit: u64 },
    /// Folders nested deeper than [`crate::repository::walk::MAX_DEPTH`], which no
    /// legal path reaches.
    #[error("folder {path} is nested deeper than {limit} levels: the repository may be crafted")]
    TooDeep { path: String, limit: usize },
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
    /// The operation was stopped through its [`crate::Cancel`] handle.
    #[error("cancelled")]
    Cancelled,
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
