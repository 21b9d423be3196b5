//! The comparison the end-to-end tests rely on finds every kind of
//! difference, and accepts a faithful copy (`cp -a`). Without this, a broken
//! restore could pass unnoticed.
use crate::common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;

#[test]
fn harness_selftest() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("special");
    build_special_tree(&src);
    let sparse = fs::metadata(src.join("sparse.img")).unwrap();
    assert!(sparse.blocks() * 512 < 8 << 20, "the source sparse file is not sparse on this file system");

    let copy = base.join("copy");
    cp_a(&src, &copy);
    assert_trees_equal(&src, &copy, Compare::default());

    let count = |f: &dyn Fn(&std::path::Path)| {
        let c = base.join("mutated");
        let _ = std::process::Command::new("rm").arg("-rf").arg(&c).status();
        cp_a(&src, &c);
        f(&c);
        tree_differences(&src, &c, Compare::default())
    };
    let d = count(&|c| chmod(&c.join("setuid_file"), 0o755));
    assert!(d.iter().any(|s| s.contains("mode")), "{d:?}");
    let d = count(&|c| set_mtime(&c.join("sub"), 1_500_000_000, 1));
    assert!(d.iter().any(|s| s.contains("mtime")), "{d:?}");
    let d = count(&|c| set_mtime(&c.join("dangling"), 1_500_000_000, 1));
    assert!(d.iter().any(|s| s.contains("mtime")), "symlink mtime: {d:?}");
    let d = count(&|c| fs::write(c.join("plain.txt"), b"hello, arcb\n").unwrap());
    assert!(d.iter().any(|s| s.contains("content differs")), "{d:?}");
    let d = count(&|c| {
        fs::remove_file(c.join("sub/hard_b")).unwrap();
        fs::copy(c.join("hard_a"), c.join("sub/hard_b")).unwrap();
    });
    assert!(d.iter().any(|s| s.contains("hard links")), "{d:?}");
    let d = count(&|c| xattr::remove(c.join("xattr_dir"), "user.dirattr").unwrap());
    assert!(d.iter().any(|s| s.contains("xattrs")), "{d:?}");
    let d = count(&|c| fs::remove_file(c.join(std::ffi::OsStr::new("naïve – 日本.txt"))).unwrap());
    assert!(d.iter().any(|s| s.contains("missing")), "{d:?}");
    let d = count(&|c| fs::write(c.join("extra"), b"").unwrap());
    assert!(d.iter().any(|s| s.contains("extra")), "{d:?}");
    if is_root() {
        let d = count(&|c| std::os::unix::fs::lchown(c.join("owned_link"), Some(0), Some(0)).unwrap());
        assert!(d.iter().any(|s| s.contains("owner")), "{d:?}");
    }
}
