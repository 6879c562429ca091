//! One byte budget for every request body in flight: uploads that do not fit are answered 503
//! with `Retry-After` at once (counted, reason `body_budget`), the bytes the server holds never
//! exceed the budget, and `/v1/health` answers throughout.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::support::{metric, TestCluster};

/// The server's budget (`server::body::DEFAULT_BUDGET_BYTES`) and the largest ballot
/// (`cluster.max_ballot_bytes` of the dev cluster): 64 full-size uploads fill it.
const BUDGET: u64 = 64 * 1024 * 1024;
const BALLOT: u64 = 1024 * 1024;
/// Uploads beyond the budget.
const BEYOND: usize = 8;

/// Opens an upload of a full-size ballot from 127.3.0.`n`, sends its head and the first bytes
/// of its body, and leaves it open. (The agent gives a body 10 s to arrive: the test's
/// uploads all start well within that.)
async fn start_upload(to: SocketAddr, n: usize) -> TcpStream {
    let src = Ipv4Addr::new(127, 3, 0, u8::try_from(n + 1).expect("under 255 uploads"));
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))
        .expect("bind loopback source");
    let mut s = timeout(Duration::from_secs(10), socket.connect(to))
        .await
        .expect("connect in time")
        .expect("connect");
    let head =
        format!("POST /v1/ballots HTTP/1.1\r\nHost: agent\r\nContent-Length: {BALLOT}\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("send head");
    s.write_all(&[0u8; 1024]).await.expect("send body start");
    s
}

/// The status line and headers the agent sent on `s`, if it answered within `limit`.
async fn answer(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    match timeout(limit, s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// `quorumgate_http_body_bytes_reserved` (a gauge without labels).
fn reserved(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("quorumgate_http_body_bytes_reserved "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(u64::MAX, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_body_budget_get_503_and_health_answers_throughout() {
    let c = TestCluster::start(|_| {}).await;
    let to = SocketAddr::from((
        [127, 0, 0, 1],
        c.written.agents[0].url.port().expect("port"),
    ));
    let held = || async { reserved(&c.metrics(0).await) };
    let full = usize::try_from(BUDGET / BALLOT).expect("small");
    let mut uploads = Vec::new();
    for n in 0..full {
        uploads.push(start_upload(to, n).await);
    }
    // Each reserved in full from its Content-Length, before its body arrives.
    c.wait_until(
        Duration::from_secs(20),
        "the uploads fill the budget",
        || async { held().await == BUDGET },
    )
    .await;
    assert_eq!(c.health(0).await, Some(200), "health with the budget full");
    for n in full..full + BEYOND {
        let mut s = start_upload(to, n).await;
        let head = answer(&mut s, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("upload {n} beyond the budget got no answer"))
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 503"), "{head}");
        assert!(head.contains("retry-after: 1"), "{head}");
        assert_eq!(held().await, BUDGET, "never more than the budget");
        assert_eq!(c.health(0).await, Some(200), "health during upload {n}");
    }
    let text = c.metrics(0).await;
    assert_eq!(
        metric(
            &text,
            "quorumgate_http_rejected_total",
            "listener=\"full\",reason=\"body_budget\""
        ),
        BEYOND as f64
    );
    assert_eq!(c.health(0).await, Some(200));
    // Closed uploads give their bytes back: a new one fits again.
    drop(uploads);
    c.wait_until(Duration::from_secs(20), "budget released", || async {
        held().await == 0
    })
    .await;
}
