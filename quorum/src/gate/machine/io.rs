//! What a [`super::GateMachine`] is told (events) and what it asks for (actions).
//!
//! Every event that answers an action carries the action's [`Token`]; an answer whose token
//! the machine no longer waits for (a restart, a result that arrives twice) is ignored.

use crate::gate::{DesiredState, Drill, DrillEnd, FinishedDrill, Inputs, PlannedChange};
use crate::operator::{CommandRejection, VerifiedCommand};
use crate::time::UnixMillis;

/// Names one action, so its result finds its way back.
pub type Token = u64;

/// What Route 53 holds for the gate, as the shell read it (fence and records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The fence's epoch (0: no fence yet).
    pub epoch: u64,
    /// The agent the fence names as its writer (`by=`), if there is a fence.
    pub by: Option<String>,
    pub records: Records,
    /// The recent changes the fence records, `(epoch, when its writer planned it)` by the
    /// writer's clock, oldest first: what the velocity rule needs to know of changes this
    /// agent did not see.
    pub history: Vec<(u64, UnixMillis)>,
}

/// The gate's records in a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Records {
    /// Records this gate produces, in this state.
    State(DesiredState),
    /// None yet (the first change creates them).
    Empty,
    /// Records in no state this gate produces (edited by hand?).
    Foreign,
}

impl View {
    /// Whether the view shows exactly the batch this agent planned from `expected_epoch` to
    /// `to`: its fence (the writer is named, the epoch one past the one planned on) and its
    /// records. Only that batch can have put it there, so it won.
    #[must_use]
    pub fn shows_our_batch(&self, me: &str, expected_epoch: u64, to: &DesiredState) -> bool {
        self.by.as_deref() == Some(me)
            && Some(self.epoch) == expected_epoch.checked_add(1)
            && self.records == Records::State(to.clone())
    }
}

/// Why an I/O action failed, as the shell classifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// A metric label (`throttled`, `unavailable`, `timeout`, `audit`, …).
    pub label: &'static str,
    pub detail: String,
}

impl Failure {
    #[must_use]
    pub fn new(label: &'static str, detail: impl Into<String>) -> Self {
        Self {
            label,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What planning found (the shell read Route 53 and computed the batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// A batch from `expected_epoch` is ready to send (the shell keeps it under the token).
    Write {
        expected_epoch: u64,
        next_epoch: u64,
    },
    /// Nothing to send: the records are already the desired ones, or the fence moved on.
    Nothing(View),
}

/// What sending the batch found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Route 53 accepted the batch.
    Accepted(Accepted),
    /// Route 53 refused it (InvalidChangeBatch); `view` is what the shell re-read after. A
    /// retried request whose first attempt landed is refused too: the view then shows our
    /// own fence.
    Rejected { view: View, messages: Vec<String> },
}

/// An accepted batch: what the audit log and drills report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub epoch: u64,
    pub change_id: String,
    pub in_sync: bool,
    pub accepted_at_ms: Option<u64>,
    pub in_sync_at_ms: Option<u64>,
}

/// What a promotion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Promoted {
    Started,
    AlreadyDone(String),
}

/// An input to the machine.
#[derive(Clone, Debug)]
pub enum Event {
    /// A round ended: the quorum's decisions, this agent's writer rank (0 goes first), and
    /// for a data-plane gate what Route 53 serves by those decisions.
    Round {
        now: UnixMillis,
        inputs: Inputs,
        rank: usize,
        serving: Option<DesiredState>,
    },
    /// An [`Action::Append`] with a token was (or was not) made durable.
    Appended {
        token: Token,
        result: Result<(), Failure>,
    },
    Read {
        token: Token,
        now: UnixMillis,
        result: Result<View, Failure>,
    },
    Planned {
        token: Token,
        now: UnixMillis,
        result: Result<Planned, Failure>,
    },
    Committed {
        token: Token,
        now: UnixMillis,
        result: Result<Committed, Failure>,
    },
    Promoted {
        token: Token,
        now: UnixMillis,
        result: Result<Promoted, Failure>,
    },
    /// A signed operator command that passed every check: applied once audited.
    Command {
        token: Token,
        now: UnixMillis,
        command: VerifiedCommand,
    },
}

/// A record the machine asks to append to the audit log.
#[derive(Clone, Debug)]
pub enum AuditRecord {
    /// A change decided, with its certificates, before anything acts on it.
    Decision {
        change: PlannedChange,
        based_on_epoch: u64,
    },
    /// The batch planned under `plan`, before it is sent. `promote`: the winner promotes.
    Write {
        plan: Token,
        expected_epoch: u64,
        next_epoch: u64,
        to: DesiredState,
        promote: bool,
    },
    /// What became of a write (or of a dry-run change).
    Outcome {
        to: DesiredState,
        result: Outcome,
    },
    /// A promotion about to start.
    Promote {
        epoch: u64,
    },
    PromoteOutcome {
        epoch: u64,
        result: Result<Promoted, Failure>,
    },
    OperatorCommand(VerifiedCommand),
}

/// The end of a write, as audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied(Accepted),
    /// Our batch landed, but its response was lost: a retry (or a later read) found our own
    /// fence at the epoch we wrote.
    Won {
        epoch: u64,
    },
    /// Someone (another writer, an operator) put the desired records in place.
    AlreadyInPlace {
        epoch: u64,
    },
    Stale {
        expected_epoch: u64,
        current: u64,
    },
    LostRace {
        current: u64,
        messages: Vec<String>,
    },
    /// The write failed; the batch may or may not have landed (the next read tells).
    Failed(Failure),
    /// Not a write: a dry-run gate's simulated change.
    DryRun,
}

impl Outcome {
    /// Metric label.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied(_) => "applied",
            Outcome::Won { .. } => "won",
            Outcome::AlreadyInPlace { .. } => "already_in_place",
            Outcome::Stale { .. } => "stale",
            Outcome::LostRace { .. } => "lost_race",
            Outcome::Failed(f) => f.label,
            Outcome::DryRun => "dry_run",
        }
    }

    /// The fence epoch the outcome saw, if it saw one.
    #[must_use]
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Outcome::Applied(a) => Some(a.epoch),
            Outcome::Won { epoch } | Outcome::AlreadyInPlace { epoch } => Some(*epoch),
            Outcome::Stale { current, .. } | Outcome::LostRace { current, .. } => Some(*current),
            Outcome::Failed(_) | Outcome::DryRun => None,
        }
    }

    /// Whether the change counts as made (the velocity rule counts it).
    #[must_use]
    pub fn counts(&self) -> bool {
        matches!(
            self,
            Outcome::Applied(_)
                | Outcome::Won { .. }
                | Outcome::AlreadyInPlace { .. }
                | Outcome::DryRun
        )
    }
}

/// Why an operator command was not applied after it passed the book's checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandFailure {
    #[error(transparent)]
    Rejected(#[from] CommandRejection),
    /// The command could not be persisted; it was not applied.
    #[error("could not write the audit log: {0}")]
    Audit(Failure),
}

/// Something for the shell to log or count; never needed for correctness.
#[derive(Clone, Debug)]
pub enum Note {
    /// The round's evaluation code changed (`alert`: an operator is needed).
    Evaluation {
        code: &'static str,
        previous: &'static str,
        /// A hold (not a change).
        hold: bool,
        alert: bool,
        detail: String,
    },
    /// A read found another state than the one this agent assumed.
    Resynced {
        was: DesiredState,
        now: DesiredState,
        epoch: u64,
    },
    RecordsMissing,
    RecordsForeign,
    /// A read or write failed; the next try waits.
    Failed {
        what: &'static str,
        failures: u32,
        retry_in_ms: u64,
        error: Failure,
    },
    /// A data-plane gate: Route 53 serves another target by the quorum's decisions.
    Serving {
        from: DesiredState,
        to: DesiredState,
    },
    /// A change decided (audited) and about to be written or simulated.
    Decided {
        change: PlannedChange,
        epoch: u64,
    },
    /// A write ended.
    WriteEnded {
        to: DesiredState,
        outcome: Outcome,
    },
    /// A promotion ended.
    PromoteEnded {
        epoch: u64,
        result: Result<Promoted, Failure>,
    },
    /// A drill moved the gate but the database is not promoted.
    DrillNoPromotion {
        epoch: u64,
    },
    /// A persist-before-act record could not be appended: the action it guards is dropped.
    NotPersisted {
        what: &'static str,
        error: Failure,
    },
    /// A state change the gate refused to commit (a bug or a reloaded config).
    Inconsistent(String),
}

/// An output of the machine, in order.
#[derive(Clone, Debug)]
pub enum Action {
    /// Append (and fsync) a record. With a token, the machine waits for
    /// [`Event::Appended`] before anything that depends on it.
    Append {
        token: Option<Token>,
        record: AuditRecord,
    },
    /// Read the fence and the gate's records.
    Read {
        token: Token,
    },
    /// After `delay_ms` (the writer stagger), read and compute the batch that moves Route 53
    /// to `to` from `expected_epoch`. The new fence records `history` and then this change
    /// (`next_epoch`, the shell's clock when it plans).
    Plan {
        token: Token,
        to: DesiredState,
        expected_epoch: u64,
        delay_ms: u64,
        history: Vec<(u64, UnixMillis)>,
    },
    /// Send the batch planned under `plan`.
    Commit {
        token: Token,
        plan: Token,
    },
    /// Promote the gate's database (the failover batch of `epoch` was ours).
    Promote {
        token: Token,
        epoch: u64,
    },
    /// The operator command sent with `token` was applied (or not).
    CommandDone {
        token: Token,
        result: Result<(), CommandFailure>,
    },
    /// A drill started (or was restored): vote the primary down.
    DrillStarted(Drill),
    /// A drill ended: stop its votes, audit the end.
    DrillEnded {
        seq: u64,
        end: DrillEnd,
    },
    /// A drill is over and the gate back (or out of grace): judge it.
    DrillFinished(FinishedDrill),
    /// Whether the gate waits for an operator.
    SetAlert(bool),
    Note(Note),
}
