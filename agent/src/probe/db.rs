//! What the database probes share: connection slots, credentials, TLS, the heartbeat table's
//! SQL, and the lag arithmetic.
//!
//! # Reasons (database probes)
//!
//! | reason | meaning |
//! |---|---|
//! | `connect` | no connection: refused, reset, closed, server shutting down, too many connections |
//! | `auth` | the server rejected the login (wrong user/password, no access to the database) |
//! | `tls` | TLS handshake or certificate verification failed, or the CA file is unusable |
//! | `timeout` | the probe's deadline, `connect_timeout` or the server's statement timeout |
//! | `read_only` | the server takes no writes: a standby (`pg_is_in_recovery()`), `default_transaction_read_only`, SQLSTATE 25006, MySQL `@@read_only` / `@@super_read_only`, errors 1290 / 1792 |
//! | `lock_timeout` | the heartbeat row stayed locked longer than `lock_timeout` |
//! | `disk_full` | the server is out of disk space |
//! | `no_table` | the heartbeat table does not exist (and `create_table` is false) |
//! | `no_heartbeat` | `replication_lag`: the table has no row yet |
//! | `lag` | `replication_lag`: the lag is above `max_lag` |
//! | `error` | anything else, including a password that could not be read (env var unset, file unreadable) |
//!
//! # Connections
//! One dedicated connection per probe (kind and connection settings), never a pool: a pool
//! would hide the failures the probe exists to see. The connection is taken out of its slot for
//! the duration of a probe and put back only after a healthy result; any error or timeout drops
//! it, and the next probe dials afresh (and re-reads the password).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::probe::{DbConnection, PasswordSource, ReplicationLagProbe, Secret, SslMode};
use quorum::UnixMillis;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::time::{error::Elapsed, Instant};

use super::ProbeOutcome;
use crate::tls;

/// A probe failure: the reason code and what an operator needs to know. Never contains a
/// password (drivers don't put it in their errors, and we never format one).
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct DbFailure {
    pub reason: &'static str,
    pub detail: String,
}

impl DbFailure {
    #[must_use]
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The detail of a `no_table` failure: how to fix it.
#[must_use]
pub fn no_table_detail(table: &str) -> String {
    format!(
        "table {table} does not exist; create it with the SQL in the README (\"Database checks\"), or set create_table = true"
    )
}

/// Where a probe was when its deadline passed, for the detail of a `timeout`.
#[derive(Debug, Default)]
pub struct Progress(AtomicU8);

/// Steps of a database probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// Waiting for the previous probe of the same target to give the connection back.
    Waiting = 0,
    Connecting = 1,
    Querying = 2,
}

impl Progress {
    pub fn at(&self, step: Step) {
        self.0.store(step as u8, Ordering::Relaxed);
    }

    fn describe(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            0 => "waiting for the previous probe of this target",
            1 => "connecting",
            _ => "waiting for the server",
        }
    }
}

/// Turns the result of one probe run (bounded by `timeout`) into an outcome.
pub fn finish(
    result: Result<Result<ProbeOutcome, DbFailure>, Elapsed>,
    progress: &Progress,
    start: Instant,
    timeout: Duration,
) -> ProbeOutcome {
    match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(f)) => ProbeOutcome::unhealthy(f.reason, start.elapsed(), f.detail),
        Err(_) => ProbeOutcome::unhealthy(
            "timeout",
            start.elapsed(),
            format!(
                "no result within {} ({})",
                humantime::format_duration(timeout),
                progress.describe()
            ),
        ),
    }
}

/// A connection's slot: `None` between a failure and the next dial.
pub type Slot<C> = Arc<tokio::sync::Mutex<Option<C>>>;

/// The connection slots of one engine, by role (`write`, `lag`) and connection settings.
pub struct Slots<C> {
    map: Mutex<HashMap<(&'static str, DbConnection), Slot<C>>>,
}

impl<C> Default for Slots<C> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<C> fmt::Debug for Slots<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.map.lock().map_or(0, |m| m.len());
        write!(f, "Slots({n} targets)")
    }
}

impl<C> Slots<C> {
    /// The slot of this probe target, created empty on first use.
    pub fn slot(&self, role: &'static str, conn: &DbConnection) -> Slot<C> {
        // Nothing in the map can be left half-updated by a panic; keep using it.
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry((role, conn.clone())).or_default())
    }
}

/// A database TLS config is shared by every probe with the same CA file and mode.
type TlsKey = (Option<PathBuf>, SslMode);

/// Database state shared by a [`super::Prober`]'s probes.
#[derive(Debug, Default)]
pub struct DbState {
    pub(super) pg: Slots<super::postgres::Conn>,
    pub(super) mysql: Slots<super::mysql::Conn>,
    tls: Mutex<HashMap<TlsKey, Arc<ClientConfig>>>,
    seq: AtomicU64,
}

impl DbState {
    /// The next heartbeat sequence number: rising, and at least the wall clock in ms, so it keeps
    /// rising across restarts (like ballot sequence numbers).
    pub fn next_seq(&self, now: UnixMillis) -> u64 {
        let prev = self
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(1).max(now.0))
            })
            .unwrap_or_else(|s| s);
        prev.saturating_add(1).max(now.0)
    }

    /// A rustls client config for `sslmode` = verify-ca / verify-full (no ALPN: Postgres 17
    /// rejects a TLS connection that offers an ALPN protocol other than `postgresql`).
    pub fn tls_config(&self, c: &DbConnection) -> Result<Arc<ClientConfig>, DbFailure> {
        let key = (c.ca_file.clone(), c.sslmode);
        let lock = || {
            self.tls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(config) = lock().get(&key) {
            return Ok(Arc::clone(config));
        }
        tls::install_crypto_provider();
        let roots = Arc::new(
            tls::root_store(c.ca_file.as_deref())
                .map_err(|e| DbFailure::new("tls", e.to_string()))?,
        );
        let builder = ClientConfig::builder();
        let config = match c.sslmode {
            SslMode::VerifyCa => {
                let inner = WebPkiServerVerifier::builder(roots)
                    .build()
                    .map_err(|e| DbFailure::new("tls", format!("CA bundle: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                    .with_no_client_auth()
            }
            SslMode::VerifyFull | SslMode::Disable => {
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(Arc::clone(
            lock().entry(key).or_insert_with(|| Arc::new(config)),
        ))
    }
}

/// `sslmode = "verify-ca"`: the chain must verify; a name mismatch is accepted (libpq's
/// verify-ca). Everything else is the webpki verifier's decision.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Reads the password from its source. Env and file are read at every dial, so a rotated
/// password is picked up by the next reconnect. Errors name the source, never the value.
pub async fn password(src: &PasswordSource) -> Result<Option<Secret>, DbFailure> {
    match src {
        PasswordSource::None => Ok(None),
        PasswordSource::Inline(s) => Ok(Some(s.clone())),
        PasswordSource::Env(name) => match std::env::var(name) {
            Ok(v) => Ok(Some(Secret::new(v))),
            Err(std::env::VarError::NotPresent) => Err(DbFailure::new(
                "error",
                format!("password_env: environment variable {name} is not set"),
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(DbFailure::new(
                "error",
                format!("password_env: environment variable {name} is not valid UTF-8"),
            )),
        },
        PasswordSource::File(path) => match tokio::fs::read_to_string(path).await {
            Ok(mut v) => {
                if v.ends_with('\n') {
                    v.pop();
                    if v.ends_with('\r') {
                        v.pop();
                    }
                }
                Ok(Some(Secret::new(v)))
            }
            Err(e) => Err(DbFailure::new(
                "error",
                format!("password_file {}: {e}", path.display()),
            )),
        },
    }
}

/// `outer: inner: innermost`, de-duplicated (drivers often repeat their source's text).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The newest heartbeat row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub agent: String,
    /// Unix ms by the writing agent's clock.
    pub ts_ms: i64,
    pub seq: i64,
}

/// `now − ts`, never negative: a heartbeat from a clock ahead of ours reads as no lag.
#[must_use]
pub fn lag_ms(now: UnixMillis, ts_ms: i64) -> u64 {
    let lag = i128::from(now.0) - i128::from(ts_ms);
    u64::try_from(lag.max(0)).unwrap_or(u64::MAX)
}

/// The outcome of a lag measurement. `role`: `standby`, `primary` or `replica` (for the detail).
#[must_use]
pub fn lag_outcome(
    spec: &ReplicationLagProbe,
    now: UnixMillis,
    newest: Option<Heartbeat>,
    role: &str,
    latency: Duration,
) -> ProbeOutcome {
    let Some(hb) = newest else {
        return ProbeOutcome::unhealthy(
            "no_heartbeat",
            latency,
            format!(
                "{} has no heartbeat row yet ({role}); a postgres/mysql write check must write to its primary",
                spec.conn.table
            ),
        );
    };
    let lag = lag_ms(now, hb.ts_ms);
    let detail = format!(
        "lag {} ({role}; newest heartbeat by {} seq {})",
        humantime::format_duration(Duration::from_millis(lag)),
        hb.agent,
        hb.seq
    );
    match spec.max_lag_ms {
        Some(max) if lag > max => ProbeOutcome::unhealthy(
            "lag",
            latency,
            format!(
                "{detail} is above max_lag {}",
                humantime::format_duration(Duration::from_millis(max))
            ),
        )
        .with_lag_ms(lag),
        _ => ProbeOutcome::healthy(latency, detail).with_lag_ms(lag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_now_minus_ts_and_never_negative() {
        assert_eq!(lag_ms(UnixMillis(10_000), 7_500), 2_500);
        assert_eq!(lag_ms(UnixMillis(10_000), 12_000), 0);
        assert_eq!(
            lag_ms(UnixMillis(10_000), i64::MIN),
            u64::try_from(i128::from(10_000u64) - i128::from(i64::MIN)).unwrap_or(u64::MAX)
        );
    }

    #[test]
    fn seq_rises_and_follows_the_clock() {
        let s = DbState::default();
        assert_eq!(s.next_seq(UnixMillis(1000)), 1000);
        assert_eq!(s.next_seq(UnixMillis(1000)), 1001);
        assert_eq!(s.next_seq(UnixMillis(5)), 1002);
        assert_eq!(s.next_seq(UnixMillis(9000)), 9000);
    }

    #[tokio::test]
    async fn password_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").expect("write");
        let got = password(&PasswordSource::File(f)).await.expect("file");
        assert_eq!(
            got.map(|s| s.expose().to_owned()).as_deref(),
            Some("from-file")
        );
        let missing = password(&PasswordSource::File(dir.path().join("nope")))
            .await
            .expect_err("missing file");
        assert_eq!(missing.reason, "error");
        let unset = password(&PasswordSource::Env("QG_TEST_SURELY_UNSET_VAR".into()))
            .await
            .expect_err("unset env");
        assert!(unset.detail.contains("QG_TEST_SURELY_UNSET_VAR"), "{unset}");
        assert!(password(&PasswordSource::None)
            .await
            .expect("none")
            .is_none());
    }
}
