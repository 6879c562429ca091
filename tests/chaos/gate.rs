//! A control-plane failover gate on a chaos [`Rig`], for the scenarios that must show what the
//! gate did in Route 53 (byzantine, crash, failure with noise).
//!
//! The rig starts the strict Route 53 emulator in the hub, but the zone id it will hand out is
//! only known once it runs, and the agents' config must name it. So [`GateRig::start`] starts
//! the rig with the emulator, creates the zone and its normal records (epoch 1, as `provision`
//! leaves them), then stops every agent, adds the gate to every config (same shared text, so
//! the digests agree), wipes their state (audit logs begun under the old digest) and starts
//! them again. The gate: record `app.example.com` answering [`PRIMARY_IP`] while check `app`
//! (the rig's target) is healthy, else [`SECONDARY_IP`] if check `standby` (a second app in the
//! hub) is. Agents reach the emulator through the relay, so its links carry latency and cuts
//! like any other; the test reads it from the hub directly.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use quorumgate::route53::{
    DesiredRecords, Fence, FencedWriter, GateTarget, RateLimiter, RecordSet, RecordTarget,
    RetryPolicy, Route53Api, SdkOptions, SdkRoute53, StaticCredentials, WriterOptions,
};
use quorumgate::status::GateStatus;
use quorumgate::target_app::TargetApp;
use quorumgate_testkit::Home;
use serde_json::Value;

use crate::rig::{exe, Options, Rig};

pub const ZONE_NAME: &str = "example.com";
pub const GATE: &str = "app";
pub const RECORD_NAME: &str = "app.example.com.";
pub const FENCE_NAME: &str = "_quorumgate.app.example.com.";
pub const PRIMARY_IP: &str = "192.0.2.10";
pub const SECONDARY_IP: &str = "198.51.100.20";
/// Where an [`ExtraMember`]'s URL points in its home region (nothing listens there).
const EXTRA_MEMBER_PORT: u16 = 9444;

/// Gate settings a scenario picks.
#[derive(Debug, Clone)]
pub struct Knobs {
    pub writer_stagger: &'static str,
    pub requests_per_second: u32,
    /// `[local.route53]` per-attempt timeout (a stalled write fails after it).
    pub attempt_timeout: &'static str,
    pub operation_timeout: &'static str,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            writer_stagger: "1s",
            requests_per_second: 5,
            attempt_timeout: "2s",
            operation_timeout: "8s",
        }
    }
}

/// One request as the emulator's fault layer logged it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub op: String,
    /// `ok` (answered by moto) or the fault kind.
    pub outcome: String,
    /// HTTP status moto gave (-1: stalled before moto saw it).
    pub status: i64,
}

/// A [`Rig`] with the gate. Derefs to the rig.
pub struct GateRig {
    pub rig: Rig,
    pub zone_id: String,
    /// The secondary's app (in the hub); held so it keeps serving.
    _standby: TargetApp,
}

impl Deref for GateRig {
    type Target = Rig;
    fn deref(&self) -> &Rig {
        &self.rig
    }
}

impl DerefMut for GateRig {
    fn deref_mut(&mut self) -> &mut Rig {
        &mut self.rig
    }
}

/// A member configured in every agent's config but run by no agent process (scenario 7's
/// byzantine member): homed in region `home`, where nothing serves its port, so peers' pushes
/// and pulls to it fail as they would to a member whose server is down.
#[derive(Debug, Clone)]
pub struct ExtraMember {
    pub id: String,
    pub region: String,
    pub home: usize,
    pub key: quorum::SigningKey,
}

impl GateRig {
    /// See the module docs. `opts.emulator` is forced on.
    pub async fn start(opts: Options, knobs: &Knobs) -> Self {
        Self::start_with(opts, knobs, None).await
    }

    /// As [`start`](Self::start), with one more configured member (not run by the rig).
    pub async fn start_with(mut opts: Options, knobs: &Knobs, extra: Option<&ExtraMember>) -> Self {
        opts.emulator = true;
        let mut rig = Rig::start(opts).await;
        let standby = rig
            .topo
            .in_hub(|| async { TargetApp::start().await })
            .await
            .expect("hub thread")
            .expect("standby app in the hub");
        let standby_vip = rig
            .topo
            .relay()
            .expose(
                "standby",
                Home::Hub,
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, standby.addr().port()),
            )
            .await
            .expect("expose standby");
        let hub_url = emulator(&rig).hub_url.clone();
        let zone_id = rig
            .topo
            .in_hub(move || async move {
                let api = Arc::new(client(&hub_url).await);
                let out = api
                    .client()
                    .create_hosted_zone()
                    .name(ZONE_NAME)
                    .caller_reference("chaos-zone")
                    .send()
                    .await
                    .map_err(|e| format!("create hosted zone: {e:?}"))?;
                let id = out
                    .hosted_zone()
                    .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
                    .ok_or("no zone in the answer")?;
                let normal = DesiredRecords::new(ZONE_NAME, [a_record(PRIMARY_IP)])
                    .map_err(|e| e.to_string())?;
                writer(api, &id, "provision")
                    .apply(0, &normal)
                    .await
                    .map_err(|e| format!("initial records: {e}"))?;
                Ok::<_, String>(id)
            })
            .await
            .expect("hub thread")
            .expect("zone and initial records in the emulator");

        let mut shared = gate_toml(&format!("http://{standby_vip}/healthz"), &zone_id, knobs);
        if let Some(m) = extra {
            let vip = rig
                .topo
                .relay()
                .expose(
                    &format!("agent-{}", m.id),
                    Home::Region(m.home),
                    SocketAddrV4::new(quorumgate_testkit::region_addr(m.home), EXTRA_MEMBER_PORT),
                )
                .await
                .expect("expose the extra member");
            shared.push_str(&format!(
                "\n[[members]]\nid = \"{}\"\nregion = \"{}\"\nurl = \"http://{vip}/\"\npublic_key = \"{}\"\n",
                m.id,
                m.region,
                quorumgate::keys::public_key_base64(&m.key.verifying_key())
            ));
        }
        let local = format!(
            "\n[local.route53]\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\nconnect_timeout = \"1s\"\nattempt_timeout = \"{}\"\noperation_timeout = \"{}\"\nmax_requests_per_second = {}\ninsync_timeout = \"0s\"\n",
            emulator(&rig).url,
            knobs.attempt_timeout,
            knobs.operation_timeout,
            knobs.requests_per_second
        );
        for i in 0..rig.len() {
            rig.kill(i).await;
        }
        for a in &rig.agents {
            let text = std::fs::read_to_string(&a.config_path).expect("read config");
            let (head, tail) = text.split_at(text.find("\n[local]\n").expect("[local] section"));
            std::fs::write(&a.config_path, format!("{head}\n{shared}{tail}{local}"))
                .expect("write config");
            // The audit chain was begun under the old digest; the gate starts a fresh one.
            let _ = std::fs::remove_dir_all(&a.state_dir);
        }
        // Credentials for the emulator, and nothing from the host's AWS configuration.
        for i in 0..rig.len() {
            rig.opts
                .env
                .entry(i)
                .or_default()
                .extend(quorumgate_testkit::emulator::aws_env());
        }
        for i in 0..rig.len() {
            rig.restart(i).await;
        }
        let rig = Self {
            rig,
            zone_id,
            _standby: standby,
        };
        rig.wait_gates("every agent synced at epoch 1", |g| {
            g.synced && g.epoch == 1
        })
        .await;
        rig
    }

    /// The gate's status on every agent in `which`.
    pub async fn gates_of(&self, which: &[usize]) -> Vec<GateStatus> {
        let mut out = Vec::new();
        for &i in which {
            if let Ok(s) = self.try_status(i).await {
                out.extend(s.gates.into_iter().filter(|g| g.id == GATE));
            }
        }
        out
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.len()).collect()
    }

    /// Polls the agents in `which` until `cond` holds for each one's gate.
    pub async fn wait_gates_of(
        &self,
        which: &[usize],
        limit: Duration,
        what: &str,
        cond: impl Fn(&GateStatus) -> bool,
    ) {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let gates = self.gates_of(which).await;
            if gates.len() == which.len() && gates.iter().all(&cond) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "timed out after {limit:?} waiting for: {what}\nlast gate status: {gates:#?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_gates(&self, what: &str, cond: impl Fn(&GateStatus) -> bool) {
        self.wait_gates_of(&self.all(), Duration::from_secs(40), what, cond)
            .await;
    }

    /// Queues a fault plan in the emulator (see tests/fixtures/moto_strict.py).
    pub async fn fault(&self, plan: Value) {
        let (code, body) = emulator(self)
            .admin(&self.topo, http::Method::POST, "/_fault", &plan.to_string())
            .await;
        assert_eq!(code, 200, "queueing fault {plan}: {body}");
    }

    /// Drops queued faults and releases (drops) stalled requests.
    pub async fn clear_faults(&self) {
        let (code, body) = emulator(self)
            .admin(&self.topo, http::Method::DELETE, "/_fault", "")
            .await;
        assert_eq!(code, 200, "clearing faults: {body}");
    }

    pub async fn reset_stats(&self) {
        let (code, body) = emulator(self)
            .admin(&self.topo, http::Method::DELETE, "/_stats", "")
            .await;
        assert_eq!(code, 200, "resetting stats: {body}");
    }

    /// The emulator's request log and how many requests are stalled right now.
    pub async fn stats(&self) -> (Vec<Logged>, u64) {
        let (code, body) = emulator(self)
            .admin(&self.topo, http::Method::GET, "/_stats", "")
            .await;
        assert_eq!(code, 200, "stats: {body}");
        let v: Value = serde_json::from_str(&body).expect("stats json");
        let log = v["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| Logged {
                op: r["op"].as_str().unwrap_or("").to_owned(),
                outcome: r["outcome"].as_str().unwrap_or("").to_owned(),
                status: r["status"].as_i64().unwrap_or(0),
            })
            .collect();
        (log, v["stalled_now"].as_u64().unwrap_or(0))
    }

    /// ChangeResourceRecordSets batches moto applied (answered 200), whether or not the
    /// answer reached the client (`stall_response` holds it back).
    pub async fn applied_batches(&self) -> usize {
        self.stats()
            .await
            .0
            .iter()
            .filter(|r| {
                r.op == "ChangeResourceRecordSets"
                    && r.status == 200
                    && (r.outcome == "ok" || r.outcome == "stall_response")
            })
            .count()
    }

    /// The fence as Route 53 holds it now.
    pub async fn fence(&self) -> Option<Fence> {
        let hub_url = emulator(self).hub_url.clone();
        let zone = self.zone_id.clone();
        self.topo
            .in_hub(move || async move {
                let api = client(&hub_url).await;
                let records = api
                    .list_record_sets(&zone, Some(FENCE_NAME))
                    .await
                    .expect("list the fence");
                let fences: Vec<Fence> = records
                    .iter()
                    .filter(|r| r.record_type() == "TXT")
                    .map(|r| Fence::from_record(r).expect("fence parses"))
                    .collect();
                assert!(fences.len() <= 1, "more than one fence: {fences:?}");
                fences.into_iter().next()
            })
            .await
            .expect("hub thread")
    }

    /// The values the gate's A record answers now.
    pub async fn answer(&self) -> Vec<String> {
        let hub_url = emulator(self).hub_url.clone();
        let zone = self.zone_id.clone();
        self.topo
            .in_hub(move || async move {
                let api = client(&hub_url).await;
                api.list_record_sets(&zone, Some(RECORD_NAME))
                    .await
                    .expect("list the gate's records")
                    .iter()
                    .filter(|r| r.name() == RECORD_NAME && r.record_type() == "A")
                    .flat_map(|r| match r.target() {
                        RecordTarget::Values { values, .. } => values.clone(),
                        RecordTarget::Alias { dns_name, .. } => vec![dns_name.clone()],
                    })
                    .collect()
            })
            .await
            .expect("hub thread")
    }

    /// Agent `i`'s audit records of `event` for this gate.
    pub fn gate_events(&self, i: usize, event: &str) -> Vec<Value> {
        self.audit(i)
            .into_iter()
            .filter(|r| r.event == event && r.body["gate"] == GATE)
            .map(|r| r.body)
            .collect()
    }

    /// `quorumgate verify --audit` on every agent's log; panics naming the agent otherwise.
    pub fn verify_audits(&self) {
        for a in &self.agents {
            let out = Command::new(exe())
                .args(["verify", "--config"])
                .arg(&a.config_path)
                .arg("--audit")
                .arg(a.state_dir.join("audit.jsonl"))
                .output()
                .expect("run verify --audit");
            assert!(
                out.status.success(),
                "verify --audit of {}: {}{}",
                a.id,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn emulator(rig: &Rig) -> &crate::rig::HubEmulator {
    rig.emulator
        .as_ref()
        .expect("the gate rig starts the emulator")
}

pub fn a_record(ip: &str) -> RecordSet {
    RecordSet::new(RECORD_NAME, "A", RecordTarget::values(60, [ip]))
}

/// A client of the emulator for the test itself (runs in the hub): its own token bucket.
async fn client(hub_url: &str) -> SdkRoute53 {
    SdkRoute53::load(SdkOptions {
        endpoint_url: Some(hub_url.to_owned()),
        region: Some("us-east-1".into()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        }),
        connect_timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 20,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(800),
            deadline: Duration::from_secs(60),
        },
        limiter: Arc::new(RateLimiter::route53_default()),
        jitter_seed: Some(1),
    })
    .await
}

fn writer(api: Arc<dyn Route53Api>, zone_id: &str, agent: &str) -> FencedWriter {
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

/// Shared TOML: check `standby` and the control-plane failover gate [`GATE`].
fn gate_toml(standby_url: &str, zone_id: &str, knobs: &Knobs) -> String {
    format!(
        r#"
[[checks]]
id = "standby"
interval = "400ms"
timeout = "300ms"
fall_after = 3
rise_after = 3
hold_down = "4000ms"
[checks.http]
url = "{standby_url}"
expect_status = [200]

[[gates]]
id = "{GATE}"
plane = "control"
zone_id = "{zone_id}"
zone = "{ZONE_NAME}"
record = "{RECORD_NAME}"
kind = "failover"
wait_period = "1s"
max_changes = 5
auto_failback = false
window = "1h"
writer_stagger = "{stagger}"

[[gates.targets]]
id = "primary"
check = "app"
role = "primary"
values = ["{PRIMARY_IP}"]

[[gates.targets]]
id = "secondary"
check = "standby"
role = "secondary"
values = ["{SECONDARY_IP}"]
"#,
        stagger = knobs.writer_stagger
    )
}
