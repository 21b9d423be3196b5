//! The repository `config` object: plaintext JSON, read before any key, so
//! that an unknown format version is refused before anything is misread.

use serde::{Deserialize, Serialize};

use crate::data::chunker::ChunkerParams;
use crate::error::{Error, Result};
use crate::format::id::Id;

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The target pack size of new repositories unless told otherwise, in bytes: 16 MiB.
pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;
/// The zstd level of new repositories unless told otherwise: 3 (levels are 0..=22, 0 means
/// no compression).
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// How a repository's objects are sealed: chosen at `init`, fixed for the repository's life,
/// and stored in the config as `xchacha20-poly1305` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// XChaCha20-Poly1305 with a password-wrapped master key.
    Xchacha20Poly1305,
    /// No confidentiality: objects are checksummed only. Only when asked for.
    None,
}

/// A repository's `config` object: what it is, its id and the parameters every writer
/// follows. Plaintext JSON (it is read before any key): nothing in it is secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Always "arca-repository": tells what this folder is.
    pub format: String,
    /// Version of the repository format: [`FORMAT_VERSION`]; [`Config::decode`] refuses any
    /// other value before reading the other fields.
    pub version: u32,
    /// Random repository id, used for caches and locks.
    pub id: Id,
    /// When the repository was created: RFC 3339, in UTC.
    pub created: String,
    /// How the repository's objects are sealed.
    pub encryption: Encryption,
    /// zstd level for blobs; 0 disables compression.
    pub compression_level: i32,
    /// Bounds of the content-defined chunks file content is cut into (minimum, average and
    /// maximum size, in bytes); fixed at `init` so that chunks keep deduplicating.
    pub chunker: ChunkerParams,
    /// Target size of a pack file in bytes.
    pub pack_size: u32,
    /// Reed-Solomon parity per pack, in percent of its size (0: none).
    #[serde(default)]
    pub parity_percent: u8,
}

impl Config {
    /// Whether opening the repository needs a password (false for
    /// `--encryption none`).
    pub fn needs_password(&self) -> bool {
        self.encryption != Encryption::None
    }

    /// A config for a new repository: this format version, a random id, created now, the
    /// default chunker (512 KiB / 1 MiB / 4 MiB), 16 MiB packs and no parity.
    /// `compression_level` is taken as is: [`Config::decode`] refuses one outside 0..=22.
    pub fn new(encryption: Encryption, compression_level: i32) -> Config {
        Config {
            format: "arca-repository".into(),
            version: FORMAT_VERSION,
            id: Id::random(),
            created: chrono::Utc::now().to_rfc3339(),
            encryption,
            compression_level,
            chunker: ChunkerParams::default(),
            pack_size: DEFAULT_PACK_SIZE,
            parity_percent: 0,
        }
    }

    /// The config as stored: pretty-printed JSON ending in a newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("config serializes");
        v.push(b'\n');
        v
    }

    /// Parses a config, checking the version before anything else.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Config> {
        let object = format!("{location}/config");
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(&object, format!("not valid JSON: {e}")))?;
        if value.get("format").and_then(|v| v.as_str()) != Some("arca-repository") {
            return Err(Error::corrupt(
                &object,
                "not an arca repository config (no \"format\": \"arca-repository\")",
            ));
        }
        let version = value
            .get("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::corrupt(&object, "no numeric \"version\" field"))?;
        if version != FORMAT_VERSION as u64 {
            return Err(Error::UnsupportedVersion {
                location: location.to_string(),
                found: version.min(u32::MAX as u64) as u32,
                supported: FORMAT_VERSION,
            });
        }
        let config: Config = serde_json::from_value(value)
            .map_err(|e| Error::corrupt(&object, format!("invalid field: {e}")))?;
        config.chunker.validate().map_err(|e| Error::corrupt(&object, e))?;
        if !(0..=22).contains(&config.compression_level) {
            return Err(Error::corrupt(
                &object,
                format!("compression level {} out of 0..=22", config.compression_level),
            ));
        }
        if !(1 << 20..=1 << 30).contains(&config.pack_size) {
            return Err(Error::corrupt(
                &object,
                format!("pack size {} out of 1 MiB..1 GiB", config.pack_size),
            ));
        }
        if config.parity_percent > 100 {
            return Err(Error::corrupt(&object, format!("parity {}% out of 0..=100", config.parity_percent)));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_checked_first() {
        let c = Config::new(Encryption::Xchacha20Poly1305, 3);
        let back = Config::decode(&c.encode(), "r").unwrap();
        assert_eq!(back.id, c.id);
        let mut v: serde_json::Value = serde_json::from_slice(&c.encode()).unwrap();
        v["version"] = 99.into();
        v["chunker"] = "whatever".into();
        let e = Config::decode(&serde_json::to_vec(&v).unwrap(), "r").unwrap_err();
        assert!(matches!(e, Error::UnsupportedVersion { found: 99, .. }), "{e}");
        assert!(Config::decode(b"garbage", "r").is_err());
    }
}
