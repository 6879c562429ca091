//! Probes: look at a target once and say what was seen. Failure is data, never an `Err`.
//!
//! # Reasons
//! Every [`ProbeOutcome`] carries one low-cardinality reason code (a metric label):
//!
//! | reason | meaning |
//! |---|---|
//! | `ok` | healthy |
//! | `timeout` | the probe's deadline passed (any phase: resolve, connect, TLS, request, body, DNS query) |
//! | `dns` | the target's host name did not resolve, or a DNS query failed otherwise |
//! | `connect_refused` | the TCP connection (or DNS-over-TCP) was refused |
//! | `connect` | another connect error (unreachable, reset, …) |
//! | `tls` | TLS handshake or certificate verification failed, or the CA file is unusable |
//! | `http` | HTTP protocol error (malformed response, connection closed early) |
//! | `status` | unexpected HTTP status; detail `status=503` |
//! | `body` | the body (first `max_body_bytes`) lacks the expected substring |
//! | `slow` | answered correctly but slower than the latency threshold |
//! | `dns_nxdomain` | the name does not exist |
//! | `dns_servfail` | the nameserver answered SERVFAIL |
//! | `dns_refused` | the nameserver answered REFUSED |
//! | `dns_empty` | the name exists but has no record of the asked type |
//! | `dns_mismatch` | the answer set differs from the expected one; detail shows both |
//! | `error` | the probe could not be run as configured (e.g. an invalid header, an unreadable password file) |
//! | `local_resource` | this agent ran out of descriptors, socket buffers, memory or ephemeral ports ([`crate::local_resource`]): voted as an abstention, never as Unhealthy |
//!
//! Database probes (`postgres`, `mysql`, `replication_lag`) add `auth`, `read_only`,
//! `lock_timeout`, `disk_full`, `no_table`, `no_heartbeat` and `lag`; see [`db`].
//!
//! The `rds` probe (the RDS API's view of a DB instance or cluster) adds `status` (detail
//! `status=modifying`), `no_writer`, `writer_changed`, `not_multi_az`, `not_found`, `auth` and
//! `throttled`; see [`rds`].
//!
//! # Layout
//! - [`http`], [`tcp`], [`dns`]: one module per kind, each a plain async function.
//! - [`postgres`], [`mysql`]: database write path and replication lag; [`db`] what they share.
//! - [`rds`]: an RDS instance or cluster through aws-sdk-rds (status, writer, Multi-AZ).
//! - [`Prober`]: the shared state they need (agent identity, region, clock, TLS config cache,
//!   DNS resolvers, one dedicated connection per database probe, RDS clients and the
//!   remembered cluster writers).

pub mod db;
pub mod dns;
pub mod http;
pub mod mysql;
pub mod postgres;
pub mod rds;
pub mod tcp;
#[cfg(test)]
mod test_support;

use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderValue;
use config::probe::ProbeSpec;
use quorum::{AgentId, Reason};

use crate::clock::{SharedClock, SystemClock};
use crate::tls::ClientConfigCache;

/// Longest detail kept, in bytes (matches `quorum::observation::MAX_DETAIL_LEN`).
pub const MAX_DETAIL_LEN: usize = 256;

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub healthy: bool,
    pub reason: Reason,
    pub latency: Duration,
    /// Short human-readable detail, at most [`MAX_DETAIL_LEN`] bytes.
    pub detail: String,
    /// Measured replication lag (`replication_lag` probes only), carried into the ballot.
    pub lag_ms: Option<u64>,
}

impl ProbeOutcome {
    #[must_use]
    pub fn healthy(latency: Duration, detail: impl Into<String>) -> Self {
        Self::new(true, "ok", latency, detail)
    }

    #[must_use]
    pub fn unhealthy(reason: &'static str, latency: Duration, detail: impl Into<String>) -> Self {
        Self::new(false, reason, latency, detail)
    }

    fn new(
        healthy: bool,
        reason: &'static str,
        latency: Duration,
        detail: impl Into<String>,
    ) -> Self {
        let mut detail = detail.into();
        truncate_at_char(&mut detail, MAX_DETAIL_LEN);
        Self {
            healthy,
            reason: Reason::from_static(reason),
            latency,
            detail,
            lag_ms: None,
        }
    }

    /// Sets the measured replication lag.
    #[must_use]
    pub fn with_lag_ms(mut self, lag_ms: u64) -> Self {
        self.lag_ms = Some(lag_ms);
        self
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Runs probes. Shared by every probe of an agent (wrap it in an `Arc`).
#[derive(Debug)]
pub struct Prober {
    agent_id: AgentId,
    user_agent: HeaderValue,
    agent_header: HeaderValue,
    tls: ClientConfigCache,
    resolvers: dns::ResolverCache,
    /// This agent's region, written into database heartbeat rows.
    region: String,
    clock: SharedClock,
    db: db::DbState,
    rds: rds::RdsState,
}

impl Prober {
    #[must_use]
    pub fn new(agent_id: AgentId) -> Self {
        // An AgentId is `[A-Za-z0-9._-]{1,64}` and the version is ASCII: both are valid header
        // values, so these conversions cannot fail; fall back to a constant rather than panic.
        let user_agent = HeaderValue::try_from(format!(
            "quorumgate/{} (agent {agent_id})",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("quorumgate"));
        let agent_header = HeaderValue::try_from(agent_id.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Self {
            agent_id,
            user_agent,
            agent_header,
            tls: ClientConfigCache::new(),
            resolvers: dns::ResolverCache::default(),
            region: String::new(),
            clock: Arc::new(SystemClock::default()),
            db: db::DbState::default(),
            rds: rds::RdsState::default(),
        }
    }

    /// The region written into database heartbeat rows (default: empty).
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// The wall clock for heartbeat timestamps and replication lag (default: the system clock).
    /// The agent passes its own, so a skewed test clock skews these too.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Static AWS credentials for the `rds` probes (tests, the emulator). Default: the standard
    /// AWS credentials chain (environment, profile, web identity, ECS/EC2 roles).
    #[must_use]
    pub fn with_aws_credentials(mut self, credentials: crate::route53::StaticCredentials) -> Self {
        self.rds.credentials = Some(credentials);
        self
    }

    /// The cluster writers the `rds` probes remember (see [`rds`]).
    #[must_use]
    pub fn rds_writers(&self) -> &rds::Writers {
        &self.rds.writers
    }

    #[must_use]
    pub fn agent_id(&self) -> &AgentId {
        &self.agent_id
    }

    /// The TLS client configs shared by this prober's probes (peer exchange may share it too).
    #[must_use]
    pub fn tls_cache(&self) -> &ClientConfigCache {
        &self.tls
    }

    /// Probes `spec` once, within `timeout`.
    pub async fn probe(&self, spec: &ProbeSpec, timeout: Duration) -> ProbeOutcome {
        match spec {
            ProbeSpec::Http(p) => http::probe(self, p, timeout).await,
            ProbeSpec::Tcp(p) => tcp::probe(self, p, timeout).await,
            ProbeSpec::Dns(p) => dns::probe(self, p, timeout).await,
            ProbeSpec::Postgres(p) => postgres::write(self, p, timeout).await,
            ProbeSpec::Mysql(p) => mysql::write(self, p, timeout).await,
            ProbeSpec::ReplicationLag(p) => match p.engine {
                config::probe::DbEngine::Postgres => postgres::lag(self, p, timeout).await,
                config::probe::DbEngine::Mysql => mysql::lag(self, p, timeout).await,
            },
            ProbeSpec::Rds(p) => rds::probe(self, p, timeout).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_truncated_at_a_char_boundary() {
        let o = ProbeOutcome::unhealthy("body", Duration::ZERO, "é".repeat(200));
        assert!(o.detail.len() <= MAX_DETAIL_LEN);
        assert_eq!(o.detail.chars().count(), MAX_DETAIL_LEN / 2);
    }

    #[test]
    fn prober_headers_name_the_agent() {
        let p = Prober::new(AgentId::new("use1-a").expect("id"));
        assert_eq!(p.agent_header, "use1-a");
        let ua = p.user_agent.to_str().expect("ascii");
        assert!(
            ua.starts_with("quorumgate/") && ua.ends_with("(agent use1-a)"),
            "{ua}"
        );
    }
}
