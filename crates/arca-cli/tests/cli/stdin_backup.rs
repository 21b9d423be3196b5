//! `backup --stdin` and `backup --stdin-from-command -- CMD ARGS`: a stream
//! stored as one file, `/NAME`, that dumps and restores byte for byte; a
//! command that fails (at any point) leaves no snapshot and a non-zero exit.
use crate::common;

use std::io::Write;
use std::process::Stdio;

use common::*;

/// `arca --json ARGS` with `input` on standard input.
fn with_input(arca: &Arca, args: &[&str], input: &[u8]) -> Out {
    let mut cmd = arca.command(true, args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Out {
        cmdline: format!("{args:?}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn standard_input_is_stored_as_one_file() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let mut rng = Rng::new(5);
    let dump = rng.bytes(3 << 20);
    let out = with_input(&arca, &["backup", "--stdin", "--stdin-filename", "db.sql"], &dump).ok();
    let m = out.json();
    assert_eq!(jarr(&m, "paths"), &vec![serde_json::json!("/db.sql")], "{m}");
    assert_eq!((ju64(&m, "files"), ju64(&m, "size")), (1, dump.len() as u64), "{m}");
    let mut cmd = arca.command(false, &["dump", "latest", "/db.sql"]);
    cmd.stdout(Stdio::piped());
    let got = cmd.output().unwrap();
    assert!(got.stdout == dump, "dump differs ({} bytes)", got.stdout.len());
    let target = base.join("t");
    arca.restore("latest", &target, &[]);
    assert!(std::fs::read(target.join("db.sql")).unwrap() == dump);
    // The same stream again: unchanged, its data not stored again (only
    // the listing, whose time is new).
    let m = with_input(&arca, &["backup", "--stdin", "--stdin-filename", "db.sql"], &dump).ok().json();
    assert_eq!(ju64(&m["summary"], "files_unchanged"), 1, "{m}");
    assert!(ju64(&m["summary"], "blobs_added") <= 1 && ju64(&m["summary"], "bytes_added") < 4096, "{m}");
    // A name that is not a plain file name is refused.
    let out = with_input(&arca, &["backup", "--stdin", "--stdin-filename", "a/b"], b"x").code_is(1);
    assert!(out.stderr.contains("plain file name"), "{}", out.describe());
    assert_eq!(arca.snapshots().len(), 2);
}

#[test]
fn a_commands_output_is_stored_only_when_it_succeeds() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let ok = arca.json(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "out.txt",
        "--",
        "sh",
        "-c",
        "printf 'line 1\\nline 2\\n'",
    ]);
    assert_eq!(ju64(&ok, "size"), 14, "{ok}");
    let shown = arca.run(&["dump", "latest", "/out.txt"]).ok();
    assert_eq!(shown.stdout, "line 1\nline 2\n");
    // Fails after printing part of its output: no snapshot.
    for (cmd, why) in
        [("printf 'half a dump'; exit 3", "exit status: 3"), ("printf 'half'; kill -9 $$", "signal: 9")]
    {
        let out = arca.run(&["backup", "--stdin-from-command", "--", "sh", "-c", cmd]).code_is(1);
        assert!(out.stderr.contains("failed") && out.stderr.contains(why), "{}", out.describe());
        assert!(!out.stdout.contains("saved"), "{}", out.describe());
    }
    let out = arca.run(&["backup", "--stdin-from-command", "--", "/no/such/program"]).code_is(1);
    assert!(out.stderr.contains("/no/such/program"), "{}", out.describe());
    let out = arca.run(&["backup", "--stdin-from-command"]).code_is(1);
    assert!(out.stderr.contains("needs a command"), "{}", out.describe());
    assert_eq!(arca.snapshots().len(), 1, "a failed command left a snapshot");
    arca.verify(&["--read-data"]).ok();
}
