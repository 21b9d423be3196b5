use std::path::PathBuf;

use anyhow::{bail, Result};
use arca_core::ops::copy::{copy, CopyOptions};
use arca_core::Repository;

use crate::{location, output, password, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to copy (id prefixes or `latest`); all when none given.
    pub snapshots: Vec<String>,
    /// The target repository (path, file:// or s3://); it must exist (`arca init`).
    #[arg(long)]
    pub to: String,
    /// File holding the target repository's password (wins over ARCA_TO_PASSWORD and
    /// ARCA_TO_PASSWORD_FILE; else those, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Which snapshots are copied (all that match when no id is given), and
    /// which `latest` is chosen among.
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let src = super::open(cli)?;
    let to = location::resolve(Some(&args.to))?;
    // The target's config is read once, for both questions.
    let found = Repository::locate(to.backend.clone())?;
    let pw = if found.needs_password() { password::target(args.to_password_file.as_deref())? } else { None };
    if pw.is_none() && found.needs_password() {
        bail!(
            "the target repository {} needs a password: set ARCA_TO_PASSWORD or give --to-password-file",
            args.to
        );
    }
    let mut dst = found.open(pw.as_deref())?;
    if let Some(root) = super::cache_root() {
        dst.set_cache_root(&root);
    }
    let snaps = if args.snapshots.is_empty() {
        super::snapshots(&src, &args.filter.to_filter()?)?
    } else {
        args.snapshots.iter().map(|s| super::snapshot(&src, s, &args.filter)).collect::<Result<Vec<_>>>()?
    };
    let bar = progress::for_command(cli, "copied");
    // --no-lock is about the source: copy always locks the target it writes.
    let opts = CopyOptions::default().lock(super::lock_options(cli)).cancel(crate::signals::cancel());
    let r = copy(&src, &dst, &snaps, &opts, bar.as_progress());
    bar.done();
    let r = r?;
    if cli.json {
        output::json(&r)?;
    } else {
        for c in &r.copied {
            sayln!("copied {} -> {}", &c.source[..8], &c.target[..8]);
        }
        sayln!(
            "{} snapshots copied, {} already in {}; {} blobs ({}) added",
            r.copied.len(),
            r.already_present.len(),
            dst.location(),
            r.blobs_added,
            output::bytes(r.bytes_added)
        );
    }
    Ok(0)
}
