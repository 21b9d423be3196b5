//! Several streams (a dump per database) in one snapshot: each a file of
//! one folder, asked for one at a time; one that fails leaves no snapshot.

use std::io::Read;
use std::sync::Arc;

use arca_backend::LocalBackend;
use arca_core::ops::archive::dump;
use arca_core::ops::backup::{backup_streams, BackupOptions, Stream};
use arca_core::ops::ls::children;
use arca_core::progress::NoProgress;
use arca_core::{Encryption, InitOptions, Repository};

/// A reader that fails after `n` bytes, as a dump whose server went away.
struct FailsAfter(usize);

impl Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("connection to server lost"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(b'x');
        self.0 -= n;
        Ok(n)
    }
}

fn streams(
    list: Vec<(&'static str, Vec<u8>)>,
) -> impl FnMut() -> Option<arca_core::Result<(String, Stream<'static>)>> + Send {
    let mut list = list.into_iter();
    move || list.next().map(|(n, b)| Ok((n.to_string(), Stream::Owned(Box::new(std::io::Cursor::new(b))))))
}

#[test]
fn streams_land_as_files_of_one_folder_and_a_failing_one_leaves_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(
        Arc::new(LocalBackend::new(tmp.path().join("repo"))),
        None,
        &InitOptions::default().encryption(Encryption::None),
    )
    .unwrap();
    let opts = BackupOptions::default();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let first = backup_streams(
        &repo,
        &opts,
        &["postgres", "main"],
        &mut streams(vec![("globals.sql", b"CREATE ROLE app;\n".to_vec()), ("app.dump", big.clone())]),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(first.snapshot.paths, vec!["/postgres/main".to_string()]);
    assert_eq!(first.snapshot.summary.files_new, 2);
    let index = repo.load_index().unwrap();
    let names: Vec<String> = children(&repo, &index, &first.snapshot.tree, "/postgres/main")
        .unwrap()
        .iter()
        .map(|n| String::from_utf8_lossy(&n.name).into_owned())
        .collect();
    assert_eq!(names, vec!["app.dump", "globals.sql"]);
    let mut out = Vec::new();
    dump(&repo, &index, &first.snapshot.tree, "/postgres/main/app.dump", &mut out).unwrap();
    assert!(out == big, "the dump reads back whole");

    // Again with one byte of the big stream changed: the same folder is
    // the parent's, one file changed, one unchanged, little added.
    let mut changed = big.clone();
    changed[1_500_000] ^= 1;
    let second = backup_streams(
        &repo,
        &opts,
        &["postgres", "main"],
        &mut streams(vec![("globals.sql", b"CREATE ROLE app;\n".to_vec()), ("app.dump", changed)]),
        &NoProgress,
    )
    .unwrap();
    let s = &second.snapshot.summary;
    assert_eq!((s.files_new, s.files_changed, s.files_unchanged), (0, 1, 1), "{s:?}");
    assert!(s.bytes_added < 600_000, "one changed chunk, not the whole dump: {}", s.bytes_added);

    // The second stream fails midway: no snapshot is written.
    let before = repo.snapshots().unwrap().len();
    let mut list = vec![
        (
            "globals.sql".to_string(),
            Stream::Owned(Box::new(std::io::Cursor::new(b"x".to_vec())) as Box<dyn Read + Send>),
        ),
        ("app.dump".to_string(), Stream::Owned(Box::new(FailsAfter(2_000_000)))),
    ]
    .into_iter();
    let mut next = move || list.next().map(Ok);
    let err = backup_streams(&repo, &opts, &["postgres", "main"], &mut next, &NoProgress).unwrap_err();
    assert!(err.report().to_string().contains("connection to server lost"), "{}", err.report());
    assert_eq!(repo.snapshots().unwrap().len(), before, "a failed stream leaves no snapshot");
    // So does a stream that cannot even be started.
    let mut calls = 0;
    let mut next = move || {
        calls += 1;
        match calls {
            1 => Some(Ok((
                "a".to_string(),
                Stream::Owned(Box::new(std::io::Cursor::new(vec![1u8])) as Box<dyn Read + Send>),
            ))),
            2 => Some(Err(arca_core::Error::Invalid("pg_dump of b could not start".into()))),
            _ => None,
        }
    };
    assert!(backup_streams(&repo, &opts, &["pg"], &mut next, &NoProgress).is_err());
    assert_eq!(repo.snapshots().unwrap().len(), before);
}
