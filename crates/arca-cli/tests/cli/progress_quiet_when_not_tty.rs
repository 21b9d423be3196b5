//! With stdout not a terminal, no progress bars: a short summary, or exactly
//! one JSON document with --json.
use crate::common;

use common::*;

#[track_caller]
fn no_progress(out: &Out, what: &str) {
    assert!(
        !out.stdout.contains('\r'),
        "{what}: carriage returns (progress redraws) on stdout: {}",
        out.describe()
    );
    assert!(
        !out.stdout.contains('\u{1b}'),
        "{what}: terminal escape sequences on stdout: {}",
        out.describe()
    );
    assert!(
        !out.stderr.contains('\r'),
        "{what}: carriage returns (progress redraws) on stderr that is not a terminal: {}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("\u{1b}["),
        "{what}: terminal escape sequences on stderr that is not a terminal: {}",
        out.describe()
    );
}

#[test]
fn progress_quiet_when_not_tty() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    // Enough data that a progress display would tick several times.
    make_random_tree(&src, 40, 1_000_000, 5);
    let arca = Arca::new(&base);
    arca.init();

    let out = arca.run(&[std::ffi::OsStr::new("backup"), src.as_os_str()]).ok();
    no_progress(&out, "backup");
    let lines = out.stdout.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        (1..=15).contains(&lines),
        "backup prints a short human summary ({lines} lines): {}",
        out.describe()
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&out.stdout).is_err(),
        "without --json the summary is not JSON: {}",
        out.describe()
    );

    let out = arca.run_json(&[std::ffi::OsStr::new("backup"), src.as_os_str()]).ok();
    no_progress(&out, "backup --json");
    let doc = out.json(); // exactly one document
    assert!(doc["id"].is_string(), "{doc}");

    let target = base.join("t1");
    let out = arca
        .run(&[std::ffi::OsStr::new("restore"), "latest".as_ref(), "--target".as_ref(), target.as_os_str()])
        .ok();
    no_progress(&out, "restore");
    let lines = out.stdout.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(lines <= 15, "restore prints a short summary ({lines} lines): {}", out.describe());

    let target = base.join("t2");
    let out = arca
        .run_json(&[
            std::ffi::OsStr::new("restore"),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .ok();
    no_progress(&out, "restore --json");
    assert_eq!(out.json()["success"], true);

    let out = arca.run_json(&["verify", "--read-data"]).ok();
    no_progress(&out, "verify --json");
    assert_eq!(out.json()["valid"], true);
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());
}
