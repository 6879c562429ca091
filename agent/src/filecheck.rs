//! `quorumgate check`'s look at the files a valid config names: the signing key (readable,
//! mode, a key at all, and the one `[[members]]` lists for this agent), and every TLS file
//! (readable, parses, a private key's mode, a certificate that matches its key, validity dates).
//!
//! The agent would refuse to start on any error found here; a warning (a certificate that
//! expires within [`EXPIRY_WARNING`], a TLS key group or others can read, which the agent
//! accepts) is for the operator. The key-mode rule is the agent's
//! own ([`keys::check_private_mode`]), so `check` under the unit's `ExecStartPre` judges the
//! files exactly as the agent will.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use config::{Config, FieldError};
use quorum::UnixMillis;

use crate::keys::{self, KeyError};
use crate::tls::{self, TlsError};

/// A certificate that expires sooner than this draws a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the files say: errors (the agent would not start) and warnings.
#[derive(Debug, Default)]
pub struct FileReport {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<FieldError>,
}

impl FileReport {
    fn error(&mut self, path: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.errors.push(entry(path, problem, fix));
    }

    fn warn(&mut self, path: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.warnings.push(entry(path, problem, fix));
    }
}

fn entry(path: &str, problem: impl Into<String>, fix: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Checks every file `cfg` names for this agent, as of `now` (wall clock).
#[must_use]
pub fn check_files(cfg: &Config, now: UnixMillis) -> FileReport {
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(now.0);
    tls::install_crypto_provider();
    let mut r = FileReport::default();
    signing_key(cfg, &mut r);
    let local = &cfg.local;
    if let Some(t) = &local.tls {
        server_tls("local.tls", &t.cert_file, &t.key_file, now, &mut r);
        if let Some(ca) = &t.client_ca_file {
            ca_bundle("local.tls.client_ca_file", ca, now, &mut r);
        }
    }
    if let Some(t) = local.health_listener.as_ref().and_then(|h| h.tls.as_ref()) {
        server_tls("local.health_tls", &t.cert_file, &t.key_file, now, &mut r);
    }
    let peer = &local.peer_tls;
    if let Some(ca) = &peer.ca_file {
        ca_bundle("local.peer_tls.ca_file", ca, now, &mut r);
    }
    if let (Some(cert), Some(key)) = (&peer.client_cert_file, &peer.client_key_file) {
        identity(
            ("local.peer_tls.client_cert_file", cert),
            ("local.peer_tls.client_key_file", key),
            now,
            &mut r,
        );
    }
    r
}

/// The files of a config that did not validate (`config::local_files`): each exists and is
/// readable, and a private key's mode is the agent's rule (an error for the signing key, a
/// warning for a TLS key). Parsing and matching need a valid config and wait for it.
#[must_use]
pub fn check_named_files(files: &[(String, std::path::PathBuf)]) -> FileReport {
    let mut r = FileReport::default();
    for (field, path) in files {
        let signing = field == "local.key_file";
        let fix = if signing {
            format!(
                "create it with `quorumgate keygen --out {}` and put the public key it prints into this agent's [[members]] entry, or point key_file at the agent's key",
                path.display()
            )
        } else {
            format!("point {field} at the right file, or create it (`quorumgate keygen --tls-dir` makes a development PKI)")
        };
        if let Err(e) = std::fs::File::open(path) {
            let (problem, fix) = io_problem(path, &e, &fix);
            r.error(field, problem, fix);
            continue;
        }
        if signing || field.ends_with("key_file") {
            if let Err(KeyError::TooOpen { mode, .. }) = keys::check_private_mode(path) {
                if signing {
                    too_open(field, path, mode, &mut r);
                } else {
                    r.warn(
                        field,
                        format!("{} is readable by group or others (mode {mode:04o})", path.display()),
                        format!("chmod 600 {} (0400 works too), unless only the agent's own group can read it (Kubernetes fsGroup)", path.display()),
                    );
                }
            }
        }
    }
    r
}

/// The agent's signing key: readable, private, a key, and this agent's `[[members]]` key.
fn signing_key(cfg: &Config, r: &mut FileReport) {
    const FIELD: &str = "local.key_file";
    let path = &cfg.local.key_file;
    let create = format!(
        "create it with `quorumgate keygen --out {}` and put the public key it prints into this agent's [[members]] entry, or point key_file at the agent's key",
        path.display()
    );
    match keys::load_signing_key(path) {
        Ok(key) => {
            let Some((i, member)) = cfg
                .shared
                .members
                .iter()
                .enumerate()
                .find(|(_, m)| m.id == cfg.local.agent_id)
            else {
                return;
            };
            let public = key.verifying_key();
            if public != member.public_key {
                r.error(
                    FIELD,
                    format!(
                        "{} holds the key whose public key is {:?}, but members[{i}] ({}) lists {:?}: peers would reject every ballot this agent signs",
                        path.display(),
                        keys::public_key_base64(&public),
                        member.id,
                        keys::public_key_base64(&member.public_key)
                    ),
                    format!(
                        "point key_file at {}'s key, or set members[{i}].public_key to the key's public key (`quorumgate keygen --public-key {}` prints it)",
                        member.id,
                        path.display()
                    ),
                );
            }
        }
        Err(KeyError::Read { cause, .. }) => {
            let (problem, fix) = io_problem(path, &cause, &create);
            r.error(FIELD, problem, fix);
        }
        Err(KeyError::TooOpen { mode, .. }) => too_open(FIELD, path, mode, r),
        Err(KeyError::Malformed { why, .. }) => r.error(
            FIELD,
            format!(
                "{} is not a quorumgate signing key (one line of base64 of a 32-byte seed): {why}",
                path.display()
            ),
            create,
        ),
        Err(e) => r.error(FIELD, e.to_string(), create),
    }
}

fn too_open(field: &str, path: &Path, mode: u32, r: &mut FileReport) {
    r.error(
        field,
        format!(
            "{} is readable by group or others (mode {mode:04o}); the agent refuses a private key others can read",
            path.display()
        ),
        format!(
            "chmod 600 {} (0400 works too; under systemd, hand it over with LoadCredential=)",
            path.display()
        ),
    );
}

/// A file that could not be read, in the user's terms.
fn io_problem(path: &Path, e: &io::Error, create: &str) -> (String, String) {
    match e.kind() {
        io::ErrorKind::NotFound => (
            format!("{} does not exist", path.display()),
            create.to_owned(),
        ),
        io::ErrorKind::PermissionDenied => (
            format!(
                "{} cannot be read by this user (uid {}): permission denied",
                path.display(),
                rustix::process::geteuid().as_raw()
            ),
            "run check as the user the agent runs as (the unit's ExecStartPre does), or give that user read access".to_owned(),
        ),
        _ => (
            format!("{} cannot be read: {e}", path.display()),
            "check the path and the file".to_owned(),
        ),
    }
}

/// A server certificate and its key (`prefix.cert_file`, `prefix.key_file`).
fn server_tls(prefix: &str, cert: &Path, key: &Path, now: SystemTime, r: &mut FileReport) {
    identity(
        (&format!("{prefix}.cert_file"), cert),
        (&format!("{prefix}.key_file"), key),
        now,
        r,
    );
}

/// A certificate chain and its private key: each readable and parsed, the key private, the
/// pair matching, the leaf within its validity.
fn identity(cert: (&str, &Path), key: (&str, &Path), now: SystemTime, r: &mut FileReport) {
    let (cert_field, cert_path) = cert;
    let (key_field, key_path) = key;
    let certs = match tls::load_certs(cert_path) {
        Ok(c) => Some(c),
        Err(e) => {
            tls_error(
                cert_field,
                &e,
                "a PEM certificate chain (the leaf first)",
                r,
            );
            None
        }
    };
    if let Some(leaf) = certs.as_ref().and_then(|c| c.first()) {
        validity(cert_field, cert_path, leaf, now, r);
    }
    let key_ok = match keys::check_private_mode(key_path) {
        Ok(()) => match tls::load_key(key_path) {
            Ok(_) => true,
            Err(e) => {
                tls_error(key_field, &e, "a PEM private key", r);
                false
            }
        },
        // The agent itself accepts a group-readable TLS key (a Kubernetes Secret mounted with
        // fsGroup is 0440 whatever defaultMode says), so this is a warning, not an error.
        Err(KeyError::TooOpen { mode, .. }) => {
            r.warn(
                key_field,
                format!(
                    "{} is readable by group or others (mode {mode:04o})",
                    key_path.display()
                ),
                format!(
                    "chmod 600 {} (0400 works too), unless only the agent's own group can read it (Kubernetes fsGroup)",
                    key_path.display()
                ),
            );
            tls::load_key(key_path)
                .map_err(|e| tls_error(key_field, &e, "a PEM private key", r))
                .is_ok()
        }
        Err(KeyError::Read { cause, .. }) => {
            let (problem, fix) = io_problem(
                key_path,
                &cause,
                "point it at the certificate's private key (PEM)",
            );
            r.error(key_field, problem, fix);
            false
        }
        Err(e) => {
            r.error(key_field, e.to_string(), "check the file");
            false
        }
    };
    if certs.is_some() && key_ok {
        if let Err(TlsError::Identity { source, .. }) =
            tls::server_config(cert_path, key_path, None)
        {
            let problem = match source {
                rustls::Error::InconsistentKeys(_) => format!(
                    "{} is not the private key of the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                ),
                other => format!(
                    "{} and {} do not form a usable identity: {other}",
                    cert_path.display(),
                    key_path.display()
                ),
            };
            r.error(
                key_field,
                problem,
                format!("point {key_field} at the key the certificate was issued for, or reissue the certificate for this key"),
            );
        }
    }
}

/// A CA bundle: readable, every certificate a usable trust anchor and within its dates.
fn ca_bundle(field: &str, path: &Path, now: SystemTime, r: &mut FileReport) {
    match tls::load_certs(path) {
        Ok(certs) => {
            if let Err(e) = tls::load_roots(path) {
                tls_error(field, &e, "a PEM bundle of CA certificates", r);
            }
            for c in &certs {
                validity(field, path, c, now, r);
            }
        }
        Err(e) => tls_error(field, &e, "a PEM bundle of CA certificates", r),
    }
}

fn tls_error(field: &str, e: &TlsError, what: &str, r: &mut FileReport) {
    match e {
        TlsError::Read { path, source } => {
            let (problem, fix) = io_problem(
                path,
                source,
                &format!("point {field} at {what}, or create it (`quorumgate keygen --tls-dir` makes a development PKI)"),
            );
            r.error(field, problem, fix);
        }
        other => r.error(
            field,
            other.to_string(),
            format!("{field} must hold {what}"),
        ),
    }
}

/// A certificate's notBefore/notAfter against `now`.
fn validity(
    field: &str,
    path: &Path,
    der: &rustls_pki_types::CertificateDer<'_>,
    now: SystemTime,
    r: &mut FileReport,
) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        r.error(
            field,
            format!("{}: a certificate in it cannot be parsed", path.display()),
            "replace it with a valid PEM certificate",
        );
        return;
    };
    let at = |t: i64| {
        let secs = u64::try_from(t).unwrap_or(0);
        humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    };
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let subject = cert.subject().to_string();
    let v = cert.validity();
    let (from, until) = (v.not_before.timestamp(), v.not_after.timestamp());
    if until < now_s {
        r.error(
            field,
            format!(
                "{}: the certificate {subject:?} expired at {}",
                path.display(),
                at(until)
            ),
            "renew the certificate (peers and clients refuse an expired one)",
        );
    } else if from > now_s {
        r.error(
            field,
            format!(
                "{}: the certificate {subject:?} is not valid before {} (is this host's clock right?)",
                path.display(),
                at(from)
            ),
            "check the clock, or reissue the certificate",
        );
    } else {
        let warn_s = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
        if until - now_s < warn_s {
            r.warn(
                field,
                format!(
                    "{}: the certificate {subject:?} expires at {}, in {} day(s)",
                    path.display(),
                    at(until),
                    (until - now_s) / 86_400
                ),
                "renew it before it expires",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::devcluster;

    /// A three-agent mutual-TLS cluster's files in a temporary directory; `use1`'s config.
    fn cluster() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = devcluster::Spec::three(dir.path(), "http://127.0.0.1:1/".to_owned());
        spec.tls = true;
        let c = devcluster::write(&spec).unwrap();
        let cfg = Config::load(Some(&c.agents[0].config_path)).unwrap();
        (dir, cfg)
    }

    fn now() -> UnixMillis {
        use crate::clock::Clock as _;
        crate::clock::SystemClock::default().now()
    }

    fn paths(r: &[FieldError]) -> Vec<&str> {
        r.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn a_generated_cluster_passes() {
        let (_dir, cfg) = cluster();
        let r = check_files(&cfg, now());
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn every_file_problem_is_reported_with_its_field() {
        let (dir, mut cfg) = cluster();
        // Another agent's signing key: not the one members[0] lists.
        cfg.local.key_file = dir.path().join("usw2-signing.key");
        let tls = cfg.local.tls.as_mut().unwrap();
        // A key readable by others, and a CA file that does not exist.
        std::fs::set_permissions(&tls.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        tls.client_ca_file = Some(dir.path().join("missing-ca.pem"));
        // A client certificate with another agent's key.
        cfg.local.peer_tls.client_key_file = Some(dir.path().join("usw2.key"));
        let r = check_files(&cfg, now());
        assert_eq!(
            paths(&r.errors),
            [
                "local.key_file",
                "local.tls.client_ca_file",
                "local.peer_tls.client_key_file"
            ],
            "{:?}",
            r.errors
        );
        let text: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("members[0] (use1) lists"), "{}", text[0]);
        assert!(text[1].contains("does not exist"), "{}", text[1]);
        assert!(
            text[2].contains("is not the private key of the certificate"),
            "{}",
            text[2]
        );
        // A TLS key others can read: the agent accepts it, so a warning.
        assert_eq!(
            paths(&r.warnings),
            ["local.tls.key_file"],
            "{:?}",
            r.warnings
        );
        assert!(
            r.warnings[0].problem.contains("mode 0644"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn certificates_near_or_past_their_end_are_flagged() {
        let (dir, mut cfg) = cluster();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ca".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let ca = dir.path().join("short-ca.pem");
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        cfg.local.peer_tls.ca_file = Some(ca);
        // Days since the epoch, leap days uncounted: near enough.
        let at = |y: u64, days: u64| UnixMillis(((y - 1970) * 365 + days) * 86_400_000);
        let soon = check_files(&cfg, at(2029, 354)); // 26 days before (leap days uncounted)
        assert!(soon.errors.is_empty(), "{:?}", soon.errors);
        assert_eq!(paths(&soon.warnings), ["local.peer_tls.ca_file"]);
        assert!(
            soon.warnings[0].problem.contains("expires at 2030-01-01"),
            "{:?}",
            soon.warnings
        );
        let late = check_files(&cfg, at(2030, 40));
        assert_eq!(paths(&late.errors), ["local.peer_tls.ca_file"]);
        assert!(
            late.errors[0].problem.contains("expired at 2030-01-01"),
            "{:?}",
            late.errors
        );
        let early = check_files(&cfg, at(2019, 0));
        assert!(
            early.errors[0].problem.contains("not valid before"),
            "{:?}",
            early.errors
        );
    }
}
