//! Backups take shared locks: several at once on one repository all succeed
//! and every snapshot restores.
use crate::common;

use std::time::Duration;

use common::*;

#[test]
fn concurrent_backups() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let logs = base.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let mut srcs = Vec::new();
    for i in 0..3u64 {
        let src = base.join(format!("src{i}"));
        make_random_tree(&src, 40, 750_000, 100 + i);
        // Content shared by all three trees, so they race to store the same blobs.
        write_random(&src.join("shared/common.bin"), 3_000_000, 7777);
        srcs.push(src);
    }
    let children: Vec<_> = srcs
        .iter()
        .enumerate()
        .map(|(i, src)| {
            let log = logs.join(format!("backup{i}"));
            (arca.spawn(true, &[std::ffi::OsStr::new("backup"), src.as_os_str()], &log), log)
        })
        .collect();
    let mut metas = Vec::new();
    for (mut child, log) in children {
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                panic!("concurrent backup did not finish in {COMMAND_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = std::fs::read_to_string(log.with_extension("stdout")).unwrap();
        let stderr = std::fs::read_to_string(log.with_extension("stderr")).unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            status.code(),
            Some(0),
            "concurrent backup failed: {status:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        metas.push(
            serde_json::from_str::<serde_json::Value>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        );
    }

    let snaps = arca.snapshots();
    assert_eq!(snaps.len(), 3, "three snapshots after three concurrent backups: {snaps:?}");
    let mut ids: Vec<_> = metas.iter().map(|m| jstr(m, "id").to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct ids");

    arca.verify(&[]).ok();
    arca.verify(&["--read-data"]).ok();
    for (i, (src, meta)) in srcs.iter().zip(&metas).enumerate() {
        assert_eq!(jarr(meta, "paths")[0].as_str(), src.to_str(), "{meta}");
        let target = base.join(format!("target{i}"));
        arca.restore(jstr(meta, "id"), &target, &[]);
        assert_trees_equal(src, &restored(&target, src), Compare::default());
    }
    let st = arca.json(&["status"]);
    let locks = st.get("locks").cloned().unwrap_or_default();
    assert!(
        locks.as_u64() == Some(0) || locks.as_array().is_some_and(Vec::is_empty),
        "locks left behind: {st}"
    );
}
