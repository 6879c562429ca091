//! Fuzzing entry point for the agent's HTTP surface, shared by the cargo-fuzz target `http`
//! (`fuzz/`) and the corpus-replay test `agent/tests/fuzz_corpus.rs`. Not part of the API.
//!
//! The input is the raw byte stream a client sends on one connection (HTTP/1, possibly several
//! pipelined requests). It is written into an in-memory pipe whose other end is served by the
//! agent's own [`server::serve_connection`]: hyper's HTTP/1 parser with the agent's buffer and
//! header limits, [`server::route`], the body limits of `POST /v1/ballots`, the node's ballot
//! book, and `GET /v1/ballots`. That exercises more of the agent than calling `route` with a
//! ready-made `http::Request` could (hyper's `Incoming` body cannot be built by hand, and the
//! parser and limits are part of what a hostile peer reaches).
//!
//! After the connection ends, what the node holds is served as a `GET /v1/ballots` bundle and
//! pulled by a fresh peer node the way [`crate::exchange`] does (`bundle::decode`, then
//! `Node::receive`): every ballot one agent accepted must be accepted by the other.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use config::Config;
use hyper_util::rt::TokioIo;
use quorum::fuzzing::{key, MEMBERS, NOW};
use quorum::UnixMillis;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::bundle;
use crate::clock::{Clock, SharedClock};
use crate::node::Node;
use crate::server::{self, ServerCtx, Surface};

/// Largest `POST /v1/ballots` body the fuzzed agent accepts (small, so the limit is reachable).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Polls of one connection before it counts as a hang (a bug): far above any real input.
const MAX_POLLS: usize = 1_000_000;

/// A clock stopped at [`NOW`], so seed ballots stay live.
#[derive(Debug)]
struct Stopped;

impl Clock for Stopped {
    fn now(&self) -> UnixMillis {
        NOW
    }
}

/// The fuzzed agent `a0` of a three-member cluster whose keys are [`key`]`(0..3)`.
#[must_use]
pub fn cluster_config() -> Config {
    let mut toml = format!(
        r#"[cluster]
name = "fuzz"
round_interval = "1s"
ballot_valid_for = "15s"
max_clock_skew = "1s"
max_ballot_bytes = {MAX_BODY_BYTES}
peer_timeout = "500ms"
"#
    );
    for (id, i) in MEMBERS.iter().zip(0u8..) {
        toml.push_str(&format!(
            "[[members]]\nid = \"{id}\"\nregion = \"r{i}\"\nurl = \"http://127.0.0.{}:9443/\"\npublic_key = \"{}\"\n",
            i + 1,
            crate::keys::public_key_base64(&key(i).verifying_key())
        ));
    }
    for check in ["api-euw1", "api-use1", "db"] {
        toml.push_str(&format!(
            "[[checks]]\nid = \"{check}\"\n[checks.tcp]\naddress = \"127.0.0.1:9\"\n"
        ));
    }
    toml.push_str("[local]\nagent_id = \"a0\"\nkey_file = \"/nonexistent\"\n");
    Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("fixed fuzz config: {e}"))
}

/// The server's end of the connection: reads `input`, then "no data yet" until `eof` is set,
/// then end of stream; every write is kept in `output`. Nothing here blocks or sleeps.
#[derive(Debug)]
struct Pipe {
    input: Vec<u8>,
    read: usize,
    eof: Arc<AtomicBool>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pipe {
    fn new(input: &[u8]) -> Self {
        Self {
            input: input.to_vec(),
            read: 0,
            eof: Arc::new(AtomicBool::new(false)),
            output: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rest = &self.input[self.read..];
        if rest.is_empty() {
            // No waker is kept: `drive` polls again after setting `eof`.
            return if self.eof.load(Ordering::Acquire) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Records whether the connection asked to be polled again.
#[derive(Debug, Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Polls the connection until it ends. When it stalls (pending, and nothing woke it), every
/// byte of input has been handled as far as it can be: the client then closes its side
/// (`eof`), which ends the connection. Deterministic: no timer ever needs to fire, and the
/// client never half-closes early (hyper would drop a response still being prepared).
fn drive(rt: &tokio::runtime::Runtime, conn: impl Future<Output = ()>, eof: &AtomicBool) {
    // Timers (hyper's header timeout, the body read timeout) register with this runtime.
    let _enter = rt.enter();
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut conn = pin!(conn);
    for _ in 0..MAX_POLLS {
        flag.0.store(false, Ordering::Release);
        if conn.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        if !flag.0.load(Ordering::Acquire) {
            assert!(
                !eof.swap(true, Ordering::AcqRel),
                "the connection is stuck after the client closed it"
            );
        }
    }
    panic!("the connection did not end within {MAX_POLLS} polls");
}

/// What one connection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRun {
    /// Everything the agent wrote back on the connection.
    pub response: Vec<u8>,
    /// Ballots the agent holds afterwards (each also accepted by the pulling peer).
    pub held: usize,
}

/// One agent and a runtime, reused across inputs; every input gets a fresh node.
#[derive(Debug)]
pub struct HttpHarness {
    rt: tokio::runtime::Runtime,
    cfg: Arc<Config>,
}

impl HttpHarness {
    /// Builds the runtime (current-thread, like one connection task) and the config.
    #[must_use]
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        Self {
            rt,
            cfg: Arc::new(cluster_config()),
        }
    }

    /// The config digest ballots must carry to be accepted.
    #[must_use]
    pub fn digest(&self) -> quorum::ConfigDigest {
        self.cfg.digest
    }

    /// Fuzz target `http`: `input` is a client's byte stream on one connection.
    pub fn run(&self, input: &[u8]) -> HttpRun {
        let clock: SharedClock = Arc::new(Stopped);
        let node = Node::new(Arc::clone(&self.cfg), NOW);
        let intake = node.intake();
        let node = Arc::new(Mutex::new(node));
        let ctx = Arc::new(ServerCtx {
            node: Arc::clone(&node),
            clock,
            metrics: None,
            max_body_bytes: MAX_BODY_BYTES,
            liveness_ms: 60_000,
            gates: None,
            intake,
            bodies: server::body::BodyBudget::new(server::body::DEFAULT_BUDGET_BYTES),
        });
        let io = Pipe::new(input);
        let output = Arc::clone(&io.output);
        let eof = Arc::clone(&io.eof);
        drive(
            &self.rt,
            server::serve_connection(TokioIo::new(io), Surface::Full, ctx),
            &eof,
        );
        let response = std::mem::take(
            &mut *output
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !response.is_empty() {
            assert!(response.starts_with(b"HTTP/1."), "not an HTTP/1 response");
        }
        let held = node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ballots();
        // The peer's pull: the same bundle decoding and receipt as `Exchange::pull_one`.
        let body = bundle::encode(&held);
        let items = bundle::decode(&body).unwrap_or_else(|e| panic!("own bundle: {e}"));
        assert_eq!(items.len(), held.len());
        let mut peer = Node::new(Arc::clone(&self.cfg), NOW);
        for wire in items {
            if let Err(e) = peer.receive(NOW, wire, "pull:fuzz") {
                panic!("a ballot the agent accepted is refused by its peer: {e}");
            }
        }
        HttpRun {
            response,
            held: held.len(),
        }
    }
}

impl Default for HttpHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// A signed ballot of member `i` (0..3) that the fuzzed agent accepts at [`NOW`].
#[must_use]
pub fn valid_ballot(digest: quorum::ConfigDigest, i: u8, seq: u64, healthy: bool) -> Vec<u8> {
    use quorum::{AgentId, Ballot, CheckId, Observation, Reason, SignedBallot, Status};
    let status = if healthy {
        Status::Healthy
    } else {
        Status::Unhealthy
    };
    let obs = ["api-euw1", "api-use1", "db"]
        .iter()
        .map(|c| {
            Observation::new(
                CheckId::new(*c).unwrap_or_else(|e| panic!("{e}")),
                status,
                Reason::from_static("ok"),
                5,
                NOW.minus(200),
            )
        })
        .collect();
    let agent = AgentId::new(MEMBERS[usize::from(i % 3)]).unwrap_or_else(|e| panic!("{e}"));
    let b = Ballot::new(agent, seq, NOW, 15_000, digest, obs).unwrap_or_else(|e| panic!("{e}"));
    SignedBallot::sign(&b, &key(i % 3)).to_wire()
}

/// A `POST /v1/ballots` request carrying `body` with a correct Content-Length.
#[must_use]
pub fn post(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/ballots HTTP/1.1\r\nhost: a0\r\nx-quorumgate-agent: a1\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Seed inputs for the `http` target.
#[must_use]
pub fn http_seeds() -> Vec<(String, Vec<u8>)> {
    let digest = HttpHarness::new().digest();
    let v1 = valid_ballot(digest, 1, 7, true);
    let v2 = valid_ballot(digest, 2, 7, false);
    let get = b"GET /v1/ballots HTTP/1.1\r\nhost: a0\r\n\r\n".to_vec();
    let cat = |parts: &[&[u8]]| parts.concat();
    let mut chunked =
        b"POST /v1/ballots HTTP/1.1\r\nhost: a0\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let (head, tail) = v1.split_at(40);
    chunked.extend_from_slice(format!("{:x}\r\n", head.len()).as_bytes());
    chunked.extend_from_slice(head);
    chunked.extend_from_slice(format!("\r\n{:x}\r\n", tail.len()).as_bytes());
    chunked.extend_from_slice(tail);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut forged = v1.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    vec![
        ("post_valid".to_owned(), post(&v1)),
        ("post_two_then_get".to_owned(), cat(&[&post(&v1), &post(&v2), &get])),
        ("post_duplicate".to_owned(), cat(&[&post(&v1), &post(&v1)])),
        ("post_chunked".to_owned(), chunked),
        ("post_forged".to_owned(), post(&forged)),
        ("post_garbage".to_owned(), post(b"QGS\x01\x00\x00\x00\x05hello")),
        (
            "post_declared_too_large".to_owned(),
            format!("POST /v1/ballots HTTP/1.1\r\nhost: a0\r\ncontent-length: {}\r\n\r\n", MAX_BODY_BYTES + 1).into_bytes(),
        ),
        ("post_body_too_large".to_owned(), {
            let mut r = b"POST /v1/ballots HTTP/1.1\r\nhost: a0\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            let n = MAX_BODY_BYTES + 16;
            r.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            r.extend(std::iter::repeat_n(b'Q', n));
            r.extend_from_slice(b"\r\n0\r\n\r\n");
            r
        }),
        ("post_truncated_body".to_owned(), {
            let mut r = post(&v1);
            r.truncate(r.len() - 10);
            r
        }),
        ("get_ballots".to_owned(), get.clone()),
        (
            "other_routes".to_owned(),
            b"PUT /v1/ballots HTTP/1.1\r\nhost: a0\r\ncontent-length: 0\r\n\r\nGET /v1/health/api-use1 HTTP/1.1\r\nhost: a0\r\n\r\nGET /v1/status HTTP/1.1\r\nhost: a0\r\n\r\nGET /readyz HTTP/1.1\r\nhost: a0\r\n\r\nPOST /v1/operator HTTP/1.1\r\nhost: a0\r\ncontent-length: 3\r\n\r\nabcGET /nope HTTP/1.1\r\nhost: a0\r\nconnection: close\r\n\r\n".to_vec(),
        ),
        (
            "bad_request_line".to_owned(),
            b"POST  /v1/ballots HTTP/9.9\r\n\r\n".to_vec(),
        ),
    ]
}
