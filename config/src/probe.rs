//! Validated probe specifications. Built only by the validator; the agent's probes consume them.

use std::net::SocketAddr;
use std::path::PathBuf;

use url::Url;

mod db;
mod rds;

pub use db::{
    DbConnection, DbEngine, DbWriteProbe, PasswordSource, ReplicationLagProbe, Secret, SslMode,
    DEFAULT_HEARTBEAT_TABLE,
};
pub use rds::{RdsProbe, RdsTarget};

/// What to probe and how to judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeSpec {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Dns(DnsProbe),
    /// PostgreSQL write path.
    Postgres(DbWriteProbe),
    /// MySQL / MariaDB write path.
    Mysql(DbWriteProbe),
    /// Replication lag of a standby/replica (either engine).
    ReplicationLag(ReplicationLagProbe),
    /// An RDS DB instance or DB cluster, through the RDS API.
    Rds(RdsProbe),
}

impl ProbeSpec {
    /// `http`, `tcp`, `dns`, `postgres`, `mysql`, `replication_lag` or `rds`: a metric label.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Dns(_) => "dns",
            ProbeSpec::Postgres(_) => "postgres",
            ProbeSpec::Mysql(_) => "mysql",
            ProbeSpec::ReplicationLag(_) => "replication_lag",
            ProbeSpec::Rds(_) => "rds",
        }
    }
}

/// How a TLS peer is verified.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TlsVerify {
    /// PEM bundle of trusted CAs. `None`: the platform's roots plus the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Name to verify and send as SNI instead of the URL's host.
    pub server_name: Option<String>,
}

/// `http`/`https` request; never follows redirects (a 3xx is judged like any other status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    pub url: Url,
    /// Upper-case method token (`GET`, `HEAD`, `POST`, …).
    pub method: String,
    /// Statuses that count as healthy, in 100..=599, sorted and unique. Never empty (default `[200]`).
    pub expect_status: Vec<u16>,
    /// A substring the body must contain.
    pub body_contains: Option<String>,
    /// Extra request headers: names lower-cased, sorted by name, unique. Never `host`,
    /// `content-length`, `transfer-encoding` or `connection`; values are valid header values.
    pub headers: Vec<(String, String)>,
    /// Overrides the `Host` header (and the TLS name unless `tls.server_name` is set).
    pub host: Option<String>,
    pub tls: TlsVerify,
    /// Slower than this counts as unhealthy with reason `slow`.
    pub latency_threshold_ms: Option<u64>,
    /// At most this many body bytes are read (for `body_contains`).
    pub max_body_bytes: usize,
}

/// TCP connect, optionally followed by a TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpProbe {
    /// `host:port`; a host name is resolved by the system resolver at probe time.
    pub address: String,
    /// `Some`: complete a TLS handshake after connecting.
    pub tls: Option<TlsVerify>,
}

/// DNS record types the dns probe can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
    Ns,
}

/// DNS transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

/// Query `name` of `record_type` at `nameserver`; healthy when the answer set matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsProbe {
    pub name: String,
    pub record_type: DnsRecordType,
    pub nameserver: SocketAddr,
    pub transport: DnsTransport,
    /// Expected answers in presentation form (`192.0.2.1`, `"v=txt"`, `mail.example.com.`),
    /// sorted and unique; A/AAAA answers are valid addresses in canonical form (`2001:db8::1`).
    /// Empty: any non-empty answer is healthy. Otherwise the answer set must equal this set.
    pub expect: Vec<String>,
}
