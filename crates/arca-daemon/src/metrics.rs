//! The daemon's Prometheus metrics (`GET /metrics`, OpenMetrics text):
//! base units, `_total` counters, `_seconds` times.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Job {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobDestination {
    job: String,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobResult {
    job: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Destination {
    destination: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    last_success: Family<JobDestination, FloatGauge>,
    last_status: Family<Job, Gauge>,
    runs: Family<JobResult, Counter>,
    duration: Family<Job, Histogram>,
    bytes_read: Family<Job, Counter>,
    bytes_added: Family<Job, Counter>,
    repo_size: Family<Destination, Gauge>,
    snapshots: Family<Destination, Gauge>,
    damaged: Family<Job, Gauge>,
    lag: Family<Job, FloatGauge>,
    missed: Family<Job, Counter>,
    coalesced: Family<Job, Counter>,
    queued: Gauge,
    running: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// The metrics, all at zero.
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            last_success: Family::default(),
            last_status: Family::default(),
            runs: Family::default(),
            // 1 s to about 18 hours.
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 17))),
            bytes_read: Family::default(),
            bytes_added: Family::default(),
            repo_size: Family::default(),
            snapshots: Family::default(),
            damaged: Family::default(),
            lag: Family::default(),
            missed: Family::default(),
            coalesced: Family::default(),
            queued: Gauge::default(),
            running: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "arca_job_last_success_timestamp_seconds",
            "When the job's latest successful run on a destination ended (Unix time)",
            m.last_success.clone(),
        );
        r.register(
            "arca_job_last_run_status",
            "1 when the job's latest run succeeded, 0 when it failed",
            m.last_status.clone(),
        );
        r.register("arca_job_runs", "Runs ended, by result (succeeded, failed, cancelled)", m.runs.clone());
        r.register("arca_job_duration_seconds", "How long runs took", m.duration.clone());
        r.register("arca_backup_bytes_read", "Bytes read from the sources by backups", m.bytes_read.clone());
        r.register(
            "arca_backup_bytes_added",
            "Bytes added to repositories by backups",
            m.bytes_added.clone(),
        );
        r.register(
            "arca_repository_size_bytes",
            "A destination's stored size, measured after each run",
            m.repo_size.clone(),
        );
        r.register(
            "arca_snapshots",
            "Snapshots in a destination, measured after each run",
            m.snapshots.clone(),
        );
        r.register(
            "arca_verify_damaged_files",
            "Files the job's latest verification found damaged or missing",
            m.damaged.clone(),
        );
        r.register(
            "arca_schedule_lag_seconds",
            "How long the job's latest run waited between being due and starting",
            m.lag.clone(),
        );
        r.register("arca_schedule_missed", "Scheduled times that passed without their run", m.missed.clone());
        r.register(
            "arca_schedule_coalesced",
            "Scheduled times that found their job still running",
            m.coalesced.clone(),
        );
        r.register("arca_queue_runs", "Runs waiting to start", m.queued.clone());
        r.register("arca_running_runs", "Runs going on", m.running.clone());
        r.register(
            "arca_build",
            "This daemon's version",
            Info::new(vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
        );
        Metrics { registry: r, ..m }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding the metrics: {e}");
        }
        out
    }

    /// A run of `job` ended.
    pub fn run_ended(&self, job: &str, result: &str, seconds: f64) {
        self.runs.get_or_create(&JobResult { job: job.into(), result: result.into() }).inc();
        self.duration.get_or_create(&Job { job: job.into() }).observe(seconds);
        if result != "cancelled" {
            self.last_status.get_or_create(&Job { job: job.into() }).set(i64::from(result == "succeeded"));
        }
    }

    /// `job`'s latest run succeeded, or not.
    pub fn last_status(&self, job: &str, succeeded: bool) {
        self.last_status.get_or_create(&Job { job: job.into() }).set(i64::from(succeeded));
    }

    /// Destination `destination` holds a good copy of `job` as of `unix`.
    pub fn succeeded_on(&self, job: &str, destination: &str, unix: f64) {
        self.last_success
            .get_or_create(&JobDestination { job: job.into(), destination: destination.into() })
            .set(unix);
    }

    /// A backup of `job` read and added these bytes.
    pub fn backed_up(&self, job: &str, read: u64, added: u64) {
        self.bytes_read.get_or_create(&Job { job: job.into() }).inc_by(read);
        self.bytes_added.get_or_create(&Job { job: job.into() }).inc_by(added);
    }

    /// `destination` measured.
    pub fn repository(&self, destination: &str, size: u64, snapshots: u64) {
        let d = Destination { destination: destination.into() };
        self.repo_size.get_or_create(&d).set(size as i64);
        self.snapshots.get_or_create(&d).set(snapshots as i64);
    }

    /// `job`'s verification found `n` files damaged.
    pub fn damaged(&self, job: &str, n: u64) {
        self.damaged.get_or_create(&Job { job: job.into() }).set(n as i64);
    }

    /// `job`'s run started `seconds` after it was due.
    pub fn lag(&self, job: &str, seconds: f64) {
        self.lag.get_or_create(&Job { job: job.into() }).set(seconds);
    }

    /// `n` scheduled times of `job` were missed.
    pub fn missed(&self, job: &str, n: u64) {
        self.missed.get_or_create(&Job { job: job.into() }).inc_by(n);
    }

    /// A scheduled time of `job` found it running.
    pub fn coalesced(&self, job: &str) {
        self.coalesced.get_or_create(&Job { job: job.into() }).inc();
    }

    /// Runs waiting and going on.
    pub fn load(&self, queued: usize, running: usize) {
        self.queued.set(queued as i64);
        self.running.set(running as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_metrics_in_base_units_with_total_counters() {
        let m = Metrics::new();
        m.run_ended("home", "succeeded", 12.5);
        m.succeeded_on("home", "local", 1.8e9);
        m.backed_up("home", 1000, 10);
        m.repository("local", 4096, 3);
        let text = m.encode();
        for line in [
            "arca_job_runs_total{job=\"home\",result=\"succeeded\"} 1",
            "arca_job_last_success_timestamp_seconds{job=\"home\",destination=\"local\"} 1800000000.0",
            "arca_backup_bytes_read_total{job=\"home\"} 1000",
            "arca_repository_size_bytes{destination=\"local\"} 4096",
            "arca_job_last_run_status{job=\"home\"} 1",
            "arca_build_info{version=\"",
            "arca_job_duration_seconds_count{job=\"home\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
