//! The on-disk formats, one module per kind of repository file or record.

pub mod config;
pub mod id;
#[cfg_attr(feature = "internals", allow(missing_docs))]
pub mod index;
pub mod index_table;
#[cfg_attr(feature = "internals", allow(missing_docs))]
pub mod keyfile;
pub mod lock;
#[cfg_attr(feature = "internals", allow(missing_docs))]
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod wal;
