//! The drill board: which checks this agent votes Unhealthy for a drill, and until when.
//!
//! The gate driver writes it when a verified drill command starts a drill (or a replayed one
//! is still running) and clears it when the drill ends; the node reads it when it builds each
//! round's votes. A plain mutex, never held across an await, taken after the node's or the
//! driver's own lock and never the other way round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use quorum::{CheckId, GateId, OperatorId, UnixMillis};

/// One drilled check: this agent votes it Unhealthy (reason `drill`) until `until`, unless
/// its real probe already says Unhealthy or it abstains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillVote {
    pub gate: GateId,
    pub by: OperatorId,
    pub seq: u64,
    pub until: UnixMillis,
}

/// Shared between the gate driver (writes) and the node (reads).
#[derive(Debug, Clone, Default)]
pub struct DrillBoard(Arc<Mutex<BTreeMap<CheckId, DrillVote>>>);

impl DrillBoard {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<CheckId, DrillVote>> {
        // A map of plain values: a panicking holder cannot leave it inconsistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drills `check` (the primary's check of `vote.gate`).
    pub fn set(&self, check: CheckId, vote: DrillVote) {
        self.lock().insert(check, vote);
    }

    /// Stops drilling `check` for `gate` (another gate's drill of the same check stays).
    pub fn clear(&self, check: &CheckId, gate: &GateId) {
        let mut map = self.lock();
        if map.get(check).is_some_and(|v| v.gate == *gate) {
            map.remove(check);
        }
    }

    /// The checks drilled at `now`.
    #[must_use]
    pub fn active(&self, now: UnixMillis) -> BTreeMap<CheckId, DrillVote> {
        self.lock()
            .iter()
            .filter(|(_, v)| now < v.until)
            .map(|(c, v)| (c.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_last_until_their_time_and_clear_per_gate() {
        let board = DrillBoard::default();
        let check = CheckId::new("app").expect("id");
        let vote = |gate: &str| DrillVote {
            gate: GateId::new(gate).expect("gate"),
            by: OperatorId::new("alice").expect("op"),
            seq: 1,
            until: UnixMillis(1_000),
        };
        board.set(check.clone(), vote("app"));
        assert_eq!(board.active(UnixMillis(999)).len(), 1);
        assert!(board.active(UnixMillis(1_000)).is_empty());
        board.clear(&check, &GateId::new("other").expect("gate"));
        assert_eq!(board.active(UnixMillis(0)).len(), 1, "another gate's clear");
        board
            .clone()
            .clear(&check, &GateId::new("app").expect("gate"));
        assert!(
            board.active(UnixMillis(0)).is_empty(),
            "clones share the board"
        );
    }
}
