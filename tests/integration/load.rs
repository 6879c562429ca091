//! Issue 6, "bad input and load": one agent of a 3-agent cluster under bounded load from a
//! second process (`wrk`), slow clients (slowloris), oversized and slow bodies, and a
//! connection flood from one source. Each test checks behaviour only: every answer correct,
//! abusers cut off within the server's limits plus slack, peers' ballots still accepted, the
//! cluster still deciding. Latency under load is measured by `benches/load/public_load.py`.
//!
//! Abusive clients connect from other loopback addresses (127.0.0.2, 127.0.0.8) than the agents
//! and the well-behaved clients (127.0.0.1), as they would from another host: the server keeps
//! the last slots of a listener for sources holding few connections.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

use crate::support::{metric, TestCluster, CHECK};

/// The server's limits (agent/src/server.rs), which the cut-off bounds below are built on.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The flooded agent's descriptor limit (systemd's default soft limit): its listener's cap is
/// what is left of it after the reserve, read from `quorumgate_http_max_connections`.
const FLOOD_NOFILE: u64 = 1024;
/// The share of a listener kept for light sources.
const RESERVED_FRACTION: usize = 8;
/// Allowed lateness of a cut-off: timer granularity, a loaded 2-core machine, our own polling.
const SLACK: Duration = Duration::from_secs(4);
/// How long `wrk` loads the agent.
const LOAD: Duration = Duration::from_secs(12);
/// How often the ballot exchange is sampled under load: about three rounds of 300 ms, and
/// less than a ballot's validity (4 rounds), so a peer whose ballots stop arriving shows.
const SAMPLE: Duration = Duration::from_secs(1);

fn lua_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/load/public_mix.lua")
}

/// The listener address of agent `i`.
fn addr(c: &TestCluster, i: usize) -> SocketAddr {
    let url = &c.written.agents[i].url;
    let host: IpAddr = url
        .host_str()
        .and_then(|h| h.parse().ok())
        .expect("agent URL has an IP host");
    SocketAddr::new(host, url.port().expect("agent URL has a port"))
}

/// A `wrk` process loading one agent; see benches/load/public_mix.lua for `args`.
struct Wrk {
    child: Child,
    what: String,
}

impl Wrk {
    fn start(c: &TestCluster, i: usize, connections: usize, args: &[&str]) -> Self {
        let what = format!("wrk -c{connections} {}", args.join(" "));
        let child = Command::new("wrk")
            .arg(format!("-c{connections}"))
            .arg("-t1")
            .arg(format!("-d{}s", LOAD.as_secs()))
            .arg("--timeout")
            .arg("5s")
            .arg("-s")
            .arg(lua_script())
            .arg(c.written.agents[i].url.as_str())
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `wrk` ({e}): install the test dependencies with \
                     `bash scripts/test-deps.sh` (Debian package `wrk`)"
                )
            });
        Self { child, what }
    }

    /// Waits for the run to end and returns the script's JSON summary.
    async fn finish(self) -> serde_json::Value {
        let out = timeout(
            LOAD + Duration::from_secs(20),
            self.child.wait_with_output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{} did not end", self.what))
        .expect("wrk output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed: {}\n{stdout}\n{}",
            self.what,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("{}: no summary in\n{stdout}", self.what));
        serde_json::from_str(line).expect("wrk summary JSON")
    }
}

fn n(v: &serde_json::Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

/// Every peer's latest ballot seq at agent `i`, asserting each is live.
async fn peer_seqs(c: &TestCluster, i: usize) -> BTreeMap<String, u64> {
    c.status(i)
        .await
        .members
        .into_iter()
        .filter(|m| !m.is_self)
        .map(|m| {
            let b = m
                .ballot
                .unwrap_or_else(|| panic!("agent {i} holds no ballot of {}", m.id));
            assert!(b.live, "agent {i}: the ballot of {} expired", m.id);
            (m.id, b.seq)
        })
        .collect()
}

/// Pushes from every other agent to agent `i`: (answered 2xx, anything else).
async fn pushes_to(c: &TestCluster, i: usize) -> (f64, f64) {
    let target = c.id(i);
    let (mut ok, mut other) = (0.0, 0.0);
    for j in (0..c.len()).filter(|j| *j != i) {
        let text = c.metrics(j).await;
        let prefix = format!("quorumgate_peer_push_total{{peer=\"{target}\",result=\"");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let (result, value) = rest.split_once("\"} ").expect("sample line");
            let v: f64 = value.trim().parse().expect("sample value");
            if result == "ok" {
                ok += v;
            } else {
                other += v;
            }
        }
    }
    (ok, other)
}

/// Samples the exchange at agent `i` every [`SAMPLE`] for `duration`: every peer's ballot at
/// `i` stays live and gets newer, and every peer's pushes to `i` keep being accepted, in
/// every sample. Returns the number of samples.
async fn exchange_keeps_flowing(c: &TestCluster, i: usize, duration: Duration) -> usize {
    let end = Instant::now() + duration;
    let mut seqs = peer_seqs(c, i).await;
    let mut pushes = pushes_to(c, i).await;
    let mut samples = 0;
    while Instant::now() + SAMPLE <= end {
        sleep(SAMPLE).await;
        let now = peer_seqs(c, i).await;
        for (peer, seq) in &now {
            assert!(
                *seq > seqs[peer],
                "sample {samples}: agent {i} accepted no newer ballot of {peer} (seq {seq})\n{}",
                c.logs()
            );
        }
        let p = pushes_to(c, i).await;
        assert!(
            p.0 > pushes.0,
            "sample {samples}: no push to agent {i} was accepted (ok {} → {}, failed {} → {})\n{}",
            pushes.0,
            p.0,
            pushes.1,
            p.1,
            c.logs()
        );
        (seqs, pushes) = (now, p);
        samples += 1;
    }
    samples
}

/// GETs `/v1/health/app` from agent `i` every 250 ms for `duration`; every answer must be 200.
async fn health_keeps_answering(c: &TestCluster, i: usize, duration: Duration) -> usize {
    let end = Instant::now() + duration;
    let mut answers = 0;
    while Instant::now() < end {
        assert_eq!(
            c.health(i).await,
            Some(200),
            "a well-behaved health client was not answered 200 (after {answers} answers)"
        );
        answers += 1;
        sleep(Duration::from_millis(250)).await;
    }
    answers
}

/// A TCP connection to `to` from the loopback address 127.0.0.`from`.
async fn connect_from(from: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)),
        0,
    ))?;
    socket.connect(to).await
}

/// Reads until the server closes; what it sent and whether it closed within `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    loop {
        match timeout(
            end.saturating_duration_since(Instant::now()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return (got, false),
            Ok(Ok(0) | Err(_)) => return (got, true),
            Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
        }
    }
}

/// A slowloris client: sends a request head one byte every 2 s (or nothing when `silent`) and
/// reports how long the server took to close, and whether it answered anything. Bounded by
/// `limit`.
async fn slow_client(from: u8, to: SocketAddr, silent: bool, limit: Duration) -> (Duration, bool) {
    let start = Instant::now();
    let mut s = connect_from(from, to).await.expect("slow client connects");
    let head = format!("GET /v1/health/{CHECK} HTTP/1.1\r\nHost: agent\r\n\r\n");
    let mut buf = [0u8; 256];
    for byte in head.bytes() {
        if start.elapsed() > limit {
            break;
        }
        match timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (start.elapsed(), false),
            Ok(Ok(_)) => return (start.elapsed(), true),
            Err(_) if silent => {}
            Err(_) => {
                if s.write_all(&[byte]).await.is_err() {
                    return (start.elapsed(), false);
                }
            }
        }
    }
    (start.elapsed(), false)
}

/// Sends `head` (a request head) and then `body_bytes` of body in 64 KiB writes (as chunks of
/// the chunked encoding when `chunked`), concurrently reading the answer. Returns the answer's
/// first bytes, whether the server closed, and how much body it took before that.
async fn abusive_post(
    to: SocketAddr,
    head: String,
    chunked: bool,
    body_bytes: usize,
    limit: Duration,
) -> (String, bool, usize) {
    let s = connect_from(8, to).await.expect("abusive client connects");
    let (mut r, mut w) = s.into_split();
    let mut writer = tokio::spawn(async move {
        let mut sent = 0;
        if w.write_all(head.as_bytes()).await.is_err() {
            return sent;
        }
        let data = vec![b'x'; 64 * 1024];
        let mut chunk = Vec::new();
        if chunked {
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        chunk.extend_from_slice(&data);
        if chunked {
            chunk.extend_from_slice(b"\r\n");
        }
        while sent < body_bytes {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
            sent += data.len();
        }
        sent
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    let closed = loop {
        match timeout(
            end.saturating_duration_since(Instant::now()),
            r.read(&mut buf),
        )
        .await
        {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
        }
    };
    // Once the server has closed, the writer sees the reset and stops; one still writing after
    // that is reported as having sent everything.
    let sent = match timeout(Duration::from_secs(5), &mut writer).await {
        Ok(Ok(sent)) => sent,
        _ => {
            writer.abort();
            usize::MAX
        }
    };
    let answer = String::from_utf8_lossy(&got).chars().take(80).collect();
    (answer, closed, sent)
}

/// Sends a request head declaring `declared` bytes of body, then trickles one byte a second;
/// returns the answer and how long the server took to close.
async fn slow_body(
    to: SocketAddr,
    path: &str,
    declared: usize,
    limit: Duration,
) -> (String, Duration) {
    let start = Instant::now();
    let mut s = connect_from(8, to)
        .await
        .expect("slow body client connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head sent");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
            Err(_) => {
                if s.write_all(b"x").await.is_err() {
                    break;
                }
            }
        }
    }
    let answer = String::from_utf8_lossy(&got).chars().take(80).collect();
    (answer, start.elapsed())
}

/// 200 concurrent connections from a second process (150 on `/v1/health/app`, 50 alternating
/// `/v1/status` and `/metrics`) for [`LOAD`]: every health answer is the quorum's (HEALTHY:
/// the target stays up), status and metrics answer 200, nothing times out, and the loaded
/// agent keeps accepting its peers' ballots in every sample while the cluster keeps deciding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_load_keeps_health_correct_and_ballots_flowing() {
    let c = TestCluster::start(|_| {}).await;
    c.wait_until(Duration::from_secs(20), "all HEALTHY", || async {
        c.healths().await.iter().all(|h| *h == Some(200))
    })
    .await;
    let rounds = c.status(0).await.rounds;
    let accepted_before = c.metrics(0).await;

    let health = Wrk::start(&c, 0, 150, &["health", CHECK]);
    let mix = Wrk::start(&c, 0, 50, &["mix"]);
    let samples = exchange_keeps_flowing(&c, 0, LOAD).await;
    let (health, mix) = (health.finish().await, mix.finish().await);
    eprintln!("health load: {health}\nstatus+metrics load: {mix}\nexchange samples: {samples}");

    // The load really ran: every connection got answers throughout (a lower bound far below
    // what any machine does; it only proves the generator was not idle).
    let floor = 200 * LOAD.as_secs();
    assert!(
        n(&health, "/requests") >= floor,
        "too little load: {health}"
    );
    assert!(n(&mix, "/requests") >= floor / 4, "too little load: {mix}");
    // Every health answer is the quorum's: HEALTHY, since the target never failed.
    assert_eq!(n(&health, "/healthy"), n(&health, "/requests"), "{health}");
    assert_eq!(n(&health, "/unhealthy") + n(&health, "/bad"), 0, "{health}");
    assert_eq!(n(&mix, "/ok"), n(&mix, "/requests"), "{mix}");
    // No socket errors and no timeouts (wrk's 5 s): the agent sheds nothing at 200 connections,
    // a fifth of its limit, so any error here is a defect, not load.
    for run in [&health, &mix] {
        for e in ["connect", "read", "write", "timeout", "status"] {
            assert_eq!(n(run, &format!("/errors/{e}")), 0, "{e} errors: {run}");
        }
    }
    assert!(
        samples >= (LOAD.as_secs() as usize) - 2,
        "{samples} samples"
    );

    // The cluster kept deciding: more rounds, every agent HEALTHY, no transition.
    c.wait_until(
        Duration::from_secs(10),
        "agent 0 keeps running rounds",
        || async { c.status(0).await.rounds > rounds + LOAD.as_secs() },
    )
    .await;
    assert!(c.healths().await.iter().all(|h| *h == Some(200)));
    for i in 0..c.len() {
        assert_eq!(c.status(i).await.checks[0].transitions, 0, "agent {i}");
    }
    let after = c.metrics(0).await;
    for i in 1..c.len() {
        let label = format!("from=\"{}\"", c.id(i));
        let (a, b) = (
            metric(
                &accepted_before,
                "quorumgate_ballots_accepted_total",
                &label,
            ),
            metric(&after, "quorumgate_ballots_accepted_total", &label),
        );
        assert!(
            b > a,
            "agent 0 accepted no ballot of {} under load",
            c.id(i)
        );
    }
}

/// Slowloris and oversized bodies, all at once, against agent 0, while a well-behaved health
/// client and the peers' ballot exchange keep working:
/// - 250 clients trickling a request head (a byte every 2 s) and 50 sending nothing, from
///   127.0.0.2: each closed within the header timeout + slack, unanswered;
/// - declared-huge and streamed-huge bodies to `POST /v1/ballots` and `/v1/operator`: 413
///   (or a reset once the server stops reading), without reading past the limit;
/// - a body trickled below its declared length: 408 at the body timeout;
/// - a 100 KiB request head: 431.
///
/// Each cut-off is counted in `quorumgate_http_rejected_total{listener="full",reason}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_oversized_bodies_are_cut_off() {
    // A dry-run gate, so that `/v1/operator` reads bodies; dry-run needs no Route 53.
    let c = TestCluster::start(|spec| {
        spec.extra_shared = dry_run_gate(&spec.target_url);
    })
    .await;
    c.wait_until(Duration::from_secs(20), "all HEALTHY", || async {
        c.healths().await.iter().all(|h| *h == Some(200))
    })
    .await;
    let to = addr(&c, 0);
    let limit = HEADER_READ_TIMEOUT + SLACK;

    let slow = async {
        let tasks: Vec<_> = (0..300u16)
            .map(|k| tokio::spawn(slow_client(2, to, k >= 250, limit + SLACK)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("slow client task"));
        }
        out
    };
    // Far more than the ballot limit (1 MiB) plus what loopback socket buffers can absorb.
    const OFFERED: usize = 64 * 1024 * 1024;
    let bodies = async {
        let huge = |path: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: 1000000000\r\n\r\n"
            )
        };
        let streamed = |path: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/octet-stream\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
            )
        };
        let big_head = format!(
            "GET /v1/health/{CHECK} HTTP/1.1\r\nHost: agent\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(100 * 1024)
        );
        let cases = [
            ("declared ballot", huge("/v1/ballots"), false, OFFERED),
            ("streamed ballot", streamed("/v1/ballots"), true, OFFERED),
            ("declared operator", huge("/v1/operator"), false, OFFERED),
            ("streamed operator", streamed("/v1/operator"), true, OFFERED),
            ("huge head", big_head, false, 0),
        ];
        let mut out = Vec::new();
        for (what, head, chunked, body) in cases {
            out.push((what, abusive_post(to, head, chunked, body, limit).await));
        }
        out
    };
    let trickle = slow_body(to, "/v1/ballots", 100, BODY_READ_TIMEOUT + 2 * SLACK);
    let window = limit + SLACK;
    let (slow, bodies, trickle, answers, samples) = tokio::join!(
        slow,
        bodies,
        trickle,
        health_keeps_answering(&c, 0, window),
        exchange_keeps_flowing(&c, 0, window),
    );

    for (k, (took, answered)) in slow.iter().enumerate() {
        assert!(!answered, "slow client {k} got an answer");
        assert!(
            *took <= limit,
            "slow client {k} was cut off only after {took:?}"
        );
    }
    for (what, (answer, closed, sent)) in &bodies {
        assert!(closed, "{what}: the connection stayed open ({answer:?})");
        if *what == "huge head" {
            assert!(answer.starts_with("HTTP/1.1 431"), "{what}: {answer:?}");
            continue;
        }
        // A 413, or a reset that lost it: the server stopped reading either way, far short of
        // the 64 MiB offered.
        assert!(
            answer.starts_with("HTTP/1.1 413") || answer.is_empty(),
            "{what}: {answer:?}"
        );
        assert!(*sent < OFFERED, "{what}: the server took all {sent} bytes");
    }
    let (answer, took) = trickle;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "trickled body: {answer:?}"
    );
    assert!(
        took >= BODY_READ_TIMEOUT && took <= BODY_READ_TIMEOUT + SLACK,
        "trickled body cut off after {took:?}"
    );
    assert!(
        answers > 10 && samples > 5,
        "{answers} answers, {samples} samples"
    );

    let m = c.metrics(0).await;
    let rejected = |reason: &str| {
        metric(
            &m,
            "quorumgate_http_rejected_total",
            &format!("listener=\"full\",reason=\"{reason}\""),
        )
    };
    assert!(rejected("header_timeout") >= 300.0, "\n{m}");
    assert_eq!(rejected("body_timeout"), 1.0, "\n{m}");
    assert_eq!(rejected("header_too_large"), 1.0, "\n{m}");
    assert_eq!(rejected("too_large"), 4.0, "\n{m}");
    assert_eq!(
        rejected("heavy_source") + rejected("connection_limit"),
        0.0,
        "\n{m}"
    );
    assert_eq!(
        metric(
            &m,
            "quorumgate_ballots_rejected_total",
            "reason=\"too_large\""
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "quorumgate_operator_commands_total",
            "result=\"too_large\""
        ),
        2.0
    );
}

/// The realistic attack on the peers' listener: one host without a client certificate opens
/// more connections than the listener's limit (its share of a descriptor limit of 1,024),
/// never starts the TLS handshake, and re-opens each soon after it is closed. It gets the
/// listener up to its reserve (the last eighth of its slots) and no further, so the peers' pushes over mutual TLS
/// (a connection per ballot) and a health client keep being served; the excess is refused and
/// counted, and the held connections are cut at the TLS handshake timeout. (Without the
/// reserve the flood took every slot: the test's own status and health requests were refused.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_source_does_not_starve_the_peers() {
    let c = TestCluster::start(|spec| {
        spec.tls = true;
        spec.nofile = vec![("use1".to_owned(), FLOOD_NOFILE)];
    })
    .await;
    c.wait_until(Duration::from_secs(20), "all HEALTHY", || async {
        c.healths().await.iter().all(|h| *h == Some(200))
    })
    .await;
    let max_connections = metric(
        &c.metrics(0).await,
        "quorumgate_http_max_connections",
        "listener=\"full\"",
    ) as usize;
    assert!(
        (64..FLOOD_NOFILE as usize).contains(&max_connections),
        "cap {max_connections}"
    );
    let reserved = max_connections / RESERVED_FRACTION;
    let to = addr(&c, 0);
    let flood_for = Duration::from_secs(12);
    let end = Instant::now() + flood_for;

    // The cap plus 276 connections from 127.0.0.2, each sending nothing and re-opened 200 ms
    // after the server closes it; at most 100 opens per slot, and all stop at `end`.
    let flood: Vec<_> = (0..max_connections + 276)
        .map(|_| {
            tokio::spawn(async move {
                let (mut held, mut refused) = (0u32, 0u32);
                for _ in 0..100 {
                    if Instant::now() >= end {
                        break;
                    }
                    let Ok(mut s) = connect_from(2, to).await else {
                        sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let opened = Instant::now();
                    let (_, closed) =
                        read_until_closed(&mut s, end.saturating_duration_since(opened)).await;
                    if closed && opened.elapsed() < Duration::from_secs(1) {
                        refused += 1;
                    } else {
                        held += 1;
                    }
                    drop(s);
                    sleep(Duration::from_millis(200)).await;
                }
                (held, refused)
            })
        })
        .collect();
    // Let the flood fill what it can before judging the exchange.
    sleep(Duration::from_secs(1)).await;
    let (answers, samples) = tokio::join!(
        health_keeps_answering(&c, 0, flood_for - Duration::from_secs(2)),
        exchange_keeps_flowing(&c, 0, flood_for - Duration::from_secs(2)),
    );
    let (mut held, mut refused) = (0, 0);
    for t in flood {
        let (h, r) = t.await.expect("flood task");
        held += h;
        refused += r;
    }
    eprintln!(
        "flood: {held} connections held, {refused} refused; \
         {answers} health answers, {samples} samples"
    );
    assert!(
        answers > 10 && samples > 5,
        "{answers} answers, {samples} samples"
    );

    let m = c.metrics(0).await;
    let rejected = |reason: &str| {
        metric(
            &m,
            "quorumgate_http_rejected_total",
            &format!("listener=\"full\",reason=\"{reason}\""),
        )
    };
    // The flood reached the reserve and was refused there, never at the listener's limit; the
    // slots it held (all but the reserve, less the few of the light sources) were each cut
    // off by the TLS handshake timeout (5 s, like the header timeout).
    assert!(
        refused > 0 && rejected("heavy_source") >= f64::from(refused),
        "\n{m}"
    );
    assert_eq!(rejected("connection_limit"), 0.0, "\n{m}");
    assert!(
        rejected("tls_timeout") >= (max_connections - reserved - 32) as f64,
        "\n{m}"
    );
    // The cluster kept deciding.
    assert!(c.healths().await.iter().all(|h| *h == Some(200)));
}

/// Shared TOML for a dry-run control-plane gate over `app` and a `standby` check on the same
/// target; dry-run gates never call Route 53.
fn dry_run_gate(target: &str) -> String {
    format!(
        r#"
[[checks]]
id = "standby"
interval = "300ms"
timeout = "200ms"
[checks.http]
url = "{target}"
expect_status = [200]

[[gates]]
id = "dry"
plane = "control"
zone_id = "Z0LOADTEST"
zone = "example.com"
record = "app.example.com"
kind = "failover"
mode = "dry-run"

[[gates.targets]]
id = "primary"
check = "app"
role = "primary"
values = ["192.0.2.10"]

[[gates.targets]]
id = "secondary"
check = "standby"
role = "secondary"
values = ["198.51.100.20"]
"#
    )
}
