use anyhow::Result;
use arca_core::ops::status::status;
use serde_json::json;

use crate::{outln, output, Cli};

pub fn run(cli: &Cli) -> Result<u8> {
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
