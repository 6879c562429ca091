//! The database side of a failover (`[gates.promote]`, off by default): promote an RDS read
//! replica (`PromoteReadReplica`) or fail an Aurora cluster over (`FailoverDBCluster`).
//!
//! Only the agent whose fenced record batch won runs it (exactly one per epoch), after an
//! audit record, and each action first checks whether it is already done (the instance is no
//! read replica any more, the target already is the writer), so it never happens twice.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_rds::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use config::{PromoteAction, PromoteConfig};

use crate::probe::rds::sdk::{RdsOptions, SdkRds};
use crate::probe::rds::{RdsApi, RdsFailure};
use crate::route53::{ApiError, ApiFuture};

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteOutcome {
    /// The API accepted the request (RDS carries it out in the background).
    Started,
    /// Nothing to do, and why (e.g. "db-replica is not a read replica").
    AlreadyDone(String),
}

/// The RDS calls a promotion needs (a port, so the "already done" paths that the emulator
/// fakes can be tested with [`MemoryPromoter`]).
pub trait Promoter: Send + Sync + Debug {
    fn promote<'a>(&'a self, action: &'a PromoteAction) -> ApiFuture<'a, PromoteOutcome>;
}

/// A short label of the action for logs, status and the audit log.
#[must_use]
pub fn describe(action: &PromoteAction) -> String {
    match action {
        PromoteAction::RdsReadReplica { instance } => format!("PromoteReadReplica {instance}"),
        PromoteAction::AuroraFailover {
            cluster,
            target_instance: Some(t),
        } => format!("FailoverDBCluster {cluster} to {t}"),
        PromoteAction::AuroraFailover {
            cluster,
            target_instance: None,
        } => format!("FailoverDBCluster {cluster}"),
    }
}

/// [`Promoter`] on the `rds` probe's client ([`SdkRds`]: explicit timeouts, region and
/// credentials from the standard chain, endpoint override); the describe calls are the probe's.
#[derive(Debug, Clone)]
pub struct SdkPromoter {
    rds: SdkRds,
}

impl SdkPromoter {
    /// A client for `cfg`; fails when no region is configured anywhere.
    pub async fn load(cfg: &PromoteConfig, timeout: Duration) -> Result<Self, RdsFailure> {
        let rds = SdkRds::load(RdsOptions {
            region: cfg.region.clone(),
            endpoint_url: cfg
                .endpoint_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_owned()),
            timeout,
            static_credentials: None,
        })
        .await?;
        Ok(Self { rds })
    }

    async fn read_replica(&self, instance: &str) -> Result<PromoteOutcome, ApiError> {
        let view = self
            .rds
            .describe_instance(instance)
            .await
            .map_err(|f| failure("DescribeDBInstances", &f))?;
        if view.replica_of.is_none() {
            return Ok(PromoteOutcome::AlreadyDone(format!(
                "{instance} is not a read replica"
            )));
        }
        self.rds
            .client()
            .promote_read_replica()
            .db_instance_identifier(instance)
            .send()
            .await
            .map_err(|e| api_error("PromoteReadReplica", e))?;
        Ok(PromoteOutcome::Started)
    }

    async fn aurora(
        &self,
        cluster: &str,
        target: Option<&str>,
    ) -> Result<PromoteOutcome, ApiError> {
        let view = self
            .rds
            .describe_cluster(cluster)
            .await
            .map_err(|f| failure("DescribeDBClusters", &f))?;
        if let (Some(t), Some(w)) = (target, view.writer()) {
            if t.eq_ignore_ascii_case(w) {
                return Ok(PromoteOutcome::AlreadyDone(format!(
                    "{t} already is the writer of {cluster}"
                )));
            }
        }
        self.rds
            .client()
            .failover_db_cluster()
            .db_cluster_identifier(cluster)
            .set_target_db_instance_identifier(target.map(str::to_owned))
            .send()
            .await
            .map_err(|e| api_error("FailoverDBCluster", e))?;
        Ok(PromoteOutcome::Started)
    }
}

impl Promoter for SdkPromoter {
    fn promote<'a>(&'a self, action: &'a PromoteAction) -> ApiFuture<'a, PromoteOutcome> {
        Box::pin(async move {
            match action {
                PromoteAction::RdsReadReplica { instance } => self.read_replica(instance).await,
                PromoteAction::AuroraFailover {
                    cluster,
                    target_instance,
                } => self.aurora(cluster, target_instance.as_deref()).await,
            }
        })
    }
}

fn failure(op: &'static str, f: &RdsFailure) -> ApiError {
    match f.reason {
        "not_found" => ApiError::NotFound {
            op,
            code: "NotFound".into(),
            message: f.detail.clone(),
        },
        "timeout" | "connect" | "throttled" => ApiError::Unavailable {
            op,
            attempts: 1,
            elapsed_ms: 0,
            last: f.detail.clone(),
        },
        reason => ApiError::Rejected {
            op,
            code: reason.to_owned(),
            message: f.detail.clone(),
        },
    }
}

fn api_error<E>(op: &'static str, err: SdkError<E>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("Unknown").to_owned();
            let message = s.err().message().unwrap_or_default().to_owned();
            if code.contains("NotFound") {
                ApiError::NotFound { op, code, message }
            } else {
                ApiError::Rejected { op, code, message }
            }
        }
        _ => ApiError::Unavailable {
            op,
            attempts: 3,
            elapsed_ms: 0,
            last: DisplayErrorContext(&err).to_string(),
        },
    }
}

/// An in-memory RDS for tests: instances that are read replicas or not, cluster writers, and
/// a count of the calls that change something.
#[derive(Debug, Default)]
pub struct MemoryPromoter {
    state: std::sync::Mutex<MemoryRds>,
}

#[derive(Debug, Default)]
struct MemoryRds {
    replicas: std::collections::BTreeSet<String>,
    writers: std::collections::BTreeMap<String, String>,
    calls: usize,
}

impl MemoryPromoter {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn add_replica(&self, instance: &str) {
        self.with(|s| {
            s.replicas.insert(instance.to_owned());
        });
    }

    pub fn set_writer(&self, cluster: &str, instance: &str) {
        self.with(|s| {
            s.writers.insert(cluster.to_owned(), instance.to_owned());
        });
    }

    /// Promote / failover calls that reached "the API".
    #[must_use]
    pub fn calls(&self) -> usize {
        self.with(|s| s.calls)
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryRds) -> T) -> T {
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Promoter for MemoryPromoter {
    fn promote<'a>(&'a self, action: &'a PromoteAction) -> ApiFuture<'a, PromoteOutcome> {
        let outcome = self.with(|s| match action {
            PromoteAction::RdsReadReplica { instance } => {
                if s.replicas.remove(instance) {
                    s.calls += 1;
                    PromoteOutcome::Started
                } else {
                    PromoteOutcome::AlreadyDone(format!("{instance} is not a read replica"))
                }
            }
            PromoteAction::AuroraFailover {
                cluster,
                target_instance,
            } => {
                let target = target_instance.clone().unwrap_or_else(|| "other".into());
                if s.writers.get(cluster) == Some(&target) {
                    PromoteOutcome::AlreadyDone(format!("{target} already is the writer"))
                } else {
                    s.calls += 1;
                    s.writers.insert(cluster.clone(), target);
                    PromoteOutcome::Started
                }
            }
        });
        Box::pin(async move { Ok(outcome) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_promoter_does_each_action_once() {
        let p = MemoryPromoter::new();
        p.add_replica("db-2");
        let action = PromoteAction::RdsReadReplica {
            instance: "db-2".into(),
        };
        assert_eq!(p.promote(&action).await, Ok(PromoteOutcome::Started));
        assert!(matches!(
            p.promote(&action).await,
            Ok(PromoteOutcome::AlreadyDone(_))
        ));
        assert_eq!(p.calls(), 1);

        p.set_writer("aurora", "a-1");
        let failover = PromoteAction::AuroraFailover {
            cluster: "aurora".into(),
            target_instance: Some("a-2".into()),
        };
        assert_eq!(p.promote(&failover).await, Ok(PromoteOutcome::Started));
        assert!(matches!(
            p.promote(&failover).await,
            Ok(PromoteOutcome::AlreadyDone(_))
        ));
        assert_eq!(p.calls(), 2);
        assert_eq!(describe(&failover), "FailoverDBCluster aurora to a-2");
    }
}
