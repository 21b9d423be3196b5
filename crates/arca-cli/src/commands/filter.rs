//! `--host`, `--tag`, `--path`: choosing snapshots, shared by the commands
//! that list or select them.

use anyhow::Result;
use arca_core::format::snapshot::Snapshot;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag; repeatable (any matches).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots that include this source path.
    #[arg(long)]
    pub path: Option<String>,
}

/// A compiled filter (the path normalized as backups record it).
pub struct Filter {
    args: FilterArgs,
    path: Option<String>,
}

impl FilterArgs {
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.tag.is_empty() && self.path.is_none()
    }

    pub fn compile(&self) -> Result<Filter> {
        let path = self
            .path
            .as_deref()
            .map(|p| {
                arca_core::ops::backup::normalize(std::path::Path::new(p))
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .transpose()?;
        Ok(Filter { args: self.clone(), path })
    }
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.args.host.as_ref().is_none_or(|h| &s.host == h)
            && (self.args.tag.is_empty() || s.tags.iter().any(|t| self.args.tag.contains(t)))
            && self.path.as_ref().is_none_or(|p| s.paths.contains(p))
    }
}
