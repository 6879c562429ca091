//! A builder-style harness around real agent processes.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorumgate::devcluster::{self, Spec};
use quorumgate::status::Status;
use quorumgate::target_app::TargetApp;
use quorumgate::{bundle, net, tls};
use tokio::process::Child;
use tokio::time::Instant;

pub const CHECK: &str = "app";

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumgate"))
}

/// Starts `agent` of `spec` (under its descriptor limit, when `spec.nofile` sets one).
fn spawn(spec: &Spec, agent: &devcluster::Agent) -> Child {
    devcluster::spawn_with(
        devcluster::command_for(&exe(), spec, agent),
        agent,
        &spec.env,
    )
    .expect("spawn agent")
}

/// A running cluster of agent processes and the app they probe.
pub struct TestCluster {
    pub app: TargetApp,
    pub spec: Spec,
    pub written: devcluster::Cluster,
    children: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Three agents with short timings; `tweak` may adjust the spec before anything starts.
    pub async fn start(tweak: impl FnOnce(&mut Spec)) -> Self {
        let mut cluster = Self::written(tweak).await;
        cluster.spawn_stopped();
        for i in 0..cluster.len() {
            cluster
                .wait_until(Duration::from_secs(20), &format!("agent {i} ready"), || {
                    cluster.ready(i)
                })
                .await;
        }
        cluster
    }

    /// The app and the agents' configs (empty state dirs), with no agent running yet: start
    /// them with [`spawn_stopped`](Self::spawn_stopped).
    pub async fn written(tweak: impl FnOnce(&mut Spec)) -> Self {
        tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let app = TargetApp::start().await.expect("target app");
        let mut spec = Spec::three(dir.path(), app.url());
        tweak(&mut spec);
        let written = devcluster::write(&spec).expect("write cluster");
        let children = written.agents.iter().map(|_| None).collect();
        Self {
            app,
            spec,
            written,
            children,
            _dir: dir,
        }
    }

    /// Starts every agent that is not running, all at once, without waiting for them.
    pub fn spawn_stopped(&mut self) {
        for (i, a) in self.written.agents.iter().enumerate() {
            if self.children[i].is_none() {
                self.children[i] = Some(spawn(&self.spec, a));
            }
        }
    }

    /// Stops every running agent at once — SIGTERM (`graceful`, as systemd and the .deb's
    /// restart do) or SIGKILL — and waits until each has exited.
    pub async fn stop_all(&mut self, graceful: bool) {
        for child in self.children.iter_mut().flatten() {
            if graceful {
                let pid = child.id().expect("running agent has a pid");
                let ok = std::process::Command::new("sh")
                    .args(["-c", "kill -TERM \"$1\"", "sh", &pid.to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "kill -TERM {pid} failed");
            } else {
                let _ = child.start_kill();
            }
        }
        for (i, slot) in self.children.iter_mut().enumerate() {
            if let Some(mut child) = slot.take() {
                let exited = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
                assert!(exited.is_ok(), "agent {i} did not exit within 20 s");
            }
        }
    }

    /// Agent `i`'s base URL and the client TLS config that reaches it (for pollers that run
    /// as tasks of their own).
    pub fn endpoint(&self, i: usize) -> (url::Url, Arc<rustls::ClientConfig>) {
        (
            self.written.agents[i].url.clone(),
            Arc::clone(&self.written.client_tls),
        )
    }

    pub fn len(&self) -> usize {
        self.written.agents.len()
    }

    pub fn id(&self, i: usize) -> &str {
        &self.written.agents[i].id
    }

    pub fn round(&self) -> Duration {
        Duration::from_millis(self.spec.round_ms)
    }

    /// SIGKILLs agent `i`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts agent `i` again with the same config and key, and waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i).await;
        self.children[i] = Some(spawn(&self.spec, &self.written.agents[i]));
        self.wait_until(
            Duration::from_secs(20),
            &format!("agent {i} ready again"),
            || self.ready(i),
        )
        .await;
    }

    pub async fn request(
        &self,
        i: usize,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Option<(u16, Bytes)> {
        let url = self.written.agents[i].url.join(path).ok()?;
        let tls = Some(Arc::clone(&self.written.client_tls));
        let req =
            net::Request::get(url, tls, 16 * 1024 * 1024).with_body(method, Bytes::from(body));
        net::send(&req, Duration::from_secs(3))
            .await
            .ok()
            .map(|r| (r.status.as_u16(), r.body))
    }

    /// `/v1/health/app` status code, `None` when unreachable.
    pub async fn health(&self, i: usize) -> Option<u16> {
        self.request(
            i,
            http::Method::GET,
            &format!("v1/health/{CHECK}"),
            Vec::new(),
        )
        .await
        .map(|(c, _)| c)
    }

    pub async fn healths(&self) -> Vec<Option<u16>> {
        let mut out = Vec::new();
        for i in 0..self.len() {
            out.push(if self.children[i].is_some() {
                self.health(i).await
            } else {
                None
            });
        }
        out
    }

    pub async fn status(&self, i: usize) -> Status {
        let (code, body) = self
            .request(i, http::Method::GET, "v1/status", Vec::new())
            .await
            .expect("status reachable");
        assert_eq!(code, 200);
        serde_json::from_slice(&body).expect("status JSON")
    }

    pub async fn metrics(&self, i: usize) -> String {
        let (_, body) = self
            .request(i, http::Method::GET, "metrics", Vec::new())
            .await
            .expect("metrics reachable");
        String::from_utf8_lossy(&body).into_owned()
    }

    pub async fn ballots(&self, i: usize) -> Vec<Vec<u8>> {
        let (_, body) = self
            .request(i, http::Method::GET, "v1/ballots", Vec::new())
            .await
            .expect("ballots reachable");
        bundle::decode(&body)
            .expect("bundle")
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// POSTs a body to `/v1/ballots`; `None` when the connection failed.
    pub async fn post_ballot(&self, i: usize, body: Vec<u8>) -> Option<(u16, String)> {
        let (code, body) = self
            .request(i, http::Method::POST, "v1/ballots", body)
            .await?;
        Some((code, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn ready(&self, i: usize) -> bool {
        self.request(i, http::Method::GET, "readyz", Vec::new())
            .await
            .is_some_and(|(c, _)| c == 200)
    }

    /// Polls `cond` every 50 ms until it holds; panics with `what` and the agents' logs after `limit`.
    pub async fn wait_until<F, Fut>(&self, limit: Duration, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let end = Instant::now() + limit;
        while !cond().await {
            if Instant::now() > end {
                panic!(
                    "timed out after {limit:?} waiting for: {what}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        self.written
            .agents
            .iter()
            .map(|a| {
                let log = std::fs::read_to_string(&a.log_path).unwrap_or_default();
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("--- {} log (tail) ---\n{}\n", a.id, tail.join("\n"))
            })
            .collect()
    }
}

/// Value of a Prometheus counter sample with exactly these labels, 0 when absent.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
