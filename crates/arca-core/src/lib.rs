//! arca-core: deduplicated, compressed, encrypted snapshots of folders,
//! and the engines that back them up, restore, verify, forget and prune.
//!
//! A [`Repository`] lives on a [`backend`] (a local folder, S3). Each
//! operation is a module of [`ops`] with one entry function, an options
//! struct (`Default` gives the usual behaviour) and a typed result:
//! [`ops::backup`], [`ops::restore`], [`ops::verify`], [`ops::forget`],
//! [`ops::prune`], [`ops::copy`], [`ops::repair`], [`ops::status`], and the
//! browsing ones ([`ops::ls`], [`ops::diff`], [`ops::archive`], and
//! `ops::mount` with the `mount` feature: a read-only FUSE filesystem).
//!
//! Every engine takes the repository lock it needs itself (shared to read
//! or add, exclusive to delete; see [`LockOptions`]), can be stopped through
//! the [`Cancel`] handle in its options, and reports [`progress`] in named
//! phases. Engines are blocking: they run their parallel work on a thread
//! pool of their own for the call (big stacks for deep trees, whatever
//! thread calls them), and an async program calls them from
//! `tokio::task::spawn_blocking` or a thread of its own, never directly
//! from a task.
//!
//! The classic flow: create a repository, back up a folder, list the
//! snapshots, verify, restore, and look at its status.
//!
//! ```
//! use std::sync::Arc;
//!
//! use arca_core::backend::LocalBackend;
//! use arca_core::ops::backup::{backup, BackupOptions};
//! use arca_core::ops::restore::{restore, RestoreOptions};
//! use arca_core::ops::status::status;
//! use arca_core::ops::verify::{verify, VerifyOptions};
//! use arca_core::progress::NoProgress;
//! use arca_core::{InitOptions, Repository, SnapshotFilter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let documents = dir.path().join("documents");
//! std::fs::create_dir(&documents)?;
//! std::fs::write(documents.join("letter.txt"), "Dear Ada,\n")?;
//!
//! // A new encrypted repository in a local folder, opened again as a
//! // second program would.
//! let backend = Arc::new(LocalBackend::new(dir.path().join("repo")));
//! Repository::init(backend.clone(), Some("correct horse"), &InitOptions::default())?;
//! let repo = Repository::open(backend, Some("correct horse"))?;
//!
//! // Back up the folder.
//! let opts = BackupOptions::default().paths(vec![documents.clone()]);
//! let done = backup(&repo, &opts, &NoProgress)?;
//! let id = done.id.expect("not a dry run");
//! assert_eq!(done.snapshot.summary.files_new, 1);
//!
//! // List the snapshots (all of them: the filter matches everything).
//! let (snapshots, unreadable) = repo.snapshots_matching(&SnapshotFilter::default())?;
//! assert_eq!(snapshots.len(), 1);
//! assert!(unreadable.is_empty());
//!
//! // Check every chunk's checksum.
//! let check = VerifyOptions::default().read_data(true);
//! assert!(verify(&repo, &check, &NoProgress)?.valid);
//!
//! // Restore the snapshot into another folder.
//! let into = RestoreOptions::default().target(dir.path().join("restored"));
//! let restored = restore(&repo, &id, &into, &NoProgress)?;
//! assert!(restored.success);
//! let letter = into.target.join(documents.strip_prefix("/")?).join("letter.txt");
//! assert_eq!(std::fs::read_to_string(letter)?, "Dear Ada,\n");
//!
//! // The state at a glance.
//! assert_eq!(status(&repo)?.snapshots, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Inside, the folders follow the data: `format` holds one module per
//! on-disk kind (config, key files, packs, index files, trees, snapshots,
//! locks); `data` the building blocks a blob passes through (chunker,
//! compression, encryption, packer, parity); `repository` opens a
//! repository and reads and writes its typed objects; `fs` reads and
//! applies filesystem metadata and matches paths; [`ops`] holds the
//! operations. docs/ARCHITECTURE.md in the source tree draws the flow.

#![deny(missing_docs)]

mod cancel;
// Reachable only through `internals`, for the benchmarks.
#[cfg_attr(feature = "internals", allow(missing_docs))]
mod data;
mod error;
mod format;
mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod ops;
pub mod pool;
pub mod progress;
mod repository;

/// The storage a repository lives on: re-exported so that an embedding
/// program needs no second dependency to open one.
pub use arca_backend as backend;

pub use cancel::Cancel;
pub use data::chunker::ChunkerParams;
pub use error::{Chain, Error, Result};
pub use format::config::{Config, Encryption, DEFAULT_COMPRESSION_LEVEL, FORMAT_VERSION};
pub use format::id::{BlobId, DataId, Id, PackId, SnapshotId, TreeId};
pub use format::index::Index;
pub use format::lock::{hostname, FoundLock, LockInfo, LockOptions};
pub use format::snapshot::{BackupMetadata, BaseBackup, PathError, Snapshot, Strategy, Summary};
pub use format::tree::{Node, NodeKind, Timestamp, TreeError, Xattr};
pub use format::wal::WalRecord;
pub use fs::command::CommandOutput;
pub use repository::snapshots::{grouped, latest_of, SnapshotFilter};
pub use repository::{InitOptions, KeyListing, Repository, SnapshotList, Unopened};

/// The building blocks, for the benchmarks in `bench/` and the tests that
/// craft repositories: not a stable interface, compiled with the
/// `internals` feature.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::data::{chunker, compress, crypto, packer};
    pub use crate::format::{index, keyfile, pack, tree};
}
