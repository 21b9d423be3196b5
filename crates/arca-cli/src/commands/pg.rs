//! `arca pg`: PostgreSQL's WAL archive and physical base backups, for
//! point-in-time recovery.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arca_core::ops::backup::BackupOptions;
use arca_core::ops::wal::{archive, fetch, WalOptions};
use arca_jobs::postgres::physical::{self, BaseBackupOptions, PitrRestore, RecoveryTarget, TargetAction};

use crate::{output, progress, sayln, Cli};

/// The cluster name the four commands share unless told otherwise.
const DEFAULT_CLUSTER: &str = "main";

#[derive(clap::Subcommand, Debug)]
pub enum PgCommand {
    /// Store one WAL file in the repository: archive_command = 'arca pg archive-wal %p'.
    /// Durable when it exits 0; a file stored already with the same content is accepted again.
    ArchiveWal(ArchiveArgs),
    /// Write an archived WAL file: restore_command = 'arca pg fetch-wal %f %p'. Exits 1 when
    /// the archive has no such file, and 126 when it cannot tell (storage unreachable,
    /// damage), which makes PostgreSQL stop the recovery rather than end it there.
    FetchWal(FetchArgs),
    /// Take a physical base backup (pg_basebackup) into a snapshot, kept once the WAL that
    /// makes it consistent is archived.
    Basebackup(BasebackupArgs),
    /// Write a data folder from a base backup, set up to replay the archived WAL up to a
    /// time, an LSN or a restore point.
    Restore(RestoreArgs),
    /// Show the WAL archive of each cluster: timelines, gaps, the base backups.
    Wal(WalArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClusterArg {
    /// The name of the cluster's WAL archive in the repository [default: with --job, the
    /// cluster of the job's postgres source; else main].
    #[arg(long, env = "ARCA_PG_CLUSTER")]
    pub cluster: Option<String>,
}

impl ClusterArg {
    /// The cluster asked for, else the job's, else `main`.
    fn resolve(&self, cli: &Cli) -> Result<String> {
        if let Some(c) = &self.cluster {
            return Ok(c.clone());
        }
        if let Some(name) = &cli.job {
            return job_cluster(cli)?.with_context(|| {
                format!("job {name} backs up no PostgreSQL cluster physically (postgres = {{ url = …, physical = true }}): give --cluster")
            });
        }
        Ok(DEFAULT_CLUSTER.to_string())
    }
}

/// The repositories a WAL command works on: with --job, every destination
/// of the job (or the one --destination names), by priority; else the
/// one repository.
fn repositories(cli: &Cli) -> Result<Vec<(String, Result<arca_core::Repository>)>> {
    let Some(name) = &cli.job else {
        let repo = super::open(cli)?;
        return Ok(vec![(repo.location(), Ok(repo))]);
    };
    let config = super::load_config(cli)?;
    let job = config.job(name).map_err(anyhow::Error::msg)?;
    let opts = arca_jobs::run::RunOptions::default().cache_root(super::cache_root());
    Ok(job
        .destinations
        .iter()
        .filter(|d| cli.destination.as_ref().is_none_or(|want| want == *d))
        .map(|d| (d.clone(), arca_jobs::run::open_destination(&config, d, &opts).map_err(anyhow::Error::msg)))
        .collect())
}

#[derive(clap::Args, Debug)]
pub struct ArchiveArgs {
    /// The WAL file (PostgreSQL's %p: a path relative to the data folder).
    pub path: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The file PostgreSQL asks for (%f).
    pub name: String,
    /// Where to write it (%p).
    pub dest: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

#[derive(clap::Args, Debug)]
pub struct BasebackupArgs {
    /// The server: postgresql://user@host:port (a user with REPLICATION).
    pub url: String,
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// How long to wait for the WAL of the backup to be archived (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = crate::parse_wait)]
    pub wal_wait: std::time::Duration,
    /// Add this tag to the snapshot; repeatable.
    #[arg(long)]
    pub tag: Vec<String>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("stop").args(["at", "target_lsn", "target_name", "latest"]).required(true)))]
pub struct RestoreArgs {
    /// The base backup to start from (default: the latest that ends before the target).
    pub snapshot: Option<String>,
    /// Recover to this time (RFC 3339 or YYYY-MM-DD[ HH:MM[:SS]] local): every transaction
    /// committed at or before it, none after.
    #[arg(long)]
    pub at: Option<String>,
    /// Recover to this WAL location (LSN, such as 0/3000028).
    #[arg(long)]
    pub target_lsn: Option<String>,
    /// Recover to this restore point (pg_create_restore_point).
    #[arg(long)]
    pub target_name: Option<String>,
    /// Recover every archived WAL file.
    #[arg(long)]
    pub latest: bool,
    /// The data folder to write (absent or empty).
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// What the server does at the target: promote (accept writes), pause (stay read-only)
    /// or shutdown.
    #[arg(long, default_value = "promote")]
    pub target_action: TargetAction,
    /// The cluster's archive (default: the only one holding base backups).
    #[arg(long, env = "ARCA_PG_CLUSTER")]
    pub cluster: Option<String>,
    /// Write archive_mode = off: for a copy restored beside the running original, whose new
    /// timeline must not enter the original's WAL archive.
    #[arg(long)]
    pub no_archive: bool,
    /// The restore_command to write, instead of one running this arca with the repository
    /// and password source of this command (%f and %p as PostgreSQL expands them).
    #[arg(long, value_name = "COMMAND")]
    pub restore_command: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct WalArgs {}

pub fn run(cli: &Cli, cmd: &PgCommand) -> Result<u8> {
    match cmd {
        PgCommand::ArchiveWal(a) => archive_wal(cli, a),
        PgCommand::FetchWal(a) => fetch_wal(cli, a),
        PgCommand::Basebackup(a) => basebackup(cli, a),
        PgCommand::Restore(a) => restore(cli, a),
        PgCommand::Wal(a) => wal(cli, a),
    }
}

fn wal_options(cli: &Cli) -> WalOptions {
    WalOptions::default().lock(super::lock_options(cli)).cancel(crate::signals::cancel())
}

/// Stores the file in every repository (with --job, each destination of
/// the job): it exits 0 only when all of them hold it, so that PostgreSQL
/// keeps the file and tries again while one is unreachable (those that
/// have it already accept it again at no cost).
fn archive_wal(cli: &Cli, a: &ArchiveArgs) -> Result<u8> {
    let name = a
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not end in a WAL file name", a.path.display()))?;
    let cluster = a.cluster.resolve(cli)?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (dest, repo) in repositories(cli)? {
        let stored = repo.and_then(|repo| {
            let mut file =
                std::fs::File::open(&a.path).with_context(|| format!("opening {}", a.path.display()))?;
            archive(&repo, &cluster, name, &mut file, &wal_options(cli)).map_err(anyhow::Error::from)
        });
        match stored {
            Ok(d) => done.push((dest, d)),
            Err(e) if cli.job.is_none() => return Err(e.context(format!("archiving {}", a.path.display()))),
            Err(e) => failed.push(format!("{dest}: {e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!("archiving {}: {} (PostgreSQL keeps it and tries again)", a.path.display(), failed.join("; "));
    }
    if cli.json {
        let mut shown = Vec::new();
        for (dest, d) in &done {
            let mut v = serde_json::to_value(d)?;
            if cli.job.is_some() {
                v["destination"] = dest.as_str().into();
            }
            shown.push(v);
        }
        match (cli.job.is_some(), shown.pop()) {
            (false, Some(one)) => output::json(&one)?,
            (_, last) => output::json(&shown.into_iter().chain(last).collect::<Vec<_>>())?,
        }
    } else if cli.verbose > 0 {
        for (dest, d) in &done {
            sayln!(
                "{}: {} {} of cluster {} ({}, {} added)",
                dest,
                if d.stored { "archived" } else { "already archived:" },
                d.name,
                d.cluster,
                output::bytes(d.size),
                output::bytes(d.bytes_added)
            );
        }
    }
    Ok(0)
}

/// Exit status of `fetch-wal` when it cannot tell whether the file exists:
/// above 125, which PostgreSQL takes for a failure of the command itself
/// and stops recovery, instead of ending it at this file.
const FETCH_FAILED: u8 = 126;

/// Writes the file from the first repository that has it (with --job,
/// the job's destinations by priority). Missing everywhere it could look:
/// 1; missing where it looked but some repository could not be asked:
/// [`FETCH_FAILED`].
fn fetch_wal(cli: &Cli, a: &FetchArgs) -> Result<u8> {
    let mut failed = Vec::new();
    let looked = a.cluster.resolve(cli).and_then(|cluster| Ok((cluster, repositories(cli)?)));
    let (cluster, repos) = match looked {
        Ok(r) => r,
        Err(e) => {
            crate::errln!("arca: error: fetching WAL file {}: {e:#}", a.name);
            return Ok(FETCH_FAILED);
        }
    };
    for (dest, repo) in repos {
        let fetched = repo.and_then(|repo| {
            fetch(&repo, &cluster, &a.name, &a.dest, &wal_options(cli)).map_err(anyhow::Error::from)
        });
        match fetched {
            Ok(Some(_)) => return Ok(0),
            Ok(None) => {}
            Err(e) => {
                failed.push(if cli.job.is_some() { format!("{dest}: {e:#}") } else { format!("{e:#}") })
            }
        }
    }
    if !failed.is_empty() {
        crate::errln!("arca: error: fetching WAL file {}: {}", a.name, failed.join("; "));
        return Ok(FETCH_FAILED);
    }
    if cli.verbose > 0 {
        crate::errln!("arca: {} is not in the archive of cluster {cluster}", a.name);
    }
    Ok(crate::exit::FAILURE)
}

fn basebackup(cli: &Cli, a: &BasebackupArgs) -> Result<u8> {
    let repo = super::open(cli)?;
    let opts = BackupOptions::default()
        .tags(a.tag.clone())
        .lock(super::lock_options(cli).notes(|_: &str| {}))
        .cancel(crate::signals::cancel());
    let b = BaseBackupOptions { url: a.url.clone(), cluster: a.cluster.resolve(cli)?, wait: a.wal_wait };
    let bar = progress::for_command(cli, "backed up");
    let result = physical::basebackup(&repo, &opts, &b, bar.as_progress());
    bar.done();
    let result = result.map_err(anyhow::Error::msg)?;
    let snap = &result.snapshot;
    let id = result.id.unwrap_or_default();
    if cli.json {
        output::json(&snap.metadata(&id))?;
    } else {
        let base = snap.base_backup.as_ref().expect("a base backup records its WAL");
        sayln!(
            "base backup {} of cluster {} saved: {}, {} added; WAL from {} (timeline {}), consistent at {}",
            id.short(),
            base.cluster,
            output::bytes(snap.size),
            output::bytes(snap.summary.bytes_added),
            base.start_lsn,
            base.timeline,
            base.stop_lsn
        );
    }
    Ok(0)
}

/// A word for `sh`: single-quoted.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}", p.display()))
}

/// The `restore_command` that runs this arca against the same repository
/// with the same password source: never the password itself, which would
/// then sit in postgresql.auto.conf.
fn restore_command(cli: &Cli, repo: &arca_core::Repository, cluster: &str) -> Result<String> {
    let exe = std::env::current_exe().context("finding the arca program")?;
    let mut words = vec![sh_quote(&exe.to_string_lossy()), "pg".into(), "fetch-wal".into()];
    match &cli.job {
        Some(job) => {
            let config = absolute(&super::config_path(cli)?)?;
            words.extend([
                "--config".into(),
                sh_quote(&config.to_string_lossy()),
                "--job".into(),
                sh_quote(job),
            ]);
            if let Some(d) = &cli.destination {
                words.extend(["--destination".into(), sh_quote(d)]);
            }
        }
        None => words.extend(["--repo".into(), sh_quote(&repo.location())]),
    }
    let needs = repo.config().needs_password();
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if needs && cli.job.is_none() || cli.password_file.is_some() || cli.password_command.is_some() {
        if let Some(f) = &cli.password_file {
            words.extend(["--password-file".into(), sh_quote(&absolute(f)?.to_string_lossy())]);
        } else if let Some(c) = &cli.password_command {
            words.extend(["--password-command".into(), sh_quote(c)]);
        } else if env("ARCA_PASSWORD").is_some() {
            bail!(
                "the password comes from ARCA_PASSWORD, which the server's restore_command cannot be given \
                 without writing it into postgresql.auto.conf: give --password-file or --password-command \
                 (readable by the server's user), or --restore-command"
            );
        } else if let Some(f) = env("ARCA_PASSWORD_FILE") {
            words.extend(["--password-file".into(), sh_quote(&absolute(Path::new(&f))?.to_string_lossy())]);
        } else if let Some(c) = env("ARCA_PASSWORD_COMMAND") {
            words.extend(["--password-command".into(), sh_quote(&c.to_string_lossy())]);
        } else {
            bail!(
                "the server's restore_command needs the repository's password: give --password-file or \
                 --password-command (readable by the server's user), or --restore-command"
            );
        }
    }
    words.extend(["--cluster".into(), sh_quote(cluster), "%f".into(), "%p".into()]);
    Ok(words.join(" "))
}

fn restore(cli: &Cli, a: &RestoreArgs) -> Result<u8> {
    let repo = super::open(cli)?;
    let target = if let Some(at) = &a.at {
        RecoveryTarget::Time(super::backup::parse_time(at)?)
    } else if let Some(l) = &a.target_lsn {
        RecoveryTarget::Lsn(arca_core::ops::wal::parse_lsn(l)?)
    } else if let Some(n) = &a.target_name {
        RecoveryTarget::Name(n.clone())
    } else {
        RecoveryTarget::Latest
    };
    let snapshot = match &a.snapshot {
        Some(s) => Some(super::snapshot(&repo, s, &Default::default())?.0),
        None => None,
    };
    // The cluster the command will fetch from: the one asked, else the
    // one the chosen base backup belongs to (found by the restore).
    let cluster_hint = a.cluster.clone();
    let restore_command = |cluster: &str| match &a.restore_command {
        Some(c) => Ok(c.clone()),
        None => restore_command(cli, &repo, cluster).map_err(|e| format!("{e:#}")),
    };
    let r = PitrRestore {
        cluster: cluster_hint.clone(),
        snapshot,
        target,
        action: a.target_action,
        datadir: absolute(&a.target)?,
        no_archive: a.no_archive,
    };
    let done = physical::restore(&repo, &r, &restore_command).map_err(anyhow::Error::msg)?;
    if cli.json {
        output::json(&done)?;
    } else {
        say_recovery(&done)?;
    }
    Ok(0)
}

/// What a recovery wrote, and what to do next.
pub fn say_recovery(done: &physical::PgRecovery) -> Result<()> {
    sayln!(
        "wrote {} ({}) from base backup {} taken {}; recovery replays WAL of cluster {} from {} \
         (archived through {}) to {}, then {}s",
        done.datadir,
        output::bytes(done.bytes),
        &done.snapshot[..8],
        output::time(&done.snapshot_time),
        done.cluster,
        done.wal_from,
        done.wal_archived_through,
        done.target,
        done.target_action
    );
    sayln!("start the server on it (as its owner): pg_ctl -D {} start", done.datadir);
    Ok(())
}

/// `restore --at T --pg-target DATADIR`: the database of the job (or the
/// repository's only cluster) recovered to `at`, promoted there.
pub fn recover_to(
    cli: &Cli,
    repo: &arca_core::Repository,
    datadir: &Path,
    at: chrono::DateTime<chrono::FixedOffset>,
) -> Result<physical::PgRecovery> {
    let r = PitrRestore {
        cluster: job_cluster(cli)?,
        snapshot: None,
        target: RecoveryTarget::Time(at),
        action: TargetAction::Promote,
        datadir: absolute(datadir)?,
        no_archive: false,
    };
    let command = |cluster: &str| restore_command(cli, repo, cluster).map_err(|e| format!("{e:#}"));
    physical::restore(repo, &r, &command).map_err(anyhow::Error::msg)
}

/// With --job: the cluster of its physical PostgreSQL backups.
fn job_cluster(cli: &Cli) -> Result<Option<String>> {
    let Some(name) = &cli.job else { return Ok(None) };
    let config = super::load_config(cli)?;
    let job = config.job(name).map_err(anyhow::Error::msg)?;
    Ok(job_postgres(job).filter(|p| p.physical).map(|p| p.cluster.clone()))
}

/// The PostgreSQL cluster a job backs up, alone or beside its files.
fn job_postgres(job: &arca_jobs::config::Job) -> Option<&arca_jobs::postgres::Postgres> {
    match &job.source {
        arca_jobs::config::Source::Postgres(p) => Some(p),
        _ => job.database.as_ref(),
    }
}

fn wal(cli: &Cli, _a: &WalArgs) -> Result<u8> {
    let repo = super::open(cli)?;
    let (records, unreadable) = repo.wal_records_lenient()?;
    for e in &unreadable {
        crate::errln!("arca: warning: {}", e.report());
    }
    let snaps = super::snapshots(&repo, &Default::default())?;
    let bases: Vec<&arca_core::BaseBackup> =
        snaps.iter().filter_map(|(_, s)| s.base_backup.as_ref()).collect();
    let files: Vec<serde_json::Value> = records
        .iter()
        .map(|(object, r)| {
            serde_json::json!({"cluster": r.cluster, "name": r.name, "object": object, "size": r.size, "time": r.time})
        })
        .collect();
    let records: Vec<arca_core::WalRecord> = records.into_iter().map(|(_, r)| r).collect();
    let archives = arca_core::ops::wal::survey(&records, &bases);
    let damaged = archives.iter().any(|a| !a.gaps.is_empty());
    if cli.json {
        output::json(&serde_json::json!({"clusters": archives, "files": files}))?;
        return Ok(if damaged { crate::exit::DAMAGE } else { 0 });
    }
    if archives.is_empty() {
        sayln!("no WAL archive and no base backup in {}", repo.location());
    }
    for a in &archives {
        let n_bases = bases.iter().filter(|b| b.cluster == a.cluster).count();
        sayln!(
            "cluster {}: {} files ({}), {} base backups, needed from {}, last archived {}",
            a.cluster,
            a.files,
            output::bytes(a.bytes),
            n_bases,
            a.needed_from.as_deref().unwrap_or("-"),
            a.last_archived.as_deref().map(output::time).unwrap_or_else(|| "-".into())
        );
        for t in &a.timelines {
            sayln!("  timeline {}: {} to {} ({} segments)", t.timeline, t.first, t.last, t.segments);
        }
        for g in &a.gaps {
            sayln!("  gap: {}", g.describe(&a.cluster));
        }
    }
    Ok(if damaged { crate::exit::DAMAGE } else { 0 })
}
