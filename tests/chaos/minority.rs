//! Scenario 1: a minority region partitioned from the other regions and from the target.
//!
//! euw1's region is isolated (every link to and from it is blackholed, including its path to
//! the target) for twice the hold-down. The gate must not move: the isolated agent cannot form
//! a quorum and says so (NoQuorum), its decision and health answer hold; the two others keep
//! deciding (a fresh healthy tally every round, with two votes). After the heal all three
//! agree again, and no agent ever recorded a transition.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::report::Row;
use crate::rig::{Options, Rig, CHECK};

/// The isolated region / agent.
const ISOLATED: usize = 2;

/// Reasons a ballot may legitimately be refused after a partition heals: pushes held back
/// by the blackhole arrive late (older than what the receiver holds, or already expired).
const LATE_DELIVERY: [&str; 2] = ["expired", "replay"];

/// (healthy, unhealthy) votes of the app check's last tally.
fn majority_tally(s: &quorumgate::status::Status) -> Option<(usize, usize)> {
    let c = s.checks.iter().find(|c| c.id == CHECK)?;
    c.tally.as_ref().map(|t| (t.healthy, t.unhealthy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_minority_reports_no_quorum_and_nothing_flips() {
    let mut row = Row::new("1_minority_partition");
    let mut opts = Options::new("minor");
    opts.dataplane = true;
    let rig = Rig::start(opts).await;
    rig.wait_converged(
        Duration::from_secs(20),
        "all three agree before the partition",
    )
    .await;
    let hold_down = Duration::from_millis(rig.opts.hold_down_ms);
    let iso = rig.id(ISOLATED).to_owned();

    rig.topo.relay().isolate(ISOLATED);
    rig.wait_until(
        Duration::from_secs(15),
        "the isolated agent reports NoQuorum and its last ballot lapsed everywhere",
        || async {
            let statuses = rig.statuses().await;
            // (A tally is computed each round, liveness when the status is read: wait for a
            // tally of the majority made after the isolated ballot lapsed.)
            Rig::decision(&statuses[ISOLATED]).1 == "no_quorum"
                && statuses.iter().all(|s| {
                    s.members
                        .iter()
                        .filter(|m| m.id == iso && !m.is_self)
                        .all(|m| m.ballot.as_ref().is_none_or(|b| !b.live))
                })
                && statuses
                    .iter()
                    .filter(|s| s.agent != iso)
                    .all(|s| majority_tally(s) == Some((2, 0)))
        },
    )
    .await;

    // Hold the partition for two hold-downs, watching every agent and DNS.
    let polls_before = rig.dns.as_ref().map_or(0, crate::dns::ChaosDns::polls);
    let end = Instant::now() + 2 * hold_down;
    let mut last_tally_at = [0u64; 3];
    let mut fresh_tallies = [0u32; 3];
    let mut samples = 0u32;
    while Instant::now() < end {
        samples += 1;
        for (i, s) in rig.statuses().await.iter().enumerate() {
            let (decision, outcome) = Rig::decision(s);
            assert_eq!(
                decision, "healthy",
                "agent {i} flipped during the partition"
            );
            assert_eq!(
                rig.health(i).await,
                Some(200),
                "agent {i}'s health answer moved during the partition"
            );
            let check = s.checks.iter().find(|c| c.id == CHECK).expect("check");
            let tally = check.tally.as_ref().expect("tally");
            if i == ISOLATED {
                assert_eq!(
                    outcome, "no_quorum",
                    "the isolated agent must report NoQuorum, not decide alone"
                );
                // It cannot see the target either: its own vote accuses (it is no quorum),
                // or, for two rounds after its round timer fired late on a loaded machine,
                // abstains (reason `starved`).
                let own = &check.observations[&iso];
                assert!(
                    own.status == "unhealthy"
                        || (own.status == "abstain" && own.reason == "starved"),
                    "isolated agent still sees the target: {own:?}"
                );
                assert!(
                    s.members
                        .iter()
                        .filter(|m| !m.is_self)
                        .all(|m| m.ballot.as_ref().is_none_or(|b| !b.live)),
                    "the isolated agent still holds a live peer ballot"
                );
            } else {
                assert_eq!(outcome, "healthy", "majority agent {i} stopped deciding");
                assert_eq!(
                    (tally.healthy, tally.unhealthy),
                    (2, 0),
                    "majority agent {i} should count exactly the two majority votes"
                );
                let iso_ballot = s.members.iter().find(|m| m.id == iso).expect("member");
                assert!(
                    iso_ballot.ballot.as_ref().is_none_or(|b| !b.live),
                    "majority agent {i} still counts the isolated agent's ballot"
                );
                if tally.at_ms > last_tally_at[i] {
                    fresh_tallies[i] += 1;
                    last_tally_at[i] = tally.at_ms;
                }
            }
        }
        assert_eq!(
            rig.dns_answer().await,
            crate::dns::PRIMARY_IP,
            "DNS moved during the partition"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Route 53 was looking: every checker polled every agent throughout the partition.
    let polls = rig.dns.as_ref().map_or(0, crate::dns::ChaosDns::polls) - polls_before;
    let rounds = (2 * hold_down).as_secs_f64() / (10.0 * crate::dns::TIME_SCALE);
    assert!(
        polls as f64 >= 9.0 * (rounds - 2.0),
        "Route 53's checkers polled only {polls} times during the partition"
    );
    // "Keeps deciding": a new tally kept coming on both majority agents.
    for i in (0..rig.len()).filter(|i| *i != ISOLATED) {
        assert!(
            fresh_tallies[i] >= samples / 2,
            "majority agent {i} produced only {} fresh tallies in {samples} samples",
            fresh_tallies[i]
        );
    }
    let link = rig
        .topo
        .relay()
        .stats(ISOLATED, quorumgate_testkit::Home::Region(0));
    row.note(format!(
        "euw1 isolated {:?}: NoQuorum in all {samples} samples; use1/usw2 decided healthy 2/0",
        2 * hold_down
    ));

    rig.topo.relay().heal_all();
    rig.wait_converged(
        Duration::from_secs(20),
        "all three agree again after the heal",
    )
    .await;

    row.transitions = rig.transition_counts(CHECK);
    row.rejected = rig.rejected().await;
    row.flips_seen = row.transitions.values().sum();
    for s in rig.statuses().await {
        let c = s.checks.iter().find(|c| c.id == CHECK).expect("check");
        assert_eq!(c.transitions, 0, "{} transitioned", s.agent);
    }
    assert_eq!(row.flips_seen, 0, "transitions: {:?}", row.transitions);
    let unexpected: BTreeSet<&String> = row
        .rejected
        .keys()
        .filter(|r| !LATE_DELIVERY.contains(&r.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "rejections other than late deliveries: {:?} (link euw1->use1: {link:?})",
        row.rejected
    );
    row.pass();
}
