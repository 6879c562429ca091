//! `quorum` — the pure protocol core of quorumgate.
//!
//! Everything an agent *decides* lives here; everything it *does* lives in the `agent` crate.
//! This crate performs no I/O, spawns nothing and never reads a clock: time comes in as a
//! [`UnixMillis`] argument, so every function is deterministic and testable on a virtual clock.
//!
//! # Layout
//!
//! - [`ids`]: validated identifiers (`AgentId`, `CheckId`, `Reason`).
//! - [`observation`]: what one agent saw of one check (`Observation`, `Status`).
//! - [`ballot`]: one agent's observations for one round (`Ballot`, `ConfigDigest`).
//! - [`codec`]: the versioned, canonical, length-bounded binary encoding.
//! - [`signed`]: ed25519 signatures over a domain tag and the canonical bytes (`SignedBallot`).
//! - [`membership`]: the static member list and the quorum size Q = ⌊N/2⌋+1.
//! - [`book`]: validation on receipt (`BallotBook::handle_ballot`) and the latest ballot per member.
//! - [`tally`]: the majority count per check, with a verifiable [`Certificate`].
//! - [`decision`]: the per-check hysteresis machine (fall/rise/hold-down).
//! - [`engine`]: the book plus one decision machine per check — what the agent drives.
//! - [`gate`]: the desired DNS state of a gate as a pure function of the decisions, behind
//!   the safety rules (min serving, healthy target, RPO, velocity, failback, freeze).
//! - [`operator`]: signed operator commands (freeze, unfreeze, approve, override) and their
//!   validation on receipt.
//!
//! # Invariants
//!
//! - A [`tally::Verdict`] other than `NoQuorum` always carries Q distinct, live, correctly
//!   signed ballots that say so.
//! - A [`decision::Transition`] always carries the certificate of the verdict that caused it.
//! - Decoding untrusted bytes never panics, and what it allocates is bounded by a small constant
//!   multiple of the input's length (every declared count is checked against the bytes left).

#![forbid(unsafe_code)]

pub mod ballot;
pub mod book;
pub mod cluster;
pub mod codec;
pub mod decision;
pub mod engine;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod gate;
pub mod ids;
pub mod membership;
pub mod observation;
pub mod operator;
pub mod signed;
pub mod tally;
pub mod time;

pub use ballot::{Ballot, BallotError, ConfigDigest};
pub use book::{Accepted, BallotBook, BookConfig, Prechecked, Receipt, Rejection, VerifiedBallot};
pub use cluster::ClusterId;
pub use decision::{
    After, Basis, DecisionMachine, DecisionPolicy, Restored, Start, State, Transition,
};
pub use engine::Engine;
pub use gate::{
    evaluate, DesiredState, Evaluation, GateKind, GatePolicy, GateSpec, GateState, HoldReason,
    Inputs, PlannedChange,
};
pub use ids::{AgentId, CheckId, GateId, IdError, OperatorId, Reason, TargetId};
pub use membership::{Member, Membership, MembershipError};
pub use observation::{Observation, Status};
pub use operator::{
    Action, CommandAccepted, CommandRejection, OperatorBook, OperatorCommand, SignedCommand,
    VerifiedCommand,
};
pub use signed::{SignedBallot, SigningKey, VerifyingKey};
pub use tally::{
    certificate_parts, portable_certificate, tally, tally_all, verify_certificate, CertError,
    Certificate, Outcome, Verdict, VerifiedCertificate,
};
pub use time::UnixMillis;
