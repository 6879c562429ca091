//! The `mysql` write probe against a real MariaDB.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::servers::MariaDb;
use super::{assert_reason, mysql_write, prober, T};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_write_is_healthy_and_a_stopped_server_is_connect() {
    let mut db = MariaDb::start();
    let p = prober("use1");
    let spec = mysql_write(db.port, true);

    let o = p.probe(&spec, T).await;
    assert_reason(&o, "ok");
    let row = db.sql("SELECT agent, region FROM qgtest.quorumgate_heartbeat");
    assert_eq!(row, "use1\ttest-region");
    let first: u64 = db
        .sql("SELECT seq FROM qgtest.quorumgate_heartbeat")
        .parse()
        .expect("seq");
    assert_reason(&p.probe(&spec, T).await, "ok");
    let second: u64 = db
        .sql("SELECT seq FROM qgtest.quorumgate_heartbeat")
        .parse()
        .expect("seq");
    assert!(second > first, "{second} after {first}");
    let sessions = db.sql("SELECT count(*) FROM information_schema.processlist WHERE user = 'qg'");
    assert_eq!(sessions, "1", "one dedicated connection");

    db.stop();
    assert_reason(&p.probe(&spec, T).await, "connect");
    assert_reason(&p.probe(&spec, T).await, "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_read_only_is_read_only() {
    let db = MariaDb::start();
    let p = prober("use1");
    let spec = mysql_write(db.port, true);
    assert_reason(&p.probe(&spec, T).await, "ok");

    db.sql("SET GLOBAL read_only = 1");
    let o = p.probe(&spec, T).await;
    assert_reason(&o, "read_only");
    assert!(o.detail.contains("read_only"), "{o:?}");

    // The server's own refusal (error 1290) is read_only too: a write that slips past the
    // @@read_only check (it is checked just before) is judged by the server's error.
    let mut probe_user = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(db.port)
            .prefer_socket(false)
            .user(Some(super::servers::PROBE_USER))
            .pass(Some(super::servers::PROBE_PASSWORD))
            .db_name(Some(super::servers::DB)),
    )
    .await
    .expect("probe user session");
    let err = probe_user
        .query_drop("UPDATE quorumgate_heartbeat SET seq = seq + 1")
        .await
        .expect_err("read-only server refuses the write");
    assert!(
        matches!(&err, mysql_async::Error::Server(s) if s.code == 1290),
        "{err}"
    );

    db.sql("SET GLOBAL read_only = 0");
    assert_reason(&p.probe(&spec, T).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_row_lock_held_past_the_timeout_is_lock_timeout() {
    let db = MariaDb::start();
    let p = prober("use1");
    let spec = mysql_write(db.port, true);
    assert_reason(&p.probe(&spec, T).await, "ok");

    let mut admin = db.admin().await;
    admin.query_drop("START TRANSACTION").await.expect("begin");
    admin
        .query_drop("SELECT * FROM quorumgate_heartbeat WHERE agent = 'use1' FOR UPDATE")
        .await
        .expect("lock the row");
    let o = p.probe(&spec, T).await;
    assert_reason(&o, "lock_timeout");
    assert!(o.latency >= Duration::from_millis(900), "{o:?}");
    let o = p.probe(&spec, Duration::from_millis(400)).await;
    assert_reason(&o, "timeout");

    admin.query_drop("ROLLBACK").await.expect("release");
    assert_reason(&p.probe(&spec, T).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_missing_table_is_no_table_unless_create_table() {
    let db = MariaDb::start();
    let p = prober("use1");
    let o = p.probe(&mysql_write(db.port, false), T).await;
    assert_reason(&o, "no_table");
    assert!(o.detail.contains("README"), "{o:?}");
    assert_reason(&p.probe(&mysql_write(db.port, true), T).await, "ok");
}
