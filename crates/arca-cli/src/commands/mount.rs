use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use arca_core::ops::mount::{mount, MountOptions};

use crate::{output, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Layout: ids/<short id>/, snapshots/<time>/ and snapshots/latest, hosts/<host>/<time>/,
tags/<tag>/<time>/; a snapshot's files are below their absolute paths
(snapshots/latest/home/ada/letter.txt). Read-only. The snapshot list is read when
mounting: snapshots taken later appear after mounting again.")]
pub struct Args {
    /// An empty folder to mount on.
    pub mountpoint: PathBuf,
    /// Which snapshots appear (default: all).
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let opts = MountOptions::default()
        .filter(args.filter.to_filter()?)
        .lock(super::lock_options(cli))
        .cancel(crate::signals::cancel());
    // No bar while mounted: warnings only (as JSON lines with --json-progress).
    let warnings = progress::for_command_with(cli, "mounted", false);
    let location = repo.location();
    let mounted = mount(Arc::new(repo), &args.mountpoint, &opts, warnings.as_progress())?;
    let at = std::path::absolute(&args.mountpoint).unwrap_or_else(|_| args.mountpoint.clone());
    let leave = if nix::unistd::geteuid().is_root() { "umount" } else { "fusermount3 -u" };
    let line = format!(
        "mounted {} snapshots of {location} read-only at {}; leave with `{leave} {}` or Ctrl-C",
        mounted.snapshots(),
        at.display(),
        at.display()
    );
    if cli.json {
        if !output::quiet() {
            crate::errln!("arca: {line}");
        }
    } else {
        sayln!("{line}");
    }
    let r = mounted.wait(warnings.as_progress())?;
    if cli.json {
        output::json(&r)?;
    } else if r.detached {
        sayln!("{} was busy: detached, it goes away when its last open file is closed", at.display());
    } else {
        sayln!(
            "unmounted {}; {} read through it ({} chunks fetched)",
            at.display(),
            output::bytes(r.bytes_read),
            r.chunks_fetched
        );
    }
    Ok(0)
}
