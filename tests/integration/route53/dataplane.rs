//! The data plane end to end: `quorumgate provision` creates the health checks and records in
//! the strict Route 53 emulator; the data-plane emulator (`quorumgate_testkit::dataplane`)
//! reads them through the Route 53 API, polls the agents' public health listeners as Route 53's
//! checkers do, evaluates the calculated checks and answers DNS. Every assertion is about the
//! DNS answer (a real UDP query to the emulator's authoritative server), never only about the
//! agents' own states.
//!
//! The checkers run at Route 53's real settings (RequestInterval 10 s, FailureThreshold 2,
//! three regions) scaled by [`TIME_SCALE`]: one checker round takes 1 s instead of 10 s. The
//! tests query the authoritative server directly, so no resolver cache adds the TTL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use quorumgate::route53::RecordSet;
use quorumgate::target_app::TargetApp;
use quorumgate_testkit::dataplane::{self, DataPlane, Options, Source};
use tokio::process::Command;
use tokio::time::{sleep, Instant};

use super::{gate_records, Emulator, RECORD_NAME, ZONE_NAME};
use crate::support::{exe, TestCluster, CHECK};

pub const PRIMARY_IP: &str = "192.0.2.10";
pub const SECONDARY_IP: &str = "198.51.100.20";
/// Route 53's checker timing, scaled: RequestInterval 10 s → 1 s.
pub const TIME_SCALE: f64 = 0.1;
pub const INTERVAL_S: u64 = 10;
pub const FAILURE_THRESHOLD: u64 = 2;
/// The standby's check (the secondary target's).
pub const STANDBY: &str = "standby";

/// The data-plane failover gate `app`: primary = the test cluster's app (check `app`),
/// secondary = the standby app (check `standby`).
fn shared_toml(zone_id: &str, standby_url: &str, threshold: u64) -> String {
    format!(
        r#"
[[checks]]
id = "{STANDBY}"
interval = "300ms"
timeout = "250ms"
fall_after = 2
rise_after = 3
hold_down = "1s"
[checks.http]
url = "{standby_url}"
expect_status = [200]

[[gates]]
id = "app"
plane = "data"
zone_id = "{zone_id}"
zone = "{ZONE_NAME}"
record = "{RECORD_NAME}"
type = "A"
ttl = 60
kind = "failover"
health_check_interval = {INTERVAL_S}
health_check_failure_threshold = {threshold}
health_check_regions = ["us-east-1", "eu-west-1", "ap-southeast-1"]

[[gates.targets]]
id = "primary"
check = "{CHECK}"
role = "primary"
values = ["{PRIMARY_IP}"]

[[gates.targets]]
id = "secondary"
check = "{STANDBY}"
role = "secondary"
values = ["{SECONDARY_IP}"]
"#
    )
}

/// Three agents with public health listeners, the data-plane gate provisioned in the strict
/// emulator, and the data-plane emulator reading it.
pub struct DataPlaneRig {
    /// The strict Route 53 emulator and the standby app: kept running.
    _emu: Emulator,
    _standby: TargetApp,
    pub c: TestCluster,
    pub dp: DataPlane,
    pub operator_key: std::path::PathBuf,
    _keys: tempfile::TempDir,
    /// The calculated health checks of the primary's and the secondary's records.
    pub primary_hc: String,
    pub secondary_hc: String,
}

impl DataPlaneRig {
    pub async fn start() -> Self {
        Self::start_with(TIME_SCALE, FAILURE_THRESHOLD, |_| {}).await
    }

    /// With the checkers at `time_scale` and `threshold`; `tweak` adjusts the cluster.
    pub async fn start_with(
        time_scale: f64,
        threshold: u64,
        tweak: impl FnOnce(&mut quorumgate::devcluster::Spec),
    ) -> Self {
        let emu = Emulator::start().await;
        let zone_id = emu.create_zone(ZONE_NAME).await;
        let standby = TargetApp::start().await.expect("standby app");
        let (keys, operator_key, operator_pub) = super::alice();
        let route53 = super::local_route53(&emu.url, 5);
        let c = TestCluster::start(|spec| {
            spec.env = quorumgate_testkit::emulator::aws_env();
            spec.health_listener = true;
            spec.round_ms = 300;
            spec.timeout_ms = 250;
            spec.extra_shared = format!(
                "{}\n[[operators]]\nid = \"alice\"\npublic_key = \"{operator_pub}\"\n",
                shared_toml(&zone_id, &standby.url(), threshold)
            );
            spec.extra_local = spec
                .agents
                .iter()
                .map(|(id, _)| (id.clone(), route53.clone()))
                .collect();
            tweak(spec);
        })
        .await;
        c.wait_until(
            Duration::from_secs(30),
            "both checks HEALTHY everywhere",
            || async {
                let mut all = true;
                for i in 0..c.len() {
                    let s = c.status(i).await;
                    all &= s.checks.iter().filter(|k| k.decision == "healthy").count() == 2;
                }
                all
            },
        )
        .await;

        // provision → Route 53 state, through the real binary and the Route 53 API.
        let out = Command::new(exe())
            .args(["provision", "--config"])
            .arg(&c.written.agents[0].config_path)
            .envs(c.spec.env.iter().map(|(k, v)| (k, v)))
            .output()
            .await
            .expect("run quorumgate provision");
        assert!(
            out.status.success(),
            "provision failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let api = emu.client().await;
        let records: Vec<RecordSet> = gate_records(&api, &zone_id).await;
        let hc_of = |set: &str| {
            records
                .iter()
                .find(|r| r.name() == RECORD_NAME && r.set_identifier() == Some(set))
                .and_then(|r| r.health_check_id().map(str::to_owned))
                .unwrap_or_else(|| {
                    panic!("provisioned record {set} with a health check: {records:#?}")
                })
        };
        let (primary_hc, secondary_hc) = (hc_of("primary"), hc_of("secondary"));

        let dp = DataPlane::start(Options {
            source: Source::Route53 {
                endpoint: emu.url.clone(),
            },
            time_scale,
            ..Options::default()
        })
        .await
        .expect("start the data-plane emulator");
        let rig = Self {
            _emu: emu,
            _standby: standby,
            c,
            dp,
            operator_key,
            _keys: keys,
            primary_hc,
            secondary_hc,
        };
        rig.wait_answer(Duration::from_secs(30), PRIMARY_IP).await;
        rig
    }

    pub fn dns(&self) -> SocketAddr {
        self.dp.dns_addr()
    }

    /// The A record's answer, by a real DNS query (sorted; empty on an error).
    pub async fn answer(&self) -> Vec<String> {
        let mut a = dataplane::query(self.dns(), RECORD_NAME, "A")
            .await
            .unwrap_or_default();
        a.sort();
        a
    }

    /// Polls DNS until it answers `ip`; panics with the emulator's view after `limit`.
    /// Returns how long it took.
    pub async fn wait_answer(&self, limit: Duration, ip: &str) -> Duration {
        let start = Instant::now();
        loop {
            if self.answer().await == [ip.to_owned()] {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "DNS did not answer {ip} within {limit:?}\nemulator: {:#?}\n{}",
                self.dp.snapshot(),
                self.c.logs()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Samples DNS every 50 ms for `dur`; every distinct answer and when it was first seen.
    pub async fn sample(&self, dur: Duration) -> Answers {
        let start = Instant::now();
        let mut seen = Answers::default();
        while start.elapsed() < dur {
            let a = self.answer().await.join(",");
            seen.queries += 1;
            seen.first.entry(a).or_insert_with(|| start.elapsed());
            sleep(Duration::from_millis(50)).await;
        }
        seen
    }
}

/// What [`DataPlaneRig::sample`] saw.
#[derive(Debug, Default)]
pub struct Answers {
    pub first: BTreeMap<String, Duration>,
    pub queries: u64,
}

impl Answers {
    pub fn saw(&self, ip: &str) -> bool {
        self.first.contains_key(ip)
    }
}
