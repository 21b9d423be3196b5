//! Log lines to stderr, in a form journald keeps well: under systemd
//! (`JOURNAL_STREAM` set) without a timestamp (the journal adds its own)
//! and without colour; JSON objects when asked.

use tracing_subscriber::fmt;

/// Installs the daemon's logger: `json` for JSON lines; `verbose` 1 or
/// more also logs debug lines.
pub fn init(json: bool, verbose: u8) {
    let level = if verbose > 0 { tracing::Level::DEBUG } else { tracing::Level::INFO };
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder =
        fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false).with_ansi(false);
    let done = match (json, journald) {
        (true, _) => builder.json().flatten_event(true).try_init(),
        (false, true) => builder.without_time().try_init(),
        (false, false) => builder.try_init(),
    };
    // Already installed (a test that starts two daemons): keep that one.
    let _ = done;
}
