//! A snapshot whose base backup record names a WAL segment size no
//! PostgreSQL server uses, or locations that do not parse (a damaged or
//! hostile repository): verify says which snapshot and why, and goes on
//! with the rest instead of panicking (the WAL arithmetic divides by the
//! segment size; libFuzzer once found a panic there).

use std::fs;
use std::sync::Arc;

use arca_backend::{Backend, LocalBackend};
use arca_core::ops::backup::{backup, BackupOptions};
use arca_core::ops::verify::{verify, VerifyOptions};
use arca_core::progress::NoProgress;
use arca_core::{BaseBackup, Encryption, InitOptions, Repository};

#[test]
fn verify_names_a_snapshot_whose_base_backup_record_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("base.tar"), "not really a tar").unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(tmp.path().join("repo")));
    let repo = Repository::init(backend, None, &InitOptions::default().encryption(Encryption::None)).unwrap();
    let done = backup(&repo, &BackupOptions::default().paths(vec![src]), &NoProgress).unwrap();

    let record = |segment_size: u64, start_lsn: &str| BaseBackup {
        cluster: "main".into(),
        timeline: 1,
        start_lsn: start_lsn.into(),
        stop_lsn: "0/3000100".into(),
        segment_size,
    };
    let mut ids = Vec::new();
    for b in [record(3 << 20, "0/2000028"), record(0, "0/2000028"), record(16 << 20, "nowhere")] {
        let mut snap = done.snapshot.clone();
        snap.base_backup = Some(b);
        ids.push(repo.save_snapshot(&snap).unwrap());
    }

    let v = verify(&repo, &VerifyOptions::default(), &NoProgress).unwrap();
    assert!(!v.valid, "{:?}", v.errors);
    for (id, why) in
        ids.iter().zip(["not a WAL segment size", "not a WAL segment size", "not a WAL location"])
    {
        let line = format!("snapshot {}: its base backup record is damaged", id.short());
        assert!(
            v.errors.iter().any(|e| e.contains(&line) && e.contains(why)),
            "no error naming {line} ({why}): {:?}",
            v.errors
        );
    }
    // The snapshot without a record is not blamed.
    let clean = done.id.unwrap();
    assert!(!v.errors.iter().any(|e| e.contains(&clean.short())), "{:?}", v.errors);
}
