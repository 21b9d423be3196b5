//! A restore target that runs out of space: the restore stops with a clear
//! error, every file it left under its final name is complete, the files it
//! could not restore are listed, and a run with enough space finishes.
use crate::common;

use std::process::Command;

use common::*;

#[test]
fn restore_into_a_full_file_system() {
    if !require_root("restore_into_a_full_file_system", "mounting a tmpfs needs root") {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    // 40 incompressible files of 1 MB: about 40 MB to restore into 12 MiB.
    make_random_tree(&src, 40, 1_000_000, 77);
    let arca = Arca::new(&base);
    arca.init();
    let snap = arca.backup(&[&src], &[]);
    let id = jstr(&snap, "id").to_string();

    let mnt = base.join("target");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"]).arg(&mnt).status();
    if !st.map(|s| s.success()).unwrap_or(false) {
        skip("restore_into_a_full_file_system", "mount -t tmpfs failed");
        return;
    }
    let _guard = MountGuard(mnt.clone());

    let out =
        arca.run_json(&[std::ffi::OsStr::new("restore"), id.as_ref(), "--target".as_ref(), mnt.as_os_str()]);
    assert_eq!(out.code, 1, "restore of 40 MB into 12 MiB: {}", out.describe());
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    assert!(
        out.err_lower().contains("out of space") && out.stderr.contains(mnt.to_str().unwrap()),
        "names the target and the cause: {}",
        out.describe()
    );
    let r = out.json();
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["target_full"], true, "{r}");
    // Every file present under its final name is complete; the others are listed.
    let restored_root = restored(&mnt, &src);
    let mut complete = 0;
    let mut files = Vec::new();
    walk(&src, &mut |p, md| {
        if md.is_file() {
            files.push(p.to_path_buf());
        }
    });
    for file in files {
        let there = restored_root.join(file.strip_prefix(&src).unwrap());
        let listed = jarr(&r, "errors").iter().any(|e| jstr(e, "path") == there.to_str().unwrap());
        if there.exists() {
            assert_eq!(
                std::fs::read(&there).unwrap(),
                std::fs::read(&file).unwrap(),
                "{there:?} looks complete but differs"
            );
            assert!(!listed, "{there:?} is complete yet listed as not restored");
            complete += 1;
        } else {
            assert!(listed, "{there:?} is neither restored nor listed: {r}");
        }
    }
    assert!(complete > 0, "some files fit before the target filled up");
    assert_eq!(ju64(&r, "files"), complete, "{r}");
    let mut leftovers = Vec::new();
    walk(&mnt, &mut |p, _| {
        if p.file_name().unwrap().to_string_lossy().starts_with(".arca-restore-") {
            leftovers.push(p.display().to_string());
        }
    });
    assert!(leftovers.is_empty(), "temporary files left on the full target: {leftovers:?}");

    // With room, the same restore finishes and keeps what was complete.
    assert!(Command::new("mount").args(["-o", "remount,size=100m"]).arg(&mnt).status().unwrap().success());
    let r = arca.restore(&id, &mnt, &[]);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(ju64(&r, "files_kept"), complete, "{r}");
    let diff = Command::new("diff").arg("-r").arg(&src).arg(&restored_root).status().unwrap();
    assert!(diff.success(), "restored tree differs from the source");
}
