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

/// Declares an id of one kind: the same 32 bytes as [`Id`], stored and
/// shown exactly as it is (the repository format does not change), but a
/// type of its own, so that passing one kind where another is expected
/// does not compile.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            /// The whole id as 64 lowercase hex digits (as `Display`).
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }

            /// The first 8 hex digits, for listings and messages: not unique.
            pub fn short(&self) -> String {
                self.0.short()
            }

            /// Parses exactly 64 hex digits; `None` otherwise (a prefix is not an id).
            pub fn from_hex(s: &str) -> Option<$name> {
                Id::from_hex(s).map($name)
            }

            /// The 32 bytes.
            pub fn bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }

            /// The untyped id: the name of the object in storage.
            pub fn id(&self) -> &Id {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }
    };
}

typed_id!(
    /// A snapshot: the name of its file in `snapshots/` (a hash of its stored bytes).
    SnapshotId
);
typed_id!(
    /// A tree blob: one folder's listing (a keyed hash of its plaintext).
    TreeId
);
typed_id!(
    /// A data blob: one chunk of a file's content (a keyed hash of its plaintext).
    DataId
);
typed_id!(
    /// A blob of either kind, as the index and packs know it: a [`TreeId`] or a
    /// [`DataId`] converts into one (`.into()`), never the other way.
    BlobId
);
typed_id!(
    /// A pack: the name of its file in `data/` (a hash of its stored bytes).
    PackId
);

impl From<TreeId> for BlobId {
    fn from(id: TreeId) -> BlobId {
        BlobId(id.0)
    }
}

impl From<DataId> for BlobId {
    fn from(id: DataId) -> BlobId {
        BlobId(id.0)
    }
}

// By reference too, so that lookups take `&id` and `id` alike.
impl From<&TreeId> for BlobId {
    fn from(id: &TreeId) -> BlobId {
        BlobId(id.0)
    }
}

impl From<&DataId> for BlobId {
    fn from(id: &DataId) -> BlobId {
        BlobId(id.0)
    }
}

impl From<&BlobId> for BlobId {
    fn from(id: &BlobId) -> BlobId {
        *id
    }
}
