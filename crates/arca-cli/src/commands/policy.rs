use anyhow::{bail, Result};

use super::retention::{PolicyArgs, PruneArgs};
use arca_core::ops::forget::CleanupOptions;

use crate::{outln, output, progress, sayln, Cli};

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Store the default retention policy in the repository (every client applies the same).
    Set(PolicyArgs),
    /// Show the stored policy.
    Show,
    /// Remove the stored policy.
    Clear,
}

pub fn run(cli: &Cli, cmd: &PolicyCommand) -> Result<u8> {
    let repo = super::open(cli)?;
    match cmd {
        PolicyCommand::Set(a) => {
            let p = a.to_policy()?;
            if p.is_empty() {
                bail!("the policy has no rule: give at least one --keep-* or --max-* option");
            }
            repo.save_policy(&p)?;
            if cli.json {
                output::json(&p)?;
            } else {
                sayln!("policy stored: {p}");
            }
        }
        PolicyCommand::Show => {
            let p = repo.load_policy()?;
            if cli.json {
                output::json(&p)?;
            } else {
                match p {
                    Some(p) => outln!("{p}"),
                    None => outln!("no policy stored"),
                }
            }
        }
        PolicyCommand::Clear => {
            repo.clear_policy()?;
            if !cli.json {
                sayln!("policy removed");
            } else {
                output::json(&serde_json::json!({"cleared": true}))?;
            }
        }
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub prune: PruneArgs,
    /// Show what would be removed without changing anything.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// Applies the stored policy, then prunes.
pub fn cleanup(cli: &Cli, args: &CleanupArgs) -> Result<u8> {
    let repo = super::open(cli)?;
    let opts = CleanupOptions::default()
        .prune(super::prune::options(cli, &args.prune))
        .dry_run(args.dry_run)
        .lock(super::lock_options(cli))
        .cancel(crate::signals::cancel());
    let bar = progress::for_command(cli, "marked");
    let r = arca_core::ops::forget::cleanup(&repo, &opts, bar.as_progress());
    bar.done();
    let Some(r) = r? else {
        bail!("no retention policy is stored in {}: run `arca policy set` first", repo.location());
    };
    let report = super::forget::ForgetReport::new(&r);
    if cli.json {
        output::json(&report)?;
    } else {
        super::forget::print(&report)?;
    }
    Ok(0)
}
