//! The data plane in Route 53: `quorumgate plan`, `quorumgate provision` and
//! `quorumgate provision --terraform` (docs/route53.md).
//!
//! For every check a data-plane gate's targets use, one string-match health check per agent
//! on its `/v1/health/{check}` and one CALCULATED check over them with `HealthThreshold` =
//! quorum; the gates' failover or weighted records carry the calculated checks. Failing over
//! then needs no API call: the agents' answers flip the checks. Control-plane gates only get
//! their initial records, and only when the zone has neither their fence nor their records.
//!
//! # Layout
//! - [`identity`]: object identities, ownership tags, deterministic CallerReferences.
//! - [`desired`]: what should exist, a pure function of the shared config.
//! - [`diff`]: the pure difference, per object and field, between what exists and that.
//! - [`plan`](mod@plan): reading Route 53 and planning ([`Plan`]); reads only.
//! - [`apply`](mod@apply): applying a plan in order — health checks, then records (through
//!   each gate's [`crate::route53::FencedWriter`]), then deletes.
//! - [`render`]: the plan and the report as text; [`terraform`]: the objects as HCL.
//! - [`command`]: the CLI glue.
//!
//! Architecture Invariant: `provision` never updates, deletes or re-tags a health check that
//! lacks this cluster's `quorumgate:cluster` tag, and never touches a control-plane gate's
//! records once its fence or records exist.

pub mod apply;
pub mod command;
pub mod desired;
pub mod diff;
pub mod identity;
pub mod plan;
pub mod render;
pub mod terraform;

#[cfg(test)]
mod tests;

pub use apply::{apply, Applied};
pub use desired::{desired, Desired, DesiredCheck, ModelError};
pub use diff::{Action, CheckChange, CheckPlan, FieldDiff, ObservedCheck, RecordDiff};
pub use identity::{ObjectId, Ownership, TAG_CLUSTER, TAG_NAME, TAG_OBJECT};
pub use plan::{plan, GatePlan, GateStatus, Options, Plan, WRITER_ID};

use crate::gates::records::RecordsError;
use crate::route53::{ApiError, WriteError};

/// Why `plan` or `provision` could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("the config cannot be provisioned:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Model(Vec<ModelError>),
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("gate {gate}: its fence moved since the plan (expected epoch {expected}, now {current}); run plan again")]
    Stale {
        gate: String,
        expected: u64,
        current: String,
    },
    #[error("gate {gate}: another writer changed the records first ({messages}); run plan again")]
    LostRace { gate: String, messages: String },
    #[error("{object}: Route 53 refused every CallerReference generation as already used")]
    ReferencesExhausted { object: String },
    #[error("terraform: {0}")]
    Terraform(String),
    #[error("internal error (a bug): {0}")]
    Internal(String),
}
