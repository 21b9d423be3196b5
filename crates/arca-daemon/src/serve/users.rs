//! Who may use `arca serve`: a users file of `NAME:BCRYPT-HASH[:REPO,…]`
//! lines (htpasswd's bcrypt lines, with the repositories each user may
//! use; without them, the repository of the user's own name).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// A bcrypt hash of a random password, made once: what an unknown user's
/// password is checked against.
fn unknown() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut random = [0u8; 16];
        let _ = getrandom::getrandom(&mut random);
        bcrypt::hash(random, 10).unwrap_or_default()
    })
}

/// One user of the file.
#[derive(Debug, Clone)]
pub struct User {
    /// The bcrypt hash of the password (`$2y$…`, `$2b$…`).
    hash: String,
    /// The repositories the user may read and write.
    pub repos: Vec<String>,
}

/// The users, and the passwords already checked (bcrypt is slow on
/// purpose: each request would cost tens of milliseconds).
#[derive(Debug, Default)]
pub struct Users {
    users: HashMap<String, User>,
    checked: Mutex<HashMap<String, [u8; 32]>>,
}

/// A user or repository name: letters, digits, `.`, `_`, `-`, not
/// starting with `.`.
pub fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Users {
    /// Reads a users file; an error names the line that is wrong.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("users file {}: {e}", path.display()))?;
        Users::parse(&text).map_err(|e| format!("users file {}: {e}", path.display()))
    }

    /// Parses the lines of a users file (blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, ':');
            let (Some(name), Some(hash)) = (parts.next(), parts.next()) else {
                return Err(format!("line {}: not NAME:HASH[:REPO,…]", i + 1));
            };
            if !plain_name(name) {
                return Err(format!("line {}: {name:?} is not a user name (letters, digits, . _ -)", i + 1));
            }
            if !hash.starts_with("$2") || hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(format!("line {}: the password of {name} is not a bcrypt hash ($2y$…)", i + 1));
            }
            let repos: Vec<String> = match parts.next() {
                Some(list) => {
                    list.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect()
                }
                None => vec![name.to_string()],
            };
            if let Some(bad) = repos.iter().find(|r| !plain_name(r)) {
                return Err(format!("line {}: {bad:?} is not a repository name", i + 1));
            }
            if users.insert(name.to_string(), User { hash: hash.to_string(), repos }).is_some() {
                return Err(format!("line {}: user {name} is given twice", i + 1));
            }
        }
        Ok(Users { users, checked: Mutex::new(HashMap::new()) })
    }

    /// Whether the file has a user `name`.
    pub fn has(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The user `name` when `password` is theirs.
    pub fn check(&self, name: &str, password: &str) -> Option<&User> {
        let Some(user) = self.users.get(name) else {
            // As long as for a user who exists: the time of the answer does
            // not tell which names do.
            let _ = bcrypt::verify(password, unknown());
            return None;
        };
        let digest = *blake3::hash(password.as_bytes()).as_bytes();
        let known = self.checked.lock().unwrap_or_else(|p| p.into_inner()).get(name) == Some(&digest);
        if known || bcrypt::verify(password, &user.hash).unwrap_or(false) {
            self.checked.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), digest);
            return Some(user);
        }
        None
    }
}

/// A users file line for `name` with `password` (bcrypt, cost 10).
pub fn line(name: &str, password: &str, repos: &[String]) -> Result<String, String> {
    if !plain_name(name) {
        return Err(format!("{name:?} is not a user name (letters, digits, . _ -)"));
    }
    if let Some(bad) = repos.iter().find(|r| !plain_name(r)) {
        return Err(format!("{bad:?} is not a repository name"));
    }
    let hash = bcrypt::hash(password, 10).map_err(|e| e.to_string())?;
    Ok(if repos.is_empty() { format!("{name}:{hash}") } else { format!("{name}:{hash}:{}", repos.join(",")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_log_in_with_their_password_only() {
        let text = format!(
            "# users\n{}\n{}\n",
            line("alice", "a-secret", &[]).unwrap(),
            line("bob", "b-secret", &["bob".into(), "bob-phone".into()]).unwrap()
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.check("alice", "a-secret").unwrap().repos, vec!["alice"]);
        assert_eq!(
            users.check("alice", "a-secret").unwrap().repos,
            vec!["alice"],
            "checked again from memory"
        );
        assert!(users.check("alice", "b-secret").is_none());
        assert!(users.check("carol", "a-secret").is_none());
        assert_eq!(users.check("bob", "b-secret").unwrap().repos, vec!["bob", "bob-phone"]);
        for (bad, why) in [
            ("alice", "not NAME:HASH"),
            ("alice:plain-password", "not a bcrypt hash"),
            ("../x:$2y$10$abcdefghijklmnopqrstuu5Lx4WQxRpmeWmX8pGbJsh0LGk5nYkLy", "not a user name"),
        ] {
            let e = Users::parse(bad).unwrap_err();
            assert!(e.contains("line 1") && e.contains(why), "{bad}: {e}");
        }
    }
}
