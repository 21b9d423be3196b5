use anyhow::Result;
use arca_core::ops::status::status;
use serde_json::json;

use crate::{outln, output, Cli};

pub fn run(cli: &Cli) -> Result<u8> {
    if let Some(job) = &cli.job {
        return job_health(cli, job);
    }
    let repo = super::open(cli)?;
    let st = status(&repo)?;
    super::warn_unreadable(&st.unreadable);
    let total_size = st.total_size;
    let locks: Vec<_> = st
        .locks
        .into_iter()
        .map(|l| match l.info {
            Some(i) => {
                json!({"id": l.id, "host": i.host, "pid": i.pid, "user": i.user, "exclusive": i.exclusive,
                              "operation": i.operation, "time": i.time, "stale": i.is_stale()})
            }
            None => json!({"id": l.id, "readable": false}),
        })
        .collect();
    let last = st.last.as_ref().map(|(id, s)| s.metadata(id));
    let status = json!({
        "repository": repo.location(),
        "repository_id": repo.config().id.to_hex(),
        "version": repo.config().version,
        "encryption": repo.config().encryption,
        "backup_count": st.snapshots,
        "total_size": total_size,
        "last_backup": last,
        "strategy": last.as_ref().map(|m| m.strategy),
        "locks": locks,
    });
    if cli.json {
        output::json(&status)?;
        return Ok(0);
    }
    outln!("repository {} ({})", repo.location(), repo.config().id.short());
    outln!("snapshots  {}", st.snapshots);
    outln!("stored     {}", output::bytes(total_size));
    match &last {
        Some(m) => outln!(
            "last       {} at {} ({}, {} files, {})",
            m.short_id,
            m.timestamp,
            m.strategy.as_str(),
            m.files,
            output::bytes(m.size)
        ),
        None => outln!("last       none"),
    }
    outln!("locks      {}", locks.len());
    Ok(0)
}

/// `status --job JOB`: the health of every destination of the job; exit 1
/// when any is unhealthy (for monitoring).
fn job_health(cli: &Cli, job: &str) -> Result<u8> {
    let config = super::load_config(cli)?;
    let opts =
        arca_jobs::RunOptions::default().lock(super::lock_options(cli)).cache_root(super::cache_root());
    let state = super::state_dir();
    let h = arca_jobs::health::health(&config, job, &opts, state.as_deref()).map_err(anyhow::Error::msg)?;
    if cli.json {
        output::json(&h)?;
    } else {
        let last = match &h.last_run {
            Some(r) => format!(
                "last run {} {}",
                output::time(&r.started),
                if r.success { "succeeded" } else { "FAILED" }
            ),
            None => "no run on record".to_string(),
        };
        outln!("job {}: {}; {last}", h.job, if h.healthy { "healthy" } else { "NOT HEALTHY" });
        for d in &h.destinations {
            let mut parts = Vec::new();
            // An unreachable one says so in its error.
            if d.reachable {
                parts.push(if d.writable { "writable".to_string() } else { "NOT WRITABLE".to_string() });
                if let Some(free) = d.space_left {
                    parts.push(format!("{} free", output::bytes(free)));
                }
                let newest = d.last_snapshot.as_deref().map(output::time).unwrap_or_else(|| "none".into());
                parts.push(format!("{} snapshots, newest {newest}", d.snapshots));
                if d.missing > 0 {
                    parts.push(format!("{} missing (the next run copies them)", d.missing));
                }
                if !d.locks.is_empty() {
                    let held: Vec<String> = d
                        .locks
                        .iter()
                        .map(|l| format!("{}{}", l.holder, if l.stale { " (stale)" } else { "" }))
                        .collect();
                    parts.push(format!("locked: {}", held.join(", ")));
                }
                if let Some(v) = d.last_run.as_ref().and_then(|r| r.verify.as_ref()) {
                    parts.push(format!(
                        "last verify {} {}",
                        v.mode,
                        if v.valid { "ok" } else { "found damage" }
                    ));
                }
            }
            if let Some(e) = &d.error {
                parts.push(e.clone());
            }
            outln!("  {} ({}): {}", d.name, d.url, parts.join("; "));
        }
    }
    Ok(if h.healthy { 0 } else { crate::exit::FAILURE })
}
