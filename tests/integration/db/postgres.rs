//! The `postgres` write probe against a real PostgreSQL 15.

use std::time::Duration;

use super::servers::Postgres;
use super::{assert_reason, pg_write, probe_until, prober, T};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_write_is_healthy_and_a_stopped_server_is_connect() {
    let mut pg = Postgres::start();
    let p = prober("use1");
    let spec = pg_write(pg.port, true);

    let o = p.probe(&spec, T).await;
    assert_reason(&o, "ok");
    assert!(o.detail.contains("committed"), "{o:?}");
    // The row is there, with this agent's identity, and the next probe (same connection)
    // moves it forward.
    let row = pg.psql("SELECT agent, region, seq FROM quorumgate_heartbeat");
    let first_seq: u64 = row
        .rsplit('|')
        .next()
        .and_then(|s| s.parse().ok())
        .expect(&row);
    assert!(row.starts_with("use1|test-region|"), "{row}");
    assert_reason(&p.probe(&spec, T).await, "ok");
    let seq: u64 = pg
        .psql("SELECT seq FROM quorumgate_heartbeat WHERE agent = 'use1'")
        .parse()
        .expect("seq");
    assert!(seq > first_seq, "{seq} after {first_seq}");
    // One dedicated connection, reused: exactly one session of the probe user.
    let sessions = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'qg'");
    assert_eq!(sessions, "1");

    pg.stop();
    let o = p.probe(&spec, T).await;
    assert_reason(&o, "connect");
    // Re-dialled, not stuck on the dead connection: still `connect` next time.
    assert_reason(&p.probe(&spec, T).await, "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_only_is_read_only() {
    let pg = Postgres::start();
    let p = prober("use1");
    let spec = pg_write(pg.port, true);
    assert_reason(&p.probe(&spec, T).await, "ok");

    // Reaches the probe's open session too (a reload applies to every session).
    pg.psql("ALTER SYSTEM SET default_transaction_read_only = on");
    pg.psql("SELECT pg_reload_conf()");
    let o = probe_until(&p, &spec, Duration::from_secs(10), "read_only", |o| {
        !o.healthy
    })
    .await;
    assert_reason(&o, "read_only");
    assert!(o.detail.contains("25006"), "{o:?}");

    pg.psql("ALTER SYSTEM RESET default_transaction_read_only");
    pg.psql("SELECT pg_reload_conf()");
    probe_until(&p, &spec, Duration::from_secs(10), "writable again", |o| {
        o.healthy
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_row_lock_held_past_the_timeout_is_lock_timeout() {
    let pg = Postgres::start();
    let p = prober("use1");
    let spec = pg_write(pg.port, true);
    assert_reason(&p.probe(&spec, T).await, "ok");

    let admin = pg.admin().await;
    admin
        .batch_execute("BEGIN; SELECT * FROM quorumgate_heartbeat WHERE agent = 'use1' FOR UPDATE")
        .await
        .expect("lock the row");
    let o = p.probe(&spec, T).await;
    assert_reason(&o, "lock_timeout");
    assert!(o.latency >= Duration::from_millis(900), "{o:?}");
    // A lock wait ended by the probe's own deadline is a `timeout`.
    let o = p.probe(&spec, Duration::from_millis(400)).await;
    assert_reason(&o, "timeout");

    admin.batch_execute("ROLLBACK").await.expect("release");
    assert_reason(&p.probe(&spec, T).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_missing_table_is_no_table_unless_create_table() {
    let pg = Postgres::start();
    let p = prober("use1");
    let o = p.probe(&pg_write(pg.port, false), T).await;
    assert_reason(&o, "no_table");
    assert!(
        o.detail.contains("quorumgate_heartbeat") && o.detail.contains("README"),
        "{o:?}"
    );
    assert_reason(&p.probe(&pg_write(pg.port, true), T).await, "ok");
    assert_reason(&p.probe(&pg_write(pg.port, false), T).await, "ok");
}
