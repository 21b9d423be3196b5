//! A store whose listings lag behind its deletions (a three-node Garage
//! cluster does, for a while after a node rejoins): objects a prune or a
//! forget deleted are still listed, and reading them finds nothing. That is
//! not damage: such an object was deleted since the listing. Commands go
//! on, and verify does not call the repository damaged.

use std::fs;
use std::sync::Arc;

use arca_backend::fault::{FaultBackend, Faults};
use arca_backend::{Backend, LocalBackend};
use arca_core::ops::backup::{backup, BackupOptions};
use arca_core::ops::forget::{Forget, ForgetOptions};
use arca_core::ops::prune::PruneOptions;
use arca_core::ops::restore::{restore, RestoreOptions};
use arca_core::ops::verify::{verify, VerifyOptions};
use arca_core::progress::NoProgress;
use arca_core::{InitOptions, Repository};

#[test]
fn objects_deleted_but_still_listed_are_not_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let backend: Arc<dyn Backend> =
        Arc::new(FaultBackend::new(LocalBackend::new(tmp.path().join("repo")), faults.clone()));
    Repository::init(backend.clone(), Some("pw"), &InitOptions::default()).unwrap();
    let open = || {
        let mut r = Repository::open(backend.clone(), Some("pw")).unwrap();
        r.set_cache_root(&tmp.path().join("cache"));
        r
    };
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let opts = BackupOptions::default().paths(vec![src.clone()]);
    let mut snaps = Vec::new();
    for round in 0..3 {
        fs::write(src.join(format!("f{round}")), format!("round {round}").repeat(1000)).unwrap();
        snaps.push(backup(&open(), &opts, &NoProgress).unwrap().id.unwrap());
    }
    faults.lag_listings();
    let forget = ForgetOptions::default()
        .what(Forget::Snapshots(vec![snaps[0], snaps[1]]))
        .prune(Some(PruneOptions::default().max_unused_percent(0.0)));
    arca_core::ops::forget::forget(&open(), &forget, &NoProgress).unwrap();

    // The forgotten snapshots and the replaced index files are still listed.
    let repo = open();
    let listed = repo.snapshots().unwrap();
    assert_eq!(listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![snaps[2]]);
    let (index, errors) = repo.load_index_lenient().unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(index.blob_count() > 0);
    let v = verify(&repo, &VerifyOptions::default().read_data(true), &NoProgress).unwrap();
    assert!(v.valid, "{v:?}");
    let out = tmp.path().join("out");
    let r = restore(&repo, &snaps[2], &RestoreOptions::default().target(out.clone()), &NoProgress).unwrap();
    assert!(r.success, "{:?}", r.errors);
    assert_eq!(
        fs::read(out.join(src.strip_prefix("/").unwrap()).join("f2")).unwrap(),
        b"round 2".repeat(1000)
    );
}
