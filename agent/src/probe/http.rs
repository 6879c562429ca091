//! The `http` probe: one request, judged by status, body substring and latency.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use config::probe::HttpProbe;
use http::header::{HeaderName, CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Method};

use super::{ProbeOutcome, Prober};
use crate::net;

/// The header naming the probing agent (the demo app uses it to break one agent's view).
pub const AGENT_HEADER: HeaderName = HeaderName::from_static("x-quorumgate-agent");

/// Probes `spec` once within `timeout`. Checks, in order: the request completes, the status is
/// expected, the body contains the substring, the latency is under the threshold.
pub async fn probe(prober: &Prober, spec: &HttpProbe, timeout: Duration) -> ProbeOutcome {
    let req = match build(prober, spec) {
        Ok(req) => req,
        Err(outcome) => return outcome,
    };
    let start = tokio::time::Instant::now();
    let resp = match net::send(&req, timeout).await {
        Ok(resp) => resp,
        Err(e) => return ProbeOutcome::unhealthy(e.reason(), start.elapsed(), e.to_string()),
    };
    judge(spec, &resp)
}

fn build(prober: &Prober, spec: &HttpProbe) -> Result<net::Request, ProbeOutcome> {
    let error = |detail: String| ProbeOutcome::unhealthy("error", Duration::ZERO, detail);
    let method = Method::from_bytes(spec.method.as_bytes())
        .map_err(|_| error(format!("invalid method {:?}", spec.method)))?;
    let tls = if spec.url.scheme() == "https" {
        let config = prober
            .tls
            .get(spec.tls.ca_file.as_deref(), None)
            .map_err(|e| ProbeOutcome::unhealthy("tls", Duration::ZERO, e.to_string()))?;
        Some(config)
    } else {
        None
    };
    let mut headers = Vec::with_capacity(spec.headers.len() + 2);
    headers.push((USER_AGENT, prober.user_agent.clone()));
    headers.push((AGENT_HEADER, prober.agent_header.clone()));
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| error(format!("invalid header name {name:?}")))?;
        // Ours are always sent exactly once; `host` has its own setting.
        if [USER_AGENT, AGENT_HEADER, HOST, CONNECTION].contains(&name) {
            continue;
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| error(format!("invalid value for header {name}")))?;
        headers.push((name, value));
    }
    Ok(net::Request {
        url: spec.url.clone(),
        method,
        headers,
        host: spec.host.clone(),
        server_name: spec.tls.server_name.clone(),
        body: Bytes::new(),
        tls,
        // Without a substring to look for, the body is not read at all.
        max_body_bytes: if spec.body_contains.is_some() {
            spec.max_body_bytes
        } else {
            0
        },
    })
}

fn judge(spec: &HttpProbe, resp: &net::Response) -> ProbeOutcome {
    let latency = resp.elapsed;
    let status = resp.status.as_u16();
    if !spec.expect_status.contains(&status) {
        return ProbeOutcome::unhealthy("status", latency, format!("status={status}"));
    }
    if let Some(needle) = &spec.body_contains {
        // A body cut at `max_body_bytes` may end mid-character; lossy decoding only copies then.
        let body: Cow<'_, str> = String::from_utf8_lossy(&resp.body);
        if !body.contains(needle.as_str()) {
            return ProbeOutcome::unhealthy(
                "body",
                latency,
                format!(
                    "status={status}, {needle:?} not in the first {} body bytes",
                    resp.body.len()
                ),
            );
        }
    }
    if let Some(threshold_ms) = spec.latency_threshold_ms {
        if latency > Duration::from_millis(threshold_ms) {
            return ProbeOutcome::unhealthy(
                "slow",
                latency,
                format!(
                    "latency={}ms > threshold={threshold_ms}ms",
                    latency.as_millis()
                ),
            );
        }
    }
    ProbeOutcome::healthy(latency, format!("status={status}"))
}

#[cfg(test)]
mod tests {
    use config::probe::TlsVerify;
    use quorum::AgentId;

    use super::*;
    use crate::probe::test_support::{closed_port, serve, Reply};
    use crate::tls::{generate_dev_pki, server_config};

    fn prober() -> Prober {
        Prober::new(AgentId::new("agent-a").expect("id"))
    }

    fn spec(url: &str) -> HttpProbe {
        HttpProbe {
            url: url.parse().expect("url"),
            method: "GET".into(),
            expect_status: vec![200],
            body_contains: None,
            headers: vec![],
            host: None,
            tls: TlsVerify::default(),
            latency_threshold_ms: None,
            max_body_bytes: 4096,
        }
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nall ok!";
    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn healthy_on_200_and_sends_agent_headers() {
        let (addr, mut requests) = serve(Reply::Raw(OK), None).await;
        let mut s = spec(&format!("http://{addr}/healthz?x=1"));
        s.headers = vec![
            ("X-Extra".into(), "yes".into()),
            ("User-Agent".into(), "spoof".into()),
        ];
        s.host = Some("app.example".into());
        let o = prober().probe(&config::probe::ProbeSpec::Http(s), T).await;
        assert!(o.healthy, "{o:?}");
        assert_eq!(o.reason.as_str(), "ok");
        assert_eq!(o.detail, "status=200");
        let head = requests
            .recv()
            .await
            .expect("request seen")
            .to_ascii_lowercase();
        assert!(head.starts_with("get /healthz?x=1 http/1.1\r\n"), "{head}");
        let ua = format!(
            "user-agent: quorumgate/{} (agent agent-a)\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(head.contains(&ua), "{head}");
        assert!(!head.contains("spoof"), "{head}");
        assert!(head.contains("x-quorumgate-agent: agent-a\r\n"), "{head}");
        assert!(head.contains("x-extra: yes\r\n"), "{head}");
        assert!(head.contains("host: app.example\r\n"), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
    }

    #[tokio::test]
    async fn unexpected_status_is_status() {
        let (addr, _r) = serve(
            Reply::Raw("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"),
            None,
        )
        .await;
        let o = probe(&prober(), &spec(&format!("http://{addr}/")), T).await;
        assert!(!o.healthy);
        assert_eq!(
            (o.reason.as_str(), o.detail.as_str()),
            ("status", "status=503")
        );
    }

    #[tokio::test]
    async fn missing_body_substring_is_body() {
        let (addr, _r) = serve(Reply::Raw(OK), None).await;
        let mut s = spec(&format!("http://{addr}/"));
        s.body_contains = Some("ok!".into());
        assert_eq!(probe(&prober(), &s, T).await.reason.as_str(), "ok");
        s.body_contains = Some("database: up".into());
        let o = probe(&prober(), &s, T).await;
        assert_eq!(o.reason.as_str(), "body", "{o:?}");
        // The substring beyond max_body_bytes is not seen.
        s.body_contains = Some("ok!".into());
        s.max_body_bytes = 4;
        assert_eq!(probe(&prober(), &s, T).await.reason.as_str(), "body");
    }

    #[tokio::test]
    async fn server_that_never_answers_is_timeout_within_the_timeout() {
        let (addr, _r) = serve(Reply::Hang, None).await;
        let timeout = Duration::from_millis(300);
        let start = std::time::Instant::now();
        let o = probe(&prober(), &spec(&format!("http://{addr}/")), timeout).await;
        let took = start.elapsed();
        assert_eq!(o.reason.as_str(), "timeout", "{o:?}");
        assert!(o.detail.contains("request"), "{o:?}");
        assert!(took >= timeout && took < timeout * 3, "{took:?}");
    }

    #[tokio::test]
    async fn closed_port_is_connect_refused() {
        let addr = closed_port().await;
        let o = probe(&prober(), &spec(&format!("http://{addr}/")), T).await;
        assert_eq!(o.reason.as_str(), "connect_refused", "{o:?}");
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let (addr, mut requests) = serve(
            Reply::Raw("HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n"),
            None,
        )
        .await;
        let mut s = spec(&format!("http://{addr}/"));
        let o = probe(&prober(), &s, T).await;
        assert_eq!(
            (o.reason.as_str(), o.detail.as_str()),
            ("status", "status=302")
        );
        s.expect_status = vec![302];
        assert!(probe(&prober(), &s, T).await.healthy);
        requests.recv().await.expect("first");
        requests.recv().await.expect("second");
        assert!(requests.try_recv().is_err(), "a redirect was followed");
    }

    #[tokio::test]
    async fn latency_over_threshold_is_slow() {
        let (addr, _r) = serve(Reply::DelayThen(Duration::from_millis(150), OK), None).await;
        let mut s = spec(&format!("http://{addr}/"));
        s.latency_threshold_ms = Some(50);
        let o = probe(&prober(), &s, T).await;
        assert_eq!(o.reason.as_str(), "slow", "{o:?}");
        assert!(o.latency >= Duration::from_millis(150));
        s.latency_threshold_ms = Some(3_000);
        assert!(probe(&prober(), &s, T).await.healthy);
    }

    #[tokio::test]
    async fn https_with_dev_ca_is_healthy_and_with_another_ca_is_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = generate_dev_pki(&dir.path().join("good"), &["target"]).expect("pki");
        let other = generate_dev_pki(&dir.path().join("other"), &["x"]).expect("pki");
        let (_, cert, key) = &pki.certs[0];
        let (addr, _r) = serve(
            Reply::Raw(OK),
            Some(server_config(cert, key, None).expect("server")),
        )
        .await;

        let mut s = spec(&format!("https://{addr}/"));
        s.tls.ca_file = Some(pki.ca_file.clone());
        let o = probe(&prober(), &s, T).await;
        assert!(o.healthy, "{o:?}");

        // SNI/verification name override: the cert is valid for `target` and `localhost` only.
        s.tls.server_name = Some("target".into());
        assert!(probe(&prober(), &s, T).await.healthy);
        s.tls.server_name = Some("not-in-cert.example".into());
        assert_eq!(probe(&prober(), &s, T).await.reason.as_str(), "tls");

        s.tls = TlsVerify {
            ca_file: Some(other.ca_file.clone()),
            server_name: None,
        };
        let o = probe(&prober(), &s, T).await;
        assert_eq!(o.reason.as_str(), "tls", "{o:?}");

        s.tls.ca_file = Some(dir.path().join("missing.pem"));
        let o = probe(&prober(), &s, T).await;
        assert_eq!(o.reason.as_str(), "tls", "{o:?}");
        assert!(o.detail.contains("missing.pem"), "{o:?}");
    }

    #[tokio::test]
    async fn invalid_header_is_error() {
        let mut s = spec("http://127.0.0.1:1/");
        s.headers = vec![("bad header".into(), "x".into())];
        assert_eq!(probe(&prober(), &s, T).await.reason.as_str(), "error");
    }

    #[tokio::test]
    async fn truncated_garbage_is_http() {
        let (addr, _r) = serve(
            Reply::Raw("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort"),
            None,
        )
        .await;
        let mut s = spec(&format!("http://{addr}/"));
        s.body_contains = Some("never".into());
        let o = probe(&prober(), &s, T).await;
        assert_eq!(o.reason.as_str(), "http", "{o:?}");
        let (addr, _r) = serve(Reply::Raw("NOT HTTP AT ALL\r\n\r\n"), None).await;
        assert_eq!(
            probe(&prober(), &spec(&format!("http://{addr}/")), T)
                .await
                .reason
                .as_str(),
            "http"
        );
    }

    #[test]
    fn agent_header_name_is_lowercase() {
        assert_eq!(AGENT_HEADER.as_str(), "x-quorumgate-agent");
    }
}
