//! Database probes over TLS (rustls on aws-lc-rs, the only provider): the right CA verifies,
//! another CA is `tls`, and `verify-ca` accepts a certificate that does not name the host while
//! `verify-full` does not.

use config::probe::{DbConnection, DbWriteProbe, ProbeSpec, SslMode};
use quorumgate::tls::generate_dev_pki;

use super::servers::{MariaDb, Postgres};
use super::{assert_reason, conn, prober, T};

fn with_tls(c: DbConnection, mode: SslMode, ca: &std::path::Path, host: &str) -> DbConnection {
    DbConnection {
        sslmode: mode,
        ca_file: Some(ca.to_owned()),
        host: host.to_owned(),
        ..c
    }
}

fn pg(c: DbConnection) -> ProbeSpec {
    ProbeSpec::Postgres(DbWriteProbe {
        conn: c,
        create_table: true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = generate_dev_pki(&dir.path().join("good"), &["db"]).expect("pki");
    let other = generate_dev_pki(&dir.path().join("other"), &["x"]).expect("pki");
    let (_, cert, key) = &pki.certs[0];
    let server = Postgres::start_tls(cert, key);
    let p = prober("use1");
    let base = conn(server.port);

    let good = with_tls(base.clone(), SslMode::VerifyFull, &pki.ca_file, "127.0.0.1");
    assert_reason(&p.probe(&pg(good), T).await, "ok");
    let stranger = with_tls(
        base.clone(),
        SslMode::VerifyFull,
        &other.ca_file,
        "127.0.0.1",
    );
    assert_reason(&p.probe(&pg(stranger), T).await, "tls");
    // 127.0.0.2 is not in the certificate: only the chain can be checked.
    let wrong_name = with_tls(base.clone(), SslMode::VerifyFull, &pki.ca_file, "127.0.0.2");
    assert_reason(&p.probe(&pg(wrong_name), T).await, "tls");
    let chain_only = with_tls(base.clone(), SslMode::VerifyCa, &pki.ca_file, "127.0.0.2");
    assert_reason(&p.probe(&pg(chain_only), T).await, "ok");
    let chain_only_stranger = with_tls(base, SslMode::VerifyCa, &other.ca_file, "127.0.0.2");
    assert_reason(&p.probe(&pg(chain_only_stranger), T).await, "tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_over_tls_verifies_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = generate_dev_pki(&dir.path().join("good"), &["db"]).expect("pki");
    let other = generate_dev_pki(&dir.path().join("other"), &["x"]).expect("pki");
    let (_, cert, key) = &pki.certs[0];
    let server = MariaDb::start_tls(cert, key);
    let p = prober("use1");
    let base = conn(server.port);
    let my = |c: DbConnection| {
        ProbeSpec::Mysql(DbWriteProbe {
            conn: c,
            create_table: true,
        })
    };

    let good = with_tls(base.clone(), SslMode::VerifyFull, &pki.ca_file, "127.0.0.1");
    assert_reason(&p.probe(&my(good), T).await, "ok");
    let stranger = with_tls(base, SslMode::VerifyFull, &other.ca_file, "127.0.0.1");
    assert_reason(&p.probe(&my(stranger), T).await, "tls");
}
