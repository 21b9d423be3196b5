//! arca-core: the repository format and the backup, restore and verify engines.

pub mod error;
pub mod fsmeta;
pub mod id;
pub mod tree;

pub use error::{Error, Result};
pub use id::Id;
