//! Writes seed inputs for the fuzzers: valid encodings of every object
//! kind, built by the same code that writes repositories, into
//! `DIR/<target>/<blake3 of the input>` (default `fuzz/corpus`).
//!
//! `cargo run -p arca-core --example fuzz_seeds -- fuzz/corpus`
//! (see fuzz/README.md; minimize afterwards with `cargo fuzz cmin`).

use std::path::PathBuf;

use arca_core::fuzzing::test_key;
use arca_core::internals::crypto::Crypto;
use arca_core::internals::index::{IndexFile, IndexPack};
use arca_core::internals::keyfile::KeyFile;
use arca_core::internals::pack::{BlobType, PackBuilder};
use arca_core::internals::tree::Tree;
use arca_core::{
    Config, DataId, Encryption, Id, Node, NodeKind, Snapshot, SnapshotId, Strategy, Summary, Timestamp,
    TreeId, Xattr,
};

fn tree_examples() -> Vec<Tree> {
    let mut file = Node::new(b"file.txt".to_vec(), NodeKind::File);
    file.mode = 0o644;
    file.size = 300;
    file.content = vec![DataId(Id([1; 32])), DataId(Id([2; 32]))];
    file.mtime = Timestamp { secs: 1_700_000_000, nanos: 5 };
    file.user = Some("root".into());
    file.xattrs = vec![Xattr { name: b"user.k".to_vec(), value: b"v".to_vec() }];
    let mut dir = Node::new(b"dir".to_vec(), NodeKind::Dir);
    dir.mode = 0o755;
    dir.subtree = Some(TreeId(Id([3; 32])));
    let mut link = Node::new(b"link".to_vec(), NodeKind::Symlink);
    link.link_target = Some(b"../../etc/passwd".to_vec());
    let fifo = Node::new(b"pipe".to_vec(), NodeKind::Fifo);
    let mut dev = Node::new(b"null".to_vec(), NodeKind::CharDevice);
    dev.rdev = 0x103;
    let mut hard = Node::new(b"hard".to_vec(), NodeKind::File);
    hard.nlink = 2;
    hard.inode = 42;
    let mut hard2 = hard.clone();
    hard2.name = b"hard2".to_vec();
    let mut odd = Node::new(b"\xff\xfe name".to_vec(), NodeKind::File);
    odd.content = vec![DataId(Id([1; 32]))];
    let mut trees = vec![
        Tree::default(),
        Tree { nodes: vec![file.clone()] },
        Tree { nodes: vec![dir.clone(), file, link, fifo, dev, hard, hard2, odd] },
        Tree { nodes: vec![dir] },
    ];
    for t in &mut trees {
        t.sort();
    }
    trees
}

/// Length-prefixed trees for `restore_tree` (see fuzzing::restore_tree).
fn restore_input(trees: &[Tree]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in trees {
        let b = t.encode();
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let key = test_key();
    let plain = Crypto::new(&key, false);
    let sealed = Crypto::new(&key, true);
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();

    for e in [Encryption::Xchacha20Poly1305, Encryption::None] {
        seeds.push(("config", Config::new(e, 3).encode()));
    }
    seeds.push(("key_file", KeyFile::wrap(&key, None).expect("wrap").encode()));
    seeds.push(("key_file", KeyFile::wrap(&key, Some("password")).expect("wrap").encode()));

    let mut pack = PackBuilder::new(Vec::new());
    let mut entries = Vec::new();
    for (i, data) in [&b"first blob"[..], &[0u8; 100]].iter().enumerate() {
        let s = plain.seal(data);
        let kind = if i == 0 { BlobType::Data } else { BlobType::Tree };
        pack.add(kind, arca_core::BlobId(plain.blob_id(data)), data.len() as u32, &s).expect("add");
    }
    let (bytes, pack_id, size, es) = pack.finish(&plain).expect("finish");
    entries.extend(es.iter().copied());
    seeds.push(("pack_header", [&[0u8][..], &bytes].concat()));
    let mut header = (es.len() as u32).to_le_bytes().to_vec();
    for e in &es {
        e.write(&mut header);
    }
    seeds.push(("pack_header", [&[1u8][..], &header].concat()));
    seeds.push(("pack_header", [&[2u8][..], &header].concat()));

    let index = IndexFile {
        supersedes: vec![Id([5; 32])],
        packs: vec![IndexPack { id: pack_id, size, blobs: entries }],
    };
    seeds.push(("index_file", index.encode()));
    seeds.push(("index_file", IndexFile::default().encode()));

    let trees = tree_examples();
    for t in &trees {
        seeds.push(("tree", t.encode()));
    }

    let snap = Snapshot {
        version: 1,
        time: "2026-12-01T00:00:00.123456789+00:00".into(),
        tree: TreeId(Id([3; 32])),
        paths: vec!["/usr/share/doc".into()],
        resolved_paths: [("/usr/share/doc".to_string(), "/usr/local/share/doc".to_string())].into(),
        host: "host".into(),
        user: "user".into(),
        tags: vec!["tag".into()],
        strategy: Strategy::Incremental,
        parent: Some(SnapshotId(Id([4; 32]))),
        size: 300,
        files: 1,
        summary: Summary::default(),
        program_version: "0.1.0".into(),
        repaired_from: None,
        original: Some(SnapshotId(Id([6; 32]))),
        base_backup: None,
    };
    seeds.push(("snapshot", snap.encode()));
    let base = arca_core::BaseBackup {
        cluster: "main".into(),
        timeline: 2,
        start_lsn: "0/5000028".into(),
        stop_lsn: "1/A0000100".into(),
        segment_size: 16 << 20,
    };
    seeds.push(("snapshot", Snapshot { base_backup: Some(base), ..snap.clone() }.encode()));
    for (name, size) in [
        ("000000010000000000000003", 16u64 << 20),
        ("00000002.history", 42),
        ("000000010000000000000002.00000028.backup", 300),
        ("000000010000000100000007.partial", 1 << 30),
    ] {
        let record = arca_core::WalRecord {
            version: 1,
            cluster: "main".into(),
            name: name.into(),
            time: "2026-12-07T09:41:07Z".into(),
            host: "db".into(),
            size,
            content: vec![DataId(Id([8; 32]))],
        };
        seeds.push(("wal_record", record.encode()));
    }

    let lock = serde_json::json!({"host": "host", "pid": 1234, "user": "user", "exclusive": true,
        "operation": "prune", "time": "2026-12-01T00:00:00+00:00"});
    seeds.push(("lock", serde_json::to_vec(&lock).expect("json")));

    for data in [&b"short"[..], &[7u8; 5000], b"abcabcabcabcabcabcabcabcabcabcabcabc"] {
        seeds.push(("decompress", arca_core::internals::compress::encode(data, 3)));
        seeds.push(("envelope", plain.seal(data)));
        seeds.push(("envelope", sealed.seal(data)));
    }

    // Folders refer to earlier parts (subtree id[0] % parts so far).
    let mut leaf = Node::new(b"f".to_vec(), NodeKind::File);
    leaf.size = 7;
    leaf.content = vec![DataId(Id([1; 32]))];
    let mut sub = Node::new(b"d".to_vec(), NodeKind::Dir);
    sub.subtree = Some(TreeId(Id([0; 32])));
    let mut bad = leaf.clone();
    bad.name = b"..".to_vec();
    seeds.push((
        "restore_tree",
        restore_input(&[Tree { nodes: vec![leaf.clone()] }, Tree { nodes: vec![sub.clone()] }]),
    ));
    seeds.push(("restore_tree", restore_input(&trees[1..3])));
    seeds.push(("restore_tree", restore_input(&[Tree { nodes: vec![bad] }, Tree { nodes: vec![sub] }])));

    for (target, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(blake3::hash(&bytes).to_hex().as_str());
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
