//! Scenario 7: a real failure of the primary with every kind of noise on at once.
//!
//! - 35 ms one-way latency on every link (the rig's default: us-east-1 ↔ us-west-2);
//! - the link between us-east-1 and us-west-2 flapping, both directions cut and restored every
//!   1.5 s (a blackhole while cut);
//! - a byzantine fourth member (`apse1`, run by the test from inside eu-west-1's namespace,
//!   whose links do not flap) sending Unhealthy-for-everything, replayed, forged and
//!   drifted-digest ballots every round;
//! - us-west-2's agent running 300 ms ahead (libfaketime), within `max_clock_skew` (500 ms).
//!
//! With four members the quorum is three: the three honest agents decide, the liar is
//! outvoted while the primary is up and adds nothing the honest ones do not already say once it
//! is down. Asserted: during 8 s of noise alone nothing flips; once the target really fails,
//! the gate fails over exactly once (one batch applied by the emulator, epoch 1 → 2, one
//! `applied` outcome) within a liveness deadline of fall time + exchange time + wait period +
//! writer stagger + the write + generous slack. The measured time goes into the report row; it
//! is a reported figure, not a performance assertion (the failover bench measures that).

use std::collections::BTreeMap;
use std::time::Duration;

use quorumgate_testkit::Home;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::byzantine_member::{Byzantine, Peer};
use crate::gate::{ExtraMember, GateRig, Knobs, PRIMARY_IP, SECONDARY_IP};
use crate::report::Row;
use crate::rig::{Options, Rig, CHECK};

/// The two regions whose link flaps (us-east-1, us-west-2).
const FLAP: (usize, usize) = (0, 1);
const FLAP_EVERY: Duration = Duration::from_millis(1_500);
/// At most this many cut/restore cycles (bounds the loop whatever happens).
const MAX_FLAPS: u32 = 60;
/// The agent whose clock runs ahead, and by how much (libfaketime syntax, seconds).
const SKEWED: usize = 1;
const SKEW: &str = "+0.3";
/// The byzantine member sends from this region's namespace (eu-west-1).
const BYZ_HOME: usize = 2;
/// Noise alone before the failure.
const QUIET: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_failure_under_noise_fails_over_once_within_the_deadline() {
    let mut row = Row::new("7_failure_with_noise");
    let opts = Options::new("fnz").skew_clock(SKEWED, SKEW);
    assert_eq!(opts.latency, Duration::from_millis(35));
    let key = quorumgate::keys::generate().expect("key");
    let extra = ExtraMember {
        id: "apse1".to_owned(),
        region: "ap-southeast-1".to_owned(),
        home: BYZ_HOME,
        key: key.clone(),
    };
    let knobs = Knobs {
        writer_stagger: "500ms",
        ..Knobs::default()
    };
    let rig = GateRig::start_with(opts, &knobs, Some(&extra)).await;
    rig.reset_stats().await;
    let all = rig.all();
    let mut before = Vec::new();
    for &i in &all {
        before.push(rig.status(i).await);
    }
    assert_eq!(before[0].members_total, 4, "four members configured");
    assert_eq!(before[0].quorum, 3);
    // libfaketime took: the skewed agent's clock reads ahead of its neighbour's (the skewed
    // one read first, so the gap is the skew minus one status round trip).
    let ahead = rig.status(SKEWED).await.now_ms as i64 - rig.status(0).await.now_ms as i64;
    assert!(
        (150..=500).contains(&ahead),
        "usw2's clock is {ahead} ms off, wanted about {SKEW} s"
    );

    let peers = all
        .iter()
        .map(|&i| Peer {
            id: rig.id(i).to_owned(),
            url: format!("http://{}/", rig.agents[i].vip)
                .parse()
                .expect("vip url"),
        })
        .collect();
    let byz = Byzantine::new(
        &rig.agents[0].config_path,
        &extra.id,
        key,
        peers,
        quorumgate::tls::client_config(None, None).expect("client tls"),
    )
    .expect("byzantine member");

    let round = rig.round();
    let stop = CancellationToken::new();
    let byz_stop = stop.clone();
    let sender = rig
        .topo
        .in_region(BYZ_HOME, move || byz.run_until(round, 400, byz_stop));
    let flapper = async {
        let relay = rig.topo.relay();
        let mut flaps = 0u32;
        while !stop.is_cancelled() && flaps < MAX_FLAPS {
            relay.cut(FLAP.0, Home::Region(FLAP.1));
            relay.cut(FLAP.1, Home::Region(FLAP.0));
            flaps += 1;
            tokio::select! {
                () = tokio::time::sleep(FLAP_EVERY) => {}
                () = stop.cancelled() => {}
            }
            relay.heal(FLAP.0, Home::Region(FLAP.1));
            relay.heal(FLAP.1, Home::Region(FLAP.0));
            tokio::select! {
                () = tokio::time::sleep(FLAP_EVERY) => {}
                () = stop.cancelled() => {}
            }
        }
        flaps
    };
    let scenario = async {
        // Phase 1: the noise alone. Nothing may move.
        let mut moved = Vec::new();
        let quiet_end = Instant::now() + QUIET;
        while Instant::now() < quiet_end {
            for &i in &all {
                let Ok(s) = rig.try_status(i).await else {
                    continue;
                };
                moved.extend(
                    s.checks
                        .iter()
                        .filter(|c| c.decision != "healthy")
                        .map(|c| format!("{} decided {} {}", s.agent, c.id, c.decision)),
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let answer_before_failure = rig.answer().await;
        let writes_before_failure = rig.applied_batches().await;
        let decisions_before_failure: usize = all
            .iter()
            .map(|&i| rig.gate_events(i, "gate_decision").len())
            .sum();

        // Phase 2: the target really fails.
        let failed_at = Instant::now();
        rig.target.set_down(true);
        let mut measured = None;
        while failed_at.elapsed() < deadline(&rig) {
            if rig.answer().await == [SECONDARY_IP.to_owned()] {
                measured = Some(failed_at.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if measured.is_some() {
            rig.wait_gates("every agent at active=secondary, epoch 2", |g| {
                g.current == "active=secondary" && g.epoch == 2 && !g.busy
            })
            .await;
            // A second write, were one coming, would show within a few rounds.
            tokio::time::sleep(round * 8).await;
        }
        stop.cancel();
        (
            moved,
            answer_before_failure,
            writes_before_failure,
            decisions_before_failure,
            measured,
        )
    };
    let (sent, flaps, (moved, answer_before, writes_before, decisions_before, measured)) =
        tokio::join!(sender, flapper, scenario);
    let byz = sent.expect("region thread").expect("byzantine run");
    rig.topo.relay().heal_all();

    let limit = deadline(&rig);
    assert!(
        moved.is_empty(),
        "a decision moved before the failure: {moved:?}"
    );
    assert_eq!(writes_before, 0, "no write before the failure");
    assert_eq!(answer_before, [PRIMARY_IP.to_owned()]);
    assert_eq!(decisions_before, 0, "no gate decision before the failure");
    let measured = measured.unwrap_or_else(|| {
        panic!(
            "no failover within the liveness deadline {limit:?}\n{}",
            rig.logs()
        )
    });

    // Exactly once.
    let applied = rig.applied_batches().await;
    assert_eq!(applied, 1, "exactly one batch applied by Route 53");
    let fence = rig.fence().await.expect("fence");
    assert_eq!(fence.epoch, 2, "{fence:?}");
    assert_eq!(rig.answer().await, [SECONDARY_IP.to_owned()]);
    let applied_outcomes: usize = all
        .iter()
        .map(|&i| {
            rig.gate_events(i, "gate_outcome")
                .iter()
                .filter(|o| o["result"] == "applied")
                .count()
        })
        .sum();
    assert_eq!(applied_outcomes, 1, "one agent's batch applied");
    // Each honest agent flipped `app` exactly once and `standby` never.
    let mut transitions = BTreeMap::new();
    for &i in &all {
        let app = rig.transitions(i, CHECK);
        assert_eq!(app.len(), 1, "{}: {app:?}", rig.id(i));
        assert_eq!(app[0].2, "unhealthy", "{}: {app:?}", rig.id(i));
        assert!(rig.transitions(i, "standby").is_empty(), "{}", rig.id(i));
        transitions.insert(rig.id(i).to_owned(), app.len() as u64);
    }

    // The noise was really on: links flapped, the skewed agent's ballots were accepted (no
    // from_future anywhere), the byzantine member's lies were accepted and its forgeries and
    // drifted ballots refused by reason.
    assert!(flaps >= 3, "only {flaps} flaps");
    let stats = rig.topo.relay().stats(FLAP.0, Home::Region(FLAP.1));
    assert!(stats.connections > 0, "{stats:?}");
    let mut after = Vec::new();
    for &i in &all {
        after.push(rig.status(i).await);
    }
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    for s in &after {
        for (r, n) in &s.rejected {
            *rejected.entry(r.clone()).or_default() += n;
        }
    }
    assert_eq!(
        rejected.get("from_future").copied().unwrap_or(0),
        0,
        "the skewed agent is within the limit: {rejected:?}"
    );
    for s in after.iter().filter(|s| s.agent != rig.id(SKEWED)) {
        let m = s
            .members
            .iter()
            .find(|m| m.id == rig.id(SKEWED))
            .expect("skewed member");
        assert!(
            m.ballot.as_ref().is_some_and(|b| b.live),
            "{} holds no live ballot of the skewed agent: {m:?}",
            s.agent
        );
    }
    for kind in ["unhealthy", "bad_signature", "config_drift"] {
        let t = &byz.tally[kind];
        assert!(
            t.sent > 0 && t.unexpected.is_empty(),
            "{kind}: {} sent, unexpected answers: {:#?}",
            t.sent,
            t.unexpected
        );
    }
    for reason in ["bad_signature", "config_drift"] {
        assert_eq!(
            rejected.get(reason).copied().unwrap_or(0),
            byz.tally[reason].sent,
            "{reason}: {rejected:?}"
        );
    }
    // Replays are sent too; a captured ballot can still be news to an agent cut off from
    // its author (that is a genuine ballot arriving late, which the book rightly takes), so
    // only what it answered is reported.
    let replay = &byz.tally["replay"];
    assert!(replay.sent > 0);
    rig.verify_audits();

    row.flips_expected = 1;
    row.flips_seen = applied as u64;
    row.transitions = transitions;
    row.rejected = rejected;
    row.note(format!(
        "failover (target down -> record at secondary) in {} ms; liveness deadline {} ms",
        measured.as_millis(),
        limit.as_millis()
    ));
    row.note(format!(
        "noise: 35 ms latency, {flaps} flaps of use1<->usw2, usw2 clock {SKEW} s, byzantine apse1 \
         ({} lies, {} replays of which {} refused as replay)",
        byz.tally["unhealthy"].sent, replay.sent, replay.as_expected
    ));
    row.pass();
}

/// Liveness deadline from the target failing to the record at the secondary: the fall time
/// (fall_after rounds plus one round of probe phase), two rounds of exchange, the gate's
/// wait period (1 s), a writer stagger per member ahead of the writer, the write itself
/// (three requests at 5 per second over 35 ms links) — about 5.5 s — and 25 s of slack for a
/// loaded 2-core machine.
fn deadline(rig: &Rig) -> Duration {
    let round = rig.round();
    let fall = round * (rig.opts.fall_after + 1);
    let exchange = round * 2;
    let wait_period = Duration::from_secs(1);
    let stagger = Duration::from_millis(500) * 3;
    let write = Duration::from_millis(800);
    fall + exchange + wait_period + stagger + write + Duration::from_secs(25)
}
