//! Include and exclude patterns.
//!
//! A pattern starting with `/` is matched against the whole absolute path;
//! any other pattern may match at any depth (`*.log` is `**/*.log`), as in
//! restic. `*` does not cross `/`; `**` does.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct PathFilter {
    set: Option<GlobSet>,
}

fn compile(pattern: &str) -> Result<Glob> {
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
        .build()
        .map_err(|source| Error::Pattern { pattern: pattern.to_string(), source })
}

impl PathFilter {
    pub fn new(patterns: &[String]) -> Result<PathFilter> {
        if patterns.is_empty() {
            return Ok(PathFilter { set: None });
        }
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(compile(p)?);
        }
        let set = b.build().map_err(|source| Error::Pattern { pattern: patterns.join(", "), source })?;
        Ok(PathFilter { set: Some(set) })
    }

    /// Exclude patterns for a backup: like [`PathFilter::new`], and a
    /// pattern that matches every path (`*`, `**`, `/**`) is refused, since
    /// it would store an empty snapshot and call it a success.
    pub fn excludes(patterns: &[String]) -> Result<PathFilter> {
        // Paths that share nothing: a pattern matching all of them matches
        // everything for all practical purposes.
        const PROBES: [&str; 4] = ["/a", "/arca-probe.d/x", "/.h/y.z/0", "/1/2/3/4/5"];
        for p in patterns {
            let one = PathFilter::new(std::slice::from_ref(p))?;
            if PROBES.iter().all(|probe| one.matches(Path::new(probe))) {
                return Err(Error::Invalid(format!(
                    "exclude pattern {p:?} matches every path: the backup would store nothing"
                )));
            }
        }
        PathFilter::new(patterns)
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
            let e = PathFilter::excludes(&["*.log".into(), p.to_string()]).err().expect(p).to_string();
            assert!(e.contains(&format!("{p:?}")) && e.contains("every path"), "{p:?}: {e}");
        }
        for p in ["*.log", "/tmp/**", "cache", ".*", "/*"] {
            PathFilter::excludes(&[p.to_string()]).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        }
    }
}
