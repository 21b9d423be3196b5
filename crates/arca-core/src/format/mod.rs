//! The on-disk formats, one module per kind of repository file or record.

pub mod config;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
