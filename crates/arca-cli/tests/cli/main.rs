//! The end-to-end tests of the `arca` binary, in one test binary: one link
//! instead of one per file (each links arca-core, arca-backend and their
//! dependencies), and one process whose test threads share the machine.
//!
//! Every module is one area; `cargo test --test cli AREA::` runs one of them.
//! The tests run in parallel threads of this one process, so none may change
//! process-wide state (environment, current directory, umask, signal
//! dispositions): each runs `arca` as a child process with its own
//! environment and its own temporary directory (see `common`).

mod common;
/// The real S3 server (`s3s-fs`), shared with the backend suite.
#[path = "../../../arca-backend/tests/s3server/mod.rs"]
mod s3server;
/// The real OpenSSH server (`sshd`), shared with the backend suite.
#[path = "../../../arca-backend/tests/sshserver/mod.rs"]
mod sshserver;

mod backup_exclusions;
mod bad_input_errors;
mod cancel_signals;
mod completions_and_man;
mod concurrent_backups;
mod corruption_matrix;
mod corruption_property;
mod crash_sigkill;
mod daemon;
mod dashboard;
mod dedup_and_incremental;
mod enospc_tmpfs;
mod export_dump;
mod find_cat;
mod first_hour;
mod harness_selftest;
mod jobs;
mod json_contract;
mod json_shapes;
mod keys;
mod maintenance_concurrency;
mod mount;
mod no_plaintext_in_repo;
mod output_control;
mod partial_failure_unprivileged;
mod password_sources;
mod point_in_time;
mod postgres;
mod progress_on_terminal;
mod progress_quiet_when_not_tty;
mod prune_space;
mod repository_locations;
mod restore_enospc;
mod restore_existing;
mod restore_safety;
mod retention;
mod roundtrip_usr_share_doc;
mod s3;
mod s3_faults;
mod safety_cli;
mod serve;
mod sftp;
mod snapshot_selection;
mod special_tree_fidelity;
mod stdin_backup;
mod strategies;
mod tags;
mod threads;
mod torture_adversarial;
mod torture_concurrency;
mod torture_durability;
mod torture_kill;
mod verify_detects_damage;
mod verify_safety;
