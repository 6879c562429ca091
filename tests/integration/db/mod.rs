//! Database probes against real servers started by the tests themselves ([`servers`]):
//! PostgreSQL 15, a streaming replica of it, and MariaDB. No mocks.
//!
//! Probe-level tests call [`Prober`] directly; [`agent`] runs a real agent process. Every test
//! owns its servers (stopped on drop) and waits on conditions with bounded polls.

mod agent;
mod mariadb;
mod postgres;
mod replica;
mod rpo_gate;
mod servers;
mod tls_db;

use std::time::Duration;

use config::probe::{
    DbConnection, DbEngine, DbWriteProbe, PasswordSource, ProbeSpec, ReplicationLagProbe, Secret,
    SslMode, DEFAULT_HEARTBEAT_TABLE,
};
use quorum::AgentId;
use quorumgate::probe::{ProbeOutcome, Prober};
use quorumgate::tls;
use tokio::time::Instant;

use servers::{DB, PROBE_PASSWORD, PROBE_USER};

/// The probes' timeout in these tests.
pub const T: Duration = Duration::from_secs(3);

pub fn prober(agent: &str) -> Prober {
    tls::install_crypto_provider();
    Prober::new(AgentId::new(agent).expect("agent id")).with_region("test-region")
}

/// The probe user on 127.0.0.1:`port`, plain TCP, statement 2.5s, lock wait 1s.
pub fn conn(port: u16) -> DbConnection {
    DbConnection {
        host: "127.0.0.1".into(),
        port,
        dbname: DB.into(),
        user: PROBE_USER.into(),
        password: PasswordSource::Inline(Secret::new(PROBE_PASSWORD)),
        sslmode: SslMode::Disable,
        ca_file: None,
        connect_timeout_ms: 2_000,
        statement_timeout_ms: 2_500,
        lock_timeout_ms: 1_000,
        table: DEFAULT_HEARTBEAT_TABLE.into(),
    }
}

pub fn pg_write(port: u16, create_table: bool) -> ProbeSpec {
    ProbeSpec::Postgres(DbWriteProbe {
        conn: conn(port),
        create_table,
    })
}

pub fn mysql_write(port: u16, create_table: bool) -> ProbeSpec {
    ProbeSpec::Mysql(DbWriteProbe {
        conn: conn(port),
        create_table,
    })
}

pub fn lag_probe(engine: DbEngine, port: u16) -> ProbeSpec {
    ProbeSpec::ReplicationLag(ReplicationLagProbe {
        engine,
        conn: conn(port),
        max_lag_ms: None,
    })
}

/// Asserts the outcome's reason, showing the whole outcome otherwise.
#[track_caller]
pub fn assert_reason(o: &ProbeOutcome, reason: &str) {
    assert_eq!(o.reason.as_str(), reason, "{o:?}");
    assert_eq!(o.healthy, reason == "ok", "{o:?}");
}

/// Probes until `pred` holds for an outcome (bounded); returns that outcome. For changes that
/// take effect asynchronously on the server (a reload, a lock taken by another session).
pub async fn probe_until(
    p: &Prober,
    spec: &ProbeSpec,
    limit: Duration,
    what: &str,
    pred: impl Fn(&ProbeOutcome) -> bool,
) -> ProbeOutcome {
    let end = Instant::now() + limit;
    loop {
        let o = p.probe(spec, T).await;
        if pred(&o) {
            return o;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; last outcome {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
