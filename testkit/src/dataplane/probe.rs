//! One health checker's poll, as the docs describe it: a TCP connection within 4 s (10 s for
//! TCP checks), then a 2xx/3xx status within 2 s, then (string matching) the search string in
//! the first 5,120 bytes of a body read within 2 more seconds, all scaled by the time scale and
//! floored at [`rules::MIN_TIMEOUT`]. HTTP/1.1 with hyper on a TCP stream bound to the
//! checker's source address; HTTPS through tokio-rustls (aws-lc-rs) without certificate
//! validation, with SNI only when EnableSNI is set.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsConnector;

use super::model::{HealthCheck, HealthCheckKind};
use super::rules;

/// What the User-Agent header says (Route 53's checkers send `Amazon-Route53-Health-Check-Service`).
pub const USER_AGENT: &str = "Amazon-Route53-Health-Check-Service (quorumgate-testkit emulator)";

/// Resolves a check's FQDN to the address its checkers connect to.
pub type Resolve = Arc<dyn Fn(&str) -> Option<IpAddr> + Send + Sync>;

/// What every poll needs: the time scale, FQDN resolution, the two TLS configurations.
#[derive(Clone)]
pub struct Prober {
    pub time_scale: f64,
    pub resolve: Resolve,
    tls_sni: Arc<ClientConfig>,
    tls_no_sni: Arc<ClientConfig>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("time_scale", &self.time_scale)
            .finish_non_exhaustive()
    }
}

impl Prober {
    pub fn new(time_scale: f64, resolve: Resolve) -> anyhow::Result<Self> {
        Ok(Self {
            time_scale,
            resolve,
            tls_sni: Arc::new(tls_config(true)?),
            tls_no_sni: Arc::new(tls_config(false)?),
        })
    }
}

/// The result of one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PollOutcome {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
}

impl PollOutcome {
    fn fail(start: Instant, status: Option<u16>, error: String) -> Self {
        Self {
            ok: false,
            status,
            latency: start.elapsed(),
            error: Some(error),
        }
    }
}

/// One poll of `check` from `source`, as one Route 53 checker makes it.
pub async fn poll(check: &HealthCheck, config: &Prober, source: IpAddr) -> PollOutcome {
    let start = Instant::now();
    let ip = match (check.ip_address, check.fqdn.as_deref()) {
        (Some(ip), _) => ip,
        (None, Some(fqdn)) => match (config.resolve)(fqdn) {
            Some(ip) => ip,
            None => return PollOutcome::fail(start, None, format!("cannot resolve {fqdn}")),
        },
        (None, None) => {
            return PollOutcome::fail(start, None, "no IPAddress or FQDN".to_owned());
        }
    };
    let target = SocketAddr::new(ip, check.effective_port());
    let scale = config.time_scale;
    let connect_limit = if check.kind == HealthCheckKind::Tcp {
        rules::TCP_CONNECT
    } else {
        rules::HTTP_CONNECT
    };
    let connect_timeout = rules::scaled_timeout(connect_limit, scale);
    let stream = match timeout(connect_timeout, connect(source, target)).await {
        Err(_) => {
            return PollOutcome::fail(
                start,
                None,
                format!("no TCP connection to {target} within {connect_timeout:?}"),
            )
        }
        Ok(Err(e)) => return PollOutcome::fail(start, None, format!("connect {target}: {e:#}")),
        Ok(Ok(s)) => s,
    };
    if check.kind == HealthCheckKind::Tcp {
        return PollOutcome {
            ok: true,
            status: None,
            latency: start.elapsed(),
            error: None,
        };
    }
    let response_timeout = rules::scaled_timeout(rules::HTTP_RESPONSE, scale);
    if check.kind.is_https() {
        let (tls, name) = if check.enable_sni {
            let name = check
                .fqdn
                .as_deref()
                .and_then(|f| ServerName::try_from(f.to_owned()).ok())
                .unwrap_or(ServerName::IpAddress(ip.into()));
            (Arc::clone(&config.tls_sni), name)
        } else {
            (
                Arc::clone(&config.tls_no_sni),
                ServerName::IpAddress(ip.into()),
            )
        };
        let handshake = TlsConnector::from(tls).connect(name, stream);
        let deadline = Instant::now() + response_timeout;
        match tokio::time::timeout_at(deadline, handshake).await {
            Err(_) => PollOutcome::fail(
                start,
                None,
                format!("no TLS handshake within {response_timeout:?}"),
            ),
            Ok(Err(e)) => PollOutcome::fail(start, None, format!("TLS: {e}")),
            Ok(Ok(tls)) => http(check, tls, start, deadline, response_timeout).await,
        }
    } else {
        let deadline = Instant::now() + response_timeout;
        http(check, stream, start, deadline, response_timeout).await
    }
}

async fn connect(source: IpAddr, target: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if source.is_ipv4() == target.is_ipv4() {
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("binding source address {source}"))?;
    }
    Ok(socket.connect(target).await?)
}

async fn http<S>(
    check: &HealthCheck,
    io: S,
    start: Instant,
    status_deadline: Instant,
    body_timeout: Duration,
) -> PollOutcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        let conn = tokio::spawn(conn);
        let req = http::Request::get(check.path())
            .header(http::header::HOST, check.host_header())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::CONNECTION, "close")
            .body(Empty::<bytes::Bytes>::new())?;
        let resp = send.send_request(req).await;
        Ok::<_, anyhow::Error>((resp?, conn))
    };
    let (resp, conn) = match tokio::time::timeout_at(status_deadline, exchange).await {
        Err(_) => {
            let waited = status_deadline.saturating_duration_since(start);
            return PollOutcome::fail(start, None, format!("no HTTP status within {waited:?}"));
        }
        Ok(Err(e)) => return PollOutcome::fail(start, None, format!("HTTP: {e:#}")),
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    let outcome = if check.kind.is_str_match() && (200..400).contains(&status) {
        let body_deadline = Instant::now() + body_timeout;
        let mut body = resp.into_body();
        let mut window = Vec::new();
        let read = async {
            while window.len() < rules::SEARCH_WINDOW {
                match body.frame().await {
                    None => break,
                    Some(Err(e)) => return Err(e),
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            window.extend_from_slice(data);
                        }
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout_at(body_deadline, read).await {
            Err(_) => PollOutcome::fail(
                start,
                Some(status),
                format!("no response body within {body_timeout:?} of the status"),
            ),
            Ok(Err(e)) => PollOutcome::fail(start, Some(status), format!("reading the body: {e}")),
            Ok(Ok(())) => {
                let search = check.search_string.as_deref().unwrap_or("");
                if rules::http_success(check.kind, status, &window, search) {
                    PollOutcome {
                        ok: true,
                        status: Some(status),
                        latency: start.elapsed(),
                        error: None,
                    }
                } else {
                    PollOutcome::fail(
                        start,
                        Some(status),
                        format!(
                            "{search:?} not in the first {} bytes of the body",
                            rules::SEARCH_WINDOW
                        ),
                    )
                }
            }
        }
    } else if rules::http_success(check.kind, status, &[], "") {
        PollOutcome {
            ok: true,
            status: Some(status),
            latency: start.elapsed(),
            error: None,
        }
    } else {
        PollOutcome::fail(start, Some(status), format!("HTTP status {status}"))
    };
    conn.abort();
    outcome
}

fn tls_config(sni: bool) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.enable_sni = sni;
    Ok(config)
}

/// "HTTPS health checks don't validate SSL/TLS certificates, so checks don't fail if a
/// certificate is invalid or expired": any certificate is accepted; the handshake's own
/// signatures are still checked (a broken handshake fails).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
