//! Scenario 4: a byzantine minority. Member usw2's agent is stopped and its key is used by the
//! test's [`Byzantine`] member, which, from inside usw2's region namespace (so the relay sees
//! it come from us-west-2, 35 ms away), sends the two honest agents every round: validly signed
//! "Unhealthy for everything" ballots, replays of their own earlier ballots, ballots forged in
//! their names, and ballots signed under another config digest.
//!
//! Asserted: the lies are accepted and counted in the tally, yet nothing flips (no decision
//! transition, no gate decision, no Route 53 request that changes anything, epoch 1 kept);
//! every bad ballot is refused with its reason and counted by that reason on the honest
//! agents; and the honest majority keeps deciding (fresh tallies with the liar outvoted).

use std::collections::BTreeMap;
use std::time::Duration;

use quorumgate::status::Status;
use quorumgate_testkit::Home;

use crate::byzantine_member::{Byzantine, Peer, KINDS};
use crate::gate::{GateRig, Knobs, PRIMARY_IP};
use crate::report::Row;
use crate::rig::{Options, Rig};

/// The member whose key the byzantine task holds (usw2).
const BYZ: usize = 1;
/// Rounds the byzantine member sends, a round interval apart (8 s and more: many fall times).
const ROUNDS: u32 = 20;

/// Rejected ballots by reason, summed over these status documents.
fn rejected(statuses: &[Status]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in statuses {
        for (reason, n) in &s.rejected {
            *out.entry(reason.clone()).or_default() += n;
        }
    }
    out
}

/// `quorumgate_ballots_rejected_total{reason="…"}` in Prometheus text, 0 when absent.
fn rejected_metric(text: &str, reason: &str) -> f64 {
    let prefix = format!("quorumgate_ballots_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Decision transitions (all checks) per honest agent, from their audit logs.
fn transitions(rig: &Rig, honest: &[usize]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for &i in honest {
        let n = rig
            .audit(i)
            .iter()
            .filter(|r| r.event == "transition")
            .count();
        out.insert(rig.id(i).to_owned(), n as u64);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byzantine_minority_flips_nothing_and_every_bad_ballot_is_counted() {
    let mut row = Row::new("4_byzantine_minority");
    let mut rig = GateRig::start(Options::new("byz"), &Knobs::default()).await;
    let honest: Vec<usize> = (0..rig.len()).filter(|i| *i != BYZ).collect();

    // The real usw2 agent stops; from now on usw2 is the byzantine task.
    rig.kill(BYZ).await;
    rig.reset_stats().await;
    let mut before = Vec::new();
    for &i in &honest {
        before.push(rig.status(i).await);
    }
    let rejected_before = rejected(&before);
    let transitions_before = transitions(&rig, &honest);
    let decisions_before: usize = honest
        .iter()
        .map(|&i| rig.gate_events(i, "gate_decision").len())
        .sum();

    let byz_id = rig.id(BYZ).to_owned();
    let peers = honest
        .iter()
        .map(|&i| Peer {
            id: rig.id(i).to_owned(),
            url: format!("http://{}/", rig.agents[i].vip)
                .parse()
                .expect("vip url"),
        })
        .collect();
    let byz = Byzantine::new(
        &rig.agents[BYZ].config_path,
        &byz_id,
        rig.agents[BYZ].key.clone(),
        peers,
        quorumgate::tls::client_config(None, None).expect("client tls"),
    )
    .expect("byzantine member");
    let round = rig.round();
    let links_before: Vec<u64> = honest
        .iter()
        .map(|&i| rig.topo.relay().stats(BYZ, Home::Region(i)).connections)
        .collect();

    // While it runs, watch the honest agents: the liar's ballot must really be counted
    // (live, unhealthy) and outvoted, and no decision may move.
    let done = tokio_util::sync::CancellationToken::new();
    let sender = async {
        let out = rig
            .topo
            .in_region(BYZ, move || byz.run(ROUNDS, round))
            .await;
        done.cancel();
        out
    };
    let watch = async {
        let mut outvoted = 0u32;
        let mut seen_lie = 0u32;
        let mut bad = Vec::new();
        // Until the sender is done (bounded by a deadline whatever happens).
        let end = tokio::time::Instant::now() + Duration::from_secs(90);
        while !done.is_cancelled() && tokio::time::Instant::now() < end {
            for &i in &honest {
                let Ok(s) = rig.try_status(i).await else {
                    continue;
                };
                for c in &s.checks {
                    if c.decision != "healthy" {
                        bad.push(format!("{} decided {} {}", s.agent, c.id, c.decision));
                    }
                    if c.observations
                        .get(&byz_id)
                        .is_some_and(|o| o.live && o.status == "unhealthy")
                    {
                        seen_lie += 1;
                    }
                    if let Some(t) = &c.tally {
                        if t.outcome == "healthy" && t.unhealthy == 1 && t.healthy == 2 {
                            outvoted += 1;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (outvoted, seen_lie, bad)
    };
    let (sent, (outvoted, seen_lie, bad)) = tokio::join!(sender, watch);
    let byz = sent.expect("region thread").expect("byzantine run");

    // Every answer was the one the kind deserves: lies accepted, the rest refused by reason.
    for (kind, t) in &byz.tally {
        assert!(t.sent > 0, "{kind}: nothing sent");
        assert!(
            t.unexpected.is_empty() && t.as_expected == t.sent,
            "{kind}: {} of {} as expected; unexpected answers: {:#?}",
            t.as_expected,
            t.sent,
            t.unexpected
        );
    }
    // It really came from usw2's region, through the relay (its own agent is dead, so every
    // connection on these links is the byzantine task's).
    let sent_total: u64 = byz.tally.values().map(|t| t.sent).sum();
    for (n, &i) in honest.iter().enumerate() {
        let opened = rig.topo.relay().stats(BYZ, Home::Region(i)).connections - links_before[n];
        assert!(
            opened >= sent_total / honest.len() as u64,
            "{opened} connections usw2 -> {} for {sent_total} ballots to {} agents",
            rig.id(i),
            honest.len()
        );
    }
    assert!(bad.is_empty(), "a decision moved: {bad:?}");
    assert!(
        seen_lie > 0,
        "the liar's Unhealthy ballots were never counted as live"
    );
    assert!(
        outvoted > 0,
        "never saw a tally of 2 healthy against the liar's 1 unhealthy"
    );

    // Counted by reason on the honest agents: bad signatures and drifted digests come from
    // nowhere else, so exactly as many; replays also arise from ordinary pulls, so at least.
    let mut after = Vec::new();
    for &i in &honest {
        after.push(rig.status(i).await);
    }
    let rejected_after = rejected(&after);
    let delta = |reason: &str| {
        rejected_after.get(reason).copied().unwrap_or(0)
            - rejected_before.get(reason).copied().unwrap_or(0)
    };
    row.note(format!(
        "{} lies accepted and outvoted; honest tallies 2h/1u seen {outvoted}x",
        byz.tally["unhealthy"].sent
    ));
    for (kind, reason) in KINDS {
        let Some(reason) = reason else { continue };
        let sent = byz.tally[kind].sent;
        if reason == "replay" {
            assert!(
                delta(reason) >= sent,
                "{reason}: {} counted, {sent} sent",
                delta(reason)
            );
        } else {
            assert_eq!(
                delta(reason),
                sent,
                "{reason} counted vs sent: {rejected_after:?}"
            );
        }
        row.note(format!("{kind}: {sent} sent, refused as {reason}"));
    }
    // The exported counter says the same as the status document.
    for (i, s) in honest.iter().zip(&after) {
        let m = rig.metrics(*i).await;
        for (reason, n) in &s.rejected {
            let exported = rejected_metric(&m, reason);
            assert!(
                exported >= *n as f64,
                "{}: metric {reason} {exported} < status {n}",
                s.agent
            );
        }
    }

    // Nothing flipped and nothing was written; the honest majority kept deciding.
    let transitions_after = transitions(&rig, &honest);
    assert_eq!(
        transitions_after, transitions_before,
        "decision transitions"
    );
    let decisions_after: usize = honest
        .iter()
        .map(|&i| rig.gate_events(i, "gate_decision").len())
        .sum();
    assert_eq!(decisions_after, decisions_before, "no gate decision");
    assert_eq!(rig.applied_batches().await, 0, "no Route 53 change");
    assert_eq!(rig.fence().await.map(|f| f.epoch), Some(1), "epoch 1 kept");
    assert_eq!(rig.answer().await, [PRIMARY_IP.to_owned()]);
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a.rounds > b.rounds + u64::from(ROUNDS) / 2,
            "{} stopped deciding",
            a.agent
        );
        assert_eq!(
            Rig::decision(a),
            ("healthy".into(), "healthy".into()),
            "{}",
            a.agent
        );
    }
    rig.verify_audits();

    row.flips_expected = 0;
    row.flips_seen = (transitions_after.values().sum::<u64>()
        - transitions_before.values().sum::<u64>())
        + rig.applied_batches().await as u64;
    row.transitions = transitions_after;
    row.rejected = rejected_after;
    row.pass();
}
