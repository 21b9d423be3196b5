//! PostgreSQL logical backups against a real server (Debian's postgresql,
//! started by the test as an unprivileged user on a private port and
//! socket folder): every database dumped into one snapshot, a second
//! backup after 1 % of the rows changed adds little, the dumps restore to
//! the same rows, and a dump that dies midway leaves no snapshot.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// A PostgreSQL server of the test's own, stopped on drop.
struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run the server's programs as this user (postgres refuses root).
    as_user: Option<u32>,
}

impl PgServer {
    fn start_or_skip(test: &str, base: &Path) -> Option<PgServer> {
        PgServer::start_with(test, base, "pg", &[])
    }

    /// A server in `base/<folder>` with `settings` added to its
    /// postgresql.conf.
    fn start_with(test: &str, base: &Path, folder: &str, settings: &[(&str, &str)]) -> Option<PgServer> {
        let bin = fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).max()
        });
        let Some(bin) = bin else {
            skip(
                test,
                "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb; scripts/test.sh installs it)",
            );
            return None;
        };
        let dir = base.join(folder);
        fs::create_dir_all(dir.join("sock")).unwrap();
        let as_user = is_root().then_some(65534);
        if let Some(uid) = as_user {
            for p in [&dir, &dir.join("sock")] {
                nix::unistd::chown(p.as_path(), Some(uid.into()), Some(uid.into())).unwrap();
            }
            // The server's user walks down to its folder.
            let mut p = dir.parent();
            while let Some(d) = p {
                let mode = fs::metadata(d).unwrap().permissions().mode();
                fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o711)).unwrap();
                p = d.parent();
            }
        }
        let port = crate::s3server::free_port();
        let s = PgServer { bin, data: dir.join("data"), port, as_user };
        s.run(
            "initdb",
            &["-D", s.data.to_str().unwrap(), "-U", "arca", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        let mut conf = fs::OpenOptions::new().append(true).open(s.data.join("postgresql.conf")).unwrap();
        for (k, v) in settings {
            std::io::Write::write_all(&mut conf, format!("{k} = '{}'\n", v.replace('\'', "''")).as_bytes())
                .unwrap();
        }
        s.start(&dir);
        Some(s)
    }

    /// Starts the server on its data folder, its socket and log in `dir`.
    fn start(&self, dir: &Path) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            dir.join("sock").display()
        );
        let log = dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
    }

    /// Runs one of the server's programs (as its user), asserting success.
    fn run(&self, program: &str, args: &[&str]) {
        let mut cmd = match self.as_user {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", &uid.to_string(), "--regid", &uid.to_string(), "--clear-groups"]);
                c.arg(self.bin.join(program));
                c
            }
            None => Command::new(self.bin.join(program)),
        };
        let out = cmd.args(args).current_dir("/").stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The server's URL, with a password that trust authentication
    /// ignores: it must never be shown.
    fn url(&self) -> String {
        format!("postgresql://arca:{PG_SECRET}@127.0.0.1:{}", self.port)
    }

    /// `psql -Atc SQL` on database `db`, its output trimmed.
    fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(format!("postgresql://arca@127.0.0.1:{}/{db}", self.port))
            .output()
            .expect("psql (postgresql-client)");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The row count and a checksum of every row of `table`, in key order.
    fn fingerprint(&self, db: &str, table: &str, key: &str) -> String {
        self.sql(
            db,
            &format!("SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY {key})) FROM {table} t"),
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        let _ = std::panic::catch_unwind(|| self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]));
    }
}

const PG_SECRET: &str = "pg-secret-Wq31";

/// `arca` with the repository's password, run with `extra_path` first in
/// PATH when given.
fn arca_out(arca: &Arca, args: &[&str], extra_path: Option<&Path>) -> Out {
    let mut cmd = arca.command(true, args);
    if let Some(dir) = extra_path {
        cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
    }
    let out = run_command(cmd);
    assert!(
        !out.stdout.contains(PG_SECRET) && !out.stderr.contains(PG_SECRET),
        "the password was shown: {}",
        out.describe()
    );
    out
}

#[test]
fn a_cluster_is_dumped_database_by_database_and_a_second_backup_adds_little() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(pg) = PgServer::start_or_skip("postgres", &base) else { return };
    pg.sql("postgres", "CREATE DATABASE bench");
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql("app", "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g");
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "5"])
        .arg(format!("postgresql://arca@127.0.0.1:{}/bench", pg.port))
        .output()
        .expect("pgbench (postgresql-contrib)");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    // Rows as real ones are, not pgbench's blank filler (which compresses
    // to nothing and would hide what deduplication does).
    pg.sql("bench", "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5((aid * 7)::text)");
    pg.sql("bench", "VACUUM FULL pgbench_accounts");
    let arca = Arca::new(&base);
    arca.init();
    let at_first = pg.fingerprint("bench", "pgbench_accounts", "aid");

    let first = arca_out(&arca, &["backup", "--postgres", &pg.url()], None).ok().json();
    let cluster = format!("/postgres/127.0.0.1-{}", pg.port);
    assert_eq!(jarr(&first, "paths")[0], cluster.as_str(), "{first}");
    let listed = arca_out(&arca, &["ls", "latest", &cluster], None).ok();
    let names: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["path"].as_str().map(|p| p.rsplit('/').next().unwrap().to_string()))
        .collect();
    for want in ["globals.sql", "app.dump", "bench.dump", "postgres.dump"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {}", listed.stdout);
    }

    // 1 % of the rows change (together, as recent rows do): the second
    // backup adds a small part of what the first stored (the few 1 MiB
    // chunks around the rows that moved: docs/postgres.md).
    pg.sql("bench", "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 5000");
    let second =
        arca_out(&arca, &["backup", "--postgres", &pg.url(), "--database", "bench"], None).ok().json();
    let (first_added, added) =
        (ju64(&first["summary"], "bytes_added"), ju64(&second["summary"], "bytes_added"));
    assert!(first_added > 15_000_000, "the first backup stores the dumps: {first}");
    assert!(added * 5 < first_added, "1 % of the rows changed: {added} bytes added after {first_added}");

    // The first snapshot's dump restores to the rows as they were then.
    let snaps = arca.snapshots();
    let first_id = jstr(&snaps[0], "id").to_string();
    let dump = base.join("bench.dump");
    let out = arca_out(&arca, &["dump", &first_id, &format!("{cluster}/bench.dump")], None);
    assert_eq!(out.code, 0, "{}", out.describe());
    fs::write(
        &dump,
        arca.command(false, &["dump", &first_id, &format!("{cluster}/bench.dump")]).output().unwrap().stdout,
    )
    .unwrap();
    pg.sql("postgres", "CREATE DATABASE restored");
    let restore = Command::new("pg_restore")
        .args(["--no-owner", "-d"])
        .arg(format!("postgresql://arca@127.0.0.1:{}/restored", pg.port))
        .arg(&dump)
        .output()
        .unwrap();
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    assert_eq!(pg.fingerprint("restored", "pgbench_accounts", "aid"), at_first);
    assert_ne!(pg.fingerprint("bench", "pgbench_accounts", "aid"), at_first, "the source moved on");

    // arca restore --to-postgres: into a new database, the rows as they
    // were; one table alone; over the changed source with --clean.
    let url = pg.url();
    let out = arca_out(&arca, &["restore", &first_id, "--to-postgres", &url], None);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(out.stderr.contains("give --database") && out.stderr.contains("bench"), "{}", out.describe());
    let done = arca_out(
        &arca,
        &[
            "restore",
            &first_id,
            "--to-postgres",
            &format!("{url}/viaarca"),
            "--database",
            "bench",
            "--create",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(jstr(&done, "database"), "viaarca", "{done}");
    assert_eq!(pg.fingerprint("viaarca", "pgbench_accounts", "aid"), at_first);
    arca_out(
        &arca,
        &["restore", &first_id, "--to-postgres", &format!("{url}/branches"), "--database", "bench"]
            .into_iter()
            .chain(["--create", "--table", "pgbench_branches"])
            .collect::<Vec<_>>(),
        None,
    )
    .ok();
    assert_eq!(
        pg.sql("branches", "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"),
        "pgbench_branches"
    );
    assert_eq!(pg.sql("branches", "SELECT count(*) FROM pgbench_branches"), "5");
    arca_out(
        &arca,
        &["restore", &first_id, "--to-postgres", &format!("{url}/bench"), "--database", "bench", "--clean"],
        None,
    )
    .ok();
    assert_eq!(pg.fingerprint("bench", "pgbench_accounts", "aid"), at_first, "--clean brought the rows back");
}

#[test]
fn a_dump_that_dies_midway_or_a_missing_database_leaves_no_snapshot() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(pg) = PgServer::start_or_skip("postgres", &base) else { return };
    pg.sql("postgres", "CREATE DATABASE big");
    pg.sql("big", "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g");
    let arca = Arca::new(&base);
    arca.init();
    // pg_dump killed after its first 100 kB: `head` closes the pipe and
    // pg_dump dies of SIGPIPE, as it would of a kill or a lost connection.
    let real = Command::new("sh").args(["-c", "command -v pg_dump"]).output().unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let wrap = base.join("wrap");
    fs::create_dir_all(&wrap).unwrap();
    fs::write(
        wrap.join("pg_dump"),
        format!("#!/bin/bash\nset -o pipefail\n{real} \"$@\" | head -c 100000\n"),
    )
    .unwrap();
    fs::set_permissions(wrap.join("pg_dump"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = arca_out(&arca, &["backup", "--postgres", &pg.url(), "--database", "big"], Some(&wrap));
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("pg_dump of database big") && out.stderr.contains("failed"),
        "{}",
        out.describe()
    );
    assert!(arca.snapshots().is_empty(), "no snapshot may look good after a failed dump");

    // A job whose database does not exist: the run fails, naming it.
    let config = base.join("arca.toml");
    let pw = base.join("pw");
    fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        &config,
        format!(
            "[repositories.local]\nurl = \"{}\"\npassword_file = \"{}\"\n[jobs.db]\npostgres = {{ url = \"{}\", databases = [\"big\", \"nope\"] }}\ndestinations = [\"local\"]\n",
            arca.repo.display(),
            pw.display(),
            pg.url()
        ),
    )
    .unwrap();
    let mut job = arca.clone();
    job.env.push(("ARCA_CONFIG".into(), config.clone().into()));
    let mut cmd = without_repo(job.command(true, &["run", "db"]));
    cmd.env_remove("ARCA_PASSWORD");
    let out = run_command(cmd);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stdout.contains("nope") && !out.stdout.contains(PG_SECRET) && !out.stderr.contains(PG_SECRET),
        "{}",
        out.describe()
    );
    assert!(arca.snapshots().is_empty());
    // The same job on the databases that exist: one snapshot, and `config
    // show` masks the password.
    fs::write(&config, fs::read_to_string(&config).unwrap().replace(", \"nope\"", "")).unwrap();
    let mut cmd = without_repo(job.command(true, &["run", "db"]));
    cmd.env_remove("ARCA_PASSWORD");
    run_command(cmd).ok();
    assert_eq!(arca.snapshots().len(), 1);
    let mut cmd = without_repo(job.command(false, &["config", "show"]));
    cmd.env_remove("ARCA_PASSWORD");
    let shown = run_command(cmd).ok();
    assert!(
        !shown.stdout.contains(PG_SECRET) && shown.stdout.contains("postgresql://arca@127.0.0.1"),
        "{}",
        shown.describe()
    );
}

/// `restore --to-postgres --json` against a server of its own, for the
/// JSON contract; `None` when the test may skip (no PostgreSQL).
pub fn restore_json_document(base: &Path) -> Option<serde_json::Value> {
    let pg = PgServer::start_or_skip("every_json_output_matches_docs_json_md: restore --to-postgres", base)?;
    pg.sql("postgres", "CREATE DATABASE one");
    pg.sql("one", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)");
    let arca = Arca::with_repo(base, &base.join("pg-repo"));
    arca.init();
    arca_out(&arca, &["backup", "--postgres", &pg.url(), "--database", "one"], None).ok();
    let url = format!("{}/two", pg.url());
    let v =
        arca_out(&arca, &["restore", "latest", "--to-postgres", &url, "--database", "one", "--create"], None)
            .ok()
            .json();
    assert_eq!(pg.sql("two", "SELECT count(*) FROM t"), "10");
    Some(v)
}

/// `arca` run as the server's user (root runs the server as nobody): the
/// archive_command and restore_command that the server runs use the same
/// repository, so everything in it must be that user's.
fn arca_as_server_user(pg: &PgServer, own: &Path) -> (Arca, PathBuf) {
    fs::create_dir_all(own).unwrap();
    let mut arca = Arca::with_repo(own, &own.join("repo"));
    let password = own.join("password");
    fs::write(&password, format!("{}\n", arca.password)).unwrap();
    fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).unwrap();
    if let Some(uid) = pg.as_user {
        let chown = Command::new("chown").args(["-R", &format!("{uid}:{uid}")]).arg(own).status().unwrap();
        assert!(chown.success());
        arca.wrapper =
            ["setpriv", "--reuid", &uid.to_string(), "--regid", &uid.to_string(), "--clear-groups"]
                .map(Into::into)
                .to_vec();
    }
    (arca, password)
}

/// The rows of `events` (`n`), in order.
fn event_rows(pg: &PgServer, db: &str) -> Vec<i64> {
    pg.sql(db, "SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM events")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Waits until the server has archived every segment up to the current one.
fn switch_and_wait_archived(pg: &PgServer) {
    let segment = pg.sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (archived, failed) = {
            let row = pg.sql("postgres", "SELECT coalesce(last_archived_wal, '') || '|' || coalesce(last_failed_wal, '') FROM pg_stat_archiver");
            let (a, f) = row.split_once('|').unwrap();
            (a.to_string(), f.to_string())
        };
        if archived.as_str() >= segment.as_str() && archived.len() == 24 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segment {segment} not archived in 60 s (last archived {archived:?}, last failed {failed:?}): {}",
            fs::read_to_string(pg.data.parent().unwrap().join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn point_in_time_recovery_replays_the_archived_wal_to_a_time_between_two_inserts() {
    let test = "point_in_time_recovery";
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let own = base.join("arca");
    let repo = own.join("repo");
    let password = own.join("password");
    let cache = own.join("home/cache");
    let archive_command = format!(
        "ARCA_CACHE_DIR={} {ARCA} --repo {} --password-file {} pg archive-wal --cluster main %p",
        cache.display(),
        repo.display(),
        password.display()
    );
    let settings = [("archive_mode", "on"), ("archive_command", archive_command.as_str())];
    let Some(pg) = PgServer::start_with(test, &base, "pg", &settings) else { return };
    let (arca, _) = arca_as_server_user(&pg, &own);
    arca.init();
    pg.sql("postgres", "CREATE TABLE events (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)");
    pg.sql(
        "postgres",
        "INSERT INTO events (n, pad) SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 3) g",
    );
    switch_and_wait_archived(&pg);

    // The base backup waits for its WAL, then records where it starts.
    let first = arca_out(&arca, &["pg", "basebackup", &pg.url()], None).ok().json();
    let first_id = jstr(&first, "id").to_string();
    let info = arca_out(&arca, &["cat", "snapshot", &first_id], None).ok().json();
    assert_eq!(jstr(&info["base_backup"], "cluster"), "main", "{info}");

    // One row a segment, each archived as it closes, with its time; the
    // WAL location just after row 4, and a restore point after row 7.
    let mut after_4 = String::new();
    for n in 4..=9 {
        pg.sql("postgres", &format!("INSERT INTO events (n, pad) VALUES ({n}, 'row {n}')"));
        if n == 4 {
            after_4 = pg.sql("postgres", "SELECT pg_current_wal_insert_lsn()");
        }
        if n == 7 {
            pg.sql("postgres", "SELECT pg_create_restore_point('before-8')");
        }
        switch_and_wait_archived(&pg);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let at = |n: i64| {
        pg.sql("postgres", &format!("SELECT extract(epoch FROM at) FROM events WHERE n = {n}"))
            .parse::<f64>()
            .unwrap()
    };
    let (t6, t7) = (at(6), at(7));
    assert!(t7 - t6 > 0.3, "rows 6 and 7 are apart: {t6} {t7}");
    let mid = (t6 + t7) / 2.0;
    let target_time = chrono::DateTime::from_timestamp(mid.trunc() as i64, (mid.fract() * 1e9) as u32)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);

    // Verify sees the archive whole.
    let v = arca_out(&arca, &["verify"], None).ok().json();
    let wal = &v["wal"][0];
    assert_eq!(jstr(wal, "cluster"), "main", "{v}");
    assert!(jarr(wal, "gaps").is_empty(), "{v}");

    // Recovers into `folder` (of the server's user) with `args`, and
    // starts the server there on a port of its own, as a copy beside the
    // original (--no-archive).
    let recover = |folder: &str, args: &[&str]| -> (PgServer, serde_json::Value) {
        let restored = base.join(folder);
        fs::create_dir_all(restored.join("sock")).unwrap();
        if let Some(uid) = pg.as_user {
            for p in [restored.clone(), restored.join("sock")] {
                nix::unistd::chown(p.as_path(), Some(uid.into()), Some(uid.into())).unwrap();
            }
        }
        let datadir = restored.join("data");
        let mut argv = vec!["--password-file", password.to_str().unwrap(), "pg", "restore", "--no-archive"];
        argv.extend(args);
        argv.extend(["--target", datadir.to_str().unwrap()]);
        let done = arca_out(&arca, &argv, None).ok().json();
        let auto = fs::read_to_string(datadir.join("postgresql.auto.conf")).unwrap();
        assert!(auto.contains("fetch-wal"), "{auto}");
        assert!(
            !auto.contains(&arca.password),
            "the password is never written into the server's configuration"
        );
        assert!(datadir.join("recovery.signal").exists());
        assert!(auto.contains("archive_mode = 'off'"), "{auto}");
        let server = PgServer {
            bin: pg.bin.clone(),
            data: datadir,
            port: crate::s3server::free_port(),
            as_user: pg.as_user,
        };
        server.start(&restored);
        (server, done)
    };
    // It accepts reads while it replays: wait until it is where it stops.
    let wait_until = |server: &PgServer, sql: &str, want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while server.sql("postgres", sql) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{sql} is not {want} after 60 s: {}",
                fs::read_to_string(server.data.parent().unwrap().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    // To the time between rows 6 and 7, promoted there.
    let (recovered, done) = recover("restored", &["--at", &target_time]);
    assert_eq!(jstr(&done, "snapshot"), first_id, "{done}");
    assert!(jstr(&done, "target").starts_with("recovery_target_time"), "{done}");
    wait_until(&recovered, "SELECT pg_is_in_recovery()", "f");
    assert_eq!(event_rows(&recovered, "postgres"), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(event_rows(&pg, "postgres"), (1..=9).collect::<Vec<_>>(), "the source is untouched");
    drop(recovered);
    // To the restore point, paused there (read-only, still in recovery).
    let (paused, _) = recover("at-name", &["--target-name", "before-8", "--target-action", "pause"]);
    wait_until(&paused, "SELECT pg_get_wal_replay_pause_state()", "paused");
    assert_eq!(event_rows(&paused, "postgres"), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(paused.sql("postgres", "SELECT pg_is_in_recovery()"), "t");
    drop(paused);
    // To the WAL location just after row 4.
    let (at_lsn, _) = recover("at-lsn", &["--target-lsn", &after_4]);
    wait_until(&at_lsn, "SELECT pg_is_in_recovery()", "f");
    assert_eq!(event_rows(&at_lsn, "postgres"), vec![1, 2, 3, 4]);
    drop(at_lsn);
    let files = arca_out(&arca, &["pg", "wal"], None).ok().json();
    assert!(
        jarr(&files, "files").iter().all(|f| !jstr(f, "name").starts_with("00000002")),
        "--no-archive: the copy's new timeline stays out of the original's archive: {files}"
    );

    // Retention: a second base backup, the first forgotten and pruned:
    // the WAL only the first needed goes, the rest stays whole.
    let before = arca_out(&arca, &["pg", "wal"], None).ok().json();
    let second = arca_out(&arca, &["pg", "basebackup", &pg.url()], None).ok().json();
    arca_out(&arca, &["forget", &first_id, "--prune"], None).ok();
    let after = arca_out(&arca, &["pg", "wal"], None).ok().json();
    let needed = |j: &serde_json::Value| jstr(&j["clusters"][0], "needed_from").to_string();
    assert!(needed(&after) > needed(&before), "{before}\n{after}");
    let names = |j: &serde_json::Value| -> Vec<String> {
        jarr(j, "files").iter().map(|f| jstr(f, "name").to_string()).collect()
    };
    let (was, now) = (names(&before), names(&after));
    assert!(now.len() < was.len(), "{was:?} -> {now:?}");
    assert!(
        now.iter().filter(|n| n.len() == 24).all(|n| *n >= needed(&after)),
        "only segments the kept base backup needs stay: {now:?}"
    );
    assert!(was.iter().filter(|n| n.len() == 24 && **n >= needed(&after)).all(|n| now.contains(n)));
    let v = arca_out(&arca, &["verify"], None).ok().json();
    assert!(jarr(&v["wal"][0], "gaps").is_empty(), "{v}");
    // A copy of the base backup brings the WAL it replays along, once.
    let mut copy = Arca::with_repo(&own, &own.join("copy"));
    copy.wrapper = arca.wrapper.clone();
    copy.init();
    let to = [("ARCA_TO_PASSWORD", copy.password.as_str())];
    let target = copy.repo.to_str().unwrap();
    let copied = arca.run_env(true, &["copy", jstr(&second, "id"), "--to", target], &to).ok().json();
    assert_eq!(ju64(&copied, "wal_files_copied"), jarr(&after, "files").len() as u64, "{copied}");
    let there = copy.json(&["pg", "wal"]);
    assert_eq!(jstr(&there["clusters"][0], "needed_from"), needed(&after), "{there}");
    assert!(jarr(&there["clusters"][0], "gaps").is_empty(), "{there}");
    assert_eq!(copy.json(&["verify", "--read-data"])["valid"], true);
    let again = arca.run_env(true, &["copy", jstr(&second, "id"), "--to", target], &to).ok().json();
    assert_eq!(ju64(&again, "wal_files_copied"), 0, "{again}");

    // A segment deleted from the archive: verify names it, and a restore
    // that would replay through it refuses before writing anything.
    pg.sql("postgres", "INSERT INTO events (n, pad) VALUES (10, 'row 10')");
    switch_and_wait_archived(&pg);
    pg.sql("postgres", "INSERT INTO events (n, pad) VALUES (11, 'row 11')");
    switch_and_wait_archived(&pg);
    let listing = arca_out(&arca, &["pg", "wal"], None).ok().json();
    let mut segments: Vec<(String, String)> = jarr(&listing, "files")
        .iter()
        .filter(|f| jstr(f, "name").len() == 24)
        .map(|f| (jstr(f, "name").to_string(), jstr(f, "object").to_string()))
        .collect();
    segments.sort();
    let (gone, object) = segments[segments.len() - 2].clone();
    fs::remove_file(repo.join("wal").join(&object)).unwrap();
    let out = arca_out(&arca, &["verify"], None);
    assert_eq!(out.code, 4, "{}", out.describe());
    let v = out.json();
    let gaps = jarr(&v["wal"][0], "gaps");
    assert_eq!(gaps.len(), 1, "{v}");
    assert_eq!((jstr(&gaps[0], "from"), jstr(&gaps[0], "to")), (gone.as_str(), gone.as_str()), "{v}");
    assert!(jarr(&v, "errors").iter().any(|e| e.as_str().unwrap().contains(&gone)), "{v}");
    let text = arca_out(&arca, &["verify"], None);
    assert!(text.stdout.contains(&gone) || text.stderr.contains(&gone), "{}", text.describe());
    let again = base.join("again");
    let out = arca_out(
        &arca,
        &[
            "--password-file",
            password.to_str().unwrap(),
            "pg",
            "restore",
            "--latest",
            "--target",
            again.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(out.stderr.contains(&gone) && out.stderr.contains("missing"), "{}", out.describe());
    assert!(!again.join("PG_VERSION").exists(), "nothing written");
}

/// `pg basebackup --json` and `pg restore --json` against an archiving
/// server of their own, for the JSON contract; `None` when the test may
/// skip (no PostgreSQL).
pub fn recovery_json_documents(base: &Path) -> Option<(serde_json::Value, serde_json::Value)> {
    let own = base.join("pitr");
    let archive_command = format!(
        "ARCA_CACHE_DIR={} {ARCA} --repo {} --password-file {} pg archive-wal %p",
        own.join("home/cache").display(),
        own.join("repo").display(),
        own.join("password").display()
    );
    let settings = [("archive_mode", "on"), ("archive_command", archive_command.as_str())];
    let pg = PgServer::start_with(
        "every_json_output_matches_docs_json_md: pg restore",
        base,
        "pitr-pg",
        &settings,
    )?;
    let (arca, password) = arca_as_server_user(&pg, &own);
    arca.init();
    let basebackup = arca_out(&arca, &["pg", "basebackup", &pg.url()], None).ok().json();
    let datadir = own.join("restored");
    let args = ["--password-file", password.to_str().unwrap(), "pg", "restore", "--latest", "--target"];
    let recovery = arca_out(&arca, &[&args[..], &[datadir.to_str().unwrap()]].concat(), None).ok().json();
    Some((basebackup, recovery))
}

#[test]
fn archive_wal_is_durable_idempotent_and_refuses_other_content_and_fetch_wal_tells_missing_from_failing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let pg_wal = base.join("data/pg_wal");
    fs::create_dir_all(&pg_wal).unwrap();
    let name = "000000010000000000000005";
    let segment = pg_wal.join(name);
    write_random(&segment, 1 << 20, 11);
    let original = fs::read(&segment).unwrap();

    let first = arca.json(&["pg", "archive-wal", segment.to_str().unwrap()]);
    assert_eq!((jstr(&first, "name"), first["stored"].as_bool()), (name, Some(true)), "{first}");
    // PostgreSQL retries a file it is not sure was archived: accepted, nothing added.
    let again = arca.json(&["pg", "archive-wal", segment.to_str().unwrap()]);
    assert_eq!((again["stored"].as_bool(), ju64(&again, "bytes_added")), (Some(false), 0), "{again}");
    // Other content under the same name is refused, and the archive keeps the first.
    write_random(&segment, 1 << 20, 12);
    let out = arca.run(&["pg", "archive-wal", segment.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(out.stderr.contains(name) && out.stderr.contains("other content"), "{}", out.describe());
    // Another cluster is another archive.
    arca.json(&["pg", "archive-wal", "--cluster", "other", segment.to_str().unwrap()]);

    let restored = base.join("restored/pg_wal");
    fs::create_dir_all(&restored).unwrap();
    let dest = restored.join("RECOVERYXLOG");
    let out = arca.run(&["pg", "fetch-wal", name, dest.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(fs::read(&dest).unwrap() == original, "the first content comes back");
    fs::remove_file(&dest).unwrap();
    let out = arca.run(&["pg", "fetch-wal", "--cluster", "other", name, dest.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(fs::read(&dest).unwrap() != original);
    fs::remove_file(&dest).unwrap();

    // Not archived: exit 1, PostgreSQL's normal end of the archive.
    let out = arca.run(&["pg", "fetch-wal", "000000010000000000000006", dest.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let out = arca.run(&["pg", "fetch-wal", "00000002.history", dest.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.describe());
    // Cannot tell (a wrong password, damage): above 125, so that the
    // server stops its recovery instead of ending it there.
    let mut wrong = arca.command(false, &["pg", "fetch-wal", name, dest.to_str().unwrap()]);
    wrong.env("ARCA_PASSWORD", "not the password");
    let out = run_command(wrong);
    assert_eq!(out.code, 126, "{}", out.describe());
    let out = arca.run(&["pg", "fetch-wal", "../../etc/passwd", dest.to_str().unwrap()]);
    assert_eq!(out.code, 126, "{}", out.describe());
    assert!(out.stderr.contains("is not a WAL file name"), "{}", out.describe());
    let packs: Vec<PathBuf> = fs::read_dir(arca.repo.join("data"))
        .unwrap()
        .flatten()
        .flat_map(|d| fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()))
        .collect();
    assert!(!packs.is_empty());
    for pack in packs {
        let mut bytes = fs::read(&pack).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&pack, bytes).unwrap();
    }
    let out = arca.run(&["pg", "fetch-wal", name, dest.to_str().unwrap()]);
    assert_eq!(out.code, 126, "{}", out.describe());
    assert!(!dest.exists(), "no partial file under the name PostgreSQL reads");
    let left: Vec<_> = fs::read_dir(&restored).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "no temporary file left behind: {left:?}");
    // And a path that is not a WAL file is refused by name.
    let notes = base.join("notes.txt");
    fs::write(&notes, "x").unwrap();
    let out = arca.run(&["pg", "archive-wal", notes.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("notes.txt") && out.stderr.contains("is not a WAL file name"),
        "{}",
        out.describe()
    );
}

#[test]
fn one_time_brings_back_a_jobs_files_and_its_database_replayed_to_it() {
    let test = "one_time_for_files_and_database";
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let own = base.join("arca");
    let config = own.join("arca.toml");
    let archive_command = format!(
        "ARCA_CACHE_DIR={} {ARCA} --config {} pg archive-wal --job app %p",
        own.join("home/cache").display(),
        config.display()
    );
    let settings = [("archive_mode", "on"), ("archive_command", archive_command.as_str())];
    let Some(pg) = PgServer::start_with(test, &base, "pg", &settings) else { return };
    let files = own.join("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("settings.conf"), "version = 1\n").unwrap();
    fs::write(
        &config,
        format!(
            "[repositories.local]\nurl = \"{}\"\npassword_file = \"{}\"\n\n[jobs.app]\nsources = [\"{}\"]\n\
             postgres = {{ url = \"{}\", physical = true, cluster = \"main\" }}\ndestinations = [\"local\"]\n",
            own.join("repo").display(),
            own.join("password").display(),
            files.display(),
            pg.url()
        ),
    )
    .unwrap();
    let (arca, _) = arca_as_server_user(&pg, &own);
    arca.init();
    let with_config = |args: &[&str]| -> Vec<String> {
        ["--config", config.to_str().unwrap()].iter().chain(args).map(|s| s.to_string()).collect()
    };
    // The job's commands find their repository in arca.toml, not --repo.
    let job_run = |args: &[&str]| {
        let args = with_config(args);
        let cmd = arca.command(true, &args);
        let argv: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let at = argv.iter().position(|a| a == "--repo").unwrap();
        let mut clean = Command::new(cmd.get_program());
        clean.args(&argv[..at]).args(&argv[at + 2..]);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => clean.env(k, v),
                None => clean.env_remove(k),
            };
        }
        clean.env_remove("ARCA_PASSWORD");
        let out = run_command(clean);
        assert!(!out.stdout.contains(PG_SECRET) && !out.stderr.contains(PG_SECRET), "{}", out.describe());
        out
    };
    pg.sql(
        "postgres",
        "CREATE TABLE events (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    pg.sql("postgres", "INSERT INTO events (n) SELECT generate_series(1, 3)");
    switch_and_wait_archived(&pg);

    // A run backs up the files, then the database beside them.
    let first = job_run(&["run", "app"]).ok().json();
    assert!(first["success"].as_bool().unwrap(), "{first}");
    assert_eq!(jstr(&first["database"]["base_backup"], "cluster"), "main", "{first}");
    crate::json_contract::assert_shape("run with a database", "RunReport", &first);

    pg.sql("postgres", "INSERT INTO events (n) VALUES (4)");
    switch_and_wait_archived(&pg);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(std::time::Duration::from_millis(600));
    pg.sql("postgres", "INSERT INTO events (n) VALUES (5)");
    switch_and_wait_archived(&pg);
    // Later files and a later run: not what the time asks for.
    fs::write(files.join("settings.conf"), "version = 2\n").unwrap();
    let second = job_run(&["run", "app"]).ok().json();
    assert!(second["success"].as_bool().unwrap(), "{second}");

    let target = own.join("back");
    let restored_pg = own.join("back-pg");
    fs::create_dir_all(restored_pg.join("sock")).unwrap();
    if let Some(uid) = pg.as_user {
        for p in [restored_pg.clone(), restored_pg.join("sock")] {
            nix::unistd::chown(p.as_path(), Some(uid.into()), Some(uid.into())).unwrap();
        }
    }
    let datadir = restored_pg.join("data");
    let done = job_run(&[
        "--job",
        "app",
        "restore",
        "--at",
        &at,
        "--target",
        target.to_str().unwrap(),
        "--pg-target",
        datadir.to_str().unwrap(),
    ])
    .ok()
    .json();
    assert_eq!(jstr(&done["postgres"], "snapshot"), jstr(&first["database"], "id"), "{done}");
    crate::json_contract::assert_shape("restore --pg-target", "RestoreResult", &done);
    assert_eq!(
        fs::read_to_string(restored(&target, &files).join("settings.conf")).unwrap(),
        "version = 1\n",
        "the files as of the time"
    );
    // The server's own configuration came with the base backup: a copy
    // beside the original must not archive into the original's archive.
    let auto = datadir.join("postgresql.auto.conf");
    let mut text = fs::read_to_string(&auto).unwrap();
    assert!(text.contains("--job") && text.contains("fetch-wal"), "{text}");
    text.push_str("archive_mode = 'off'\n");
    fs::write(&auto, text).unwrap();
    let recovered = PgServer {
        bin: pg.bin.clone(),
        data: datadir,
        port: crate::s3server::free_port(),
        as_user: pg.as_user,
    };
    recovered.start(&restored_pg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while recovered.sql("postgres", "SELECT pg_is_in_recovery()") == "t" {
        assert!(std::time::Instant::now() < deadline, "no promotion in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(event_rows(&recovered, "postgres"), vec![1, 2, 3, 4], "the database replayed to the time");
}

#[test]
fn a_base_backup_that_fails_or_whose_wal_never_arrives_leaves_no_snapshot() {
    let test = "a_base_backup_that_fails";
    let tmp = tempdir();
    let base = canonical(tmp.path());
    // The server believes its WAL archived (`true`), but nothing reaches arca.
    let settings = [("archive_mode", "on"), ("archive_command", "true")];
    let Some(pg) = PgServer::start_with(test, &base, "pg", &settings) else { return };
    let arca = Arca::new(&base);
    arca.init();
    let out = arca_out(&arca, &["pg", "basebackup", "--wal-wait", "2s", &pg.url()], None);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("did not arrive within 2 s") && out.stderr.contains("archive_command"),
        "{}",
        out.describe()
    );
    assert!(arca.snapshots().is_empty(), "no snapshot of a base backup that cannot be restored");

    // pg_basebackup dies midway: its tar is not kept as a base backup.
    let bin = base.join("fake-bin");
    fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("pg_basebackup");
    fs::write(
        &fake,
        "#!/bin/sh\nhead -c 300000 /dev/urandom\necho 'pg_basebackup: error: connection lost' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let out = arca_out(&arca, &["pg", "basebackup", &pg.url()], Some(&bin));
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("connection lost") && out.stderr.contains("not stored"),
        "{}",
        out.describe()
    );
    assert!(arca.snapshots().is_empty());

    // A server that does not archive its WAL is refused before anything is read.
    let plain = PgServer::start_with(test, &base, "pg-plain", &[]).expect("started above");
    let out = arca_out(&arca, &["pg", "basebackup", &plain.url()], None);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(out.stderr.contains("archive_mode = off"), "{}", out.describe());
    assert!(arca.snapshots().is_empty());
}
