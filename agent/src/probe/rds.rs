//! The `rds` probe: one RDS DB instance or DB cluster, as the RDS API describes it.
//!
//! One `DescribeDBInstances` or `DescribeDBClusters` call per probe, through the [`RdsApi`] port
//! ([`sdk::SdkRds`] on aws-sdk-rds in production, fakes in tests). The answer is judged by the
//! pure [`judge_instance`] / [`judge_cluster`]:
//!
//! | reason | meaning (checked in this order) |
//! |---|---|
//! | `ok` | `available`, the expected writer (cluster), Multi-AZ if required |
//! | `status` | the status is not `available`; detail `status=modifying` |
//! | `no_writer` | cluster: no member is the writer (between instances, or a headless cluster) |
//! | `writer_changed` | cluster: the writer is not `expect_writer`, or not the remembered one |
//! | `not_multi_az` | `require_multi_az` and the instance or cluster is not Multi-AZ |
//! | `not_found` | no such instance (`DBInstanceNotFound`) or cluster (`DBClusterNotFoundFault`) |
//! | `auth` | access denied, bad or expired credentials, or no credentials at all |
//! | `throttled` | the RDS API throttled the call |
//! | `timeout` | no answer within the check's timeout |
//! | `connect` | the RDS API endpoint could not be reached (refused, reset, DNS) |
//! | `error` | anything else (no region configured, a malformed answer, a 5xx) |
//!
//! # The remembered writer
//! Without `expect_writer`, the first writer this process sees with the cluster `available` is
//! remembered (per region, endpoint and cluster) and logged. From then on a different writer is
//! `writer_changed` — a failover happened that nobody declared — until one of:
//! - the old writer is the writer again (failback): healthy again, nothing to forget;
//! - the configuration names the new writer in `expect_writer` (the digest changes, so every
//!   agent is moved together — the way to accept a planned failover);
//! - the agent restarts, and remembers whatever writer it sees first.
//!
//! The memory is deliberately sticky: for a failover system an unexplained writer change is
//! exactly what the quorum should see, and it must not clear itself after a few probes while
//! the operator is still looking. Being per process, agents that restarted at different times
//! may remember different writers; set `expect_writer` wherever the writer is known.
//!
//! # Calls
//! No SDK retries: the next probe is the retry, and `fall_after` absorbs a single failure.
//! Connect, attempt and operation timeouts are the check's timeout (the SDK has none by
//! default), and the whole probe, client set-up included, is bounded by it too. One client per
//! (region, endpoint, timeout), built on first use from the standard AWS chain.

pub mod sdk;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::probe::{RdsProbe, RdsTarget};
use tokio::time::{error::Elapsed, Instant};

use super::{ProbeOutcome, Prober};
use crate::route53::StaticCredentials;

/// A failed call: the reason code and a short detail (never a credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct RdsFailure {
    pub reason: &'static str,
    pub detail: String,
}

impl RdsFailure {
    #[must_use]
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What `DescribeDBInstances` says about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    /// `DBInstanceStatus`: `available`, `modifying`, `stopped`, …
    pub status: String,
    pub multi_az: bool,
    /// `ReadReplicaSourceDBInstanceIdentifier`: set on a read replica.
    pub replica_of: Option<String>,
}

/// What `DescribeDBClusters` says about one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub id: String,
    /// `Status`: `available`, `failing-over`, `modifying`, …
    pub status: String,
    pub multi_az: bool,
    /// `DBClusterMembers`: (instance id, `IsClusterWriter`), in the API's order.
    pub members: Vec<(String, bool)>,
}

impl ClusterView {
    /// The writer member, if any (the first one flagged, should there ever be several).
    #[must_use]
    pub fn writer(&self) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, w)| *w)
            .map(|(id, _)| id.as_str())
    }
}

/// A boxed call of an [`RdsApi`].
pub type RdsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RdsFailure>> + Send + 'a>>;

/// The two RDS calls the probe makes. Ids are lower-case; a missing target is a `not_found`
/// failure, never an empty answer.
pub trait RdsApi: Send + Sync + std::fmt::Debug {
    fn describe_instance<'a>(&'a self, id: &'a str) -> RdsFuture<'a, InstanceView>;
    fn describe_cluster<'a>(&'a self, id: &'a str) -> RdsFuture<'a, ClusterView>;
}

/// The judgement of one answer: health, reason code, detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub healthy: bool,
    pub reason: &'static str,
    pub detail: String,
}

impl Verdict {
    fn ok(detail: String) -> Self {
        Self {
            healthy: true,
            reason: "ok",
            detail,
        }
    }

    fn bad(reason: &'static str, detail: String) -> Self {
        Self {
            healthy: false,
            reason,
            detail,
        }
    }
}

fn az(multi_az: bool) -> &'static str {
    if multi_az {
        "Multi-AZ"
    } else {
        "single-AZ"
    }
}

/// Judges a described instance.
#[must_use]
pub fn judge_instance(spec: &RdsProbe, v: &InstanceView) -> Verdict {
    if v.status != "available" {
        return Verdict::bad("status", format!("status={} (instance {})", v.status, v.id));
    }
    if spec.require_multi_az && !v.multi_az {
        return Verdict::bad(
            "not_multi_az",
            format!("instance {} is available but not Multi-AZ", v.id),
        );
    }
    let replica = v
        .replica_of
        .as_ref()
        .map(|s| format!(", read replica of {s}"))
        .unwrap_or_default();
    Verdict::ok(format!(
        "instance {} available, {}{replica}",
        v.id,
        az(v.multi_az)
    ))
}

/// Judges a described cluster against the configured writer (`expect_writer`) or, without
/// one, the `remembered` writer. Returns the writer to remember when there is none yet and this
/// answer shows one with the cluster available.
#[must_use]
pub fn judge_cluster(
    spec: &RdsProbe,
    v: &ClusterView,
    remembered: Option<&str>,
) -> (Verdict, Option<String>) {
    if v.status != "available" {
        return (
            Verdict::bad("status", format!("status={} (cluster {})", v.status, v.id)),
            None,
        );
    }
    let Some(writer) = v.writer() else {
        let members: Vec<&str> = v.members.iter().map(|(id, _)| id.as_str()).collect();
        let detail = if members.is_empty() {
            format!("cluster {} has no instances", v.id)
        } else {
            format!(
                "cluster {} has no writer (members {})",
                v.id,
                members.join(", ")
            )
        };
        return (Verdict::bad("no_writer", detail), None);
    };
    let expect_writer = match &spec.target {
        RdsTarget::Cluster { expect_writer, .. } => expect_writer.as_deref(),
        RdsTarget::Instance(_) => None,
    };
    let mut learn = None;
    match (expect_writer, remembered) {
        (Some(want), _) if !writer.eq_ignore_ascii_case(want) => {
            return (
                Verdict::bad(
                    "writer_changed",
                    format!("writer is {writer}, expect_writer is {want}"),
                ),
                None,
            );
        }
        (None, Some(was)) if !writer.eq_ignore_ascii_case(was) => {
            return (
                Verdict::bad(
                    "writer_changed",
                    format!(
                        "writer is {writer}, was {was} when this agent first saw cluster {} available",
                        v.id
                    ),
                ),
                None,
            );
        }
        (None, None) => learn = Some(writer.to_owned()),
        _ => {}
    }
    if spec.require_multi_az && !v.multi_az {
        return (
            Verdict::bad(
                "not_multi_az",
                format!("cluster {} is available but not Multi-AZ", v.id),
            ),
            learn,
        );
    }
    (
        Verdict::ok(format!(
            "cluster {} available, writer {writer}, {}",
            v.id,
            az(v.multi_az)
        )),
        learn,
    )
}

/// Which cluster a remembered writer belongs to.
type WriterKey = (Option<String>, Option<String>, String);

/// The writers remembered by this process (see the module docs).
#[derive(Debug, Default)]
pub struct Writers(Mutex<HashMap<WriterKey, String>>);

impl Writers {
    fn key(spec: &RdsProbe) -> WriterKey {
        (
            spec.region.clone(),
            spec.endpoint_url.as_ref().map(|u| u.as_str().to_owned()),
            spec.target.id().to_owned(),
        )
    }

    /// Judges `view` against the remembered writer and remembers a first one.
    fn judge(&self, spec: &RdsProbe, view: &ClusterView) -> Verdict {
        let key = Self::key(spec);
        // Nothing in the map can be left half-updated by a panic; keep using it.
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (verdict, learn) = judge_cluster(spec, view, map.get(&key).map(String::as_str));
        if let Some(writer) = learn {
            tracing::info!(
                cluster = %view.id,
                %writer,
                "rds: remembering the writer; a different writer will be reported as writer_changed"
            );
            map.insert(key, writer);
        }
        verdict
    }

    /// The remembered writer of `spec`'s cluster (status and tests).
    #[must_use]
    pub fn remembered(&self, spec: &RdsProbe) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&Self::key(spec))
            .cloned()
    }
}

/// Client key: region, endpoint, timeout.
type ClientKey = (Option<String>, Option<String>, Duration);

/// The RDS state of a [`Prober`]: clients and remembered writers.
#[derive(Debug, Default)]
pub struct RdsState {
    clients: Mutex<HashMap<ClientKey, Arc<sdk::SdkRds>>>,
    pub(super) writers: Writers,
    /// Tests and the emulator; production uses the standard credentials chain.
    pub(super) credentials: Option<StaticCredentials>,
}

impl RdsState {
    async fn client(
        &self,
        spec: &RdsProbe,
        timeout: Duration,
    ) -> Result<Arc<sdk::SdkRds>, RdsFailure> {
        let endpoint = spec
            .endpoint_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned());
        let key = (spec.region.clone(), endpoint.clone(), timeout);
        let lock = || {
            self.clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(c) = lock().get(&key) {
            return Ok(Arc::clone(c));
        }
        let client = sdk::SdkRds::load(sdk::RdsOptions {
            region: spec.region.clone(),
            endpoint_url: endpoint,
            timeout,
            static_credentials: self.credentials.clone(),
        })
        .await?;
        Ok(Arc::clone(lock().entry(key).or_insert(Arc::new(client))))
    }
}

/// Describes the target once through `api` and judges the answer.
pub async fn observe(
    api: &dyn RdsApi,
    writers: &Writers,
    spec: &RdsProbe,
) -> Result<Verdict, RdsFailure> {
    match &spec.target {
        RdsTarget::Instance(id) => Ok(judge_instance(spec, &api.describe_instance(id).await?)),
        RdsTarget::Cluster { id, .. } => Ok(writers.judge(spec, &api.describe_cluster(id).await?)),
    }
}

/// Turns one bounded run into an outcome.
pub fn finish(
    result: Result<Result<Verdict, RdsFailure>, Elapsed>,
    start: Instant,
    timeout: Duration,
) -> ProbeOutcome {
    let latency = start.elapsed();
    match result {
        Ok(Ok(v)) if v.healthy => ProbeOutcome::healthy(latency, v.detail),
        Ok(Ok(v)) => ProbeOutcome::unhealthy(v.reason, latency, v.detail),
        // The SDK's own timeouts are the check's timeout too: say which, like the outer one.
        Ok(Err(f)) if f.reason == "timeout" => ProbeOutcome::unhealthy(
            "timeout",
            latency,
            format!(
                "no answer from the RDS API within {} ({})",
                humantime::format_duration(timeout),
                f.detail
            ),
        ),
        Ok(Err(f)) => ProbeOutcome::unhealthy(f.reason, latency, f.detail),
        Err(_) => ProbeOutcome::unhealthy(
            "timeout",
            latency,
            format!(
                "no answer from the RDS API within {}",
                humantime::format_duration(timeout)
            ),
        ),
    }
}

/// The `rds` probe: describe, judge, within `timeout` (client set-up included).
pub async fn probe(prober: &Prober, spec: &RdsProbe, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let state = &prober.rds;
    let run = async {
        let api = state.client(spec, timeout).await?;
        observe(api.as_ref(), &state.writers, spec).await
    };
    finish(tokio::time::timeout(timeout, run).await, start, timeout)
}

#[cfg(test)]
mod tests;
