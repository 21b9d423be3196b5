//! WAL archive records (`wal/<id>`): one per file PostgreSQL archived
//! (`archive_command`), naming its content blobs. The id is the keyed hash
//! of the cluster and file name, so that the one a recovery asks for is read
//! directly, and a record can be checked against its own name.
//!
//! Also the arithmetic of WAL file names and log sequence numbers (LSN):
//! which segment holds an LSN, which segments follow one another.

use serde::{Deserialize, Serialize};

use crate::data::crypto::Crypto;
use crate::error::{Error, Result};
use crate::format::id::DataId;

/// One archived WAL file: `wal/<id>`, sealed compressed JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    /// 1, the only version written.
    pub version: u32,
    /// The archive it belongs to: a name for one PostgreSQL cluster.
    pub cluster: String,
    /// The file name PostgreSQL gave (`000000010000000000000003`,
    /// `00000002.history`, …).
    pub name: String,
    /// When it was archived (RFC 3339).
    pub time: String,
    /// The host that archived it.
    pub host: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its content, blob by blob.
    pub content: Vec<DataId>,
}

impl WalRecord {
    /// The record as compact JSON: the plaintext stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a WAL record serializes")
    }

    /// Parses a record's plaintext; `object` names it in errors.
    pub fn decode(plain: &[u8], object: &str) -> Result<WalRecord> {
        let r: WalRecord = serde_json::from_slice(plain)
            .map_err(|e| Error::corrupt(object, format!("WAL record does not decode: {e}")))?;
        if r.version != 1 {
            return Err(Error::corrupt(object, format!("WAL record version {} is not known", r.version)));
        }
        Ok(r)
    }

    /// `time` as a date (the Unix epoch when it does not parse).
    pub fn timestamp(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(&self.time).unwrap_or_default()
    }
}

/// The object name of the record of `name` in the archive of `cluster`.
pub fn object_id(crypto: &Crypto, cluster: &str, name: &str) -> String {
    let mut key = b"arca-wal\0".to_vec();
    key.extend_from_slice(cluster.as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    crypto.blob_id(&key).to_hex()
}

/// A cluster name: a plain name, as a folder name of a snapshot would be.
pub fn check_cluster(cluster: &str) -> Result<()> {
    let ok = !cluster.is_empty()
        && cluster.len() <= 100
        && cluster.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && cluster != "."
        && cluster != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{cluster:?} cannot name a cluster: use letters, digits, `.`, `_` and `-` (at most 100)"
        )))
    }
}

/// What a WAL file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WalName {
    /// A segment (`TTTTTTTTXXXXXXXXYYYYYYYY`): timeline, log id and segment
    /// within it.
    Segment {
        /// The timeline.
        timeline: u32,
        /// The log id (the high 32 bits of its LSN).
        log: u32,
        /// The segment within the log id.
        seg: u32,
    },
    /// The last, incomplete segment of a timeline that a promotion ended
    /// (`….partial`).
    Partial {
        /// The timeline.
        timeline: u32,
        /// The log id (the high 32 bits of its LSN).
        log: u32,
        /// The segment within the log id.
        seg: u32,
    },
    /// A backup history file (`….XXXXXXXX.backup`).
    Backup {
        /// The timeline.
        timeline: u32,
        /// The log id (the high 32 bits of its LSN).
        log: u32,
        /// The segment within the log id.
        seg: u32,
    },
    /// A timeline history file (`TTTTTTTT.history`).
    History {
        /// The timeline it starts.
        timeline: u32,
    },
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl WalName {
    /// Parses a file name PostgreSQL archives or asks for; anything else
    /// (a path, lowercase hex, another suffix) is refused with a message.
    pub fn parse(name: &str) -> Result<WalName> {
        let bad = || {
            Error::Invalid(format!(
                "{name:?} is not a WAL file name (a segment such as 000000010000000000000003, \
                 a .partial or .backup file, or a .history file)"
            ))
        };
        let segment = |s: &str| -> Option<(u32, u32, u32)> {
            (s.len() == 24).then_some(())?;
            Some((hex8(&s[..8])?, hex8(&s[8..16])?, hex8(&s[16..])?))
        };
        if let Some(t) = name.strip_suffix(".history") {
            return hex8(t).map(|timeline| WalName::History { timeline }).ok_or_else(bad);
        }
        if let Some(s) = name.strip_suffix(".partial") {
            let (timeline, log, seg) = segment(s).ok_or_else(bad)?;
            return Ok(WalName::Partial { timeline, log, seg });
        }
        if let Some(s) = name.strip_suffix(".backup") {
            let (s, offset) = s.split_once('.').ok_or_else(bad)?;
            hex8(offset).ok_or_else(bad)?;
            let (timeline, log, seg) = segment(s).ok_or_else(bad)?;
            return Ok(WalName::Backup { timeline, log, seg });
        }
        let (timeline, log, seg) = segment(name).ok_or_else(bad)?;
        Ok(WalName::Segment { timeline, log, seg })
    }

    /// The timeline of the file.
    pub fn timeline(&self) -> u32 {
        match *self {
            WalName::Segment { timeline, .. }
            | WalName::Partial { timeline, .. }
            | WalName::Backup { timeline, .. }
            | WalName::History { timeline } => timeline,
        }
    }

    /// The segment number (counted from LSN 0) of a segment, partial or
    /// backup file, for segments of `segment_size` bytes; `None` for a
    /// history file.
    pub fn segno(&self, segment_size: u64) -> Option<u64> {
        match *self {
            WalName::Segment { log, seg, .. }
            | WalName::Partial { log, seg, .. }
            | WalName::Backup { log, seg, .. } => {
                Some(log as u64 * segments_per_log(segment_size) + seg as u64)
            }
            WalName::History { .. } => None,
        }
    }
}

/// `size` brought into the sizes PostgreSQL allows (1 MiB to 1 GiB), so
/// that no arithmetic on a size read from a damaged or crafted record can
/// divide by zero; `verify` reports a size out of that range.
pub fn usable_segment_size(size: u64) -> u64 {
    size.clamp(1 << 20, 1 << 30)
}

/// Segments in one log id (4 GiB of LSN).
fn segments_per_log(segment_size: u64) -> u64 {
    (1u64 << 32) / usable_segment_size(segment_size)
}

/// The name of segment `segno` of `timeline`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per = segments_per_log(segment_size);
    format!("{timeline:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// A WAL segment size PostgreSQL allows: a power of two from 1 MiB to 1 GiB.
pub fn check_segment_size(size: u64) -> Result<()> {
    if size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{size} bytes is not a WAL segment size (a power of two, 1 MiB to 1 GiB)"
        )))
    }
}

/// Parses an LSN as PostgreSQL writes it: `16/B374D848`.
pub fn parse_lsn(s: &str) -> Result<u64> {
    let bad = || Error::Invalid(format!("{s:?} is not a WAL location (LSN), such as 0/3000028"));
    let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
    let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
    let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
    Ok(((hi as u64) << 32) | lo as u64)
}

/// An LSN as PostgreSQL writes it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        const MB16: u64 = 16 << 20;
        assert_eq!(
            WalName::parse("0000000200000001000000FE").unwrap(),
            WalName::Segment { timeline: 2, log: 1, seg: 0xFE }
        );
        assert_eq!(WalName::parse("0000000200000001000000FE").unwrap().segno(MB16), Some(256 + 254));
        assert_eq!(segment_name(2, 256 + 254, MB16), "0000000200000001000000FE");
        assert_eq!(segment_name(1, 3, 1 << 30), "000000010000000000000003");
        assert_eq!(segment_name(1, 4, 1 << 30), "000000010000000100000000");
        assert_eq!(WalName::parse("00000003.history").unwrap(), WalName::History { timeline: 3 });
        assert!(matches!(
            WalName::parse("000000010000000000000002.00000028.backup").unwrap(),
            WalName::Backup { timeline: 1, log: 0, seg: 2 }
        ));
        assert!(matches!(
            WalName::parse("000000010000000000000007.partial").unwrap(),
            WalName::Partial { timeline: 1, seg: 7, .. }
        ));
        for bad in [
            "",
            "../000000010000000000000002",
            "000000010000000000000002/x",
            "00000001000000000000000a",
            "0000000100000000000000020",
            "pg_wal/000000010000000000000002",
            "00000001.history.partial",
            "000000010000000000000002.backup",
        ] {
            let e = WalName::parse(bad).unwrap_err().to_string();
            assert!(e.contains("is not a WAL file name"), "{bad}: {e}");
        }
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert!(parse_lsn("16-B374D848").is_err());
        assert!(check_segment_size(16 << 20).is_ok());
        assert!(check_segment_size(3 << 20).is_err());
        // Sizes no server uses (a damaged record) give names, never a panic.
        for size in [0, 1, 7_103_741_824, u64::MAX] {
            let _ = segment_name(1, u64::MAX / 2, size);
            let _ = WalName::parse("FFFFFFFFFFFFFFFFFFFFFFFF").unwrap().segno(size);
        }
        assert!(check_cluster("main").is_ok());
        assert!(check_cluster("../x").is_err());
        assert!(check_cluster("").is_err());
    }
}
