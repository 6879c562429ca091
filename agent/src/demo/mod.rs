//! `quorumgate demo`: three real agent processes and a demo app on loopback, narrated.
//!
//! The walk-through: everything healthy → one agent's own view of the app breaks (the app
//! answers that agent, recognised by its `X-Quorumgate-Agent` header, with 503) and nothing
//! flips → the app fails for everyone and the check turns Unhealthy after `fall_after` →
//! the app recovers and the check turns Healthy after `rise_after`. Children are killed when
//! the demo ends, fails or is interrupted.
//!
//! The check is the primary of a data-plane failover gate (`app.demo.example`: primary
//! 192.0.2.10, secondary 198.51.100.20, the standby app's check). With the `emulator` feature
//! (the default for `cargo run`), [`dns`] runs what `provision` would create in Route 53 —
//! one string-match health check per agent, a calculated check over them — in the test kit's
//! data-plane emulator, whose checkers poll the agents' public health listeners and whose
//! DNS server shows the answer move to the secondary after the quorum flips, and back.

#[cfg(feature = "emulator")]
pub mod dns;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::Child;
use tokio::time::Instant;

use crate::client::fetch_status;
use crate::status::Status;
use crate::target_app::TargetApp;
use crate::{devcluster, net, tls};

const BROKEN_VIEW: &str = "euw1";
const CHECK: &str = "app";
const STANDBY: &str = "standby";
const PRIMARY_IP: &str = "192.0.2.10";
const SECONDARY_IP: &str = "198.51.100.20";
const ZONE_ID: &str = "ZDEMO";

/// The standby's check and the data-plane failover gate over both.
fn gate_toml(standby_url: &str, t: Timing) -> String {
    format!(
        r#"
[[checks]]
id = "{STANDBY}"
interval = "{round}ms"
timeout = "{timeout}ms"
[checks.http]
url = "{standby_url}"
expect_status = [200]

[[gates]]
id = "app"
plane = "data"
zone_id = "{ZONE_ID}"
zone = "demo.example"
record = "app.demo.example"
type = "A"
ttl = 5
kind = "failover"
health_check_interval = 10
health_check_failure_threshold = 2
health_check_regions = ["us-east-1", "us-west-2", "eu-west-1"]
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
"#,
        round = t.round_ms,
        timeout = t.timeout_ms,
    )
}

/// Timings of one demo run.
#[derive(Clone, Copy, Debug)]
struct Timing {
    round_ms: u64,
    timeout_ms: u64,
    fall_after: u32,
    rise_after: u32,
    hold_down_ms: u64,
    /// Route 53's checkers (RequestInterval 10 s) run this much faster than real.
    time_scale: f64,
}

impl Timing {
    fn new(fast: bool) -> Self {
        if fast {
            Self {
                round_ms: 300,
                timeout_ms: 200,
                fall_after: 2,
                rise_after: 3,
                hold_down_ms: 1_000,
                time_scale: 0.05,
            }
        } else {
            Self {
                round_ms: 1_000,
                timeout_ms: 500,
                fall_after: 3,
                rise_after: 4,
                hold_down_ms: 3_000,
                time_scale: 0.2,
            }
        }
    }
    /// One Route 53 checker interval (10 s, scaled).
    fn checker_interval(&self) -> Duration {
        Duration::from_secs_f64(10.0 * self.time_scale)
    }
    fn rounds(&self, n: u64) -> Duration {
        Duration::from_millis(self.round_ms * n)
    }
}

/// The demo's own directory under the system's temporary directory, removed when dropped
/// unless kept (a failed demo keeps its logs).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        let mut n = 0u32;
        loop {
            let dir = base.join(format!("quorumgate-demo-{}-{n}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1_000 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn keep(self) -> PathBuf {
        let dir = self.0.clone();
        std::mem::forget(self);
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo; returns an error if the cluster did not behave as narrated.
pub async fn run(fast: bool, dir: Option<PathBuf>) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let timing = Timing::new(fast);
    let (_temp, dir) = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            (None, d)
        }
        None => {
            let t = TempDir::new()?;
            let p = t.0.clone();
            (Some(t), p)
        }
    };
    let app = TargetApp::start().await?;
    let standby = TargetApp::start().await?;
    let app_addr = app.addr();

    println!("quorumgate demo — 3 agents (use1, usw2, euw1) vote on check \"{CHECK}\" of a demo app at http://{app_addr}/");
    println!("files in {}", dir.display());
    let cluster = Cluster::start(&dir, app_addr, &standby.url(), timing).await?;
    let outcome = tokio::select! {
        r = async {
            cluster.wait_ready(timing).await?;
            let dns = start_dns(&cluster, timing).await?;
            script(&cluster, &app, dns.as_ref(), timing).await
        } => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cluster.stop().await;
    drop(app);
    drop(standby);
    match &outcome {
        Ok(()) => println!("\ndemo complete: all agents stopped, nothing left running."),
        Err(e) => {
            // Keep the keys, configs and logs for a post-mortem.
            let kept = _temp.map_or(dir, TempDir::keep);
            println!(
                "\ndemo FAILED: {e:#}\nagent logs: {}",
                kept.join("*.log").display()
            );
        }
    }
    outcome
}

async fn script(
    cluster: &Cluster,
    app: &TargetApp,
    dns: Option<&DnsView>,
    t: Timing,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let fall = t.rounds(u64::from(t.fall_after));
    // Route 53 after the agents: FailureThreshold (2) polls of every checker, plus up to one
    // interval of phase; the demo queries the authoritative server, so no TTL is added.
    let route53 = t.checker_interval() * 3;
    let margin = Duration::from_secs(10);

    banner(start, "1. the app is healthy for everyone");
    cluster
        .wait_for(start, 200, t.rounds(15), "all agents answer HEALTHY")
        .await?;
    if let Some(d) = dns {
        let took = wait_dns(d, PRIMARY_IP, route53 + margin).await?;
        println!(
            "   DNS: app.demo.example → {PRIMARY_IP} (the primary), {:.1}s after the checkers started; try: {}",
            took.as_secs_f64(),
            d.dig()
        );
    }
    cluster.watch(start, t.rounds(2), dns).await?;

    banner(start, &format!("2. {BROKEN_VIEW}'s own view of the app breaks (the app answers only {BROKEN_VIEW} with 503)"));
    app.break_view(BROKEN_VIEW);
    // Long enough for Route 53's checkers to have polled every agent several times.
    let window = (fall + t.rounds(5)).max(route53 * 2);
    let seen = cluster.watch(start, window, dns).await?;
    anyhow::ensure!(
        seen.unhealthy == 0,
        "a single agent's view moved the gate ({} unhealthy answers)",
        seen.unhealthy
    );
    anyhow::ensure!(
        seen.dns_moves == 0,
        "a single agent's view moved DNS ({} answers other than the primary)",
        seen.dns_moves
    );
    println!("   => NO FLIP: {BROKEN_VIEW} votes unhealthy, but 1 of 3 is not a majority; every /v1/health stayed 200{}",
        if dns.is_some() { " and DNS kept answering the primary" } else { "" });

    banner(start, "3. the app fails for everyone");
    app.heal_views();
    app.set_down(true);
    let t0 = Instant::now();
    cluster
        .wait_for(
            start,
            503,
            fall + t.rounds(10),
            "all agents answer UNHEALTHY",
        )
        .await?;
    let flipped = t0.elapsed();
    println!(
        "   => FLIPPED to UNHEALTHY on all agents {:.1}s after the failure (fall_after = {} rounds of {} ms)",
        flipped.as_secs_f64(),
        t.fall_after,
        t.round_ms
    );
    if let Some(d) = dns {
        wait_dns(d, SECONDARY_IP, route53 + margin).await?;
        let took = t0.elapsed();
        println!(
            "   => DNS FAILED OVER: app.demo.example → {SECONDARY_IP} (the secondary) {:.1}s after the failure, {:.1}s after the quorum flipped (Route 53's checkers: 2 failed polls every {:.1}s); no Route 53 API call",
            took.as_secs_f64(),
            took.saturating_sub(flipped).as_secs_f64(),
            t.checker_interval().as_secs_f64()
        );
    }

    banner(start, "4. the app recovers");
    app.set_down(false);
    let t0 = Instant::now();
    let rise = t.rounds(u64::from(t.rise_after)) + Duration::from_millis(t.hold_down_ms);
    cluster
        .wait_for(start, 200, rise + t.rounds(10), "all agents answer HEALTHY")
        .await?;
    let recovered = t0.elapsed();
    println!(
        "   => RECOVERED to HEALTHY {:.1}s after the app came back (rise_after = {} rounds, slower than fall on purpose)",
        recovered.as_secs_f64(),
        t.rise_after
    );
    if let Some(d) = dns {
        wait_dns(d, PRIMARY_IP, route53 + margin).await?;
        let took = t0.elapsed();
        println!(
            "   => DNS FAILED BACK: app.demo.example → {PRIMARY_IP} {:.1}s after the app came back, {:.1}s after the quorum recovered",
            took.as_secs_f64(),
            took.saturating_sub(recovered).as_secs_f64()
        );
    }
    Ok(())
}

/// Polls DNS until it answers `ip`; how long that took.
async fn wait_dns(d: &DnsView, ip: &str, limit: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    loop {
        let answer = d.answer().await;
        if answer == ip {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < limit,
            "DNS still answered {answer} after {limit:?}, expected {ip}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo's DNS view: the data-plane emulator (the `emulator` feature).
#[cfg(feature = "emulator")]
type DnsView = dns::DemoDns;

/// Without the `emulator` feature there is no DNS view: this type has no values.
#[cfg(not(feature = "emulator"))]
#[derive(Debug)]
enum DnsView {}

#[cfg(not(feature = "emulator"))]
impl DnsView {
    async fn answer(&self) -> String {
        match *self {}
    }
    fn dig(&self) -> String {
        match *self {}
    }
}

/// Starts the demo's Route 53 data plane for the cluster's data-plane gate.
#[cfg(feature = "emulator")]
async fn start_dns(cluster: &Cluster, t: Timing) -> anyhow::Result<Option<DnsView>> {
    let cfg = config::Config::load(Some(&cluster.config_path))
        .map_err(|e| anyhow::anyhow!("the demo's own config: {e}"))?;
    let dns = dns::DemoDns::start(&cfg, ZONE_ID, t.time_scale).await?;
    println!(
        "Route 53, emulated on {}: a string-match health check per agent on its public /v1/health/{CHECK}, a calculated check (2 of 3) on the failover PRIMARY app.demo.example → {PRIMARY_IP}, the same for the SECONDARY → {SECONDARY_IP}; checkers in 3 regions every {:.1}s (Route 53's 10 s × {})",
        dns.addr(),
        t.checker_interval().as_secs_f64(),
        t.time_scale
    );
    Ok(Some(dns))
}

#[cfg(not(feature = "emulator"))]
async fn start_dns(_: &Cluster, _: Timing) -> anyhow::Result<Option<DnsView>> {
    println!("(built without the `emulator` feature: no Route 53 data plane, no DNS answers)");
    Ok(None)
}

/// What [`Cluster::watch`] saw.
#[derive(Debug, Default)]
struct Seen {
    /// 503 answers from the agents.
    unhealthy: usize,
    /// DNS answers other than the primary.
    dns_moves: usize,
}

fn banner(start: Instant, text: &str) {
    println!("\n[{:>5.1}s] {text}", start.elapsed().as_secs_f64());
}

struct Agent {
    id: String,
    url: url::Url,
    child: std::sync::Mutex<Child>,
}

struct Cluster {
    agents: Vec<Agent>,
    /// The first agent's config (the shared part is the same everywhere).
    #[cfg_attr(not(feature = "emulator"), allow(dead_code))]
    config_path: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    round: Duration,
}

impl Cluster {
    async fn start(
        dir: &Path,
        app: std::net::SocketAddr,
        standby_url: &str,
        t: Timing,
    ) -> anyhow::Result<Self> {
        let mut spec = devcluster::Spec::three(dir, format!("http://{app}/healthz"));
        spec.check_id = CHECK.to_owned();
        spec.round_ms = t.round_ms;
        spec.timeout_ms = t.timeout_ms;
        spec.fall_after = t.fall_after;
        spec.rise_after = t.rise_after;
        spec.hold_down_ms = t.hold_down_ms;
        spec.tls = true;
        spec.health_listener = true;
        spec.extra_shared = gate_toml(standby_url, t);
        spec.log_level = "warn".to_owned();
        let written = devcluster::write(&spec)?;
        let exe = std::env::current_exe().context("locating the quorumgate binary")?;
        let mut agents = Vec::new();
        for a in &written.agents {
            let child = devcluster::spawn(&exe, a, &[])?;
            agents.push(Agent {
                id: a.id.clone(),
                url: a.url.clone(),
                child: std::sync::Mutex::new(child),
            });
        }
        Ok(Self {
            config_path: written
                .agents
                .first()
                .map(|a| a.config_path.clone())
                .context("no agents")?,
            agents,
            tls: written.client_tls,
            round: Duration::from_millis(t.round_ms),
        })
    }

    async fn stop(self) {
        for a in self.agents {
            let mut child = a
                .child
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// `/v1/health/app` status code of every agent (0 when unreachable).
    async fn health_codes(&self) -> Vec<u16> {
        let mut codes = Vec::new();
        for a in &self.agents {
            let Ok(url) = a.url.join(&format!("v1/health/{CHECK}")) else {
                codes.push(0);
                continue;
            };
            let req = net::Request::get(url, Some(Arc::clone(&self.tls)), 4096);
            codes.push(
                net::send(&req, self.round)
                    .await
                    .map_or(0, |r| r.status.as_u16()),
            );
        }
        codes
    }

    async fn print_views(&self, start: Instant, codes: &[u16]) {
        for (a, code) in self.agents.iter().zip(codes) {
            let line = match fetch_status(&a.url, Arc::clone(&self.tls), self.round).await {
                Ok(s) => view_line(&s),
                Err(e) => format!("unreachable ({e})"),
            };
            println!(
                "   {:>5.1}s {:<5} /v1/health→{code}  {line}",
                start.elapsed().as_secs_f64(),
                a.id
            );
        }
    }

    /// Narrates for `dur`: the agents' views and, with a DNS view, the answer.
    async fn watch(
        &self,
        start: Instant,
        dur: Duration,
        dns: Option<&DnsView>,
    ) -> anyhow::Result<Seen> {
        let end = Instant::now() + dur;
        let mut seen = Seen::default();
        while Instant::now() < end {
            self.check_children()?;
            let codes = self.health_codes().await;
            seen.unhealthy += codes.iter().filter(|c| **c == 503).count();
            self.print_views(start, &codes).await;
            if let Some(d) = dns {
                let answer = d.answer().await;
                println!(
                    "   {:>5.1}s DNS   app.demo.example → {answer}",
                    start.elapsed().as_secs_f64()
                );
                if answer != PRIMARY_IP {
                    seen.dns_moves += 1;
                }
            }
            tokio::time::sleep(self.round).await;
        }
        Ok(seen)
    }

    /// Waits, quietly, until every agent answers its health endpoint at all (ready or not):
    /// nothing is narrated about agents that are not listening yet.
    async fn wait_ready(&self, t: Timing) -> anyhow::Result<()> {
        let end = Instant::now() + t.rounds(10).max(Duration::from_secs(20));
        loop {
            self.check_children()?;
            if self.health_codes().await.iter().all(|c| *c != 0) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < end,
                "the agents did not start listening; see their logs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Narrates until every agent answers `code`, or fails after `limit`.
    async fn wait_for(
        &self,
        start: Instant,
        code: u16,
        limit: Duration,
        what: &str,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + limit;
        loop {
            self.check_children()?;
            let codes = self.health_codes().await;
            self.print_views(start, &codes).await;
            if codes.iter().all(|c| *c == code) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < end,
                "timed out after {limit:?} waiting until {what}"
            );
            tokio::time::sleep(self.round).await;
        }
    }

    /// Fails as soon as any agent process has exited: the narration would be meaningless.
    fn check_children(&self) -> anyhow::Result<()> {
        for a in &self.agents {
            let mut child = a
                .child
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("agent {} exited ({status}); see its log", a.id);
            }
        }
        Ok(())
    }
}

fn view_line(s: &Status) -> String {
    let Some(c) = s.checks.iter().find(|c| c.id == CHECK) else {
        return "check missing".to_owned();
    };
    let own = c
        .observations
        .get(&s.agent)
        .map_or_else(|| "-".to_owned(), |o| format!("{}:{}", o.status, o.reason));
    let tally = c.tally.as_ref().map_or_else(
        || "pending".to_owned(),
        |t| {
            format!(
                "{} ({}h/{}u/{}a)",
                t.outcome, t.healthy, t.unhealthy, t.abstain
            )
        },
    );
    format!(
        "sees {own:<18} quorum {tally:<22} decision {}",
        c.decision.to_uppercase()
    )
}
