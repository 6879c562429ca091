//! One health checker's poll, as the docs describe it: a TCP connection within 4 s (10 s for
//! TCP checks), then a 2xx/3xx status within 2 s, then (string matching) the search string in
//! the first 5,120 bytes of a body read within 2 more seconds, all scaled by the time scale and
//! floored at [`rules::MIN_TIMEOUT`]. HTTP/1.1 with hyper on a TCP stream bound to the
//! checker's source address; HTTPS through tokio-rustls (aws-lc-rs) without certificate
//! validation, with SNI only when EnableSNI is set (and retried without it when the
//! certificate does not name the FQDN).

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
    let stream = match open(source, target, connect_timeout).await {
        Ok(s) => s,
        Err(e) => return PollOutcome::fail(start, None, e),
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
    if !check.kind.is_https() {
        let deadline = Instant::now() + response_timeout;
        return http(check, stream, start, deadline, response_timeout).await;
    }
    let no_sni = ServerName::IpAddress(ip.into());
    let sni = check
        .fqdn
        .as_deref()
        .filter(|_| check.enable_sni)
        .and_then(|f| ServerName::try_from(f.to_owned()).ok());
    let mut deadline = Instant::now() + response_timeout;
    let tls = match sni {
        None => handshake(&config.tls_no_sni, no_sni, stream, deadline).await,
        Some(name) => match handshake(&config.tls_sni, name.clone(), stream, deadline).await {
            Ok(tls) if certificate_names(&tls, &name) => Ok(tls),
            // "If the endpoint responds to the client_hello message with a certificate that
            // does not include the domain name that you specified in FullyQualifiedDomainName,
            // a health checker will retry the handshake. In the second attempt, the health
            // checker will omit FullyQualifiedDomainName from the client_hello message."
            Ok(_) => match open(source, target, connect_timeout).await {
                Err(e) => Err(e),
                Ok(stream) => {
                    deadline = Instant::now() + response_timeout;
                    handshake(&config.tls_no_sni, no_sni, stream, deadline).await
                }
            },
            Err(e) => Err(e),
        },
    };
    match tls {
        Err(e) => PollOutcome::fail(start, None, e),
        Ok(tls) => http(check, tls, start, deadline, response_timeout).await,
    }
}

/// A TCP connection to `target` from `source` within `limit`, or why not.
async fn open(source: IpAddr, target: SocketAddr, limit: Duration) -> Result<TcpStream, String> {
    match timeout(limit, connect(source, target)).await {
        Err(_) => Err(format!("no TCP connection to {target} within {limit:?}")),
        Ok(Err(e)) => Err(format!("connect {target}: {e:#}")),
        Ok(Ok(s)) => Ok(s),
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn handshake(
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    stream: TcpStream,
    deadline: Instant,
) -> Result<Tls, String> {
    let connect = TlsConnector::from(Arc::clone(config)).connect(name, stream);
    match tokio::time::timeout_at(deadline, connect).await {
        Err(_) => Err("no TLS handshake in time".to_owned()),
        Ok(Err(e)) => Err(format!("TLS: {e}")),
        Ok(Ok(tls)) => Ok(tls),
    }
}

/// Whether the endpoint's certificate names `name`.
fn certificate_names(tls: &Tls, name: &ServerName<'_>) -> bool {
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(<[_]>::first) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(cert)
        .is_ok_and(|parsed| rustls::client::verify_server_name(&parsed, name).is_ok())
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
