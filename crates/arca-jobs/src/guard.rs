//! The mass-change guard: a run that finds an unusual share of files
//! changed or gone, or new data that stopped compressing (what files
//! encrypted by ransomware look like), keeps its snapshot but marks it
//! with the tag [`SUSPICIOUS`]. Retention then removes nothing from a
//! destination holding a suspicious snapshot of the job, so the last good
//! snapshots cannot age out while the damage is being backed up, until a
//! person looks and confirms (`arca confirm`).

use arca_core::Summary;

/// The tag of a snapshot the guard stopped at.
pub const SUSPICIOUS: &str = "suspicious";

/// Below this many files in the parent, shares are not judged: changing one
/// file of three is no sign of anything.
pub const MIN_FILES: u64 = 20;

/// Below this many bytes read, compression is not judged.
pub const MIN_BYTES: u64 = 1 << 20;

/// What the guard looks for (per job, in arca.toml, whose key names it
/// shows under).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Guard {
    /// The share of the parent's files changed or removed, in percent,
    /// from which a run is suspicious; 0 turns it off.
    #[serde(rename = "mass_change_percent")]
    pub changed_percent: f64,
    /// Whether new data that stored at more than 95 % of its size, where
    /// the parent's stored at less than 80 %, is suspicious.
    #[serde(rename = "mass_change_compression")]
    pub compression: bool,
}

impl Default for Guard {
    fn default() -> Guard {
        Guard { changed_percent: 50.0, compression: true }
    }
}

impl Guard {
    /// Why the snapshot summarized by `now` looks like a mass change;
    /// `None` when it does not. `parent` is the summary its compression is
    /// compared with: the job's latest earlier backup that read at least
    /// [`MIN_BYTES`].
    pub fn judge(&self, now: &Summary, parent: Option<&Summary>) -> Option<String> {
        let before = now.files_changed + now.files_unchanged + now.files_removed;
        let touched = now.files_changed + now.files_removed;
        if self.changed_percent > 0.0 && before >= MIN_FILES {
            let share = touched as f64 * 100.0 / before as f64;
            if share >= self.changed_percent {
                return Some(format!(
                    "{share:.0} % of the files changed or vanished since the last backup ({} changed, {} \
                     removed of {before}; the guard is at {} %)",
                    now.files_changed, now.files_removed, self.changed_percent
                ));
            }
        }
        if self.compression && now.bytes_read >= MIN_BYTES {
            let ratio = |s: &Summary| s.bytes_added as f64 / s.bytes_read.max(1) as f64;
            let was = parent.filter(|p| p.bytes_read >= MIN_BYTES).map(ratio);
            if let Some(was) = was.filter(|w| *w < 0.8) {
                let is = ratio(now);
                if is > 0.95 {
                    return Some(format!(
                        "the new data does not compress any more: {:.0} % of its size stored, against {:.0} % \
                         last time (files encrypted in place look like this)",
                        is * 100.0,
                        was * 100.0
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(changed: u64, unchanged: u64, removed: u64, read: u64, added: u64) -> Summary {
        Summary {
            files_changed: changed,
            files_unchanged: unchanged,
            files_removed: removed,
            bytes_read: read,
            bytes_added: added,
            ..Summary::default()
        }
    }

    #[test]
    fn shares_of_changed_files_and_lost_compression_are_judged() {
        let g = Guard::default();
        assert!(g.judge(&summary(10, 90, 0, 0, 0), None).is_none(), "10 %");
        let why = g.judge(&summary(40, 40, 20, 0, 0), None).expect("60 %");
        assert!(why.contains("60 % of the files changed or vanished"), "{why}");
        assert!(g.judge(&summary(5, 0, 5, 0, 0), None).is_none(), "too few files to judge");
        assert!(Guard { changed_percent: 0.0, ..g }.judge(&summary(100, 0, 0, 0, 0), None).is_none(), "off");
        let was = summary(1, 99, 0, 10 << 20, 3 << 20);
        let why = g.judge(&summary(1, 99, 0, 10 << 20, 10 << 20), Some(&was)).expect("stopped compressing");
        assert!(why.contains("does not compress any more: 100 %") && why.contains("against 30 %"), "{why}");
        assert!(g.judge(&summary(1, 99, 0, 10 << 20, 10 << 20), None).is_none(), "no parent to compare");
        let random_before = summary(1, 99, 0, 10 << 20, 10 << 20);
        assert!(
            g.judge(&summary(1, 99, 0, 10 << 20, 10 << 20), Some(&random_before)).is_none(),
            "never compressed"
        );
        assert!(Guard { compression: false, ..g }
            .judge(&summary(1, 99, 0, 10 << 20, 10 << 20), Some(&was))
            .is_none());
    }
}
