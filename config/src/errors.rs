//! The error report: every problem with a field path and a fix, collected before failing.

use std::fmt;

/// One problem with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `checks[1].timeout`, `members[2].public_key`, `local.listen`.
    pub path: String,
    /// What is wrong, e.g. `must be shorter than interval (5s), is 5s`.
    pub problem: String,
    /// What would fix it, e.g. `lower timeout or raise interval`.
    pub fix: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.path, self.problem, self.fix)
    }
}

/// Everything wrong with a configuration; never empty when returned as an `Err`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    pub errors: Vec<FieldError>,
}

impl ConfigErrors {
    /// The paths of all errors, in report order (handy in tests and logs).
    #[must_use]
    pub fn paths(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.path.as_str()).collect()
    }

    /// The first error at exactly `path`.
    #[must_use]
    pub fn at(&self, path: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per error: `  - {path}: {problem} (fix: {fix})`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A field path such as `checks[1].http.url`; displayed in TOML-like notation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct FieldPath(Vec<Seg>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        Self(segs)
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(i));
        Self(segs)
    }

    pub(crate) fn segs(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Collects errors and warnings while validating. At most one error is kept per path: the
/// first is the cause, later ones (e.g. "missing" after a value was rejected) are echoes.
#[derive(Debug, Default)]
pub(crate) struct Report {
    errors: Vec<(FieldPath, FieldError)>,
    warnings: Vec<(FieldPath, FieldError)>,
}

impl Report {
    pub(crate) fn error(
        &mut self,
        path: &FieldPath,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        if self.errors.iter().any(|(p, _)| p == path) {
            return;
        }
        let e = FieldError {
            path: path.to_string(),
            problem: problem.into(),
            fix: fix.into(),
        };
        self.errors.push((path.clone(), e));
    }

    /// Something that works but is probably not what the operator wants.
    pub(crate) fn warn(
        &mut self,
        path: &FieldPath,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let e = FieldError {
            path: path.to_string(),
            problem: problem.into(),
            fix: fix.into(),
        };
        self.warnings.push((path.clone(), e));
    }

    /// Whether an error was reported at `path` or below it.
    pub(crate) fn has_error_at(&self, path: &FieldPath) -> bool {
        self.errors
            .iter()
            .any(|(p, _)| p.segs().starts_with(path.segs()))
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Rewrites every entry (used to annotate where a value came from).
    pub(crate) fn annotate(&mut self, mut f: impl FnMut(&FieldPath, &mut FieldError)) {
        for (p, e) in self.errors.iter_mut().chain(self.warnings.iter_mut()) {
            f(p, e);
        }
    }

    pub(crate) fn into_parts(self) -> (Vec<FieldError>, Vec<FieldError>) {
        let strip = |v: Vec<(FieldPath, FieldError)>| v.into_iter().map(|(_, e)| e).collect();
        (strip(self.errors), strip(self.warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_toml() {
        let p = FieldPath::root()
            .key("checks")
            .index(1)
            .key("http")
            .key("headers")
            .key("X-Env");
        assert_eq!(p.to_string(), "checks[1].http.headers.X-Env");
        assert_eq!(
            FieldPath::root().key("local").key("a.b").to_string(),
            "local.\"a.b\""
        );
    }

    #[test]
    fn one_error_per_path_and_display() {
        let mut r = Report::default();
        let p = FieldPath::root().key("local").key("listen");
        r.error(&p, "first", "fix1");
        r.error(&p, "echo", "fix2");
        r.error(&FieldPath::root().key("cluster"), "second", "fix3");
        assert!(r.has_error_at(&FieldPath::root().key("local")));
        let (errors, _) = r.into_parts();
        let all = ConfigErrors { errors };
        assert_eq!(all.paths(), ["local.listen", "cluster"]);
        assert_eq!(
            all.to_string(),
            "  - local.listen: first (fix: fix1)\n  - cluster: second (fix: fix3)"
        );
    }
}
