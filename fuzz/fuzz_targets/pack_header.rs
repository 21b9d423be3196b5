#![no_main]
// The body is shared with crates/arca-core/tests/engine/fuzz_corpus.rs, which
// replays this target's corpus in CI.
libfuzzer_sys::fuzz_target!(|data: &[u8]| arca_core::fuzzing::pack_header(data));
