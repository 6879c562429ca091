//! The rig of the control-plane gate scenarios (route53::gates, db::rpo_gate): the strict
//! emulator with the gate's zone and its normal records (epoch 1, as `provision` leaves them),
//! an operator key (alice), and three agents whose shared config the caller writes — checks and
//! a gate [`GATE`](super::GATE) on [`RECORD_NAME`] with targets answering [`PRIMARY_IP`] and
//! [`SECONDARY_IP`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use quorumgate::devcluster::Spec;
use quorumgate::route53::{DesiredRecords, RecordSet, RecordTarget, SdkRoute53};
use quorumgate::status::GateStatus;

use super::{fence_now, writer, Emulator, GATE, RECORD_NAME, ZONE_NAME};
use crate::support::{exe, TestCluster};

pub const PRIMARY_IP: &str = "192.0.2.10";
pub const SECONDARY_IP: &str = "198.51.100.20";

/// How long a scenario waits for one condition.
const WAIT: Duration = Duration::from_secs(30);

pub fn a_record(ip: &str) -> RecordSet {
    RecordSet::new(RECORD_NAME, "A", RecordTarget::values(60, [ip]))
}

/// A running rig. See the module docs.
pub struct GateRig {
    pub emu: Emulator,
    pub zone_id: String,
    pub api: Arc<SdkRoute53>,
    pub c: TestCluster,
    pub operator_key: PathBuf,
    pub keys: tempfile::TempDir,
}

impl GateRig {
    /// Starts the emulator and the agents, and waits until every agent has read the fence.
    ///
    /// `configure` gets the cluster spec (its `env` already holds the emulator's credentials;
    /// add to it, change timings) and the zone id without `/hostedzone/`, and returns the
    /// shared TOML: checks and gates. The rig adds operator `alice` and each agent's
    /// `[local.route53]`, allowing `requests_per_second` API calls.
    pub async fn start(
        requests_per_second: u32,
        configure: impl FnOnce(&mut Spec, &str) -> String,
    ) -> Self {
        let emu = Emulator::start().await;
        let zone_id = emu.create_zone(ZONE_NAME).await;
        let api = Arc::new(emu.client().await);
        let normal = DesiredRecords::new(ZONE_NAME, [a_record(PRIMARY_IP)]).expect("records");
        writer(api.clone(), &zone_id, "provision")
            .apply(0, &normal)
            .await
            .expect("initial records");

        let (keys, operator_key, operator_pub) = super::alice();
        let route53 = super::local_route53(&emu.url, requests_per_second);
        let bare_zone = zone_id.trim_start_matches("/hostedzone/").to_owned();
        let c = TestCluster::start(|spec| {
            spec.env = quorumgate_testkit::emulator::aws_env();
            // RDS (a gate's `[gates.promote]`) through the standard endpoint setting.
            spec.env
                .push(("AWS_ENDPOINT_URL_RDS".to_owned(), emu.url.clone()));
            let shared = configure(spec, &bare_zone);
            spec.extra_shared = format!(
                "{shared}\n[[operators]]\nid = \"alice\"\npublic_key = \"{operator_pub}\"\n"
            );
            spec.extra_local = spec
                .agents
                .iter()
                .map(|(id, _)| (id.clone(), route53.clone()))
                .collect();
        })
        .await;
        let rig = Self {
            emu,
            zone_id,
            api,
            c,
            operator_key,
            keys,
        };
        // Every agent has read the fence before anything happens.
        rig.wait_gates("every agent synced at epoch 1", |g| {
            g.synced && g.epoch == 1
        })
        .await;
        rig
    }

    /// The gate's status on every running agent.
    pub async fn gates(&self) -> Vec<GateStatus> {
        let mut out = Vec::new();
        for i in 0..self.c.len() {
            let s = self.c.status(i).await;
            out.extend(s.gates.into_iter().filter(|g| g.id == GATE));
        }
        out
    }

    /// Polls every agent's gate status until `cond` holds for all; on timeout panics with
    /// the last statuses and the agents' logs.
    pub async fn wait_gates(&self, what: &str, cond: impl Fn(&GateStatus) -> bool) {
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let gates = self.gates().await;
            if gates.len() == self.c.len() && gates.iter().all(&cond) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for: {what}\nlast gate status: {gates:#?}\n{}",
                self.c.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The A record's values.
    pub async fn answer(&self) -> Vec<String> {
        let records = super::gate_records(&self.api, &self.zone_id).await;
        records
            .iter()
            .filter(|r| r.name() == RECORD_NAME && r.record_type() == "A")
            .flat_map(|r| match r.target() {
                RecordTarget::Values { values, .. } => values.clone(),
                RecordTarget::Alias { dns_name, .. } => vec![dns_name.clone()],
            })
            .collect()
    }

    pub async fn wait_answer(&self, ip: &str) {
        self.c
            .wait_until(WAIT, &format!("record answers {ip}"), || async {
                self.answer().await == [ip.to_owned()]
            })
            .await;
    }

    /// ChangeResourceRecordSets calls the emulator accepted.
    pub async fn accepted_writes(&self) -> usize {
        self.emu
            .requests("ChangeResourceRecordSets")
            .await
            .iter()
            .filter(|r| r.outcome == "ok" && r.status == 200)
            .count()
    }

    pub async fn epoch(&self) -> u64 {
        fence_now(&self.api, &self.zone_id)
            .await
            .map_or(0, |f| f.epoch)
    }

    /// The cluster identity operator commands for this rig's agents must carry.
    pub fn cluster_id(&self) -> quorum::ClusterId {
        let cfg = config::Config::load(Some(&self.c.written.agents[0].config_path))
            .expect("the rig's config loads");
        quorum::ClusterId::new(&cfg.shared.cluster.name, &cfg.shared.membership)
    }

    /// Runs an operator subcommand through the real binary, signed with alice's key.
    pub fn operator(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(exe())
            .args(args)
            .arg("--config")
            .arg(&self.c.written.agents[0].config_path)
            .args(["--operator", "alice", "--key"])
            .arg(&self.operator_key)
            .args(["--note", "integration test"])
            .output()
            .expect("run operator command");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `quorumgate verify --audit` accepts every agent's audit log.
    pub fn verify_audits(&self) {
        for a in &self.c.written.agents {
            let out = Command::new(exe())
                .args(["verify", "--config"])
                .arg(&a.config_path)
                .arg("--audit")
                .arg(a.state_dir.join("audit.jsonl"))
                .output()
                .expect("run verify --audit");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}: {text}", a.id);
        }
    }

    /// The bodies of agent `i`'s audit records of this event.
    pub fn audit_events(&self, i: usize, event: &str) -> Vec<serde_json::Value> {
        let path = self.c.written.agents[i].state_dir.join("audit.jsonl");
        quorumgate::audit::read_records(&path)
            .expect("audit log")
            .into_iter()
            .filter(|r| r.event == event)
            .map(|r| r.body)
            .collect()
    }

    /// `quorumgate status --url …` against agent 0: the gate's line of the table.
    pub fn status_line(&self, gate: &str) -> String {
        let out = Command::new(exe())
            .args(["status", "--url", self.c.written.agents[0].url.as_str()])
            .output()
            .expect("run status");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        text.lines()
            .skip_while(|l| !l.starts_with("GATE "))
            .find(|l| l.starts_with(&format!("{gate} ")))
            .unwrap_or_else(|| panic!("no {gate} line: {text}"))
            .to_owned()
    }
}

/// Shared TOML: the check `standby`, probing `url` with the cluster's short timings.
pub fn standby_check(url: &str) -> String {
    format!(
        r#"
[[checks]]
id = "standby"
interval = "300ms"
timeout = "200ms"
fall_after = 2
rise_after = 3
hold_down = "1000ms"
[checks.http]
url = "{url}"
expect_status = [200]
"#
    )
}

/// Shared TOML: a control-plane failover gate `id` on `record` whose primary is check `app`
/// (answering [`PRIMARY_IP`]) and secondary check `standby` ([`SECONDARY_IP`]). `settings`
/// are more keys of the gate's table; sub-tables (`[gates.promote]`, `[gates.drill]`) may
/// follow the returned text.
pub fn failover_gate(id: &str, zone_id: &str, record: &str, settings: &str) -> String {
    format!(
        r#"
[[gates]]
id = "{id}"
plane = "control"
zone_id = "{zone_id}"
zone = "{ZONE_NAME}"
record = "{record}"
kind = "failover"
{settings}

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
"#
    )
}
