//! Every `--json` document and every `--json-progress` line matches its
//! shape in docs/json.md, field by field: the test reads the `shape` blocks
//! of that page, runs each command it documents against a real repository,
//! and checks that no documented field is missing, no field is
//! undocumented, and every value has its documented type. Each shape of the
//! page must be met at least once, so the page cannot describe a command
//! that no longer prints it.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Stdio;

use serde_json::Value;

use common::*;

/// The `shape NAME` blocks of docs/json.md.
fn shapes() -> BTreeMap<String, Value> {
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/json.md");
    let text = fs::read_to_string(page).expect("docs/json.md");
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```shape ") else { continue };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let v: Value = serde_json::from_str(&body.join("\n"))
            .unwrap_or_else(|e| panic!("docs/json.md: shape {name} is not JSON: {e}"));
        assert!(out.insert(name.trim().to_string(), v).is_none(), "shape {name} is given twice");
    }
    assert!(out.len() > 20, "docs/json.md has shape blocks: {:?}", out.keys());
    out
}

/// Checks one document printed elsewhere (a test of its own, which
/// needs servers this one does not start) against shape `name`.
#[track_caller]
pub fn assert_shape(what: &str, name: &str, v: &Value) {
    let mut c = Contract { shapes: shapes(), met: BTreeSet::new(), errors: Vec::new() };
    c.check(what, name, v);
    assert!(c.errors.is_empty(), "{what} does not match docs/json.md:\n{}", c.errors.join("\n"));
}

struct Contract {
    shapes: BTreeMap<String, Value>,
    /// Shapes met with a value (not only an empty array of them).
    met: BTreeSet<String>,
    errors: Vec<String>,
}

impl Contract {
    /// Checks `v` (printed by `what`) against the shape `name`.
    fn check(&mut self, what: &str, name: &str, v: &Value) {
        let shape = Value::String(format!("@{name}"));
        let before = self.errors.len();
        self.value(&shape, v, what);
        if self.errors.len() > before {
            self.errors.push(format!("  ({what} printed {v})"));
        }
    }

    /// Checks each element of the array `v` against `name`.
    fn check_each(&mut self, what: &str, name: &str, v: &Value) {
        let shape = serde_json::json!([format!("@{name}")]);
        self.value(&shape, v, what);
    }

    fn value(&mut self, shape: &Value, v: &Value, at: &str) {
        match shape {
            Value::String(types) => {
                let ok = types.split('|').any(|t| self.one_type(t, v, at));
                if !ok {
                    self.errors.push(format!("{at}: {v} is not {types}"));
                }
            }
            Value::Array(item) => match v.as_array() {
                Some(items) => {
                    for (i, x) in items.iter().enumerate() {
                        self.value(&item[0], x, &format!("{at}[{i}]"));
                    }
                }
                None => self.errors.push(format!("{at}: {v} is not an array")),
            },
            Value::Object(fields) => {
                let Some(obj) = v.as_object() else {
                    self.errors.push(format!("{at}: {v} is not an object"));
                    return;
                };
                if let Some(each) = fields.get("*") {
                    for (k, x) in obj {
                        self.value(each, x, &format!("{at}.{k}"));
                    }
                    return;
                }
                for (key, sub) in fields {
                    let (name, optional) = match key.strip_suffix('?') {
                        Some(n) => (n, true),
                        None => (key.as_str(), false),
                    };
                    match obj.get(name) {
                        Some(x) => self.value(sub, x, &format!("{at}.{name}")),
                        None if optional => {}
                        None => self.errors.push(format!("{at}: no `{name}` field (documented)")),
                    }
                }
                for key in obj.keys() {
                    if !fields.contains_key(key) && !fields.contains_key(&format!("{key}?")) {
                        self.errors.push(format!("{at}: field `{key}` is not in docs/json.md"));
                    }
                }
            }
            other => panic!("docs/json.md: {other} is not a shape"),
        }
    }

    /// Whether `v` is of the one type `t`; a shape reference is checked
    /// in full (its errors recorded) when the value is not null.
    fn one_type(&mut self, t: &str, v: &Value, at: &str) -> bool {
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        match t {
            "string" => v.is_string(),
            "id" => v.as_str().is_some_and(|s| hex(s, 64)),
            "short_id" => v.as_str().is_some_and(|s| hex(s, 8)),
            "time" => v.as_str().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
            "count" => v.is_u64(),
            "number" => v.is_number(),
            "bool" => v.is_boolean(),
            "null" => v.is_null(),
            r if r.starts_with('@') => {
                let name = &r[1..];
                let shape =
                    self.shapes.get(name).cloned().unwrap_or_else(|| panic!("docs/json.md: no shape {name}"));
                if v.is_null() {
                    return false;
                }
                self.met.insert(name.to_string());
                self.value(&shape, v, &format!("{at}<{name}>"));
                true
            }
            other => panic!("docs/json.md: unknown type {other:?}"),
        }
    }
}

#[test]
fn every_json_output_matches_docs_json_md() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("docs/letter.txt"), "dear").unwrap();
    write_random(&src.join("big.bin"), 300_000, 9);
    std::os::unix::fs::symlink("docs/letter.txt", src.join("link")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(src.join("app.sock")).unwrap();
    // A source reached through a symlinked folder: `resolved_paths`.
    std::os::unix::fs::symlink(&src, base.join("via")).unwrap();
    let via = base.join("via/docs");
    let arca = Arca::new(&base);
    let mut c = Contract { shapes: shapes(), met: BTreeSet::new(), errors: Vec::new() };

    c.check("init", "Init", &arca.init());
    let first = arca.backup(&[&src], &["--tag", "one"]);
    c.check("backup", "BackupMetadata", &first);
    let first_id = jstr(&first, "id").to_string();
    c.check("backup via a symlink", "BackupMetadata", &arca.backup(&[&via], &[]));
    fs::write(src.join("docs/letter.txt"), "dear ada").unwrap();
    c.check("backup --dry-run", "BackupMetadata", &arca.backup(&[&src], &["--dry-run"]));
    let second = arca.backup(&[&src], &["--tag", "two"]);
    c.check("backup", "BackupMetadata", &second);
    c.check_each("snapshots", "BackupMetadata", &arca.json(&["snapshots"]));
    c.check_each(
        "snapshots --group-by",
        "SnapshotGroup",
        &arca.json(&["snapshots", "--group-by", "host,tags"]),
    );
    c.check("info", "BackupMetadata", &arca.json(&["info", "latest"]));
    c.check_each("ls", "Entry", &arca.json(&["ls", "latest"]));
    c.check("find", "Find", &arca.json(&["find", "letter.txt", "link"]));
    c.check("diff", "Diff", &arca.json(&["diff", &first_id, "latest"]));
    let target = base.join("restored");
    c.check("restore", "RestoreResult", &arca.restore("latest", &target, &[]));
    // A restore that meets a symlink where a folder goes, told not to
    // overwrite: reported in its errors (never followed).
    let docs = restored(&target, &src).join("docs");
    fs::remove_dir_all(&docs).unwrap();
    std::os::unix::fs::symlink(&base, &docs).unwrap();
    let out =
        arca.run_json(&["restore", "latest", "--target", target.to_str().unwrap(), "--overwrite", "never"]);
    let v = out.json();
    assert!(!jarr(&v, "errors").is_empty(), "{}", out.describe());
    assert!(out.code != 0, "{}", out.describe());
    c.check("restore with errors", "RestoreResult", &v);
    c.check("verify", "VerifyResult", &arca.json(&["verify", "--read-data", "--restore-test"]));
    c.check("tag", "TagResult", &arca.json(&["tag", "latest", "--add", "three"]));
    c.check(
        "export",
        "Export",
        &arca.json(&["export", "latest", "--output", base.join("x.tar").to_str().unwrap()]),
    );

    // mount: a real FUSE mount where this machine allows one (as root).
    match crate::mount::json_document(&arca, &base, "every_json_output_matches_docs_json_md: mount") {
        Some(v) => c.check("mount", "MountResult", &v),
        None => {
            c.met.insert("MountResult".to_string());
        }
    }

    // restore --to-postgres and pg restore, against real PostgreSQL servers.
    match crate::postgres::restore_json_document(&base) {
        Some(v) => c.check("restore --to-postgres", "PgRestored", &v),
        None => {
            c.met.insert("PgRestored".to_string());
        }
    }
    match crate::postgres::recovery_json_documents(&base) {
        Some((basebackup, recovery)) => {
            c.check("pg basebackup", "BackupMetadata", &basebackup);
            c.check("pg restore", "PgRecovery", &recovery);
        }
        None => {
            c.met.extend(["PgRecovery".to_string(), "BaseBackup".to_string()]);
        }
    }

    // status while a backup holds a lock (stdin kept open).
    let mut held = arca.command(false, &["backup", "--stdin"]);
    held.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut held = held.spawn().unwrap();
    wait_for_file(&arca.repo.join("locks"));
    let status = arca.json(&["status"]);
    held.kill().unwrap();
    held.wait().unwrap();
    assert_eq!(jarr(&status, "locks").len(), 1, "{status}");
    c.check("status", "Status", &status);
    c.check("unlock", "Unlock", &arca.json(&["unlock", "--remove-all"]));

    // Keys.
    let added = arca.run_env(true, &["key", "add"], &[("ARCA_NEW_PASSWORD", "another one")]).ok().json();
    c.check("key add", "KeyId", &added);
    c.check_each("key list", "KeyListing", &arca.json(&["key", "list"]));
    c.check("key remove", "KeyRemoved", &arca.json(&["key", "remove", jstr(&added, "id")]));
    let arca = {
        let passwd =
            arca.run_env(true, &["key", "passwd"], &[("ARCA_NEW_PASSWORD", "new password")]).ok().json();
        c.check("key passwd", "KeyId", &passwd);
        arca.with_password("new password")
    };

    // Copy into a second repository.
    let other = arca.at(&base.join("other"));
    other.init();
    let copy = arca.run_env(
        true,
        &["copy", "latest", "--to", other.repo.to_str().unwrap()],
        &[("ARCA_TO_PASSWORD", &other.password)],
    );
    c.check("copy", "Copy", &copy.ok().json());

    // A job of arca.toml over both repositories: `run`, `config check`.
    let pw_file = |name: &str, pw: &str| {
        let p = base.join(name);
        fs::write(&p, pw).unwrap();
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        p
    };
    let config = base.join("arca.toml");
    fs::write(
        &config,
        format!(
            "[repositories.main]\nurl = \"{}\"\npassword_file = \"{}\"\npriority = 1\n\
             [repositories.other]\nurl = \"{}\"\npassword_file = \"{}\"\n\
             [jobs.docs]\nsources = [\"{}\"]\ndestinations = [\"main\", \"other\"]\n\
             retention = {{ keep_last = 3 }}\nverify_after_backup = \"restore-test\"\n",
            arca.repo.display(),
            pw_file("main.pw", "new password").display(),
            other.repo.display(),
            pw_file("other.pw", &other.password).display(),
            src.join("docs").display(),
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    c.check("run", "RunReport", &arca.json(&["--config", config_arg, "run", "docs"]));
    c.check("run again", "RunReport", &arca.json(&["--config", config_arg, "run", "docs"]));
    c.check("confirm", "Confirm", &arca.json(&["confirm"]));
    let mut in_state = arca.clone();
    in_state.env.push(("ARCA_STATE_DIR".into(), base.join("state").into()));
    in_state.run_json(&["--config", config_arg, "run", "docs"]).ok();
    // While a backup holds a lock in the job's first destination.
    let mut held = arca.command(false, &["backup", "--stdin"]);
    held.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut held = held.spawn().unwrap();
    wait_for_file(&arca.repo.join("locks"));
    let health = run_command(without_repo(
        in_state.command(true, &["--config", config_arg, "--job", "docs", "status"]),
    ));
    held.kill().unwrap();
    held.wait().unwrap();
    c.check("status --job", "JobHealth", &health.ok().json());
    arca.json(&["unlock", "--remove-all"]);
    c.check("config check", "ConfigCheck", &arca.json(&["config", "check", config_arg]));
    let broken = base.join("broken.toml");
    fs::write(&broken, "[jobs.x]\nsources = [\"rel\"]\ndestinations = [\"none\"]\n").unwrap();
    let out = arca.run_json(&["config", "check", broken.to_str().unwrap()]).code_is(2);
    c.check("config check (mistakes)", "ConfigCheck", &out.json());

    // Policies, forget, prune, cleanup.
    c.check("policy set", "Policy", &arca.json(&["policy", "set", "--keep-last", "2", "--keep-tag", "one"]));
    c.check("policy show", "Policy", &arca.json(&["policy", "show"]));
    c.check("cleanup --dry-run", "ForgetReport", &arca.json(&["cleanup", "--dry-run"]));
    c.check("policy clear", "PolicyCleared", &arca.json(&["policy", "clear"]));
    assert!(arca.json(&["policy", "show"]).is_null());
    c.check("forget --dry-run", "ForgetReport", &arca.json(&["forget", "--keep-last", "1", "--dry-run"]));
    c.check("prune --dry-run", "Prune", &arca.json(&["prune", "--dry-run"]));
    c.check("forget --prune", "ForgetReport", &arca.json(&["forget", "--keep-last", "2", "--prune"]));

    // Repairs, after losing a pack of file data.
    c.check("repair index", "RepairIndex", &arca.json(&["repair", "index"]));
    let index = fs::read_dir(arca.repo.join("index")).unwrap().next().unwrap().unwrap().file_name();
    let index = arca.json(&["cat", "index", index.to_str().unwrap()]);
    let data_pack = jarr(&index, "packs")
        .iter()
        .find(|p| jarr(p, "blobs").iter().all(|b| b["type"] == "data"))
        .map(|p| jstr(p, "id").to_string())
        .expect("a pack of file data only");
    fs::remove_file(arca.repo.join("data").join(&data_pack[..2]).join(&data_pack)).unwrap();
    let repaired = arca.json(&["repair", "snapshots", "--dry-run"]);
    assert!(repaired.as_array().is_some_and(|a| !a.is_empty()), "a snapshot to repair: {repaired}");
    c.check_each("repair snapshots", "RepairedSnapshot", &repaired);

    // The WAL archive (a repository of its own), with files of the size
    // of a small segment.
    let arca = Arca::with_repo(&base, &base.join("wal-repo"));
    arca.init();
    let segment = base.join("000000010000000000000001");
    write_random(&segment, 1 << 20, 5);
    c.check("pg archive-wal", "WalArchived", &arca.json(&["pg", "archive-wal", segment.to_str().unwrap()]));
    c.check("pg wal", "WalListing", &arca.json(&["pg", "wal"]));
    c.check("verify with a WAL archive", "VerifyResult", &arca.json(&["verify"]));
    // Segment 2 never archived: a gap (exit code 4, damage).
    let later = base.join("000000010000000000000003");
    write_random(&later, 1 << 20, 6);
    arca.json(&["pg", "archive-wal", later.to_str().unwrap()]);
    let out = arca.run_json(&["pg", "wal"]);
    assert_eq!(out.code, 4, "{}", out.describe());
    let listing = out.json();
    assert_eq!(jarr(&listing["clusters"][0], "gaps").len(), 1, "{listing}");
    c.check("pg wal with a gap", "WalListing", &listing);

    // Progress lines, by their type.
    let out = arca.run_json(&["--json-progress", "-vv", "backup", "--force", src.to_str().unwrap()]).ok();
    c.check("backup --json-progress", "BackupMetadata", &out.json());
    let out2 = arca.run(&["--json-progress", "restore", "ffffffff", "--target", "/tmp/x"]).code_is(1);
    for line in out.stderr.lines().chain(out2.stderr.lines()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let shape = match jstr(&v, "type") {
            "phase" => "ProgressPhase",
            "progress" => "ProgressCounts",
            "file" => "ProgressFile",
            "warning" | "note" | "error" | "message" => "ProgressMessage",
            other => panic!("undocumented progress line type {other:?}: {line}"),
        };
        c.check("--json-progress", shape, &v);
    }

    let unmet: Vec<&String> = c.shapes.keys().filter(|k| !c.met.contains(*k)).collect();
    assert!(unmet.is_empty(), "shapes of docs/json.md no command printed here: {unmet:?}");
    assert!(c.errors.is_empty(), "outputs that do not match docs/json.md:\n{}", c.errors.join("\n"));
}
