//! Key files (`keys/<id>`): the master key wrapped by a password.
//!
//! JSON with the KDF parameters and the sealed master key. Argon2id derives
//! a 32-byte key-encryption key from the password and the key file's salt;
//! the master key (JSON) is sealed with it (XChaCha20-Poly1305). An
//! unencrypted repository has one key file with `kdf.algorithm = "none"`
//! whose master key is stored in the clear.

use serde::{Deserialize, Serialize};

use crate::data::crypto::{Crypto, MasterKey};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kdf {
    /// "argon2id" or "none".
    pub algorithm: String,
    #[serde(default)]
    pub memory_kib: u32,
    #[serde(default)]
    pub iterations: u32,
    #[serde(default)]
    pub parallelism: u32,
    #[serde(default)]
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: String,
    pub host: String,
    pub user: String,
    pub kdf: Kdf,
    /// Hex of the sealed master key (or of its plain JSON with kdf "none").
    pub key: String,
    /// BLAKE3 of this JSON written with an empty checksum: the descriptive
    /// fields (host, user, dates, KDF) are not sealed, so damage to them is
    /// caught here.
    #[serde(default)]
    pub checksum: String,
}

/// Argon2id cost: 24 MiB, 3 passes (about 40 ms of processor time), paid
/// once per command and by every password guess. That is 1.9x the
/// memory-time of OWASP's recommended Argon2id setting (19 MiB, 2 passes)
/// while keeping a small command's peak memory low; each key file records
/// its own parameters, so older keys (64 MiB, or one lane) keep working
/// unchanged.
pub const DEFAULT_MEMORY_KIB: u32 = 24 * 1024;
pub const DEFAULT_ITERATIONS: u32 = 3;
/// Lanes of a new key: computed on as many cores as there are (RFC 9106's
/// recommended settings use 4). A guess costs an attacker the same memory
/// and passes as with one lane; the user waits half as long on two cores,
/// a quarter on four.
pub const DEFAULT_LANES: u32 = 4;

fn derive(password: &[u8], kdf: &Kdf) -> Result<[u8; 32]> {
    let salt = hex::decode(&kdf.salt).map_err(|_| Error::Format("key file salt is not hex".into()))?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| Error::Format(format!("key file KDF parameters rejected: {e}")))?;
    if kdf.memory_kib > 4 << 20 {
        return Err(Error::Format("key file asks for more than 4 GiB of KDF memory".into()));
    }
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    // Its lanes are computed on the engines' pool, so a thread limit
    // (`pool::set_threads`) holds for the key derivation too; rayon's
    // global pool would take every core.
    crate::pool::install(|| {
        let mut out = [0u8; 32];
        argon
            .hash_password_into(password, &salt, &mut out)
            .map_err(|e| Error::Format(format!("key derivation failed: {e}")))?;
        Ok(out)
    })
}

fn host_and_user() -> (String, String) {
    let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    (host, user)
}

impl KeyFile {
    /// Wraps `master` with `password`; `None` stores it unwrapped (only for
    /// repositories created with `--encryption none`).
    pub fn wrap(master: &MasterKey, password: Option<&str>) -> Result<KeyFile> {
        let (host, user) = host_and_user();
        let plain = serde_json::to_vec(master).expect("master key serializes");
        let (kdf, key) = match password {
            Some(pw) => {
                let mut salt = [0u8; 16];
                getrandom::getrandom(&mut salt).expect("the operating system's random source failed");
                let kdf = Kdf {
                    algorithm: "argon2id".into(),
                    memory_kib: DEFAULT_MEMORY_KIB,
                    iterations: DEFAULT_ITERATIONS,
                    parallelism: DEFAULT_LANES,
                    salt: hex::encode(salt),
                };
                let kek = derive(pw.as_bytes(), &kdf)?;
                let sealed = Crypto::for_wrapping(&kek).seal(&plain);
                (kdf, hex::encode(sealed))
            }
            None => (
                Kdf {
                    algorithm: "none".into(),
                    memory_kib: 0,
                    iterations: 0,
                    parallelism: 0,
                    salt: String::new(),
                },
                hex::encode(&plain),
            ),
        };
        Ok(KeyFile {
            version: 1,
            created: chrono::Utc::now().to_rfc3339(),
            host,
            user,
            kdf,
            key,
            checksum: String::new(),
        })
    }

    fn sum(&self) -> String {
        let unsummed = KeyFile { checksum: String::new(), ..self.clone() };
        blake3::hash(&serde_json::to_vec(&unsummed).expect("key file serializes")).to_hex().to_string()
    }

    pub fn encode(&self) -> Vec<u8> {
        let summed = KeyFile { checksum: self.sum(), ..self.clone() };
        serde_json::to_vec_pretty(&summed).expect("key file serializes")
    }

    pub fn decode(bytes: &[u8], object: &str) -> Result<KeyFile> {
        let kf: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(object, format!("key file is not valid: {e}")))?;
        if kf.checksum != kf.sum() {
            return Err(Error::corrupt(object, "key file is damaged (checksum mismatch)"));
        }
        Ok(kf)
    }

    pub fn needs_password(&self) -> bool {
        self.kdf.algorithm != "none"
    }

    /// The master key if `password` opens this key file, `Ok(None)` if not.
    pub fn unwrap_key(&self, password: Option<&str>, object: &str) -> Result<Option<MasterKey>> {
        let raw = hex::decode(&self.key).map_err(|_| Error::corrupt(object, "key is not hex"))?;
        let plain = match self.kdf.algorithm.as_str() {
            "none" => raw,
            "argon2id" => {
                let Some(pw) = password else { return Ok(None) };
                // Parameters the KDF rejects are the key file's fault; a
                // thread pool that cannot start is not.
                let kek = derive(pw.as_bytes(), &self.kdf).map_err(|e| match e {
                    e @ Error::Format(_) => Error::corrupt(object, e.to_string()),
                    other => other,
                })?;
                match Crypto::for_wrapping(&kek).open(&raw) {
                    Ok(p) => p,
                    Err(_) => return Ok(None),
                }
            }
            other => return Err(Error::corrupt(object, format!("unknown KDF {other:?}"))),
        };
        let key = serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(object, format!("master key does not decode: {e}")))?;
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation against the reference implementation (Debian's
    /// `argon2` tool, phc-winner-argon2): `echo -n "correct horse battery
    /// staple" | argon2 arca-kat-salt-16 -id -t 3 -k 24576 -p LANES -l 32 -r`.
    /// One lane is every key written before lanes were computed in
    /// parallel; four is a new key's default.
    #[test]
    fn derivation_matches_the_reference_implementation() {
        for (lanes, want) in [
            (1, "506d3282defe9ee96eb928a5cab2d10afa3dcbbb49ede5deac8a32fd67636e22"),
            (4, "cae0ffd79ad9ad4bc37d070e12d4ae085eb6eb2f8171ceea6daa3eae4c3a4e13"),
        ] {
            let kdf = Kdf {
                algorithm: "argon2id".into(),
                memory_kib: DEFAULT_MEMORY_KIB,
                iterations: DEFAULT_ITERATIONS,
                parallelism: lanes,
                salt: hex::encode("arca-kat-salt-16"),
            };
            assert_eq!(
                hex::encode(derive(b"correct horse battery staple", &kdf).unwrap()),
                want,
                "{lanes} lanes"
            );
        }
    }

    #[test]
    fn wrap_unwrap() {
        let m = MasterKey::random();
        let k = KeyFile::wrap(&m, Some("pw")).unwrap();
        assert_eq!(k.kdf.parallelism, DEFAULT_LANES);
        let k = KeyFile::decode(&k.encode(), "k").unwrap();
        assert_eq!(k.unwrap_key(Some("pw"), "k").unwrap().unwrap().encrypt, m.encrypt);
        assert!(k.unwrap_key(Some("bad"), "k").unwrap().is_none());
        assert!(!String::from_utf8(k.encode()).unwrap().contains(&hex::encode(m.encrypt)));
        let damaged = String::from_utf8(k.encode()).unwrap().replacen("\"user\": \"", "\"user\": \"x", 1);
        assert!(KeyFile::decode(damaged.as_bytes(), "k").is_err());
        let n = KeyFile::wrap(&m, None).unwrap();
        assert_eq!(n.unwrap_key(None, "k").unwrap().unwrap().id, m.id);
    }
}
