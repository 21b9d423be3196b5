//! Point-in-time restore: `restore --at TIME` picks the latest snapshot taken
//! at or before TIME (RFC 3339 or local `YYYY-MM-DD HH:MM[:SS]`), filtered by
//! `--host` and `--path`, and says which one it chose.
use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

struct Snap {
    id: String,
    content: &'static str,
    /// The source folder it captured.
    src: PathBuf,
}

struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    arca: Arca,
    src: PathBuf,
    src2: PathBuf,
    /// a, b, c, d, e as in `world()`.
    snaps: Vec<Snap>,
    meta: Vec<Value>,
}

const TIMES: [&str; 5] = [
    "2024-01-01T10:00:00Z",
    "2024-01-03T10:00:00Z",
    "2024-01-04T10:00:00Z",
    "2024-01-05T10:00:00Z",
    "2024-01-06T10:00:00Z",
];

/// a: h1 src 01-01; b: h1 src 01-03; c: h2 src 01-04; d: h1 src 01-05;
/// e: h1 src2 01-06. Taken out of chronological order (a, d, c, b, e), so
/// that "latest" must mean by time, not by creation.
fn world() -> World {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    let src2 = base.join("src2");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&src2).unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let plan: [(usize, &str, &Path, &'static str, &[&str]); 5] = [
        (0, "h1", &src, "content of a (h1, jan 1)\n", &["--tag", "first"]),
        (3, "h1", &src, "content of d (h1, jan 5), longer\n", &[]),
        (2, "h2", &src, "content of c (h2)\n", &[]),
        (1, "h1", &src, "content of b (h1, jan 3) -\n", &[]),
        (4, "h1", &src2, "content of e (src2)\n", &[]),
    ];
    let mut snaps: Vec<Option<Snap>> = (0..5).map(|_| None).collect();
    let mut meta: Vec<Option<Value>> = (0..5).map(|_| None).collect();
    for (i, host, dir, content, extra) in plan {
        fs::write(dir.join("file.txt"), content).unwrap();
        let mut args = vec!["--host", host, "--time", TIMES[i]];
        args.extend_from_slice(extra);
        let b = arca.backup(&[dir], &args);
        snaps[i] = Some(Snap { id: jstr(&b, "id").to_string(), content, src: dir.to_path_buf() });
        meta[i] = Some(b);
    }
    World {
        _tmp: tmp,
        base,
        arca,
        src,
        src2,
        snaps: snaps.into_iter().map(Option::unwrap).collect(),
        meta: meta.into_iter().map(Option::unwrap).collect(),
    }
}

impl World {
    /// `restore --at AT [EXTRA]` into a fresh folder; asserts it chose
    /// snapshot `want` (index), restored its content, and named it on stderr.
    #[track_caller]
    fn expect(&self, at: &str, extra: &[&str], env: &[(&str, &str)], want: usize) {
        let target = self.base.join("t");
        let _ = fs::remove_dir_all(&target);
        let mut args = vec!["restore", "--at", at, "--target", target.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.arca.run_env(true, &args, env);
        let what = format!("restore --at {at:?} {extra:?} {env:?}");
        assert_eq!(out.code, 0, "{what}: {}", out.describe());
        let r = out.json();
        let snap = &self.snaps[want];
        assert_eq!(
            r["snapshot"].as_str(),
            Some(snap.id.as_str()),
            "{what} should choose snapshot {} taken {}: {}",
            &snap.id[..8],
            TIMES[want],
            out.describe()
        );
        assert!(
            out.stderr.contains(&snap.id[..8]),
            "{what}: stderr should name the chosen snapshot {}: {}",
            &snap.id[..8],
            out.describe()
        );
        let file = restored(&target, &snap.src).join("file.txt");
        let got =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("{what}: read {}: {e}", file.display()));
        assert_eq!(got, snap.content, "{what}: restored content");
        // Only the chosen snapshot's source was restored.
        for other in [&self.src, &self.src2] {
            if *other != snap.src {
                assert!(!restored(&target, other).exists(), "{what}: {} restored too", other.display());
            }
        }
    }

    #[track_caller]
    fn expect_none(&self, at: &str, extra: &[&str], env: &[(&str, &str)]) {
        let target = self.base.join("t");
        let _ = fs::remove_dir_all(&target);
        let mut args = vec!["restore", "--at", at, "--target", target.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.arca.run_env(true, &args, env);
        let what = format!("restore --at {at:?} {extra:?} {env:?}");
        assert_eq!(out.code, 1, "{what} has no snapshot to restore and must fail: {}", out.describe());
        assert!(!out.stderr.trim().is_empty(), "{what}: no error message: {}", out.describe());
        assert!(
            out.err_lower().contains("snapshot"),
            "{what}: the error should say no snapshot matched: {}",
            out.describe()
        );
        let restored_any = target.exists() && fs::read_dir(&target).unwrap().next().is_some();
        assert!(!restored_any, "{what}: something was restored");
    }
}

#[test]
fn restore_at_picks_the_latest_snapshot_at_or_before() {
    let w = world();
    let (a, b, c, d, e) = (0, 1, 2, 3, 4);

    // Between snapshots, exactly at one, one second before one.
    w.expect("2024-01-02T00:00:00Z", &[], &[], a);
    w.expect("2024-01-03T10:00:00Z", &[], &[], b);
    w.expect("2024-01-03T09:59:59Z", &[], &[], a);
    w.expect("2024-01-03T10:00:01Z", &[], &[], b);
    // Any host by default; --host filters.
    w.expect("2024-01-04T12:00:00Z", &[], &[], c);
    w.expect("2024-01-04T12:00:00Z", &["--host", "h1"], &[], b);
    w.expect("2024-01-04T12:00:00Z", &["--host", "h2"], &[], c);
    w.expect("2024-01-30T00:00:00Z", &["--host", "h2"], &[], c);
    // Another offset: 12:00+02:00 is exactly d's 10:00Z.
    w.expect("2024-01-05T12:00:00+02:00", &[], &[], d);
    w.expect("2024-01-05T11:59:59+02:00", &[], &[], c);
    // --path filters by source path.
    w.expect("2024-01-07T00:00:00Z", &[], &[], e);
    w.expect("2024-01-07T00:00:00Z", &["--path", w.src.to_str().unwrap()], &[], d);
    w.expect("2024-01-07T00:00:00Z", &["--path", w.src2.to_str().unwrap()], &[], e);
    w.expect("2024-01-07T00:00:00Z", &["--host", "h2", "--path", w.src.to_str().unwrap()], &[], c);

    // Before everything: an error, exit 1, nothing restored.
    w.expect_none("2023-12-31T23:59:59Z", &[], &[]);
    w.expect_none("2024-01-01T09:59:59Z", &[], &[]);
    w.expect_none("2024-01-03T12:00:00Z", &["--host", "h2"], &[]);
    w.expect_none("2024-01-05T12:00:00Z", &["--path", w.src2.to_str().unwrap()], &[]);
    w.expect_none("2024-01-30T00:00:00Z", &["--host", "nobody"], &[]);
}

#[test]
fn restore_at_local_time_formats() {
    let w = world();
    let (a, b) = (0, 1);
    let utc = [("TZ", "UTC")];
    w.expect("2024-01-03 10:00:00", &[], &utc, b);
    w.expect("2024-01-03 10:00", &[], &utc, b);
    w.expect("2024-01-03 09:59:59", &[], &utc, a);
    w.expect("2024-01-03 09:59", &[], &utc, a);

    // The same wall-clock time means another instant in another zone.
    let zoneinfo = Path::new("/usr/share/zoneinfo/Etc/GMT-12").exists();
    let (east, west) = if zoneinfo { ("Etc/GMT-12", "Etc/GMT+12") } else { ("XXX-12", "YYY+12") };
    // UTC+12: 21:59 local = 09:59Z, 22:00 local = 10:00Z.
    w.expect("2024-01-03 21:59", &[], &[("TZ", east)], a);
    w.expect("2024-01-03 22:00", &[], &[("TZ", east)], b);
    // UTC-12: 2024-01-02 22:00 local = 2024-01-03T10:00Z.
    w.expect("2024-01-02 22:00", &[], &[("TZ", west)], b);
    w.expect("2024-01-02 21:59:59", &[], &[("TZ", west)], a);
    // In UTC the same wall-clock time is before b.
    w.expect("2024-01-02 22:00", &[], &utc, a);
    w.expect_none("2024-01-01 09:59:59", &[], &utc);
    w.expect_none("2024-01-01 21:59", &[], &[("TZ", east)]);
}

#[test]
fn snapshots_json_exposes_time_host_paths_tags_strategy_parent() {
    let w = world();
    let list = w.arca.snapshots();
    assert_eq!(list.len(), 5, "{list:?}");
    let hosts = ["h1", "h1", "h2", "h1", "h1"];
    for (i, snap) in w.snaps.iter().enumerate() {
        let l = list
            .iter()
            .find(|l| l["id"].as_str() == Some(snap.id.as_str()))
            .unwrap_or_else(|| panic!("{} not listed: {list:?}", snap.id));
        assert!(is_hex(jstr(l, "id")) && jstr(l, "id").len() >= 16, "{l}");
        let ts = jstr(l, "timestamp").replace("+00:00", "Z");
        assert_eq!(ts, TIMES[i], "timestamp of snapshot {i}: {l}");
        assert_eq!(jstr(l, "host"), hosts[i], "{l}");
        let paths: Vec<&str> = jarr(l, "paths").iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(paths, vec![snap.src.to_str().unwrap()], "{l}");
        let tags: Vec<&str> = jarr(l, "tags").iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(tags, if i == 0 { vec!["first"] } else { vec![] }, "{l}");
        assert_eq!(l["strategy"], w.meta[i]["strategy"], "{l}");
        assert_eq!(l["parent"], w.meta[i]["parent"], "{l}");
        assert!(l.get("parent").is_some(), "parent field present even when null: {l}");
    }
    // The first snapshot of each source (a: h1 src, c: h2 src, e: h1 src2)
    // is a full one without parent; the others have a parent of their own
    // source.
    for i in [0, 2, 4] {
        let l = &w.meta[i];
        assert_eq!(jstr(l, "strategy"), "full", "snapshot {i}: {l}");
        assert!(l["parent"].is_null(), "snapshot {i}: {l}");
    }
    for i in [1, 3] {
        let l = &w.meta[i];
        assert_eq!(jstr(l, "strategy"), "incremental", "snapshot {i}: {l}");
        let parent = jstr(l, "parent");
        assert!(
            [&w.snaps[0].id, &w.snaps[3].id].iter().any(|id| id.as_str() == parent),
            "snapshot {i}: parent must be a snapshot of h1 {}: {l}",
            w.src.display()
        );
    }
    // The listing filters.
    let ids = |v: Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| jstr(s, "id").to_string()).collect()
    };
    assert_eq!(ids(w.arca.json(&["snapshots", "--host", "h2"])), vec![w.snaps[2].id.clone()]);
    assert_eq!(
        ids(w.arca.json(&["snapshots", "--path", w.src2.to_str().unwrap()])),
        vec![w.snaps[4].id.clone()]
    );
    assert_eq!(ids(w.arca.json(&["snapshots", "--tag", "first"])), vec![w.snaps[0].id.clone()]);
}

/// The time a person reads (local, with its offset, in every table and
/// message) is the time `--at` takes back, in any time zone; `--json`
/// gives UTC whatever offset the snapshot was taken with.
#[test]
fn the_time_shown_is_the_time_restore_at_takes() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let arca = Arca::new(&base);
    arca.init();
    // POSIX zone strings: no tz database needed. XXX+5 is UTC-5.
    let (new_york, tokyo) = ("XXX+5", "YYY-9");
    fs::write(src.join("f"), "first\n").unwrap();
    let first = arca.backup(&[&src], &["--time", "2026-12-02T05:44:30+00:00"]);
    fs::write(src.join("f"), "one second later\n").unwrap();
    let second = arca.backup(&[&src], &["--time", "2026-12-02T14:44:31+09:00"]);
    assert_eq!(jstr(&first, "timestamp"), "2026-12-02T05:44:30Z");
    assert_eq!(jstr(&second, "timestamp"), "2026-12-02T05:44:31Z", "--json is UTC");

    let table = arca.run_env(false, &["snapshots"], &[("TZ", new_york)]).ok();
    let shown = "2026-12-02 00:44:30 -05:00";
    assert!(table.stdout.contains(shown), "{}", table.describe());
    assert!(table.stdout.contains("2026-12-02 00:44:31 -05:00"), "{}", table.describe());
    let info = arca.run_env(false, &["info", &jstr(&first, "id")[..8]], &[("TZ", tokyo)]).ok();
    assert!(info.stdout.contains("2026-12-02 14:44:30 +09:00"), "{}", info.describe());

    // Restoring "the time shown in the table" picks that snapshot, read in
    // the zone it was shown in or any other.
    for (i, tz) in [new_york, tokyo, "UTC"].iter().enumerate() {
        let target = base.join(format!("t{i}"));
        let out = arca
            .run_env(true, &["restore", "--at", shown, "--target", target.to_str().unwrap()], &[("TZ", tz)])
            .ok();
        assert_eq!(jstr(&out.json(), "snapshot"), jstr(&first, "id"), "TZ={tz}: {}", out.describe());
        assert_eq!(fs::read_to_string(restored(&target, &src).join("f")).unwrap(), "first\n");
    }
}
