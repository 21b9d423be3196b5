//! A repository on a full file system: the backup fails cleanly (exit 1,
//! the repository path and the cause named), leaves no snapshot and a
//! repository that verifies, and succeeds once there is space.
use crate::common;

use std::process::Command;

use common::*;

#[test]
fn enospc_tmpfs() {
    if !require_root("enospc_tmpfs", "mounting a tmpfs needs root") {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=20m", "tmpfs"]).arg(&mnt).status();
    if !st.map(|s| s.success()).unwrap_or(false) {
        skip("enospc_tmpfs", "mount -t tmpfs failed (no CAP_SYS_ADMIN in this container?)");
        return;
    }
    let _guard = MountGuard(mnt.clone());

    let src = base.join("src");
    let total = make_random_tree(&src, 30, 2_000_000, 31);
    let repo = mnt.join("repo");
    let arca = Arca::with_repo(&base, &repo);
    arca.init();

    let out = arca.run_json(&[std::ffi::OsStr::new("backup"), src.as_os_str()]);
    assert_eq!(out.code, 1, "backup of {total} bytes into a 20 MiB file system: {}", out.describe());
    assert!(
        out.stderr.contains(repo.to_str().unwrap()),
        "the error names the repository path: {}",
        out.describe()
    );
    assert!(out.err_lower().contains("space"), "the error names the cause (no space): {}", out.describe());
    assert!(arca.snapshots().is_empty(), "a failed backup left a snapshot");
    let v = arca.run_json(&["verify"]);
    assert_eq!(v.code, 0, "verify after ENOSPC: {}", v.describe());
    // A failure the process lived through leaves no half-written files
    // behind to hold on to the scarce space.
    let mut leftovers = Vec::new();
    walk(&repo, &mut |p, md| {
        let name = p.file_name().unwrap().to_string_lossy();
        if md.is_file() && (name.starts_with('.') || name.contains("tmp")) {
            leftovers.push(p.display().to_string());
        }
    });
    assert!(leftovers.is_empty(), "temporary files left after a failed backup: {leftovers:?}");
    assert_eq!(jarr(&arca.json(&["status"]), "locks").len(), 0, "a failed backup left its lock behind");

    let st = Command::new("mount").args(["-o", "remount,size=200m"]).arg(&mnt).status().unwrap();
    assert!(st.success(), "remount with more space");
    let meta = arca.backup(&[&src], &[]);
    assert!(jarr(&meta["summary"], "errors").is_empty(), "{meta}");
    assert_eq!(arca.snapshots().len(), 1);
    arca.verify(&["--read-data"]).ok();
    let target = base.join("target");
    arca.restore("latest", &target, &[]);
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());
}
