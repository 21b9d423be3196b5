//! The conditions a scheduled run waits on, read from this machine: the
//! load average per core (/proc/loadavg) and a file system's free space.

use std::path::Path;

use crate::schedule::Conditions;

/// This machine.
pub struct Machine;

impl Conditions for Machine {
    fn load_per_core(&self) -> Option<f64> {
        let text = std::fs::read_to_string("/proc/loadavg").ok()?;
        let one: f64 = text.split_whitespace().next()?.parse().ok()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(one / cores as f64)
    }

    fn free_space(&self, path: &Path) -> Option<u64> {
        // The nearest folder that exists: a source may be gone for now.
        let existing = path.ancestors().find(|p| p.exists())?;
        let s = rustix::fs::statvfs(existing).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_reports_its_load_and_free_space() {
        let load = Machine.load_per_core().expect("/proc/loadavg is readable");
        assert!(load >= 0.0);
        let dir = tempfile::tempdir().unwrap();
        let free = Machine.free_space(&dir.path().join("not/yet/there")).expect("the nearest folder counts");
        assert!(free > 0);
    }
}
