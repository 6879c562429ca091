//! Gates: the desired DNS state as a pure function of the quorum's decisions, behind the
//! safety rules (README, "Gates").
//!
//! A gate ties checks to DNS. A **failover pair** sends traffic to its primary target, and to
//! its secondary only when the primary is lost; a **weighted set** drains unhealthy targets
//! to weight 0 and restores healthy ones to their normal weight. Each round the caller
//! (the agent's writer) does:
//!
//! ```text
//! inputs = Inputs::from_engine(&engine)            // decided state + certificate per check
//! eval   = evaluate(&spec, &state, &inputs, now)   // pure; every rule checked before a change
//! Change(c) → audit, write c.to with c.certificates through the fence (dry-run: don't write),
//!             then state.commit(&spec, &c, now)
//! state.observe(&spec, &inputs, &eval, now)        // RPO memory, hold-since, expiries
//! ```
//!
//! Operator commands (`operator::VerifiedCommand::apply_to`) freeze, unfreeze, approve and
//! override between rounds. Every change carries the certificates that justify it (only a
//! forced override may lack them); every hold carries a reason code for metrics and status.
//!
//! # Layout
//!
//! - [`spec`]: `GateSpec`, `GateKind`, `Target`, `GatePolicy`, `Mode` — validated on creation.
//! - [`desired`]: `DesiredState`, its canonical bytes and SHA-256 digest (the fence's).
//! - [`inputs`]: `Inputs`, `CheckInput` — what a gate reads from the engine.
//! - [`state`]: `GateState` — current DNS, change times, freeze, approval, override, RPO memory,
//!   the drill in force.
//! - [`drill`]: game-day drills — `Drill`, `precheck`, the failback authority of a drill.
//! - [`machine`]: `GateMachine` — one gate as a pure state machine (events in, actions out):
//!   reads, fenced writes, promotion, operator commands and drills, persist before act.
//! - `evaluate` (module): the function [`evaluate`], `Evaluation`, `PlannedChange`,
//!   `HoldReason` and the order of the rules; `failover` and `weighted` hold each kind's own
//!   rules.
//!
//! # Invariants (checked by `tests/gate_properties.rs` after every step of random runs)
//!
//! - A change never leaves fewer than `min_serving` targets serving (unless fewer served
//!   before it, and it does not reduce them).
//! - A change never gives traffic to a target whose check is not decided Healthy with a
//!   certificate — except a forced override.
//! - Automatic changes respect `wait_period_ms` and `max_changes` per `window_ms`; a frozen
//!   gate makes none; failback without `auto_failback`, and an RPO over the limit or unknown,
//!   need an unexpired approval (a failback also the authority of the drill it ends, within
//!   its grace).
//! - A change is in dry-run mode when the gate is, or while a dry-run drill is in force.
//! - Every certificate a change carries names the target's check and the outcome the change
//!   relies on.

pub mod desired;
pub mod drill;
mod evaluate;
mod failover;
pub mod inputs;
pub mod machine;
pub mod spec;
pub mod state;
mod weighted;

#[cfg(test)]
mod tests;

pub use desired::{DesiredState, MAX_TARGETS};
pub use drill::{
    Drill, DrillEnd, DrillEndCause, DrillRefusal, FinishedDrill, DRILL_FAILBACK_GRACE_MS,
    MAX_DRILL_MS,
};
pub use evaluate::{
    evaluate, ApprovalCause, Authority, ChangeReason, Evaluation, HoldReason, PlannedChange,
};
pub use inputs::{CheckInput, Inputs};
pub use spec::{
    GateKind, GatePolicy, GateSpec, GateSpecError, Mode, StateError, Target, WeightedTarget,
};
pub use state::{Approval, CommitError, Frozen, GateState, LagMemory, Override};
