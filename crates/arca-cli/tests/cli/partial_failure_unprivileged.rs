//! Run unprivileged over a tree with an unreadable file and an unreadable
//! directory: the backup completes with exit 3, lists both with the cause,
//! and everything else restores.
use crate::common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::chown;

use common::*;

const NOBODY: u32 = 65534;

#[test]
fn partial_failure_unprivileged() {
    if !require_root("partial_failure_unprivileged", "switching to uid 65534 needs root") {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    chmod(&base, 0o777);
    let src = base.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("ok1.txt"), b"readable one\n").unwrap();
    fs::write(src.join("sub/ok2.txt"), b"readable two\n").unwrap();
    write_random(&src.join("sub/ok3.bin"), 500_000, 4);
    fs::write(src.join("secret.bin"), b"unreadable file\n").unwrap();
    fs::create_dir(src.join("lockeddir")).unwrap();
    fs::write(src.join("lockeddir/inner.txt"), b"inside a locked dir\n").unwrap();
    // Everything belongs to the unprivileged user, who still cannot read
    // the two entries with mode 000.
    walk(&src, &mut |p, _| chown(p, Some(NOBODY), Some(NOBODY)).unwrap());
    chown(&src, Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(&src.join("secret.bin"), 0o000);
    chmod(&src.join("lockeddir"), 0o000);

    let home = base.join("home");
    fs::create_dir_all(home.join("cache")).unwrap();
    walk(&home, &mut |p, _| chown(p, Some(NOBODY), Some(NOBODY)).unwrap());
    chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut arca = Arca::new(&base);
    arca.wrapper =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"].map(OsString::from).to_vec();

    // Sanity: the switch works and the user really cannot read those two.
    let probe = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(src.join("secret.bin"))
        .output()
        .expect("run setpriv");
    assert!(!probe.status.success(), "uid 65534 can read the mode-000 file; the test proves nothing");

    arca.init();
    let out = arca.run_json(&[std::ffi::OsStr::new("backup"), src.as_os_str()]).code_is(3);
    let meta = out.json();
    let errors = jarr(&meta["summary"], "errors");
    for bad in ["secret.bin", "lockeddir"] {
        let p = src.join(bad).display().to_string();
        let e = errors
            .iter()
            .find(|e| e["path"].as_str() == Some(p.as_str()))
            .unwrap_or_else(|| panic!("summary.errors lacks {p}: {meta}"));
        assert!(
            jstr(e, "error").to_lowercase().contains("permission"),
            "cause of {p} should mention permission: {e}"
        );
    }
    assert_eq!(errors.len(), 2, "exactly the two unreadable entries are errors: {meta}");
    assert!(
        out.stderr.contains("secret.bin"),
        "the unreadable file is reported on stderr: {}",
        out.describe()
    );

    let snaps = arca.snapshots();
    assert_eq!(snaps.len(), 1, "the snapshot of a partial backup exists");
    assert_eq!(snaps[0]["id"], meta["id"]);

    let target = base.join("target");
    let res = arca.restore("latest", &target, &[]);
    assert_eq!(res["success"], true, "{res}");
    let copy = restored(&target, &src);
    for ok in ["ok1.txt", "sub/ok2.txt", "sub/ok3.bin"] {
        assert_eq!(content_difference(&src.join(ok), &copy.join(ok)), None, "{ok} restored wrong");
    }
    assert!(
        !copy.join("lockeddir/inner.txt").exists(),
        "content of an unreadable dir cannot be in the snapshot"
    );
    arca.verify(&["--read-data"]).ok();
}
