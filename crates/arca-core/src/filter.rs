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
    let full = if p.starts_with('/') { p.to_string() } else { format!("**/{p}") };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::Invalid(format!("invalid pattern {pattern:?}: {e}")))
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
        let set = b.build().map_err(|e| Error::Invalid(format!("invalid patterns: {e}")))?;
        Ok(PathFilter { set: Some(set) })
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
}
