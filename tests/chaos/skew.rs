//! Scenario 5: one agent's wall clock off, by less and by more than `max_clock_skew`.
//!
//! euw1 runs under libfaketime (its real `clock_gettime(CLOCK_REALTIME)` is shifted; its
//! monotonic clock, which drives the timers, is not). `max_clock_skew` is 500 ms, ballots
//! count for 1.6 s.
//!
//! - +300 ms: within the limit everything works: no ballot refused, all three ballots live
//!   everywhere, and a real target failure is decided by all three.
//! - +3 s: the others refuse its ballots as `from_future`, it refuses theirs as `expired`;
//!   it reports NoQuorum while the majority keeps deciding (and fails over on a real failure,
//!   which euw1 alone cannot follow). Its own status says why: each push result carries the
//!   peer's refusal (`rejected: from_future: ...`), and its last rejection names `expired`.
//! - -3 s: the mirror image: the others refuse its ballots as `expired`, it refuses theirs as
//!   `from_future`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::report::Row;
use crate::rig::{Options, Rig, CHECK};

const SKEWED: usize = 2;

/// Options with euw1's clock shifted by `offset` (libfaketime syntax: "+0.3", "-3").
fn skewed(tag: &str, offset: &str) -> Options {
    let opts = Options::new(tag).skew_clock(SKEWED, offset);
    assert_eq!(opts.max_clock_skew_ms, 500);
    assert_eq!(opts.valid_for_ms, 1_600);
    opts
}

/// euw1's wall clock minus use1's, from their status documents (read in that order, so the
/// measurement errs upwards by the time between the two reads).
async fn measured_skew_ms(rig: &Rig) -> i64 {
    let use1 = rig.status(0).await.now_ms;
    let euw1 = rig.status(SKEWED).await.now_ms;
    i64::try_from(euw1).unwrap_or(i64::MAX) - i64::try_from(use1).unwrap_or(i64::MAX)
}

/// Takes the target down and waits until every agent in `expect_flip` decides unhealthy;
/// then checks the others did not move.
async fn fail_target(rig: &Rig, expect_flip: &[usize]) {
    rig.target.set_down(true);
    rig.wait_until(
        Duration::from_secs(20),
        "the agents that have a quorum decide unhealthy",
        || async {
            let s = rig.statuses().await;
            expect_flip
                .iter()
                .all(|i| Rig::decision(&s[*i]).0 == "unhealthy")
        },
    )
    .await;
    for (i, s) in rig.statuses().await.iter().enumerate() {
        let want = if expect_flip.contains(&i) {
            "unhealthy"
        } else {
            "healthy"
        };
        assert_eq!(Rig::decision(s).0, want, "agent {i}'s decision");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skew_within_the_limit_changes_nothing() {
    let mut row = Row::new("5a_clock_skew_within");
    let rig = Rig::start(skewed("skewin", "+0.3")).await;
    rig.wait_converged(
        Duration::from_secs(20),
        "all three agree with every ballot live",
    )
    .await;
    let skew = measured_skew_ms(&rig).await;
    assert!(
        (200..1_000).contains(&skew),
        "euw1's clock should be ~300 ms ahead, measured {skew} ms"
    );
    // A few seconds of normal operation, then a real failure, decided by all three.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.wait_converged(Duration::from_secs(10), "still all live after 3 s")
        .await;
    fail_target(&rig, &[0, 1, 2]).await;

    row.flips_expected = 3;
    row.transitions = rig.transition_counts(CHECK);
    row.flips_seen = row.transitions.values().sum();
    row.rejected = rig.rejected().await;
    assert_eq!(row.flips_seen, 3, "transitions: {:?}", row.transitions);
    assert!(
        row.rejected.is_empty(),
        "ballots refused within the skew limit: {:?}",
        row.rejected
    );
    row.note(format!(
        "euw1 +300 ms (measured {skew} ms; limit 500 ms): no refusals, all ballots live, \
         failure decided by all 3"
    ));
    row.pass();
}

/// euw1 off by `offset`: the others refuse its ballots with `theirs`, it refuses theirs with
/// `mine`.
async fn beyond(scenario: &str, tag: &str, offset: &str, theirs: &str, mine: &str) {
    let mut row = Row::new(scenario);
    let rig = Rig::start(skewed(tag, offset)).await;
    let skew = measured_skew_ms(&rig).await;
    let want: f64 = offset.parse().expect("offset");
    assert!(
        (skew as f64 - want * 1000.0).abs() < 700.0,
        "euw1's clock should be off by {offset} s, measured {skew} ms"
    );
    let counts = |s: &quorumgate::status::Status, reason: &str| -> u64 {
        s.rejected.get(reason).copied().unwrap_or(0)
    };
    rig.wait_until(
        Duration::from_secs(20),
        &format!("the others refuse euw1's ballots as {theirs}, euw1 refuses theirs as {mine}"),
        || async {
            let s = rig.statuses().await;
            counts(&s[0], theirs) >= 3
                && counts(&s[1], theirs) >= 3
                && counts(&s[SKEWED], mine) >= 3
                && Rig::decision(&s[SKEWED]).1 == "no_quorum"
                && Rig::decision(&s[0]).1 == "healthy"
                && Rig::decision(&s[1]).1 == "healthy"
        },
    )
    .await;

    let statuses = rig.statuses().await;
    for (i, s) in statuses.iter().enumerate() {
        let c = s.checks.iter().find(|c| c.id == CHECK).expect("check");
        if i == SKEWED {
            // Why, in its own status: the peers' refusals of its pushes...
            for m in s.members.iter().filter(|m| !m.is_self) {
                let push = m.last_push.as_deref().unwrap_or_default();
                assert!(
                    push.contains(&format!("rejected: {theirs}")),
                    "euw1's status should show {} refusing its ballot as {theirs}, got {push:?}",
                    m.id
                );
                assert!(m.ballot.as_ref().is_none_or(|b| !b.live));
            }
            // ...and its own refusals of theirs.
            let last = s.last_rejection.as_deref().unwrap_or_default();
            assert!(
                last.starts_with(mine),
                "euw1's last rejection should be {mine}, got {last:?}"
            );
            assert_eq!(counts(s, theirs), 0, "euw1 refused for the wrong reason");
        } else {
            let t = c.tally.as_ref().expect("tally");
            assert_eq!(
                (t.healthy, t.unhealthy),
                (2, 0),
                "agent {i} must decide on the two good ballots alone"
            );
            assert_eq!(counts(s, mine), 0, "agent {i} refused for the wrong reason");
            let skewed_ballot = s.members.iter().find(|m| m.id == "euw1").expect("member");
            assert!(
                skewed_ballot.ballot.as_ref().is_none_or(|b| !b.live),
                "agent {i} counts euw1's skewed ballot"
            );
        }
    }
    let euw1 = &statuses[SKEWED];
    let example = euw1
        .members
        .iter()
        .find_map(|m| m.last_push.clone())
        .unwrap_or_default();

    // The majority still fails over on a real failure; euw1 alone cannot.
    fail_target(&rig, &[0, 1]).await;
    assert_eq!(
        Rig::decision(&rig.status(SKEWED).await).1,
        "no_quorum",
        "euw1 must not decide alone"
    );

    row.flips_expected = 2;
    row.transitions = rig.transition_counts(CHECK);
    row.flips_seen = row.transitions.values().sum();
    row.rejected = rig.rejected().await;
    let by_reason: BTreeMap<&str, u64> = [theirs, mine]
        .iter()
        .map(|r| (*r, row.rejected.get(*r).copied().unwrap_or(0)))
        .collect();
    assert_eq!(row.flips_seen, 2, "transitions: {:?}", row.transitions);
    assert_eq!(row.transitions.get("euw1"), Some(&0));
    let others: Vec<&String> = row
        .rejected
        .keys()
        .filter(|r| r.as_str() != theirs && r.as_str() != mine)
        .collect();
    assert!(others.is_empty(), "unexpected reasons: {:?}", row.rejected);
    row.note(format!(
        "euw1 {offset} s (measured {skew} ms; limit 0.5 s): refused {by_reason:?}; \
         euw1 NoQuorum, majority failed over"
    ));
    row.note(format!("euw1's status, push to a peer: {example}"));
    row.pass();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skew_ahead_beyond_the_limit_is_refused_as_from_the_future() {
    beyond(
        "5b_clock_skew_ahead",
        "skewfw",
        "+3",
        "from_future",
        "expired",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skew_behind_beyond_the_limit_is_refused_as_expired() {
    beyond(
        "5c_clock_skew_behind",
        "skewbk",
        "-3",
        "expired",
        "from_future",
    )
    .await;
}
