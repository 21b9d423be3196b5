use anyhow::Result;
use arca_jobs::RunOptions;

use crate::{output, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "A job's run marks a snapshot `suspicious` when an unusual share of files changed or \
its new data stopped compressing (docs/config.md); retention then removes nothing there. Check the snapshot \
(`arca snapshots --suspicious`, `arca diff`, `arca find`), then confirm it."
)]
pub struct Args {}

pub fn run(cli: &Cli, _args: &Args) -> Result<u8> {
    let mut confirmed = Vec::new();
    if let Some(job) = &cli.job {
        // Every destination of the job holds the marked copy.
        let config = super::load_config(cli)?;
        let opts = RunOptions::default().lock(super::lock_options(cli)).cache_root(super::cache_root());
        for (name, done) in arca_jobs::confirm_job(&config, job, &opts).map_err(anyhow::Error::msg)? {
            match done {
                Ok(n) => confirmed.push((name, n)),
                Err(e) => anyhow::bail!(
                    "destination {name}: {e} (the others are confirmed: run it again when it is back)"
                ),
            }
        }
    } else {
        let repo = super::open(cli)?;
        let bar = progress::for_command(cli, "confirmed");
        let n = arca_jobs::confirm(&repo, None, &super::lock_options(cli), bar.as_progress());
        bar.done();
        confirmed.push((repo.location(), n?));
    }
    if cli.json {
        let list: Vec<_> =
            confirmed.iter().map(|(r, n)| serde_json::json!({"repository": r, "confirmed": n})).collect();
        output::json(&serde_json::json!({"repositories": list}))?;
    } else {
        for (r, n) in &confirmed {
            sayln!("{r}: {n} suspicious snapshots confirmed");
        }
    }
    Ok(0)
}
