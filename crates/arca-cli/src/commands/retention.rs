//! Shared by `forget` and `policy set`: the retention rules as flags.

use anyhow::Result;
use arca_core::ops::forget::{parse_duration, Policy};

#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// … of each of the last N days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// … of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// … of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// … of each of the last N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep snapshots taken within DUR of the group's newest (e.g. 30d, 2w, 6m = months, 1y, 12h).
    #[arg(long, value_name = "DUR")]
    pub keep_within: Option<String>,
    /// Keep snapshots with this tag; repeatable.
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Never keep more than N snapshots per group (oldest go first).
    #[arg(long, value_name = "N")]
    pub max_versions: Option<u32>,
    /// Remove snapshots older than DUR before now (e.g. 30d).
    #[arg(long, value_name = "DUR")]
    pub max_age: Option<String>,
    /// Allow removing the newest snapshot of a group.
    #[arg(long)]
    pub allow_empty: bool,
}

impl PolicyArgs {
    pub fn to_policy(&self) -> Result<Policy> {
        Ok(Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within_secs: self.keep_within.as_deref().map(parse_duration).transpose()?,
            keep_tags: self.keep_tag.clone(),
            max_versions: self.max_versions,
            max_age_secs: self.max_age.as_deref().map(parse_duration).transpose()?,
            allow_empty: self.allow_empty,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Repack packs whose unused share exceeds this percentage.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    pub max_unused: f64,
    /// Repack at most this many bytes of packs in one run (e.g. 500M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_repack_size: Option<u64>,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m = match t[i..].to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
                "" => 1u64,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(format!("invalid size {s:?}: use e.g. 500M or 2G")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("invalid size {s:?}: use e.g. 500M or 2G"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}
