//! Replays every committed fuzz corpus input (fuzz/corpus/<target>/*)
//! through the function its fuzzer calls (arca_core::fuzzing), so CI checks
//! the corpus, crashes found once included, without building the fuzzers.

use std::path::Path;

use arca_core::fuzzing::TARGETS;

#[test]
fn every_corpus_input_replays_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    for (target, run) in TARGETS {
        let dir = corpus.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target has a corpus)", dir.display()))
            .map(|e| e.expect("list the corpus").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: the corpus of {target} is empty", dir.display());
        for f in &files {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} panics", f.display());
        }
        total += files.len();
    }
    assert!(total >= TARGETS.len());
}

/// Every fuzz target has its fuzzer, and the other way round.
#[test]
fn every_target_has_a_fuzzer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    let mut fuzzers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    fuzzers.sort();
    let mut targets: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    targets.sort();
    assert_eq!(fuzzers, targets);
    for t in &targets {
        let src = std::fs::read_to_string(dir.join(format!("{t}.rs"))).unwrap();
        assert!(src.contains(&format!("arca_core::fuzzing::{t}(data)")), "{t}.rs calls fuzzing::{t}");
    }
}
