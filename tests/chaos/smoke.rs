//! The rig itself: three agents in three namespaces, reaching each other and the target only
//! through the relay, agree that the target is healthy; taking the target down is decided by
//! all three, and Route 53's data plane (in the hub) then answers the secondary. Proves the
//! harness before any scenario relies on it.

use std::time::Duration;

use crate::report::Row;
use crate::rig::{Options, Rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_agree_through_the_relay() {
    let mut row = Row::new("smoke");
    let mut opts = Options::new("smoke");
    opts.dataplane = true;
    let rig = Rig::start(opts).await;
    rig.wait_until(
        Duration::from_secs(20),
        "every agent healthy with all three ballots live",
        || async {
            rig.statuses().await.iter().all(|s| {
                let (decision, outcome) = Rig::decision(s);
                decision == "healthy"
                    && outcome == "healthy"
                    && s.members
                        .iter()
                        .all(|m| m.ballot.as_ref().is_some_and(|b| b.live))
            })
        },
    )
    .await;
    for i in 0..rig.len() {
        assert_eq!(rig.health(i).await, Some(200), "agent {i} health answer");
    }
    // Ballots crossed the relay: every inter-region agent link carried connections.
    for from in 0..rig.len() {
        for to in (0..rig.len()).filter(|t| *t != from) {
            let stats = rig
                .topo
                .relay()
                .stats(from, quorumgate_testkit::Home::Region(to));
            assert!(
                stats.connections > 0,
                "no traffic {from} -> {to}: {stats:?}"
            );
        }
    }
    // And the decision follows the target: down for everyone is decided everywhere.
    rig.target.set_down(true);
    rig.wait_until(
        Duration::from_secs(20),
        "every agent decides unhealthy",
        || async {
            rig.statuses()
                .await
                .iter()
                .all(|s| Rig::decision(s).0 == "unhealthy")
        },
    )
    .await;
    // Route 53's checkers see the agents' 503s: DNS answers the secondary.
    rig.wait_until(
        Duration::from_secs(30),
        "DNS answers the secondary",
        || async { rig.dns_answer().await == crate::dns::SECONDARY_IP },
    )
    .await;
    row.flips_expected = 1;
    row.flips_seen =
        u64::from((0..rig.len()).all(|i| rig.transitions(i, crate::rig::CHECK).len() == 1));
    row.transitions = rig.transition_counts(crate::rig::CHECK);
    row.rejected = rig.rejected().await;
    assert_eq!(row.flips_seen, 1, "transitions: {:?}", row.transitions);
    assert!(
        row.rejected.is_empty(),
        "unexpected rejections: {:?}",
        row.rejected
    );
    row.pass();
}
