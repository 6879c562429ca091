use super::MAX_REQUESTS_PER_CONNECTION;
use crate::fuzzing::HttpHarness;

/// Keep-alive and pipelining are bounded: of more pipelined requests than a connection may
/// carry, exactly the allowed number is answered, the last answer says `Connection: close`,
/// and the connection ends there.
#[test]
fn a_connection_carries_at_most_the_request_limit() {
    let limit = usize::try_from(MAX_REQUESTS_PER_CONNECTION).expect("small");
    let input = "GET /livez HTTP/1.1\r\nHost: agent\r\n\r\n".repeat(limit + 5);
    let out = HttpHarness::new().run(input.as_bytes()).response;
    let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert_eq!(out.matches("http/1.1 200 ok").count(), limit, "{out}");
    assert_eq!(out.matches("connection: close").count(), 1);
    let last = out.rfind("http/1.1 200 ok").expect("answers");
    assert!(
        out[last..].contains("connection: close"),
        "{}",
        &out[last..]
    );
}

/// A forged ballot is decoded, its signature checked and the refusal counted while another
/// thread holds the node lock: hostile bytes cost CPU, never the lock `/v1/health` needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ballot_is_refused_without_the_node_lock() {
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;

    use hyper_util::rt::TokioIo;
    use quorum::fuzzing::{key, NOW};
    use quorum::{AgentId, Ballot, SignedBallot};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::body::{BodyBudget, DEFAULT_BUDGET_BYTES};
    use super::{serve_connection, ServerCtx, Surface};
    use crate::clock::SystemClock;
    use crate::fuzzing::{cluster_config, MAX_BODY_BYTES};
    use crate::node::Node;

    let cfg = Arc::new(cluster_config());
    let node = Node::new(Arc::clone(&cfg), NOW);
    let intake = node.intake();
    let node = Arc::new(Mutex::new(node));
    let ctx = Arc::new(ServerCtx {
        node: Arc::clone(&node),
        clock: Arc::new(SystemClock::default()),
        metrics: None,
        max_body_bytes: MAX_BODY_BYTES,
        liveness_ms: 60_000,
        gates: None,
        intake,
        bodies: BodyBudget::new(DEFAULT_BUDGET_BYTES),
    });
    // a1's ballot, signed with a2's key.
    let ballot = Ballot::new(
        AgentId::new("a1").expect("id"),
        1,
        NOW,
        15_000,
        cfg.digest,
        vec![],
    )
    .expect("ballot");
    let wire = SignedBallot::sign(&ballot, &key(2)).to_wire();

    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = {
        let node = Arc::clone(&node);
        std::thread::spawn(move || {
            let _held = node.lock().expect("node lock");
            held_tx.send(()).expect("test waits");
            // Bounded: the test releases it, or gives up after a minute.
            let _ = release_rx.recv_timeout(Duration::from_secs(60));
        })
    };
    held_rx.recv().expect("lock held");
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve_connection(TokioIo::new(server), Surface::Full, ctx));
    let head = format!(
        "POST /v1/ballots HTTP/1.1\r\nhost: a0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        wire.len()
    );
    client.write_all(head.as_bytes()).await.expect("write head");
    client.write_all(&wire).await.expect("write body");
    let mut out = Vec::new();
    // Bounded: before the intake the handler waited for the lock, here for a minute.
    let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut out)).await;
    let _ = release_tx.send(());
    holder.join().expect("holder");
    assert!(read.is_ok(), "no answer while the node lock was held");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("bad_signature"), "{out}");
    let status = node.lock().expect("node lock").status(NOW);
    assert_eq!(status.rejected.get("bad_signature"), Some(&1));
}

/// A chunked body is charged as its chunks arrive: one that outgrows the budget is refused
/// with 503 and `Retry-After`, and its bytes go back to the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_beyond_the_budget_is_refused_and_released() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use hyper_util::rt::TokioIo;
    use quorum::fuzzing::NOW;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::body::BodyBudget;
    use super::{serve_connection, ServerCtx, Surface};
    use crate::clock::SystemClock;
    use crate::fuzzing::{cluster_config, MAX_BODY_BYTES};
    use crate::node::Node;

    let node = Node::new(Arc::new(cluster_config()), NOW);
    let intake = node.intake();
    let budget = BodyBudget::new(1_000);
    let ctx = Arc::new(ServerCtx {
        node: Arc::new(Mutex::new(node)),
        clock: Arc::new(SystemClock::default()),
        metrics: None,
        max_body_bytes: MAX_BODY_BYTES,
        liveness_ms: 60_000,
        gates: None,
        intake,
        bodies: Arc::clone(&budget),
    });
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve_connection(TokioIo::new(server), Surface::Full, ctx));
    let chunk = format!("{:x}\r\n{}\r\n", 600, "x".repeat(600));
    let request = format!(
        "POST /v1/ballots HTTP/1.1\r\nhost: a0\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    client.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer");
    let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 503"), "{out}");
    assert!(out.contains("retry-after: 1"), "{out}");
    assert_eq!(budget.held(), 0, "the refused body's bytes are back");
}
