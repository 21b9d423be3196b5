//! Turning a repository location, as a person writes it, into a backend:
//! a path, `file:///path`, `s3://bucket/prefix` or
//! `sftp://[user@]host[:port]/path`. Shared by `--repo` and
//! the repositories of arca.toml, so both read the same forms and refuse
//! the same mistakes.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{
    Backend, BackendError, LocalBackend, RestBackend, RestConfig, S3Backend, S3Config, SftpBackend,
    SftpConfig,
};

/// A repository's storage, opened.
pub struct Location {
    /// Where the repository's files are.
    pub backend: Arc<dyn Backend>,
    /// The local folder, when the repository is on local disk (a backup
    /// leaves it out of its sources).
    pub local_path: Option<PathBuf>,
}

/// A location that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The text is no location arca reads; the message says which forms it
    /// does, and what was probably meant.
    #[error("{0}")]
    Invalid(String),
    /// The storage could not be set up (an S3 client without a region).
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The forms arca reads, for messages.
pub const FORMS: &str =
    "locations: a path, file:///path, s3://bucket/prefix, sftp://[user@]host[:port]/absolute/path or \
     rest:http(s)://host:port/NAME (arca serve)";

/// The scheme of `s` when it is another tool's way to write a location
/// (restic's `s3:bucket/path`, `sftp:host:/path`, `rest:`…, or a URL
/// scheme without `//`). Taken as a local path, `s3:bucket/x` would create
/// a folder named `s3:bucket` and report success.
fn other_tools_scheme(s: &str) -> Option<&'static str> {
    const KNOWN: [&str; 17] = [
        "s3", "sftp", "ssh", "rest", "b2", "azure", "gs", "gcs", "swift", "rclone", "http", "https", "ftp",
        "file", "local", "smb", "webdav",
    ];
    let (scheme, _) = s.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    KNOWN.into_iter().find(|k| *k == scheme)
}

/// A location read, not yet opened.
#[derive(Debug)]
pub enum Parsed {
    /// An S3 bucket and prefix, with the settings of the environment.
    S3(S3Config),
    /// A repository of `arca serve`.
    Rest(RestConfig),
    /// A folder on an SSH server.
    Sftp(SftpConfig),
    /// A folder, absolute.
    Local(PathBuf),
}

/// Reads the location `s` without opening anything: the checks of
/// [`open`], for a configuration checked before it is used.
pub fn parse(s: &str) -> Result<Parsed, LocationError> {
    parse_with(s, &|k| std::env::var(k).ok())
}

/// [`parse`], with the settings of object storage (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, the keys…) and of SSH (`ARCA_SSH_CONFIG`) from `setting`
/// rather than the environment.
pub fn parse_with(s: &str, setting: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, LocationError> {
    let invalid = |m: String| Err(LocationError::Invalid(m));
    let path = match s {
        s if s.starts_with("s3://") => {
            return S3Config::from_url(s, setting).map(Parsed::S3).map_err(LocationError::Invalid);
        }
        s if s.starts_with("rest:http://") || s.starts_with("rest:https://") => {
            return RestConfig::from_url(s, setting).map(Parsed::Rest).map_err(LocationError::Invalid);
        }
        s if s.starts_with("sftp://") => {
            return SftpConfig::from_url(s, setting)
                .map(Parsed::Sftp)
                .map_err(|e| LocationError::Invalid(format!("repository {e}")));
        }
        s if s.starts_with("file://") => PathBuf::from(&s["file://".len()..]),
        s if other_tools_scheme(s).is_some() => {
            let (scheme, rest) = s.split_once(':').unwrap_or((s, ""));
            let guess = match other_tools_scheme(s) {
                Some("s3") => format!("; did you mean s3://{}?", rest.trim_start_matches('/')),
                Some("file" | "local") => format!("; did you mean file:///{}?", rest.trim_start_matches('/')),
                Some("rest") => format!("; did you mean rest:http://{}?", rest.trim_start_matches('/')),
                // restic's sftp:user@host:/path (or sftp:host:path, relative
                // to the home folder, which arca does not read).
                Some("sftp" | "ssh") => match rest.trim_start_matches('/').split_once(':') {
                    Some((host, path)) if path.starts_with('/') => {
                        format!("; did you mean sftp://{host}{}?", path.trim_end_matches('/'))
                    }
                    _ => "; give sftp://user@host/absolute/path".to_string(),
                },
                _ => String::new(),
            };
            return invalid(format!(
                "repository {s}: {scheme}: is not a location arca reads{guess} ({FORMS}; a local folder \
                 whose name has a colon: ./{s})"
            ));
        }
        s if s.contains("://") => return invalid(format!("repository {s}: unknown URL scheme ({FORMS})")),
        "" => return invalid("the repository location is empty".into()),
        s => PathBuf::from(s),
    };
    Ok(Parsed::Local(std::path::absolute(&path).unwrap_or(path)))
}

/// Opens the location `s` (nothing is read or written yet: a missing
/// repository is found when it is opened). A relative path is taken from
/// the current folder.
pub fn open(s: &str) -> Result<Location, LocationError> {
    open_parsed(parse(s)?)
}

/// Opens a location [`parse_with`] read.
pub fn open_parsed(parsed: Parsed) -> Result<Location, LocationError> {
    match parsed {
        Parsed::S3(config) => Ok(Location { backend: Arc::new(S3Backend::new(config)?), local_path: None }),
        Parsed::Rest(config) => {
            Ok(Location { backend: Arc::new(RestBackend::new(config)?), local_path: None })
        }
        Parsed::Sftp(config) => {
            Ok(Location { backend: Arc::new(SftpBackend::new(config)?), local_path: None })
        }
        Parsed::Local(path) => {
            Ok(Location { backend: Arc::new(LocalBackend::new(path.clone())), local_path: Some(path) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(s: &str) -> String {
        match open(s) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{s:?} opened"),
        }
    }

    #[test]
    fn paths_and_file_urls_are_local_and_other_forms_are_refused() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(open("rel/repo").unwrap().local_path, Some(here.join("rel/repo")));
        assert_eq!(open("file:///srv/arca").unwrap().local_path, Some(PathBuf::from("/srv/arca")));
        assert_eq!(open("./s3:odd").unwrap().local_path, Some(here.join("s3:odd")));
        assert!(error("s3:bucket/x").contains("did you mean s3://bucket/x?"));
        assert!(error("sftp:host:/srv").contains("sftp: is not a location arca reads"));
        assert!(error("sftp:me@host:/srv/arca/").contains("did you mean sftp://me@host/srv/arca?"));
        assert!(error("sftp:host:backups").contains("give sftp://user@host/absolute/path"));
        assert!(error("ssh://host/srv").contains("ssh: is not a location"));
        assert!(error("sftp://host").contains("no folder on the server"));
        let l = open("sftp://me@host:2222/srv/arca").unwrap();
        assert_eq!(l.backend.location(), "sftp://me@host:2222/srv/arca");
        assert!(l.local_path.is_none() && l.backend.is_remote());
        assert!(error("gopher://x/y").contains("unknown URL scheme"));
        assert!(error("").contains("empty"));
    }
}
