//! Back up a copy of /usr/share/doc (real files of every size, symlinks,
//! compressed and plain text) and restore it bit for bit with its metadata.
use crate::common;

use std::process::Command;

use common::*;

#[test]
fn roundtrip_usr_share_doc() {
    let doc = std::path::Path::new("/usr/share/doc");
    if !doc.is_dir() || std::fs::read_dir(doc).map(|d| d.count()).unwrap_or(0) == 0 {
        skip("roundtrip_usr_share_doc", "/usr/share/doc is missing or empty");
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("doc");
    cp_a(doc, &src);
    let files = file_count(&src);
    let bytes = tree_size(&src);
    eprintln!("copied /usr/share/doc: {files} files, {bytes} bytes");

    let arca = Arca::new(&base);
    arca.init();
    let meta = arca.backup(&[&src], &[]);
    assert_eq!(ju64(&meta, "files"), files, "backup --json `files` should count the regular files: {meta}");
    assert_eq!(ju64(&meta, "size"), bytes, "backup --json `size` should be the bytes of the files: {meta}");
    assert!(jarr(&meta["summary"], "errors").is_empty(), "backup reported errors: {meta}");

    let target = base.join("target");
    let res = arca.restore("latest", &target, &[]);
    assert_eq!(res["success"], true, "restore: {res}");
    let copy = restored(&target, &src);
    assert_trees_equal(&src, &copy, Compare::default());

    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&src)
        .arg(&copy)
        .output()
        .expect("run diff");
    assert!(
        diff.status.success(),
        "diff -r --no-dereference {} {} exited {:?}:\n{}{}",
        src.display(),
        copy.display(),
        diff.status.code(),
        String::from_utf8_lossy(&diff.stdout).chars().take(4000).collect::<String>(),
        String::from_utf8_lossy(&diff.stderr)
    );
}
