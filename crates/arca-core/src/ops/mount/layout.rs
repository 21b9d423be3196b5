//! The folders above the snapshots, fixed at mount time (restic's layout,
//! so that a person finds their way and scripts find the same names on
//! every mount):
//!
//! ```text
//! ids/<short id>/                 each snapshot by id
//! snapshots/<time>/, latest       each snapshot by the local time it was taken
//! hosts/<host>/<time>/, latest    those of each host
//! tags/<tag>/<time>/, latest      those with each tag
//! ```
//!
//! A snapshot's folder holds its root tree, so its files are below their
//! absolute source paths (`ids/1a2b3c4d/home/ada/letter.txt`).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone};

use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Timestamp;

/// What the layout holds, before it gets inode numbers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// A folder of the layout: its entries sorted by name, and its time
    /// (the newest snapshot in it, so that it does not change between two
    /// mounts of the same snapshots).
    Folder(Vec<(Vec<u8>, Shape)>, Timestamp),
    /// A `latest` link: its target (a name in the same folder) and time.
    Link(Vec<u8>, Timestamp),
    /// The root tree of the snapshot at this position of the list.
    Snapshot(usize),
}

/// The whole layout of `list` (oldest first, as the repository lists it):
/// the tree of [`Shape`]s under the mount's root. Snapshot times are named
/// in the time zone `tz` (the local one when mounting).
pub(super) fn shape<Tz: TimeZone>(list: &[(SnapshotId, Snapshot)], tz: &Tz) -> Shape
where
    Tz::Offset: std::fmt::Display,
{
    let times: Vec<Timestamp> = list.iter().map(|(_, s)| timestamp(&s.timestamp())).collect();
    let names =
        with_suffixes(list.iter().map(|(_, s)| time_name(&s.timestamp().with_timezone(tz))).collect());
    let newest = times.iter().copied().max().unwrap_or_default();

    // The snapshots at these positions of the list, by time, and `latest`.
    let by_time = |members: &[usize]| {
        let mut entries: Vec<(Vec<u8>, Shape)> =
            members.iter().map(|&i| (names[i].clone().into_bytes(), Shape::Snapshot(i))).collect();
        let time = members.iter().map(|&i| times[i]).max().unwrap_or_default();
        // The last of the list is the newest (of equal times, the last
        // listed, as `latest` means everywhere else).
        if let Some(&last) = members.last() {
            entries.push((b"latest".to_vec(), Shape::Link(names[last].clone().into_bytes(), times[last])));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Shape::Folder(entries, time)
    };
    let all: Vec<usize> = (0..list.len()).collect();

    // Groups keyed by their folder name: two hosts whose names differ
    // only in a character a folder name cannot hold share a folder.
    let mut hosts: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    let mut tags: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (i, (_, s)) in list.iter().enumerate() {
        hosts.entry(folder_name(&s.host)).or_default().push(i);
        let mut seen = Vec::new();
        for t in &s.tags {
            let name = folder_name(t);
            if !seen.contains(&name) {
                tags.entry(name.clone()).or_default().push(i);
                seen.push(name);
            }
        }
    }
    let grouped = |groups: BTreeMap<Vec<u8>, Vec<usize>>| {
        let time = groups.values().flatten().map(|&i| times[i]).max().unwrap_or(newest);
        Shape::Folder(groups.into_iter().map(|(name, members)| (name, by_time(&members))).collect(), time)
    };

    let ids = id_names(list);
    let mut by_id: Vec<(Vec<u8>, Shape)> =
        ids.into_iter().enumerate().map(|(i, id)| (id.into_bytes(), Shape::Snapshot(i))).collect();
    by_id.sort_by(|a, b| a.0.cmp(&b.0));

    Shape::Folder(
        vec![
            (b"hosts".to_vec(), grouped(hosts)),
            (b"ids".to_vec(), Shape::Folder(by_id, newest)),
            (b"snapshots".to_vec(), by_time(&all)),
            (b"tags".to_vec(), grouped(tags)),
        ],
        newest,
    )
}

/// A snapshot's time as a folder name: RFC 3339 to the second with the
/// offset of the zone it is shown in, `2026-12-02T19:44:30-05:00`.
pub(super) fn time_name<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// `names` made unique in order: the first of equal names keeps it, the
/// next ones get `-1`, `-2`, … (snapshots taken within the same second).
pub(super) fn with_suffixes(names: Vec<String>) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut unique = name.clone();
        let mut n = 0;
        while !taken.insert(unique.clone()) {
            n += 1;
            unique = format!("{name}-{n}");
        }
        out.push(unique);
    }
    out
}

/// Each snapshot's short id (8 hex digits), or its whole id where two
/// share a short one.
fn id_names(list: &[(SnapshotId, Snapshot)]) -> Vec<String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _) in list {
        *count.entry(id.short()).or_default() += 1;
    }
    list.iter().map(|(id, _)| if count[&id.short()] > 1 { id.to_hex() } else { id.short() }).collect()
}

/// A host or tag as a folder name: one path component, whatever it holds
/// (`/` and NUL become `_`; an empty name, `.` and `..` get a leading `_`).
pub(super) fn folder_name(s: &str) -> Vec<u8> {
    let mut name: Vec<u8> = s.bytes().map(|b| if b == b'/' || b == 0 { b'_' } else { b }).collect();
    if name.is_empty() || name == b"." || name == b".." {
        name.insert(0, b'_');
    }
    name
}

/// A snapshot time as a tree timestamp.
pub(super) fn timestamp<Tz: TimeZone>(t: &DateTime<Tz>) -> Timestamp {
    Timestamp { secs: t.timestamp(), nanos: t.timestamp_subsec_nanos() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::Id;
    use chrono::FixedOffset;

    fn snap(time: &str, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            time: time.into(),
            host: host.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    fn id(first: u8, last: u8) -> SnapshotId {
        let mut b = [0u8; 32];
        b[0] = first;
        b[31] = last;
        SnapshotId(Id(b))
    }

    fn names(shape: &Shape) -> Vec<String> {
        match shape {
            Shape::Folder(entries, _) => {
                entries.iter().map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect()
            }
            other => panic!("not a folder: {other:?}"),
        }
    }

    fn child<'a>(shape: &'a Shape, name: &str) -> &'a Shape {
        match shape {
            Shape::Folder(entries, _) => {
                &entries.iter().find(|(n, _)| n == name.as_bytes()).unwrap_or_else(|| panic!("no {name}")).1
            }
            other => panic!("not a folder: {other:?}"),
        }
    }

    #[test]
    fn equal_names_get_numbered_suffixes_in_order() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(with_suffixes(v(&["a", "b", "c"])), v(&["a", "b", "c"]));
        assert_eq!(with_suffixes(v(&["a", "a", "b", "a"])), v(&["a", "a-1", "b", "a-2"]));
        // A suffixed name already taken moves on to the next number.
        assert_eq!(with_suffixes(v(&["a", "a-1", "a"])), v(&["a", "a-1", "a-2"]));
        assert_eq!(with_suffixes(vec![]), Vec::<String>::new());
    }

    #[test]
    fn times_are_named_in_the_zone_given_to_the_second() {
        let t = DateTime::parse_from_rfc3339("2026-12-03T00:44:30.123456789Z").unwrap();
        let est = FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(time_name(&t.with_timezone(&est)), "2026-12-02T19:44:30-05:00");
        let utc = FixedOffset::east_opt(0).unwrap();
        assert_eq!(time_name(&t.with_timezone(&utc)), "2026-12-03T00:44:30+00:00");
        assert_eq!(timestamp(&t), Timestamp { secs: 1_796_258_670, nanos: 123_456_789 });
    }

    #[test]
    fn folder_names_are_one_component() {
        assert_eq!(folder_name("ada"), b"ada");
        assert_eq!(folder_name("a/b"), b"a_b");
        assert_eq!(folder_name("a\0b"), b"a_b");
        assert_eq!(folder_name(""), b"_");
        assert_eq!(folder_name("."), b"_.");
        assert_eq!(folder_name(".."), b"_..");
        assert_eq!(folder_name("..."), b"...");
    }

    #[test]
    fn the_layout_groups_by_id_time_host_and_tag() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let list = vec![
            (id(1, 1), snap("2026-01-01T10:00:00Z", "alpha", &["daily"])),
            // The same second as the first: a suffix.
            (id(2, 2), snap("2026-01-01T10:00:00.5Z", "beta", &["daily", "db"])),
            (id(3, 3), snap("2026-01-02T10:00:00Z", "alpha", &[])),
            // Shares its short id with the first: both shown whole.
            (id(1, 9), snap("2026-01-03T10:00:00Z", "a/b", &["db", "db"])),
        ];
        let s = shape(&list, &utc);
        assert_eq!(names(&s), ["hosts", "ids", "snapshots", "tags"]);

        let t0 = "2026-01-01T10:00:00+00:00";
        let t1 = "2026-01-01T10:00:00+00:00-1";
        let t2 = "2026-01-02T10:00:00+00:00";
        let t3 = "2026-01-03T10:00:00+00:00";
        let snapshots = child(&s, "snapshots");
        assert_eq!(names(snapshots), [t0, t1, t2, t3, "latest"]);
        assert_eq!(child(snapshots, t1), &Shape::Snapshot(1));
        let newest = timestamp(&DateTime::parse_from_rfc3339("2026-01-03T10:00:00Z").unwrap());
        assert_eq!(child(snapshots, "latest"), &Shape::Link(t3.as_bytes().to_vec(), newest));

        let ids = child(&s, "ids");
        let whole_1 = id(1, 1).to_hex();
        let whole_9 = id(1, 9).to_hex();
        let mut expected = vec![whole_1.clone(), whole_9.clone(), id(2, 2).short(), id(3, 3).short()];
        expected.sort();
        assert_eq!(names(ids), expected);
        assert_eq!(child(ids, &whole_9), &Shape::Snapshot(3));

        let hosts = child(&s, "hosts");
        assert_eq!(names(hosts), ["a_b", "alpha", "beta"]);
        assert_eq!(names(child(hosts, "alpha")), [t0, t2, "latest"]);
        let alpha_latest = child(child(hosts, "alpha"), "latest");
        assert!(matches!(alpha_latest, Shape::Link(t, _) if t == t2.as_bytes()));

        let tags = child(&s, "tags");
        assert_eq!(names(tags), ["daily", "db"]);
        assert_eq!(names(child(tags, "daily")), [t0, t1, "latest"]);
        // A tag given twice puts the snapshot in its folder once.
        assert_eq!(names(child(tags, "db")), [t1, t3, "latest"]);
    }

    #[test]
    fn no_snapshots_give_empty_folders() {
        let s = shape(&[], &FixedOffset::east_opt(0).unwrap());
        assert_eq!(names(child(&s, "snapshots")), Vec::<String>::new());
        assert_eq!(names(child(&s, "hosts")), Vec::<String>::new());
    }
}
