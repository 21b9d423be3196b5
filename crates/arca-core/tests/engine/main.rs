//! arca-core's integration tests: the engines driven through the library's
//! public interface only. One test binary for the layer, since each binary
//! links the whole library again (six of them took 1.3 GB and minutes of
//! linking in a clean CI build).
mod base_backup_record;
mod cancel;
mod embedding;
mod engine_locks;
mod fuzz_corpus;
mod index_table;
mod listing_lag;
mod remote_cache;
mod streams;
mod torture_faults;
