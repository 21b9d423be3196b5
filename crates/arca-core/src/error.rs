//! The library's error type.
//!
//! Rules:
//! - Every variant names the object concerned (a repository, a path, a
//!   blob, a snapshot).
//! - A cause is either in the message or in [`std::error::Error::source`],
//!   never both: when the cause is an error value (an I/O error, a backend
//!   error, a tree that does not decode), the message names the object only
//!   and the cause is the source. Print an error with its causes, `a: b: c`,
//!   through [`Error::report`] (or anyhow's `{:#}`); `to_string` alone gives
//!   the first part only.
//! - A cause that is only a description (a checksum that does not match)
//!   is part of the message.
//! - The library names no command-line flag or environment variable: what
//!   to type is for the program on top to add.

use std::sync::Arc;

use arca_backend::BackendError;
pub use arca_backend::Chain;

/// The library's result type: [`Error`] unless another error type is given.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library. Each variant names the object concerned (a
/// repository location, a path, a blob, a snapshot); a cause is either in the message or in
/// [`std::error::Error::source`], never both: show one with [`Error::report`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage failed (reading, writing, listing or deleting an object);
    /// [`BackendError::kind`] says how.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The location holds no repository (no config object), though the
    /// storage answers.
    #[error("no repository at {0}")]
    NoRepository(String),
    /// `init` found a repository already at the location.
    #[error("a repository already exists at {0}; refusing to overwrite it")]
    RepositoryExists(String),
    /// The repository was written by a newer arca.
    #[error(
        "repository {location} has format version {found}, this arca reads version {supported}: upgrade arca"
    )]
    UnsupportedVersion {
        /// Where the repository is: a local folder's path, or the description of the storage.
        location: String,
        /// The `version` its config holds (a value beyond `u32::MAX` shows as `u32::MAX`).
        found: u32,
        /// The one version this build reads: [`FORMAT_VERSION`](crate::FORMAT_VERSION).
        supported: u32,
    },
    /// No key file of the repository opens with the password given.
    #[error("wrong password: no key in {0} opens with it")]
    WrongPassword(String),
    /// The repository is encrypted and no password was given.
    #[error("a password is required for repository {0}")]
    PasswordRequired(String),
    /// A stored object fails its checks (authentication, checksum, decoding);
    /// `cause` describes how.
    #[error("{object} is damaged: {cause}")]
    Corrupt {
        /// The damaged object: mostly the repository location and its path there
        /// (`<location>/snapshots/<64 hex>`), or `blob <64 hex>` for a blob.
        object: String,
        /// What is wrong with it, as a description (this variant has no source error).
        cause: String,
    },
    /// A tree blob that does not decode or breaks the tree rules (a bad
    /// entry name, duplicates, disorder, fields that contradict the kind).
    #[error("tree {tree} is damaged")]
    Tree {
        /// The tree's short id (8 hex digits), or `to be written` for a tree about to be
        /// stored that breaks the rules.
        tree: String,
        /// Why: the decoding error, or the rule the tree breaks and the entry that breaks it.
        source: crate::format::tree::TreeError,
    },
    /// A walk met more entries than any real snapshot has (2^30): folders that share
    /// subtrees can make a few small trees expand without bound.
    #[error("snapshot expands to more than {limit} entries: the repository may be crafted")]
    TooManyEntries {
        /// The number of entries a walk allows (2^30; a shared subtree counts once per place).
        limit: u64,
    },
    /// Folders nested deeper than 4,096 levels, which no legal path reaches.
    #[error("folder {path} is nested deeper than {limit} levels: the repository may be crafted")]
    TooDeep {
        /// Where the limit was met: the path inside the snapshot (lossy UTF-8, cut after
        /// 200 bytes), or `(tree <short id>)` when only the tree is known (copy).
        path: String,
        /// The nesting allowed, in folder levels (4,096).
        limit: usize,
    },
    /// A key file's key derivation parameters are refused or fail.
    #[error("format error: {0}")]
    Format(String),
    /// No snapshot matches the id or prefix given.
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    /// `latest` was asked for among the snapshots a filter selects, and it
    /// selects none (the filter as [`SnapshotFilter`](crate::SnapshotFilter) shows it).
    #[error("no snapshot has {0}")]
    NoMatchingSnapshot(String),
    /// A snapshot given by id is not among those the filter selects.
    #[error("snapshot {id} does not have {filter}")]
    SnapshotExcluded {
        /// The snapshot's short id.
        id: String,
        /// The filter, as [`SnapshotFilter`](crate::SnapshotFilter) shows it.
        filter: String,
    },
    /// A snapshot id prefix matches more than one snapshot.
    #[error("snapshot prefix {0} is ambiguous: it matches {1} snapshots, give more digits")]
    AmbiguousSnapshot(String, usize),
    /// A local file or folder (a source, a restore target) could not be read
    /// or written; the source is the I/O error.
    #[error("{path}")]
    Io {
        /// The local path concerned, as displayed (lossy UTF-8).
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A source path of a backup cannot be read.
    #[error("source path {path}")]
    SourcePath {
        /// The source path as the caller gave it (before it is made absolute).
        path: String,
        /// Why its metadata cannot be read (it does not exist, permission denied, ...).
        source: std::io::Error,
    },
    /// A path pattern (include or exclude) does not compile.
    #[error("invalid pattern {pattern:?}")]
    Pattern {
        /// The pattern as given; when a whole set fails to build, all of them joined by `, `.
        pattern: String,
        /// The glob compiler's error (from the `globset` crate).
        source: globset::Error,
    },
    /// Another operation holds a conflicting lock on the repository.
    #[error("repository {location} is locked: {detail}")]
    Locked {
        /// Where the repository is: a local folder's path, or the description of the storage.
        location: String,
        /// The conflicting holders, joined by `; `, each as
        /// `<operation> by <user>@<host> pid <pid> since <RFC 3339 time>`.
        detail: String,
    },
    /// The repository storage ran full; `detail` tells what is left and
    /// what was kept, the source is the failure that said so.
    #[error("repository {location} is out of space ({detail})")]
    NoSpace {
        /// Where the repository is: a local folder's path, or the description of the storage.
        location: String,
        /// Free space now (KiB, or `unknown`), how much more the next pack needs (MiB), and
        /// that no snapshot was written while the data already uploaded is kept for reuse.
        detail: String,
        /// The storage or I/O failure that said the storage is full.
        source: Box<Error>,
    },
    /// Prune stops before deleting anything when it cannot know what is
    /// used: `needs` says what it needs and how to get it, the source is
    /// what failed.
    #[error("prune needs {needs}")]
    PruneNeeds {
        /// What prune needs (a readable index, every snapshot readable, every tree readable:
        /// naming the first tree that is not), and what to run to get it.
        needs: String,
        /// The failure that showed it is missing (reading the index, a snapshot or a tree).
        source: Box<Error>,
    },
    /// A pack upload failed: every writer that stops because of it gets
    /// this same failure (shown as it is).
    #[error(transparent)]
    Upload(Arc<Error>),
    /// Worker threads of the library (named by the field) stopped before
    /// their work was done: they panicked.
    #[error("the {0} threads stopped before their work was done")]
    WorkersLost(&'static str),
    /// The engines' worker threads (see [`crate::pool`]) could not start.
    #[error("starting the worker threads")]
    ThreadPool {
        /// Why the pool could not be built (from `rayon`: mostly, the system refused a thread).
        source: rayon::ThreadPoolBuildError,
    },
    /// A caller's argument is malformed or names nothing: a duration, a
    /// snapshot id, a key id, a path inside a snapshot, an option out of
    /// range, an empty list of paths. The message says what was wrong and
    /// what would be right; there is no underlying cause.
    #[error("{0}")]
    Invalid(String),
    /// The operation was stopped through its [`crate::Cancel`] handle.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// An [`Error::Io`]: `path` (shown with [`Path::display`](std::path::Path::display))
    /// failed with `source`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }

    /// Whether waiting may cure it: the storage not answering or timing
    /// out, a lock another operation holds. A wrong password, a damaged
    /// object, a source that is gone or a full disk are not: trying again
    /// soon would fail alike, and a person should hear of it at once.
    pub fn is_transient(&self) -> bool {
        use std::io::ErrorKind as K;
        let waitable = |k: K| {
            matches!(
                k,
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NetworkDown
            )
        };
        match self {
            Error::Backend(b) => b.temporary || waitable(b.source.kind()),
            Error::Locked { .. } => true,
            Error::Upload(e) => e.is_transient(),
            Error::Io { source, .. } => waitable(source.kind()),
            _ => false,
        }
    }

    /// Whether this is the storage running full.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::NoSpace { .. } => true,
            Error::Backend(b) => b.kind == arca_backend::ErrorKind::NoSpace,
            Error::Upload(e) => e.is_no_space(),
            _ => false,
        }
    }

    /// An [`Error::Corrupt`]: `object` names the damaged object, `cause` describes what is
    /// wrong with it.
    pub fn corrupt(object: impl Into<String>, cause: impl Into<String>) -> Error {
        Error::Corrupt { object: object.into(), cause: cause.into() }
    }

    /// This error with its causes, `a: b: c`: what to show a person.
    pub fn report(&self) -> Chain<'_> {
        Chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_reads_once() {
        let io = || std::io::Error::other("the cause");
        let errors = [
            Error::io("/some/file", io()),
            Error::SourcePath { path: "/src".into(), source: io() },
            Error::Backend(BackendError::from_io("reading", "repo/keys/k".into(), io())),
            Error::NoSpace {
                location: "repo".into(),
                detail: "free space now: 0 KiB".into(),
                source: Box::new(Error::io("/repo/data", io())),
            },
            Error::PruneNeeds {
                needs: "a readable index".into(),
                source: Box::new(Error::io("/repo/index", io())),
            },
            Error::Upload(Arc::new(Error::io("/repo/data/ab", io()))),
        ];
        for e in &errors {
            let shown = e.report().to_string();
            assert_eq!(shown.matches("the cause").count(), 1, "{shown}");
        }
        assert_eq!(errors[0].report().to_string(), "/some/file: the cause");
        assert!(!errors[5].is_no_space());
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let full = Error::Backend(BackendError::from_io("writing", "repo/data/ab".into(), full));
        assert!(Error::Upload(Arc::new(full)).is_no_space(), "a shared upload failure keeps its kind");
    }

    #[test]
    fn no_repository_names_no_flag() {
        let shown = Error::NoRepository("/r".into()).to_string();
        assert_eq!(shown, "no repository at /r");
    }
}
