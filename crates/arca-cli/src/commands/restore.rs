use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arca_core::restore::{restore, RestoreOptions};

use crate::{exit, outln, output, progress, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest` (or use --at).
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore the latest snapshot taken at or before this time (RFC 3339 or YYYY-MM-DD[ HH:MM[:SS]] local).
    #[arg(long)]
    pub at: Option<String>,
    /// With --at: only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// With --at: only snapshots that include this source path.
    #[arg(long)]
    pub path: Option<String>,
    /// Folder to restore into; the snapshot's absolute paths are recreated below it.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Restore only paths matching this glob (and what is below them); repeatable.
    #[arg(long, short = 'i')]
    pub include: Vec<String>,
    /// Do not restore paths matching this glob; repeatable.
    #[arg(long, short = 'e')]
    pub exclude: Vec<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (id, snap) = match (&args.snapshot, &args.at) {
        (Some(s), _) => super::snapshot(&repo, s)?,
        (None, Some(at)) => {
            let t = super::backup::parse_time(at)?;
            let want_path = args
                .path
                .as_deref()
                .map(|p| {
                    arca_core::backup::normalize(std::path::Path::new(p))
                        .map(|p| p.to_string_lossy().into_owned())
                })
                .transpose()?;
            let found = repo
                .snapshots()?
                .into_iter()
                .filter(|(_, s)| s.timestamp() <= t)
                .filter(|(_, s)| args.host.as_ref().is_none_or(|h| &s.host == h))
                .filter(|(_, s)| want_path.as_ref().is_none_or(|p| s.paths.contains(p)))
                .max_by_key(|(_, s)| s.timestamp());
            let Some(found) = found else {
                bail!("no snapshot taken at or before {at} in {}", repo.location())
            };
            eprintln!("arca: restoring snapshot {} taken {}", found.0.short(), found.1.time);
            found
        }
        (None, None) => unreachable!("clap requires a snapshot or --at"),
    };
    let _lock = repo.lock(false, "restore")?;
    let index = repo.load_index()?;
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include.clone(),
        exclude: args.exclude.clone(),
    };
    let bar = progress::for_terminal(cli.json, "restored");
    let r = restore(&repo, &index, &id, &snap.tree, &opts, bar.as_progress());
    bar.done();
    let r = r.with_context(|| format!("restoring snapshot {} to {}", id.short(), args.target.display()))?;
    if cli.json {
        output::json(&r)?;
    } else {
        outln!(
            "restored snapshot {} to {}: {} files, {} dirs, {} in {:.1} s",
            id.short(),
            r.target,
            r.files,
            r.dirs,
            output::bytes(r.bytes),
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
