//! A distributed flood of idle connections against an agent under systemd's default
//! descriptor limit (soft and hard 1,024), as a user measured it: 2,000 idle connections from
//! 290 loopback sources (7 each, under the per-source reserve's threshold of 8) used to exhaust
//! the agent's descriptors, so its own probes failed with "Too many open files" and voted
//! Unhealthy, and 92 % of legitimate health requests were refused.
//!
//! Now the listeners' caps leave the probes' descriptors alone (`agent/src/fdlimit.rs`) and idle
//! connections are shed for new ones (`agent/src/server/admission.rs`). The test holds the flood
//! for several rounds, re-opening every connection the agent sheds, while it watches every
//! agent's status (no Unhealthy vote, no flip) and sends health requests, each from a source
//! address of its own, of which at least 99 % must be answered 200.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use quorumgate::status::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::support::{metric, TestCluster, CHECK};

/// The agent under test's descriptor limit: systemd's default soft limit.
const NOFILE: u64 = 1_024;
/// Flood sources (127.1.x.y) and connections per source: 2,030 connections.
const FLOOD_SOURCES: usize = 290;
const PER_SOURCE: usize = 7;
/// Legitimate health requests, each from its own source (127.2.x.y), and the pause between
/// them.
const HEALTH_REQUESTS: usize = 240;
const HEALTH_PACE: Duration = Duration::from_millis(25);
/// One flood round: find the connections the agent closed and open them again.
const FLOOD_ROUND: Duration = Duration::from_secs(1);
/// Bounds on the flood: rounds before the health requests start, and in all.
const WARM_UP_ROUNDS: usize = 2;
const MAX_FLOOD_ROUNDS: usize = 60;
/// How often every agent's status is read during the flood.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// The `n`-th address of the 127.`net`.0.0/16 block (skipping .0 hosts).
fn source(net: u8, n: usize) -> Ipv4Addr {
    let hi = u8::try_from(n / 250).expect("fewer than 64,000 sources");
    let lo = u8::try_from(n % 250 + 1).expect("below 251");
    Ipv4Addr::new(127, net, hi, lo)
}

/// How long a flood connection may take to connect (a full backlog drops SYNs: skip it).
const FLOOD_CONNECT: Duration = Duration::from_millis(500);
/// Route 53's health checkers: a TCP connection within 4 s, then the answer within 2 s.
const CHECKER_CONNECT: Duration = Duration::from_secs(4);
const CHECKER_ANSWER: Duration = Duration::from_secs(2);

async fn connect_from(
    src: Ipv4Addr,
    to: SocketAddr,
    within: Duration,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
    match timeout(within, socket.connect(to)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Whether the agent closed `s` (or sent anything: an idle client expects nothing).
fn closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.try_read(&mut buf) {
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        Ok(_) => true,
    }
}

/// What the flood did.
#[derive(Debug, Default)]
pub(crate) struct FloodReport {
    pub(crate) rounds: usize,
    pub(crate) opened: u64,
    pub(crate) reopened: u64,
    pub(crate) failed_connects: u64,
    /// Most connections open at once, seen from the test after a round.
    pub(crate) max_open: usize,
}

/// Holds `FLOOD_SOURCES × PER_SOURCE` idle connections to `to`, re-opening each one the agent
/// closes once per [`FLOOD_ROUND`], until `stop` (at most [`MAX_FLOOD_ROUNDS`] rounds).
/// `warm` fires after [`WARM_UP_ROUNDS`] rounds.
pub(crate) async fn flood(
    to: SocketAddr,
    warm: CancellationToken,
    stop: CancellationToken,
) -> FloodReport {
    let mut slots: Vec<Option<TcpStream>> = (0..FLOOD_SOURCES * PER_SOURCE).map(|_| None).collect();
    let mut report = FloodReport::default();
    while report.rounds < MAX_FLOOD_ROUNDS && !stop.is_cancelled() {
        let started = Instant::now();
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(closed) {
                *slot = None;
                report.reopened += 1;
            }
            if slot.is_none() {
                match connect_from(source(1, i / PER_SOURCE), to, FLOOD_CONNECT).await {
                    Ok(s) => {
                        *slot = Some(s);
                        report.opened += 1;
                    }
                    Err(_) => report.failed_connects += 1,
                }
            }
        }
        report.rounds += 1;
        report.max_open = report.max_open.max(slots.iter().flatten().count());
        if report.rounds == WARM_UP_ROUNDS {
            warm.cancel();
        }
        tokio::select! {
            () = sleep(FLOOD_ROUND.saturating_sub(started.elapsed())) => {}
            () = stop.cancelled() => {}
        }
    }
    warm.cancel();
    report
}

/// `GET /v1/health/app` from `src`; the status code, or what went wrong.
async fn health_from(src: Ipv4Addr, to: SocketAddr) -> Result<u16, String> {
    let mut s = connect_from(src, to, CHECKER_CONNECT)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request =
        format!("GET /v1/health/{CHECK} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    match timeout(CHECKER_ANSWER, s.read_to_end(&mut answer)).await {
        Err(_) => return Err(format!("no answer within {CHECKER_ANSWER:?}")),
        Ok(Err(e)) => return Err(format!("read: {e}")),
        Ok(Ok(_)) => {}
    }
    let answer = String::from_utf8_lossy(&answer);
    let code = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    if code == 200 && !answer.contains("HEALTHY") {
        return Err(format!("200 without HEALTHY: {answer:?}"));
    }
    Ok(code)
}

/// What watching the cluster's status saw.
#[derive(Debug, Default)]
struct Watch {
    /// Status documents read, per agent.
    polls: Vec<usize>,
    violations: Vec<String>,
    abstentions: Vec<String>,
    /// The first and last time of the flooded agent's own latest observation: its probes
    /// kept running only if this moved on.
    own_observed: Option<(u64, u64)>,
}

/// Reads every agent's status every [`WATCH_EVERY`] until `stop`, recording any Unhealthy vote
/// for the check, any decision other than healthy and any transition after `baseline`.
async fn watch(c: &TestCluster, baseline: &[u64], stop: CancellationToken) -> Watch {
    let mut w = Watch {
        polls: vec![0; c.len()],
        ..Watch::default()
    };
    while !stop.is_cancelled() {
        for (i, &base) in baseline.iter().enumerate() {
            let Some((200, body)) = c
                .request(i, http::Method::GET, "v1/status", Vec::new())
                .await
            else {
                continue;
            };
            let s: Status = serde_json::from_slice(&body).expect("status JSON");
            w.polls[i] += 1;
            let check = s.checks.iter().find(|k| k.id == CHECK).expect("the check");
            if i == 0 {
                if let Some(o) = check.observations.get(&s.agent) {
                    let (first, _) = w.own_observed.unwrap_or((o.observed_at_ms, 0));
                    w.own_observed = Some((first, o.observed_at_ms));
                }
            }
            for (member, o) in &check.observations {
                match o.status.as_str() {
                    "unhealthy" => w.violations.push(format!(
                        "{}: {member} votes unhealthy ({}: {})",
                        s.agent, o.reason, o.detail
                    )),
                    "abstain" => w
                        .abstentions
                        .push(format!("{}: {member} abstains ({})", s.agent, o.reason)),
                    _ => {}
                }
            }
            if check.decision != "healthy" || check.transitions != base {
                w.violations.push(format!(
                    "{}: decision {} after {} transitions (baseline {base})",
                    s.agent, check.decision, check.transitions
                ));
            }
        }
        tokio::select! {
            () = sleep(WATCH_EVERY) => {}
            () = stop.cancelled() => {}
        }
    }
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_idle_flood_neither_flips_votes_nor_locks_out_health_checks() {
    // The flood needs more than 2,000 descriptors here.
    let own = quorumgate::fdlimit::raise_nofile();
    assert!(
        own.soft >= 4_096,
        "the test needs RLIMIT_NOFILE >= 4096: {own:?}"
    );
    let c = TestCluster::start(|spec| {
        spec.nofile = vec![("use1".to_owned(), NOFILE)];
        // Probe timeouts a busy 2-core machine keeps (200 ms did not, on an agent that was
        // not even flooded): the test is about descriptors and slots, not latency.
        spec.round_ms = 600;
        spec.timeout_ms = 500;
    })
    .await;
    c.wait_until(Duration::from_secs(20), "all HEALTHY", || async {
        c.healths().await.iter().all(|h| *h == Some(200))
    })
    .await;
    let url = &c.written.agents[0].url;
    let to = SocketAddr::new(
        url.host_str()
            .and_then(|h| h.parse().ok())
            .expect("agent URL has an IP host"),
        url.port().expect("agent URL has a port"),
    );
    let before = c.metrics(0).await;
    let rejected = |m: &str, reason: &str| {
        metric(
            m,
            "quorumgate_http_rejected_total",
            &format!("listener=\"full\",reason=\"{reason}\""),
        )
    };
    // The agent's cap comes from its 1,024 descriptors less the reserve.
    let cap = metric(
        &before,
        "quorumgate_http_max_connections",
        "listener=\"full\"",
    );
    assert!(
        cap >= 64.0 && cap <= (NOFILE - 64) as f64,
        "cap {cap}\n{before}"
    );
    let mut baseline = Vec::new();
    for i in 0..c.len() {
        baseline.push(c.status(i).await.checks[0].transitions);
    }

    let warm = CancellationToken::new();
    let stop = CancellationToken::new();
    // The flood runs on a thread and runtime of its own, so its loop never delays the target
    // app, which shares this test's runtime.
    let flooding = {
        let (warm, stop) = (warm.clone(), stop.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("flood runtime")
                .block_on(flood(to, warm, stop))
        })
    };
    let watching = watch(&c, &baseline, stop.clone());
    let asking = async {
        warm.cancelled().await;
        // Independent checkers: one request every HEALTH_PACE, each bounded by Route 53's
        // timeouts, whether or not the previous one was answered.
        let mut asked = Vec::new();
        for n in 0..HEALTH_REQUESTS {
            asked.push(tokio::spawn(health_from(source(2, n), to)));
            sleep(HEALTH_PACE).await;
        }
        let mut answers = Vec::new();
        for a in asked {
            answers.push(a.await.expect("health request task"));
        }
        // Another round of flood with the watch on after the last request, then stop.
        sleep(FLOOD_ROUND).await;
        stop.cancel();
        answers
    };
    let (w, answers) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(watching, asking)
    })
    .await
    .unwrap_or_else(|_| panic!("flood test over its time bound\n{}", c.logs()));
    stop.cancel();
    let report = tokio::task::spawn_blocking(move || flooding.join())
        .await
        .expect("join")
        .expect("flood thread");

    let ok = answers.iter().filter(|a| **a == Ok(200)).count();
    let failed: Vec<_> = answers.iter().filter(|a| **a != Ok(200)).collect();
    let after = c.metrics(0).await;
    let shed = rejected(&after, "shed_idle") - rejected(&before, "shed_idle");
    eprintln!(
        "cap {cap}; flood {report:?}; {ok}/{HEALTH_REQUESTS} health answers 200; \
         {shed} shed; polls {:?}; violations {:?}; abstentions {:?}; failures {failed:?}",
        w.polls,
        w.violations.iter().take(5).collect::<Vec<_>>(),
        w.abstentions.iter().take(5).collect::<Vec<_>>(),
    );

    // No vote, no decision moved, and the watch saw every agent throughout.
    assert!(w.violations.is_empty(), "{:#?}\n{}", w.violations, c.logs());
    assert!(w.polls.iter().all(|n| *n >= 10), "{:?}", w.polls);
    // The flooded agent kept probing (its own observation kept being renewed).
    let (first, last) = w.own_observed.expect("the flooded agent's own observation");
    assert!(
        last >= first + 5 * c.round().as_millis() as u64,
        "own observation stuck: {first} .. {last}\n{}",
        c.logs()
    );
    // Legitimate requests from new sources got their answer.
    assert!(
        ok * 100 >= HEALTH_REQUESTS * 99,
        "{ok}/{HEALTH_REQUESTS} answered 200: {failed:?}\n{}",
        c.logs()
    );
    // The flood held the listener: far more connections open than it has slots, and the
    // agent shed idle ones for new ones round after round.
    assert!(report.rounds >= WARM_UP_ROUNDS + 3, "{report:?}");
    assert!(report.max_open as f64 >= cap, "{report:?}");
    assert!(shed >= cap, "only {shed} shed\n{after}");
    // The agent never ran out of descriptors.
    assert_eq!(rejected(&after, "accept_no_fd"), 0.0, "\n{after}");
    let log = std::fs::read_to_string(&c.written.agents[0].log_path).expect("agent log");
    assert!(!log.contains("Too many open files"), "{}", c.logs());
    // …under the limit it was given.
    let log = strip_ansi(&log);
    assert!(
        log.lines()
            .any(|l| l.contains("descriptor budget") && l.contains("nofile_soft=1024 ")),
        "{}",
        c.logs()
    );
}

/// `text` without terminal colour sequences (`ESC [ … m`), as the agents' logs have them.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}
