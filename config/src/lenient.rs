//! Deserialization that reports every serde error, not just the first.
//!
//! serde stops at the first unknown key or wrong type. [`deserialize`] records that error with
//! its full path, removes the offending key from a copy of the value and tries again, until the
//! value deserializes. Raw structs have only optional fields, so the result is the value minus
//! its bad keys, and validation goes on to find the semantic problems of the rest.

use figment::error::{Actual, Kind};
use figment::value::Value;
use serde::de::DeserializeOwned;

use crate::errors::{FieldPath, Report};

/// More serde errors than this in one value and we give up on it (each retry removes a key, so
/// this only bounds pathological input).
const MAX_RETRIES: usize = 256;

/// Deserializes `value` (found at `at`) into `T`, reporting every serde error. `None` when even
/// the value itself has the wrong type (nothing left to remove).
pub(crate) fn deserialize<T: DeserializeOwned>(
    value: &Value,
    at: &FieldPath,
    report: &mut Report,
) -> Option<T> {
    let mut value = value.clone();
    for _ in 0..MAX_RETRIES {
        let err = match T::deserialize(&value) {
            Ok(t) => return Some(t),
            Err(err) => err,
        };
        let mut removed_any = false;
        for e in err {
            let mut path = resolve(&value, at, &e.path);
            if let Kind::MissingField(name) = &e.kind {
                path = path.key(name);
            }
            let (problem, fix) = describe(&e.kind);
            report.error(&path, problem, fix);
            removed_any |= remove(&mut value, &e.path);
        }
        if !removed_any {
            return None;
        }
    }
    report.error(
        at,
        "too many errors in this section",
        "fix the errors above and try again",
    );
    None
}

/// Turns figment's string path into a [`FieldPath`], telling array indices from keys.
fn resolve(value: &Value, at: &FieldPath, keys: &[String]) -> FieldPath {
    let mut path = at.clone();
    let mut cur = Some(value);
    for k in keys {
        match cur {
            Some(Value::Array(_, items)) => match k.parse::<usize>() {
                Ok(i) => {
                    path = path.index(i);
                    cur = items.get(i);
                }
                Err(_) => {
                    path = path.key(k);
                    cur = None;
                }
            },
            Some(Value::Dict(_, d)) => {
                path = path.key(k);
                cur = d.get(k);
            }
            _ => {
                path = path.key(k);
                cur = None;
            }
        }
    }
    path
}

/// Removes the key at `keys`. An error inside an array removes the whole array field, so the
/// indices of other reported errors stay true.
fn remove(value: &mut Value, keys: &[String]) -> bool {
    let Value::Dict(_, dict) = value else {
        return false;
    };
    match keys {
        [] => false,
        [k] => dict.remove(k).is_some(),
        [k, rest @ ..] => match dict.get_mut(k) {
            Some(Value::Array(..)) => dict.remove(k).is_some(),
            Some(child) => remove(child, rest),
            None => false,
        },
    }
}

/// A serde error as (problem, fix).
pub(crate) fn describe(kind: &Kind) -> (String, String) {
    match kind {
        Kind::UnknownField(name, expected) => {
            (format!("unknown key `{name}`"), unknown_fix(name, expected))
        }
        Kind::UnknownVariant(got, expected) => (
            format!("unknown value {got:?}"),
            format!("use one of: {}", quote_list(expected)),
        ),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = expected_text(expected);
            (
                format!("expected {expected}, found {}", actual_text(actual)),
                format!("write {expected}"),
            )
        }
        Kind::InvalidLength(len, expected) => (
            format!("has {len} elements, expected {expected}"),
            format!("write {expected}"),
        ),
        Kind::MissingField(name) => (format!("`{name}` is required"), format!("add `{name}`")),
        Kind::DuplicateField(name) => (
            format!("`{name}` is given more than once"),
            "keep one of them".to_owned(),
        ),
        Kind::Message(m) => (m.clone(), "see examples/quorumgate.example.toml".to_owned()),
        other => (
            other.to_string(),
            "see examples/quorumgate.example.toml".to_owned(),
        ),
    }
}

fn actual_text(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("string {s:?}"),
        other => other.to_string(),
    }
}

/// serde's names of Rust types, in TOML words.
fn expected_text(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "a sequence" => "an array",
        "a map" => "a table",
        s if s.starts_with("struct Raw") => "a table",
        other => other,
    }
}

/// `"A", "a", "AAAA"` → `"A", "AAAA"`: lower-case aliases are accepted but not advertised.
fn quote_list(items: &[&str]) -> String {
    let mut shown: Vec<&str> = Vec::new();
    for item in items {
        if !shown.iter().any(|s| s.eq_ignore_ascii_case(item)) {
            shown.push(item);
        }
    }
    shown
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_fix(name: &str, expected: &[&str]) -> String {
    match closest(name, expected) {
        Some(best) => format!("did you mean `{best}`? (otherwise remove it)"),
        None if expected.is_empty() => "remove it".to_owned(),
        None => format!(
            "remove it; the keys allowed here are: {}",
            expected.join(", ")
        ),
    }
}

/// The expected name closest to a typo, if it is close enough to be a likely intent.
fn closest<'a>(name: &str, expected: &[&'a str]) -> Option<&'a str> {
    let name = name.to_ascii_lowercase().replace('-', "_");
    expected
        .iter()
        .map(|e| (edit_distance(&name, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawCheck;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    fn value(toml: &str) -> Value {
        Figment::from(Toml::string(toml))
            .extract::<Value>()
            .unwrap()
    }

    #[test]
    fn reports_every_serde_error_and_keeps_the_rest() {
        let v = value(
            r#"
            id = "app"
            intervall = "5s"
            timeout = 5
            initial = "up"
            [http]
            url = "http://x"
            expect_status = [200, "x"]
            bogus = 1
            "#,
        );
        let mut r = Report::default();
        let check: RawCheck =
            deserialize(&v, &FieldPath::root().key("checks").index(0), &mut r).unwrap();
        let (errors, _) = r.into_parts();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "checks[0].intervall",
            "checks[0].timeout",
            "checks[0].initial",
            "checks[0].http.bogus",
            "checks[0].http.expect_status[1]",
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
        assert_eq!(paths.len(), 5, "{errors:?}");
        let typo = errors
            .iter()
            .find(|e| e.path == "checks[0].intervall")
            .unwrap();
        assert!(typo.fix.contains("did you mean `interval`"), "{typo:?}");
        let status = errors
            .iter()
            .find(|e| e.path == "checks[0].http.expect_status[1]")
            .unwrap();
        assert_eq!(status.problem, "expected an integer, found string \"x\"");
        assert_eq!(check.id.unwrap().0, "app");
        assert_eq!(check.http.unwrap().url.as_deref(), Some("http://x"));
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(
            closest("ballot_valid", &["ballot_valid_for", "name"]),
            Some("ballot_valid_for")
        );
        assert_eq!(
            closest("allow-single-member", &["allow_single_member"]),
            Some("allow_single_member")
        );
        assert_eq!(closest("zzz", &["ballot_valid_for", "name"]), None);
    }
}
