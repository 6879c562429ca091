//! The `rds` probe against moto's RDS (the strict emulator fixture serves every moto service),
//! driven by the real aws-sdk-rds client through an endpoint override.
//!
//! What moto 5.2.5 does and does not do (read from moto/rds/models.py): instances are
//! `available` at once; StopDBInstance / StartDBInstance and StopDBCluster / StartDBCluster flip
//! the status (`stopped` / `available`); ModifyDBInstance sets MultiAZ but never shows
//! `modifying`; DeleteDBInstance removes the instance at once (then `DBInstanceNotFound`);
//! FailoverDBCluster really moves `IsClusterWriter` to another member; a cluster's MultiAZ is
//! derived from its members' availability zones. It never shows transitional states
//! (`modifying`, `failing-over`, `backing-up`), keeps a promoted read replica's source, and
//! does not check credentials: those paths are unit tests over a fake `RdsApi`
//! (agent/src/probe/rds/tests.rs).
//!
//! Every test starts its own emulator; a missing emulator fails naming `bash scripts/test-deps.sh`.

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_rds::Client;
use bytes::Bytes;
use config::probe::{ProbeSpec, RdsProbe, RdsTarget};
use quorum::AgentId;
use quorumgate::probe::rds::sdk::{RdsOptions, SdkRds};
use quorumgate::probe::{ProbeOutcome, Prober};
use quorumgate::route53::StaticCredentials;
use quorumgate::{keys, net, tls};
use serde_json::json;
use tokio::process::Command;

use crate::route53::Emulator;
use crate::support::exe;

/// The probes' timeout in these tests.
const T: Duration = Duration::from_secs(3);
const REGION: &str = "us-east-1";

/// moto accepts any credentials; this secret must never show in an outcome.
const SECRET: &str = "qg-test-secret-9931";

fn credentials() -> StaticCredentials {
    StaticCredentials {
        access_key_id: "testing".into(),
        secret_access_key: SECRET.into(),
    }
}

fn prober() -> Prober {
    tls::install_crypto_provider();
    Prober::new(AgentId::new("use1").expect("agent id")).with_aws_credentials(credentials())
}

fn spec(url: &str, target: RdsTarget, require_multi_az: bool) -> ProbeSpec {
    ProbeSpec::Rds(RdsProbe {
        target,
        region: Some(REGION.into()),
        endpoint_url: Some(url.parse().expect("url")),
        require_multi_az,
    })
}

fn instance(url: &str, id: &str, require_multi_az: bool) -> ProbeSpec {
    spec(url, RdsTarget::Instance(id.into()), require_multi_az)
}

fn cluster(url: &str, id: &str, expect_writer: Option<&str>, require_multi_az: bool) -> ProbeSpec {
    spec(
        url,
        RdsTarget::Cluster {
            id: id.into(),
            expect_writer: expect_writer.map(str::to_owned),
        },
        require_multi_az,
    )
}

/// An SDK client of the emulator, for setting things up.
async fn admin(emu: &Emulator) -> Client {
    SdkRds::load(RdsOptions {
        region: Some(REGION.into()),
        endpoint_url: Some(emu.url.clone()),
        timeout: Duration::from_secs(10),
        static_credentials: Some(credentials()),
    })
    .await
    .expect("client")
    .client()
    .clone()
}

#[track_caller]
fn expect(o: &ProbeOutcome, reason: &str, detail: &str) {
    assert_eq!(o.reason.as_str(), reason, "{o:?}");
    assert_eq!(o.healthy, reason == "ok", "{o:?}");
    assert!(o.detail.contains(detail), "detail lacks {detail:?}: {o:?}");
    assert!(
        !o.detail.contains(SECRET),
        "credentials in the detail: {o:?}"
    );
}

async fn create_instance(rds: &Client, id: &str, multi_az: bool) {
    rds.create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("admin")
        .master_user_password("password123")
        .allocated_storage(20)
        .multi_az(multi_az)
        .send()
        .await
        .expect("create instance");
}

#[tokio::test]
async fn instance_available_multi_az_stopped_started_deleted() {
    let emu = Emulator::start().await;
    let rds = admin(&emu).await;
    let p = prober();
    let plain = instance(&emu.url, "app-db", false);
    let multi = instance(&emu.url, "app-db", true);

    create_instance(&rds, "app-db", false).await;
    expect(
        &p.probe(&plain, T).await,
        "ok",
        "instance app-db available, single-AZ",
    );
    expect(&p.probe(&multi, T).await, "not_multi_az", "not Multi-AZ");

    rds.modify_db_instance()
        .db_instance_identifier("app-db")
        .multi_az(true)
        .apply_immediately(true)
        .send()
        .await
        .expect("modify");
    expect(&p.probe(&multi, T).await, "ok", "Multi-AZ");

    rds.stop_db_instance()
        .db_instance_identifier("app-db")
        .send()
        .await
        .expect("stop");
    expect(&p.probe(&plain, T).await, "status", "status=stopped");
    // status is judged before Multi-AZ
    expect(&p.probe(&multi, T).await, "status", "status=stopped");

    rds.start_db_instance()
        .db_instance_identifier("app-db")
        .send()
        .await
        .expect("start");
    expect(&p.probe(&multi, T).await, "ok", "available");

    rds.delete_db_instance()
        .db_instance_identifier("app-db")
        .skip_final_snapshot(true)
        .send()
        .await
        .expect("delete");
    expect(&p.probe(&plain, T).await, "not_found", "DBInstanceNotFound");
}

#[tokio::test]
async fn unknown_instance_and_cluster_are_not_found() {
    let emu = Emulator::start().await;
    let p = prober();
    expect(
        &p.probe(&instance(&emu.url, "nope", false), T).await,
        "not_found",
        "DBInstanceNotFound",
    );
    expect(
        &p.probe(&cluster(&emu.url, "nope", None, false), T).await,
        "not_found",
        "DBClusterNotFoundFault",
    );
}

/// An Aurora-style cluster of two instances in two zones: a failover nobody declared is
/// `writer_changed` until the old writer is back; `expect_writer` pins the writer.
#[tokio::test]
async fn cluster_failover_is_writer_changed_until_failback() {
    let emu = Emulator::start().await;
    let rds = admin(&emu).await;
    rds.create_db_cluster()
        .db_cluster_identifier("app-aurora")
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("password123")
        .send()
        .await
        .expect("create cluster");
    for (id, zone) in [
        ("app-aurora-1", "us-east-1a"),
        ("app-aurora-2", "us-east-1b"),
    ] {
        rds.create_db_instance()
            .db_instance_identifier(id)
            .db_cluster_identifier("app-aurora")
            .db_instance_class("db.r5.large")
            .engine("aurora-postgresql")
            .availability_zone(zone)
            .send()
            .await
            .expect("create cluster instance");
    }
    let p = prober();
    let learned = cluster(&emu.url, "app-aurora", None, true);
    let pinned = cluster(&emu.url, "app-aurora", Some("app-aurora-1"), false);

    expect(
        &p.probe(&learned, T).await,
        "ok",
        "cluster app-aurora available, writer app-aurora-1, Multi-AZ",
    );
    expect(&p.probe(&pinned, T).await, "ok", "writer app-aurora-1");
    let ProbeSpec::Rds(learned_spec) = &learned else {
        unreachable!()
    };
    assert_eq!(
        p.rds_writers().remembered(learned_spec).as_deref(),
        Some("app-aurora-1")
    );

    let failover = |to: &'static str| {
        let rds = rds.clone();
        async move {
            rds.failover_db_cluster()
                .db_cluster_identifier("app-aurora")
                .target_db_instance_identifier(to)
                .send()
                .await
                .expect("failover");
        }
    };
    failover("app-aurora-2").await;
    expect(
        &p.probe(&learned, T).await,
        "writer_changed",
        "writer is app-aurora-2, was app-aurora-1",
    );
    expect(
        &p.probe(&pinned, T).await,
        "writer_changed",
        "expect_writer is app-aurora-1",
    );
    // Still so at the next probe: the memory does not drift to the new writer.
    expect(
        &p.probe(&learned, T).await,
        "writer_changed",
        "app-aurora-2",
    );
    // A fresh agent (a restart) accepts the writer it finds.
    expect(
        &prober().probe(&learned, T).await,
        "ok",
        "writer app-aurora-2",
    );
    // The config naming the new writer accepts it too.
    expect(
        &p.probe(
            &cluster(&emu.url, "app-aurora", Some("app-aurora-2"), false),
            T,
        )
        .await,
        "ok",
        "writer app-aurora-2",
    );

    failover("app-aurora-1").await;
    expect(&p.probe(&learned, T).await, "ok", "writer app-aurora-1");
    expect(&p.probe(&pinned, T).await, "ok", "writer app-aurora-1");

    rds.stop_db_cluster()
        .db_cluster_identifier("app-aurora")
        .send()
        .await
        .expect("stop cluster");
    expect(&p.probe(&pinned, T).await, "status", "status=stopped");
}

#[tokio::test]
async fn single_zone_cluster_is_not_multi_az() {
    let emu = Emulator::start().await;
    let rds = admin(&emu).await;
    rds.create_db_cluster()
        .db_cluster_identifier("solo")
        .engine("aurora-mysql")
        .master_username("admin")
        .master_user_password("password123")
        .send()
        .await
        .expect("create cluster");
    rds.create_db_instance()
        .db_instance_identifier("solo-1")
        .db_cluster_identifier("solo")
        .db_instance_class("db.r5.large")
        .engine("aurora-mysql")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("create cluster instance");
    let p = prober();
    expect(
        &p.probe(&cluster(&emu.url, "solo", None, true), T).await,
        "not_multi_az",
        "not Multi-AZ",
    );
    expect(
        &p.probe(&cluster(&emu.url, "solo", None, false), T).await,
        "ok",
        "writer solo-1, single-AZ",
    );
}

/// The fixture's fault layer answers the next request instead of moto: a throttle, a 500, a
/// stall (never answered), and nothing listening at all.
#[tokio::test]
async fn api_failures_are_outcomes_with_their_reasons() {
    let emu = Emulator::start().await;
    let rds = admin(&emu).await;
    create_instance(&rds, "app-db", true).await;
    let p = prober();
    let s = instance(&emu.url, "app-db", true);
    expect(&p.probe(&s, T).await, "ok", "Multi-AZ");

    emu.fault(json!({"kind": "throttling", "count": 1})).await;
    expect(&p.probe(&s, T).await, "throttled", "Throttling");
    emu.fault(json!({"kind": "http_500", "count": 1})).await;
    expect(&p.probe(&s, T).await, "error", "InternalFailure");

    emu.fault(json!({"kind": "stall", "count": 1, "stall_ms": 30000}))
        .await;
    let short = Duration::from_millis(800);
    let started = tokio::time::Instant::now();
    let o = p.probe(&s, short).await;
    expect(&o, "timeout", "within 800ms");
    assert!(
        started.elapsed() < short * 3,
        "took {:?}",
        started.elapsed()
    );
    emu.clear_faults().await;
    expect(&p.probe(&s, T).await, "ok", "Multi-AZ");

    // Nothing listens: bind a port, release it, point the probe there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let o = p
        .probe(&instance(&format!("http://{closed}"), "app-db", false), T)
        .await;
    expect(&o, "connect", "Connection refused");
}

/// A real agent process: rds checks in its config, credentials from the standard chain (the
/// environment), the outcomes in `/v1/status`, a failover seen as `writer_changed`, and the
/// secret key nowhere in status, metrics or logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_process_reports_rds_checks() {
    let emu = Emulator::start().await;
    let rds = admin(&emu).await;
    create_instance(&rds, "app-db", false).await;
    rds.create_db_cluster()
        .db_cluster_identifier("app-aurora")
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("password123")
        .send()
        .await
        .expect("create cluster");
    for id in ["app-aurora-1", "app-aurora-2"] {
        rds.create_db_instance()
            .db_instance_identifier(id)
            .db_cluster_identifier("app-aurora")
            .db_instance_class("db.r5.large")
            .engine("aurora-postgresql")
            .send()
            .await
            .expect("create cluster instance");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("agent.key");
    let key = keys::generate().expect("key");
    keys::write_signing_key(&key_file, &key).expect("write key");
    // Reserved, then released for the agent to bind.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = &emu.url;
    let config = format!(
        r#"[cluster]
name = "rds-test"
round_interval = "500ms"
ballot_valid_for = "3s"
peer_timeout = "300ms"
allow_single_member = true

[[members]]
id = "solo"
region = "{REGION}"
url = "http://127.0.0.1:{port}/"
public_key = "{public}"

[[checks]]
id = "db-instance"
interval = "1s"
timeout = "900ms"
[checks.rds]
instance = "app-db"
region = "{REGION}"
endpoint_url = "{url}"

[[checks]]
id = "db-cluster"
interval = "1s"
timeout = "900ms"
[checks.rds]
cluster = "app-aurora"
region = "{REGION}"
endpoint_url = "{url}"

[[checks]]
id = "db-multi-az"
interval = "1s"
timeout = "900ms"
[checks.rds]
instance = "app-db"
region = "{REGION}"
endpoint_url = "{url}"
require_multi_az = true

[local]
agent_id = "solo"
listen = "127.0.0.1:{port}"
key_file = "{key_file}"
state_dir = "{state}"
log_level = "debug"
"#,
        public = keys::public_key_base64(&key.verifying_key()),
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
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start agent");

    let base = format!("http://127.0.0.1:{port}/");
    let wait_for = |want: [(&'static str, &'static str); 3]| {
        let base = base.clone();
        let log_path = log_path.clone();
        async move {
            let end = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let body = get(&base, "v1/status").await.unwrap_or_default();
                let text = String::from_utf8_lossy(&body).into_owned();
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let reason = |check: &str| {
                    doc["checks"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["id"] == check))
                        .map(|c| c["observations"]["solo"]["reason"].clone())
                        .unwrap_or_default()
                };
                if want.iter().all(|(check, r)| reason(check) == *r) {
                    return text;
                }
                assert!(
                    tokio::time::Instant::now() < end,
                    "status never showed {want:?}:\n{text}\n--- log ---\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let before = wait_for([
        ("db-instance", "ok"),
        ("db-cluster", "ok"),
        ("db-multi-az", "not_multi_az"),
    ])
    .await;

    rds.failover_db_cluster()
        .db_cluster_identifier("app-aurora")
        .target_db_instance_identifier("app-aurora-2")
        .send()
        .await
        .expect("failover");
    let after = wait_for([
        ("db-instance", "ok"),
        ("db-cluster", "writer_changed"),
        ("db-multi-az", "not_multi_az"),
    ])
    .await;

    let metrics =
        String::from_utf8_lossy(&get(&base, "metrics").await.expect("metrics")).into_owned();
    let logs = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        logs.contains("remembering the writer"),
        "the learned writer is logged:\n{logs}"
    );
    for (what, text) in [
        ("status", &before),
        ("status", &after),
        ("metrics", &metrics),
        ("log", &logs),
    ] {
        assert!(
            !text.contains(SECRET),
            "{what} shows the secret key:\n{text}"
        );
    }
}

async fn get(base: &str, path: &str) -> Option<Bytes> {
    let url = url::Url::parse(base).ok()?.join(path).ok()?;
    let req = net::Request::get(url, None, 16 * 1024 * 1024);
    let resp = net::send(&req, Duration::from_secs(3)).await.ok()?;
    (resp.status.as_u16() == 200).then_some(resp.body)
}
