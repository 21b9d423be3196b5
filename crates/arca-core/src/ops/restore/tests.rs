use super::*;
use std::os::unix::fs::PermissionsExt;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_small_folder_set_reopens_folders_from_their_ancestors() {
    let dir = tempfile::tempdir().unwrap();
    let mut deep = dir.path().join("t");
    let mut paths = Vec::new();
    let mut snap = Vec::new();
    for i in 0..40 {
        deep.push(format!("d{i}"));
        snap.extend_from_slice(format!("/d{i}").as_bytes());
        paths.push(snap.clone());
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf"), b"bottom").unwrap();
    let dirs = Dirs::new(open_target(&dir.path().join("t")).unwrap(), 8);
    for round in 0..3 {
        for p in paths.iter().rev().chain(paths.iter()) {
            let fd = dirs.get(p).unwrap();
            assert!(dirs.lock().fds.len() <= 8 + 1, "round {round}: the set stays bounded");
            if p == paths.last().unwrap() {
                let f = rfs::openat(&*fd, "leaf", OFlags::RDONLY, Mode::empty()).unwrap();
                assert_eq!(fs::read(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap(), b"bottom");
            }
        }
    }
    // A symlink put where a folder was is refused when it is reopened.
    let d0 = dir.path().join("t/d0");
    fs::rename(&d0, dir.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("moved"), &d0).unwrap();
    let fresh = Dirs::new(open_target(&dir.path().join("t")).unwrap(), 8);
    assert!(fresh.get(&paths[5]).is_err(), "a symlinked folder is never followed");
    assert!(open_dirs_limit() >= OPEN_DIRS_MIN);
}

#[test]
fn unnamed_files_appear_only_when_linked_and_never_replace() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dfd = File::open(d).unwrap();
    let dfd = dfd.as_fd();
    assert!(LinkUnnamed::probe(dfd).is_some(), "the test folder's filesystem has O_TMPFILE");
    assert!(names(d).is_empty(), "the probe leaves nothing behind");
    // Naming through /proc works for everyone; the empty path needs
    // CAP_DAC_READ_SEARCH (root).
    let mut ways = vec![LinkUnnamed::ProcFd];
    if meta::is_root() {
        ways.push(LinkUnnamed::EmptyPath);
    }
    for (i, way) in ways.into_iter().enumerate() {
        let name = format!("file{i}");
        let dest = d.join(&name);
        let mut f = open_unnamed(dfd, 0o640).unwrap().expect("O_TMPFILE");
        f.write_all(b"complete").unwrap();
        assert_eq!(names(d).len(), i, "{way:?}: invisible while written");
        way.link(&f, dfd, name.as_bytes()).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"complete", "{way:?}");
        assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o600, 0o600);
        // An existing name is never replaced by a link.
        let g = open_unnamed(dfd, 0o600).unwrap().unwrap();
        assert_eq!(
            way.link(&g, dfd, name.as_bytes()).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists,
            "{way:?}"
        );
        drop(g);
        assert_eq!(fs::read(&dest).unwrap(), b"complete", "{way:?}");
    }
    // Dropped unlinked: nothing is left.
    drop(open_unnamed(dfd, 0o600).unwrap().unwrap());
    assert!(names(d).iter().all(|n| n.starts_with("file")), "{:?}", names(d));
}

/// A repository (unencrypted) in `dir`, filled through the library, so
/// a test can craft any tree a hostile repository could hold.
struct Crafted {
    repo: Repository,
    packer: Option<crate::data::packer::Packer>,
}

impl Crafted {
    fn new(dir: &Path) -> Crafted {
        let backend: Arc<dyn arca_backend::Backend> =
            Arc::new(arca_backend::LocalBackend::new(dir.join("repo")));
        let repo = Repository::init(
            backend,
            None,
            &crate::InitOptions::default()
                .encryption(crate::format::config::Encryption::None)
                .compression_level(3),
        )
        .unwrap();
        let packer = crate::data::packer::Packer::new(
            &repo,
            Arc::new(Index::default()),
            crate::format::index::IdSet::default(),
            false,
            1,
        );
        Crafted { repo, packer: Some(packer) }
    }

    fn file(&self, name: &[u8], data: &[u8]) -> Node {
        let id = DataId(self.repo.crypto().blob_id(data));
        let packer = self.packer.as_ref().unwrap();
        if packer.claim(id) {
            packer.add(crate::format::pack::BlobType::Data, id, data).unwrap();
        }
        let mut n = Node::new(name.to_vec(), NodeKind::File);
        (n.mode, n.size, n.nlink, n.content) = (0o644, data.len() as u64, 1, vec![id]);
        n
    }

    /// A folder whose listing is stored as given: not through
    /// `Packer::add_tree`, which refuses to write what readers refuse.
    fn dir(&self, name: &[u8], nodes: Vec<Node>) -> Node {
        let mut tree = crate::format::tree::Tree { nodes };
        tree.sort();
        let bytes = tree.encode();
        let id = TreeId(self.repo.crypto().blob_id(&bytes));
        let packer = self.packer.as_ref().unwrap();
        if packer.claim(id) {
            packer.add(crate::format::pack::BlobType::Tree, id, &bytes).unwrap();
        }
        let mut n = Node::new(name.to_vec(), NodeKind::Dir);
        (n.mode, n.subtree) = (0o755, Some(id));
        n
    }

    /// Stores the root folder `nodes` and a snapshot of `paths`; restores
    /// it into `target`.
    fn restore(mut self, nodes: Vec<Node>, paths: &[&str], opts: RestoreOptions) -> Result<RestoreResult> {
        let root = self.packer.as_ref().unwrap().add_tree(crate::format::tree::Tree { nodes }).unwrap();
        self.packer.take().unwrap().finish().unwrap();
        let snap = crate::format::snapshot::Snapshot {
            time: "2026-01-01T00:00:00Z".into(),
            tree: root,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        let id = self.repo.save_snapshot(&snap).unwrap();
        let index = self.repo.load_index().unwrap();
        restore_tree(&self.repo, &index, &id, &snap, &opts, &crate::progress::NoProgress)
    }
}

fn opts(target: &Path) -> RestoreOptions {
    RestoreOptions { target: target.to_path_buf(), ..Default::default() }
}

#[test]
fn a_size_that_does_not_match_the_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Crafted::new(dir.path());
    let mut huge = c.file(b"huge", b"8 bytes!");
    huge.size = 1_000_000_000_000;
    let mut short = c.file(b"short", b"sixteen bytes..!");
    short.size = 3;
    let ok = c.file(b"ok", b"fine");
    let src = c.dir(b"src", vec![huge, short, ok]);
    let target = dir.path().join("t");
    let r = c.restore(vec![src], &["/src"], opts(&target)).unwrap();
    assert!(!r.success);
    let root = target.join("src");
    for name in ["huge", "short"] {
        assert!(fs::symlink_metadata(root.join(name)).is_err(), "{name} was written: {r:?}");
        let e = r.errors.iter().find(|e| e.path == root.join(name).display().to_string());
        let e = e.unwrap_or_else(|| panic!("no error for {name}: {r:?}"));
        assert!(e.error.contains("size"), "{e:?}");
    }
    assert_eq!(r.errors.len(), 2, "{r:?}");
    assert_eq!(fs::read(root.join("ok")).unwrap(), b"fine");
    assert!(names(&root).iter().all(|n| !n.starts_with(TEMP_PREFIX)), "{:?}", names(&root));
}

#[test]
fn names_that_lead_out_of_their_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Crafted::new(dir.path());
    // /src/../../escaped is the target's parent's child.
    let escaped = c.file(b"escaped", b"written outside the target");
    let up2 = c.dir(b"..", vec![escaped]);
    let up1 = c.dir(b"..", vec![up2]);
    let slash = c.file(b"../../slashed", b"written outside the target");
    let fine = c.file(b"fine", b"inside");
    let src = c.dir(b"src", vec![up1, slash, fine]);
    let target = dir.path().join("t");
    // A tree decoder that refuses such names makes /src unreadable;
    // either way nothing may land outside the target.
    let r = c.restore(vec![src], &["/src"], opts(&target)).unwrap();
    assert!(!r.success, "{r:?}");
    for name in ["escaped", "slashed"] {
        assert!(fs::symlink_metadata(dir.path().join(name)).is_err(), "{name} written outside: {r:?}");
    }
    let mut outside = names(dir.path());
    outside.retain(|n| n != "repo" && n != "t");
    assert!(outside.is_empty(), "{outside:?}");
}

type Hook = Box<dyn Fn() + Send>;
/// What a test runs between writing and verifying, by restore target:
/// tests run at once in one process, each with its own target.
static BEFORE_VERIFY: Mutex<Vec<(PathBuf, Hook)>> = Mutex::new(Vec::new());

pub(super) fn before_verify(target: &Path) {
    let hooks = BEFORE_VERIFY.lock().unwrap_or_else(|p| p.into_inner());
    hooks.iter().filter(|(t, _)| t == target).for_each(|(_, hook)| hook());
}

#[test]
fn verify_catches_a_file_altered_after_writing() {
    for victim in ["big", "sub/small"] {
        let dir = tempfile::tempdir().unwrap();
        let c = Crafted::new(dir.path());
        // Below the chunker's minimum size: one blob, as the crafted node
        // says, whatever cut points the repository's chunker seed picks.
        let big: Vec<u8> = (0..400_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let big = c.file(b"big", &big);
        let small = c.file(b"small", b"bravo bravo\n");
        let other = c.file(b"other", b"alpha\n");
        let sub = c.dir(b"sub", vec![small]);
        let src = c.dir(b"src", vec![big, sub, other]);
        let target = dir.path().join("t");
        let file = target.join("src").join(victim);
        let altered = file.clone();
        // Same size, one byte changed.
        let hook: Hook = Box::new(move || {
            use std::os::unix::fs::FileExt;
            File::options().write(true).open(&altered).unwrap().write_all_at(b"X", 0).unwrap();
        });
        BEFORE_VERIFY.lock().unwrap().push((target.clone(), hook));
        let r = c.restore(vec![src], &["/src"], RestoreOptions { verify: true, ..opts(&target) }).unwrap();
        BEFORE_VERIFY.lock().unwrap().retain(|(t, _)| *t != target);
        assert_eq!(fs::read(&file).unwrap()[0], b'X', "the hook ran");
        assert!(!r.success, "{r:?}");
        assert_eq!(r.errors.len(), 1, "exactly the altered file is reported: {r:?}");
        assert_eq!(r.errors[0].path, file.display().to_string(), "{r:?}");
        assert!(r.errors[0].error.contains("verification failed"), "{r:?}");
        assert!((2..=3).contains(&r.verified), "the other files were checked: {r:?}");
    }
}

#[test]
fn delete_never_empties_a_folder_whose_listing_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let c = Crafted::new(dir.path());
    let mut src = Node::new(b"src".to_vec(), NodeKind::Dir);
    src.mode = 0o755;
    // A listing the repository does not have.
    src.subtree = Some(TreeId(crate::format::id::Id::of_bytes(b"no such tree")));
    let target = dir.path().join("t");
    fs::create_dir_all(target.join("src/kept")).unwrap();
    fs::write(target.join("src/precious"), b"the user's").unwrap();
    let r = c.restore(vec![src], &["/src"], RestoreOptions { delete: true, ..opts(&target) }).unwrap();
    assert!(!r.success);
    assert_eq!(r.deleted, 0, "{r:?}");
    assert_eq!(fs::read(target.join("src/precious")).unwrap(), b"the user's");
    assert!(target.join("src/kept").is_dir());
    assert!(r.errors.iter().any(|e| e.path == target.join("src").display().to_string()), "{r:?}");
}

/// Folder descriptors stay bounded however many folders a tree has,
/// and folders dropped from the set are found again (here 3 x 200
/// folders, one 300 deep).
#[test]
fn open_folders_are_bounded() {
    struct MaxFds(AtomicU64);
    impl Progress for MaxFds {
        fn advance(&self, _: u64, _: u64) {
            let n = fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
            self.0.fetch_max(n, Ordering::Relaxed);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let c = Crafted::new(dir.path());
    let mut wide = Vec::new();
    for i in 0..600 {
        let f = c.file(b"f", format!("file {i}").as_bytes());
        wide.push(c.dir(format!("d{i:03}").as_bytes(), vec![f]));
    }
    let mut deep = c.dir(b"leaf", vec![c.file(b"bottom", b"bottom")]);
    for _ in 0..300 {
        deep = c.dir(b"n", vec![deep]);
    }
    wide.push(deep);
    let src = c.dir(b"src", wide);
    let target = dir.path().join("t");
    let Crafted { repo, packer } = c;
    let root = packer.as_ref().unwrap().add_tree(crate::format::tree::Tree { nodes: vec![src] }).unwrap();
    packer.unwrap().finish().unwrap();
    let snap = crate::format::snapshot::Snapshot {
        time: "2026-01-01T00:00:00Z".into(),
        tree: root,
        paths: vec!["/src".into()],
        ..Default::default()
    };
    let id = repo.save_snapshot(&snap).unwrap();
    let index = repo.load_index().unwrap();
    let before = fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let progress = MaxFds(AtomicU64::new(0));
    let o = RestoreOptions { verify: true, ..opts(&target) };
    let r = restore_tree(&repo, &index, &id, &snap, &o, &progress).unwrap();
    assert!(r.success, "{r:?}");
    assert_eq!(r.files, 601);
    let max = progress.0.into_inner();
    // The set, plus one chain being reopened, plus files and packs in use.
    let limit = open_dirs_limit() as u64;
    assert!(max > 0 && max < before + limit + 64, "{max} descriptors open (before: {before}, kept: {limit})");
    let mut bottom = target.join("src");
    for _ in 0..300 {
        bottom.push("n");
    }
    assert_eq!(fs::read(bottom.join("leaf/bottom")).unwrap(), b"bottom");
    assert_eq!(fs::read(target.join("src/d599/f")).unwrap(), b"file 599");
}

#[test]
fn a_planned_entry_stays_small() {
    // A restore holds one item per entry until it is done: a million files
    // at the 296 bytes of a path and a whole `Node` (plus the name and
    // owner names it carried on the heap) were about 500 MB.
    let size = std::mem::size_of::<Item>();
    assert!(size <= 88, "an item is {size} bytes");
}
