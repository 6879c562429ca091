//! Loading: figment layers in, [`Config`] or every error out.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::value::Value;
use figment::Figment;

use crate::digest::digest_of;
use crate::errors::{ConfigErrors, FieldError, FieldPath, Report, Seg};
use crate::lenient;
use crate::model::Config;
use crate::raw::RawConfig;
use crate::validate;

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "QUORUMGATE_";
/// Separator of nested keys in environment variable names: `QUORUMGATE_LOCAL__AGENT_ID`.
pub const ENV_SEPARATOR: &str = "__";
/// `QUORUMGATE_*` variables that are not settings (the CLI reads them), so not rejected as
/// unknown keys.
pub const ENV_NOT_SETTINGS: &[&str] = &["QUORUMGATE_CONFIG"];

/// The environment layer: `QUORUMGATE_*`, nested on `__`, minus [`ENV_NOT_SETTINGS`].
#[must_use]
pub fn env_provider() -> Env {
    let ignored: Vec<String> = ENV_NOT_SETTINGS
        .iter()
        .map(|v| v[ENV_PREFIX.len()..].to_ascii_lowercase())
        .collect();
    let ignored: Vec<&str> = ignored.iter().map(String::as_str).collect();
    Env::prefixed(ENV_PREFIX)
        .split(ENV_SEPARATOR)
        .ignore(&ignored)
}

impl Config {
    /// Built-in defaults < the TOML file at `path` (if any) < `QUORUMGATE_*` environment.
    /// A missing or unreadable file is an error naming the path.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            let readable = std::fs::File::open(path)
                .and_then(|f| f.metadata())
                .and_then(|m| {
                    if m.is_file() {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("not a regular file"))
                    }
                });
            if let Err(e) = readable {
                return Err(ConfigErrors {
                    errors: vec![FieldError {
                        path: path.display().to_string(),
                        problem: format!("cannot read the config file: {e}"),
                        fix: "pass the path of a readable TOML file (see examples/quorumgate.example.toml)".to_owned(),
                    }],
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::from_figment(figment.merge(env_provider()))
    }

    /// Built-in defaults < the TOML in `s`. No environment (for tests and `check --stdin`).
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigErrors> {
        Self::from_figment(Figment::from(Toml::string(s)))
    }

    /// Validates whatever `figment` provides (built-in defaults fill what it leaves unset).
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigErrors> {
        let value = match figment.extract::<Value>() {
            Ok(v) => v,
            Err(e) => return Err(provider_errors(e)),
        };
        let mut report = Report::default();
        let validated = lenient::deserialize::<RawConfig>(&value, &FieldPath::root(), &mut report)
            .and_then(|raw| validate::validate(&raw, &mut report));
        report.annotate(|path, e| {
            if let Some(vars) = env_vars_of(&figment, &value, path) {
                let var = vars.join(", ");
                let s = if vars.len() > 1 { "s" } else { "" };
                e.problem
                    .push_str(&format!(" (set by environment variable{s} {var})"));
                if e.problem.starts_with("unknown key") {
                    e.fix = format!("{}; it comes from the environment: rename or unset {var}", e.fix);
                }
                // `QUORUMGATE_GATES__0__MODE` makes a table that replaces the whole array.
                if e.problem.starts_with("expected an array, found map") {
                    e.fix = format!("an array of tables can only be written in the config file: unset the {var}{ENV_SEPARATOR}… variables and edit the file");
                }
            }
        });
        let (mut errors, warnings) = report.into_parts();
        match validated {
            Some((shared, local)) if errors.is_empty() => Ok(Config {
                digest: digest_of(&shared),
                shared,
                local,
                warnings,
            }),
            _ => {
                if errors.is_empty() {
                    // validate() returns None only after reporting; keep the invariant anyway.
                    errors.push(FieldError {
                        path: FieldPath::root().to_string(),
                        problem: "the configuration is invalid".to_owned(),
                        fix: "see examples/quorumgate.example.toml".to_owned(),
                    });
                }
                Err(ConfigErrors { errors })
            }
        }
    }
}

/// The files `[local]` names, read from the file at `path` and the environment whether or not
/// the rest of the config is valid: `(field path, file)`, in a fixed order. `quorumgate check`
/// looks at them even when the config has other problems, so one run reports both. A
/// `key_file` left unset is `{state_dir}/agent.key`, as in a valid config.
#[must_use]
pub fn local_files(path: &Path) -> Vec<(String, PathBuf)> {
    const FIELDS: [&[&str]; 8] = [
        &["tls", "cert_file"],
        &["tls", "key_file"],
        &["tls", "client_ca_file"],
        &["health_tls", "cert_file"],
        &["health_tls", "key_file"],
        &["peer_tls", "ca_file"],
        &["peer_tls", "client_cert_file"],
        &["peer_tls", "client_key_file"],
    ];
    let figment = Figment::new()
        .merge(Toml::file_exact(path))
        .merge(env_provider());
    let Ok(Value::Dict(_, root)) = figment.extract::<Value>() else {
        return Vec::new();
    };
    let Some(Value::Dict(_, local)) = root.get("local") else {
        return Vec::new();
    };
    let text = |keys: &[&str]| {
        let mut cur = local.get(keys[0])?;
        for k in &keys[1..] {
            let Value::Dict(_, d) = cur else { return None };
            cur = d.get(*k)?;
        }
        match cur {
            Value::String(_, s) if !s.trim().is_empty() => Some(PathBuf::from(s.trim())),
            _ => None,
        }
    };
    let mut out = Vec::new();
    let key_file = text(&["key_file"]).or_else(|| match local.get("state_dir") {
        None => Some(Path::new(crate::defaults::STATE_DIR).join(crate::defaults::KEY_FILE_NAME)),
        Some(_) => text(&["state_dir"]).map(|d| d.join(crate::defaults::KEY_FILE_NAME)),
    });
    out.extend(key_file.map(|k| ("local.key_file".to_owned(), k)));
    for keys in FIELDS {
        if let Some(p) = text(keys) {
            out.push((format!("local.{}", keys.join(".")), p));
        }
    }
    out
}

/// Errors of a provider itself (TOML syntax, unreadable file): there is nothing to validate.
fn provider_errors(err: figment::Error) -> ConfigErrors {
    let errors = err
        .into_iter()
        .map(|e| {
            let source = e.metadata.as_ref().map(|m| match &m.source {
                Some(s) => s.to_string(),
                None => m.name.to_string(),
            });
            FieldError {
                path: source.unwrap_or_else(|| "config".to_owned()),
                problem: one_line(&e.kind.to_string()),
                fix: "fix the syntax at the position shown (TOML: https://toml.io)".to_owned(),
            }
        })
        .collect();
    ConfigErrors { errors }
}

/// A TOML parser message on one line, without its source snippet:
/// `TOML parse error at line 1, column 9: invalid table header; expected `.`, `]``.
fn one_line(message: &str) -> String {
    let is_snippet = |l: &str| {
        l.trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    let mut lines = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_snippet(l));
    let first = lines.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() {
        first
    } else {
        format!("{first}: {}", rest.join("; "))
    }
}

/// The environment variables that set the value at `path`, if any did: the one variable of a
/// leaf, or, for a table that only the environment made (`QUORUMGATE_CLUSTR__NAME` makes a
/// table `clustr`), every variable below it. (The file and the defaults need no note: that is
/// where an operator looks first.)
fn env_vars_of(figment: &Figment, root: &Value, path: &FieldPath) -> Option<Vec<String>> {
    let (cur, keys) = env_value_at(root, path)?;
    let from_env = |v: &Value| {
        figment
            .get_metadata(v.tag())
            .is_some_and(|m| m.name.contains("environment"))
    };
    if !from_env(cur) {
        return None;
    }
    let mut vars = Vec::new();
    leaf_vars(cur, &keys, &from_env, &mut vars);
    if vars.is_empty() {
        vars.push(format!("{ENV_PREFIX}{}", keys.join(ENV_SEPARATOR)));
    }
    Some(vars)
}

/// The variables of the environment-set leaves under `v` (named by `keys` so far).
fn leaf_vars(v: &Value, keys: &[String], from_env: &dyn Fn(&Value) -> bool, out: &mut Vec<String>) {
    match v {
        Value::Dict(_, d) => {
            for (k, child) in d {
                let mut keys = keys.to_vec();
                keys.push(k.to_ascii_uppercase());
                leaf_vars(child, &keys, from_env, out);
            }
        }
        leaf if from_env(leaf) => out.push(format!("{ENV_PREFIX}{}", keys.join(ENV_SEPARATOR))),
        _ => {}
    }
}

/// The value at `path` and its upper-case keys; an array stops the walk (a variable can only
/// set a whole array).
fn env_value_at<'a>(root: &'a Value, path: &FieldPath) -> Option<(&'a Value, Vec<String>)> {
    let mut cur = root;
    let mut keys = Vec::new();
    for seg in path.segs() {
        match (seg, cur) {
            (Seg::Key(k), Value::Dict(_, d)) => {
                cur = d.get(k)?;
                keys.push(k.to_ascii_uppercase());
            }
            // An environment variable can only set a whole array, named by the keys so far.
            (Seg::Index(_), Value::Array(..)) => break,
            _ => return None,
        }
    }
    Some((cur, keys))
}
