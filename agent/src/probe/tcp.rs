//! The `tcp` probe: connect, and optionally complete a TLS handshake.

use std::time::Duration;

use config::probe::TcpProbe;
use tokio::time::Instant;

use super::{ProbeOutcome, Prober};
use crate::net;

/// Probes `spec` once within `timeout`.
pub async fn probe(prober: &Prober, spec: &TcpProbe, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let deadline = start + timeout;
    let Some((host, port)) = split_host_port(&spec.address) else {
        return ProbeOutcome::unhealthy(
            "error",
            Duration::ZERO,
            format!("address {:?} is not host:port", spec.address),
        );
    };
    let stream = match net::connect(host, port, start, deadline).await {
        Ok(s) => s,
        Err(e) => return ProbeOutcome::unhealthy(e.reason(), start.elapsed(), e.to_string()),
    };
    let Some(tls) = &spec.tls else {
        return ProbeOutcome::healthy(start.elapsed(), "connected");
    };
    let config = match prober.tls.get(tls.ca_file.as_deref(), None) {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::unhealthy("tls", start.elapsed(), e.to_string()),
    };
    let name = tls.server_name.as_deref().unwrap_or(host);
    match net::tls_handshake(stream, name, &config, start, deadline).await {
        Ok(_) => ProbeOutcome::healthy(start.elapsed(), "tls handshake complete"),
        Err(e) => ProbeOutcome::unhealthy(e.reason(), start.elapsed(), e.to_string()),
    }
}

/// `host:port` or `[v6]:port`.
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use config::probe::{ProbeSpec, TlsVerify};
    use quorum::AgentId;

    use super::*;
    use crate::probe::test_support::{closed_port, tcp_server};
    use crate::tls::{generate_dev_pki, server_config};

    const T: Duration = Duration::from_secs(5);

    fn prober() -> Prober {
        Prober::new(AgentId::new("agent-a").expect("id"))
    }

    fn spec(address: String, tls: Option<TlsVerify>) -> ProbeSpec {
        ProbeSpec::Tcp(TcpProbe { address, tls })
    }

    #[test]
    fn splits_addresses() {
        assert_eq!(split_host_port("127.0.0.1:80"), Some(("127.0.0.1", 80)));
        assert_eq!(split_host_port("[::1]:443"), Some(("[::1]", 443)));
        assert_eq!(
            split_host_port("db.internal:5432"),
            Some(("db.internal", 5432))
        );
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("host"), None);
        assert_eq!(split_host_port("host:http"), None);
    }

    #[tokio::test]
    async fn open_port_is_healthy_and_closed_port_is_refused() {
        let open = tcp_server(None).await;
        let o = prober().probe(&spec(open.to_string(), None), T).await;
        assert!(o.healthy, "{o:?}");
        let closed = closed_port().await;
        let o = prober().probe(&spec(closed.to_string(), None), T).await;
        assert_eq!(o.reason.as_str(), "connect_refused", "{o:?}");
    }

    #[tokio::test]
    async fn tls_handshake_succeeds_with_the_right_ca_and_fails_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = generate_dev_pki(&dir.path().join("good"), &["db"]).expect("pki");
        let other = generate_dev_pki(&dir.path().join("other"), &["x"]).expect("pki");
        let (_, cert, key) = &pki.certs[0];
        let addr = tcp_server(Some(server_config(cert, key, None).expect("server"))).await;
        let p = prober();

        let good = TlsVerify {
            ca_file: Some(pki.ca_file.clone()),
            server_name: None,
        };
        let o = p
            .probe(&spec(addr.to_string(), Some(good.clone())), T)
            .await;
        assert!(o.healthy, "{o:?}");
        let named = TlsVerify {
            server_name: Some("db".into()),
            ..good
        };
        assert!(
            p.probe(&spec(addr.to_string(), Some(named)), T)
                .await
                .healthy
        );

        let bad = TlsVerify {
            ca_file: Some(other.ca_file.clone()),
            server_name: None,
        };
        let o = p.probe(&spec(addr.to_string(), Some(bad)), T).await;
        assert_eq!(o.reason.as_str(), "tls", "{o:?}");

        // A plain TCP server that never speaks TLS: the handshake times out.
        let plain = tcp_server(None).await;
        let o = p
            .probe(
                &spec(
                    plain.to_string(),
                    Some(TlsVerify {
                        ca_file: Some(pki.ca_file.clone()),
                        server_name: None,
                    }),
                ),
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(o.reason.as_str(), "timeout", "{o:?}");
        assert!(o.detail.contains("tls"), "{o:?}");
    }
}
