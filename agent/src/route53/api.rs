//! The port: what the control plane needs from Route 53, as a trait, so the fenced writer and
//! `provision` run against the real SDK ([`super::SdkRoute53`]) or an in-memory fake
//! ([`super::MemoryRoute53`]) where the emulator fakes things (GetChange, health-check versions).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use super::types::{
    Change, ChangeInfo, HealthCheck, HealthCheckSpec, RecordSet, TagResource, TagsById,
};

/// A boxed, `Send` future: keeps [`Route53Api`] usable as `Arc<dyn Route53Api>`.
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Route 53 as the control plane uses it. Implementations retry transient failures
/// themselves; an `Err` is final for that call.
pub trait Route53Api: Send + Sync + Debug {
    /// Every record set of the zone (`name: None`) or every record set with exactly that name,
    /// in Route 53's order, following pagination to the end (bounded).
    fn list_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        name: Option<&'a str>,
    ) -> ApiFuture<'a, Vec<RecordSet>>;

    /// One ChangeResourceRecordSets batch, applied by Route 53 all or nothing.
    fn change_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        changes: &'a [Change],
        comment: &'a str,
    ) -> ApiFuture<'a, ChangeInfo>;

    /// GetChange: PENDING until the change has reached every Route 53 name server.
    fn get_change<'a>(&'a self, change_id: &'a str) -> ApiFuture<'a, ChangeInfo>;

    /// CreateHealthCheck; `caller_reference` makes the call idempotent.
    fn create_health_check<'a>(
        &'a self,
        caller_reference: &'a str,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck>;

    /// Every health check of the account (bounded pagination).
    fn list_health_checks(&self) -> ApiFuture<'_, Vec<HealthCheck>>;

    /// UpdateHealthCheck of the mutable fields; with `version`, Route 53 refuses the update if
    /// the check changed since (`HealthCheckVersionMismatch`).
    fn update_health_check<'a>(
        &'a self,
        id: &'a str,
        version: Option<i64>,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck>;

    fn delete_health_check<'a>(&'a self, id: &'a str) -> ApiFuture<'a, ()>;

    /// Tags of each resource (ids of one kind; batched ≤ 10 per request by the adapter).
    fn list_tags<'a>(&'a self, resource: TagResource, ids: &'a [String])
        -> ApiFuture<'a, TagsById>;

    fn change_tags<'a>(
        &'a self,
        resource: TagResource,
        id: &'a str,
        add: &'a BTreeMap<String, String>,
        remove: &'a [String],
    ) -> ApiFuture<'a, ()>;
}

/// Why a Route 53 call failed, after the adapter's retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The batch did not match the current records (a stale DELETE, a CREATE over an existing
    /// record, …). Nothing of it was applied. This is how a fenced writer loses a race.
    #[error("change batch rejected (InvalidChangeBatch): {}", messages.join("; "))]
    InvalidChangeBatch { messages: Vec<String> },
    /// NoSuchHostedZone, NoSuchHealthCheck, NoSuchChange.
    #[error("{op}: {code}: {message}")]
    NotFound {
        op: &'static str,
        code: String,
        message: String,
    },
    /// Any other error Route 53 answered that retrying cannot fix (access denied, invalid input,
    /// a health-check version mismatch, …).
    #[error("{op}: rejected by Route 53: {code}: {message}")]
    Rejected {
        op: &'static str,
        code: String,
        message: String,
    },
    /// Throttling, PriorRequestNotComplete, 5xx, timeouts or connection failures until the
    /// retry budget (attempts or deadline) ran out. A write may or may not have been applied:
    /// re-read before deciding anything.
    #[error(
        "{op}: Route 53 unavailable after {attempts} attempts in {elapsed_ms} ms; last: {last}"
    )]
    Unavailable {
        op: &'static str,
        attempts: u32,
        elapsed_ms: u64,
        last: String,
    },
    /// The request could not be built or the response not understood.
    #[error("{op}: {detail}")]
    Malformed { op: &'static str, detail: String },
}

impl ApiError {
    /// The low-cardinality label used in logs and the `result` label of metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidChangeBatch { .. } => "invalid_change_batch",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::Malformed { .. } => "malformed",
        }
    }
}
