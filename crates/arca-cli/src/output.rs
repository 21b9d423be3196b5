//! Printing results: one JSON document, or short human text.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // Keep the io::Error (a closed pipe must be recognisable as one).
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => std::io::Error::from(kind),
        None => std::io::Error::other(e),
    })?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// "N new, N changed, N unchanged, N removed; read X, added Y in Z s".
pub fn change_summary(s: &arca_core::snapshot::Summary) -> String {
    format!(
        "{} new, {} changed, {} unchanged, {} removed; read {}, added {} in {:.1} s",
        s.files_new,
        s.files_changed,
        s.files_unchanged,
        s.files_removed,
        bytes(s.bytes_read),
        bytes(s.bytes_added),
        s.duration_ms as f64 / 1000.0
    )
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Writes a line to stdout, failing (not panicking) on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}
