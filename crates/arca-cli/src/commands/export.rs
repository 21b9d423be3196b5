use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arca_core::ops::archive::{export, Format};

use crate::{progress, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
    /// Only this path (and what is below it).
    pub path: Option<String>,
    /// tar, tar.zst or zip.
    #[arg(long, default_value = "tar")]
    pub format: Format,
    /// Write the archive here instead of stdout (written under a temporary name, renamed when complete).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Which snapshots `latest` (or an id) is chosen among.
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (id, snap) = super::snapshot(&repo, &args.snapshot, &args.filter)?;
    let index = super::load_index(&repo)?;
    let (out, tmp): (Box<dyn Write>, Option<PathBuf>) = match &args.output {
        Some(p) => {
            let tmp = p.with_file_name(format!(
                ".{}.arca-partial",
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            (Box::new(BufWriter::with_capacity(1 << 20, f)), Some(tmp))
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: redirect stdout or give --output");
            }
            (Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout())), None)
        }
    };
    // Progress only when the archive goes to a file and we are on a terminal.
    let bar = progress::for_command_with(cli, "exported", args.output.is_some());
    let r = export(&repo, &index, &snap.tree, args.path.as_deref(), args.format, out, bar.as_progress());
    bar.done();
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            if let Some(t) = &tmp {
                let _ = std::fs::remove_file(t);
            }
            return Err(e.into());
        }
    };
    if let (Some(t), Some(p)) = (&tmp, &args.output) {
        std::fs::File::open(t)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", t.display()))?;
        std::fs::rename(t, p).with_context(|| format!("renaming {} to {}", t.display(), p.display()))?;
    }
    for s in &r.skipped {
        crate::errln!("arca: warning: {s}: this archive format cannot hold it, skipped");
    }
    if cli.json && args.output.is_some() {
        let mut v = serde_json::to_value(&r)?;
        v["snapshot"] = id.to_hex().into();
        crate::output::json(&v)?;
    }
    Ok(0)
}
