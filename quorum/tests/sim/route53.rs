//! A simulated Route 53 for one gate: the records and the fence, with exact compare-and-swap
//! batch semantics (a batch applies only if the fence is still the one it was planned on,
//! atomically with the records), and a history of every applied batch.

use quorum::gate::machine::{Records, View};
use quorum::{DesiredState, UnixMillis};

/// One batch as sent: planned on `expected_epoch`, installs `to` and the fence `next_epoch`
/// by `by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub agent: usize,
    pub by: String,
    pub plan: u64,
    pub expected_epoch: u64,
    pub next_epoch: u64,
    pub to: DesiredState,
    /// The new fence's history of changes.
    pub history: Vec<(u64, UnixMillis)>,
}

/// An applied batch.
#[derive(Clone, Debug)]
pub struct Applied {
    pub batch: Batch,
    pub from: DesiredState,
    pub at: UnixMillis,
}

#[derive(Debug)]
pub struct Route53 {
    pub epoch: u64,
    pub by: Option<String>,
    pub records: DesiredState,
    pub fence_history: Vec<(u64, UnixMillis)>,
    pub history: Vec<Applied>,
}

impl Route53 {
    /// Provisioned: the records at the primary, no fence yet.
    pub fn new(records: DesiredState) -> Self {
        Self {
            epoch: 0,
            by: None,
            records,
            fence_history: Vec::new(),
            history: Vec::new(),
        }
    }

    pub fn view(&self) -> View {
        View {
            epoch: self.epoch,
            by: self.by.clone(),
            records: Records::State(self.records.clone()),
            history: self.fence_history.clone(),
        }
    }

    /// ChangeResourceRecordSets: all or nothing. `Err` is InvalidChangeBatch.
    pub fn change(&mut self, batch: &Batch, at: UnixMillis) -> Result<(), ()> {
        if self.epoch != batch.expected_epoch {
            return Err(());
        }
        self.history.push(Applied {
            batch: batch.clone(),
            from: self.records.clone(),
            at,
        });
        self.epoch = batch.next_epoch;
        self.by = Some(batch.by.clone());
        self.records = batch.to.clone();
        self.fence_history = batch.history.clone();
        Ok(())
    }
}
