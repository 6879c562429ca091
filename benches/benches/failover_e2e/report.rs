//! The per-repetition table and the summary: median, p95, min and max per phase, against the
//! target and against Route 53's own health checks.

use quorumgate_benches::stats::summarize;

use crate::measure::Episode;
use crate::rig::Knobs;

/// One repetition: the failover, the failback, and the Route 53 requests made before the
/// failover's batch was accepted (every agent, reads included).
#[derive(Debug, Clone)]
pub struct Rep {
    pub failover: Episode,
    pub failback: Episode,
    pub lists: usize,
    pub changes: usize,
    pub get_changes: usize,
    /// The failover's requests, as times after the first.
    pub timeline: String,
    /// The agents' round timers in firing order, just before the repetition.
    pub order: String,
}

fn s(ms: u64) -> String {
    format!("{:.2}", ms as f64 / 1000.0)
}

pub fn header() {
    println!();
    println!(
        "seconds. detect: primary down -> first agent's transition (quorum decision); write: \
         -> batch accepted; TOTAL: both.\n\
         first: the agent that decided first; wlag: -> the writer's gate_decision; plan: -> its \
         gate_write (reads done); commit: -> gate_outcome applied.\n\
         R53 reqs: List/Change/GetChange requests from the mark to the accepted batch (all \
         agents). rec.*: the same for the failback once the primary is back. rounds: the \
         agents' round timers in firing order."
    );
    println!(
        "{:>3}  {:>8} {:>8} {:>8}  {:>6} {:>6} {:>6} {:>6} {:>6}  {:>9}  {:>8} {:>8} {:>8}  rounds",
        "rep",
        "detect",
        "write",
        "TOTAL",
        "first",
        "wlag",
        "plan",
        "commit",
        "writer",
        "R53 reqs",
        "rec.det",
        "rec.wr",
        "RECOVERY"
    );
}

pub fn row(i: usize, r: &Rep) {
    let f = &r.failover;
    let b = &r.failback;
    println!(
        "{:>3}  {:>8} {:>8} {:>8}  {:>6} {:>6} {:>6} {:>6} {:>6}  {:>9}  {:>8} {:>8} {:>8}  {}",
        i + 1,
        s(f.detect_ms()),
        s(f.write_ms()),
        s(f.total_ms()),
        f.first_agent,
        s(f.writer_lag_ms()),
        s(f.plan_ms()),
        s(f.commit_ms()),
        f.writer,
        format!("{}L+{}C+{}G", r.lists, r.changes, r.get_changes),
        s(b.detect_ms()),
        s(b.write_ms()),
        s(b.total_ms()),
        r.order,
    );
}

fn line(label: &str, values: &[u64]) {
    if let Some(x) = summarize(values) {
        println!(
            "{label:<46} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            x.median / 1000.0,
            x.p95 / 1000.0,
            x.min / 1000.0,
            x.max / 1000.0
        );
    }
}

/// Prints the summary of `reps`.
pub fn summary(reps: &[Rep], knobs: &Knobs) {
    let col = |f: fn(&Episode) -> u64, back: bool| -> Vec<u64> {
        reps.iter()
            .map(|r| f(if back { &r.failback } else { &r.failover }))
            .collect()
    };
    println!();
    println!(
        "failover_e2e: {} repetitions; seconds (p95: nearest rank)",
        reps.len()
    );
    println!(
        "{:<46} {:>7} {:>7} {:>7} {:>7}",
        "phase", "median", "p95", "min", "max"
    );
    line(
        "target fails -> quorum decision (first agent)",
        &col(Episode::detect_ms, false),
    );
    line(
        "quorum decision -> fenced batch accepted",
        &col(Episode::write_ms, false),
    );
    line(
        "TOTAL: target fails -> batch accepted",
        &col(Episode::total_ms, false),
    );
    line(
        "  of which: first decision -> writer's decision",
        &col(Episode::writer_lag_ms, false),
    );
    line(
        "            writer's decision -> batch planned",
        &col(Episode::plan_ms, false),
    );
    line(
        "            batch sent -> accepted",
        &col(Episode::commit_ms, false),
    );
    line(
        "recovery: target back -> quorum decision",
        &col(Episode::detect_ms, true),
    );
    line(
        "recovery: quorum decision -> failback accepted",
        &col(Episode::write_ms, true),
    );
    line(
        "RECOVERY: target back -> failback accepted",
        &col(Episode::total_ms, true),
    );

    let Some(total) = summarize(&col(Episode::total_ms, false)) else {
        return;
    };
    let fall_ms = knobs.round_ms * u64::from(knobs.fall_after);
    let target_ms = fall_ms + 1_500;
    let (median, p95) = (total.median, total.p95);
    println!();
    println!(
        "target: median <= fall time + 1.5 s = {} x {:.1} s + 1.5 s = {:.1} s -> {} (median {:.2} s, {:+.2} s; p95 {:.2} s)",
        knobs.fall_after,
        knobs.round_ms as f64 / 1000.0,
        target_ms as f64 / 1000.0,
        if median <= target_ms as f64 { "MET" } else { "MISSED" },
        median / 1000.0,
        (median - target_ms as f64) / 1000.0,
        p95 / 1000.0,
    );
    // Route 53's own health checks are measured, not estimated: the `route53_compare` bench
    // runs them and the quorum's calculated check on the same failure in the data-plane
    // emulator (benches/README.md, "Route 53 alone vs the quorum").
    println!(
        "Route 53's own health checks on the same kind of failure: cargo bench -p quorumgate-benches \
         --bench route53_compare (measured, benches/README.md); both then wait out the record's TTL \
         ({} s here) in resolvers.",
        crate::emulator::RECORD_TTL_S,
    );
    let reqs: Vec<u64> = reps
        .iter()
        .map(|r| (r.lists + r.changes + r.get_changes) as u64)
        .collect();
    if let Some(x) = summarize(&reqs) {
        println!(
            "Route 53 requests from the mark to the accepted batch (all agents): median {:.0}, max {:.0}",
            x.median, x.max
        );
    }
    if let Some(r) = reps.first() {
        println!("rep 1's requests: {}", r.timeline);
    }
    // The preferred writer decides on its own round tick: later in the round than the first
    // agent, or a round later when it tallied its peers' previous ballots.
    let (prompt, later): (Vec<&Rep>, Vec<&Rep>) =
        reps.iter().partition(|r| r.failover.writer_lag_ms() < 50);
    let median_total = |rs: &[&Rep]| {
        let v: Vec<u64> = rs.iter().map(|r| r.failover.total_ms()).collect();
        summarize(&v).map_or("-".to_owned(), |x| format!("{:.2}", x.median / 1000.0))
    };
    println!(
        "the writer was (among) the first to decide {} times (TOTAL median {} s) and decided \
         later {} times (TOTAL median {} s)",
        prompt.len(),
        median_total(&prompt),
        later.len(),
        median_total(&later),
    );
}
