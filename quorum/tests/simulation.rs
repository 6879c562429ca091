//! Deterministic simulation of whole clusters of gate machines (`quorum::gate::machine`)
//! against a simulated Route 53, with faults the way the world makes them: several at once.
//!
//! Each seed picks a cluster (3 or 5 agents, skewed clocks, each learning the quorum's
//! decisions with its own lag), a failover gate's policy (wait period, velocity, auto
//! failback, promotion) and a fault level, then runs an active phase — the primary and
//! secondary failing and recovering, Route 53 requests throttled, refused with
//! PriorRequestNotComplete, lost, answered never, arriving after the client gave up, retried
//! by the SDK after they landed; audit appends failing; agents crashing and restarting from
//! their durable log; operators freezing, approving and overriding — and a calm phase.
//!
//! Checked after every step:
//! - a planned batch is sent at most once (no two batches from one read view);
//! - no batch is sent without its decision (with certificates that verify, or an operator's
//!   authority) and the batch itself durable in the sender's audit log;
//! - against Route 53's own history: `wait_period` and `max_changes` per `window` hold for
//!   every change but a break-glass override;
//! - an operator command is reported applied only once its audit record is durable;
//! - only the winner of an epoch promotes, only for a failover to the secondary, never twice;
//!
//! and at the end: every agent's view equals Route 53's, nothing pending, and a failover still
//! in place was promoted by its winner (or the failure audited for an operator).
//!
//! `QG_SIM_SCHEDULES=1000000 cargo test --release -p quorum --test simulation` runs more;
//! `QG_SIM_SEED=<n>` runs one (the reproducer a failure prints).

#![allow(clippy::unwrap_used)]
mod common;
mod sim;

use std::time::Instant;

#[test]
fn seeded_schedules_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("QG_SIM_SEED") {
        Ok(s) => vec![s.trim().parse().expect("QG_SIM_SEED: a number")],
        Err(_) => {
            let n: u64 = std::env::var("QG_SIM_SCHEDULES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(10_000);
            let base: u64 = std::env::var("QG_SIM_BASE")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (base..base + n).collect()
        }
    };
    let started = Instant::now();
    let mut total = sim::Report::default();
    for seed in &seeds {
        match sim::run(*seed) {
            Ok(r) => {
                total.steps += r.steps;
                total.batches += r.batches;
                total.won_after_lost_response += r.won_after_lost_response;
                total.promotions += r.promotions;
                total.commands_applied += r.commands_applied;
                total.restarts += r.restarts;
            }
            Err(why) => panic!(
                "seed {seed}: {why}\nreproduce: QG_SIM_SEED={seed} cargo test -p quorum --test simulation"
            ),
        }
    }
    eprintln!(
        "{} schedules in {:.1} s: {total:?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    if seeds.len() >= 1_000 {
        // Not vacuous: the runs wrote, won after lost responses, promoted, obeyed operators
        // and restarted.
        assert!(total.batches > seeds.len(), "{total:?}");
        assert!(total.won_after_lost_response > 0, "{total:?}");
        assert!(total.promotions > 0, "{total:?}");
        assert!(total.commands_applied > 0, "{total:?}");
        assert!(total.restarts > 0, "{total:?}");
    }
}
