//! 32-byte identifiers of blobs and repository files, shown as hex.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte id: a keyed BLAKE3 hash for blobs, a plain BLAKE3 hash of the
/// stored bytes for packs, index and snapshot files, random for locks and keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// A random id from the operating system's random source: the name of a new lock or key
    /// file. Panics if that source fails.
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b).expect("the operating system's random source failed");
        Id(b)
    }

    /// Plain BLAKE3 of stored bytes: the name of a content-addressed file.
    pub fn of_bytes(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    /// The whole id as 64 lowercase hex digits: the form of file names and JSON (as `Display`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 4 bytes as 8 lowercase hex digits: the short form of listings and messages
    /// (`Debug` shows it too). Not unique: for display only.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Parses exactly 64 hex digits (either case); `None` for any other length or a
    /// character that is not hex. A prefix is not an id: it gives `None`.
    pub fn from_hex(s: &str) -> Option<Id> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Id(b))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

// Serialized as raw bytes in binary formats (postcard) and as hex in JSON.
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Id, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Id::from_hex(&s).ok_or_else(|| serde::de::Error::custom(format!("not a 64-digit hex id: {s:?}")))
        } else {
            Ok(Id(<[u8; 32]>::deserialize(d)?))
        }
    }
}
