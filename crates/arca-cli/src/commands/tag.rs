use anyhow::Result;
use arca_core::ops::tag::{tag, TagOptions};

use crate::{output, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to change (id prefixes or `latest`); none: every snapshot
    /// --host, --tag and --path select.
    pub snapshots: Vec<String>,
    /// Tags to add; repeatable.
    #[arg(long, value_name = "TAG")]
    pub add: Vec<String>,
    /// Tags to remove; repeatable.
    #[arg(long, value_name = "TAG")]
    pub remove: Vec<String>,
    /// Replace the tags with these; repeatable (`--set ''` alone clears them).
    #[arg(long, value_name = "TAG")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let mut ids = Vec::new();
    for s in &args.snapshots {
        ids.push(super::snapshot(&repo, s, &args.filter)?.0);
    }
    // `--set ''` is how a shell says "no tags at all".
    let set = (!args.set.is_empty()).then(|| args.set.iter().filter(|t| !t.is_empty()).cloned().collect());
    let opts = TagOptions::default()
        .snapshots(ids)
        .filter(args.filter.to_filter()?)
        .set(set)
        .add(args.add.clone())
        .remove(args.remove.clone())
        .lock(super::lock_options(cli))
        .cancel(crate::signals::cancel());
    let bar = progress::for_command(cli, "retagged");
    let r = tag(&repo, &opts, bar.as_progress());
    bar.done();
    let r = r?;
    if cli.json {
        output::json(&r)?;
    } else {
        for c in &r.changed {
            sayln!(
                "{} -> {}: tags {}",
                &c.old[..8],
                &c.new[..8],
                if c.tags.is_empty() { "(none)".into() } else { c.tags.join(",") }
            );
        }
        sayln!("{} snapshots retagged, {} already as asked", r.changed.len(), r.unchanged);
    }
    Ok(0)
}
