//! The operations, one module each.

pub mod archive;
pub mod backup;
pub mod cat;
pub mod copy;
pub mod diff;
pub mod find;
pub mod forget;
pub mod ls;
#[cfg(feature = "mount")]
pub mod mount;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod status;
pub mod tag;
pub mod verify;
pub mod wal;
