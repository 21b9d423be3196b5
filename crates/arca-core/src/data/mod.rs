//! What a blob passes through on its way to storage: content-defined
//! chunking, compression, encryption, gathering into packs, and parity.

pub mod chunker;
pub mod compress;
pub mod crypto;
pub mod packer;
pub mod parity;
