//! The validated `rds` probe: one RDS DB instance or DB cluster, judged by what
//! `DescribeDBInstances` / `DescribeDBClusters` say about it.

use url::Url;

/// What an `rds` probe looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RdsTarget {
    /// `instance = "…"`: a DB instance (`DescribeDBInstances`).
    Instance(String),
    /// `cluster = "…"`: an Aurora or Multi-AZ DB cluster (`DescribeDBClusters`).
    Cluster {
        id: String,
        /// The member that must be the writer. `None`: the first writer this agent sees with
        /// the cluster `available` is remembered, and a different one later is unhealthy.
        expect_writer: Option<String>,
    },
}

impl RdsTarget {
    /// `instance` or `cluster`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            RdsTarget::Instance(_) => "instance",
            RdsTarget::Cluster { .. } => "cluster",
        }
    }

    /// The DB instance or DB cluster identifier.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            RdsTarget::Instance(id) | RdsTarget::Cluster { id, .. } => id,
        }
    }
}

/// `rds`: healthy iff the status is `available`, the cluster's writer is the expected one, and
/// (with `require_multi_az`) Multi-AZ is on. Identifiers are lower-cased (RDS stores them so).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RdsProbe {
    pub target: RdsTarget,
    /// An AWS region code. `None`: the standard region chain (environment, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (an emulator in tests, a VPC endpoint). `None`: the SDK's resolution.
    pub endpoint_url: Option<Url>,
    /// Unhealthy (reason `not_multi_az`) when the instance or cluster is not Multi-AZ.
    pub require_multi_az: bool,
}
