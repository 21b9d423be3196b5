//! arca-core: the repository format and the backup, restore and verify engines.
//!
//! The folders follow the data: [`format`] holds one module per on-disk
//! kind (config, key files, packs, index files, trees, snapshots, locks);
//! [`data`] the building blocks a blob passes through (chunker,
//! compression, encryption, packer, parity); [`repository`] opens a
//! repository and reads and writes its typed objects; [`fs`] reads and
//! applies filesystem metadata and matches paths; [`ops`] holds one module
//! per operation (backup, restore, verify, prune, forget, copy, repair,
//! diff, archive).

pub mod cancel;
pub mod data;
pub mod error;
pub mod format;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod ops;
pub mod progress;
pub mod repository;

pub use cancel::Cancel;
pub use error::{Error, Result};
pub use format::id::Id;
pub use repository::Repository;
