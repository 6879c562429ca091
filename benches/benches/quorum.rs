//! Criterion benches of the quorum hot paths. Figures and the command: `benches/README.md`.
//!
//! - `ballot/encode_sign`: `SignedBallot::sign` (canonical encoding + ed25519) + `to_wire`.
//! - `ballot/verify`: `SignedBallot::from_wire` + `verify_signature`, nothing else.
//! - `ballot/handle_ballot`: `BallotBook::handle_ballot` of a ballot with a fresh seq (parse,
//!   decode, verify, all receipt checks, replace the member's previous ballot).
//! - `tally/tally_all` and `tally/engine_evaluate`: 5 members × 10,000 checks.
//! - `tally/lookups_*`: diagnostics, the tally's status lookups alone (see README).
//!
//! Throughput is in observations (ballot benches) or checks (tally benches).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use quorum::{tally_all, SignedBallot, Status};
use quorumgate_benches::{checks, Cluster, NOW};

const SIZES: [usize; 2] = [10, 10_000];

fn ballot(c: &mut Criterion) {
    let cluster = Cluster::new(5);
    let key = &cluster.keys[0];
    let mut g = c.benchmark_group("ballot");
    for n in SIZES {
        let checks = checks(n);
        let ballot = cluster.ballot(0, 1, &checks);
        let wire = SignedBallot::sign(&ballot, key).to_wire();
        g.throughput(Throughput::Elements(n as u64));

        g.bench_with_input(BenchmarkId::new("encode_sign", n), &ballot, |b, ballot| {
            b.iter(|| SignedBallot::sign(black_box(ballot), key).to_wire());
        });

        let vk = key.verifying_key();
        g.bench_with_input(BenchmarkId::new("verify", n), &wire, |b, wire| {
            b.iter(|| {
                let signed = SignedBallot::from_wire(black_box(wire)).expect("parses");
                signed.verify_signature(&vk).expect("verifies");
            });
        });

        // Each iteration gets a ballot with the next seq (signed outside the timing), so the
        // book accepts it as new and drops the one it replaces, as in steady state.
        let mut book = cluster.book();
        let mut seq = 0u64;
        let mut next = || {
            seq += 1;
            let b = quorum::Ballot::new(
                ballot.agent().clone(),
                seq,
                ballot.issued_at(),
                ballot.valid_for_ms(),
                *ballot.config_digest(),
                ballot.observations().to_vec(),
            )
            .expect("valid ballot");
            SignedBallot::sign(&b, key).to_wire()
        };
        let batch = if n <= 10 {
            BatchSize::SmallInput
        } else {
            BatchSize::PerIteration
        };
        g.bench_function(BenchmarkId::new("handle_ballot", n), |b| {
            b.iter_batched(
                &mut next,
                |wire| {
                    let accepted = book.handle_ballot(NOW, &wire).expect("accepted");
                    (accepted, wire)
                },
                batch,
            );
        });
    }
    g.finish();
}

fn tally(c: &mut Criterion) {
    const MEMBERS: usize = 5;
    const CHECKS: usize = 10_000;
    let cluster = Cluster::new(MEMBERS);
    let checks = checks(CHECKS);
    let id = format!("{MEMBERS}x{CHECKS}");
    let mut g = c.benchmark_group("tally");
    g.throughput(Throughput::Elements(CHECKS as u64));

    let book = cluster.full_book(&checks);
    assert_eq!(book.live(NOW).count(), MEMBERS);
    g.bench_function(BenchmarkId::new("tally_all", &id), |b| {
        b.iter(|| tally_all(black_box(&book), &checks, NOW));
    });

    // Steady state: the down checks' machines fall during warm-up (3 rounds), after which
    // every round tallies, steps 10,000 machines and records 10,000 verdicts.
    let mut engine = cluster.full_engine(&checks);
    g.bench_function(BenchmarkId::new("engine_evaluate", &id), |b| {
        b.iter(|| engine.evaluate(black_box(NOW)));
    });

    // Diagnostics, not crate code: the per-check status lookups alone, done as the tally
    // does them (a binary search per ballot per check) and as a merge walk over the sorted
    // observation lists (the checks are sorted too). They show what dominates `tally_all`.
    let live: Vec<_> = book.live(NOW).collect();
    g.bench_function(BenchmarkId::new("lookups_binary_search", &id), |b| {
        b.iter(|| {
            let mut unhealthy = 0usize;
            for c in &checks {
                for v in &live {
                    let s = v.ballot.observation(black_box(c)).map(|o| o.status);
                    unhealthy += usize::from(s == Some(Status::Unhealthy));
                }
            }
            unhealthy
        });
    });
    g.bench_function(BenchmarkId::new("lookups_merge_walk", &id), |b| {
        b.iter(|| {
            let mut unhealthy = 0usize;
            let mut cursors: Vec<_> = live.iter().map(|v| (v.ballot.observations(), 0)).collect();
            for c in &checks {
                for (obs, i) in &mut cursors {
                    while *i < obs.len() && obs[*i].check < *black_box(c) {
                        *i += 1;
                    }
                    let hit = obs.get(*i).filter(|o| o.check == *c);
                    unhealthy += usize::from(hit.is_some_and(|o| o.status == Status::Unhealthy));
                }
            }
            unhealthy
        });
    });
    g.finish();
}

criterion_group!(benches, ballot, tally);
criterion_main!(benches);
