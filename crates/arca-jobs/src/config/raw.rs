//! The file as written, before it is checked: serde's view, with the place
//! (`Spanned`) of every value a check may find fault with.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) repositories: BTreeMap<String, Spanned<RawRepository>>,
    #[serde(default)]
    pub(super) jobs: BTreeMap<String, Spanned<RawJob>>,
    pub(super) daemon: Option<Spanned<RawDaemon>>,
    #[serde(default)]
    pub(super) blackout: Vec<Spanned<RawBlackout>>,
    #[serde(default)]
    pub(super) notify: Vec<Spanned<RawNotify>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepository {
    pub(super) url: Spanned<String>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) password_command: Option<Spanned<String>>,
    pub(super) password_env: Option<Spanned<String>>,
    #[serde(default = "default_priority")]
    pub(super) priority: u32,
    pub(super) retention: Option<Spanned<RawRetention>>,
    pub(super) s3_endpoint: Option<String>,
    pub(super) s3_region: Option<String>,
    pub(super) s3_keys_file: Option<String>,
    pub(super) s3_virtual_host_style: Option<bool>,
}

pub(super) fn default_priority() -> u32 {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) keep_last: Option<u32>,
    pub(super) keep_hourly: Option<u32>,
    pub(super) keep_daily: Option<u32>,
    pub(super) keep_weekly: Option<u32>,
    pub(super) keep_monthly: Option<u32>,
    pub(super) keep_yearly: Option<u32>,
    pub(super) keep_within: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) keep_tags: Vec<String>,
    pub(super) max_versions: Option<u32>,
    pub(super) max_age: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) allow_empty: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    #[serde(default)]
    pub(super) sources: Vec<Spanned<String>>,
    pub(super) command: Option<Spanned<Vec<String>>>,
    pub(super) postgres: Option<Spanned<RawPostgres>>,
    pub(super) stdin_filename: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) exclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) iexclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) exclude_caches: bool,
    #[serde(default)]
    pub(super) exclude_if_present: Vec<String>,
    pub(super) exclude_larger_than: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) one_file_system: bool,
    pub(super) destinations: Spanned<Vec<Spanned<String>>>,
    pub(super) strategy: Option<Spanned<String>>,
    pub(super) retention: Option<Spanned<RawRetention>>,
    pub(super) verify_after_backup: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tags: Vec<Spanned<String>>,
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) hooks: RawHooks,
    pub(super) mass_change_percent: Option<Spanned<u32>>,
    pub(super) mass_change_compression: Option<bool>,
    pub(super) schedule: Option<Spanned<RawSchedule>>,
    pub(super) retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    pub(super) notify: Vec<Spanned<RawNotify>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    #[serde(default)]
    pub(super) before: Vec<String>,
    #[serde(default)]
    pub(super) after: Vec<String>,
    #[serde(default)]
    pub(super) on_failure: Vec<String>,
    #[serde(default)]
    pub(super) finally: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub(super) full: Option<Spanned<String>>,
    pub(super) incremental: Option<Spanned<String>>,
    pub(super) differential: Option<Spanned<String>>,
    pub(super) retention: Option<Spanned<String>>,
    pub(super) verify: Option<Spanned<String>>,
    pub(super) verify_mode: Option<Spanned<String>>,
    pub(super) tz: Option<Spanned<String>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) priority: Option<Spanned<String>>,
    pub(super) missed: Option<Spanned<String>>,
    pub(super) max_load_per_core: Option<Spanned<f64>>,
    pub(super) min_free_space: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) attempts: Option<Spanned<u32>>,
    pub(super) initial: Option<Spanned<String>>,
    pub(super) factor: Option<Spanned<f64>>,
    pub(super) max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) webhook: Option<Spanned<String>>,
    pub(super) ping: Option<Spanned<String>>,
    pub(super) email: Option<Spanned<String>>,
    pub(super) command: Option<Spanned<String>>,
    pub(super) format: Option<Spanned<String>>,
    pub(super) on: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlackout {
    pub(super) days: Option<Vec<Spanned<String>>>,
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
    pub(super) tz: Option<Spanned<String>>,
    pub(super) policy: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) jobs: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) token_file: Option<String>,
    pub(super) max_concurrent_jobs: Option<Spanned<u32>>,
    pub(super) history_max_age: Option<Spanned<String>>,
    pub(super) max_load_per_core: Option<Spanned<f64>>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
    pub(super) smtp: Option<Spanned<RawSmtp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub(super) host: Spanned<String>,
    pub(super) port: Option<u16>,
    pub(super) tls: Option<Spanned<String>>,
    pub(super) from: Spanned<String>,
    pub(super) username: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) databases: Vec<String>,
    #[serde(default)]
    pub(super) schemas: Vec<String>,
    pub(super) cluster: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) physical: Option<Spanned<bool>>,
}
