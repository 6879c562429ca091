//! Database probe tables (`postgres`, `mysql`, `replication_lag`) → [`DbWriteProbe`] /
//! [`ReplicationLagProbe`].
//!
//! A password is never part of an error or warning: messages name the key, not the value.

use std::net::IpAddr;

use crate::errors::{FieldPath, Report};
use crate::parse::{duration_ms, fmt_ms, in_range, is_dns_name, non_empty, opt_file_path};
use crate::probe::{
    DbConnection, DbEngine, DbWriteProbe, PasswordSource, ReplicationLagProbe, Secret, SslMode,
    DEFAULT_HEARTBEAT_TABLE,
};
use crate::raw::{Dur, RawDb, RawDbEngine, RawSslMode};

/// Longest identifier part (Postgres truncates names at 63 bytes; MySQL allows 64).
const MAX_IDENT_LEN: usize = 63;

/// `[….postgres]` / `[….mysql]`: the write path.
pub(super) fn write(
    raw: &RawDb,
    engine: DbEngine,
    timeout_ms: Option<u64>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<DbWriteProbe> {
    let lag_only = format!(
        "is only used in a [replication_lag] table, not in [{}]",
        engine.as_str()
    );
    for (key, set) in [
        ("engine", raw.engine.is_some()),
        ("max_lag", raw.max_lag.is_some()),
    ] {
        if set {
            report.error(&p.key(key), lag_only.clone(), "remove it");
        }
    }
    let conn = connection(raw, Some(engine), timeout_ms, p, report);
    let create_table = raw.create_table.unwrap_or(false);
    if raw.engine.is_some() || raw.max_lag.is_some() {
        return None;
    }
    Some(DbWriteProbe {
        conn: conn?,
        create_table,
    })
}

/// `[….replication_lag]`: read the heartbeat table on a standby/replica.
pub(super) fn lag(
    raw: &RawDb,
    timeout_ms: Option<u64>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<ReplicationLagProbe> {
    let engine_path = p.key("engine");
    let engine = match raw.engine {
        Some(RawDbEngine::Postgres) => Some(DbEngine::Postgres),
        Some(RawDbEngine::Mysql) => Some(DbEngine::Mysql),
        None => {
            if !report.has_error_at(&engine_path) {
                report.error(
                    &engine_path,
                    "is required",
                    "add engine = \"postgres\" or engine = \"mysql\"",
                );
            }
            None
        }
    };
    if raw.create_table.is_some() {
        report.error(
            &p.key("create_table"),
            "is only used by the write probes (the lag probe only reads, often on a read-only standby)",
            "remove it; let the primary's postgres/mysql check create the table, or create it by hand",
        );
    }
    let conn = connection(raw, engine, timeout_ms, p, report);
    let max_lag = match &raw.max_lag {
        None => Some(None),
        Some(d) => duration_ms(&d.0, &p.key("max_lag"), report).map(Some),
    };
    if raw.create_table.is_some() {
        return None;
    }
    Some(ReplicationLagProbe {
        engine: engine?,
        conn: conn?,
        max_lag_ms: max_lag?,
    })
}

/// The connection settings shared by all three tables. `engine` `None`: unknown (already
/// reported), so the default port is unknown too.
fn connection(
    raw: &RawDb,
    engine: Option<DbEngine>,
    timeout_ms: Option<u64>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<DbConnection> {
    let host = host(raw.host.as_ref(), &p.key("host"), report);
    let port_path = p.key("port");
    let port = match (raw.port, engine) {
        (Some(n), _) => in_range(n, 1, 65_535, &port_path, report, "e.g. 5432 or 3306")
            .and_then(|n| u16::try_from(n).ok()),
        (None, _) if report.has_error_at(&port_path) => None,
        (None, Some(DbEngine::Postgres)) => Some(5432),
        (None, Some(DbEngine::Mysql)) => Some(3306),
        (None, None) => None,
    };
    let dbname = required_text(raw.dbname.as_ref(), "dbname", "\"orders\"", p, report);
    let user = required_text(raw.user.as_ref(), "user", "\"quorumgate\"", p, report);
    let password = password(raw, p, report);
    let (sslmode, ca_file) = tls(raw, p, report);
    let (connect, statement, lock) = timeouts(raw, engine, timeout_ms, p, report);
    let table = match &raw.table {
        None if report.has_error_at(&p.key("table")) => None,
        None => Some(DEFAULT_HEARTBEAT_TABLE.to_owned()),
        Some(t) => table_name(t, &p.key("table"), report),
    };
    Some(DbConnection {
        host: host?,
        port: port?,
        dbname: dbname?,
        user: user?,
        password: password?,
        sslmode: sslmode?,
        ca_file: ca_file?,
        connect_timeout_ms: connect?,
        statement_timeout_ms: statement?,
        lock_timeout_ms: lock?,
        table: table?,
    })
}

fn host(raw: Option<&String>, p: &FieldPath, report: &mut Report) -> Option<String> {
    let Some(h) = raw else {
        if !report.has_error_at(p) {
            report.error(p, "is required", "add host = \"db.internal\"");
        }
        return None;
    };
    let h = h.trim();
    if is_dns_name(h) || h.parse::<IpAddr>().is_ok() {
        Some(h.to_owned())
    } else {
        report.error(
            p,
            format!("{h:?} is not a DNS name or IP address"),
            "write the server's name or address without a port, e.g. \"db.internal\" (the port is `port`)",
        );
        None
    }
}

fn required_text(
    raw: Option<&String>,
    key: &str,
    example: &str,
    p: &FieldPath,
    report: &mut Report,
) -> Option<String> {
    let path = p.key(key);
    match raw {
        Some(v) => non_empty(v, &path, report, &format!("write {key} = {example}")),
        None => {
            if !report.has_error_at(&path) {
                report.error(&path, "is required", format!("add {key} = {example}"));
            }
            None
        }
    }
}

/// At most one of `password`, `password_env`, `password_file`. The value is never echoed.
fn password(raw: &RawDb, p: &FieldPath, report: &mut Report) -> Option<PasswordSource> {
    let given: Vec<&str> = [
        ("password", raw.password.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("password_file", raw.password_file.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if given.len() > 1 {
        report.error(
            &p.key(given[1]),
            format!(
                "only one password source is allowed, found {}",
                given.join(" and ")
            ),
            "keep one of password_env (recommended), password_file or password",
        );
        return None;
    }
    if let Some(secret) = &raw.password {
        let path = p.key("password");
        if secret.0.is_empty() {
            report.error(
                &path,
                "must not be empty",
                "remove it, or use password_env / password_file",
            );
            return None;
        }
        report.warn(
            &path,
            "the password is written in the config file (it is kept out of the digest, logs and status, but anyone who can read the file can read it)",
            "use password_env = \"NAME\" or password_file = \"/path\" instead",
        );
        return Some(PasswordSource::Inline(Secret::new(secret.0.clone())));
    }
    if let Some(name) = &raw.password_env {
        let path = p.key("password_env");
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            report.error(
                &path,
                format!("{name:?} is not an environment variable name"),
                "use letters, digits and '_', not starting with a digit, e.g. \"QG_DB_PASSWORD\"",
            );
            return None;
        }
        return Some(PasswordSource::Env(name.clone()));
    }
    let file = opt_file_path(
        raw.password_file.as_ref(),
        "/etc/quorumgate/db-password",
        &p.key("password_file"),
        report,
    )?;
    Some(file.map_or(PasswordSource::None, PasswordSource::File))
}

#[allow(clippy::type_complexity)]
fn tls(
    raw: &RawDb,
    p: &FieldPath,
    report: &mut Report,
) -> (Option<SslMode>, Option<Option<std::path::PathBuf>>) {
    let mode = match raw.sslmode {
        Some(RawSslMode::Disable) => Some(SslMode::Disable),
        Some(RawSslMode::VerifyCa) => Some(SslMode::VerifyCa),
        Some(RawSslMode::VerifyFull) => Some(SslMode::VerifyFull),
        None if report.has_error_at(&p.key("sslmode")) => None,
        None => Some(SslMode::VerifyFull),
    };
    let ca_path = p.key("ca_file");
    let ca = opt_file_path(raw.ca_file.as_ref(), "/etc/ssl/db-ca.pem", &ca_path, report);
    if mode == Some(SslMode::Disable) && raw.ca_file.is_some() {
        report.error(
            &ca_path,
            "is only used with sslmode = \"verify-ca\" or \"verify-full\"",
            "remove it, or turn TLS on",
        );
        return (mode, None);
    }
    (mode, ca)
}

/// (connect, statement, lock) timeouts in ms. `timeout_ms`: the probe's timeout, which bounds
/// them all and is the default of the first two; `None` when it was invalid (already reported).
fn timeouts(
    raw: &RawDb,
    engine: Option<DbEngine>,
    timeout_ms: Option<u64>,
    p: &FieldPath,
    report: &mut Report,
) -> (Option<u64>, Option<u64>, Option<u64>) {
    let bounded = |raw: Option<&Dur>, key: &str, report: &mut Report| -> Option<u64> {
        let path = p.key(key);
        match raw {
            None if report.has_error_at(&path) => None,
            None => timeout_ms,
            Some(d) => {
                let ms = duration_ms(&d.0, &path, report)?;
                match timeout_ms {
                    Some(t) if ms > t => {
                        report.error(
                            &path,
                            format!(
                                "must not be longer than the probe's timeout ({}), is {}",
                                fmt_ms(t),
                                fmt_ms(ms)
                            ),
                            format!("lower {key}, or raise the timeout"),
                        );
                        None
                    }
                    _ => Some(ms),
                }
            }
        }
    };
    let connect = bounded(raw.connect_timeout.as_ref(), "connect_timeout", report);
    let statement = bounded(raw.statement_timeout.as_ref(), "statement_timeout", report);
    let lock_path = p.key("lock_timeout");
    let lock = match (&raw.lock_timeout, statement) {
        (None, _) if report.has_error_at(&lock_path) => None,
        (None, Some(s)) => Some((s / 2).max(1)),
        (None, None) => None,
        (Some(d), s) => duration_ms(&d.0, &lock_path, report).and_then(|ms| match s {
            Some(s) if ms >= s => {
                report.error(
                    &lock_path,
                    format!("must be shorter than statement_timeout ({}), is {}", fmt_ms(s), fmt_ms(ms)),
                    "lower lock_timeout (a lock wait longer than the statement timeout is reported as `timeout`)",
                );
                None
            }
            _ => Some(ms),
        }),
    };
    if let (Some(DbEngine::Mysql), Some(l), Some(s)) = (engine, lock, statement) {
        let whole_secs = l.div_ceil(1000) * 1000;
        if whole_secs >= s {
            report.warn(
                &lock_path,
                format!(
                    "MySQL/MariaDB count lock waits in whole seconds: {} becomes {}, not shorter than statement_timeout ({})",
                    fmt_ms(l), fmt_ms(whole_secs), fmt_ms(s)
                ),
                "raise statement_timeout (and timeout) above the lock timeout in whole seconds, so a held lock reports `lock_timeout`",
            );
        }
    }
    (connect, statement, lock)
}

/// `name` or `schema.name`; each part `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes.
fn table_name(raw: &str, p: &FieldPath, report: &mut Report) -> Option<String> {
    let parts: Vec<&str> = raw.split('.').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|part| {
            part.len() <= MAX_IDENT_LEN
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if ok {
        Some(raw.to_owned())
    } else {
        report.error(
            p,
            format!("{raw:?} is not a table name"),
            format!("write name or schema.name, each of letters, digits and '_' (at most {MAX_IDENT_LEN}), e.g. \"{DEFAULT_HEARTBEAT_TABLE}\""),
        );
        None
    }
}
