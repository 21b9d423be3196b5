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

/// The width of the terminal stdout is, in columns: `COLUMNS` when set (as
/// `ls` and others honour it), else the terminal's own; `None` when stdout
/// is no terminal (a pipe gets whole lines).
pub fn terminal_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok()) {
        return (n > 0).then_some(n);
    }
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_col > 0).then_some(size.ws_col as usize)
}

/// A column of a table printed for a person.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub title: &'static str,
    /// Never narrower than this when it shrinks to fit the terminal.
    pub min: usize,
    /// Which columns shrink first: 1 before 2 before 3; 0 never.
    pub shrink_order: u8,
    pub right: bool,
}

impl Column {
    pub const fn fixed(title: &'static str) -> Column {
        Column { title, min: 0, shrink_order: 0, right: false }
    }
    pub const fn shrinks(title: &'static str, min: usize, order: u8) -> Column {
        Column { title, min, shrink_order: order, right: false }
    }
    pub const fn right(self) -> Column {
        Column { right: true, ..self }
    }
}

/// Two spaces between columns.
const GAP: usize = 2;

/// Each column as wide as its widest value (or title); when a line would
/// be wider than `width`, the shrinkable columns give up what is needed,
/// in their order, down to their minimum.
pub fn column_widths(columns: &[Column], rows: &[Vec<String>], width: Option<usize>) -> Vec<usize> {
    let mut widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(c.title.len()))
        .collect();
    let Some(width) = width else { return widths };
    let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
    let mut order: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].shrink_order > 0).collect();
    order.sort_by_key(|&i| columns[i].shrink_order);
    for i in order {
        let over = total(&widths).saturating_sub(width);
        if over == 0 {
            break;
        }
        let floor = columns[i].min.max(columns[i].title.len()).min(widths[i]);
        widths[i] -= over.min(widths[i] - floor);
    }
    widths
}

/// One line of a table: each value padded (or cut with `…`) to its
/// column's width; the last column is not padded.
pub fn table_line<'a>(columns: &[Column], widths: &[usize], values: impl Iterator<Item = &'a str>) -> String {
    let mut line = String::new();
    let last = columns.len().saturating_sub(1);
    for (i, v) in values.enumerate() {
        if i > 0 {
            line.push_str(&" ".repeat(GAP));
        }
        let w = widths[i];
        let n = v.chars().count();
        let cell: String =
            if n > w { v.chars().take(w.saturating_sub(1)).chain(['…']).collect() } else { v.to_string() };
        let pad = w.saturating_sub(cell.chars().count());
        match (columns[i].right, i == last) {
            (true, _) => line.extend(std::iter::repeat_n(' ', pad).chain(cell.chars())),
            (false, true) => line.push_str(&cell),
            (false, false) => line.extend(cell.chars().chain(std::iter::repeat_n(' ', pad))),
        }
    }
    line
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
    use super::*;

    #[test]
    fn a_table_fits_its_width_by_shrinking_in_order() {
        let cols = [
            Column::fixed("id"),
            Column::shrinks("host", 4, 2),
            Column::fixed("n").right(),
            Column::shrinks("paths", 5, 1),
        ];
        let rows = vec![
            vec![
                "aaaa".into(),
                "a-very-long-host-name".into(),
                "7".into(),
                "/home/ada /etc /srv/data".into(),
            ],
            vec!["bbbb".into(), "h".into(), "12".into(), "/".into()],
        ];
        let natural = column_widths(&cols, &rows, None);
        assert_eq!(natural, vec![4, 21, 2, 24]);
        assert_eq!(column_widths(&cols, &rows, Some(200)), natural, "room enough: nothing cut");
        // 4+21+2+24 + 3 gaps of 2 = 57: 10 too wide, the paths give it up.
        assert_eq!(column_widths(&cols, &rows, Some(47)), vec![4, 21, 2, 14]);
        // Far too narrow: paths to their minimum, then the host to its.
        let w = column_widths(&cols, &rows, Some(20));
        assert_eq!(w, vec![4, 4, 2, 5]);
        let line = table_line(&cols, &w, rows[0].iter().map(String::as_str));
        assert_eq!(line, "aaaa  a-v…   7  /hom…");
        let line = table_line(&cols, &w, rows[1].iter().map(String::as_str));
        assert_eq!(line, "bbbb  h     12  /", "short values padded; the figure right-aligned");
    }

    #[test]
    fn control_characters_and_overrides_are_escaped() {
        assert_eq!(escape("/plain/path é"), "/plain/path é");
        assert_eq!(escape("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape("\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(escape("x\u{202e}y\u{85}"), "x\\u{202e}y\\u{0085}");
        assert_eq!(escape("back\\slash"), "back\\slash");
    }
}
