//! A real agent process with database checks, and secrets: passwords must appear in no error,
//! detail, Debug output, log, metric or `/v1/status`.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use config::probe::{DbWriteProbe, PasswordSource, ProbeSpec, Secret};
use quorumgate::{keys, net, tls};
use tokio::process::Command;

use super::servers::{free_port, MariaDb, Postgres, DB, PROBE_PASSWORD, PROBE_USER};
use super::{assert_reason, conn, prober, T};
use crate::support::exe;

/// A wrong password, distinctive enough to search for.
const WRONG_PASSWORD: &str = "Wr0ng-pw-do-not-log-3f9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_auth_and_never_shown() {
    let pg = Postgres::start();
    let my = MariaDb::start();
    let p = prober("use1");
    for spec in [
        ProbeSpec::Postgres(DbWriteProbe {
            conn: wrong(pg.port),
            create_table: true,
        }),
        ProbeSpec::Mysql(DbWriteProbe {
            conn: wrong(my.port),
            create_table: true,
        }),
    ] {
        let o = p.probe(&spec, T).await;
        assert_reason(&o, "auth");
        for text in [
            o.detail.clone(),
            format!("{o:?}"),
            format!("{spec:?}"),
            format!("{spec:#?}"),
        ] {
            assert!(!text.contains(WRONG_PASSWORD), "password shown: {text}");
        }
    }
}

fn wrong(port: u16) -> config::probe::DbConnection {
    config::probe::DbConnection {
        password: PasswordSource::Inline(Secret::new(WRONG_PASSWORD)),
        ..conn(port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reports_database_checks_in_status_without_secrets() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("agent.key");
    let key = keys::generate().expect("key");
    keys::write_signing_key(&key_file, &key).expect("write key");
    let pw_file = dir.path().join("db-password");
    std::fs::write(&pw_file, format!("{PROBE_PASSWORD}\n")).expect("password file");
    let port = free_port();
    let pg_port = pg.port;
    let common = format!(
        "host = \"127.0.0.1\"\nport = {pg_port}\ndbname = \"{DB}\"\nuser = \"{PROBE_USER}\"\nsslmode = \"disable\""
    );
    let config = format!(
        r#"[cluster]
name = "db-test"
round_interval = "500ms"
ballot_valid_for = "3s"
peer_timeout = "300ms"
allow_single_member = true

[[members]]
id = "solo"
region = "test-region"
url = "http://127.0.0.1:{port}/"
public_key = "{public}"

[[checks]]
id = "db-write"
interval = "1s"
timeout = "900ms"
[checks.postgres]
{common}
password_env = "QG_TEST_DB_PASSWORD"
create_table = true

[[checks]]
id = "db-lag"
interval = "1s"
timeout = "900ms"
[checks.replication_lag]
engine = "postgres"
{common}
password_file = "{pw_file}"

[[checks]]
id = "db-bad"
interval = "1s"
timeout = "900ms"
[checks.postgres]
{common}
password = "{WRONG_PASSWORD}"

[local]
agent_id = "solo"
listen = "127.0.0.1:{port}"
key_file = "{key_file}"
state_dir = "{state}"
log_level = "debug"
"#,
        public = keys::public_key_base64(&key.verifying_key()),
        pw_file = pw_file.display(),
        key_file = key_file.display(),
        state = dir.path().join("state").display(),
    );
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, &config).expect("write config");
    let log_path = dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let _agent = Command::new(exe())
        .arg("agent")
        .arg("--config")
        .arg(&config_path)
        .env("QG_TEST_DB_PASSWORD", PROBE_PASSWORD)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start agent");

    let base = format!("http://127.0.0.1:{port}/");
    let status_ok = |doc: &serde_json::Value| {
        let obs = |check: &str| {
            doc["checks"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["id"] == check))
                .map(|c| c["observations"]["solo"].clone())
                .unwrap_or_default()
        };
        let write = obs("db-write");
        let lag = obs("db-lag");
        let bad = obs("db-bad");
        write["status"] == "healthy"
            && write["reason"] == "ok"
            && lag["status"] == "healthy"
            && lag["lag_ms"].is_u64()
            && bad["status"] == "unhealthy"
            && bad["reason"] == "auth"
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    let last = loop {
        let body = get(&base, "v1/status").await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|d| status_ok(&d)) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "status never showed all three database checks:\n{text}\n--- log ---\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let metrics =
        String::from_utf8_lossy(&get(&base, "metrics").await.expect("metrics")).into_owned();
    assert!(
        metrics.contains("quorumgate_replication_lag_seconds{check=\"db-lag\"}"),
        "{metrics}"
    );
    let row = pg.psql("SELECT agent, region FROM quorumgate_heartbeat");
    assert_eq!(row, "solo|test-region");

    // Neither password anywhere an operator (or attacker) can read.
    let logs = std::fs::read_to_string(&log_path).expect("log");
    for (what, text) in [("status", &last), ("metrics", &metrics), ("log", &logs)] {
        for secret in [PROBE_PASSWORD, WRONG_PASSWORD] {
            assert!(!text.contains(secret), "{what} shows a password:\n{text}");
        }
    }
    // `check` prints warnings (the inline password draws one) without the value.
    let out = std::process::Command::new(exe())
        .args(["check", "--config"])
        .arg(&config_path)
        .output()
        .expect("run check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("password"),
        "expected the inline-password warning: {text}"
    );
    assert!(!text.contains(WRONG_PASSWORD), "{text}");
}

async fn get(base: &str, path: &str) -> Option<Bytes> {
    let url = url::Url::parse(base).ok()?.join(path).ok()?;
    let req = net::Request::get(url, Some(Arc::clone(&client_tls())), 16 * 1024 * 1024);
    let resp = net::send(&req, Duration::from_secs(3)).await.ok()?;
    (resp.status.as_u16() == 200).then_some(resp.body)
}

fn client_tls() -> Arc<rustls::ClientConfig> {
    tls::client_config(None, None).expect("client tls")
}
