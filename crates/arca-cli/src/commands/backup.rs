use std::path::PathBuf;

use anyhow::{Context, Result};
use arca_core::ops::backup::{backup, backup_stream, backup_streams, BackupOptions};
use arca_core::Strategy;
use arca_core::{Error, Repository, SnapshotId};

use crate::{exit, outln, output, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and folders to back up; with --stdin-from-command, the command
    /// and its arguments (after `--`).
    #[arg(required_unless_present_any = ["stdin", "stdin_from_command", "files_from", "files_from_raw", "postgres"])]
    pub paths: Vec<PathBuf>,
    /// Also back up the paths listed in this file, one per line (blank lines
    /// and lines starting with # are skipped; `-` reads standard input);
    /// repeatable.
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Also back up the paths listed in this file, separated by NUL bytes
    /// (as `find -print0` writes them: any name, even with newlines);
    /// repeatable.
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Back up standard input, as one file (see --stdin-filename).
    #[arg(long, conflicts_with = "stdin_from_command")]
    pub stdin: bool,
    /// Run the command given after `--` and back up what it prints, as one
    /// file; if the command fails, no snapshot is written and arca fails.
    #[arg(long)]
    pub stdin_from_command: bool,
    /// Back up a PostgreSQL cluster (`postgresql://user@host:port`): its
    /// roles and every database (or those of --database), each dumped with
    /// pg_dump into /postgres/<host-port>/ of the snapshot; any dump that
    /// fails fails the backup. A password in the URL goes to pg_dump in
    /// PGPASSWORD, never on a command line.
    #[arg(long, value_name = "URL", conflicts_with_all = ["stdin", "stdin_from_command", "files_from", "files_from_raw"])]
    pub postgres: Option<String>,
    /// With --postgres: dump this database only; repeatable.
    #[arg(long = "database", value_name = "NAME", requires = "postgres")]
    pub databases: Vec<String>,
    /// The name standard input (or the command's output) is stored as: the
    /// snapshot holds it as /NAME.
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    pub stdin_filename: String,
    /// full, incremental (against the last snapshot of the same source) or differential (against the last full one).
    #[arg(long, default_value = "incremental")]
    pub strategy: Strategy,
    /// Exclude paths matching this glob (`*.log`, `/abs/path`, `cache/**`); repeatable.
    #[arg(long, short = 'e', value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read exclude globs from a file, one per line (# comments).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Like --exclude, ignoring case (`*.jpg` also excludes `IMG.JPG`); repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Like --exclude-file, ignoring case.
    #[arg(long, value_name = "FILE")]
    pub iexclude_file: Vec<PathBuf>,
    /// Do not back up files larger than this (e.g. 500M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = super::retention::parse_size)]
    pub exclude_larger_than: Option<u64>,
    /// Back up a folder holding a file of this name as an empty folder; repeatable.
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Back up cache folders (those with a valid CACHEDIR.TAG) as empty folders.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Stay on the sources' filesystems: a mount point below them is backed up empty.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Tag the snapshot; repeatable.
    #[arg(long)]
    pub tag: Vec<String>,
    /// Record this host name instead of the machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Record this time (RFC 3339) instead of now.
    #[arg(long)]
    pub time: Option<String>,
    /// Use this snapshot as the parent.
    #[arg(long)]
    pub parent: Option<String>,
    /// Re-read every file, even those unchanged since the parent.
    #[arg(long)]
    pub force: bool,
    /// Do everything but write to the repository.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    // What arca shows people (output::TIME_FORMAT), with its offset.
    if let Ok(t) = chrono::DateTime::parse_from_str(s, crate::output::TIME_FORMAT) {
        return Ok(t);
    }
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)));
    let naive = naive.with_context(|| {
        format!("invalid time {s:?}: use RFC 3339 (2024-05-01T12:00:00Z), the form arca shows (2024-05-01 12:00:00 +02:00), or YYYY-MM-DD[ HH:MM[:SS]] in local time")
    })?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
        .with_context(|| format!("time {s:?} does not exist in the local time zone"))
}

fn read_excludes(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading exclude file {}", f.display()))?;
        out.extend(
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string),
        );
    }
    Ok(out)
}

/// The paths of `--files-from` (lines) and `--files-from-raw` (NUL
/// separated) files; `-` is standard input. A list that names nothing is an
/// error: a backup of nothing is never what a list was meant for.
fn read_path_lists(lines: &[PathBuf], raw: &[PathBuf]) -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let read = |f: &PathBuf| -> Result<Vec<u8>> {
        if f.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("reading paths from stdin")?;
            Ok(buf)
        } else {
            std::fs::read(f).with_context(|| format!("reading the path list {}", f.display()))
        }
    };
    let mut out = Vec::new();
    for (files, sep) in [(lines, b'\n'), (raw, 0u8)] {
        for f in files {
            let text = read(f)?;
            let before = out.len();
            for entry in text.split(|&b| b == sep) {
                // A list written on Windows ends its lines with CR, never
                // part of a name. Blanks are kept: ` notes` is a legal name,
                // and a stray blank fails as "no such file", never as
                // another file backed up.
                let entry = if sep == b'\n' { entry.strip_suffix(b"\r").unwrap_or(entry) } else { entry };
                if entry.is_empty() || (sep == b'\n' && entry.starts_with(b"#")) {
                    continue;
                }
                out.push(PathBuf::from(std::ffi::OsStr::from_bytes(entry)));
            }
            if out.len() == before {
                anyhow::bail!("the path list {} names no path to back up", f.display());
            }
        }
    }
    Ok(out)
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let loc = super::locate(cli)?;
    let repo = match super::open_at(cli, &loc) {
        Ok(r) => r,
        Err(e)
            if loc.is_default
                && matches!(Repository::read_config(&*loc.backend), Err(Error::NoRepository(_))) =>
        {
            drop(e);
            crate::errln!("arca: creating the default repository at {}", loc.backend.location());
            let init = super::init::Args {
                encryption: "xchacha20-poly1305".into(),
                compression: arca_core::DEFAULT_COMPRESSION_LEVEL,
                parity: 0,
            };
            super::init::create(cli, &loc, &init)?
        }
        Err(e) => return Err(e),
    };
    let mut excludes = args.exclude.clone();
    excludes.extend(read_excludes(&args.exclude_file)?);
    let mut iexcludes = args.iexclude.clone();
    iexcludes.extend(read_excludes(&args.iexclude_file)?);
    let mut paths = args.paths.clone();
    paths.extend(read_path_lists(&args.files_from, &args.files_from_raw)?);
    let parent = match &args.parent {
        Some(p) => Some(super::snapshot(&repo, p, &Default::default())?.0),
        None => None,
    };
    let stream = args.stdin || args.stdin_from_command || args.postgres.is_some();
    if args.postgres.is_some() && !paths.is_empty() {
        anyhow::bail!("give either paths or --postgres, not both");
    }
    if args.stdin && !paths.is_empty() {
        anyhow::bail!("give either paths or --stdin, not both");
    }
    if args.stdin_from_command && !(args.files_from.is_empty() && args.files_from_raw.is_empty()) {
        anyhow::bail!("--files-from lists paths to back up: it does not go with --stdin-from-command");
    }
    let opts = BackupOptions::default()
        .paths(if stream { Vec::new() } else { paths })
        .excludes(excludes)
        .iexcludes(iexcludes)
        .exclude_paths(loc.local_path.iter().cloned().collect())
        .exclude_larger_than(args.exclude_larger_than)
        .exclude_if_present(args.exclude_if_present.clone())
        .exclude_caches(args.exclude_caches)
        .one_file_system(args.one_file_system)
        .tags(args.tag.clone())
        .host(args.host.clone())
        .time(args.time.as_deref().map(parse_time).transpose()?)
        .strategy(args.strategy)
        .parent(parent)
        .force(args.force)
        .dry_run(args.dry_run)
        // Backup has never printed lock notes (they are for the
        // maintenance and read commands): kept silent.
        .lock(super::lock_options(cli).notes(|_: &str| {}))
        .cancel(crate::signals::cancel());
    let bar = progress::for_command(cli, "backed up");
    let result = if args.stdin {
        let mut input = std::io::stdin();
        backup_stream(&repo, &opts, &args.stdin_filename, &mut input, bar.as_progress())
    } else if let Some(url) = &args.postgres {
        let mut pg = arca_jobs::postgres::Postgres::from_url(url).map_err(anyhow::Error::msg)?;
        pg.databases = args.databases.clone();
        let mut next = pg.streams().map_err(anyhow::Error::msg)?;
        backup_streams(&repo, &opts, &["postgres", &pg.cluster], &mut next, bar.as_progress())
    } else if args.stdin_from_command {
        let Some((program, rest)) = args.paths.split_first() else {
            anyhow::bail!("--stdin-from-command needs a command after `--`: arca backup --stdin-from-command -- pg_dump mydb")
        };
        let rest: Vec<std::ffi::OsString> = rest.iter().map(|a| a.clone().into_os_string()).collect();
        let mut output = arca_core::CommandOutput::spawn(program.clone().into_os_string(), &rest)?;
        backup_stream(&repo, &opts, &args.stdin_filename, &mut output, bar.as_progress())
    } else {
        backup(&repo, &opts, bar.as_progress())
    };
    bar.done();
    let result = result?;
    let snap = &result.snapshot;
    let s = &snap.summary;
    if cli.json {
        let mut v = serde_json::to_value(snap.metadata(&result.id.unwrap_or_default()))?;
        if result.id.is_none() {
            v["id"] = serde_json::Value::Null;
            v["short_id"] = serde_json::Value::Null;
            v["dry_run"] = true.into();
        }
        output::json(&v)?;
    } else {
        let what = match result.id {
            Some(id) => format!("snapshot {} saved", SnapshotId::short(&id)),
            None => "dry run: nothing written".to_string(),
        };
        sayln!(
            "{what} ({}{}): {} files, {}; {}",
            snap.strategy.as_str(),
            snap.parent.map(|p| format!(" of {}", p.short())).unwrap_or_default(),
            snap.files,
            output::bytes(snap.size),
            output::change_summary(s)
        );
        if !s.errors.is_empty() {
            outln!(
                "{} paths could not be read (listed above); the snapshot holds everything else",
                s.errors.len()
            );
        }
    }
    Ok(if s.errors.is_empty() { 0 } else { exit::PARTIAL })
}
