//! Include and exclude patterns.
//!
//! A pattern starting with `/` is matched against the whole absolute path;
//! any other pattern may match at any depth (`*.log` is `**/*.log`), as in
//! restic. `*` does not cross `/`; `**` does. A pattern may be matched
//! ignoring case (`--iexclude`): `*.JPG` then matches `photo.jpg`.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct PathFilter {
    set: Option<GlobSet>,
}

fn compile(pattern: &str, ignore_case: bool) -> Result<Glob> {
    let p = pattern.trim_end_matches('/');
    // "" and "/" would become `**/`, which matches every path: never what
    // anyone means, and as an exclude it silently empties a backup.
    if p.is_empty() {
        return Err(Error::Invalid(format!(
            "invalid pattern {pattern:?}: it is empty and would match every path"
        )));
    }
    let full = if p.starts_with('/') { p.to_string() } else { format!("**/{p}") };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .backslash_escape(true)
        .case_insensitive(ignore_case)
        .build()
        .map_err(|source| Error::Pattern { pattern: pattern.to_string(), source })
}

impl PathFilter {
    pub fn new(patterns: &[String]) -> Result<PathFilter> {
        PathFilter::with_ignore_case(patterns, &[])
    }

    /// Matches a path that any of `patterns` matches, or any of
    /// `ignore_case` matched without regard to case.
    pub fn with_ignore_case(patterns: &[String], ignore_case: &[String]) -> Result<PathFilter> {
        if patterns.is_empty() && ignore_case.is_empty() {
            return Ok(PathFilter { set: None });
        }
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(compile(p, false)?);
        }
        for p in ignore_case {
            b.add(compile(p, true)?);
        }
        let all: Vec<&str> = patterns.iter().chain(ignore_case).map(String::as_str).collect();
        let set = b.build().map_err(|source| Error::Pattern { pattern: all.join(", "), source })?;
        Ok(PathFilter { set: Some(set) })
    }

    /// Exclude patterns for a backup: like [`PathFilter::with_ignore_case`],
    /// and a pattern that matches every path (`*`, `**`, `/**`) is refused,
    /// since it would store an empty snapshot and call it a success.
    pub fn excludes(patterns: &[String], ignore_case: &[String]) -> Result<PathFilter> {
        // Paths that share nothing: a pattern matching all of them matches
        // everything for all practical purposes.
        const PROBES: [&str; 4] = ["/a", "/arca-probe.d/x", "/.h/y.z/0", "/1/2/3/4/5"];
        let each = patterns.iter().map(|p| (p, false)).chain(ignore_case.iter().map(|p| (p, true)));
        for (p, fold) in each {
            let alone = std::slice::from_ref(p);
            let one = if fold {
                PathFilter::with_ignore_case(&[], alone)?
            } else {
                PathFilter::with_ignore_case(alone, &[])?
            };
            if PROBES.iter().all(|probe| one.matches(Path::new(probe))) {
                return Err(Error::Invalid(format!(
                    "exclude pattern {p:?} matches every path: the backup would store nothing"
                )));
            }
        }
        PathFilter::with_ignore_case(patterns, ignore_case)
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }

    pub fn matches(&self, path: &Path) -> bool {
        self.set.as_ref().is_some_and(|s| s.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let f = PathFilter::new(&["*.log".into(), "/tmp/x/cache".into(), "sub/**".into()]).unwrap();
        assert!(f.matches(Path::new("/a/b/c.log")));
        assert!(!f.matches(Path::new("/a/b/c.txt")));
        assert!(f.matches(Path::new("/tmp/x/cache")));
        assert!(!f.matches(Path::new("/y/tmp/x/cache")));
        assert!(f.matches(Path::new("/r/sub/deep/file")));
        assert!(!f.matches(Path::new("/r/sub")));
        assert!(PathFilter::new(&["a[".into()]).is_err());
        assert!(!PathFilter::new(&[]).unwrap().matches(Path::new("/x")));
    }

    #[test]
    fn empty_and_all_matching_patterns_are_refused() {
        for p in ["", "/", "//"] {
            let e = PathFilter::new(&[p.to_string()]).err().expect(p).to_string();
            assert!(e.contains("empty"), "{p:?}: {e}");
        }
        for p in ["*", "**", "/**", "**/*"] {
            let e = PathFilter::excludes(&["*.log".into(), p.to_string()], &[]).err().expect(p).to_string();
            assert!(e.contains(&format!("{p:?}")) && e.contains("every path"), "{p:?}: {e}");
            let e = PathFilter::excludes(&[], &[p.to_string()]).err().expect(p).to_string();
            assert!(e.contains("every path"), "ignoring case {p:?}: {e}");
        }
        for p in ["*.log", "/tmp/**", "cache", ".*", "/*"] {
            PathFilter::excludes(&[p.to_string()], &[p.to_string()]).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        }
    }

    #[test]
    fn ignore_case_patterns_fold_case_and_the_others_do_not() {
        let f =
            PathFilter::with_ignore_case(&["*.log".into()], &["*.JPG".into(), "/Home/ADA".into()]).unwrap();
        assert!(f.matches(Path::new("/p/photo.jpg")) && f.matches(Path::new("/p/PHOTO.Jpg")));
        assert!(f.matches(Path::new("/home/ada")));
        assert!(
            f.matches(Path::new("/a.log")) && !f.matches(Path::new("/a.LOG")),
            "exact patterns keep case"
        );
        assert!(!f.matches(Path::new("/p/photo.png")));
    }
}
