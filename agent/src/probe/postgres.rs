//! PostgreSQL probes (tokio-postgres, rustls on aws-lc-rs): the write path and replication lag.
//!
//! Write: in a transaction, `INSERT … ON CONFLICT (agent) DO UPDATE` this agent's heartbeat row
//! (`agent`, `region`, `ts` = Unix ms by the agent's clock, `seq`), then `COMMIT`. A plain
//! `BEGIN` (not `READ WRITE`) so `default_transaction_read_only` fences the probe like any
//! other writer. At dial the session gets `statement_timeout` / `lock_timeout`, and a standby
//! (`pg_is_in_recovery()`) is reported as `read_only` before any write is tried.
//!
//! Lag: `now − max(ts)` over the heartbeat rows, `now` read from the agent's clock right after
//! the row arrives; see [`super::db::lag_outcome`].

use std::time::Duration;

use config::probe::{DbConnection, DbWriteProbe, ReplicationLagProbe, SslMode};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::db::{self, DbFailure, Heartbeat, Progress, Step};
use super::{ProbeOutcome, Prober};

/// One dedicated connection and its prepared statement.
pub struct Conn {
    client: Client,
    stmt: Statement,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("postgres::Conn")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the client closes the connection; the driver task must not outlive it.
        self.task.abort();
    }
}

/// `"schema"."name"`: parts are validated as `[A-Za-z_][A-Za-z0-9_]*`, so quoting is safe.
fn quoted(table: &str) -> String {
    table
        .split('.')
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(".")
}

/// The heartbeat table (also in the README).
#[must_use]
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n  agent  text PRIMARY KEY,\n  region text NOT NULL,\n  ts     bigint NOT NULL,\n  seq    bigint NOT NULL\n)",
        quoted(table)
    )
}

fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {} (agent, region, ts, seq) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (agent) DO UPDATE SET region = EXCLUDED.region, ts = EXCLUDED.ts, seq = EXCLUDED.seq",
        quoted(table)
    )
}

/// One row always: the server's role, and the newest heartbeat if there is one.
fn newest_sql(table: &str) -> String {
    format!(
        "SELECT pg_is_in_recovery(), h.agent, h.ts, h.seq FROM (SELECT 1) AS one \
         LEFT JOIN (SELECT agent, ts, seq FROM {} ORDER BY ts DESC LIMIT 1) AS h ON true",
        quoted(table)
    )
}

/// The `postgres` write probe.
pub async fn write(prober: &Prober, spec: &DbWriteProbe, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let progress = Progress::default();
    let slot = prober.db.pg.slot("write", &spec.conn);
    let run = async {
        let mut guard = slot.lock().await;
        let mut conn = match guard.take() {
            Some(c) => c,
            None => {
                progress.at(Step::Connecting);
                let (client, task) = dial(prober, &spec.conn).await?;
                if in_recovery(&client).await? {
                    return Err(DbFailure::new(
                        "read_only",
                        "the server is a standby (pg_is_in_recovery() is true)",
                    ));
                }
                let stmt = prepare(&client, &upsert_sql(&spec.conn.table), &spec.conn).await;
                let stmt = match stmt {
                    Err(f) if f.reason == "no_table" && spec.create_table => {
                        create_table(&client, &spec.conn.table).await?;
                        prepare(&client, &upsert_sql(&spec.conn.table), &spec.conn).await?
                    }
                    other => other?,
                };
                Conn { client, stmt, task }
            }
        };
        progress.at(Step::Querying);
        let now = prober.clock.now();
        let seq = prober.db.next_seq(now);
        upsert(&mut conn, prober, now.0, seq)
            .await
            .map_err(|e| classify(&e, &spec.conn.table))?;
        *guard = Some(conn);
        Ok(ProbeOutcome::healthy(
            start.elapsed(),
            format!("heartbeat seq {seq} committed"),
        ))
    };
    db::finish(
        tokio::time::timeout(timeout, run).await,
        &progress,
        start,
        timeout,
    )
}

/// The `replication_lag` probe against Postgres.
pub async fn lag(prober: &Prober, spec: &ReplicationLagProbe, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let progress = Progress::default();
    let slot = prober.db.pg.slot("lag", &spec.conn);
    let run = async {
        let mut guard = slot.lock().await;
        let conn = match guard.take() {
            Some(c) => c,
            None => {
                progress.at(Step::Connecting);
                let (client, task) = dial(prober, &spec.conn).await?;
                let stmt = prepare(&client, &newest_sql(&spec.conn.table), &spec.conn).await?;
                Conn { client, stmt, task }
            }
        };
        progress.at(Step::Querying);
        let row = conn
            .client
            .query_one(&conn.stmt, &[])
            .await
            .map_err(|e| classify(&e, &spec.conn.table))?;
        let now = prober.clock.now();
        let decode = |e: tokio_postgres::Error| {
            DbFailure::new(
                "error",
                format!(
                    "heartbeat table {}: unexpected column types: {e}",
                    spec.conn.table
                ),
            )
        };
        let standby: bool = row.try_get(0).map_err(decode)?;
        let agent: Option<String> = row.try_get(1).map_err(decode)?;
        let ts: Option<i64> = row.try_get(2).map_err(decode)?;
        let seq: Option<i64> = row.try_get(3).map_err(decode)?;
        let newest = match (agent, ts, seq) {
            (Some(agent), Some(ts_ms), Some(seq)) => Some(Heartbeat { agent, ts_ms, seq }),
            _ => None,
        };
        *guard = Some(conn);
        let role = if standby { "standby" } else { "primary" };
        Ok(db::lag_outcome(spec, now, newest, role, start.elapsed()))
    };
    db::finish(
        tokio::time::timeout(timeout, run).await,
        &progress,
        start,
        timeout,
    )
}

/// Connects (within `connect_timeout`) and sets the session's timeouts.
async fn dial(prober: &Prober, c: &DbConnection) -> Result<(Client, JoinHandle<()>), DbFailure> {
    let password = db::password(&c.password).await?;
    let connect_timeout = Duration::from_millis(c.connect_timeout_ms);
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&c.host)
        .port(c.port)
        .dbname(&c.dbname)
        .user(&c.user)
        .application_name("quorumgate")
        .connect_timeout(connect_timeout);
    if let Some(pw) = &password {
        cfg.password(pw.expose());
    }
    let tls = match c.sslmode {
        SslMode::Disable => None,
        SslMode::VerifyCa | SslMode::VerifyFull => {
            Some(MakeRustlsConnect::new((*prober.db.tls_config(c)?).clone()))
        }
    };
    let connect = async {
        match tls {
            None => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, connection) = cfg.connect(NoTls).await?;
                Ok::<_, tokio_postgres::Error>((client, spawn_driver(connection)))
            }
            Some(tls) => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let (client, connection) = cfg.connect(tls).await?;
                Ok((client, spawn_driver(connection)))
            }
        }
    };
    let (client, task) = match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(classify(&e, &c.table)),
        Err(_) => {
            return Err(DbFailure::new(
                "timeout",
                format!(
                    "connecting to {}:{}: no answer within connect_timeout {}",
                    c.host,
                    c.port,
                    humantime::format_duration(connect_timeout)
                ),
            ))
        }
    };
    let setup = format!(
        "SET statement_timeout = {}; SET lock_timeout = {}",
        c.statement_timeout_ms, c.lock_timeout_ms
    );
    client
        .batch_execute(&setup)
        .await
        .map_err(|e| classify(&e, &c.table))?;
    Ok((client, task))
}

fn spawn_driver<F>(connection: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    })
}

async fn in_recovery(client: &Client) -> Result<bool, DbFailure> {
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| classify(&e, ""))?;
    row.try_get(0)
        .map_err(|e| DbFailure::new("error", format!("pg_is_in_recovery(): {e}")))
}

async fn prepare(client: &Client, sql: &str, c: &DbConnection) -> Result<Statement, DbFailure> {
    client
        .prepare(sql)
        .await
        .map_err(|e| classify(&e, &c.table))
}

async fn create_table(client: &Client, table: &str) -> Result<(), DbFailure> {
    client
        .batch_execute(&create_table_sql(table))
        .await
        .map_err(|e| classify(&e, table))?;
    tracing::info!(table, "created the heartbeat table (create_table = true)");
    Ok(())
}

async fn upsert(
    conn: &mut Conn,
    prober: &Prober,
    ts_ms: u64,
    seq: u64,
) -> Result<(), tokio_postgres::Error> {
    // Both fit an i64 until the year 292 million.
    let ts = i64::try_from(ts_ms).unwrap_or(i64::MAX);
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let tx = conn.client.transaction().await?;
    tx.execute(
        &conn.stmt,
        &[
            &prober.agent_id.as_str(),
            &prober.region.as_str(),
            &ts,
            &seq,
        ],
    )
    .await?;
    tx.commit().await
}

/// A driver error → reason and detail. `table`: the heartbeat table, for the `no_table` fix.
fn classify(e: &tokio_postgres::Error, table: &str) -> DbFailure {
    if crate::local_resource::in_chain(e) {
        return DbFailure::new(crate::local_resource::REASON, db::error_chain(e));
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let reason = match code {
            c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => "read_only",
            c if *c == SqlState::LOCK_NOT_AVAILABLE => "lock_timeout",
            c if *c == SqlState::QUERY_CANCELED => "timeout",
            c if *c == SqlState::DISK_FULL => "disk_full",
            c if *c == SqlState::UNDEFINED_TABLE => {
                return DbFailure::new("no_table", db::no_table_detail(table))
            }
            c if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                "auth"
            }
            c if c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS =>
            {
                "connect"
            }
            _ => "error",
        };
        return DbFailure::new(
            reason,
            format!("{} {}: {}", db.severity(), code.code(), db.message()),
        );
    }
    let text = db::error_chain(e);
    let reason = if text.starts_with("error performing TLS handshake") {
        "tls"
    } else if text.starts_with("authentication error") {
        "auth"
    } else if text.starts_with("timeout") {
        "timeout"
    } else {
        "connect"
    };
    DbFailure::new(reason, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quotes_the_table() {
        assert!(create_table_sql("ops.hb").contains("\"ops\".\"hb\" ("));
        assert!(
            upsert_sql("quorumgate_heartbeat").starts_with("INSERT INTO \"quorumgate_heartbeat\" ")
        );
        assert!(newest_sql("hb").contains("FROM \"hb\" ORDER BY ts DESC LIMIT 1"));
    }
}
