//! Sealing and opening stored objects, and keyed blob ids.
//!
//! Every object in a repository (blob, pack header, index, snapshot, lock)
//! is stored as an *envelope*:
//! - scheme 1, XChaCha20-Poly1305: `0x01 || nonce[24] || ciphertext || tag[16]`.
//!   The 192-bit random nonce makes nonce reuse negligible even with many
//!   hosts writing under one key for years, which a 96-bit nonce would not.
//! - scheme 0, no encryption: `0x00 || plaintext || blake3(plaintext)[32]`,
//!   so an unencrypted repository still detects every damaged byte.
//!
//! XChaCha20-Poly1305 is built the standard way (draft-irtf-cfrg-xchacha):
//! HChaCha20 of the key and the nonce's first 16 bytes gives a subkey for
//! ChaCha20-Poly1305 (RFC 8439) with the nonce `0^4 || nonce[16..24]`.
//! HChaCha20 comes from RustCrypto's `chacha20`, the AEAD from `ring`,
//! whose assembly seals and opens about twice as fast as RustCrypto's
//! `chacha20poly1305`; a test checks both give the same bytes.

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use serde::{Deserialize, Serialize};

use crate::format::id::Id;

pub const SCHEME_NONE: u8 = 0;
pub const SCHEME_XCHACHA: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Most bytes an envelope puts after its plaintext (scheme 0's checksum).
pub const SEAL_TRAILER_MAX: usize = 32;

/// The secrets of a repository, stored only wrapped inside key files.
#[derive(Clone, Serialize, Deserialize)]
pub struct MasterKey {
    /// AEAD key for every object.
    #[serde(with = "hex_32")]
    pub encrypt: [u8; 32],
    /// BLAKE3 key for blob ids, so ids do not reveal content hashes.
    #[serde(with = "hex_32")]
    pub id: [u8; 32],
    /// Seed of the chunker's gear table, so cut points do not reveal content.
    pub chunker_seed: u64,
    /// BLAKE3 of the `config` object as written by `init`: the plaintext
    /// config is checked against it once a key opens, so damage to it is
    /// seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

impl MasterKey {
    pub fn random() -> MasterKey {
        let mut b = [0u8; 72];
        getrandom::getrandom(&mut b).expect("the operating system's random source failed");
        let mut encrypt = [0u8; 32];
        let mut id = [0u8; 32];
        encrypt.copy_from_slice(&b[..32]);
        id.copy_from_slice(&b[32..64]);
        let chunker_seed = u64::from_le_bytes(b[64..72].try_into().unwrap());
        MasterKey { encrypt, id, chunker_seed, config_hash: None }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Why an envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("too short to be a sealed object ({0} bytes)")]
    TooShort(usize),
    #[error("sealed with scheme {found}, the repository uses scheme {expected}")]
    WrongScheme { found: u8, expected: u8 },
    #[error("authentication failed (damaged data or wrong key)")]
    Authentication,
    #[error("checksum mismatch (damaged data)")]
    Checksum,
}

/// XChaCha20-Poly1305 under one key.
#[derive(Clone)]
struct XChaCha {
    key: [u8; 32],
}

impl XChaCha {
    /// The ChaCha20-Poly1305 key and nonce for one envelope's nonce.
    fn derive(&self, nonce: &[u8]) -> (LessSafeKey, Nonce) {
        let subkey = chacha20::hchacha::<U10>((&self.key).into(), nonce[..16].into());
        let key =
            UnboundKey::new(&CHACHA20_POLY1305, &subkey).expect("ChaCha20-Poly1305 takes a 32-byte key");
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(&nonce[16..NONCE_LEN]);
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(short))
    }

    /// Encrypts `body` in place; returns the tag.
    fn seal(&self, nonce: &[u8], body: &mut [u8]) -> [u8; TAG_LEN] {
        let (key, nonce) = self.derive(nonce);
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::empty(), body)
            .expect("ChaCha20-Poly1305 seals any length below 256 GiB");
        tag.as_ref().try_into().expect("a Poly1305 tag is 16 bytes")
    }

    /// Authenticates and decrypts `body` in place. On failure the bytes of
    /// `body` are unspecified (ring clears them).
    fn open(&self, nonce: &[u8], body: &mut [u8], tag: &[u8]) -> Result<(), OpenError> {
        let (key, nonce) = self.derive(nonce);
        let tag = Tag::try_from(tag).map_err(|_| OpenError::Authentication)?;
        key.open_in_place_separate_tag(nonce, Aad::empty(), tag, body, 0..)
            .map(drop)
            .map_err(|_| OpenError::Authentication)
    }
}

/// Seals and opens envelopes, computes blob ids. Cheap to share.
#[derive(Clone)]
pub struct Crypto {
    cipher: Option<XChaCha>,
    id_key: [u8; 32],
    chunker_seed: u64,
}

impl Crypto {
    /// `encrypted = false` gives scheme 0 (no confidentiality, still checksummed).
    pub fn new(key: &MasterKey, encrypted: bool) -> Crypto {
        let cipher = encrypted.then_some(XChaCha { key: key.encrypt });
        Crypto { cipher, id_key: key.id, chunker_seed: key.chunker_seed }
    }

    /// A crypto for wrapping a master key with a password-derived key.
    pub fn for_wrapping(kek: &[u8; 32]) -> Crypto {
        Crypto { cipher: Some(XChaCha { key: *kek }), id_key: [0; 32], chunker_seed: 0 }
    }

    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The id of a blob: BLAKE3 keyed with the repository's id key.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// [`Crypto::blob_id`] of a plaintext that comes in pieces.
    pub fn blob_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let start = self.prefix_len();
        let mut out = vec![0u8; start + plaintext.len() + 32];
        out[start..start + plaintext.len()].copy_from_slice(plaintext);
        let n = self.seal_in_place(&mut out, plaintext.len());
        out.truncate(n);
        out
    }

    /// Bytes an envelope puts before its plaintext.
    pub fn prefix_len(&self) -> usize {
        if self.cipher.is_some() {
            1 + NONCE_LEN
        } else {
            1
        }
    }

    /// Seals in place, for callers that build the plaintext directly inside
    /// their buffer: `buf[prefix_len()..prefix_len() + len]` is the
    /// plaintext, followed by room for `SEAL_TRAILER_MAX` bytes.
    /// Returns the sealed length (the same bytes [`Crypto::seal`] gives).
    pub fn seal_in_place(&self, buf: &mut [u8], len: usize) -> usize {
        let start = self.prefix_len();
        match &self.cipher {
            Some(cipher) => {
                let mut nonce = [0u8; NONCE_LEN];
                getrandom::getrandom(&mut nonce).expect("the operating system's random source failed");
                buf[0] = SCHEME_XCHACHA;
                buf[1..start].copy_from_slice(&nonce);
                let tag = cipher.seal(&nonce, &mut buf[start..start + len]);
                buf[start + len..start + len + TAG_LEN].copy_from_slice(&tag);
                start + len + TAG_LEN
            }
            None => {
                buf[0] = SCHEME_NONE;
                let sum = blake3::hash(&buf[start..start + len]);
                buf[start + len..start + len + 32].copy_from_slice(sum.as_bytes());
                start + len + 32
            }
        }
    }

    /// [`Crypto::open`] where the bytes lie: decrypts `sealed` in place and
    /// returns the plaintext part of it. On failure the body's bytes are
    /// unspecified: callers read the object again to try another copy.
    pub fn open_in_place<'a>(&self, sealed: &'a mut [u8]) -> Result<&'a mut [u8], OpenError> {
        let body = self.body_range(sealed)?;
        let (head, rest) = sealed.split_at_mut(body.start);
        let (plain, trailer) = rest.split_at_mut(body.len());
        self.unseal(head, plain, trailer)?;
        Ok(plain)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let body = self.body_range(sealed)?;
        let mut plain = sealed[body.clone()].to_vec();
        self.unseal(&sealed[..body.start], &mut plain, &sealed[body.end..])?;
        Ok(plain)
    }

    /// Checks an envelope's scheme and length; returns where its body lies.
    fn body_range(&self, sealed: &[u8]) -> Result<std::ops::Range<usize>, OpenError> {
        let expected = if self.cipher.is_some() { SCHEME_XCHACHA } else { SCHEME_NONE };
        let Some(&scheme) = sealed.first() else { return Err(OpenError::TooShort(0)) };
        if scheme != expected {
            return Err(OpenError::WrongScheme { found: scheme, expected });
        }
        let trailer = if self.cipher.is_some() { TAG_LEN } else { SEAL_TRAILER_MAX };
        let start = self.prefix_len();
        if sealed.len() < start + trailer {
            return Err(OpenError::TooShort(sealed.len()));
        }
        Ok(start..sealed.len() - trailer)
    }

    /// Authenticates and decrypts `body` in place, given the envelope's
    /// bytes before it (`head`) and after it (`trailer`).
    fn unseal(&self, head: &[u8], body: &mut [u8], trailer: &[u8]) -> Result<(), OpenError> {
        match &self.cipher {
            Some(cipher) => cipher.open(&head[1..], body, trailer),
            None if blake3::hash(body).as_bytes()[..] == *trailer => Ok(()),
            None => Err(OpenError::Checksum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..4096), enc in any::<bool>()) {
            let c = Crypto::new(&MasterKey::random(), enc);
            let sealed = c.seal(&data);
            prop_assert_eq!(c.open(&sealed).unwrap(), data.clone());
            let mut copy = sealed.clone();
            prop_assert_eq!(c.open_in_place(&mut copy).unwrap(), &data[..]);
        }

        #[test]
        fn any_flip_is_detected(data in proptest::collection::vec(any::<u8>(), 0..512), pos in any::<usize>(), bit in 0u8..8, enc in any::<bool>()) {
            let c = Crypto::new(&MasterKey::random(), enc);
            let mut sealed = c.seal(&data);
            let i = pos % sealed.len();
            sealed[i] ^= 1 << bit;
            prop_assert!(c.open(&sealed).is_err());
            prop_assert!(c.open_in_place(&mut sealed).is_err());
        }

        /// The envelope is RustCrypto's XChaCha20-Poly1305, byte for byte,
        /// both ways: repositories written before the switch to ring open.
        #[test]
        fn same_bytes_as_rustcrypto_xchacha(data in proptest::collection::vec(any::<u8>(), 0..2048), key in any::<[u8; 32]>()) {
            use chacha20poly1305::aead::{Aead, KeyInit};
            use chacha20poly1305::{XChaCha20Poly1305, XNonce};
            let reference = XChaCha20Poly1305::new((&key).into());
            let c = Crypto::for_wrapping(&key);
            let sealed = c.seal(&data);
            let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
            prop_assert_eq!(reference.decrypt(nonce, &sealed[1 + NONCE_LEN..]).unwrap(), data.clone());
            let mut theirs = sealed[..1 + NONCE_LEN].to_vec();
            theirs.extend(reference.encrypt(nonce, &data[..]).unwrap());
            prop_assert_eq!(&theirs, &sealed);
            prop_assert_eq!(c.open(&theirs).unwrap(), data);
        }
    }

    #[test]
    fn wrong_key_fails_and_ids_are_keyed() {
        let a = Crypto::new(&MasterKey::random(), true);
        let b = Crypto::new(&MasterKey::random(), true);
        assert_eq!(b.open(&a.seal(b"secret")), Err(OpenError::Authentication));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), Id::of_bytes(b"x"));
        assert!(!a.seal(b"plaintext marker").windows(16).any(|w| w == b"plaintext marker"));
    }
}
