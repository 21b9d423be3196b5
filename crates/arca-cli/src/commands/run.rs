use anyhow::Result;
use arca_core::Strategy;
use arca_jobs::RunOptions;

use crate::{exit, output, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
#[command(after_help = "The job's destinations and passwords come from arca.toml (docs/config.md): \
--repo, ARCA_REPOSITORY and the password options are not used.")]
pub struct Args {
    /// The job of arca.toml to run.
    // Its own id: the global --job has the id `job`.
    #[arg(id = "run_job", value_name = "JOB")]
    pub job: String,
    /// Back up with this strategy this time (full, incremental, differential).
    #[arg(long)]
    pub strategy: Option<Strategy>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let config = super::load_config(cli)?;
    let opts = RunOptions::default()
        .strategy(args.strategy)
        .lock(super::lock_options(cli))
        .cancel(crate::signals::cancel())
        .cache_root(super::cache_root())
        .state_dir(super::state_dir());
    let bar = progress::for_command(cli, "backed up");
    let report = arca_jobs::run(&config, &args.job, &opts, bar.as_progress());
    bar.done();
    let report = report.map_err(anyhow::Error::msg)?;
    for w in &report.warnings {
        crate::errln!("arca: warning: {w}");
    }
    if cli.json {
        output::json(&report)?;
    } else {
        let read = output::bytes(report.bytes_read);
        let took = report.duration_ms as f64 / 1000.0;
        match &report.error {
            None => sayln!("job {}: done in {took:.1} s, {read} read once", report.job),
            Some(e) => sayln!("job {}: FAILED in {took:.1} s ({read} read): {e}", report.job),
        }
        for d in &report.destinations {
            let mut parts = Vec::new();
            if let Some(s) = &d.snapshot {
                parts.push(format!("snapshot {}", &s[..8]));
            }
            if d.copied > 0 {
                parts.push(format!("{} copied", d.copied));
            }
            if let Some(r) = &d.retention {
                match &r.held {
                    Some(_) => parts.push(format!(
                        "retention held ({} kept): a suspicious snapshot waits for `arca confirm`",
                        r.kept
                    )),
                    None => parts.push(format!("retention removed {}, kept {}", r.removed, r.kept)),
                }
            }
            if let Some(v) = &d.verify {
                parts.push(format!("verify {} {}", v.mode, if v.valid { "ok" } else { "found damage" }));
            }
            if let Some(e) = &d.error {
                parts.push(format!("FAILED: {e}"));
            }
            let role = if d.primary { " (backed up here)" } else { "" };
            sayln!("  {}{role}: {}", d.name, parts.join("; "));
        }
    }
    if let Some(why) = &report.suspicious {
        crate::errln!(
            "arca: warning: the snapshot is marked suspicious: {why}; retention removes nothing until you check it and run `arca --job {} confirm`",
            report.job
        );
    }
    let unread = report.snapshot.as_ref().map_or(0, |s| s.summary.errors.len());
    if unread > 0 {
        crate::errln!(
            "arca: warning: {unread} paths could not be read (listed above, and in the snapshot's summary.errors); the snapshot holds everything else"
        );
    }
    Ok(match (report.success, &report.suspicious, unread) {
        (false, _, _) => exit::FAILURE,
        (true, Some(_), _) => exit::SUSPICIOUS,
        (true, None, 1..) => exit::PARTIAL,
        (true, None, 0) => 0,
    })
}
