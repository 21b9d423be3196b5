//! Crafted and misplaced repository objects are damage: `verify` reports
//! them (exit 4), `restore` never leaves its target because of them, and
//! `copy` refuses to carry them into another repository.
//!
//! Crafted trees are written through the library, bypassing the checks
//! every writer makes: a tree is encoded directly (encoding does not
//! validate) and stored as a tree blob by the packer, with a snapshot
//! pointing to it.
use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_backend::LocalBackend;
use arca_core::internals::pack::BlobType;
use arca_core::internals::packer::Packer;
use arca_core::internals::tree::Tree;
use arca_core::Repository;
use arca_core::{BlobId, DataId, Id, TreeId};
use arca_core::{Node, NodeKind};
use arca_core::{Snapshot, Strategy};
use common::*;

/// Writes blobs and trees into an existing repository, unchecked.
struct Crafter {
    repo: Repository,
    packer: Packer,
}

impl Crafter {
    fn open(arca: &Arca) -> Crafter {
        let backend = Arc::new(LocalBackend::new(&arca.repo));
        let repo = Repository::open(backend, Some(&arca.password)).expect("open the repository");
        let index = repo.load_index().expect("load the index");
        let packer = Packer::new(&repo, Arc::new(index), Default::default(), false, 1);
        Crafter { repo, packer }
    }

    fn blob(&self, kind: BlobType, bytes: &[u8]) -> Id {
        let id = self.repo.crypto().blob_id(bytes);
        if self.packer.claim(BlobId(id)) {
            self.packer.add(kind, BlobId(id), bytes).expect("store a blob");
        }
        id
    }

    /// A file node holding `content`.
    fn file(&self, name: &[u8], content: &[u8]) -> Node {
        let mut n = Node::new(name.to_vec(), NodeKind::File);
        n.mode = 0o644;
        n.size = content.len() as u64;
        n.content = vec![DataId(self.blob(BlobType::Data, content))];
        n
    }

    /// A tree stored as given: not sorted, not validated.
    fn tree(&self, nodes: Vec<Node>) -> TreeId {
        TreeId(self.blob(BlobType::Tree, &Tree { nodes }.encode()))
    }

    fn dir(&self, name: &[u8], nodes: Vec<Node>) -> Node {
        let mut n = Node::new(name.to_vec(), NodeKind::Dir);
        n.mode = 0o755;
        n.subtree = Some(self.tree(nodes));
        n
    }

    /// Finishes the packs and index, writes a snapshot of `/src` with this
    /// root tree; returns its id.
    fn snapshot(self, root: TreeId) -> String {
        self.packer.finish().expect("finish the packs");
        let snap = Snapshot {
            time: "2026-12-01T00:00:00.000000000+00:00".into(),
            tree: root,
            paths: vec!["/src".into()],
            host: "crafted".into(),
            strategy: Strategy::Full,
            ..Default::default()
        };
        self.repo.save_snapshot(&snap).expect("save the snapshot").to_hex()
    }
}

/// A new repository in a temporary folder (gone with the first value),
/// its folder, and a crafter writing into it.
fn crafted() -> (tempfile::TempDir, PathBuf, Arca, Crafter) {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let c = Crafter::open(&arca);
    (tmp, base, arca, c)
}

/// Every file and folder below `dir`, with its content (files) or kind.
fn contents(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    walk(dir, &mut |p, md| {
        let what = if md.is_file() {
            format!("file {:?}", fs::read(p).unwrap())
        } else {
            format!("{:?} {:o}", md.file_type(), md.mode_bits())
        };
        m.insert(p.to_path_buf(), what);
    });
    m
}

trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for fs::Metadata {
    fn mode_bits(&self) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(&self.permissions())
    }
}

/// `verify`'s JSON, asserting exit 4 (damage).
#[track_caller]
fn verify_damaged(arca: &Arca, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["verify"];
    args.extend_from_slice(extra);
    let out = arca.run_json(&args).code_is(4);
    let v = out.json();
    assert_eq!(v["valid"], false, "{v}");
    v
}

fn texts(v: &serde_json::Value, key: &str) -> Vec<String> {
    jarr(v, key).iter().map(|e| e.as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn entry_names_that_leave_their_folder_are_damage() {
    let bad: [&[u8]; 8] = [b"..", b"../x", b"a/../../x", b"/abs/path", b".", b"", b"a/b", b"a\0b"];
    for name in bad {
        let shown = name.escape_ascii().to_string();
        let (_tmp, base, arca, c) = crafted();
        // /src/ok is intact; /src/d holds the bad name, a file that a
        // naive restore would write outside the target.
        let d = c.dir(b"d", vec![c.file(name, b"escaped!")]);
        let ok = c.file(b"ok", b"fine");
        let src = c.dir(b"src", vec![d, ok]);
        let root = c.tree(vec![src]);
        let snap = c.snapshot(root);

        let v = verify_damaged(&arca, &["--read-data"]);
        assert_eq!(texts(&v, "corrupted"), vec!["/src/d/".to_string()], "{shown}: {v}");
        let errors = texts(&v, "errors");
        assert!(
            errors.iter().any(|e| e.starts_with("/src/d/:") && e.contains(&format!("\"{shown}\""))),
            "{shown}: the folder and the escaped name are in the errors: {v}"
        );
        assert_eq!(jarr(&v, "snapshots")[0]["valid"], false, "{v}");
        verify_damaged(&arca, &[]);

        // Restore: the folder's listing is refused, reported, and nothing
        // appears outside the target (which sits inside a sandbox).
        let sandbox = base.join("sandbox");
        let target = sandbox.join("deep/target");
        fs::create_dir_all(&target).unwrap();
        fs::write(sandbox.join("deep/x"), b"untouched").unwrap();
        let before: BTreeMap<_, _> =
            contents(&sandbox).into_iter().filter(|(p, _)| !p.starts_with(&target)).collect();
        let out = arca.run_json(&["restore", &snap, "--target", target.to_str().unwrap()]).code_is(1);
        let r = out.json();
        assert_eq!(r["success"], false, "{r}");
        let errs = r["errors"].to_string();
        assert!(errs.contains("/src/d") && errs.contains("invalid name"), "{shown}: {r}");
        let after: BTreeMap<_, _> =
            contents(&sandbox).into_iter().filter(|(p, _)| !p.starts_with(&target)).collect();
        assert_eq!(before, after, "{shown}: nothing outside the target changed");
        assert_eq!(fs::read(target.join("src/ok")).unwrap(), b"fine", "{shown}: the intact file is restored");
        assert_eq!(fs::read_dir(target.join("src/d")).unwrap().count(), 0, "{shown}");
        assert!(!base.join("abs").exists() && !Path::new("/abs/path").exists());

        // Copy refuses to carry it.
        let other = arca.at(&base.join("other"));
        other.init();
        let out = arca.run_env(
            false,
            &["copy", "--to", other.repo.to_str().unwrap()],
            &[("ARCA_TO_PASSWORD", &arca.password)],
        );
        assert_ne!(out.code, 0, "{shown}: {}", out.describe());
        assert!(out.stderr.contains(&format!("\"{shown}\"")), "{shown}: {}", out.describe());
        assert!(other.snapshots().is_empty(), "{shown}: no snapshot was copied");
    }
}

#[test]
fn duplicate_unsorted_and_contradictory_entries_are_damage() {
    let (_tmp, _, arca, c) = crafted();
    let dup = c.dir(b"dup", vec![c.file(b"f", b"one"), c.file(b"f", b"two")]);
    let unsorted = c.dir(b"unsorted", vec![c.file(b"b", b"b"), c.file(b"a", b"a")]);
    let mut fifo = Node::new(b"p".to_vec(), NodeKind::Fifo);
    fifo.content = c.file(b"x", b"data of a fifo").content;
    let contradictory = c.dir(b"wrong", vec![fifo]);
    let src = c.dir(b"src", vec![dup, unsorted, contradictory, c.file(b"z", b"fine")]);
    let root = c.tree(vec![src]);
    c.snapshot(root);
    let v = verify_damaged(&arca, &[]);
    assert_eq!(texts(&v, "corrupted"), vec!["/src/dup/", "/src/unsorted/", "/src/wrong/"], "{v}");
    let errors = texts(&v, "errors").join("\n");
    for why in ["\"f\" appears more than once", "\"a\" is out of order", "\"p\" is a fifo but has content"] {
        assert!(errors.contains(why), "{why}: {v}");
    }
}

#[test]
fn folders_sharing_subtrees_cannot_expand_for_ever() {
    let (_tmp, _, arca, c) = crafted();
    // 40 levels, each folder's `a` and `b` the same subtree: 2^41 entries
    // from 41 small trees.
    let mut below = c.tree(vec![c.file(b"f", b"leaf")]);
    for _ in 0..40 {
        let nodes = [b"a", b"b"]
            .iter()
            .map(|n| {
                let mut d = Node::new(n.to_vec(), NodeKind::Dir);
                d.subtree = Some(below);
                d
            })
            .collect();
        below = c.tree(nodes);
    }
    let mut src = Node::new(b"src".to_vec(), NodeKind::Dir);
    src.subtree = Some(below);
    let root = c.tree(vec![src]);
    let snap = c.snapshot(root);
    for extra in [&[][..], &["--read-data"][..]] {
        let v = verify_damaged(&arca, extra);
        assert_eq!(texts(&v, "corrupted"), vec!["/src/"], "{v}");
        let errors = texts(&v, "errors").join("\n");
        assert!(
            errors.contains(&format!("snapshot {}", &snap[..8])) && errors.contains("expands to more than"),
            "{v}"
        );
    }
}

/// A root tree `/src/d/d/.../d/f`, `levels` folders `d` deep.
fn chain(c: &Crafter, levels: usize, bottom: &[u8]) -> TreeId {
    let mut below = c.tree(vec![c.file(b"f", bottom)]);
    for _ in 0..levels {
        let mut d = Node::new(b"d".to_vec(), NodeKind::Dir);
        d.subtree = Some(below);
        below = c.tree(vec![d]);
    }
    let mut src = Node::new(b"src".to_vec(), NodeKind::Dir);
    src.subtree = Some(below);
    c.tree(vec![src])
}

#[test]
fn folders_nested_beyond_any_legal_path_are_an_error_not_a_crash() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    // Deeper than MAX_DEPTH (4,096): no legal path (4,096 bytes) nests more
    // than 2,048 folders. Every level is its own tree (ids are hashes of
    // content, so a cycle cannot be built): the count of levels is what
    // costs, and beyond the limit every depth behaves the same.
    let levels = 4096 + 200; // arca_core::repository::walk::MAX_DEPTH + 200
    let c = Crafter::open(&arca);
    let first = chain(&c, levels, b"bottom");
    let first = c.snapshot(first);
    let c = Crafter::open(&arca);
    let second = chain(&c, levels, b"changed");
    let second = c.snapshot(second);

    let v = verify_damaged(&arca, &[]);
    assert_eq!(texts(&v, "corrupted"), vec!["/src/"], "{v}");
    assert!(texts(&v, "errors").join("\n").contains("nested deeper than 4096 levels"), "{v}");
    let other = arca.at(&base.join("other"));
    other.init();
    let to = other.repo.display().to_string();
    for args in [
        vec!["ls".to_string(), first.clone()],
        vec!["restore".to_string(), first.clone(), "--target".into(), base.join("t").display().to_string()],
        vec![
            "export".to_string(),
            first.clone(),
            "--output".into(),
            base.join("e.tar").display().to_string(),
        ],
        vec!["diff".to_string(), first.clone(), second.clone()],
        vec!["copy".to_string(), first.clone(), "--to".into(), to],
    ] {
        let out = arca.run_env(false, &args, &[("ARCA_TO_PASSWORD", &arca.password)]);
        assert!(out.code > 0, "an error, not a crash: {}", out.describe());
        assert!(out.stderr.contains("nested deeper than 4096 levels"), "{}", out.describe());
    }
}

#[test]
fn a_file_whose_size_is_not_its_content_length_is_corrupted() {
    let (_tmp, _, arca, c) = crafted();
    let mut wrong = c.file(b"wrong", b"ten bytes!");
    wrong.size = 4096;
    let src = c.dir(b"src", vec![c.file(b"right", b"fine"), wrong]);
    let root = c.tree(vec![src]);
    c.snapshot(root);
    for extra in [&[][..], &["--read-data"][..]] {
        let v = verify_damaged(&arca, extra);
        assert_eq!(texts(&v, "corrupted"), vec!["/src/wrong"], "{v}");
        assert!(
            texts(&v, "errors")
                .join("\n")
                .contains("/src/wrong: size 4096 differs from the 10 bytes of its content"),
            "{v}"
        );
    }
}

#[test]
fn a_pack_moved_to_another_data_folder_is_missing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 39, 200_000, 7);
    let arca = Arca::new(&base);
    arca.init();
    arca.backup(&[&src], &[]);
    assert_eq!(arca.verify(&[]).code, 0);
    // The largest pack holds file data; move it to the next data/xx folder.
    let mut packs = Vec::new();
    walk(&arca.repo.join("data"), &mut |p, md| {
        if md.is_file() {
            packs.push((md.len(), p.to_path_buf()));
        }
    });
    packs.sort();
    let (_, pack) = packs.last().unwrap().clone();
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let folder = u8::from_str_radix(&name[..2], 16).unwrap();
    let wrong = arca.repo.join(format!("data/{:02x}", folder.wrapping_add(1)));
    fs::create_dir_all(&wrong).unwrap();
    fs::rename(&pack, wrong.join(&name)).unwrap();

    let v = verify_damaged(&arca, &[]);
    let errors = texts(&v, "errors").join("\n");
    assert!(errors.contains(&name) && errors.contains("pack is missing"), "{v}");
    let missing = texts(&v, "missing");
    assert!(!missing.is_empty(), "{v}");
    for f in &missing {
        assert!(f.starts_with(src.to_str().unwrap()), "{f}: {v}");
    }
    let warnings = texts(&v, "warnings").join("\n");
    let misplaced = format!("data/{:02x}/{name}", folder.wrapping_add(1));
    assert!(
        warnings.contains(&misplaced) && warnings.contains(&format!("belongs at data/{}/{name}", &name[..2])),
        "the misplaced file is named: {v}"
    );
    // Moved back, all is well again.
    fs::rename(wrong.join(&name), &pack).unwrap();
    assert_eq!(arca.verify(&[]).code, 0);
}

/// A blob sealed with the repository's key under an id that is not its
/// content's opens fine: only the plaintext's hash tells. `verify
/// --read-data` checks it while decompressing in pieces, on blobs big
/// enough to come in many pieces, and names the file; the honest files
/// beside it are not damaged.
#[test]
fn a_blob_stored_under_another_id_is_corrupted() {
    let (_tmp, base, arca, c) = crafted();
    // 3 MB that compress well: a zstd frame of many 128 KiB pieces.
    let text: Vec<u8> =
        (0..3_000_000u32).map(|i| b"abcdefgh"[(i / 7 % 8) as usize] ^ (i % 3) as u8).collect();
    let mut liar_text = text.clone();
    liar_text[2_500_000] ^= 0x20;
    let honest = c.file(b"honest", &text);
    let claimed = c.repo.crypto().blob_id(&liar_text[..liar_text.len() - 1]);
    if c.packer.claim(BlobId(claimed)) {
        c.packer.add(BlobType::Data, BlobId(claimed), &liar_text).expect("store a blob");
    }
    let mut liar = Node::new(b"liar".to_vec(), NodeKind::File);
    liar.mode = 0o644;
    liar.size = liar_text.len() as u64;
    liar.content = vec![DataId(claimed)];
    let src = c.dir(b"src", vec![honest, liar]);
    let root = c.tree(vec![src]);
    let snap = c.snapshot(root);
    let v = verify_damaged(&arca, &["--read-data"]);
    assert_eq!(texts(&v, "corrupted"), vec!["/src/liar"], "{v}");
    assert!(texts(&v, "errors").join("\n").contains("does not match its id"), "{v}");
    // A restore writes a blob as it is decompressed, and learns that it
    // does not match only at its end: the file is then never named, and
    // nothing of it is left behind; the honest file is restored.
    let target = base.join("target");
    let out = arca.run_json(&["restore", &snap, "--target", target.to_str().unwrap()]).code_is(1);
    let r = out.json();
    let errs = r["errors"].to_string();
    assert!(errs.contains("/src/liar") && errs.contains("does not match its id"), "{r}");
    assert!(fs::read(target.join("src/honest")).unwrap() == text, "the honest file is restored");
    let left: Vec<_> = fs::read_dir(target.join("src")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("honest")], "nothing but the honest file");
}
