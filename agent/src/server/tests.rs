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
