use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arca_core::ops::restore::{restore, Overwrite, RestoreOptions};

use crate::{exit, outln, output, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest` (or use --at).
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore the latest snapshot taken at or before this time (RFC 3339 or YYYY-MM-DD[ HH:MM[:SS]] local).
    #[arg(long)]
    pub at: Option<String>,
    /// With --at: which snapshots to choose from.
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// With --at: also write a PostgreSQL data folder here, recovering the database to the
    /// same time from the latest base backup before it and the archived WAL (`arca pg
    /// restore --at`); with --job, its cluster is the job's.
    #[arg(long, value_name = "DATADIR", requires = "at", conflicts_with = "to_postgres")]
    pub pg_target: Option<PathBuf>,
    /// Folder to restore into; the snapshot's absolute paths are recreated below it.
    #[arg(long, short = 't', required_unless_present = "to_postgres")]
    pub target: Option<PathBuf>,
    /// Restore a database dump of the snapshot (`backup --postgres`) into this PostgreSQL
    /// server, with pg_restore: into the database the URL names, else one of the dump's name.
    #[arg(long, value_name = "URL", conflicts_with_all = ["target", "include", "exclude", "delete", "verify"])]
    pub to_postgres: Option<String>,
    /// With --to-postgres: the database of the snapshot to restore (needed when it holds several).
    #[arg(long, requires = "to_postgres")]
    pub database: Option<String>,
    /// With --to-postgres: restore only this table; repeatable.
    #[arg(long = "table", value_name = "TABLE", requires = "to_postgres")]
    pub tables: Vec<String>,
    /// With --to-postgres: restore only this schema; repeatable.
    #[arg(long = "schema", value_name = "SCHEMA", requires = "to_postgres")]
    pub schemas: Vec<String>,
    /// With --to-postgres: create the target database first.
    #[arg(long, requires = "to_postgres")]
    pub create: bool,
    /// With --to-postgres: drop each object before restoring it.
    #[arg(long, requires = "to_postgres")]
    pub clean: bool,
    /// Restore only paths matching this glob (and what is below them); repeatable.
    #[arg(long, short = 'i')]
    pub include: Vec<String>,
    /// Do not restore paths matching this glob; repeatable.
    #[arg(long, short = 'e')]
    pub exclude: Vec<String>,
    /// What to do with files that already exist: always, if-changed (keep a file whose content
    /// equals the snapshot's, checked by hashing; this also resumes an interrupted restore),
    /// if-newer (replace only with a later mtime) or never.
    #[arg(long, default_value = "if-changed")]
    pub overwrite: Overwrite,
    /// Remove files and folders in restored folders that are not in the snapshot.
    #[arg(long)]
    pub delete: bool,
    /// Re-read every restored file and check it against the snapshot.
    #[arg(long)]
    pub verify: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (id, snap) = match (&args.snapshot, &args.at) {
        (Some(s), _) => super::snapshot(&repo, s, &args.filter)?,
        (None, Some(at)) => {
            let t = super::backup::parse_time(at)?;
            let (list, errors) = repo.snapshots_matching(&args.filter.to_filter()?)?;
            super::warn_unreadable(&errors);
            // Base backups are restored by `pg restore` (or --pg-target);
            // a dump by --to-postgres; with --job, the job's own files.
            let job_paths = job_file_paths(cli)?;
            let wanted = |s: &arca_core::Snapshot| {
                let dumps = s.paths.iter().all(|p| p.starts_with("/postgres/"));
                s.base_backup.is_none()
                    && (args.to_postgres.is_none() || dumps)
                    && job_paths.as_ref().is_none_or(|paths| {
                        s.same_source(&s.host, paths) || (args.to_postgres.is_some() && dumps)
                    })
            };
            let found = list
                .into_iter()
                .filter(|(_, s)| wanted(s) && s.timestamp() <= t)
                .max_by_key(|(_, s)| s.timestamp());
            let Some(found) = found else {
                bail!("no snapshot taken at or before {at} in {}", repo.location())
            };
            crate::errln!(
                "arca: restoring snapshot {} taken {}",
                found.0.short(),
                crate::output::time(&found.1.time)
            );
            found
        }
        (None, None) => unreachable!("clap requires a snapshot or --at"),
    };
    if let Some(url) = &args.to_postgres {
        let r = arca_jobs::postgres::PgRestore {
            url: url.clone(),
            database: args.database.clone(),
            tables: args.tables.clone(),
            schemas: args.schemas.clone(),
            create: args.create,
            clean: args.clean,
        };
        let done = arca_jobs::postgres::restore_dump(&repo, &snap, &r).map_err(anyhow::Error::msg)?;
        if cli.json {
            output::json(&done)?;
        } else {
            sayln!("restored {} of snapshot {} into database {}", done.dump, id.short(), done.database);
        }
        return Ok(0);
    }
    let target = args.target.clone().expect("clap requires --target without --to-postgres");
    // The database first: its checks (a WAL gap, no base backup before
    // the time) refuse before any file is written.
    let recovery = match (&args.pg_target, &args.at) {
        (Some(datadir), Some(at)) => {
            Some(super::pg::recover_to(cli, &repo, datadir, super::backup::parse_time(at)?)?)
        }
        _ => None,
    };
    let opts = RestoreOptions::default()
        .target(target.clone())
        .include(args.include.clone())
        .exclude(args.exclude.clone())
        .overwrite(args.overwrite)
        .delete(args.delete)
        .verify(args.verify)
        .cancel(crate::signals::cancel())
        .lock(super::lock_options(cli));
    let bar = progress::for_command(cli, "restored");
    let r = restore(&repo, &id, &opts, bar.as_progress());
    bar.done();
    let r = r.with_context(|| format!("restoring snapshot {} to {}", id.short(), target.display()))?;
    if r.target_full {
        crate::errln!(
            "arca: error: restore target {} ran out of space: {} files were restored completely, {} paths were not restored (listed)",
            r.target,
            r.files,
            r.errors.len()
        );
    }
    if cli.json {
        let mut v = serde_json::to_value(&r)?;
        if let Some(rec) = &recovery {
            v["postgres"] = serde_json::to_value(rec)?;
        }
        output::json(&v)?;
    } else {
        if let Some(rec) = &recovery {
            super::pg::say_recovery(rec)?;
        }
        sayln!(
            "restored snapshot {} to {}: {} files ({} already in place), {} dirs, {} written{}{} in {:.1} s",
            id.short(),
            r.target,
            r.files,
            r.files_kept,
            r.dirs,
            output::bytes(r.bytes),
            if r.deleted > 0 { format!(", {} deleted", r.deleted) } else { String::new() },
            if args.verify { format!(", {} verified", r.verified) } else { String::new() },
            r.duration_ms as f64 / 1000.0
        );
        for e in &r.errors {
            outln!("failed: {}: {}", e.path, e.error);
        }
        if !r.success {
            outln!("{} paths could not be restored", r.errors.len());
        }
    }
    Ok(if r.success { 0 } else { exit::FAILURE })
}

/// With --job whose source is files: those paths (as snapshots record
/// them), to choose among the job's snapshots the files' ones.
fn job_file_paths(cli: &Cli) -> Result<Option<Vec<String>>> {
    let Some(name) = &cli.job else { return Ok(None) };
    let config = super::load_config(cli)?;
    let job = config.job(name).map_err(anyhow::Error::msg)?;
    Ok(match &job.source {
        arca_jobs::config::Source::Paths(p) => {
            Some(p.iter().map(|p| p.to_string_lossy().into_owned()).collect())
        }
        _ => None,
    })
}
