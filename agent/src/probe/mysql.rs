//! MySQL / MariaDB probes (mysql_async, rustls on aws-lc-rs): the write path and replication lag.
//!
//! Write: `SELECT @@global.read_only` first — a probe user with SUPER (or READ_ONLY ADMIN)
//! could still write to a read-only server, which is exactly what a failover must not mistake
//! for a writable primary (`super_read_only` implies `read_only`). Then `START TRANSACTION`,
//! `INSERT … ON DUPLICATE KEY UPDATE` this agent's heartbeat row, `COMMIT`. At dial the session
//! gets `innodb_lock_wait_timeout` (whole seconds, rounded up) and, on MariaDB,
//! `max_statement_time`.
//!
//! Lag: as for Postgres, `now − max(ts)`; the role in the detail is `replica` when the server
//! is read-only, else `primary`.

use std::time::Duration;

use config::probe::{DbConnection, DbWriteProbe, ReplicationLagProbe, SslMode};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn as MyConn, DriverError, Error, IoError, OptsBuilder, SslOpts, Statement};
use tokio::time::Instant;

use super::db::{self, DbFailure, Heartbeat, Progress, Step};
use super::{ProbeOutcome, Prober};
use crate::tls;

/// One dedicated connection and its prepared statement.
pub struct Conn {
    conn: MyConn,
    stmt: Statement,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mysql::Conn")
    }
}

/// `` `schema`.`name` ``: parts are validated as `[A-Za-z_][A-Za-z0-9_]*`, so quoting is safe.
fn quoted(table: &str) -> String {
    table
        .split('.')
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(".")
}

/// The heartbeat table (also in the README).
#[must_use]
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n  agent  VARCHAR(64) NOT NULL PRIMARY KEY,\n  region VARCHAR(255) NOT NULL,\n  ts     BIGINT NOT NULL,\n  seq    BIGINT NOT NULL\n) ENGINE=InnoDB",
        quoted(table)
    )
}

fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {} (agent, region, ts, seq) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE region = VALUES(region), ts = VALUES(ts), seq = VALUES(seq)",
        quoted(table)
    )
}

/// One row always: read-only or not, and the newest heartbeat if there is one.
fn newest_sql(table: &str) -> String {
    format!(
        "SELECT @@global.read_only, h.agent, h.ts, h.seq FROM (SELECT 1) AS one \
         LEFT JOIN (SELECT agent, ts, seq FROM {} ORDER BY ts DESC LIMIT 1) AS h ON 1 = 1",
        quoted(table)
    )
}

/// The `mysql` write probe.
pub async fn write(prober: &Prober, spec: &DbWriteProbe, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let progress = Progress::default();
    let slot = prober.db.mysql.slot("write", &spec.conn);
    let run = async {
        let mut guard = slot.lock().await;
        let mut conn = match guard.take() {
            Some(c) => c,
            None => {
                progress.at(Step::Connecting);
                let mut conn = dial(&spec.conn).await?;
                let sql = upsert_sql(&spec.conn.table);
                let stmt = match conn.prep(&sql).await {
                    Err(e) if server_code(&e) == Some(1146) && spec.create_table => {
                        conn.query_drop(create_table_sql(&spec.conn.table))
                            .await
                            .map_err(|e| classify(&e, &spec.conn.table))?;
                        tracing::info!(table = %spec.conn.table, "created the heartbeat table (create_table = true)");
                        conn.prep(&sql).await
                    }
                    other => other,
                }
                .map_err(|e| classify(&e, &spec.conn.table))?;
                Conn { conn, stmt }
            }
        };
        progress.at(Step::Querying);
        let read_only: Option<i64> = conn
            .conn
            .query_first("SELECT @@global.read_only")
            .await
            .map_err(|e| classify(&e, &spec.conn.table))?;
        if read_only.unwrap_or(0) != 0 {
            return Err(DbFailure::new(
                "read_only",
                "@@global.read_only is ON (or super_read_only): the server takes no writes",
            ));
        }
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

/// The `replication_lag` probe against MySQL / MariaDB.
pub async fn lag(prober: &Prober, spec: &ReplicationLagProbe, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let progress = Progress::default();
    let slot = prober.db.mysql.slot("lag", &spec.conn);
    let run = async {
        let mut guard = slot.lock().await;
        let mut conn = match guard.take() {
            Some(c) => c,
            None => {
                progress.at(Step::Connecting);
                let mut conn = dial(&spec.conn).await?;
                let stmt = conn
                    .prep(newest_sql(&spec.conn.table))
                    .await
                    .map_err(|e| classify(&e, &spec.conn.table))?;
                Conn { conn, stmt }
            }
        };
        progress.at(Step::Querying);
        type Row = (i64, Option<String>, Option<i64>, Option<i64>);
        let row: Option<Row> = conn
            .conn
            .exec_first(&conn.stmt, ())
            .await
            .map_err(|e| classify(&e, &spec.conn.table))?;
        let now = prober.clock.now();
        let (read_only, newest) = match row {
            Some((ro, Some(agent), Some(ts_ms), Some(seq))) => {
                (ro != 0, Some(Heartbeat { agent, ts_ms, seq }))
            }
            Some((ro, ..)) => (ro != 0, None),
            None => (false, None),
        };
        *guard = Some(conn);
        let role = if read_only { "replica" } else { "primary" };
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
async fn dial(c: &DbConnection) -> Result<MyConn, DbFailure> {
    let password = db::password(&c.password).await?;
    let connect_timeout = Duration::from_millis(c.connect_timeout_ms);
    let mut opts = OptsBuilder::default()
        .ip_or_hostname(c.host.clone())
        .tcp_port(c.port)
        .user(Some(c.user.clone()))
        .db_name(Some(c.dbname.clone()))
        .prefer_socket(false)
        .pass(password.as_ref().map(|p| p.expose().to_owned()));
    if c.sslmode != SslMode::Disable {
        tls::install_crypto_provider();
        let mut ssl = SslOpts::default();
        if let Some(ca) = &c.ca_file {
            ssl = ssl
                .with_root_certs(vec![ca.clone().into()])
                .with_disable_built_in_roots(true);
        }
        if c.sslmode == SslMode::VerifyCa {
            ssl = ssl.with_danger_skip_domain_validation(true);
        }
        opts = opts.ssl_opts(Some(ssl));
    }
    let mut conn = match tokio::time::timeout(connect_timeout, MyConn::new(opts)).await {
        Ok(Ok(conn)) => conn,
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
    let lock_secs = c.lock_timeout_ms.div_ceil(1000).max(1);
    conn.query_drop(format!(
        "SET SESSION innodb_lock_wait_timeout = {lock_secs}"
    ))
    .await
    .map_err(|e| classify(&e, &c.table))?;
    // MariaDB only; MySQL has no server-side limit for writes (the probe's deadline still holds).
    #[allow(clippy::cast_precision_loss)] // a few seconds in ms
    let statement_secs = c.statement_timeout_ms as f64 / 1000.0;
    match conn
        .query_drop(format!("SET SESSION max_statement_time = {statement_secs}"))
        .await
    {
        Ok(()) => {}
        Err(e) if server_code(&e) == Some(1193) => {} // unknown system variable: MySQL
        Err(e) => return Err(classify(&e, &c.table)),
    }
    Ok(conn)
}

async fn upsert(conn: &mut Conn, prober: &Prober, ts_ms: u64, seq: u64) -> Result<(), Error> {
    // Both fit an i64 until the year 292 million.
    let ts = i64::try_from(ts_ms).unwrap_or(i64::MAX);
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    conn.conn.query_drop("START TRANSACTION").await?;
    conn.conn
        .exec_drop(
            &conn.stmt,
            (prober.agent_id.as_str(), prober.region.as_str(), ts, seq),
        )
        .await?;
    conn.conn.query_drop("COMMIT").await
}

fn server_code(e: &Error) -> Option<u16> {
    match e {
        Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// A driver error → reason and detail. `table`: the heartbeat table, for the `no_table` fix.
fn classify(e: &Error, table: &str) -> DbFailure {
    let reason = match e {
        _ if crate::local_resource::in_chain(e) => crate::local_resource::REASON,
        Error::Server(s) => {
            let no_space = s.message.contains("No space left") || s.message.contains("28 ");
            match s.code {
                1146 => return DbFailure::new("no_table", db::no_table_detail(table)),
                // access denied (user, database), unix-socket-only account, old client protocol
                1044 | 1045 | 1698 | 1251 => "auth",
                // --read-only / --super-read-only, read-only transaction
                1290 | 1792 => "read_only",
                _ if s.state == "25006" => "read_only",
                1205 => "lock_timeout",
                // MariaDB max_statement_time, MySQL max_execution_time, interrupted
                1969 | 3024 | 1317 => "timeout",
                // disk full, table full (InnoDB out of space), write errors with ENOSPC
                1021 | 1114 => "disk_full",
                3 | 1030 if no_space => "disk_full",
                // too many connections, server shutting down, connection-level errors
                1040 | 1053 | 1077 | 1152 | 1158 | 1159 | 1160 | 1161 | 1927 => "connect",
                _ => "error",
            }
        }
        Error::Io(IoError::Tls(_)) | Error::Driver(DriverError::NoClientSslFlagFromServer) => "tls",
        Error::Io(IoError::Io(io)) => {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                "tls"
            } else if io.kind() == std::io::ErrorKind::TimedOut {
                "timeout"
            } else {
                "connect"
            }
        }
        Error::Driver(DriverError::ConnectionClosed) => "connect",
        _ => "error",
    };
    DbFailure::new(reason, db::error_chain(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quotes_the_table() {
        assert!(create_table_sql("ops.hb").contains("`ops`.`hb` ("));
        assert!(
            upsert_sql("quorumgate_heartbeat").starts_with("INSERT INTO `quorumgate_heartbeat` ")
        );
        assert!(newest_sql("hb").contains("FROM `hb` ORDER BY ts DESC LIMIT 1"));
    }

    #[test]
    fn server_errors_map_to_reasons() {
        let server = |code: u16, state: &str, message: &str| {
            Error::Server(mysql_async::ServerError {
                code,
                state: state.to_owned(),
                message: message.to_owned(),
            })
        };
        for (code, state, reason) in [
            (1045, "28000", "auth"),
            (1290, "HY000", "read_only"),
            (1792, "25006", "read_only"),
            (9999, "25006", "read_only"),
            (1205, "HY000", "lock_timeout"),
            (1969, "70100", "timeout"),
            (1021, "HY000", "disk_full"),
            (1040, "08004", "connect"),
            (1064, "42000", "error"),
        ] {
            assert_eq!(
                classify(&server(code, state, "m"), "t").reason,
                reason,
                "{code}"
            );
        }
        let f = classify(&server(1146, "42S02", "Table 'd.t' doesn't exist"), "t");
        assert_eq!(f.reason, "no_table");
        assert!(f.detail.contains("README"), "{f}");
        assert_eq!(
            classify(
                &server(
                    3,
                    "HY000",
                    "Error writing file (Errcode: 28 \"No space left on device\")"
                ),
                "t"
            )
            .reason,
            "disk_full"
        );
    }
}
