//! The API's bearer token: read from its file, or made (32 random bytes,
//! hex) into a new file readable by its owner alone.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The token in `path`, made first when the file does not exist.
pub fn load_or_create(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o077).unwrap_or(0);
            if mode != 0 {
                tracing::warn!("token file {} can be read by others: chmod 600 it", path.display());
            }
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.len() < 16 {
                return Err(format!(
                    "token file {}: the token is shorter than 16 characters",
                    path.display()
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).map_err(|e| format!("making a token: {e}"))?;
            let token = hex::encode(bytes);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("token file {}: {e}", path.display()))?;
            writeln!(f, "{token}")
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("token file {}: {e}", path.display()))?;
            tracing::info!("made a new API token in {}", path.display());
            Ok(token)
        }
        Err(e) => Err(format!("token file {}: {e}", path.display())),
    }
}

/// Compares in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_file_is_0600_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/daemon.token");
        let t = load_or_create(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&p).unwrap(), t);
        assert!(same(&t, &t.clone()) && !same(&t, &t[1..]) && !same("abcd", "abce"));
        std::fs::write(&p, "short\n").unwrap();
        assert!(load_or_create(&p).unwrap_err().contains("shorter than 16"));
    }
}
