//! The local filesystem side: metadata read at backup and applied at
//! restore, and the include/exclude patterns.

pub mod command;
pub mod filter;
pub mod meta;
