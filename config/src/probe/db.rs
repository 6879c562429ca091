//! Validated database probe specifications: the `postgres` / `mysql` write path and the
//! `replication_lag` probe. Passwords are held in a [`Secret`], which never prints.

use std::fmt;
use std::path::PathBuf;

/// Default name of the heartbeat table.
pub const DEFAULT_HEARTBEAT_TABLE: &str = "quorumgate_heartbeat";

/// A credential. `Debug` prints `Secret(<redacted>)`; there is no `Display`, so it cannot end up
/// in a log line or an error message by accident. [`Secret::expose`] is the only way to read it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text, for handing to a database driver. Never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a database password comes from. Env and file sources are read at every (re)connect,
/// so a rotated password is picked up without a restart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum PasswordSource {
    /// No password (trust, peer or certificate authentication).
    #[default]
    None,
    /// `password = "…"` in the file (discouraged; the validator warns).
    Inline(Secret),
    /// `password_env = "NAME"`: the value of this environment variable.
    Env(String),
    /// `password_file = "/path"`: the file's contents, without a trailing newline.
    File(PathBuf),
}

impl PasswordSource {
    /// `none`, `inline`, `env` or `file`: for status and logs (never the value).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            PasswordSource::None => "none",
            PasswordSource::Inline(_) => "inline",
            PasswordSource::Env(_) => "env",
            PasswordSource::File(_) => "file",
        }
    }
}

/// TLS to the database server, in libpq's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS; the certificate chain must verify, the host name is not checked.
    VerifyCa,
    /// TLS; the chain must verify and the certificate must name `host` (the default).
    VerifyFull,
}

impl SslMode {
    /// `disable`, `verify-ca` or `verify-full`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Which database a probe speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DbEngine {
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl DbEngine {
    /// `postgres` or `mysql`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DbEngine::Postgres => "postgres",
            DbEngine::Mysql => "mysql",
        }
    }
}

/// How to reach and log in to a database. One dedicated connection per probe is kept with
/// these settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DbConnection {
    /// A DNS name or an IP address.
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: PasswordSource,
    pub sslmode: SslMode,
    /// PEM bundle of trusted CAs (`verify-*` only). `None`: the platform's roots plus the
    /// webpki roots.
    pub ca_file: Option<PathBuf>,
    /// TCP connect, TLS and login; ≤ the probe's timeout.
    pub connect_timeout_ms: u64,
    /// Server-side limit of one statement; ≤ the probe's timeout.
    pub statement_timeout_ms: u64,
    /// Server-side limit of waiting for a row lock; < `statement_timeout_ms`. MySQL/MariaDB
    /// count it in whole seconds (rounded up).
    pub lock_timeout_ms: u64,
    /// The heartbeat table: `name` or `schema.name`, each part `[A-Za-z_][A-Za-z0-9_]*`, so it
    /// can be quoted into SQL safely.
    pub table: String,
}

/// `postgres` / `mysql`: in a transaction, upsert this agent's heartbeat row, commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DbWriteProbe {
    pub conn: DbConnection,
    /// Create the heartbeat table when it is missing (default false: the probe fails with
    /// reason `no_table` and says how to create it).
    pub create_table: bool,
}

/// `replication_lag`: on a standby/replica, `now − max(ts)` of the heartbeat rows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplicationLagProbe {
    pub engine: DbEngine,
    pub conn: DbConnection,
    /// `Some`: a measured lag above this is unhealthy (reason `lag`). `None`: the lag is only
    /// reported (the database gate judges it).
    pub max_lag_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let src = PasswordSource::Inline(s.clone());
        assert!(!format!("{src:?}").contains("hunter2"));
        assert!(!format!("{src:#?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
