//! Restart safety: a restarted agent never answers HEALTHY before it knows.
//!
//! The quorum declared the app down; then every agent restarts at once (a fleet-wide package
//! upgrade) while the app stays down. From the first connection each new process accepts,
//! every `/v1/health/app` answer must be 503 — the restored decision — and never the
//! configured `initial` (Healthy). Only a brand-new install, with nothing in its state dir,
//! starts from `initial`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorumgate::net;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::{TestCluster, CHECK};

const LIMIT: Duration = Duration::from_secs(30);
/// Slower rounds than the default 300 ms: the window between a new process's first accepted
/// connection and its first round is at least one round, and the poller must land in it
/// even on a busy machine.
const ROUND_MS: u64 = 500;
/// How long each poller keeps going once its agent is ready.
const ROUNDS_AFTER_READY: u32 = 6;

/// What one poller saw of one agent process.
#[derive(Debug, Default)]
struct Seen {
    /// Attempts that found no listener (connection refused): not answers.
    refused: u32,
    /// Every answer: status code and body, in order.
    answers: Vec<(u16, String)>,
    /// How many of the first answers came before the process's first round: each was
    /// followed by a `/readyz` that still said "not ready" (ready is set by the first round).
    pre_round: usize,
    /// Whether `/readyz` said 200.
    ready: bool,
}

impl Seen {
    /// Answers given before the process's first round.
    fn pre_round(&self) -> impl Iterator<Item = &(u16, String)> {
        self.answers.iter().take(self.pre_round)
    }

    fn after_ready(&self) -> usize {
        self.answers.len() - self.pre_round
    }
}

async fn get(url: &url::Url, tls: &Arc<rustls::ClientConfig>) -> Option<(u16, String)> {
    let req = net::Request::get(url.clone(), Some(Arc::clone(tls)), 64 * 1024)
        .with_body(http::Method::GET, Bytes::new());
    net::send(&req, Duration::from_secs(3)).await.ok().map(|r| {
        (
            r.status.as_u16(),
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    })
}

/// Polls agent `i`'s health answer every 50 ms, from before its process exists until it has
/// been ready for [`ROUNDS_AFTER_READY`] rounds (bounded by [`LIMIT`]). `attempts` counts
/// every attempt, so the caller can start the process only once polling is under way.
fn poll(c: &TestCluster, i: usize, attempts: Arc<AtomicU32>) -> JoinHandle<Seen> {
    let (base, tls) = c.endpoint(i);
    let health = base
        .join(&format!("v1/health/{CHECK}"))
        .expect("health url");
    let readyz = base.join("readyz").expect("readyz url");
    let settle = Duration::from_millis(ROUND_MS) * ROUNDS_AFTER_READY;
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let end = Instant::now() + LIMIT;
        let mut ready_at: Option<Instant> = None;
        while Instant::now() < end {
            let answered = match get(&health, &tls).await {
                Some(answer) => {
                    seen.answers.push(answer);
                    true
                }
                None => {
                    seen.refused += 1;
                    false
                }
            };
            attempts.fetch_add(1, Ordering::SeqCst);
            if ready_at.is_none() {
                if get(&readyz, &tls).await.is_some_and(|(c, _)| c == 200) {
                    ready_at = Some(Instant::now());
                    seen.ready = true;
                } else if answered {
                    // Not ready after this answer, so not ready when it was given.
                    seen.pre_round = seen.answers.len();
                }
            }
            if ready_at.is_some_and(|r| r.elapsed() >= settle) && seen.after_ready() >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    })
}

/// Starts one poller per agent, waits until each has made an attempt (so the first
/// connection a new process accepts is caught), starts the stopped agents, and returns
/// what the pollers saw.
async fn spawn_watched(c: &mut TestCluster) -> Vec<Seen> {
    let attempts: Vec<Arc<AtomicU32>> = (0..c.len()).map(|_| Arc::default()).collect();
    let pollers: Vec<_> = (0..c.len())
        .map(|i| poll(c, i, Arc::clone(&attempts[i])))
        .collect();
    c.wait_until(LIMIT, "every poller under way", || async {
        attempts.iter().all(|a| a.load(Ordering::SeqCst) > 0)
    })
    .await;
    c.spawn_stopped();
    let mut seen = Vec::new();
    for p in pollers {
        seen.push(p.await.expect("poller"));
    }
    seen
}

/// The pollers really watched the new processes: they polled before the listener existed,
/// got answers before the first round and for several rounds after `/readyz`.
fn assert_watched(c: &TestCluster, seen: &[Seen], what: &str) {
    for (i, s) in seen.iter().enumerate() {
        let summary = format!(
            "{what}, agent {i}: refused {}, answers {}, pre-round {}, ready {}\n{}",
            s.refused,
            s.answers.len(),
            s.pre_round,
            s.ready,
            c.logs()
        );
        assert!(s.refused > 0, "polling began after the listener: {summary}");
        assert!(s.ready, "never ready: {summary}");
        assert!(
            s.pre_round().count() > 0,
            "no answer before the first round: {summary}"
        );
        assert!(
            s.after_ready() >= 5,
            "too few answers once ready: {summary}"
        );
    }
}

async fn decided(c: &TestCluster, want: &str) -> bool {
    for i in 0..c.len() {
        let s = c.status(i).await;
        let Some(check) = s.checks.iter().find(|k| k.id == CHECK) else {
            return false;
        };
        if (check.decision.as_str(), check.basis.as_str()) != (want, "decided") {
            return false;
        }
    }
    true
}

/// Waits until every agent has decided UNHEALTHY and written its decisions file.
async fn decided_unhealthy_and_persisted(c: &TestCluster) {
    c.wait_until(LIMIT, "all three decided UNHEALTHY", || {
        decided(c, "unhealthy")
    })
    .await;
    // Written by each agent's writer thread right after the round that decided.
    c.wait_until(LIMIT, "every agent's decisions.json", || async {
        c.written
            .agents
            .iter()
            .all(|a| a.state_dir.join("decisions.json").exists())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restarted_during_an_outage_never_answers_healthy() {
    let mut c = TestCluster::start(|s| s.round_ms = ROUND_MS).await;
    c.app.set_down(true);
    decided_unhealthy_and_persisted(&c).await;

    for (what, graceful) in [("SIGTERM", true), ("SIGKILL", false)] {
        c.stop_all(graceful).await;
        let seen = spawn_watched(&mut c).await;
        assert_watched(&c, &seen, what);
        for (i, s) in seen.iter().enumerate() {
            for (code, body) in &s.answers {
                assert_eq!(
                    *code, 503,
                    "{what}: agent {i} answered {code} while the quorum had the app down: {body}"
                );
                assert!(body.starts_with("UNHEALTHY "), "{what}, agent {i}: {body}");
            }
            // Before its first round an agent answers the restored decision (or, once a
            // quorum verdict came in, this run's decision), never initial nor UNDECIDED.
            for (_, body) in s.pre_round() {
                assert!(
                    body.contains("decision=restored") || body.contains("decision=decided"),
                    "{what}, agent {i}: {body}"
                );
            }
        }
        // The restored decision is confirmed by this run's quorum, without a transition.
        c.wait_until(LIMIT, &format!("{what}: decided again"), || {
            decided(&c, "unhealthy")
        })
        .await;
        for i in 0..c.len() {
            let s = c.status(i).await;
            assert_eq!(s.checks[0].transitions, 0, "{what}, agent {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brand_new_cluster_starts_from_initial() {
    let mut c = TestCluster::written(|s| s.round_ms = ROUND_MS).await;
    c.app.set_down(true);
    for a in &c.written.agents {
        assert!(!a.state_dir.exists(), "{} has a state dir", a.id);
    }
    let seen = spawn_watched(&mut c).await;
    assert_watched(&c, &seen, "brand-new");
    for (i, s) in seen.iter().enumerate() {
        // Nothing was ever decided: the configured initial state (Healthy) answers until
        // the quorum has seen the app down for fall_after rounds.
        for (code, body) in s.pre_round() {
            assert_eq!(*code, 200, "agent {i}: {body}");
            assert!(!body.contains("UNDECIDED"), "agent {i}: {body}");
        }
    }
    let initial = seen
        .iter()
        .flat_map(Seen::pre_round)
        .filter(|(_, body)| body.contains("decision=initial"))
        .count();
    assert!(initial > 0, "no answer named the initial state: {seen:?}");
    decided_unhealthy_and_persisted(&c).await;
}
