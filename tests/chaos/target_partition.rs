//! Scenario 2: the target partitioned from one region only.
//!
//! usw2's path to the hub (where the target lives) is blackholed; the agents' links to each
//! other stay up. usw2 "hallucinates": its probe fails while the target is fine. Without
//! abstention its Unhealthy vote reaches the others and is outvoted 2:1; with abstention
//! configured (a control probe on a canary in the hub, which the same cut takes away) usw2
//! notices that its own network is broken and votes Abstain instead of accusing. Either way
//! no agent flips.

use std::time::Duration;

use tokio::time::Instant;

use crate::report::Row;
use crate::rig::{Options, Rig, CHECK};
use quorumgate_testkit::Home;

/// The region cut from the target.
const BLIND: usize = 1;

/// What the others must see of the blind agent's vote, and the tally they must reach.
struct Expect {
    vote: &'static str,
    tally: (usize, usize, usize),
}

async fn run(scenario: &str, tag: &str, abstain_after: Option<u32>, expect: Expect) {
    let mut row = Row::new(scenario);
    let mut opts = Options::new(tag);
    opts.canary_abstain_after = abstain_after;
    opts.dataplane = true;
    let rig = Rig::start(opts).await;
    rig.wait_converged(Duration::from_secs(20), "all three agree before the cut")
        .await;
    let blind = rig.id(BLIND).to_owned();

    rig.topo.relay().cut(BLIND, Home::Hub);
    rig.wait_until(
        Duration::from_secs(15),
        &format!(
            "every agent counts usw2's vote as {} in a {:?} tally",
            expect.vote, expect.tally
        ),
        || async {
            rig.statuses().await.iter().all(|s| {
                let c = s.checks.iter().find(|c| c.id == CHECK).expect("check");
                let tally = c
                    .tally
                    .as_ref()
                    .map(|t| (t.healthy, t.unhealthy, t.abstain));
                tally == Some(expect.tally)
                    && c.observations
                        .get(&blind)
                        .is_some_and(|o| o.status == expect.vote && o.live)
            })
        },
    )
    .await;

    // Hold the cut for two hold-downs: nothing moves, the vote stays what it is. One thing
    // may legitimately interfere on a loaded machine: an agent whose round timer fired late
    // abstains from accusing for two rounds (reason `starved`); such samples are counted, and
    // must stay a minority.
    let hold_down = Duration::from_millis(rig.opts.hold_down_ms);
    let end = Instant::now() + 2 * hold_down;
    let (mut samples, mut expected_samples, mut starved_samples) = (0u32, 0u32, 0u32);
    while Instant::now() < end {
        samples += 1;
        assert_eq!(
            rig.dns_answer().await,
            crate::dns::PRIMARY_IP,
            "DNS moved while one region was blind"
        );
        let mut as_expected = true;
        for (i, s) in rig.statuses().await.iter().enumerate() {
            let (decision, outcome) = Rig::decision(s);
            assert_eq!(decision, "healthy", "agent {i} flipped");
            assert_eq!(outcome, "healthy", "agent {i} lost its healthy quorum");
            assert_eq!(rig.health(i).await, Some(200), "agent {i}'s health answer");
            let c = s.checks.iter().find(|c| c.id == CHECK).expect("check");
            let t = c.tally.as_ref().expect("tally");
            let tally = (t.healthy, t.unhealthy, t.abstain);
            let vote = &c.observations[&blind];
            if vote.status == expect.vote {
                assert_eq!(
                    tally, expect.tally,
                    "agent {i}'s tally (healthy, unhealthy, abstain)"
                );
            } else {
                assert_eq!(
                    (vote.status.as_str(), vote.reason.as_str()),
                    ("abstain", "starved"),
                    "agent {i} sees usw2's vote as neither {} nor a starved abstention",
                    expect.vote
                );
                assert_eq!(tally, (2, 0, 1), "agent {i}'s tally while usw2 is starved");
                as_expected = false;
            }
            let canary_failing = s.controls.iter().any(|c| c.id == "canary" && !c.healthy);
            if i == BLIND && abstain_after.is_some() {
                let why = s.abstaining.as_deref().unwrap_or_default();
                assert!(
                    why.contains("canary"),
                    "usw2's status must say why it abstains, got {:?}",
                    s.abstaining
                );
                assert!(
                    canary_failing,
                    "usw2's canary probe should fail: {:?}",
                    s.controls
                );
            } else {
                // A single slow canary answer on a loaded machine is noise; abstaining for it is
                // not (the limit is `control_failures_to_abstain` consecutive failures).
                let streak = s.controls.iter().map(|c| c.consecutive_failures).max();
                assert!(
                    abstain_after.is_none_or(|n| streak.unwrap_or(0) < n),
                    "agent {i}'s canary keeps failing: {:?}",
                    s.controls
                );
                assert!(
                    s.abstaining
                        .as_deref()
                        .is_none_or(|w| w.contains("starved")),
                    "agent {i} abstains for another reason than starvation: {:?}",
                    s.abstaining
                );
                if s.abstaining.is_some() {
                    starved_samples += 1;
                }
            }
        }
        expected_samples += u32::from(as_expected);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        expected_samples * 2 > samples,
        "usw2's vote was {} in only {expected_samples} of {samples} samples",
        expect.vote
    );
    let blind_view = rig.status(BLIND).await;
    let own = &blind_view
        .checks
        .iter()
        .find(|c| c.id == CHECK)
        .expect("check")
        .observations[&blind];
    row.note(format!(
        "usw2 cut from the target {:?}: vote {} ({}{}), tally {:?} in {expected_samples}/{samples} \
         samples; starved abstentions seen in {starved_samples} agent-samples",
        2 * hold_down,
        own.status,
        own.reason,
        blind_view
            .abstaining
            .as_deref()
            .map(|w| format!(": {w}"))
            .unwrap_or_default(),
        expect.tally
    ));

    rig.topo.relay().heal_all();
    rig.wait_converged(
        Duration::from_secs(20),
        "all three agree again after the heal",
    )
    .await;
    if abstain_after.is_some() {
        rig.wait_until(Duration::from_secs(10), "usw2 stops abstaining", || async {
            rig.status(BLIND).await.abstaining.is_none()
        })
        .await;
    }

    row.transitions = rig.transition_counts(CHECK);
    row.flips_seen = row.transitions.values().sum();
    row.rejected = rig.rejected().await;
    assert_eq!(row.flips_seen, 0, "transitions: {:?}", row.transitions);
    // The agents' links were never cut: no ballot had a reason to be refused.
    assert!(row.rejected.is_empty(), "rejections: {:?}", row.rejected);
    row.pass();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_region_is_outvoted_without_abstention() {
    run(
        "2a_target_partition",
        "tpart",
        None,
        Expect {
            vote: "unhealthy",
            tally: (2, 1, 0),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_region_abstains_with_a_control_probe() {
    run(
        "2b_target_partition_abstain",
        "tpabs",
        Some(2),
        Expect {
            vote: "abstain",
            tally: (2, 0, 1),
        },
    )
    .await;
}
