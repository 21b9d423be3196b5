//! `--host`, `--tag`, `--path`: choosing snapshots, shared by the commands
//! that list or select them.

use anyhow::Result;
use arca_core::SnapshotFilter;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag; repeatable (any matches).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots that include this source path.
    // Its own id: `ls`, `dump` and `export` have a positional `path`.
    #[arg(long = "path", id = "filter_path", value_name = "PATH")]
    pub path: Option<String>,
}

impl FilterArgs {
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.tag.is_empty() && self.path.is_none()
    }

    /// The core filter these flags describe.
    pub fn to_filter(&self) -> Result<SnapshotFilter> {
        let mut f = SnapshotFilter::new();
        if let Some(h) = &self.host {
            f = f.host(h.clone());
        }
        for t in &self.tag {
            f = f.tag(t.clone());
        }
        if let Some(p) = &self.path {
            f = f.path(p)?;
        }
        Ok(f)
    }
}
