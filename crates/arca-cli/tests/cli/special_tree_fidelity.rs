//! Every kind of entry and metadata survives backup and restore: symlinks
//! (also dangling), hard links, FIFOs, device nodes, special modes, owners,
//! nanosecond mtimes, user xattrs, sparse files and names that are not UTF-8.
use crate::common;

use std::os::unix::fs::MetadataExt;

use common::*;

#[test]
fn special_tree_fidelity() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("special");
    build_special_tree(&src);
    if !is_root() {
        eprintln!("note: not root: owners and device nodes are not part of this run");
    }

    let arca = Arca::new(&base);
    arca.init();
    let meta = arca.backup(&[&src], &[]);
    assert!(jarr(&meta["summary"], "errors").is_empty(), "backup reported errors: {meta}");

    let target = base.join("target");
    let res = arca.restore("latest", &target, &[]);
    assert_eq!(res["success"], true, "restore: {res}");
    assert!(jarr(&res, "errors").is_empty(), "restore reported errors: {res}");
    let copy = restored(&target, &src);
    assert_trees_equal(&src, &copy, Compare::default());

    // Spot checks that the comparison itself saw what it had to see.
    let e = entry(&copy.join("setuid_file"));
    assert_eq!(e.mode, 0o4755, "setuid bit lost");
    assert_eq!(entry(&copy.join("sticky_dir")).mode, 0o1777, "sticky bit lost");
    if is_root() {
        let o = entry(&copy.join("owned_file"));
        assert_eq!((o.uid, o.gid), (1234, 5678), "owner lost");
        assert_eq!(entry(&copy.join("chardev")).kind, "chardev");
        assert_eq!(entry(&copy.join("blockdev")).kind, "blockdev");
    }
    assert_eq!(entry(&copy.join("fifo")).kind, "fifo");
    assert_eq!(entry(&copy.join("dangling")).target.as_deref(), Some(&b"does/not/exist"[..]));
    assert_eq!(
        entry(&copy.join("sub/hard_b")).dev_ino,
        entry(&copy.join("hard_a")).dev_ino,
        "hard link lost"
    );
    assert_eq!(entry(&copy.join("xattr_dir")).xattrs.len(), 1, "directory xattr lost");
    assert_eq!(
        entry(&copy.join("link_to_plain")).mtime,
        entry(&src.join("link_to_plain")).mtime,
        "symlink mtime lost"
    );

    // The sparse file keeps its holes: it holds about 13 KB of data, so
    // anything near a chunk (512 KiB+) means zero runs were written out.
    let sparse = std::fs::metadata(copy.join("sparse.img")).unwrap();
    assert_eq!(sparse.len(), SPARSE_SIZE);
    let allocated = sparse.blocks() * 512;
    eprintln!("restored sparse file: {allocated} bytes allocated for {SPARSE_SIZE}");
    assert!(
        allocated <= 256 * 1024,
        "restored sparse file allocates {allocated} bytes for {SPARSE_SIZE} logical bytes (holes not restored)"
    );
}

/// A tree as deep as a legal path allows (about 2,000 folders): every walk
/// recurses once per level, and the 8 MiB main stack overflowed on backup
/// (the process aborted) before the walks got their own big stacks.
#[test]
fn deepest_legal_tree_survives_backup_verify_and_restore() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (src, target) = (base.join("deep"), base.join("t"));
    // As deep as possible while the restored path (the target, then the
    // source's absolute path) still fits in PATH_MAX.
    let depth = (4080 - target.as_os_str().len() - src.as_os_str().len()) / 2;
    let rel: std::path::PathBuf = std::iter::repeat_n("d", depth).collect();
    std::fs::create_dir_all(src.join(&rel)).unwrap();
    std::fs::write(src.join(&rel).join("leaf"), b"at the bottom\n").unwrap();

    let arca = Arca::new(&base);
    arca.init();
    let meta = arca.backup(&[&src], &[]);
    assert!(jarr(&meta["summary"], "errors").is_empty(), "backup of a tree {depth} deep: {meta}");
    let v = arca.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");
    let res = arca.restore("latest", &target, &[]);
    assert_eq!(res["success"], true, "restore of a tree {depth} deep: {res}");
    let leaf = restored(&target, &src).join(&rel).join("leaf");
    assert_eq!(std::fs::read(&leaf).unwrap(), b"at the bottom\n");
}
