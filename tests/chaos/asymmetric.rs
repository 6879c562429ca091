//! Scenario 3: an asymmetric partition, then flapping links, then flapping links while the
//! target itself flaps faster than the hold-down.
//!
//! A. usw2 -> use1 is cut, use1 -> usw2 is not (use1 still reaches usw2, usw2 no longer
//!    reaches use1). No decision may move; usw2's status shows its pushes to use1 failing.
//! B. Links are cut and restored every second (a region isolated, a one-way cut, ...); the
//!    target is healthy. No decision may move.
//! C. The same link flapping while the target goes down for 2 s out of every 6 s: each agent
//!    may follow, but never faster than hold_down allows. We count each agent's transitions
//!    (from its audit log) and assert every two consecutive ones are at least `hold_down`
//!    apart — the target's own rhythm would have them 2 s apart, so this fails if hold-down
//!    is not enforced.

use std::time::Duration;

use quorumgate_testkit::{Home, Relay};
use tokio::time::Instant;

use crate::report::Row;
use crate::rig::{Options, Rig, CHECK};

/// One step of the link-flapping schedule (never two regions isolated at once, so a quorum
/// exists somewhere at every moment).
fn flap(relay: &Relay, step: usize) {
    relay.heal_all();
    match step % 6 {
        0 => relay.isolate(0),
        2 => {
            // One-way cuts in two directions at once.
            relay.cut(1, Home::Region(2));
            relay.cut(0, Home::Region(1));
        }
        4 => relay.isolate(2),
        _ => {}
    }
}

/// Samples every agent until `until`, asserting no decision changes; runs `tick` every
/// `every`. Returns the number of samples.
async fn hold_steady(
    rig: &Rig,
    until: Instant,
    every: Option<Duration>,
    mut tick: impl FnMut(usize),
) -> u32 {
    let mut samples = 0;
    let mut step = 0;
    let mut next_tick = Instant::now();
    while Instant::now() < until {
        if let Some(every) = every.filter(|_| Instant::now() >= next_tick) {
            tick(step);
            step += 1;
            next_tick += every;
        }
        for (i, s) in rig.statuses().await.iter().enumerate() {
            let c = s.checks.iter().find(|c| c.id == CHECK).expect("check");
            assert_eq!(
                c.decision, "healthy",
                "agent {i} flipped (phase with a healthy target)"
            );
            assert_eq!(c.transitions, 0, "agent {i} transitioned");
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_and_flapping_links_never_flap_decisions_beyond_hold_down() {
    let mut row = Row::new("3_asymmetric_flapping");
    let rig = Rig::start(Options::new("asym")).await;
    rig.wait_converged(Duration::from_secs(20), "all three agree before the chaos")
        .await;
    let relay = rig.topo.relay();
    let hold_down_ms = rig.opts.hold_down_ms;

    // A. usw2 -> use1 cut, use1 -> usw2 open.
    let before = relay.stats(1, Home::Region(0));
    relay.cut(1, Home::Region(0));
    let samples_a = hold_steady(&rig, Instant::now() + Duration::from_secs(5), None, |_| {}).await;
    let usw2 = rig.status(1).await;
    let to_use1 = usw2
        .members
        .iter()
        .find(|m| m.id == "use1")
        .and_then(|m| m.last_push.clone())
        .unwrap_or_default();
    assert!(
        !to_use1.starts_with("ok"),
        "usw2's pushes to use1 should fail across the one-way cut, status says {to_use1:?}"
    );
    let use1 = rig.status(0).await;
    let to_usw2 = use1
        .members
        .iter()
        .find(|m| m.id == "usw2")
        .and_then(|m| m.last_push.clone())
        .unwrap_or_default();
    assert_eq!(to_usw2, "ok", "use1 -> usw2 is not cut");
    let after = relay.stats(1, Home::Region(0));
    assert!(
        after.connections > before.connections,
        "usw2 stopped even trying to reach use1: {before:?} -> {after:?}"
    );
    row.note(format!(
        "A: usw2->use1 cut 5 s ({samples_a} samples): usw2's push to use1 {to_use1:?}, use1's to usw2 ok; no flip"
    ));

    // B. Flapping links, healthy target.
    let samples_b = hold_steady(
        &rig,
        Instant::now() + Duration::from_secs(6),
        Some(Duration::from_secs(1)),
        |k| {
            flap(relay, k);
        },
    )
    .await;
    row.note(format!(
        "B: links flapped every 1 s for 6 s ({samples_b} samples): no flip"
    ));

    // C. Flapping links and a target down 2 s of every 6 s, three times.
    let phase_c = Instant::now();
    let cycle = Duration::from_secs(6);
    let down_for = Duration::from_secs(2);
    let mut step = 0usize;
    let mut next_flap = Instant::now();
    let end_c = phase_c + 3 * cycle;
    while Instant::now() < end_c {
        let into_cycle = phase_c.elapsed().as_millis() % cycle.as_millis();
        rig.target.set_down(into_cycle < down_for.as_millis());
        if Instant::now() >= next_flap {
            flap(relay, step);
            step += 1;
            next_flap += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rig.target.set_down(false);
    relay.heal_all();
    rig.wait_converged(
        Duration::from_secs(30),
        "all three agree on a healthy target after the chaos",
    )
    .await;

    // Every transition, per agent, from its audit log. A correct gate makes at most one per
    // hold-down (plus the first) in the window from phase C to the convergence.
    let window_ms = u64::try_from(phase_c.elapsed().as_millis()).unwrap_or(u64::MAX);
    let bound = 1 + window_ms / hold_down_ms;
    let mut busiest = 0usize;
    let mut min_gap = u64::MAX;
    for i in 0..rig.len() {
        let ts = rig.transitions(i, CHECK);
        for pair in ts.windows(2) {
            let gap = pair[1].0.saturating_sub(pair[0].0);
            min_gap = min_gap.min(gap);
            assert!(
                gap >= hold_down_ms,
                "agent {} transitioned {gap} ms after its previous transition (hold_down {hold_down_ms} ms): {ts:?}",
                rig.id(i)
            );
        }
        assert!(
            ts.len() as u64 <= bound,
            "agent {} made {} transitions in {window_ms} ms (at most {bound} with hold_down)",
            rig.id(i),
            ts.len()
        );
        busiest = busiest.max(ts.len());
    }
    row.transitions = rig.transition_counts(CHECK);
    row.flips_seen = row.transitions.values().sum();
    // An upper bound: what hold-down allows each agent in the window.
    row.flips_expected = bound * rig.len() as u64;
    row.rejected = rig.rejected().await;
    // Non-vacuous: the target's flapping did move the decisions, so the spacing was tested.
    assert!(
        busiest >= 2,
        "no agent transitioned twice; the hold-down property was not exercised: {:?}",
        row.transitions
    );
    row.note(format!(
        "C: target down 2 s of every 6 s x3 with flapping links: per-agent transitions {:?}, \
         all >= hold_down ({hold_down_ms} ms) apart (closest: {min_gap} ms), <= {bound} each in {window_ms} ms \
         (flips expected = that upper bound)",
        row.transitions
    ));
    row.pass();
}
