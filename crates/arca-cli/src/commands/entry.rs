//! One snapshot entry as `ls` and `find` print it: a JSON object, or a
//! line for a person.

use arca_core::{Node, Timestamp};
use serde::Serialize;

use crate::output;

#[derive(Serialize)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

fn time(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.secs, t.nanos)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

impl Entry {
    pub fn new(path: &[u8], n: &Node) -> Entry {
        Entry {
            path: String::from_utf8_lossy(path).into_owned(),
            kind: n.kind.name(),
            size: n.size,
            mode: format!("{:04o}", n.mode),
            uid: n.uid,
            gid: n.gid,
            mtime: time(n.mtime),
            link_target: n.link_target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
        }
    }

    /// `file 0644  1000  1000   1234 2026-12-02 19:44:30 -05:00 /path -> target`:
    /// the time local, as everywhere a person reads one.
    pub fn line(&self) -> String {
        let link = self.link_target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
        format!(
            "{:<8} {} {:>5} {:>5} {:>10} {} {}{}",
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            self.size,
            output::time(&self.mtime),
            self.path,
            link
        )
    }
}
