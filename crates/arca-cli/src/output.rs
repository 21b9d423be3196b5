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
pub fn change_summary(s: &arca_core::Summary) -> String {
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

/// How people read times: local, to the second, with the offset, so that
/// one line means one instant in any time zone (`2026-12-02 19:44:30
/// -05:00`); `restore --at` and `backup --time` take it back as written.
/// Programs get RFC 3339 UTC with `--json`.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S %:z";

/// An RFC 3339 time as people read it ([`TIME_FORMAT`]); as given when it
/// does not parse.
pub fn time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&chrono::Local).format(TIME_FORMAT).to_string(),
        Err(_) => rfc3339.to_string(),
    }
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

/// A line for a person's terminal: file names can hold newlines, escape
/// sequences and direction overrides that would forge or hide output, so
/// control characters are written as `\n`, `\t`, `\x1b`, `\u{202e}`.
/// A backslash stays as it is: messages of the library already show names
/// escaped that way, and doubling it there would garble them. JSON output
/// keeps the text as it is (serde escapes it as JSON requires).
pub fn escape(line: &str) -> std::borrow::Cow<'_, str> {
    let special = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !line.chars().any(special) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && special(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if special(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Writes a line to stdout, escaped for a terminal (see [`escape`]),
/// failing (not panicking) on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), "{}", $crate::output::escape(&format!($($arg)*)))?;
    }};
}

/// Writes a line to stderr (see [`stderr_line`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        $crate::output::stderr_line(&format!($($arg)*));
    }};
}

/// Writes a summary line to stdout, as [`outln`] does, unless `--quiet`
/// asked for none: what a command did, not data asked for.
#[macro_export]
macro_rules! sayln {
    ($($arg:tt)*) => {{
        if !$crate::output::quiet() {
            $crate::outln!($($arg)*);
        }
    }};
}

/// How this run prints: set once from the command line, before any output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    /// `--quiet`: no notes, no summaries.
    pub quiet: bool,
    /// `--json-progress`: every line on stderr is a JSON object.
    pub json_lines: bool,
}

static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();

/// Sets the mode of this run (the first call wins).
pub fn set_mode(mode: Mode) {
    let _ = MODE.set(mode);
}

fn mode() -> Mode {
    MODE.get().copied().unwrap_or_default()
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    mode().quiet
}

/// Writes one line to stderr: escaped for a terminal (see [`escape`]), or
/// with `--json-progress` as a JSON object whose `type` is the line's kind
/// (`arca: warning: …` becomes `{"type":"warning","message":"…"}`; `error`,
/// `note` likewise; any other line is a `message`).
pub fn stderr_line(text: &str) {
    if !mode().json_lines {
        eprintln!("{}", escape(text));
        return;
    }
    let (kind, message) = ["error", "warning", "note"]
        .iter()
        .find_map(|k| text.strip_prefix(&format!("arca: {k}: ")).map(|m| (*k, m)))
        .or_else(|| (text == "arca: cancelled").then_some(("error", "cancelled")))
        .unwrap_or(("message", text.strip_prefix("arca: ").unwrap_or(text)));
    crate::progress::line(&serde_json::json!({"type": kind, "message": message}));
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_characters_and_overrides_are_escaped() {
        assert_eq!(escape("/plain/path é"), "/plain/path é");
        assert_eq!(escape("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape("\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(escape("x\u{202e}y\u{85}"), "x\\u{202e}y\\u{0085}");
        assert_eq!(escape("back\\slash"), "back\\slash");
    }
}
