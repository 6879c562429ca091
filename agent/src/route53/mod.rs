//! The Route 53 control plane: the API port, its SDK adapter, and the fenced writer.
//!
//! # Layout
//! - [`types`]: record sets, changes, health checks — normalised, SDK-independent.
//! - [`api`]: the [`Route53Api`] trait (the port) and [`ApiError`].
//! - [`sdk`]: [`SdkRoute53`], the port on aws-sdk-route53: explicit timeouts, the shared
//!   [`RateLimiter`], retries with backoff and jitter, request metrics.
//! - [`limiter`]: the token bucket and the retry schedule.
//! - [`fence`], [`desired`], [`writer`]: the fence record, a gate's [`DesiredRecords`], and the
//!   [`FencedWriter`] that moves the zone to them in one compare-and-swap batch.
//! - `fake` (unit tests only): `MemoryRoute53`, a strict in-memory Route 53.
//!
//! Architecture Invariant: every record write of a control-plane gate goes through
//! [`FencedWriter`].

pub mod api;
mod convert;
pub mod desired;
#[cfg(test)]
pub mod fake;
pub mod fence;
pub mod limiter;
pub mod sdk;
pub mod types;
pub mod writer;

#[cfg(test)]
mod tests;

pub use api::{ApiError, ApiFuture, Route53Api};
pub use desired::{DesiredError, DesiredRecords};
#[cfg(test)]
pub use fake::MemoryRoute53;
pub use fence::{fence_name, Fence, FenceError};
pub use limiter::{Jitter, RateLimiter, RetryPolicy};
pub use sdk::{SdkOptions, SdkRoute53, StaticCredentials, REQUESTS_TOTAL};
pub use types::{
    Change, ChangeAction, ChangeInfo, ChangeStatus, FailoverRole, HealthCheck, HealthCheckKind,
    HealthCheckSpec, RecordKey, RecordSet, RecordTarget, Routing, TagResource, TagsById,
};
pub use writer::{
    plan_from_view, ApplyOutcome, FencedWriter, GateTarget, Plan, PlannedWrite, Sent, View,
    WriteError, WriterOptions,
};

/// Describes this module's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Route 53 API attempts, by operation and result (ok, throttling, \
         prior_request_not_complete, server_error, timeout, io, invalid_change_batch, …)"
    );
}
