//! The fenced writer through the real SDK against the strict emulator.

use std::sync::Arc;

use quorumgate::route53::{ApplyOutcome, Plan, Route53Api, SdkRoute53};
use tokio::sync::Barrier;

use super::{fence_now, gate_records, weighted, writer, Emulator};

/// N=8 writers, each with its own client, read the same epoch, then all send their batch at
/// once: exactly one is accepted per round, the others lose as a whole, and the epoch rises by
/// one per round.
#[tokio::test]
async fn eight_racing_fence_writers_one_winner_per_round() {
    const WRITERS: usize = 8;
    const ROUNDS: u64 = 4;
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let observer = emu.client().await;
    let mut writers = Vec::new();
    for i in 0..WRITERS {
        let api: Arc<dyn Route53Api> = Arc::new(emu.client().await);
        writers.push(Arc::new(writer(api, &zone, &format!("agent-{i}"))));
    }
    for round in 0..ROUNDS {
        let plan_barrier = Arc::new(Barrier::new(WRITERS));
        let commit_barrier = Arc::new(Barrier::new(WRITERS));
        let tasks: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let w = w.clone();
                let (pb, cb) = (plan_barrier.clone(), commit_barrier.clone());
                // A different desired state per writer and round.
                let eu =
                    u8::try_from(i * 10 + usize::try_from(round).expect("round")).expect("weight");
                tokio::spawn(async move {
                    let desired = weighted(eu, 100 - eu);
                    pb.wait().await;
                    let plan = w.plan(round, &desired).await.expect("plan");
                    cb.wait().await;
                    let outcome = match plan {
                        Plan::Write(write) => w.commit(write).await.expect("commit"),
                        Plan::Done(o) => panic!("writer {i} planned no write: {o:?}"),
                    };
                    (i, desired, outcome)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (i, desired, outcome) = t.await.expect("task");
            match outcome {
                ApplyOutcome::Applied { epoch, .. } => {
                    assert_eq!(epoch, round + 1, "winner's epoch");
                    winners.push((i, desired));
                }
                ApplyOutcome::LostRace { current, messages } => {
                    assert_eq!(current.map(|f| f.epoch), Some(round + 1));
                    assert!(!messages.is_empty());
                }
                other => panic!("round {round} writer {i}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (winner, desired) = winners.pop().expect("one winner");
        let fence = fence_now(&observer, &zone).await.expect("fence");
        assert_eq!(fence.epoch, round + 1);
        assert_eq!(fence.by, format!("agent-{winner}"));
        assert_eq!(fence.digest, desired.digest());
        assert!(desired.matches(&gate_records(&observer, &zone).await));
    }
    // Every writer sent its batch every round; exactly one per round was accepted.
    let writes = emu.requests("ChangeResourceRecordSets").await;
    assert_eq!(
        writes.len(),
        WRITERS * usize::try_from(ROUNDS).expect("rounds")
    );
    assert_eq!(
        writes.iter().filter(|r| r.status == 200).count(),
        usize::try_from(ROUNDS).expect("rounds")
    );
}

/// A writer whose view is one epoch old loses as a whole even where its record changes still
/// match, and a writer given an old epoch does not write at all.
#[tokio::test]
async fn stale_writer_fails_and_leaves_no_partial_state() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let observer = emu.client().await;
    let a = writer(Arc::new(emu.client().await), &zone, "agent-a");
    let b = writer(Arc::new(emu.client().await), &zone, "agent-b");

    let first = a.apply(0, &weighted(100, 0)).await.expect("epoch 1");
    assert!(
        matches!(first, ApplyOutcome::Applied { epoch: 1, .. }),
        "{first:?}"
    );

    // b plans from epoch 1 to drain eu (its batch: DELETE eu(100) + CREATE eu(0) + fence 1→2).
    let Plan::Write(stale) = b.plan(1, &weighted(0, 0)).await.expect("plan b") else {
        panic!("b should plan a write");
    };
    // a moves to epoch 2 changing only us, so b's record DELETE still matches; its fence
    // DELETE does not.
    let second = a.apply(1, &weighted(100, 50)).await.expect("epoch 2");
    assert!(
        matches!(second, ApplyOutcome::Applied { epoch: 2, .. }),
        "{second:?}"
    );

    let lost = b.commit(stale).await.expect("commit b");
    match &lost {
        ApplyOutcome::LostRace { current, messages } => {
            assert_eq!(
                current.as_ref().map(|f| (f.epoch, f.by.as_str())),
                Some((2, "agent-a"))
            );
            assert!(
                messages
                    .iter()
                    .any(|m| m.contains("_quorumgate.app.example.com.")),
                "{messages:?}"
            );
        }
        other => panic!("expected LostRace, got {other:?}"),
    }
    assert!(weighted(100, 50).matches(&gate_records(&observer, &zone).await));
    let fence = fence_now(&observer, &zone).await.expect("fence");
    assert_eq!((fence.epoch, fence.by.as_str()), (2, "agent-a"));
    assert_eq!(fence.digest, weighted(100, 50).digest());

    // Given epoch 1 now, b does not even send a batch.
    emu.reset_stats().await;
    let stale = b.apply(1, &weighted(0, 100)).await.expect("apply b");
    assert!(
        matches!(&stale, ApplyOutcome::Stale { expected_epoch: 1, current: Some(f) } if f.epoch == 2),
        "{stale:?}"
    );
    assert!(emu.requests("ChangeResourceRecordSets").await.is_empty());
    assert!(weighted(100, 50).matches(&gate_records(&observer, &zone).await));
}

/// Re-applying the desired state costs the reads and nothing else.
#[tokio::test]
async fn reapplying_the_desired_state_is_a_noop() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let api = Arc::new(emu.client().await);
    let w = writer(api.clone(), &zone, "agent-a");
    let applied = w.apply(0, &weighted(100, 0)).await.expect("apply");
    assert!(
        matches!(applied, ApplyOutcome::Applied { epoch: 1, .. }),
        "{applied:?}"
    );
    let before = super::zone_records(&api, &zone).await;

    emu.reset_stats().await;
    for _ in 0..3 {
        let again = w.apply(1, &weighted(100, 0)).await.expect("re-apply");
        assert_eq!(again, ApplyOutcome::AlreadyInPlace { epoch: 1 });
    }
    // Another agent with the same decision finds it in place too.
    let other = writer(Arc::new(emu.client().await), &zone, "agent-b");
    assert_eq!(
        other.apply(1, &weighted(100, 0)).await.expect("other"),
        ApplyOutcome::AlreadyInPlace { epoch: 1 }
    );
    let (log, _) = emu.stats().await;
    let ops: Vec<&str> = log.iter().map(|r| r.op.as_str()).collect();
    assert!(
        ops.iter().all(|op| *op == "ListResourceRecordSets"),
        "only reads expected, got {ops:?}"
    );
    assert_eq!(ops.len(), 4 * 2, "two reads (fence, record name) per apply");
    assert_eq!(super::zone_records(&api, &zone).await, before);
}

/// The emulator reports PENDING for a while; the writer polls GetChange until INSYNC.
#[tokio::test]
async fn getchange_is_polled_until_insync() {
    let emu = Emulator::start_with(&["--insync-after-ms", "1200"]).await;
    let zone = emu.create_zone("example.com").await;
    let api: Arc<SdkRoute53> = Arc::new(emu.client().await);
    let w = writer(api.clone(), &zone, "agent-a");
    let outcome = w.apply(0, &weighted(100, 0)).await.expect("apply");
    let ApplyOutcome::Applied {
        change_id, in_sync, ..
    } = outcome
    else {
        panic!("expected Applied, got {outcome:?}");
    };
    assert!(in_sync);
    let polls = emu.requests("GetChange").await;
    assert!(polls.len() >= 2, "polled {} times", polls.len());
    assert!(polls.iter().all(|r| r.status == 200));
    let info = api.get_change(&change_id).await.expect("get change");
    assert_eq!(info.id, change_id);
}
