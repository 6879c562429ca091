//! The fenced writer: the only way the control plane changes records.
//!
//! Every write is one ChangeResourceRecordSets batch holding
//! - DELETE(exact current) + CREATE(desired) for every record of the gate's scope that differs
//!   (never UPSERT: a DELETE that does not match the current record fails the whole batch), and
//! - DELETE(current fence) + CREATE(next fence, epoch + 1) of `_quorumgate.<gate>.<zone>`.
//!
//! Route 53 applies a batch all or nothing, so of several writers that read the same epoch
//! exactly one wins; a writer whose decision was based on an older epoch does not write at all
//! ([`ApplyOutcome::Stale`]), and one that loses the race re-reads and stops if the desired
//! state is already in place ([`ApplyOutcome::AlreadyInPlace`]). Re-applying the desired state
//! costs only the reads.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::api::{ApiError, Route53Api};
use super::desired::DesiredRecords;
use super::fence::{fence_name, validate_writer_id, Fence, FenceError};
use super::types::{Change, ChangeStatus, RecordKey, RecordSet, Routing};

/// Route 53's limits for one change batch.
pub const MAX_BATCH_VALUES: usize = 1_000;
pub const MAX_BATCH_CHARS: usize = 32_000;

/// Where a gate's records live and who writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateTarget {
    /// Hosted zone id, with or without the `/hostedzone/` prefix.
    pub zone_id: String,
    pub zone_name: String,
    /// The gate's name (one DNS label; it names the fence record).
    pub gate: String,
    /// This agent's id (`by=` in the fence).
    pub agent: String,
}

/// Waiting for a change to propagate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// GetChange polling interval.
    pub insync_poll: Duration,
    /// Give up waiting for INSYNC after this long (zero: do not wait). Route 53 says
    /// "generally within 60 s".
    pub insync_timeout: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            insync_poll: Duration::from_secs(2),
            insync_timeout: Duration::from_secs(120),
        }
    }
}

/// What a fenced write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Our batch was accepted; the fence is now at `epoch`.
    Applied {
        epoch: u64,
        change_id: String,
        /// Whether GetChange reported INSYNC within the writer's wait.
        in_sync: bool,
    },
    /// The records already are the desired ones (someone, possibly us, wrote them); nothing
    /// was sent. `epoch` is the current fence's (0: no fence).
    AlreadyInPlace { epoch: u64 },
    /// The fence moved past the epoch the caller's decision was based on; nothing was sent.
    Stale {
        expected_epoch: u64,
        current: Option<Fence>,
    },
    /// Our batch was rejected because another writer changed the fence or the records first,
    /// and the records are not the desired ones.
    LostRace {
        current: Option<Fence>,
        messages: Vec<String>,
    },
}

/// Why the writer could not do its job (as opposed to losing a race, which is an outcome).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("fence record {name}: {source}")]
    BadFence {
        name: String,
        #[source]
        source: FenceError,
    },
    #[error(
        "{key}: a record in the gate's scope uses {routing}, which the writer does not manage"
    )]
    Unmanageable { key: RecordKey, routing: String },
    #[error("change batch too large: {values} values, {chars} characters (Route 53 allows {MAX_BATCH_VALUES} and {MAX_BATCH_CHARS})")]
    BatchTooLarge { values: usize, chars: usize },
    #[error("desired records are for zone {desired}, the writer manages {writer}")]
    ZoneMismatch { desired: String, writer: String },
    #[error("invalid gate target: {0}")]
    Target(#[from] FenceError),
    /// The fence already holds the largest epoch: it cannot advance. Someone planted it or it
    /// is corrupt; nothing is written until a human has looked at it.
    #[error("the fence is at epoch {epoch}, the largest there is, so it cannot advance (planted or corrupt?): check who wrote the gate's _quorumgate TXT record, then rewrite it with a small epoch")]
    FenceExhausted { epoch: u64 },
}

/// The fence and the gate's records as read from Route 53.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub fence: Option<Fence>,
    /// The fence exactly as stored (what a DELETE must repeat).
    pub fence_record: Option<RecordSet>,
    /// Every record of the gate's scope.
    pub records: Vec<RecordSet>,
}

impl View {
    pub fn epoch(&self) -> u64 {
        self.fence.as_ref().map_or(0, |f| f.epoch)
    }
}

/// The result of reading before a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to send ([`ApplyOutcome::AlreadyInPlace`] or [`ApplyOutcome::Stale`]).
    Done(ApplyOutcome),
    Write(PlannedWrite),
}

/// A change batch ready to send: what dry-run mode logs and the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWrite {
    pub expected_epoch: u64,
    pub next: Fence,
    pub changes: Vec<Change>,
    pub desired: DesiredRecords,
}

/// What Route 53 said to one batch (before any interpretation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Accepted; not yet waited for INSYNC.
    Accepted {
        epoch: u64,
        change_id: String,
        in_sync: bool,
    },
    /// Refused (InvalidChangeBatch); `view` is what a read right after found. When it shows
    /// the batch's own fence ([`PlannedWrite::next`]), the batch had landed: a retried
    /// request whose first attempt got through.
    Rejected {
        view: Box<View>,
        messages: Vec<String>,
    },
}

/// Writes one gate's records through its fence.
#[derive(Debug, Clone)]
pub struct FencedWriter {
    api: Arc<dyn Route53Api>,
    target: GateTarget,
    fence_name: String,
    options: WriterOptions,
}

impl FencedWriter {
    pub fn new(
        api: Arc<dyn Route53Api>,
        target: GateTarget,
        options: WriterOptions,
    ) -> Result<Self, WriteError> {
        validate_writer_id(&target.agent)?;
        let fence_name = fence_name(&target.gate, &target.zone_name)?;
        Ok(Self {
            api,
            target,
            fence_name,
            options,
        })
    }

    pub fn fence_name(&self) -> &str {
        &self.fence_name
    }

    pub fn target(&self) -> &GateTarget {
        &self.target
    }

    /// The current fence (one request).
    pub async fn read_fence(&self) -> Result<Option<Fence>, WriteError> {
        Ok(self.read_fence_record().await?.0)
    }

    /// The fence and every record of `desired`'s scope (one request per distinct name).
    ///
    /// The fence is read first, so a batch landing between the reads can pair an old fence
    /// with new records. That never makes a write unsafe (a batch deletes exactly what was
    /// read, so a torn view only loses the race), but it would report the new records at the
    /// old epoch; so when the fence does not name the records read, it is read once more.
    pub async fn read(&self, desired: &DesiredRecords) -> Result<View, WriteError> {
        self.check_zone(desired)?;
        let (mut fence, mut fence_record) = self.read_fence_record().await?;
        let mut in_scope = Vec::new();
        for name in desired.names() {
            let records = self
                .api
                .list_record_sets(&self.target.zone_id, Some(&name))
                .await?;
            for r in records {
                if !desired.in_scope(r.key()) {
                    continue;
                }
                if let Routing::Unsupported(what) = r.routing() {
                    return Err(WriteError::Unmanageable {
                        key: r.key().clone(),
                        routing: what.clone(),
                    });
                }
                in_scope.push(r);
            }
        }
        let named = DesiredRecords::new(desired.zone_name(), in_scope.iter().cloned())
            .ok()
            .map(|d| d.digest());
        if fence.as_ref().map(|f| &f.digest) != named.as_ref() {
            (fence, fence_record) = self.read_fence_record().await?;
        }
        Ok(View {
            fence,
            fence_record,
            records: in_scope,
        })
    }

    async fn read_fence_record(&self) -> Result<(Option<Fence>, Option<RecordSet>), WriteError> {
        let records = self
            .api
            .list_record_sets(&self.target.zone_id, Some(&self.fence_name))
            .await?;
        self.fence_of(&records)
    }

    /// Reads, then decides what (if anything) to send. The new fence carries the current
    /// one's change history (provisioning and tests; the gate driver passes its own).
    pub async fn plan(
        &self,
        expected_epoch: u64,
        desired: &DesiredRecords,
    ) -> Result<Plan, WriteError> {
        let view = self.read(desired).await?;
        plan_from_view(
            &view,
            expected_epoch,
            desired,
            &self.fence_name,
            &self.target.agent,
            None,
        )
    }

    /// Sends a planned batch; on `InvalidChangeBatch` re-reads and returns what it found.
    /// Never waits for INSYNC.
    pub async fn send(&self, write: &PlannedWrite) -> Result<Sent, WriteError> {
        let comment = format!(
            "quorumgate gate={} epoch={} by={}",
            self.target.gate, write.next.epoch, self.target.agent
        );
        match self
            .api
            .change_record_sets(&self.target.zone_id, &write.changes, &comment)
            .await
        {
            Ok(info) => {
                tracing::info!(
                    gate = %self.target.gate, epoch = write.next.epoch, change_id = %info.id,
                    changes = write.changes.len(), "route53 fenced change accepted"
                );
                Ok(Sent::Accepted {
                    epoch: write.next.epoch,
                    in_sync: info.status == ChangeStatus::InSync,
                    change_id: info.id,
                })
            }
            Err(ApiError::InvalidChangeBatch { messages }) => {
                let view = self.read(&write.desired).await?;
                Ok(Sent::Rejected {
                    view: Box::new(view),
                    messages,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a planned batch and waits for INSYNC. On `InvalidChangeBatch` re-reads: the
    /// desired state already in place is [`ApplyOutcome::AlreadyInPlace`] (whoever wrote it:
    /// the gate driver tells its own batch by the fence), anything else
    /// [`ApplyOutcome::LostRace`].
    pub async fn commit(&self, write: PlannedWrite) -> Result<ApplyOutcome, WriteError> {
        match self.send(&write).await? {
            Sent::Accepted {
                epoch,
                change_id,
                in_sync,
            } => {
                let in_sync = in_sync || self.wait_insync(&change_id).await;
                Ok(ApplyOutcome::Applied {
                    epoch,
                    change_id,
                    in_sync,
                })
            }
            Sent::Rejected { view, messages } => {
                if write.desired.matches(&view.records) {
                    tracing::info!(
                        gate = %self.target.gate, epoch = view.epoch(),
                        "route53 fenced change not needed: desired records already in place"
                    );
                    return Ok(ApplyOutcome::AlreadyInPlace {
                        epoch: view.epoch(),
                    });
                }
                tracing::warn!(
                    gate = %self.target.gate, expected_epoch = write.expected_epoch,
                    current = ?view.fence, ?messages, "route53 fenced change lost the race"
                );
                Ok(ApplyOutcome::LostRace {
                    current: view.fence,
                    messages,
                })
            }
        }
    }

    /// Plans and, if needed, commits: the whole fenced write.
    pub async fn apply(
        &self,
        expected_epoch: u64,
        desired: &DesiredRecords,
    ) -> Result<ApplyOutcome, WriteError> {
        match self.plan(expected_epoch, desired).await? {
            Plan::Done(outcome) => Ok(outcome),
            Plan::Write(write) => self.commit(write).await,
        }
    }

    /// Polls GetChange until INSYNC, at most `insync_timeout`; false if it did not get there
    /// (the change is accepted either way).
    pub async fn wait_insync(&self, change_id: &str) -> bool {
        let timeout = self.options.insync_timeout;
        if timeout.is_zero() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        let poll = self.options.insync_poll.max(Duration::from_millis(10));
        loop {
            if Instant::now() + poll > deadline {
                tracing::warn!(change_id, ?timeout, "route53 change not INSYNC in time");
                return false;
            }
            tokio::time::sleep(poll).await;
            match self.api.get_change(change_id).await {
                Ok(info) if info.status == ChangeStatus::InSync => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(change_id, error = %e, "route53 GetChange failed");
                    return false;
                }
            }
        }
    }

    fn check_zone(&self, desired: &DesiredRecords) -> Result<(), WriteError> {
        let writer = super::types::normalize_name(&self.target.zone_name);
        if desired.zone_name() == writer {
            Ok(())
        } else {
            Err(WriteError::ZoneMismatch {
                desired: desired.zone_name().to_owned(),
                writer,
            })
        }
    }

    fn fence_of(
        &self,
        records: &[RecordSet],
    ) -> Result<(Option<Fence>, Option<RecordSet>), WriteError> {
        let key = RecordKey::new(&self.fence_name, "TXT", None);
        let Some(record) = records.iter().find(|r| *r.key() == key) else {
            return Ok((None, None));
        };
        let fence = Fence::from_record(record).map_err(|source| WriteError::BadFence {
            name: self.fence_name.clone(),
            source,
        })?;
        Ok((Some(fence), Some(record.clone())))
    }
}

/// The pure part of planning: given what was read, the batch (if any) that moves the gate from
/// `view` to `desired` through the fence. The next fence records `changes` (the gate's recent
/// changes, this one last); `None` carries the current fence's on unchanged.
pub fn plan_from_view(
    view: &View,
    expected_epoch: u64,
    desired: &DesiredRecords,
    fence_name: &str,
    agent: &str,
    changes: Option<Vec<(u64, u64)>>,
) -> Result<Plan, WriteError> {
    if desired.matches(&view.records) {
        return Ok(Plan::Done(ApplyOutcome::AlreadyInPlace {
            epoch: view.epoch(),
        }));
    }
    if view.epoch() != expected_epoch {
        return Ok(Plan::Done(ApplyOutcome::Stale {
            expected_epoch,
            current: view.fence.clone(),
        }));
    }
    let mut deletes = Vec::new();
    for current in &view.records {
        if desired.get(current.key()) != Some(current) {
            deletes.push(Change::delete(current.clone()));
        }
    }
    let mut creates = Vec::new();
    for wanted in desired.records() {
        if !view.records.contains(wanted) {
            creates.push(Change::create(wanted.clone()));
        }
    }
    let next = Fence {
        epoch: view
            .epoch()
            .checked_add(1)
            .ok_or(WriteError::FenceExhausted {
                epoch: view.epoch(),
            })?,
        digest: desired.digest(),
        by: agent.to_owned(),
        changes: changes.unwrap_or_else(|| {
            view.fence
                .as_ref()
                .map(|f| f.changes.clone())
                .unwrap_or_default()
        }),
    };
    // Deletes first (so a record can change routing policy), then creates; the fence swap
    // rides in the same batch.
    let mut changes = deletes;
    if let Some(fence) = &view.fence_record {
        changes.push(Change::delete(fence.clone()));
    }
    changes.extend(creates);
    changes.push(Change::create(next.record(fence_name)));

    let values: usize = changes.iter().map(|c| c.record.value_count()).sum();
    let chars: usize = changes.iter().map(|c| c.record.value_chars()).sum();
    if values > MAX_BATCH_VALUES || chars > MAX_BATCH_CHARS {
        return Err(WriteError::BatchTooLarge { values, chars });
    }
    Ok(Plan::Write(PlannedWrite {
        expected_epoch,
        next,
        changes,
        desired: desired.clone(),
    }))
}
