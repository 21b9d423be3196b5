//! Progress reporting from the engines to whoever shows it.

/// Called from many threads at once; every method has a no-op default.
pub trait Progress: Send + Sync {
    /// The work expected, when known (may be called more than once).
    fn totals(&self, _files: u64, _bytes: u64) {}
    /// Work done since the last call.
    fn advance(&self, _files: u64, _bytes: u64) {}
    /// A non-fatal problem (an unreadable file, say).
    fn warn(&self, _message: &str) {}
    /// Whether totals are shown: an engine may then spend work to estimate
    /// them (a first backup counts its sources on a spare thread).
    fn wants_totals(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
