//! Scenario 6: an agent SIGKILLed mid-failover, after its `gate_write` audit record and before
//! it learns what Route 53 did with the batch, then restarted.
//!
//! Two crash points, each its own test:
//! - `before_the_write_lands`: the emulator stalls every ChangeResourceRecordSets (the request
//!   arrives, is held, and is never applied). The first writer audits `gate_write`, sends, and
//!   is killed while its request hangs; the fault is cleared (the held requests are dropped
//!   unapplied) and the agent restarted. The survivors retry and one batch lands.
//! - `after_the_write_lands`: the emulator applies the first batch but holds its answer
//!   (`stall_response`); the writer is killed before it can write `gate_outcome`. Nobody may
//!   apply it a second time: the survivors and the restarted agent must find it in place.
//!
//! Both prove: exactly one batch applied by the emulator, the fence one epoch up (1 → 2),
//! every agent (the restarted one too) at that epoch and state, and `quorumgate verify
//! --audit` accepting every log, including the killed agent's, whose last gate record before
//! the crash is the orphaned `gate_write`.

use std::time::Duration;

use serde_json::json;

use crate::gate::{GateRig, Knobs, SECONDARY_IP};
use crate::report::Row;
use crate::rig::{Options, CHECK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashPoint {
    BeforeTheWriteLands,
    AfterTheWriteLands,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_write_lands_applies_once() {
    crash_mid_failover(CrashPoint::BeforeTheWriteLands).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_write_lands_applies_once() {
    crash_mid_failover(CrashPoint::AfterTheWriteLands).await;
}

/// Index of the first agent whose audit log holds a `gate_write`, if any.
fn writer_with_gate_write(rig: &GateRig) -> Option<usize> {
    (0..rig.len()).find(|&i| !rig.gate_events(i, "gate_write").is_empty())
}

async fn crash_mid_failover(point: CrashPoint) {
    let (scenario, tag) = match point {
        CrashPoint::BeforeTheWriteLands => ("6a_crash_before_write", "crb"),
        CrashPoint::AfterTheWriteLands => ("6b_crash_after_write", "cra"),
    };
    let mut row = Row::new(scenario);
    let mut rig = GateRig::start(Options::new(tag), &Knobs::default()).await;
    rig.reset_stats().await;
    let (kind, count) = match point {
        CrashPoint::BeforeTheWriteLands => ("stall", 10_000),
        CrashPoint::AfterTheWriteLands => ("stall_response", 1),
    };
    rig.fault(json!({ "kind": kind, "count": count, "op": "ChangeResourceRecordSets", "stall_ms": 120_000 }))
        .await;

    // The primary fails for everyone: the gate decides to fail over and the first writer
    // (the lowest-ranked live member; the others wait their stagger) audits and sends.
    rig.target.set_down(true);
    let mut w = None;
    let r = &rig;
    r.wait_until(
        Duration::from_secs(40),
        "a gate_write audited and its request held by the emulator",
        || {
            let found = writer_with_gate_write(r);
            w = found;
            async move {
                if found.is_none() {
                    return false;
                }
                let (log, stalled) = r.stats().await;
                match point {
                    CrashPoint::BeforeTheWriteLands => stalled > 0,
                    CrashPoint::AfterTheWriteLands => log.iter().any(|r| {
                        r.op == "ChangeResourceRecordSets"
                            && r.outcome == "stall_response"
                            && r.status == 200
                    }),
                }
            }
        },
    )
    .await;
    let w = w.expect("a writer");
    let w_id = rig.id(w).to_owned();

    rig.kill(w).await;
    // What the killed agent had persisted: the write, and no outcome after it.
    let gate_records: Vec<String> = rig
        .audit(w)
        .into_iter()
        .filter(|r| r.event.starts_with("gate_") && r.body["gate"] == crate::gate::GATE)
        .map(|r| r.event)
        .collect();
    assert_eq!(
        gate_records.last().map(String::as_str),
        Some("gate_write"),
        "{w_id} was killed between gate_write and gate_outcome: {gate_records:?}"
    );
    let orphan = rig.gate_events(w, "gate_write");
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    assert_eq!(orphan[0]["expected_epoch"], 1, "{orphan:?}");
    assert!(
        orphan[0]["batch"].to_string().contains(SECONDARY_IP),
        "{orphan:?}"
    );

    rig.clear_faults().await;
    rig.restart(w).await;

    rig.wait_gates("every agent at active=secondary, epoch 2", |g| {
        g.current == "active=secondary" && g.epoch == 2 && !g.busy
    })
    .await;
    // Give any late retry time to show up before counting.
    tokio::time::sleep(rig.round() * 5).await;

    let (log, _) = rig.stats().await;
    let held = log
        .iter()
        .filter(|r| r.op == "ChangeResourceRecordSets" && r.outcome == kind)
        .count();
    assert!(held >= 1, "the emulator held the writer's request");
    let applied = rig.applied_batches().await;
    let fence = rig.fence().await.expect("a fence");
    assert_eq!(applied, 1, "exactly one batch applied by Route 53");
    assert_eq!(
        fence.epoch, 2,
        "the fence moved exactly one epoch: {fence:?}"
    );
    assert_eq!(rig.answer().await, [SECONDARY_IP.to_owned()]);
    if point == CrashPoint::AfterTheWriteLands {
        assert_eq!(
            fence.by, w_id,
            "the killed agent's batch is the one that landed"
        );
    }
    // Every agent, the restarted one included, holds the epoch Route 53 holds.
    for g in rig.gates_of(&rig.all()).await {
        assert_eq!(g.epoch, fence.epoch, "{g:?}");
        assert_eq!(g.current, "active=secondary", "{g:?}");
    }
    // At most one agent saw its batch applied; none saw it applied twice.
    let applied_outcomes: usize = (0..rig.len())
        .map(|i| {
            rig.gate_events(i, "gate_outcome")
                .iter()
                .filter(|o| o["result"] == "applied")
                .count()
        })
        .sum();
    let expected_outcomes = usize::from(point == CrashPoint::BeforeTheWriteLands);
    assert_eq!(
        applied_outcomes, expected_outcomes,
        "agents' applied outcomes (the killed writer never learned of its own)"
    );
    rig.verify_audits();

    row.flips_expected = 1;
    row.flips_seen = applied as u64;
    row.transitions = rig.transition_counts(CHECK);
    row.rejected = rig.rejected().await;
    row.note(format!(
        "{w_id} SIGKILLed after gate_write ({kind}, {held} request(s) held); restarted; \
         {applied} batch applied, epoch 1->2, audits verify"
    ));
    row.note(format!(
        "{w_id}: {} transitions of {CHECK} in its log (after the restart it decides afresh)",
        row.transitions.get(&w_id).copied().unwrap_or(0)
    ));
    row.pass();
}
