//! The chaos rig: three real `quorumgate agent` processes, one per region namespace, talking
//! to each other and to their target only through the testkit relay in the hub.
//!
//! ```text
//!  region 0 (use1)    region 1 (usw2)    region 2 (euw1)         hub
//!  agent :9443        agent :9443        agent :9443             relay: VIP per service
//!      \___________________\___________________\____ veth ____   target app (+ canary)
//!                                                                (+ Route 53 emulator)
//! ```
//!
//! Member URLs are the agents' relay VIPs, so every ballot push and pull crosses a link the
//! test can delay or cut. The target app (and the optional emulator) are homed in the hub, so
//! `relay().cut(i, Home::Hub)` partitions region i from the target without touching the
//! agents' links to each other. The test itself reads `/v1/status`, `/metrics` and the audit
//! logs from the hub, directly on the region addresses: those reads bypass the relay and keep
//! working while a region is partitioned.

#![allow(dead_code)] // Each scenario uses a different part of the rig.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use quorumgate::audit::{self, Record};
use quorumgate::status::Status;
use quorumgate::target_app::TargetApp;
use quorumgate::{keys, net, tls};
use quorumgate_testkit::{region_addr, Home, Topology};
use tokio::process::{Child, ChildStdin};
use tokio::time::Instant;

/// Every agent listens on this port on its region address.
pub const AGENT_PORT: u16 = 9443;
/// The check every agent probes (the target app's `/healthz`).
pub const CHECK: &str = "app";
/// Agents, one per region, in region order.
pub const AGENTS: [(&str, &str); 3] = [
    ("use1", "us-east-1"),
    ("usw2", "us-west-2"),
    ("euw1", "eu-west-1"),
];
/// `LD_PRELOAD` library of libfaketime (Debian's `faketime` package).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumgate"))
}

/// Shape and timings of a chaos cluster. Defaults: 400 ms rounds (probe timeout 350 ms), fall/rise after 3 rounds,
/// 4 s hold-down, 35 ms one-way latency between regions (and from each region to the hub).
#[derive(Debug, Clone)]
pub struct Options {
    /// A few letters naming the scenario (namespace names).
    pub tag: String,
    pub round_ms: u64,
    pub probe_timeout_ms: u64,
    pub valid_for_ms: u64,
    pub max_clock_skew_ms: u64,
    pub peer_timeout_ms: u64,
    pub fall_after: u32,
    pub rise_after: u32,
    pub hold_down_ms: u64,
    /// One-way latency of every inter-region and region-to-hub link.
    pub latency: Duration,
    /// Start a second HTTP app in the hub (the "canary") and give each agent a control probe
    /// on it, abstaining after this many failed rounds (`control_failures_to_abstain`).
    pub canary_abstain_after: Option<u32>,
    /// Start the strict Route 53 emulator in the hub (tests/fixtures/moto_strict.py).
    pub emulator: bool,
    /// Route 53's data plane in the hub ([`crate::dns`]): every agent gets a public health
    /// listener and the scenario can ask what DNS answers.
    pub dataplane: bool,
    /// Extra shared TOML (checks, gates), placed before `[local]` in every agent's config.
    pub extra_shared: String,
    /// Extra `[local]` TOML per agent index (appended after the rig's own `[local]` keys).
    pub extra_local: BTreeMap<usize, String>,
    /// Extra environment per agent index (e.g. libfaketime's).
    pub env: BTreeMap<usize, Vec<(String, String)>>,
    pub log_level: String,
}

impl Options {
    #[must_use]
    pub fn new(tag: &str) -> Self {
        Self {
            tag: tag.to_owned(),
            round_ms: 400,
            probe_timeout_ms: 350,
            valid_for_ms: 1_600,
            max_clock_skew_ms: 500,
            peer_timeout_ms: 300,
            fall_after: 3,
            rise_after: 3,
            hold_down_ms: 4_000,
            latency: Duration::from_millis(35),
            canary_abstain_after: None,
            emulator: false,
            dataplane: false,
            extra_shared: String::new(),
            extra_local: BTreeMap::new(),
            env: BTreeMap::new(),
            log_level: "info".to_owned(),
        }
    }

    /// Runs agent `i` under libfaketime with its wall clock shifted by `offset` (e.g. "+3s",
    /// "-2s"); its monotonic clock (timers) stays real.
    #[must_use]
    pub fn skew_clock(mut self, i: usize, offset: &str) -> Self {
        self.env.entry(i).or_default().extend([
            ("LD_PRELOAD".to_owned(), LIBFAKETIME.to_owned()),
            ("FAKETIME".to_owned(), offset.to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
            ("FAKETIME_NO_CACHE".to_owned(), "1".to_owned()),
        ]);
        self
    }
}

/// One agent's files.
#[derive(Debug)]
pub struct AgentFiles {
    pub id: String,
    pub region: String,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub state_dir: PathBuf,
    pub key: quorum::SigningKey,
    /// Where peers reach it (through the relay).
    pub vip: SocketAddrV4,
}

/// The strict Route 53 emulator, running in the hub.
#[derive(Debug)]
pub struct HubEmulator {
    /// `http://<vip>:<port>`: what agents (in regions) use, through the relay.
    pub url: String,
    /// `http://127.0.0.1:<port>`: what the test uses from the hub.
    pub hub_url: String,
    child: Child,
    _stdin: ChildStdin,
}

/// A running chaos cluster. Dropping it kills the agents and removes the namespaces.
pub struct Rig {
    // Drop order: processes, then apps, then the namespaces.
    children: Vec<Option<Child>>,
    pub emulator: Option<HubEmulator>,
    pub dns: Option<crate::dns::ChaosDns>,
    pub target: TargetApp,
    pub canary: Option<TargetApp>,
    pub agents: Vec<AgentFiles>,
    pub opts: Options,
    /// The target's VIP (what the agents probe).
    pub target_vip: SocketAddrV4,
    pub topo: Topology,
    dir: tempfile::TempDir,
    started: Instant,
}

impl Rig {
    /// Makes the topology, starts the target (and canary, emulator), writes the configs and
    /// starts the three agents; returns once every agent is ready and has a decision.
    pub async fn start(opts: Options) -> Self {
        require_tools(&opts);
        tls::install_crypto_provider();
        let started = Instant::now();
        let regions: Vec<&str> = AGENTS.iter().map(|(_, r)| *r).collect();
        let topo = Topology::create(&opts.tag, &regions)
            .expect("network namespaces (needs root and iproute2: bash scripts/test-deps.sh)");
        topo.relay().set_latency_all(opts.latency);
        let dir = tempfile::tempdir().expect("tempdir");

        let target = start_app_in_hub(&topo).await;
        let target_vip = expose_app(&topo, "target", &target).await;
        let canary = match opts.canary_abstain_after {
            Some(_) => Some(start_app_in_hub(&topo).await),
            None => None,
        };
        let canary_vip = match &canary {
            Some(c) => Some(expose_app(&topo, "canary", c).await),
            None => None,
        };
        let emulator = if opts.emulator {
            Some(HubEmulator::start(&topo).await)
        } else {
            None
        };

        let mut agents = Vec::new();
        for (i, (id, region)) in AGENTS.iter().enumerate() {
            let upstream = SocketAddrV4::new(region_addr(i), AGENT_PORT);
            let vip = topo
                .relay()
                .expose(&format!("agent-{id}"), Home::Region(i), upstream)
                .await
                .expect("expose agent");
            let key = keys::generate().expect("key");
            let key_file = dir.path().join(format!("{id}-signing.key"));
            keys::write_signing_key(&key_file, &key).expect("write key");
            agents.push(AgentFiles {
                id: (*id).to_owned(),
                region: (*region).to_owned(),
                config_path: dir.path().join(format!("{id}.toml")),
                log_path: dir.path().join(format!("{id}.log")),
                state_dir: dir.path().join(id),
                key,
                vip,
            });
        }
        let shared = shared_toml(&opts, &agents, target_vip);
        for (i, a) in agents.iter().enumerate() {
            let mut local = format!(
                "\n[local]\nagent_id = \"{}\"\nlisten = \"{}:{AGENT_PORT}\"\nkey_file = \"{}\"\nstate_dir = \"{}\"\nlog_level = \"{}\"\n",
                a.id,
                region_addr(i),
                dir.path().join(format!("{}-signing.key", a.id)).display(),
                a.state_dir.display(),
                opts.log_level,
            );
            if opts.dataplane {
                let _ = writeln!(
                    local,
                    "health_listen = \"{}:{}\"",
                    region_addr(i),
                    crate::dns::HEALTH_PORT
                );
            }
            if let (Some(after), Some(vip)) = (opts.canary_abstain_after, canary_vip) {
                let _ = write!(
                    local,
                    "control_failures_to_abstain = {after}\n[[local.control]]\nid = \"canary\"\ntimeout = \"{}ms\"\n[local.control.http]\nurl = \"http://{vip}/healthz\"\n",
                    opts.probe_timeout_ms
                );
            }
            if let Some(extra) = opts.extra_local.get(&i) {
                local.push('\n');
                local.push_str(extra);
                local.push('\n');
            }
            std::fs::write(&a.config_path, format!("{shared}{local}")).expect("write config");
        }

        let mut rig = Self {
            children: Vec::new(),
            emulator,
            dns: None,
            target,
            canary,
            agents,
            opts,
            target_vip,
            topo,
            dir,
            started,
        };
        for i in 0..rig.len() {
            let child = rig.spawn(i);
            rig.children.push(Some(child));
        }
        let r = &rig;
        for i in 0..r.len() {
            r.wait_until(
                Duration::from_secs(30),
                &format!("agent {i} ready with a decision"),
                || async move {
                    r.try_status(i)
                        .await
                        .is_ok_and(|s| s.ready && s.checks.iter().any(|c| c.tally.is_some()))
                },
            )
            .await;
        }
        if rig.opts.dataplane {
            let dns = crate::dns::ChaosDns::start(&rig.topo, rig.len()).await;
            let end = Instant::now() + Duration::from_secs(30);
            // Every checker has seen every agent answer HEALTHY (not merely "healthy until
            // enough data"), and DNS answers the primary.
            while !(dns.all_seen_healthy() && dns.answer(&rig.topo).await == crate::dns::PRIMARY_IP)
            {
                assert!(
                    Instant::now() < end,
                    "Route 53's checkers never saw every agent healthy: {:#?}\n{}",
                    dns.snapshot(),
                    rig.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            rig.dns = Some(dns);
        }
        rig
    }

    /// What DNS answers for the data-plane record (`Options::dataplane`).
    pub async fn dns_answer(&self) -> String {
        let dns = self.dns.as_ref().expect("started with Options::dataplane");
        dns.answer(&self.topo).await
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    #[must_use]
    pub fn id(&self, i: usize) -> &str {
        &self.agents[i].id
    }

    #[must_use]
    pub fn round(&self) -> Duration {
        Duration::from_millis(self.opts.round_ms)
    }

    /// Time since [`start`](Self::start) began.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The scratch directory (configs, logs, keys, state).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&self, i: usize) -> Child {
        let a = &self.agents[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&a.log_path)
            .expect("agent log");
        let err = log.try_clone().expect("agent log");
        let env = self.opts.env.get(&i).cloned().unwrap_or_default();
        self.topo
            .region_ns(i)
            .command(exe())
            .arg("agent")
            .arg("--config")
            .arg(&a.config_path)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting agent {} in its namespace: {e}", a.id))
    }

    /// SIGKILLs agent `i` (no-op when it is not running).
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts agent `i` again (same config, key and state dir, and `opts.env` as it is now)
    /// and waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i).await;
        self.children[i] = Some(self.spawn(i));
        let this = &*self;
        this.wait_until(
            Duration::from_secs(30),
            &format!("agent {i} ready again"),
            || async move { this.try_status(i).await.is_ok_and(|s| s.ready) },
        )
        .await;
    }

    /// Whether agent `i`'s process is still running.
    pub fn running(&mut self, i: usize) -> bool {
        self.children[i]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// An HTTP request from the hub to agent `i`'s own address (bypasses the relay).
    pub async fn request(
        &self,
        i: usize,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let url: url::Url = format!("http://{}:{AGENT_PORT}/{path}", region_addr(i)).parse()?;
        hub_http(&self.topo, url, method, body, "application/octet-stream").await
    }

    pub async fn try_status(&self, i: usize) -> anyhow::Result<Status> {
        let (code, body) = self
            .request(i, http::Method::GET, "v1/status", Vec::new())
            .await?;
        anyhow::ensure!(code == 200, "status answered {code}");
        Ok(serde_json::from_slice(&body)?)
    }

    /// Agent `i`'s `/v1/status`; panics (with the logs) when unreachable.
    pub async fn status(&self, i: usize) -> Status {
        match self.try_status(i).await {
            Ok(s) => s,
            Err(e) => panic!("status of agent {i}: {e}\n{}", self.logs()),
        }
    }

    pub async fn statuses(&self) -> Vec<Status> {
        let mut out = Vec::new();
        for i in 0..self.len() {
            out.push(self.status(i).await);
        }
        out
    }

    /// Agent `i`'s Prometheus text.
    pub async fn metrics(&self, i: usize) -> String {
        match self
            .request(i, http::Method::GET, "metrics", Vec::new())
            .await
        {
            Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
            Err(e) => panic!("metrics of agent {i}: {e}"),
        }
    }

    /// `/v1/health/app` status code of agent `i`.
    pub async fn health(&self, i: usize) -> Option<u16> {
        self.request(
            i,
            http::Method::GET,
            &format!("v1/health/{CHECK}"),
            Vec::new(),
        )
        .await
        .ok()
        .map(|(c, _)| c)
    }

    /// Agent `i`'s audit log records (its state dir's `audit.jsonl`).
    #[must_use]
    pub fn audit(&self, i: usize) -> Vec<Record> {
        let path = self.agents[i].state_dir.join("audit.jsonl");
        audit::read_records(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// Agent `i`'s decision transitions of `check`, from its audit log: `(at_ms, from, to)`.
    #[must_use]
    pub fn transitions(&self, i: usize, check: &str) -> Vec<(u64, String, String)> {
        self.audit(i)
            .into_iter()
            .filter(|r| r.event == "transition" && r.body["check"] == check)
            .map(|r| {
                (
                    r.at_ms,
                    r.body["from"].as_str().unwrap_or("").to_owned(),
                    r.body["to"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Transitions of `check` per agent id, from the audit logs.
    #[must_use]
    pub fn transition_counts(&self, check: &str) -> BTreeMap<String, u64> {
        (0..self.len())
            .map(|i| {
                (
                    self.id(i).to_owned(),
                    self.transitions(i, check).len() as u64,
                )
            })
            .collect()
    }

    /// Rejected ballots by reason, summed over the agents' `/v1/status`.
    pub async fn rejected(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in self.statuses().await {
            for (reason, n) in s.rejected {
                *out.entry(reason).or_default() += n;
            }
        }
        out
    }

    /// The decision (`healthy`/`unhealthy`) and tally outcome (`healthy`, `unhealthy`,
    /// `no_quorum`) of [`CHECK`] in a status document.
    #[must_use]
    pub fn decision(s: &Status) -> (String, String) {
        let c = s
            .checks
            .iter()
            .find(|c| c.id == CHECK)
            .expect("status has the app check");
        (
            c.decision.clone(),
            c.tally
                .as_ref()
                .map_or_else(|| "pending".to_owned(), |t| t.outcome.clone()),
        )
    }

    /// Waits until every agent decides healthy on a healthy tally with every member's ballot
    /// live: the settled state each scenario starts from and returns to.
    pub async fn wait_converged(&self, limit: Duration, what: &str) {
        self.wait_until(limit, what, || all_converged(self)).await;
    }

    /// Polls `cond` every 100 ms until it holds; panics with `what` and the agents' logs after
    /// `limit` (a liveness deadline, not a performance assertion).
    pub async fn wait_until<F, Fut>(&self, limit: Duration, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let end = Instant::now() + limit;
        while !cond().await {
            if Instant::now() > end {
                panic!(
                    "timed out after {limit:?} waiting for: {what}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tail of every agent's log.
    #[must_use]
    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| {
                let log = std::fs::read_to_string(&a.log_path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("--- {} log (tail) ---\n{tail}\n", a.id)
            })
            .collect()
    }
}

async fn all_converged(rig: &Rig) -> bool {
    for i in 0..rig.len() {
        let Ok(s) = rig.try_status(i).await else {
            return false;
        };
        let (decision, outcome) = Rig::decision(&s);
        let all_live = s
            .members
            .iter()
            .all(|m| m.ballot.as_ref().is_some_and(|b| b.live));
        if decision != "healthy" || outcome != "healthy" || !all_live {
            return false;
        }
    }
    true
}

/// Fails loudly, with the install command, when a tool the rig needs is missing.
fn require_tools(opts: &Options) {
    if let Err(e) = quorumgate_testkit::netns::require_ip() {
        panic!("{e}");
    }
    let needs_faketime = opts
        .env
        .values()
        .flatten()
        .any(|(k, v)| k == "LD_PRELOAD" && v == LIBFAKETIME);
    assert!(
        !needs_faketime || Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run `bash scripts/test-deps.sh` (or `apt-get install -y faketime`)"
    );
}

fn shared_toml(opts: &Options, agents: &[AgentFiles], target: SocketAddrV4) -> String {
    let mut members = String::new();
    for (i, a) in agents.iter().enumerate() {
        if opts.dataplane {
            let _ = write!(
                members,
                "\n[[members]]\nhealth_url = \"http://{}:{}/\"",
                region_addr(i),
                crate::dns::HEALTH_PORT
            );
        } else {
            members.push_str("\n[[members]]");
        }
        let _ = write!(
            members,
            "\nid = \"{}\"\nregion = \"{}\"\nurl = \"http://{}/\"\npublic_key = \"{}\"\n",
            a.id,
            a.region,
            a.vip,
            keys::public_key_base64(&a.key.verifying_key())
        );
    }
    format!(
        r#"[cluster]
name = "chaos"
round_interval = "{round}ms"
ballot_valid_for = "{valid}ms"
max_clock_skew = "{skew}ms"
peer_timeout = "{peer}ms"
max_ballot_bytes = 1048576
{members}
[[checks]]
id = "{CHECK}"
interval = "{round}ms"
timeout = "{timeout}ms"
fall_after = {fall}
rise_after = {rise}
hold_down = "{hold}ms"
[checks.http]
url = "http://{target}/healthz"
expect_status = [200]
body_contains = "ok"
{extra}
"#,
        round = opts.round_ms,
        valid = opts.valid_for_ms,
        skew = opts.max_clock_skew_ms,
        peer = opts.peer_timeout_ms,
        timeout = opts.probe_timeout_ms,
        fall = opts.fall_after,
        rise = opts.rise_after,
        hold = opts.hold_down_ms,
        extra = opts.extra_shared,
    )
}

/// A [`TargetApp`] serving from the hub's loopback (its accept loop runs on the hub thread).
async fn start_app_in_hub(topo: &Topology) -> TargetApp {
    topo.in_hub(|| async { TargetApp::start().await })
        .await
        .expect("hub thread")
        .expect("target app in the hub")
}

async fn expose_app(topo: &Topology, name: &str, app: &TargetApp) -> SocketAddrV4 {
    let port = app.addr().port();
    topo.relay()
        .expose(
            name,
            Home::Hub,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        )
        .await
        .expect("expose app")
}

/// One HTTP request made from inside the hub namespace.
pub async fn hub_http(
    topo: &Topology,
    url: url::Url,
    method: http::Method,
    body: Vec<u8>,
    content_type: &'static str,
) -> anyhow::Result<(u16, Bytes)> {
    topo.in_hub(move || async move {
        let mut req =
            net::Request::get(url, None, 64 * 1024 * 1024).with_body(method, Bytes::from(body));
        req.headers.push((
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        ));
        net::send(&req, Duration::from_secs(5))
            .await
            .map(|r| (r.status.as_u16(), r.body))
            .map_err(anyhow::Error::from)
    })
    .await?
}

impl HubEmulator {
    /// Starts tests/fixtures/moto_strict.py inside the hub namespace and exposes it (homed in
    /// the hub) through the relay.
    async fn start(topo: &Topology) -> Self {
        let python =
            quorumgate_testkit::emulator::require_python().unwrap_or_else(|e| panic!("{e}"));
        let spawned =
            quorumgate_testkit::emulator::spawn(topo.hub_ns().command(&python), 8053, 600, &[])
                .await
                .unwrap_or_else(|e| panic!("in the hub: {e:#}"));
        let port = spawned.port;
        let vip = topo
            .relay()
            .expose(
                "route53",
                Home::Hub,
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            )
            .await
            .expect("expose emulator");
        let emu = Self {
            url: format!("http://{vip}"),
            hub_url: format!("http://127.0.0.1:{port}"),
            child: spawned.child,
            _stdin: spawned.stdin,
        };
        for _ in 0..100 {
            if emu.admin(topo, http::Method::GET, "/_health", "").await.0 == 200 {
                return emu;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("emulator in the hub never answered /_health");
    }

    /// An admin call from the hub: (status, body); (0, "") when unreachable.
    pub async fn admin(
        &self,
        topo: &Topology,
        method: http::Method,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let Ok(url) = format!("{}{path}", self.hub_url).parse::<url::Url>() else {
            return (0, String::new());
        };
        match hub_http(
            topo,
            url,
            method,
            body.as_bytes().to_vec(),
            "application/json",
        )
        .await
        {
            Ok((code, body)) => (code, String::from_utf8_lossy(&body).into_owned()),
            Err(_) => (0, String::new()),
        }
    }
}

impl Drop for HubEmulator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
