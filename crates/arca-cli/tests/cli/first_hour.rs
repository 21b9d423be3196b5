//! A restic user's first hour, as the README tells it, end to end: two sets
//! backed up into one repository, the latest of one restored, a file found
//! across snapshots, the snapshots mounted and browsed, a dump piped in,
//! tags, a policy applied; each step checked against the files themselves.
use crate::common;

use std::fs;

use common::*;

#[test]
fn the_first_hour_runs_without_a_surprise() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let home = base.join("home/me");
    let etc = base.join("etc");
    fs::create_dir_all(home.join("letters")).unwrap();
    fs::create_dir_all(home.join(".cache/app")).unwrap();
    fs::create_dir_all(etc.join("ssh")).unwrap();
    fs::write(home.join("letters/letter-ada.odt"), "Dear Ada").unwrap();
    fs::write(home.join("notes.TMP"), "scratch").unwrap();
    fs::write(home.join(".cache/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    fs::write(home.join(".cache/app/big"), vec![7u8; 100_000]).unwrap();
    fs::write(etc.join("hostname"), "box\n").unwrap();
    fs::write(etc.join("ssh/sshd_config"), "Port 22\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();

    // Two sets in one repository.
    let h1 = arca.backup(&[&home], &["--exclude-caches", "--iexclude", "*.tmp", "--tag", "home"]);
    let e1 = arca.backup(&[&etc], &["--tag", "etc"]);
    assert_eq!(ju64(&h1, "files"), 1, "the letter only: the cache and *.TMP are left out: {h1}");
    fs::write(home.join("letters/letter-bob.odt"), "Dear Bob").unwrap();
    let h2 = arca.backup(&[&home], &["--exclude-caches", "--iexclude", "*.tmp", "--tag", "home"]);
    assert_eq!(jstr(&h2, "parent"), jstr(&h1, "id"), "the second backup of home builds on the first");

    // The snapshots, newest last; "latest of /etc" is the etc snapshot even
    // though home was backed up after it.
    let list = arca.run(&["snapshots"]).ok().stdout;
    assert!(list.contains("3 snapshots"), "{list}");
    let target = base.join("restored");
    let r = arca.restore("latest", &target, &["--path", etc.to_str().unwrap()]);
    assert_eq!(jstr(&r, "snapshot"), jstr(&e1, "id"));
    assert_trees_equal(&etc, &restored(&target, &etc), Compare::default());
    assert!(!restored(&target, &home).exists(), "nothing of home restored");

    // Which snapshots hold a letter, and where.
    let found = arca.json(&["find", "letter-*.odt"]);
    assert_eq!(ju64(&found, "matches"), 3, "ada in both home snapshots, bob in the second: {found}");
    let out = arca.run(&["find", "LETTER-BOB.ODT", "-i"]).ok();
    assert!(
        out.stdout.contains(&home.join("letters/letter-bob.odt").display().to_string()),
        "{}",
        out.describe()
    );

    // Mount, browse the latest home snapshot by its tag, copy a letter out,
    // unmount.
    if crate::mount::fuse_usable("first_hour: mount") {
        let at = base.join("mnt");
        fs::create_dir(&at).unwrap();
        let mut mounted = crate::mount::Mount::start(&arca, &at, false, &[], &base.join("mount.log"));
        let latest = at.join("tags/home/latest").join(home.strip_prefix("/").unwrap());
        let copied = base.join("letter-copy.odt");
        fs::copy(latest.join("letters/letter-bob.odt"), &copied).unwrap();
        assert_eq!(fs::read(&copied).unwrap(), b"Dear Bob");
        let status = std::process::Command::new("umount").arg(&at).status().unwrap();
        assert!(status.success());
        assert_eq!(mounted.wait_exit("umount"), Some(0));
        assert!(!crate::mount::is_mounted(&at));
    }

    // A database dump, piped in and through a command.
    let dump = "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n";
    let piped = arca.json(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "mydb.sql",
        "--tag",
        "db",
        "--",
        "printf",
        dump,
    ]);
    let out = arca.command(false, &["dump", jstr(&piped, "id"), "/mydb.sql"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), dump);
    let failed = arca.run(&["backup", "--stdin-from-command", "--", "sh", "-c", "echo partial; exit 3"]);
    assert_eq!(failed.code, 1, "a failed dump fails: {}", failed.describe());
    assert_eq!(arca.snapshots().len(), 4, "and leaves no snapshot");

    // Tag one to keep, then a policy: the newest of each set, and the tagged one.
    arca.json(&["tag", jstr(&h1, "short_id"), "--add", "keep"]);
    let report = arca.json(&["forget", "--keep-last", "1", "--keep-tag", "keep", "--prune"]);
    assert_eq!(
        ju64(&report, "removed"),
        0,
        "h1 is kept by its tag, the others are the newest of their group: {report}"
    );
    arca.json(&["tag", "--tag", "keep", "--remove", "keep"]);
    let report = arca.json(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(ju64(&report, "removed"), 1, "now the older home snapshot goes: {report}");
    let left: Vec<String> =
        arca.snapshots().iter().map(|s| jarr(s, "tags")[0].as_str().unwrap().to_string()).collect();
    assert_eq!(left, vec!["etc", "home", "db"], "one of each set, oldest first");
    let check = arca.verify(&["--read-data"]);
    assert_eq!(check.code, 0, "{}", check.describe());
    let again = base.join("again");
    arca.restore("latest", &again, &["--tag", "home"]);
    assert_trees_equal(&home.join("letters"), &restored(&again, &home).join("letters"), Compare::default());
}
