//! Votes that mean what they say, under the failures the world mixes together: at every moment
//! two of 1,000 targets hang (accept, never answer), while eight others are each switched to
//! 503 for 3 s at random times.
//!
//! - every outage is decided, by one agent alone and by a three-agent cluster (each member's
//!   `quorumgate_transitions_total{to="unhealthy"}` for the outage's check);
//! - nothing else flips: a check that never failed has no transition at all;
//! - only the hung checks themselves are ever abstained on: every ballot sampled (each
//!   member's latest, as the first agent holds them) abstains on no other check.
//!
//! The schedule is drawn from a seed printed at the start (`QG_VOTES_SEED` replays it). The
//! timing of decisions is measured by the benches (benches/probes), not asserted here.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use quorum::{SignedBallot, Status};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::support::{metric, TestCluster};

const CHECKS: usize = 1_000;
const RUN: Duration = Duration::from_secs(60);
const OUTAGE: Duration = Duration::from_secs(3);
/// The 503 outages: eight targets, each down once.
const OUTAGES: [usize; 8] = [100, 200, 300, 400, 500, 600, 700, 800];
/// Hung targets come in pairs from here, a new pair every [`HANG_EACH`].
const HANG_FIRST: usize = 900;
const HANG_EACH: Duration = Duration::from_secs(6);

const OK: u8 = 0;
const DOWN: u8 = 1;
const HANG: u8 = 2;

/// 1,000 HTTP targets on one listener, `/t/<i>`, each healthy, 503 or hung.
struct Targets {
    state: Arc<Vec<AtomicU8>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Targets {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind targets");
        let addr = listener.local_addr().expect("targets address");
        let state: Arc<Vec<AtomicU8>> = Arc::new((0..CHECKS).map(|_| AtomicU8::new(OK)).collect());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, req.uri().path()).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { state, addr, task }
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}/t/{i}", self.addr)
    }

    fn set(&self, i: usize, s: u8) {
        self.state[i].store(s, Ordering::Relaxed);
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(state: &[AtomicU8], path: &str) -> http::Response<Full<Bytes>> {
    let i: Option<usize> = path.strip_prefix("/t/").and_then(|n| n.parse().ok());
    let s = i
        .and_then(|i| state.get(i))
        .map_or(DOWN, |s| s.load(Ordering::Relaxed));
    if s == HANG {
        // Accept and never answer within any probe's timeout; end eventually so the test
        // leaves no task behind for long.
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let (code, body) = if s == OK {
        (200, "ok\n")
    } else {
        (503, "down\n")
    };
    let mut resp = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = http::StatusCode::from_u16(code).expect("status");
    resp
}

/// A small deterministic generator (SplitMix64) for the outage schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn check_id(i: usize) -> String {
    format!("t{i:04}")
}

async fn run(agents: usize) {
    let seed = std::env::var("QG_VOTES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("votes: {agents} agent(s), schedule seed {seed} (QG_VOTES_SEED replays it)");
    let targets = Targets::start().await;
    let mut extra = String::new();
    for i in 1..CHECKS {
        extra.push_str(&format!(
            "\n[[checks]]\nid = \"{}\"\ninterval = \"1s\"\ntimeout = \"999ms\"\nfall_after = 1\nrise_after = 1\nhold_down = \"1s\"\n[checks.http]\nurl = \"{}\"\nexpect_status = [200]\nbody_contains = \"ok\"\n",
            check_id(i),
            targets.url(i)
        ));
    }
    let target0 = targets.url(0);
    let cluster = TestCluster::start(|spec| {
        spec.agents.truncate(agents);
        spec.check_id = check_id(0);
        spec.target_url = target0;
        spec.round_ms = 1_000;
        spec.timeout_ms = 999;
        spec.fall_after = 1;
        spec.rise_after = 1;
        spec.hold_down_ms = 1_000;
        spec.extra_shared = extra;
        if agents == 1 {
            spec.env.push((
                "QUORUMGATE_CLUSTER__ALLOW_SINGLE_MEMBER".to_owned(),
                "true".to_owned(),
            ));
        }
    })
    .await;

    // Warm-up: every member has voted on every check (no `no_data` left in any ballot).
    cluster
        .wait_until(Duration::from_secs(30), "every check voted on", || async {
            let ballots = decoded(&cluster).await;
            ballots.len() == agents
                && ballots.iter().all(|(_, obs)| {
                    obs.len() == CHECKS
                        && obs
                            .iter()
                            .all(|(_, s, r)| *s != Status::Abstain || r != "no_data")
                })
        })
        .await;

    let mut rng = Rng(seed);
    let span = RUN - OUTAGE - Duration::from_secs(6);
    let starts: Vec<Duration> = OUTAGES
        .iter()
        .map(|_| {
            Duration::from_secs(3) + Duration::from_millis(rng.next() % span.as_millis() as u64)
        })
        .collect();
    eprintln!("votes: outages start at {starts:?} (3 s each)");

    let t0 = Instant::now();
    let mut hung: BTreeSet<usize> = BTreeSet::new();
    let mut current_pair = usize::MAX;
    let mut next_sample = t0;
    let mut samples = 0u32;
    let mut abstentions_on_hung = 0u64;
    while t0.elapsed() < RUN {
        let now = t0.elapsed();
        // Two hung targets at every moment, a new pair every HANG_EACH.
        let pair = (now.as_millis() / HANG_EACH.as_millis()) as usize;
        if pair != current_pair {
            if current_pair != usize::MAX {
                targets.set(HANG_FIRST + 2 * current_pair, OK);
                targets.set(HANG_FIRST + 2 * current_pair + 1, OK);
            }
            for i in [HANG_FIRST + 2 * pair, HANG_FIRST + 2 * pair + 1] {
                targets.set(i, HANG);
                hung.insert(i);
            }
            current_pair = pair;
        }
        for (target, start) in OUTAGES.iter().zip(&starts) {
            let down = now >= *start && now < *start + OUTAGE;
            targets.set(*target, if down { DOWN } else { OK });
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            samples += 1;
            for (agent, obs) in decoded(&cluster).await {
                for (check, status, reason) in obs {
                    if status != Status::Abstain {
                        continue;
                    }
                    let i: usize = check[1..].parse().expect("check index");
                    assert!(
                        hung.contains(&i),
                        "{agent} abstained on {check} ({reason}), which never hung (seed {seed})\n{}",
                        cluster.logs()
                    );
                    abstentions_on_hung += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..CHECKS {
        targets.set(i, OK);
    }
    assert!(samples >= 50, "only {samples} ballot samples in {RUN:?}");

    // Every outage decided by every member; nothing that never failed moved.
    for a in 0..cluster.len() {
        let text = cluster.metrics(a).await;
        for target in OUTAGES {
            let labels = format!("check=\"{}\",to=\"unhealthy\"", check_id(target));
            assert!(
                metric(&text, "quorumgate_transitions_total", &labels) >= 1.0,
                "agent {} never decided the outage of {} (seed {seed})\n{}",
                cluster.id(a),
                check_id(target),
                cluster.logs()
            );
        }
        for line in text
            .lines()
            .filter(|l| l.starts_with("quorumgate_transitions_total{"))
        {
            let check = line
                .split("check=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("check label");
            let i: usize = check[1..].parse().expect("check index");
            assert!(
                OUTAGES.contains(&i) || hung.contains(&i),
                "agent {}: {check} flipped, though it never failed (seed {seed}): {line}",
                cluster.id(a)
            );
        }
    }
    eprintln!(
        "votes: {samples} samples, {abstentions_on_hung} abstentions, all on the {} hung checks",
        hung.len()
    );
}

/// Every member's latest ballot as the first agent holds it: `(agent, [(check, status, reason)])`.
async fn decoded(cluster: &TestCluster) -> Vec<(String, Vec<(String, Status, String)>)> {
    cluster
        .ballots(0)
        .await
        .iter()
        .map(|wire| {
            let ballot = SignedBallot::from_wire(wire)
                .and_then(|s| s.decode_unverified())
                .expect("ballot decodes");
            let obs = ballot
                .observations()
                .iter()
                .map(|o| (o.check.to_string(), o.status, o.reason.to_string()))
                .collect();
            (ballot.agent().to_string(), obs)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_decides_every_outage_while_targets_hang() {
    run(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_decide_every_outage_while_targets_hang() {
    run(3).await;
}
