//! `-v`/`-vv` list the files a backup stores, `-q` prints only what went
//! wrong, and `--json-progress` turns everything on stderr into JSON lines
//! (phases, progress, files, warnings, notes, errors) while stdout keeps
//! its one document.
use crate::common;

use std::fs;

use serde_json::Value;

use common::*;

/// Every stderr line of `out`, each of which must be a JSON object.
fn json_lines(out: &Out) -> Vec<Value> {
    out.stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("stderr line {l:?} is not a JSON object: {}", out.describe()))
        })
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

#[test]
fn verbose_lists_new_and_changed_files_and_very_verbose_all() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    for f in ["same", "edited"] {
        fs::write(src.join(f), f).unwrap();
    }
    let arca = Arca::new(&base);
    arca.init();
    let s = src.to_str().unwrap();
    let p = |f: &str| src.join(f).display().to_string();
    let out = arca.run(&["backup", "-v", s]).ok();
    assert!(out.stdout.contains(&format!("new       {}", p("same"))), "{}", out.describe());
    assert!(out.stdout.contains(&format!("new       {}", p("edited"))), "{}", out.describe());

    fs::write(src.join("edited"), "edited, longer now").unwrap();
    fs::write(src.join("added"), "added").unwrap();
    let out = arca.run(&["backup", "-v", s]).ok();
    // Files are read in parallel: listed as they are stored, in any order.
    let mut listed: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with("snapshot ")).collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![format!("changed   {}", p("edited")), format!("new       {}", p("added"))],
        "-v: the new and changed files: {}",
        out.describe()
    );
    let out = arca.run(&["backup", "-vv", s]).ok();
    for f in ["added", "edited", "same"] {
        assert!(out.stdout.contains(&format!("unchanged {}", p(f))), "-vv lists {f}: {}", out.describe());
    }
    // With --json the listing goes to stderr: stdout stays one document.
    fs::write(src.join("added"), "changed again").unwrap();
    let out = arca.run_json(&["backup", "-v", s]).ok();
    out.json();
    assert!(out.stderr.contains(&format!("changed   {}", p("added"))), "{}", out.describe());
    // Without -v, no listing.
    let out = arca.run(&["backup", "--force", s]).ok();
    assert_eq!(out.stdout.lines().count(), 1, "the summary alone: {}", out.describe());
}

#[test]
fn quiet_prints_only_what_went_wrong() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let s = src.to_str().unwrap();
    let out = arca.run(&["-q", "backup", s]).ok();
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", out.describe());
    let target = base.join("t");
    let out = arca.run(&["-q", "restore", "latest", "--target", target.to_str().unwrap()]).ok();
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", out.describe());
    assert_eq!(fs::read(restored(&target, &src).join("f")).unwrap(), b"x");
    let out = arca.run(&["-q", "tag", "latest", "--add", "t"]).ok();
    assert!(out.stdout.is_empty(), "{}", out.describe());
    // Data asked for is still printed; --json still prints its document.
    let out = arca.run(&["-q", "snapshots"]).ok();
    assert!(out.stdout.contains("1 snapshots"), "{}", out.describe());
    arca.run_json(&["-q", "backup", s]).ok().json();
    // Errors are never quieted; -q with -v is a usage error.
    let out = arca.run(&["-q", "restore", "ffffffff", "--target", "/tmp/x"]).code_is(1);
    assert!(out.stderr.contains("arca: error:"), "{}", out.describe());
    arca.run(&["-q", "-v", "backup", s]).code_is(2);
}

#[test]
fn json_progress_streams_json_lines_on_stderr() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 20, 200_000, 3);
    // A socket: backed up by name only, with a warning.
    let _socket = std::os::unix::net::UnixListener::bind(src.join("app.sock")).unwrap();
    let files = file_count(&src);
    let arca = Arca::new(&base);
    arca.init();
    let s = src.to_str().unwrap();

    let out = arca.run_json(&["--json-progress", "-v", "backup", s]).ok();
    let doc = out.json();
    let lines = json_lines(&out);
    let phases: Vec<&str> = of_type(&lines, "phase").iter().map(|l| jstr(l, "phase")).collect();
    assert_eq!(phases, vec!["loading", "backing up", "writing index"], "{}", out.describe());
    let backing: Vec<&Value> =
        of_type(&lines, "progress").into_iter().filter(|l| l["phase"] == "backing up").collect();
    let last =
        backing.last().unwrap_or_else(|| panic!("a progress line of the backup phase: {}", out.describe()));
    assert_eq!(ju64(last, "items_done"), files, "{last}");
    assert_eq!(ju64(last, "bytes_done"), ju64(&doc["summary"], "bytes_read"), "{last}");
    assert_eq!(jstr(last, "units"), "files");
    ju64(last, "elapsed_ms");
    assert_eq!(of_type(&lines, "file").len() as u64, files, "-v: each new file once: {}", out.describe());
    assert!(of_type(&lines, "file").iter().all(|l| l["change"] == "new"));
    let warnings = of_type(&lines, "warning");
    assert!(
        warnings.len() == 1 && jstr(warnings[0], "message").contains("app.sock"),
        "the socket's warning, as JSON: {}",
        out.describe()
    );

    // Notes and errors are JSON lines too.
    let out = arca.run(&["--json-progress", "restore", "ffffffff", "--target", "/tmp/x"]).code_is(1);
    let lines = json_lines(&out);
    let errors = of_type(&lines, "error");
    assert!(errors.len() == 1 && jstr(errors[0], "message").contains("ffffffff"), "{}", out.describe());
    let out = arca.run(&["--json-progress", "unlock"]).ok();
    json_lines(&out);
}
