//! A PostgreSQL cluster as a backup source: `pg_dumpall --globals-only`
//! (roles, tablespaces) and one `pg_dump` per database, each streamed into
//! the snapshot as a file of `/postgres/<cluster>/` without a copy on disk,
//! one dump at a time. A dump that fails (a non-zero exit, a lost
//! connection, a killed pg_dump) fails the backup, which writes no
//! snapshot.
//!
//! Dumps use pg_dump's custom format without compression (`-Fc -Z0`):
//! `pg_restore` can restore one table or schema from it, and uncompressed
//! it deduplicates (docs/postgres.md has the measurement). The connection
//! string's password never reaches a command line, a message or a log: it
//! is passed in `PGPASSWORD`.

pub mod physical;

use std::process::Command;

use arca_core::ops::backup::Stream;
use arca_core::ops::ls::children;
use arca_core::{CommandOutput, Repository};

/// A cluster to dump, as arca.toml's `postgres = { … }` or `backup
/// --postgres URL` names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Postgres {
    /// `postgresql://[user[:password]@][host][:port][/database][?…]`
    /// (shown with its password masked).
    #[serde(serialize_with = "masked_url")]
    pub url: String,
    /// The databases to dump (default: every one that accepts
    /// connections, templates left out).
    pub databases: Vec<String>,
    /// Only these schemas of each database (default: all).
    pub schemas: Vec<String>,
    /// The folder the dumps go to: `/postgres/<cluster>/` (default: the
    /// URL's host and port, `127.0.0.1-5432`); for physical backups, the
    /// name of the cluster's WAL archive too.
    pub cluster: String,
    /// Physical base backups (`pg_basebackup`) for point-in-time recovery
    /// from the WAL archive, instead of logical dumps.
    pub physical: bool,
}

fn masked_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&Url::parse(url).map(|u| u.shown()).unwrap_or_else(|_| "(masked)".into()))
}

/// `program` (psql, pg_dump, …) with the URL's password, if any, in
/// `PGPASSWORD`: never on its command line, which `ps` shows.
fn pg_command(program: &str, u: &Url) -> Command {
    let mut cmd = Command::new(program);
    if let Some(pw) = &u.password {
        cmd.env("PGPASSWORD", pw);
    }
    cmd
}

/// A libpq connection URI taken apart just enough to change its database
/// and take its password out.
#[derive(Debug, Clone)]
struct Url {
    /// `postgresql://user@host:port` without the password.
    base: String,
    password: Option<String>,
    /// `host:port` (or empty: the local socket).
    host_port: String,
    /// The database the URL names, if any.
    database: Option<String>,
    query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| "a PostgreSQL URL starts with postgresql://".to_string())?;
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let database = (!path.is_empty()).then(|| percent_decode(path));
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (Some(user), Some(percent_decode(pw))),
                None => (Some(u), None),
            },
            None => (None, None),
        };
        let base = match user {
            Some(u) => format!("postgresql://{u}@{host_port}"),
            None => format!("postgresql://{host_port}"),
        };
        Ok(Url { base, password, host_port: host_port.to_string(), database, query: query.to_string() })
    }

    /// The URL of `database`, without the password.
    fn of(&self, database: &str) -> String {
        let q = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        format!("{}/{}{q}", self.base, percent_encode(database))
    }

    /// As messages show it: no password.
    fn shown(&self) -> String {
        let q = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        format!("{}/{q}", self.base)
    }

    /// The default cluster name: host and port, made a plain file name.
    fn cluster(&self) -> String {
        let hp =
            if self.host_port.is_empty() { "local".to_string() } else { self.host_port.replace(':', "-") };
        hp.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).collect()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Postgres {
    /// A source from a URL, with the default cluster name; an error names
    /// what is wrong with the URL.
    pub fn from_url(url: &str) -> Result<Postgres, String> {
        let u = Url::parse(url)?;
        Ok(Postgres {
            url: url.to_string(),
            databases: Vec::new(),
            schemas: Vec::new(),
            cluster: u.cluster(),
            physical: false,
        })
    }

    /// The URL checked (for arca.toml's checks).
    pub fn check_url(url: &str) -> Result<String, String> {
        Url::parse(url).map(|u| u.cluster())
    }

    /// The databases to dump: those listed, or every one that accepts
    /// connections (templates left out), by name.
    pub fn database_names(&self) -> Result<Vec<String>, String> {
        if !self.databases.is_empty() {
            return Ok(self.databases.clone());
        }
        let u = Url::parse(&self.url)?;
        let mut cmd = pg_command("psql", &u);
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1")
            .arg(format!("--dbname={}", u.of("postgres")))
            .stdin(std::process::Stdio::null());
        let out = cmd.output().map_err(|e| format!("listing the databases of {}: psql: {e}", u.shown()))?;
        if !out.status.success() {
            return Err(format!(
                "listing the databases of {}: psql failed ({}): {}",
                u.shown(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// The dumps as streams for [`arca_core::ops::backup::backup_streams`]:
    /// `globals.sql`, then `<database>.dump` for each database, each dump
    /// started when the one before is stored.
    pub fn streams(
        &self,
    ) -> Result<impl FnMut() -> Option<arca_core::Result<(String, Stream<'static>)>> + Send + 'static, String>
    {
        let u = Url::parse(&self.url)?;
        let databases = self.database_names()?;
        if databases.is_empty() {
            return Err(format!("{} has no database to dump", u.shown()));
        }
        let mut steps: Vec<(String, Command, String)> = Vec::new();
        let mut globals = pg_command("pg_dumpall", &u);
        globals.args(["--globals-only", "--no-password"]).arg(format!("--dbname={}", u.of("postgres")));
        steps.push(("globals.sql".into(), globals, format!("pg_dumpall --globals-only {}", u.shown())));
        for db in &databases {
            let mut dump = pg_command("pg_dump", &u);
            dump.args(["--format=custom", "--compress=0", "--no-password"]);
            for s in &self.schemas {
                dump.arg(format!("--schema={s}"));
            }
            dump.arg(format!("--dbname={}", u.of(db)));
            steps.push((format!("{db}.dump"), dump, format!("pg_dump of database {db} on {}", u.shown())));
        }
        let mut steps = steps.into_iter();
        Ok(move || {
            let (name, cmd, shown) = steps.next()?;
            Some(
                CommandOutput::start(cmd, shown)
                    .map(|out| (name, Stream::Owned(Box::new(out))))
                    .map_err(|e| arca_core::Error::Invalid(e.to_string())),
            )
        })
    }
}

/// A restore of one database's dump into a server (`arca restore
/// --to-postgres`).
#[derive(Debug, Clone, Default)]
pub struct PgRestore {
    /// The server, and the database to restore into when it names one
    /// (else the dumped database's own name).
    pub url: String,
    /// Which database of the snapshot (needed when it holds several).
    pub database: Option<String>,
    /// Only these tables (`pg_restore -t`).
    pub tables: Vec<String>,
    /// Only these schemas (`pg_restore -n`).
    pub schemas: Vec<String>,
    /// Create the target database first.
    pub create: bool,
    /// Drop each object before creating it again (`--clean --if-exists`).
    pub clean: bool,
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PgRestored {
    /// The dump restored: its path in the snapshot.
    pub dump: String,
    /// The database it went into.
    pub database: String,
    /// Bytes of dump fed to pg_restore.
    pub bytes: u64,
}

/// The database dumps a snapshot holds: (path, database) under
/// `/postgres/<cluster>/`.
fn dumps_in(
    repo: &Repository,
    index: &arca_core::Index,
    tree: &arca_core::TreeId,
) -> Result<Vec<(String, String)>, String> {
    let clusters = match children(repo, index, tree, "/postgres") {
        Ok(c) => c,
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for c in clusters.iter().filter(|n| n.kind == arca_core::NodeKind::Dir) {
        let cluster = String::from_utf8_lossy(&c.name).into_owned();
        let dir = format!("/postgres/{cluster}");
        for f in children(repo, index, tree, &dir).map_err(|e| e.report().to_string())? {
            let name = String::from_utf8_lossy(&f.name).into_owned();
            if let Some(db) = name.strip_suffix(".dump").filter(|_| f.kind == arca_core::NodeKind::File) {
                out.push((format!("{dir}/{name}"), db.to_string()));
            }
        }
    }
    Ok(out)
}

/// Restores one database's dump of `snapshot` into the server `r.url`:
/// the dump streamed from the repository into `pg_restore`, which stops
/// at the first error (`--exit-on-error`).
pub fn restore_dump(
    repo: &Repository,
    snapshot: &arca_core::Snapshot,
    r: &PgRestore,
) -> Result<PgRestored, String> {
    use std::io::Write;
    let u = Url::parse(&r.url)?;
    let index = repo.load_index().map_err(|e| e.report().to_string())?;
    let dumps = dumps_in(repo, &index, &snapshot.tree)?;
    let names = || dumps.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>().join(", ");
    let chosen: Vec<&(String, String)> = match &r.database {
        Some(db) => dumps.iter().filter(|(_, d)| d == db).collect(),
        None => dumps.iter().collect(),
    };
    let (path, source_db) = match chosen.as_slice() {
        [one] => (*one).clone(),
        [] if dumps.is_empty() => {
            return Err("the snapshot holds no PostgreSQL dump (/postgres/<cluster>/<database>.dump)".into())
        }
        [] => {
            return Err(format!(
                "the snapshot holds no dump of database {:?}: it holds {}",
                r.database.as_deref().unwrap_or(""),
                names()
            ))
        }
        _ => return Err(format!("the snapshot holds dumps of {}: give --database", names())),
    };
    let target = u.database.clone().unwrap_or_else(|| source_db.clone());
    if r.create {
        let mut cmd = pg_command("psql", &u);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE DATABASE \"{}\"", target.replace('"', "\"\"")))
            .arg(format!("--dbname={}", u.of("postgres")))
            .stdin(std::process::Stdio::null());
        let out = cmd.output().map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "creating database {target}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let mut cmd = pg_command("pg_restore", &u);
    cmd.args(["--exit-on-error", "--no-password"]);
    if r.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    for t in &r.tables {
        cmd.arg(format!("--table={t}"));
    }
    for s in &r.schemas {
        cmd.arg(format!("--schema={s}"));
    }
    cmd.arg(format!("--dbname={}", u.of(&target)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("pg_restore: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped"));
    let fed = arca_core::ops::archive::dump(repo, &index, &snapshot.tree, &path, &mut stdin)
        .and_then(|n| stdin.flush().map(|_| n).map_err(|e| arca_core::Error::io("pg_restore's input", e)));
    drop(stdin);
    let status = child.wait().map_err(|e| format!("pg_restore: {e}"))?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "pg_restore into database {target} on {} failed ({status}): {}",
            u.shown(),
            errors.trim()
        ));
    }
    let bytes = fed.map_err(|e| format!("reading {path}: {}", e.report()))?;
    Ok(PgRestored { dump: path, database: target, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_for_the_environment() {
        let u = Url::parse("postgresql://app:s%40cret@db.example.com:5433/ignored?sslmode=require").unwrap();
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.of("sales data"), "postgresql://app@db.example.com:5433/sales%20data?sslmode=require");
        assert_eq!(u.shown(), "postgresql://app@db.example.com:5433/?sslmode=require");
        assert_eq!(u.cluster(), "db.example.com-5433");
        let p = Postgres::from_url("postgres://127.0.0.1:5432").unwrap();
        assert_eq!(p.cluster, "127.0.0.1-5432");
        assert!(Postgres::from_url("mysql://x").is_err());
        let shown = serde_json::to_string(&Postgres::from_url("postgresql://a:pw@h/db").unwrap()).unwrap();
        assert!(!shown.contains("pw"), "{shown}");
    }
}
