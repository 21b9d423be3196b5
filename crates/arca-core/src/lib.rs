//! arca-core: the repository format and the backup, restore and verify engines.
//!
//! Format modules (one per on-disk kind): [`config`], [`keyfile`], [`pack`],
//! [`index`], [`tree`], [`snapshot`], [`lock`]; building blocks: [`crypto`],
//! [`compress`], [`chunker`]; engines: [`backup`], [`restore`], [`verify`].

pub mod archive;
pub mod backup;
pub mod cache;
pub mod chunker;
pub mod compress;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod diff;
pub mod error;
pub mod filter;
pub mod forget;
pub mod fsmeta;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod packer;
pub mod parity;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod snapshot;
pub mod tree;
pub mod verify;
pub mod walk;

pub use error::{Error, Result};
pub use id::Id;
pub use repo::Repository;
