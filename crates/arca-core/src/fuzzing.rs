//! The entry points of the fuzz targets in `fuzz/`, one per decoder.
//!
//! They live here, not in the fuzz crate, so that the corpus replay test
//! (`tests/engine/fuzz_corpus.rs`) calls exactly what the fuzzers call: CI checks
//! every corpus input without building the fuzzers. Each function takes any
//! bytes and must return without panicking; a panic is the bug a fuzzer
//! reports. Not part of the library's API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::crypto::{Crypto, MasterKey};
use crate::data::packer::Packer;
use crate::format::config::{Config, Encryption};
use crate::format::id::{DataId, Id, SnapshotId, TreeId};
use crate::format::index::{Index, IndexFile};
use crate::format::keyfile::KeyFile;
use crate::format::pack::BlobType;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::repository::Repository;

/// The body of a fuzz target.
pub type Target = fn(&[u8]);

/// The targets, by the name of their fuzzer and corpus folder.
pub const TARGETS: [(&str, Target); 11] = [
    ("config", config),
    ("key_file", key_file),
    ("pack_header", pack_header),
    ("index_file", index_file),
    ("tree", tree),
    ("snapshot", snapshot),
    ("lock", lock),
    ("decompress", decompress),
    ("envelope", envelope),
    ("restore_tree", restore_tree),
    ("wal_record", wal_record),
];

/// The fixed key of the fuzzers (sealed inputs in the corpus use it).
pub fn test_key() -> MasterKey {
    MasterKey { encrypt: [7; 32], id: [9; 32], chunker_seed: 11, config_hash: None }
}

pub fn config(data: &[u8]) {
    if let Ok(c) = Config::decode(data, "fuzz/config") {
        // What a decoded config is used for right away.
        let _ =
            Config::decode(&c.encode(), "fuzz/config").expect("a decoded config encodes and decodes again");
    }
}

pub fn key_file(data: &[u8]) {
    if let Ok(k) = KeyFile::decode(data, "fuzz/key") {
        // Without a password: "none" keys are opened, Argon2 is not run.
        let _ = k.unwrap_key(None, "fuzz/key");
    }
}

/// The first byte picks the layer: 0 the whole pack bytes (trailer, header
/// range, sealed header); else the rest is the header plaintext, sealed
/// with the test key (scheme 1 if the byte is odd) behind a blob area of
/// `byte * 64` bytes, so the parser behind the envelope is reached.
pub fn pack_header(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let crypto = Crypto::new(&test_key(), mode % 2 == 1);
    if mode == 0 {
        let _ = crate::format::pack::entries_of(rest, &crypto, "fuzz/pack");
        return;
    }
    let mut pack = vec![0u8; mode as usize * 64];
    let sealed = crypto.seal(rest);
    pack.extend_from_slice(&sealed);
    pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    pack.extend_from_slice(crate::format::pack::MAGIC);
    let _ = crate::format::pack::entries_of(&pack, &crypto, "fuzz/pack");
}

pub fn index_file(data: &[u8]) {
    if let Ok(f) = IndexFile::decode(data, "fuzz/index") {
        let mut index = Index::default();
        index.add_file(Id::of_bytes(data), &f);
        index.compact();
        let _ = index.total_pack_bytes();
        for (id, _) in index.blobs() {
            let _ = index.locations(&id).map(|l| index.pack(&l).size).fold(0, u64::saturating_add);
        }
    }
}

pub fn tree(data: &[u8]) {
    if let Ok(t) = Tree::decode(data) {
        // A tree that decodes is one a writer accepts, and survives a
        // round trip unchanged.
        t.validate().expect("a decoded tree is valid");
        assert_eq!(Tree::decode(&t.encode()).ok(), Some(t), "a decoded tree round-trips");
    }
}

pub fn snapshot(data: &[u8]) {
    if let Ok(s) = Snapshot::decode(data, "fuzz/snapshot") {
        let _ = s.timestamp();
        let _ = s.metadata(&SnapshotId(Id::of_bytes(data)));
        if let Some(b) = &s.base_backup {
            // What retention and verify compute of a base backup.
            let _ = (b.start_segno(), b.stop_segno());
            let _ = crate::ops::wal::survey(&[], &[b]);
        }
    }
}

/// A WAL archive record's plaintext, then what `pg wal`, verify and
/// prune make of it: its name, its segment, the archive's gaps beside a
/// base backup, what retention would remove.
pub fn wal_record(data: &[u8]) {
    if let Ok(r) = crate::format::wal::WalRecord::decode(data, "fuzz/wal") {
        let _ = r.timestamp();
        if let Ok(n) = crate::format::wal::WalName::parse(&r.name) {
            let _ = n.segno(r.size);
        }
        let base = crate::format::snapshot::BaseBackup {
            cluster: r.cluster.clone(),
            timeline: 1,
            start_lsn: "0/2000028".into(),
            stop_lsn: "0/2000100".into(),
            segment_size: r.size,
        };
        let _ = crate::ops::wal::survey(std::slice::from_ref(&r), &[&base]);
        let _ = crate::ops::wal::unneeded(&[(String::new(), r.clone())], &[&base]);
    }
}

pub fn lock(data: &[u8]) {
    // What `list_locks` does with a lock's plaintext, then `is_stale`.
    if let Ok(info) = serde_json::from_slice::<crate::format::lock::LockInfo>(data) {
        let _ = info.is_stale();
    }
}

pub fn decompress(data: &[u8]) {
    let object = || "fuzz/compressed".to_string();
    let whole = crate::data::compress::decode(data.to_vec(), &object);
    let mut out = Vec::new();
    let pieces = crate::data::compress::decode_pieces(data, &object, &mut |p| out.extend_from_slice(p));
    match (whole, pieces) {
        (Ok(a), Ok(n)) => {
            assert_eq!(n, out.len() as u64, "the length returned is what was handed on");
            assert_eq!(a, out, "both decoders agree");
        }
        (Err(_), Err(_)) => {}
        // Pieces refuse the windows over 16 MiB that whole frames can use.
        (Ok(_), Err(e)) if e.to_string().contains(crate::data::compress::WINDOW_TOO_LARGE) => {}
        (a, b) => panic!("the decoders disagree: {:?} vs {:?}", a.map(|d| d.len()), b.map(|_| out.len())),
    }
}

/// Opens the input as an envelope under the test key, with both schemes;
/// the in-place opener must agree with the copying one.
pub fn envelope(data: &[u8]) {
    for encrypted in [false, true] {
        let crypto = Crypto::new(&test_key(), encrypted);
        let copied = crypto.open(data).ok();
        let mut buf = data.to_vec();
        let in_place = crypto.open_in_place(&mut buf).ok().map(|p| p.to_vec());
        assert_eq!(copied, in_place, "both openers agree");
    }
}

/// A folder removed when dropped (tempfile is only a dev-dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Option<TempDir> {
        // On tmpfs the repository's fsyncs cost nothing: many more runs.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let p = base.join(format!("arca-fuzz-{}", Id::random().to_hex()));
        std::fs::create_dir(&p).ok()?;
        Some(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Splits `data` into length-prefixed parts (u16le length, then bytes).
fn parts(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 32 {
        let len = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        out.push(&data[2..2 + len]);
        data = &data[2 + len..];
    }
    out
}

/// Every entry below `dir` (not following symlinks): path -> what it is.
fn listing(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        let what = if md.is_file() {
            format!("file {:?}", std::fs::read(&p).ok())
        } else {
            format!("{:?} {:?}", md.file_type(), std::fs::read_link(&p).ok())
        };
        out.insert(p.clone(), what);
        if md.is_dir() {
            listing(&p, skip, out);
        }
    }
}

/// Builds trees from the input, stores them unchecked (as a crafted
/// repository would) in an unencrypted repository in a temporary folder,
/// and restores the last one into `sandbox/deep/target`: nothing in the
/// sandbox outside the target may change, whatever the trees say.
///
/// The input is up to 32 length-prefixed parts, each a postcard tree. A
/// fuzzer cannot guess blob ids, so ids are remapped: a folder's subtree
/// `id[0] % i` names the stored tree of an earlier part (`i` parts before
/// this one), a file's content ids name blobs of a few fixed contents.
pub fn restore_tree(data: &[u8]) {
    let Some(dir) = TempDir::new() else { return };
    let backend = Arc::new(arca_backend::LocalBackend::new(dir.0.join("repo")));
    let Ok(repo) = Repository::init(
        backend,
        None,
        &crate::InitOptions::default().encryption(Encryption::None).compression_level(1),
    ) else {
        return;
    };
    let packer = Packer::new(&repo, Arc::new(Index::default()), Default::default(), false, 1);
    let contents: [&[u8]; 3] = [b"", b"escaped", &[0u8; 300]];
    let mut data_ids = Vec::new();
    for c in contents {
        let id = DataId(repo.crypto().blob_id(c));
        if packer.claim(id) && packer.add(BlobType::Data, id, c).is_err() {
            return;
        }
        data_ids.push(id);
    }
    let mut stored: Vec<TreeId> = Vec::new();
    // Entries a walk of each stored tree visits: folders sharing subtrees
    // expand exponentially, and restore is bounded only by
    // walk::MAX_ENTRIES (tested elsewhere); here that would be a timeout.
    let mut expands: Vec<u64> = Vec::new();
    for part in parts(data) {
        // Unchecked: the rules are what restore must be safe without.
        let Ok(mut t) = postcard::from_bytes::<Tree>(part) else { continue };
        for n in &mut t.nodes {
            if let Some(sub) = &mut n.subtree {
                match stored.len() {
                    0 => n.subtree = None,
                    len => *sub = stored[sub.bytes()[0] as usize % len],
                }
            }
            for c in &mut n.content {
                *c = data_ids[c.bytes()[0] as usize % data_ids.len()];
            }
            if n.kind == NodeKind::File && n.size > 1 << 20 {
                n.size = 1 << 20;
            }
        }
        let mut entries = t.nodes.len() as u64;
        for n in &t.nodes {
            if let (NodeKind::Dir, Some(sub)) = (n.kind, &n.subtree) {
                let i = stored.iter().position(|s| s == sub).expect("remapped to a stored tree");
                entries = entries.saturating_add(expands[i]);
            }
        }
        if entries > 10_000 {
            continue;
        }
        let bytes = t.encode();
        let id = TreeId(repo.crypto().blob_id(&bytes));
        if packer.claim(id) && packer.add(BlobType::Tree, id, &bytes).is_err() {
            return;
        }
        stored.push(id);
        expands.push(entries);
    }
    let Some(root) = stored.last().copied() else { return };
    if packer.finish().is_err() {
        return;
    }
    let Ok(index) = repo.load_index() else { return };
    let sandbox = dir.0.join("sandbox");
    let target = sandbox.join("deep/target");
    if std::fs::create_dir_all(&target).is_err()
        || std::fs::write(sandbox.join("deep/canary"), b"untouched").is_err()
        || std::fs::create_dir_all(sandbox.join("sibling/inner")).is_err()
    {
        return;
    }
    let mut before = BTreeMap::new();
    listing(&sandbox, &target, &mut before);
    let opts = crate::ops::restore::RestoreOptions { target: target.clone(), ..Default::default() };
    // A snapshot of the whole tree, not stored: restore takes it as given.
    let snapshot = Snapshot { tree: root, paths: vec!["/".into()], ..Default::default() };
    let _ = crate::ops::restore::restore_tree(
        &repo,
        &index,
        &SnapshotId::default(),
        &snapshot,
        &opts,
        &crate::progress::NoProgress,
    );
    let mut after = BTreeMap::new();
    listing(&sandbox, &target, &mut after);
    assert_eq!(before, after, "the restore changed the sandbox outside its target");
    assert!(std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()), "the target is still a folder");
}
