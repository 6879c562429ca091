//! The Route 53 control plane against a strict emulator (moto, patched by
//! tests/fixtures/moto_strict.py), driven by the real aws-sdk-route53 client.
//!
//! Every test starts its own emulator process on a free loopback port, so tests run in
//! parallel. A missing emulator is a failure naming `bash scripts/test-deps.sh`, never a skip.

mod emulator;

pub mod dataplane;
mod dataplane_drill;
mod dataplane_failover;
mod drill;
mod faults;
mod fence;
mod fixture;
pub mod gate_rig;
mod gates;
mod promote;
mod provision;

use std::sync::Arc;
use std::time::Duration;

use quorumgate::route53::{
    DesiredRecords, Fence, FencedWriter, GateTarget, RecordSet, RecordTarget, Route53Api, Routing,
    SdkRoute53, WriterOptions,
};

pub use emulator::Emulator;

pub const ZONE_NAME: &str = "example.com";
pub const GATE: &str = "app";
pub const FENCE_NAME: &str = "_quorumgate.app.example.com.";
pub const RECORD_NAME: &str = "app.example.com.";

/// A weighted pair for `app.example.com`: region eu with weight `eu`, us with weight `us`.
pub fn weighted(eu: u8, us: u8) -> DesiredRecords {
    let rec = |set: &str, weight: u8, ip: &str| {
        RecordSet::new(RECORD_NAME, "A", RecordTarget::values(60, [ip]))
            .with_routing(set, Routing::Weighted { weight })
    };
    DesiredRecords::new(
        ZONE_NAME,
        [rec("eu", eu, "192.0.2.10"), rec("us", us, "198.51.100.10")],
    )
    .expect("valid desired records")
}

pub fn writer(api: Arc<dyn Route53Api>, zone_id: &str, agent: &str) -> FencedWriter {
    FencedWriter::new(
        api,
        GateTarget {
            zone_id: zone_id.to_owned(),
            zone_name: ZONE_NAME.to_owned(),
            gate: GATE.to_owned(),
            agent: agent.to_owned(),
        },
        WriterOptions {
            insync_poll: Duration::from_millis(300),
            insync_timeout: Duration::from_secs(10),
        },
    )
    .expect("writer")
}

/// Every record of the zone as Route 53 lists it.
pub async fn zone_records(api: &SdkRoute53, zone_id: &str) -> Vec<RecordSet> {
    api.list_record_sets(zone_id, None)
        .await
        .expect("list zone")
}

pub async fn gate_records(api: &SdkRoute53, zone_id: &str) -> Vec<RecordSet> {
    api.list_record_sets(zone_id, Some(RECORD_NAME))
        .await
        .expect("list gate records")
}

pub async fn fence_now(api: &SdkRoute53, zone_id: &str) -> Option<Fence> {
    let records = api
        .list_record_sets(zone_id, Some(FENCE_NAME))
        .await
        .expect("list fence");
    let fences: Vec<Fence> = records
        .iter()
        .filter(|r| r.record_type() == "TXT")
        .map(|r| Fence::from_record(r).expect("fence parses"))
        .collect();
    assert!(fences.len() <= 1, "more than one fence record: {fences:?}");
    fences.into_iter().next()
}

/// Operator `alice`'s key in a new directory: (the directory, the key file, the public key
/// for `[[operators]]`).
pub fn alice() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let keys = tempfile::tempdir().expect("tempdir");
    let path = keys.path().join("alice.key");
    let key = quorumgate::keys::generate().expect("key");
    quorumgate::keys::write_signing_key(&path, &key).expect("write key");
    let public = quorumgate::keys::public_key_base64(&key.verifying_key());
    (keys, path, public)
}

/// `[local.route53]` for an agent talking to the emulator at `url`.
pub fn local_route53(url: &str, requests_per_second: u32) -> String {
    format!(
        "[local.route53]\nendpoint_url = \"{url}\"\nregion = \"us-east-1\"\nconnect_timeout = \"1s\"\nattempt_timeout = \"2s\"\noperation_timeout = \"8s\"\nmax_requests_per_second = {requests_per_second}\ninsync_timeout = \"0s\"\n"
    )
}

/// `quorumgate drill app ARGS` through the real binary with `config`, signed with alice's
/// key at `operator_key`, in `env`; output piped, killed on drop.
pub fn drill_command(
    config: &std::path::Path,
    operator_key: &std::path::Path,
    env: &[(String, String)],
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(crate::support::exe());
    cmd.arg("drill")
        .arg("app")
        .args(args)
        .arg("--config")
        .arg(config)
        .args(["--operator", "alice", "--key"])
        .arg(operator_key)
        .args(["--note", "game day"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Waits for a drill command to end (bounded: `limit`); its success and its output.
pub async fn finish_drill(
    child: tokio::process::Child,
    limit: std::time::Duration,
) -> (bool, String) {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("the drill command ends in time")
        .expect("drill command output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
