//! The web dashboard of `arca daemon` in a real browser: a real daemon with
//! real jobs on real local repositories, and headless Chromium driven by
//! Playwright (`tests/dashboard/dashboard.mjs`) as a person would use the
//! page: the token form, the overview, a run started and followed live, the
//! charts, a snapshot browsed, a file downloaded, a folder restored, a
//! verification, the keyboard, a narrow screen. The script checks the page;
//! this test checks what it did to the files, and the screenshots.
//!
//! Needs `ARCA_TEST_NODE_MODULES` (a node_modules with playwright-core) and
//! `ARCA_TEST_CHROMIUM` (Debian's chromium), which scripts/test.sh installs
//! and sets; without them the test is skipped (a failure under
//! ARCA_TEST_REQUIRE_ROOT, as in CI).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::daemon::Daemon;
use crate::common::*;

const PW: &str = "dashboard-secret-Qm41";

/// Runs job `name` now over the API and waits for its end; the run's
/// document.
#[track_caller]
fn run_now(d: &Daemon, name: &str) -> Value {
    let started = d.post(&format!("/api/jobs/{name}/run"), json!({}));
    d.wait_run(started["run_id"].as_i64().unwrap())
}

/// Where the screenshots are kept after the test, for a person to look at.
fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
}

/// The source folder: text files (one with glob characters in its name,
/// which a restore of it must escape), a nested folder, and binary files.
fn make_source(src: &Path) {
    fs::create_dir_all(src.join("docs/notes")).unwrap();
    fs::write(src.join("docs/letter.txt"), "Dear reader,\nthe dashboard restored me.\n").unwrap();
    fs::write(src.join("docs/report [2026].txt"), "a name with glob characters\n".repeat(50)).unwrap();
    fs::write(src.join("docs/notes/todo.md"), "- back up\n- restore\n").unwrap();
    write_random(&src.join("photo.bin"), 300_000, 99);
    make_random_tree(&src.join("data"), 12, 40_000, 5);
}

#[test]
fn the_dashboard_shows_runs_charts_snapshots_and_restores_in_a_real_browser() {
    let (Some(modules), Some(chromium)) =
        (std::env::var_os("ARCA_TEST_NODE_MODULES"), std::env::var_os("ARCA_TEST_CHROMIUM"))
    else {
        skip(
            "dashboard",
            "ARCA_TEST_NODE_MODULES and ARCA_TEST_CHROMIUM (playwright-core and chromium, installed by scripts/test.sh) are not set",
        );
        return;
    };
    let begun = Instant::now();
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_source(&src);
    let pw = base.join("repo.pw");
    fs::write(&pw, format!("{PW}\n")).unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    Arca::with_repo(&base, &base.join("local")).with_password(PW).init();
    let config = base.join("arca.toml");
    // home: succeeds; broken: its repository does not exist, so it fails
    // (once: no retry); never: never run; slow: a source that writes for
    // about five seconds, started from the page to watch its progress move
    // (a stream that arrives slowly, as a dump does: it once made the
    // chunker panic, which this test caught before the fix).
    fs::write(
        &config,
        format!(
            r#"[repositories.local]
url = "{local}"
password_file = "{pw}"

[repositories.missing]
url = "{missing}"
password_file = "{pw}"

[jobs.home]
sources = ["{src}"]
destinations = ["local"]

[jobs.home.schedule]
incremental = "0 3 * * *"

[jobs.broken]
sources = ["{src}"]
destinations = ["missing"]

[jobs.broken.retry]
attempts = 1

[jobs.never]
sources = ["{src}"]
destinations = ["local"]

[jobs.slow]
command = ["sh", "-c", "for i in $(seq 1 40); do head -c 250000 /dev/urandom; sleep 0.1; done"]
stdin_filename = "slow.bin"
destinations = ["local"]
"#,
            local = base.join("local").display(),
            missing = base.join("missing-repo").display(),
            pw = pw.display(),
            src = src.display(),
        ),
    )
    .unwrap();
    let mut arca = Arca::new(&base);
    arca.password = String::new();
    arca.env.push(("ARCA_CONFIG".into(), config.into()));
    let d = Daemon::start(&arca, &base.join("state"), &base.join("daemon.log"));

    // Two backups of home (two points per chart), one failure.
    for _ in 0..2 {
        let r = run_now(&d, "home");
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let r = run_now(&d, "broken");
    assert_eq!(r["status"], "failed", "{r}");
    // Sizes are measured in the background after each run: wait for both.
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/api/sizes?destination=local")["sizes"].as_array().map_or(0, Vec::len) < 2 {
        assert!(Instant::now() < deadline, "the sizes were not measured:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = screenshot_dir();
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).unwrap();
    let restore_target = base.join("restored");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/dashboard.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("ARCA_TEST_NODE_MODULES", &modules)
        .env("ARCA_TEST_CHROMIUM", &chromium)
        .env("DASHBOARD_URL", &d.url)
        .env("DASHBOARD_TOKEN", &d.token)
        .env("DASHBOARD_SRC", &src)
        .env("DASHBOARD_RESTORE", &restore_target)
        .env("DASHBOARD_OUT", &out)
        .stdin(Stdio::null())
        .stdout(fs::File::create(base.join("browser.out")).unwrap())
        .stderr(fs::File::create(base.join("browser.err")).unwrap())
        .spawn()
        .expect("run node (scripts/test.sh installs it)");
    let status = kill_after(&mut child, Duration::from_secs(120));
    let stdout = fs::read_to_string(base.join("browser.out")).unwrap_or_default();
    let stderr = fs::read_to_string(base.join("browser.err")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser test failed ({status:?}):\n{stderr}\n{stdout}\n--- daemon ---\n{}",
        d.log()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the script's last line is not its JSON report ({e}):\n{stdout}"));

    // The file downloaded through the page is the source's, byte for byte.
    let downloaded = fs::read(jstr(&report, "download")).unwrap();
    assert_eq!(downloaded, fs::read(src.join(jstr(&report, "downloaded_from"))).unwrap());
    // The restore started from the page restored docs/, all of it and only it.
    assert_trees_equal(
        &src.join("docs"),
        &restored(&restore_target, &src).join("docs"),
        Compare { owners: is_root(), root_meta: true },
    );
    assert!(!restored(&restore_target, &src).join("data").exists(), "only docs/ was asked for");
    assert!(!restored(&restore_target, &src).join("photo.bin").exists(), "only docs/ was asked for");

    // A screenshot of each view, and none blank.
    let shots = jarr(&report, "screenshots");
    for view in ["login", "overview", "running", "history", "charts", "snapshots", "overview-narrow"] {
        let path = out.join(format!("{view}.png"));
        let png = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{view}");
        assert!(png.len() > 10_000, "{view}.png is {} bytes: blank?", png.len());
        let shot = shots.iter().find(|s| s["view"] == view).unwrap_or_else(|| panic!("{view}: {report}"));
        assert!(ju64(shot, "colors") > 16, "{view}.png has {} colours: blank?", shot["colors"]);
    }
    eprintln!("{stderr}dashboard screenshots in {} ({:.1} s)", out.display(), begun.elapsed().as_secs_f64());
}
