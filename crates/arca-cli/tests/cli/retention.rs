//! Retention: `forget` with every rule on timelines built with
//! `backup --time`, checked against id sets worked out by hand.
//!
//! Every policy is first applied with `--dry-run` to the original repository
//! (the report must name exactly the expected snapshots, with reasons, and
//! nothing may change), then for real to a copy of the repository (the
//! snapshots left must be exactly the expected ones).
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// A repository holding a labelled timeline of snapshots.
struct Timeline {
    base: PathBuf,
    arca: Arca,
    /// label -> snapshot id
    ids: BTreeMap<String, String>,
    /// label -> time given to `backup --time`
    times: BTreeMap<String, String>,
    copies: usize,
    /// Shortcomings found on the way, reported at the end by `finish` so
    /// that one of them does not hide the other checks.
    defects: std::cell::RefCell<Vec<String>>,
}

impl Timeline {
    fn new(base: &Path) -> Timeline {
        let arca = Arca::new(base);
        arca.init();
        Timeline {
            base: base.to_path_buf(),
            arca,
            ids: BTreeMap::new(),
            times: BTreeMap::new(),
            copies: 0,
            defects: Default::default(),
        }
    }

    /// `backup SRC --time TIME --host HOST [--tag T]...`, recorded as `label`.
    fn add(&mut self, label: &str, src: &Path, time: &str, host: &str, tags: &[&str]) {
        let mut extra = vec!["--time", time, "--host", host];
        for t in tags {
            extra.push("--tag");
            extra.push(t);
        }
        let v = self.arca.backup(&[src], &extra);
        let id = jstr(&v, "id").to_string();
        assert!(is_hex(&id) && id.len() == 64, "backup id {id:?} is not 64 hex digits");
        assert_eq!(jstr(&v, "host"), host, "backup --host not recorded: {v}");
        assert!(
            self.ids.values().all(|other| *other != id),
            "snapshot {label} got the id of an earlier snapshot: {id}"
        );
        self.ids.insert(label.to_string(), id);
        self.times.insert(label.to_string(), time.to_string());
    }

    fn label_of(&self, id: &str) -> String {
        self.ids
            .iter()
            .find(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("forget reported an id no backup produced: {id}"))
    }

    fn labels(&self, ids: &[Value]) -> BTreeSet<String> {
        ids.iter()
            .map(|v| self.label_of(v.as_str().unwrap_or_else(|| panic!("id is not a string: {v}"))))
            .collect()
    }

    fn all(&self) -> BTreeSet<String> {
        self.ids.keys().cloned().collect()
    }

    /// The labels of the snapshots `snapshots --json` lists in `arca`'s repository.
    fn present(&self, arca: &Arca) -> BTreeSet<String> {
        arca.snapshots().iter().map(|s| self.label_of(jstr(s, "id"))).collect()
    }

    /// A copy of the repository (with its own cache) to forget in for real.
    fn copy(&mut self) -> Arca {
        self.copies += 1;
        let dst = self.base.join(format!("copy{}", self.copies));
        cp_a(&self.arca.repo, &dst);
        let mut a = self.arca.at(&dst);
        a.cache = self.base.join(format!("cache-copy{}", self.copies));
        fs::create_dir_all(&a.cache).unwrap();
        a
    }

    /// Checks one `forget --json` report: exactly `kept` kept among
    /// `considered`, the rest removed, every decision with reasons.
    #[track_caller]
    fn check_report(
        &self,
        what: &str,
        v: &Value,
        dry_run: bool,
        considered: &BTreeSet<String>,
        kept: &BTreeSet<String>,
    ) {
        let removed: BTreeSet<String> = considered.difference(kept).cloned().collect();
        assert_eq!(v.get("dry_run").and_then(Value::as_bool), Some(dry_run), "{what}: dry_run flag in {v}");
        let got_kept = self.labels(jarr(v, "kept"));
        let got_removed = self.labels(jarr(v, "removed_ids"));
        assert_eq!(got_kept, *kept, "{what}: kept set (removed reported: {got_removed:?})");
        assert_eq!(got_removed, removed, "{what}: removed set");
        assert_eq!(ju64(v, "removed"), removed.len() as u64, "{what}: `removed` count in {v}");
        assert_eq!(jarr(v, "kept").len(), kept.len(), "{what}: duplicate ids in `kept`: {v}");
        // Every considered snapshot appears exactly once in the groups, with
        // the same decision and at least one reason.
        let mut seen = BTreeSet::new();
        let mut no_reason = Vec::new();
        for g in jarr(v, "groups") {
            for s in jarr(g, "snapshots") {
                let label = self.label_of(jstr(s, "id"));
                assert!(seen.insert(label.clone()), "{what}: {label} appears twice in groups: {v}");
                let keep = s.get("keep").and_then(Value::as_bool).unwrap_or_else(|| panic!("no keep in {s}"));
                assert_eq!(keep, kept.contains(&label), "{what}: decision for {label} in groups: {s}");
                if jarr(s, "reasons").is_empty() {
                    no_reason.push(format!("{label} ({})", if keep { "kept" } else { "removed" }));
                }
                assert_eq!(jstr(s, "time"), self.times[&label], "{what}: recorded time of {label}");
            }
        }
        assert_eq!(seen, *considered, "{what}: the snapshots listed in groups");
        if !no_reason.is_empty() {
            self.defects.borrow_mut().push(format!("`{what}` lists no reason for {}", no_reason.join(", ")));
        }
    }

    /// Applies `args` with `--dry-run` to the original (nothing changes) and
    /// for real to a copy (exactly `kept` of `considered` remain, plus the
    /// snapshots outside `considered`). Returns the dry-run report.
    #[track_caller]
    fn expect(&mut self, args: &[&str], considered: &BTreeSet<String>, kept: &[&str]) -> Value {
        let kept: BTreeSet<String> = kept.iter().map(|s| s.to_string()).collect();
        assert!(kept.is_subset(considered), "test bug: kept {kept:?} not within {considered:?}");
        let what = format!("forget {}", args.join(" "));
        let before = snapshot_files(&self.arca.repo);

        let mut dry: Vec<&str> = vec!["forget"];
        dry.extend_from_slice(args);
        dry.push("--dry-run");
        let v = self.arca.json(&dry);
        self.check_report(&format!("{what} --dry-run"), &v, true, considered, &kept);
        assert!(
            snapshot_files(&self.arca.repo) == before,
            "{what} --dry-run changed files in the repository"
        );

        let copy = self.copy();
        let mut real: Vec<&str> = vec!["forget"];
        real.extend_from_slice(args);
        let r = copy.json(&real);
        self.check_report(&what, &r, false, considered, &kept);
        let outside: BTreeSet<String> = self.all().difference(considered).cloned().collect();
        let expected_left: BTreeSet<String> = kept.union(&outside).cloned().collect();
        assert_eq!(self.present(&copy), expected_left, "{what}: snapshots left in the repository");
        let _ = fs::remove_dir_all(&copy.repo);
        v
    }

    /// Fails with every deferred shortcoming.
    #[track_caller]
    fn finish(&self) {
        let d = self.defects.borrow();
        assert!(d.is_empty(), "{} reports with decisions without a reason:\n  {}", d.len(), d.join("\n  "));
    }

    /// The reasons given for `label` in a report.
    fn reasons(&self, v: &Value, label: &str) -> Vec<String> {
        for g in jarr(v, "groups") {
            for s in jarr(g, "snapshots") {
                if jstr(s, "id") == self.ids[label] {
                    return jarr(s, "reasons").iter().map(|r| r.as_str().unwrap_or("").to_string()).collect();
                }
            }
        }
        panic!("{label} is not in the report: {v}")
    }
}

fn set(labels: &[&str]) -> BTreeSet<String> {
    labels.iter().map(|s| s.to_string()).collect()
}

fn s(i: usize) -> String {
    format!("s{i:02}")
}

/// RFC 3339 (UTC) of `secs_ago` seconds before now.
fn ago(secs_ago: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let out = Command::new("date")
        .arg("-u")
        .arg("-d")
        .arg(format!("@{}", now - secs_ago))
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .expect("run date");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// 27 snapshots of one source on one host, across a year boundary
/// (2019/2020 and 2020/2021), the ISO week 2020-W53 that spans
/// 2020-12-28..2021-01-03, and the month boundary 2021-01-31/02-01 hour by
/// hour. Index = chronological order.
const TIMES: [&str; 27] = [
    "2019-06-15T12:00:00Z", // s00  2019, W2019-24
    "2019-12-31T23:00:00Z", // s01  2019 (but ISO week 2020-W01)
    "2020-06-01T12:00:00Z", // s02  W2020-23, tag important
    "2020-12-28T09:00:00Z", // s03  Mon, W2020-53
    "2020-12-31T08:00:00Z", // s04  Thu, W53
    "2020-12-31T22:00:00Z", // s05  newest of December 2020 and of 2020
    "2021-01-01T01:00:00Z", // s06  Fri, still W2020-53
    "2021-01-03T23:30:00Z", // s07  Sun, newest of W2020-53
    "2021-01-04T00:30:00Z", // s08  Mon, W2021-01
    "2021-01-10T12:00:00Z", // s09  Sun, newest of W01
    "2021-01-11T12:00:00Z", // s10  Mon, W02, tag important
    "2021-01-28T12:00:00Z", // s11  W04
    "2021-01-30T12:00:00Z", // s12  W04
    "2021-01-31T20:00:00Z", // s13  Sun, W04
    "2021-01-31T21:00:00Z", // s14
    "2021-01-31T22:00:00Z", // s15
    "2021-01-31T23:00:00Z", // s16
    "2021-01-31T23:59:59Z", // s17  newest of January, of W04, of 01-31
    "2021-02-01T00:00:00Z", // s18  Mon, W05, February
    "2021-02-01T01:00:00Z", // s19
    "2021-02-01T01:30:00Z", // s20  same hour as s19, newer
    "2021-02-01T02:00:00Z", // s21
    "2021-02-02T12:00:00Z", // s22
    "2021-02-03T12:00:00Z", // s23
    "2021-02-04T12:00:00Z", // s24
    "2021-02-05T12:00:00Z", // s25
    "2021-02-05T18:00:00Z", // s26  newest
];

#[test]
fn calendar_rules_on_one_timeline() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("file"), b"retention\n").unwrap();
    let mut t = Timeline::new(&base);
    for (i, time) in TIMES.iter().enumerate() {
        let tags: &[&str] = if i == 2 || i == 10 { &["important"] } else { &[] };
        t.add(&s(i), &src, time, "alpha", tags);
    }
    let all = t.all();
    assert_eq!(all.len(), 27);
    let original = snapshot_files(&t.arca.repo);

    // --keep-daily 7: newest of each of the 7 most recent days that have one.
    let v = t.expect(&["--keep-daily", "7"], &all, &["s26", "s24", "s23", "s22", "s21", "s17", "s12"]);
    assert!(t.reasons(&v, "s17").contains(&"daily".to_string()), "{v}");
    assert!(!t.reasons(&v, "s25").is_empty());

    // --keep-weekly 4 --keep-monthly 2: weeks W05, W04, W02, W01 of 2021;
    // months 2021-02, 2021-01.
    t.expect(&["--keep-weekly", "4", "--keep-monthly", "2"], &all, &["s26", "s17", "s10", "s09"]);

    // Six weeks reach back over the ISO week 2020-W53, which runs from
    // 2020-12-28 to 2021-01-03 (one bucket across the year boundary: s07
    // only), then W2020-23; four months add December 2020 (s05).
    let v = t.expect(
        &["--keep-weekly", "6", "--keep-monthly", "4"],
        &all,
        &["s26", "s17", "s10", "s09", "s07", "s05", "s02"],
    );
    assert_eq!(t.reasons(&v, "s05"), vec!["monthly"], "{v}");
    assert_eq!(t.reasons(&v, "s07"), vec!["weekly"], "{v}");
    let r = t.reasons(&v, "s26");
    assert!(r.contains(&"weekly".into()) && r.contains(&"monthly".into()), "s26 reasons {r:?}");

    // --keep-last 3 --keep-yearly 2: the year of 2021-01-01T01:00 is 2021,
    // so 2020's newest is s05.
    let v = t.expect(&["--keep-last", "3", "--keep-yearly", "2"], &all, &["s26", "s25", "s24", "s05"]);
    assert_eq!(t.reasons(&v, "s25"), vec!["last"], "{v}");
    assert_eq!(t.reasons(&v, "s05"), vec!["yearly"], "{v}");
    t.expect(&["--keep-yearly", "3"], &all, &["s26", "s05", "s01"]);

    // --keep-hourly 10: s19 shares 02-01 01h with the newer s20, s16 shares
    // 01-31 23h with s17.
    t.expect(
        &["--keep-hourly", "10"],
        &all,
        &["s26", "s25", "s24", "s23", "s22", "s21", "s20", "s18", "s17", "s15"],
    );

    // --keep-within counts back from the group's newest (2021-02-05T18:00),
    // not from now: 3d reaches back to 02-02T18:00.
    let v = t.expect(&["--keep-within", "3d"], &all, &["s26", "s25", "s24", "s23"]);
    assert_eq!(t.reasons(&v, "s23"), vec!["within"], "{v}");
    // 2w = 14 days: back to 01-22T18:00.
    let two_weeks: Vec<String> = (11..27).map(s).collect();
    let two_weeks: Vec<&str> = two_weeks.iter().map(String::as_str).collect();
    t.expect(&["--keep-within", "2w"], &all, &two_weeks);
    // 6m = six months of 30 days: back to 2020-08-09T18:00 (not minutes).
    let six_months: Vec<String> = (3..27).map(s).collect();
    let six_months: Vec<&str> = six_months.iter().map(String::as_str).collect();
    t.expect(&["--keep-within", "6m"], &all, &six_months);

    // --keep-tag important keeps the two tagged ones, and the newest is
    // never removed.
    let v = t.expect(&["--keep-tag", "important"], &all, &["s02", "s10", "s26"]);
    assert_eq!(t.reasons(&v, "s02"), vec!["tag"], "{v}");
    assert_eq!(t.reasons(&v, "s26"), vec!["newest"], "{v}");
    // ... unless --allow-empty.
    t.expect(&["--keep-tag", "important", "--allow-empty"], &all, &["s02", "s10"]);

    // --max-versions alone: the 5 newest stay, the oldest go first.
    let v = t.expect(&["--max-versions", "5"], &all, &["s26", "s25", "s24", "s23", "s22"]);
    assert_eq!(t.reasons(&v, "s21"), vec!["max-versions"], "{v}");
    assert_eq!(t.reasons(&v, "s00"), vec!["max-versions"], "{v}");
    // A cap on what the rules keep: daily 7 keeps s26 s24 s23 s22 s21 s17
    // s12, of which the 3 newest remain.
    t.expect(&["--keep-daily", "7", "--max-versions", "3"], &all, &["s26", "s24", "s23"]);

    // --max-age 30d: everything here is years old; the newest survives...
    let v = t.expect(&["--max-age", "30d"], &all, &["s26"]);
    assert_eq!(t.reasons(&v, "s26"), vec!["newest"], "{v}");
    assert_eq!(t.reasons(&v, "s25"), vec!["max-age"], "{v}");
    // ... unless --allow-empty: the repository may end up empty.
    t.expect(&["--max-age", "30d", "--allow-empty"], &all, &[]);

    // Explicit ids (prefixes) remove exactly those, whatever their age.
    let p3 = t.ids["s03"][..12].to_string();
    let p12 = t.ids["s12"][..8].to_string();
    let others: Vec<String> = (0..27).map(s).filter(|l| l != "s03" && l != "s12").collect();
    let v = t.expect(&[&p3, &p12], &all, &others.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(t.reasons(&v, "s03"), vec!["explicit"], "{v}");
    // Naming the newest removes it: an explicit id is not a policy.
    let p26 = t.ids["s26"].clone();
    let rest: Vec<String> = (0..26).map(s).collect();
    t.expect(&[&p26], &all, &rest.iter().map(String::as_str).collect::<Vec<_>>());

    // No rule and no id: nothing is removed, and the report says so.
    for args in [vec!["forget"], vec!["forget", "--group-by", "host"], vec!["forget", "--allow-empty"]] {
        let v = t.arca.json(&args);
        assert_eq!(ju64(&v, "removed"), 0, "{args:?} removed something: {v}");
        assert!(jarr(&v, "removed_ids").is_empty(), "{args:?}: {v}");
        let says = v.to_string().to_lowercase();
        assert!(says.contains("nothing") || says.contains("no policy"), "{args:?} does not say why: {v}");
    }
    assert_eq!(t.present(&t.arca), all, "forget without a rule removed snapshots");

    // A stored policy without a rule is refused or removes nothing.
    let out = t.arca.run_json(&["policy", "set"]);
    let out2 = t.arca.run_json(&["cleanup"]);
    if out.code == 0 {
        let v = out2.ok().json();
        assert_eq!(ju64(&v, "removed"), 0, "cleanup with an empty policy removed snapshots: {v}");
    } else {
        assert_eq!(out.code, 1, "policy set without a rule: {}", out.describe());
        assert_ne!(out2.code, 0, "cleanup without a stored policy should fail: {}", out2.describe());
    }
    assert_eq!(t.present(&t.arca), all, "an empty policy removed snapshots");

    // All the dry runs above changed nothing.
    let now: BTreeMap<_, _> = snapshot_files(&t.arca.repo)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(t.arca.repo.join("policy")))
        .collect();
    let orig: BTreeMap<_, _> =
        original.into_iter().filter(|(p, _)| !p.starts_with(t.arca.repo.join("policy"))).collect();
    assert!(now == orig, "the original repository changed during the dry runs");
    t.finish();
}

/// Policies apply per group: by host and paths by default, by what
/// `--group-by` names, and to everything with `--group-by ''`; `--host` and
/// `--path` restrict what is considered.
#[test]
fn grouping_by_host_and_paths() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src_a = base.join("srcA");
    let src_b = base.join("srcB");
    for d in [&src_a, &src_b] {
        fs::create_dir_all(d).unwrap();
        fs::write(d.join("f"), d.to_string_lossy().as_bytes()).unwrap();
    }
    let mut t = Timeline::new(&base);
    // In time order: a0 b0 a1 b1 p0 a2 p1 b2.
    t.add("a0", &src_a, "2021-03-01T10:00:00Z", "alpha", &[]);
    t.add("b0", &src_a, "2021-03-01T12:00:00Z", "beta", &[]);
    t.add("b1", &src_a, "2021-03-02T08:00:00Z", "beta", &[]);
    t.add("a1", &src_a, "2021-03-02T10:00:00Z", "alpha", &[]);
    t.add("p0", &src_b, "2021-03-02T12:00:00Z", "alpha", &[]);
    t.add("a2", &src_a, "2021-03-03T10:00:00Z", "alpha", &[]);
    t.add("p1", &src_b, "2021-03-03T12:00:00Z", "alpha", &[]);
    t.add("b2", &src_a, "2021-03-04T09:00:00Z", "beta", &[]);
    let all = t.all();

    // Default: host and paths. Three groups, the newest of each stays.
    let v = t.expect(&["--keep-last", "1"], &all, &["a2", "p1", "b2"]);
    let mut groups: Vec<BTreeSet<String>> = jarr(&v, "groups")
        .iter()
        .map(|g| jarr(g, "snapshots").iter().map(|s| t.label_of(jstr(s, "id"))).collect())
        .collect();
    groups.sort();
    let mut want = vec![set(&["a0", "a1", "a2"]), set(&["b0", "b1", "b2"]), set(&["p0", "p1"])];
    want.sort();
    assert_eq!(groups, want, "default grouping (host, paths): {v}");

    // A daily rule is applied per host: each host keeps its own days.
    t.expect(&["--keep-daily", "2"], &all, &["a2", "a1", "p1", "p0", "b2", "b1"]);
    // By host only: alpha's two newest are p1 and a2; beta's b2 and b1.
    t.expect(&["--keep-last", "2", "--group-by", "host"], &all, &["p1", "a2", "b2", "b1"]);
    // By paths only: srcA's two newest are b2 and a2; srcB's p1 and p0.
    t.expect(&["--keep-last", "2", "--group-by", "paths"], &all, &["b2", "a2", "p1", "p0"]);
    // One group for everything.
    let v = t.expect(&["--keep-last", "2", "--group-by", ""], &all, &["b2", "p1"]);
    assert_eq!(jarr(&v, "groups").len(), 1, "--group-by '' must make one group: {v}");
    t.expect(&["--keep-daily", "1", "--group-by", ""], &all, &["b2"]);
    // --host: only beta's snapshots are considered; alpha's stay untouched.
    t.expect(&["--keep-last", "1", "--host", "beta"], &set(&["b0", "b1", "b2"]), &["b2"]);
    // --path: only srcB's.
    let p = src_b.to_string_lossy().into_owned();
    t.expect(&["--keep-last", "1", "--path", &p], &set(&["p0", "p1"]), &["p1"]);
    t.finish();
}

/// `--max-age` counts back from now (not from the newest snapshot), and a
/// month is 30 days.
#[test]
fn max_age_is_relative_to_now() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"age\n").unwrap();
    let mut t = Timeline::new(&base);
    const DAY: u64 = 86_400;
    for (label, secs) in
        [("d40", 40 * DAY), ("d31", 31 * DAY), ("d29", 29 * DAY), ("d10", 10 * DAY), ("h1", 3600)]
    {
        t.add(label, &src, &ago(secs), "now", &[]);
    }
    let all = t.all();
    let v = t.expect(&["--max-age", "30d"], &all, &["d29", "d10", "h1"]);
    assert_eq!(t.reasons(&v, "d31"), vec!["max-age"], "{v}");
    t.expect(&["--max-age", "2w"], &all, &["d10", "h1"]);
    t.expect(&["--max-age", "12h"], &all, &["h1"]);
    // m = months: 1m = 30 days (were it minutes, only the newest would stay).
    t.expect(&["--max-age", "1m"], &all, &["d29", "d10", "h1"]);
    // The cap removes what a keep rule would keep.
    t.expect(&["--keep-last", "4", "--max-age", "30d"], &all, &["h1", "d10", "d29"]);
    // --keep-within is relative to the newest, so 30d keeps the same here.
    t.expect(&["--keep-within", "30d"], &all, &["d29", "d10", "h1"]);
    t.finish();
}
