//! The system under test: the release `quorumgate` binary, a primary and a standby app, and
//! three agent processes (written and started by `quorumgate::devcluster`) with one
//! control-plane failover gate on the emulator's zone.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use quorumgate::devcluster::{self, Spec};
use quorumgate::net;
use quorumgate::status::Status;
use quorumgate::target_app::TargetApp;
use quorumgate_testkit::{region_addr, Home, Topology};
use tokio::process::Child;

use crate::emulator::{Emulator, PRIMARY_IP, RECORD_NAME, RECORD_TTL_S, SECONDARY_IP, ZONE_NAME};

/// The timings under test.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// Round interval, and the interval of both HTTP checks.
    pub round_ms: u64,
    pub check_timeout_ms: u64,
    pub fall_after: u32,
    pub rise_after: u32,
    pub hold_down_ms: u64,
    pub wait_period_ms: u64,
}

pub use quorumgate_benches::agent_binary;

/// The standby's check and the gate: primary = check `app` (the cluster's own check),
/// secondary = check `standby`. Policy and writer settings are the defaults except where the
/// bench needs quick repetitions (`wait_period`, `max_changes`) and automatic failback.
fn shared_toml(k: &Knobs, standby_url: &str, zone_id: &str) -> String {
    format!(
        r#"
[[checks]]
id = "standby"
interval = "{round}ms"
timeout = "{timeout}ms"
fall_after = {fall}
rise_after = {rise}
hold_down = "{hold}ms"
[checks.http]
url = "{standby_url}"
expect_status = [200]
body_contains = "ok"

[[gates]]
id = "app"
plane = "control"
zone_id = "{zone_id}"
zone = "{ZONE_NAME}"
record = "{RECORD_NAME}"
type = "A"
ttl = {RECORD_TTL_S}
kind = "failover"
wait_period = "{wait}ms"
max_changes = 1000
window = "1h"
auto_failback = true

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
        round = k.round_ms,
        timeout = k.check_timeout_ms,
        fall = k.fall_after,
        rise = k.rise_after,
        hold = k.hold_down_ms,
        wait = k.wait_period_ms,
    )
}

/// Where the agents and apps run.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// Everything on 127.0.0.1, as in the integration tests.
    Loopback,
    /// One agent per region namespace; the primary app in the first region, the standby in
    /// the second, the emulator in the hub. Every connection between regions, and from a
    /// region to the emulator, crosses the topology's relay (and its latency). The caller
    /// runs on a thread inside the hub namespace.
    Regions(&'a Topology),
}

/// Port every agent listens on inside its region.
const REGION_AGENT_PORT: u16 = 9443;

/// Everything that runs, stopped when dropped (the agents and the emulator are killed; the
/// apps' tasks are aborted).
#[derive(Debug)]
pub struct Rig {
    pub primary: TargetApp,
    /// Kept alive (and healthy) for the whole run.
    _standby: TargetApp,
    pub emu: Emulator,
    pub cluster: devcluster::Cluster,
    children: Mutex<Vec<Child>>,
    dir: Option<tempfile::TempDir>,
}

impl Rig {
    /// Starts everything; the agents `spawn_gap` apart (their round timers start when they do).
    pub async fn start(
        exe: &Path,
        knobs: &Knobs,
        emu: Emulator,
        spawn_gap: Duration,
        placement: Placement<'_>,
    ) -> anyhow::Result<Self> {
        quorumgate::tls::install_crypto_provider();
        let zone_id = emu.provision().await?;
        let dir = tempfile::Builder::new()
            .prefix("qg-failover-e2e-")
            .tempdir()
            .context("temp dir")?;
        let (primary, standby, mut spec, route53_url) = match placement {
            Placement::Loopback => {
                let primary = TargetApp::start().await.context("primary app")?;
                let standby = TargetApp::start().await.context("standby app")?;
                let spec = Spec::three(dir.path(), primary.url());
                let standby_url = standby.url();
                (primary, (standby, standby_url), spec, emu.url.clone())
            }
            Placement::Regions(topo) => {
                let (primary, primary_url) = app_in_region(topo, 0, "primary").await?;
                let standby = app_in_region(topo, 1, "standby").await?;
                let mut spec = Spec::three(dir.path(), primary_url);
                let mut addresses = Vec::new();
                for (i, (id, _)) in spec.agents.iter().enumerate() {
                    let listen = SocketAddrV4::new(region_addr(i), REGION_AGENT_PORT);
                    let vip = topo.relay().expose(id, Home::Region(i), listen).await?;
                    addresses.push((listen.into(), format!("http://{vip}/").parse()?));
                }
                spec.addresses = Some(addresses);
                let emu_addr: SocketAddrV4 = emu
                    .url
                    .trim_start_matches("http://")
                    .parse()
                    .context("the emulator's address")?;
                let emu_vip = topo.relay().expose("route53", Home::Hub, emu_addr).await?;
                (primary, standby, spec, format!("http://{emu_vip}"))
            }
        };
        let (standby, standby_url) = standby;
        spec.round_ms = knobs.round_ms;
        spec.timeout_ms = knobs.check_timeout_ms;
        spec.fall_after = knobs.fall_after;
        spec.rise_after = knobs.rise_after;
        spec.hold_down_ms = knobs.hold_down_ms;
        spec.extra_shared = shared_toml(knobs, &standby_url, &zone_id);
        // Route 53 settings: the defaults (4 requests/s, 10 s attempts, INSYNC wait up to 2 min
        // polling every 2 s) except the endpoint. The emulator answers INSYNC in the
        // ChangeResourceRecordSets response itself, so no GetChange poll is made.
        let route53 = format!("[local.route53]\nendpoint_url = \"{route53_url}\"\n");
        spec.extra_local = spec
            .agents
            .iter()
            .map(|(id, _)| (id.clone(), route53.clone()))
            .collect();
        spec.env = quorumgate_testkit::emulator::aws_env();
        let cluster = devcluster::write(&spec)?;
        let mut children = Vec::new();
        for (i, a) in cluster.agents.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(spawn_gap).await;
            }
            children.push(match placement {
                Placement::Loopback => devcluster::spawn(exe, a, &spec.env)?,
                Placement::Regions(topo) => {
                    devcluster::spawn_with(topo.region_ns(i).command(exe), a, &spec.env)?
                }
            });
        }
        Ok(Self {
            primary,
            _standby: standby,
            emu,
            cluster,
            children: Mutex::new(children),
            dir: Some(dir),
        })
    }

    /// `(agent id, audit log path)` per agent.
    pub fn audit_paths(&self) -> Vec<(String, PathBuf)> {
        self.cluster
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.state_dir.join("audit.jsonl")))
            .collect()
    }

    /// Fails if any agent process has exited.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        let mut children = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (child, agent) in children.iter_mut().zip(&self.cluster.agents) {
            if let Some(status) = child.try_wait()? {
                bail!("agent {} exited: {status}", agent.id);
            }
        }
        Ok(())
    }

    async fn get(&self, i: usize, path: &str) -> Option<(u16, bytes::Bytes)> {
        let url = self.cluster.agents[i].url.join(path).ok()?;
        let tls = Some(Arc::clone(&self.cluster.client_tls));
        let req = net::Request::get(url, tls, 16 * 1024 * 1024);
        net::send(&req, Duration::from_secs(3))
            .await
            .ok()
            .map(|r| (r.status.as_u16(), r.body))
    }

    /// Whether every agent answers `/readyz` with 200.
    pub async fn all_ready(&self) -> bool {
        for i in 0..self.cluster.agents.len() {
            if self.get(i, "readyz").await.is_none_or(|(c, _)| c != 200) {
                return false;
            }
        }
        true
    }

    /// Every agent's `/v1/status`; `None` if one is unreachable.
    pub async fn statuses(&self) -> Option<Vec<Status>> {
        let mut out = Vec::new();
        for i in 0..self.cluster.agents.len() {
            let (code, body) = self.get(i, "v1/status").await?;
            if code != 200 {
                return None;
            }
            out.push(serde_json::from_slice(&body).ok()?);
        }
        Some(out)
    }

    /// The last `n` lines of every agent's log.
    pub fn log_tails(&self, n: usize) -> String {
        let mut out = String::new();
        for a in &self.cluster.agents {
            let log = std::fs::read_to_string(&a.log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(n)..];
            out.push_str(&format!("--- {} ({}) ---\n", a.id, a.log_path.display()));
            for l in tail {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Keeps the agents' directory (configs, logs, audit logs) after the run; returns it.
    pub fn keep_dir(&mut self) -> Option<PathBuf> {
        self.dir.take().map(tempfile::TempDir::keep)
    }
}

/// A target app listening in region `i`, and the URL (through the relay) the checks use.
async fn app_in_region(
    topo: &Topology,
    i: usize,
    name: &str,
) -> anyhow::Result<(TargetApp, String)> {
    let bind = SocketAddrV4::new(region_addr(i), 0);
    let app = topo
        .in_region(i, move || TargetApp::bind(bind.into()))
        .await?
        .with_context(|| format!("{name} app in region {i}"))?;
    let SocketAddr::V4(upstream) = app.addr() else {
        bail!("the {name} app bound a non-IPv4 address");
    };
    let vip = topo.relay().expose(name, Home::Region(i), upstream).await?;
    Ok((app, format!("http://{vip}/healthz")))
}
