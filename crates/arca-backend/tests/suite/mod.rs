//! The behaviour every backend passes: the guarantees documented on the
//! `Backend` trait. Shared by arca-backend's own tests (local, S3) and by
//! those of the backends served by other crates (`arca serve`), which
//! include this file by path.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arca_backend::{Backend, Entry, ErrorKind, FileKind};

/// Deterministic incompressible bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// A 64-hex-digit name derived from `i`.
pub fn hex_name(i: u64) -> String {
    bytes(32, 1000 + i).iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Every kind with a name to store it under.
fn kinds() -> Vec<(FileKind, String)> {
    vec![
        (FileKind::Config, "config".to_string()),
        (FileKind::Policy, "policy".to_string()),
        (FileKind::Key, hex_name(1)),
        (FileKind::Snapshot, hex_name(2)),
        (FileKind::Index, hex_name(3)),
        (FileKind::Pack, hex_name(4)),
        (FileKind::Lock, hex_name(5)),
        (FileKind::Parity, hex_name(6)),
        (FileKind::Wal, hex_name(8)),
    ]
}

/// The suite: `b` is an empty, created repository. Hard failures panic at
/// once; the wrong error kinds are collected and reported at the end so that
/// the rest of the suite still runs.
pub fn suite(b: &dyn Backend) {
    let mut problems: Vec<String> = Vec::new();
    let loc = b.location();
    assert!(!loc.is_empty());

    // An empty repository lists nothing, of every kind.
    for (kind, _) in kinds() {
        assert_eq!(b.list(kind).unwrap(), vec![], "{loc}: list {kind:?} of an empty repository");
    }

    // Round trip of every kind; names of 64 hex digits; exists.
    for (i, (kind, name)) in kinds().into_iter().enumerate() {
        let data = bytes(1000 + i * 37, i as u64);
        assert!(!b.exists(kind, &name).unwrap(), "{loc}: {kind:?} {name} exists before put");
        b.put(kind, &name, &data).unwrap_or_else(|e| panic!("{loc}: put {kind:?} {name}: {e}"));
        assert!(b.exists(kind, &name).unwrap(), "{loc}: {kind:?} {name} missing after put");
        assert_eq!(b.get(kind, &name).unwrap(), data, "{loc}: get {kind:?} {name}");
        assert_eq!(
            b.list(kind).unwrap(),
            vec![Entry { name: name.clone(), size: data.len() as u64 }],
            "{loc}: list {kind:?} after one put"
        );
    }
    // Kinds do not leak into each other's listing (Pack objects are listed by
    // bare name although stored under data/xx/).
    let pack = hex_name(4);
    let packs = b.list(FileKind::Pack).unwrap();
    assert_eq!(packs.len(), 1);
    assert_eq!(packs[0].name, pack, "{loc}: a pack is listed by its bare name");
    assert!(!packs[0].name.contains('/'));

    // put replaces.
    let snap = hex_name(2);
    let replaced = bytes(777, 99);
    b.put(FileKind::Snapshot, &snap, &replaced).unwrap();
    assert_eq!(b.get(FileKind::Snapshot, &snap).unwrap(), replaced, "{loc}: put did not replace");
    assert_eq!(b.list(FileKind::Snapshot).unwrap(), vec![Entry { name: snap.clone(), size: 777 }]);

    // A missing object is NotFound, of every kind.
    for kind in [FileKind::Snapshot, FileKind::Pack, FileKind::Index, FileKind::Key, FileKind::Lock] {
        let e = b.get(kind, &hex_name(500)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{loc}: get of a missing {kind:?}: {e}");
        assert!(e.is_not_found());
        let e = b.get_range(kind, &hex_name(500), 0, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{loc}: get_range of a missing {kind:?}: {e}");
    }

    // get_range: exact bytes; past the end is an error, never a short read.
    let data = bytes(100_000, 42);
    let name = hex_name(7);
    b.put(FileKind::Pack, &name, &data).unwrap();
    for (off, len) in [(0u64, 1u64), (0, 100_000), (1, 99_999), (12_345, 6_789), (99_999, 1), (50_000, 0)] {
        let got = b
            .get_range(FileKind::Pack, &name, off, len)
            .unwrap_or_else(|e| panic!("{loc}: range {off}+{len}: {e}"));
        assert_eq!(got, &data[off as usize..(off + len) as usize], "{loc}: range {off}+{len}");
        // The same into a reused buffer (what restore and the whole-pack
        // fetches read through), which may hold anything before.
        let mut buf = bytes(3_000, off);
        b.get_range_into(FileKind::Pack, &name, off, len, &mut buf)
            .unwrap_or_else(|e| panic!("{loc}: range {off}+{len} into a buffer: {e}"));
        assert_eq!(buf, &data[off as usize..(off + len) as usize], "{loc}: range {off}+{len} into a buffer");
    }
    for (off, len) in [(99_990u64, 11u64), (0, 100_001), (100_000, 1), (200_000, 10)] {
        let mut buf = Vec::new();
        match b.get_range_into(FileKind::Pack, &name, off, len, &mut buf) {
            Ok(()) => panic!(
                "{loc}: range {off}+{len} of a 100000-byte object read {} bytes into a buffer",
                buf.len()
            ),
            Err(e) if e.kind == ErrorKind::ShortObject => {}
            Err(e) => problems.push(format!(
                "{loc}: get_range_into {off}+{len} past the end fails with kind {:?}, not ShortObject: {e}",
                e.kind
            )),
        }
        match b.get_range(FileKind::Pack, &name, off, len) {
            Ok(v) => panic!("{loc}: range {off}+{len} of a 100000-byte object returned {} bytes", v.len()),
            Err(e) if e.kind == ErrorKind::ShortObject => {}
            Err(e) => problems.push(format!(
                "{loc}: get_range {off}+{len} past the end of a 100000-byte object fails with kind {:?}, \
                 not ShortObject: {e}",
                e.kind
            )),
        }
    }

    // list: names and sizes, Pack objects under different data/xx/ folders.
    let mut want =
        vec![Entry { name: pack.clone(), size: 1000 + 5 * 37 }, Entry { name: name.clone(), size: 100_000 }];
    for i in 10..20 {
        let n = hex_name(i);
        let d = bytes(i as usize * 11, i);
        b.put(FileKind::Pack, &n, &d).unwrap();
        want.push(Entry { name: n, size: d.len() as u64 });
    }
    assert_eq!(sorted(b.list(FileKind::Pack).unwrap()), sorted(want.clone()), "{loc}: list of packs");
    // Other kinds' listings did not change.
    assert_eq!(b.list(FileKind::Index).unwrap().len(), 1);
    assert_eq!(b.list(FileKind::Config).unwrap(), vec![Entry { name: "config".into(), size: 1000 }]);

    // delete, then delete again; exists false; listing shrinks.
    for (kind, name) in kinds() {
        b.delete(kind, &name).unwrap_or_else(|e| panic!("{loc}: delete {kind:?}: {e}"));
        assert!(!b.exists(kind, &name).unwrap(), "{loc}: {kind:?} exists after delete");
        b.delete(kind, &name).unwrap_or_else(|e| panic!("{loc}: second delete {kind:?}: {e}"));
        assert_eq!(b.get(kind, &name).unwrap_err().kind, ErrorKind::NotFound);
    }
    b.delete(FileKind::Snapshot, &hex_name(600)).expect("delete of a never-stored object");
    for kind in [
        FileKind::Config,
        FileKind::Policy,
        FileKind::Key,
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Lock,
    ] {
        assert_eq!(b.list(kind).unwrap(), vec![], "{loc}: list {kind:?} after deleting everything");
    }
    assert_eq!(b.list(FileKind::Pack).unwrap().len(), 11);

    // Big objects: 1 MiB and 20 MiB.
    for (i, size) in [(0u64, 1usize << 20), (1, 20 << 20)] {
        let n = hex_name(100 + i);
        let d = bytes(size, 100 + i);
        b.put(FileKind::Pack, &n, &d).unwrap_or_else(|e| panic!("{loc}: put {size} bytes: {e}"));
        let got = b.get(FileKind::Pack, &n).unwrap();
        assert!(got == d, "{loc}: {size}-byte object came back different ({} bytes)", got.len());
        let tail = b.get_range(FileKind::Pack, &n, size as u64 - 4096, 4096).unwrap();
        assert_eq!(tail, &d[size - 4096..]);
        assert!(b.list(FileKind::Pack).unwrap().contains(&Entry { name: n.clone(), size: size as u64 }));
        b.delete(FileKind::Pack, &n).unwrap();
    }

    assert!(problems.is_empty(), "{} problems:\n  {}", problems.len(), problems.join("\n  "));
}

/// 8 threads putting, reading back, listing and deleting at once.
pub fn concurrent(b: Arc<dyn Backend>) {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut mine = BTreeMap::new();
                for i in 0..12u64 {
                    let n = hex_name(10_000 + t * 100 + i);
                    let d = bytes(10_000 + (t * 1000 + i * 333) as usize, t * 100 + i);
                    let kind = if i % 2 == 0 { FileKind::Pack } else { FileKind::Index };
                    b.put(kind, &n, &d).unwrap_or_else(|e| panic!("thread {t}: put: {e}"));
                    assert_eq!(b.get(kind, &n).unwrap(), d, "thread {t}: get after put");
                    mine.insert(n, (kind, d));
                }
                let listed = b.list(FileKind::Pack).unwrap();
                for (n, (kind, d)) in &mine {
                    if *kind == FileKind::Pack {
                        assert!(
                            listed.contains(&Entry { name: n.clone(), size: d.len() as u64 }),
                            "thread {t}: {n} not listed"
                        );
                    }
                    assert_eq!(b.get_range(*kind, n, 100, 200).unwrap(), &d[100..300]);
                }
                for (n, (kind, _)) in &mine {
                    b.delete(*kind, n).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a worker thread panicked");
    }
    let left: Vec<_> = b.list(FileKind::Index).unwrap();
    assert!(left.is_empty(), "{}: objects left after every thread deleted its own: {left:?}", b.location());
}

/// `put_new` on a name that exists fails with `AlreadyExists` and leaves
/// the object as it was; with `racing`, from 8 threads at once on one name:
/// exactly one wins, the others get `AlreadyExists`, and the object is the
/// winner's, whole.
pub fn exclusive_create(b: Arc<dyn Backend>, racing: bool) {
    let name = hex_name(49_999);
    b.put_new(FileKind::Key, &name, b"first").unwrap_or_else(|e| panic!("{}: put_new: {e}", b.location()));
    let e = b.put_new(FileKind::Key, &name, b"second").expect_err("put_new over an existing object");
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{}: {e}", b.location());
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(b.get(FileKind::Key, &name).unwrap(), b"first", "{}: the first object stays", b.location());
    b.delete(FileKind::Key, &name).unwrap();
    for round in 0..if racing { 4u64 } else { 0 } {
        let name = hex_name(50_000 + round);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (b, name) = (b.clone(), name.clone());
                std::thread::spawn(move || {
                    let data = bytes(5000 + t as usize, round * 10 + t);
                    (b.put_new(FileKind::Key, &name, &data), data)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(r, _)| r.is_ok()).collect();
        assert_eq!(winners.len(), 1, "{}: round {round}: exactly one put_new wins", b.location());
        for (r, _) in &results {
            if let Err(e) = r {
                assert_eq!(e.kind, ErrorKind::AlreadyExists, "{}: the losers hear why: {e}", b.location());
            }
        }
        assert_eq!(
            b.get(FileKind::Key, &name).unwrap(),
            winners[0].1,
            "{}: the winner's object",
            b.location()
        );
        b.delete(FileKind::Key, &name).unwrap();
    }
    assert!(b.list(FileKind::Key).unwrap().is_empty(), "{}: put_new leaves nothing else", b.location());
}
