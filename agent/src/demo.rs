//! `quorumgate demo`: three real agent processes and a demo app on loopback, narrated.
//!
//! The walk-through: everything healthy → one agent's own view of the app breaks (the app
//! answers that agent, recognised by its `X-Quorumgate-Agent` header, with 503) and nothing
//! flips → the app fails for everyone and the check turns Unhealthy after `fall_after` →
//! the app recovers and the check turns Healthy after `rise_after`. Children are killed when
//! the demo ends, fails or is interrupted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::Child;
use tokio::time::Instant;

use crate::cli::fetch_status;
use crate::status::Status;
use crate::target_app::TargetApp;
use crate::{devcluster, net, tls};

const BROKEN_VIEW: &str = "euw1";
const CHECK: &str = "app";

/// Timings of one demo run.
#[derive(Clone, Copy, Debug)]
struct Timing {
    round_ms: u64,
    timeout_ms: u64,
    fall_after: u32,
    rise_after: u32,
    hold_down_ms: u64,
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
            }
        } else {
            Self {
                round_ms: 1_000,
                timeout_ms: 500,
                fall_after: 3,
                rise_after: 4,
                hold_down_ms: 3_000,
            }
        }
    }
    fn rounds(&self, n: u64) -> Duration {
        Duration::from_millis(self.round_ms * n)
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
            let t = tempfile::Builder::new()
                .prefix("quorumgate-demo-")
                .tempdir()?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let app = TargetApp::start().await?;
    let app_addr = app.addr();

    println!("quorumgate demo — 3 agents (use1, usw2, euw1) vote on check \"{CHECK}\" of a demo app at http://{app_addr}/");
    println!("files in {}", dir.display());
    let cluster = Cluster::start(&dir, app_addr, timing).await?;
    let outcome = tokio::select! {
        r = script(&cluster, &app, timing) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cluster.stop().await;
    drop(app);
    match &outcome {
        Ok(()) => println!("\ndemo complete: all agents stopped, nothing left running."),
        Err(e) => {
            // Keep the keys, configs and logs for a post-mortem.
            let kept = _temp.map_or(dir, tempfile::TempDir::keep);
            println!(
                "\ndemo FAILED: {e:#}\nagent logs: {}",
                kept.join("*.log").display()
            );
        }
    }
    outcome
}

async fn script(cluster: &Cluster, app: &TargetApp, t: Timing) -> anyhow::Result<()> {
    let start = Instant::now();
    let fall = t.rounds(u64::from(t.fall_after));

    banner(start, "1. the app is healthy for everyone");
    cluster
        .wait_for(start, 200, t.rounds(15), "all agents answer HEALTHY")
        .await?;
    cluster.watch(start, t.rounds(2)).await?;

    banner(start, &format!("2. {BROKEN_VIEW}'s own view of the app breaks (the app answers only {BROKEN_VIEW} with 503)"));
    app.break_view(BROKEN_VIEW);
    let flips = cluster.watch(start, fall + t.rounds(5)).await?;
    anyhow::ensure!(
        flips == 0,
        "a single agent's view moved the gate ({flips} unhealthy answers)"
    );
    println!("   => NO FLIP: {BROKEN_VIEW} votes unhealthy, but 1 of 3 is not a majority; every /v1/health stayed 200");

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
    println!(
        "   => FLIPPED to UNHEALTHY on all agents {:.1}s after the failure (fall_after = {} rounds of {} ms)",
        t0.elapsed().as_secs_f64(),
        t.fall_after,
        t.round_ms
    );

    banner(start, "4. the app recovers");
    app.set_down(false);
    let t0 = Instant::now();
    let rise = t.rounds(u64::from(t.rise_after)) + Duration::from_millis(t.hold_down_ms);
    cluster
        .wait_for(start, 200, rise + t.rounds(10), "all agents answer HEALTHY")
        .await?;
    println!(
        "   => RECOVERED to HEALTHY {:.1}s after the app came back (rise_after = {} rounds, slower than fall on purpose)",
        t0.elapsed().as_secs_f64(),
        t.rise_after
    );
    Ok(())
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
    tls: Arc<rustls::ClientConfig>,
    round: Duration,
}

impl Cluster {
    async fn start(dir: &Path, app: std::net::SocketAddr, t: Timing) -> anyhow::Result<Self> {
        let mut spec = devcluster::Spec::three(dir, format!("http://{app}/healthz"));
        spec.check_id = CHECK.to_owned();
        spec.round_ms = t.round_ms;
        spec.timeout_ms = t.timeout_ms;
        spec.fall_after = t.fall_after;
        spec.rise_after = t.rise_after;
        spec.hold_down_ms = t.hold_down_ms;
        spec.tls = true;
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

    /// Narrates for `dur`; returns how many 503 answers were seen.
    async fn watch(&self, start: Instant, dur: Duration) -> anyhow::Result<usize> {
        let end = Instant::now() + dur;
        let mut flips = 0;
        while Instant::now() < end {
            self.check_children()?;
            let codes = self.health_codes().await;
            flips += codes.iter().filter(|c| **c == 503).count();
            self.print_views(start, &codes).await;
            tokio::time::sleep(self.round).await;
        }
        Ok(flips)
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
