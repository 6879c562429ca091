//! Equivocation (one member signing two different ballots under one seq) against honest
//! traffic: an honest member's ballots — each seq signed once — delivered late, twice, in any
//! order, are never taken for equivocation; a liar's second ballot under a seq the book
//! remembers always is.

// Test code: a failed unwrap is a failed test (clippy.toml allows it in #[test] fns only).
#![allow(clippy::unwrap_used)]

mod common;

use common::{book_config, Cluster, Draft, T0, VALID_MS};
use proptest::collection::vec;
use proptest::prelude::*;
use quorum::{BallotBook, Status, UnixMillis};

/// An honest member's stream: rising seqs (the wall clock in ms, or +1 within one ms),
/// issued at the seq's instant, votes that change from ballot to ballot.
fn honest_stream() -> impl Strategy<Value = Vec<(u64, bool)>> {
    vec((1u64..1_500, any::<bool>()), 1..40).prop_map(|steps| {
        let mut seq = T0.0;
        steps
            .into_iter()
            .map(|(gap, healthy)| {
                seq += gap;
                (seq, healthy)
            })
            .collect()
    })
}

fn status(healthy: bool) -> Status {
    if healthy {
        Status::Healthy
    } else {
        Status::Unhealthy
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Deliveries: any order, each ballot any number of times (push and pull), at a receiver
    /// clock inside the ballots' validity. No delivery is ever refused as equivocation, and
    /// the book ends up holding the newest ballot delivered.
    #[test]
    fn honest_reordered_streams_are_never_equivocation(
        stream in honest_stream(),
        order in vec(any::<prop::sample::Index>(), 1..120),
    ) {
        let c = Cluster::new(3);
        let wires: Vec<Vec<u8>> = stream
            .iter()
            .map(|(seq, healthy)| {
                Draft::new(&c.ids[0], &[("app", status(*healthy))])
                    .seq(*seq)
                    .issued_at(UnixMillis(*seq))
                    .wire(&c.keys[0])
            })
            .collect();
        let last_issue = stream.last().map_or(T0.0, |(s, _)| *s);
        let now = UnixMillis(last_issue + u64::from(VALID_MS) / 4);
        let mut book = BallotBook::new(c.membership.clone(), book_config());
        let mut newest = None;
        for pick in order {
            let i = pick.index(wires.len());
            if let Err(r) = book.handle_ballot(now, &wires[i]) {
                prop_assert_ne!(r.reason(), "equivocation", "{}", r);
            }
            newest = newest.max(Some(stream[i].0));
        }
        prop_assert!(book.equivocations().next().is_none());
        let held = book.latest(&c.ids[0]).map(|v| v.ballot.seq());
        // The newest delivered is held unless it was too old to be live when it came.
        prop_assert!(held.is_none() || held <= newest);
    }

    /// A liar signs a second, different ballot under one of its seqs. Whatever the order, once
    /// both versions reached the book and the first was accepted with fewer than
    /// REMEMBERED_SEQS newer ballots accepted after it, the second is refused as equivocation
    /// and the proof names that seq.
    #[test]
    fn a_second_ballot_under_a_used_seq_is_caught(
        stream in honest_stream(),
        lie_at in any::<prop::sample::Index>(),
        later in vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let c = Cluster::new(3);
        let draft = |seq: u64, healthy: bool, detail_ms: u64| {
            Draft::new(&c.ids[0], &[("app", status(healthy))])
                .seq(seq)
                .issued_at(UnixMillis(seq + detail_ms))
                .wire(&c.keys[0])
        };
        let i = lie_at.index(stream.len());
        let (seq, healthy) = stream[i];
        let first = draft(seq, healthy, 0);
        let second = draft(seq, !healthy, 1);
        let last_issue = stream.last().map_or(T0.0, |(s, _)| *s);
        let now = UnixMillis(last_issue + 10);
        let mut book = BallotBook::new(c.membership.clone(), book_config());
        // Everything up to and including the first version, then some newer honest ballots
        // in any order, then the lie.
        for (s, h) in &stream[..i] {
            let _ = book.handle_ballot(now, &draft(*s, *h, 0));
        }
        prop_assume!(book.handle_ballot(now, &first).is_ok());
        for pick in later {
            let (s, h) = stream[i + pick.index(stream.len() - i)];
            let _ = book.handle_ballot(now, &draft(s, h, 0));
        }
        let err = book.handle_ballot(now, &second).unwrap_err();
        prop_assert_eq!(err.reason(), "equivocation");
        prop_assert_eq!(book.equivocation(&c.ids[0]).map(|p| p.seq), Some(seq));
    }
}
