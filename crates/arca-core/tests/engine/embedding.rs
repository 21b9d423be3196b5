//! arca-core embedded in a program that sets nothing up: the engines are
//! called from a plain thread with a 2 MiB stack (a default thread's, and
//! rayon's), and must still handle the deepest tree a legal path allows,
//! since their walks run on the library's own pool (arca_core::pool).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_backend::LocalBackend;
use arca_core::ops::archive::{export, Format};
use arca_core::ops::backup::{backup, BackupOptions};
use arca_core::ops::diff::diff;
use arca_core::ops::restore::{restore, RestoreOptions};
use arca_core::ops::verify::{verify, VerifyOptions};
use arca_core::progress::NoProgress;
use arca_core::Repository;
use arca_core::{Encryption, InitOptions};

const SMALL_STACK: usize = 2 << 20;

/// Runs `f` on a fresh thread with a default-sized stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawning the test thread")
        .join()
        .unwrap()
}

/// A writer the export can own.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_deepest_legal_tree_from_a_thread_with_a_small_stack() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let (src, target, repo_dir) = (base.join("deep"), base.join("t"), base.join("repo"));
    // As deep as possible while the restored path (the target, then the
    // source's absolute path) still fits in PATH_MAX (4,096 bytes).
    let depth = (4080 - target.as_os_str().len() - src.as_os_str().len()) / 2;
    assert!(depth >= 2_000, "the temporary folder's path is too long for a deep tree: {}", base.display());
    let rel: PathBuf = std::iter::repeat_n("d", depth).collect();
    fs::create_dir_all(src.join(&rel)).unwrap();
    fs::write(src.join(&rel).join("leaf"), b"at the bottom\n").unwrap();

    let (src2, target2, rel2) = (src.clone(), target.clone(), rel.clone());
    let exported = on_small_stack(move || {
        let backend = Arc::new(LocalBackend::new(&repo_dir));
        let repo = Repository::init(
            backend,
            None,
            &InitOptions::default().encryption(Encryption::None).compression_level(3),
        )
        .unwrap();
        let opts = BackupOptions::default().paths(vec![src2.clone()]);
        let first = backup(&repo, &opts, &NoProgress).unwrap();
        assert!(first.snapshot.summary.errors.is_empty(), "{:?}", first.snapshot.summary.errors);
        fs::write(src2.join(&rel2).join("leaf"), b"changed at the bottom\n").unwrap();
        let second = backup(&repo, &opts, &NoProgress).unwrap();
        let id2 = second.id.unwrap();

        let v = verify(&repo, &VerifyOptions::default().read_data(true), &NoProgress).unwrap();
        assert!(v.valid, "{:?} {:?}", v.corrupted, v.missing);

        let index = repo.load_index().unwrap();
        let changes = diff(&repo, &index, &first.snapshot.tree, &second.snapshot.tree).unwrap();
        assert_eq!(changes.len(), 1, "only the leaf changed: {} changes", changes.len());

        let opts = RestoreOptions::default().target(target2.clone()).verify(true);
        let r = restore(&repo, &id2, &opts, &NoProgress).unwrap();
        assert!(r.success, "{:?}", r.errors);
        assert_eq!(r.verified, 1);

        // Export walks the tree too.
        let out = Shared::default();
        export(&repo, &index, &second.snapshot.tree, None, Format::Tar, Box::new(out.clone()), &NoProgress)
            .unwrap();
        let bytes = out.0.lock().unwrap().clone();
        bytes
    });

    let restored = target.join(src.strip_prefix("/").unwrap()).join(&rel).join("leaf");
    assert_eq!(fs::read(&restored).unwrap(), b"changed at the bottom\n");
    let mut archive = tar::Archive::new(&exported[..]);
    let leaf = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().ends_with(Path::new("d/leaf")))
        .map(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            s
        });
    assert_eq!(leaf.as_deref(), Some("changed at the bottom\n"), "the export holds the deep leaf");
}
