//! Control-plane gates end to end: three real agent processes decide, and write Route 53 (the
//! strict emulator) through the fence, within the safety rules. Issue 3, scenarios 2–7.

use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::time::Duration;

use quorumgate::target_app::TargetApp;
use serde_json::json;

use super::emulator::max_in_window;
use super::gate_rig::{a_record, failover_gate, standby_check, GateRig, PRIMARY_IP, SECONDARY_IP};
use super::{fence_now, writer, GATE, RECORD_NAME, ZONE_NAME};
use crate::support::{exe, metric};

/// Policy knobs a scenario changes.
struct Knobs {
    writer_stagger: &'static str,
    max_changes: u32,
    auto_failback: bool,
    requests_per_second: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            writer_stagger: "500ms",
            max_changes: 5,
            auto_failback: false,
            requests_per_second: 1,
        }
    }
}

/// A [`GateRig`] with a standby app, and a control-plane failover gate `app`:
/// primary = check `app` (the cluster's app), secondary = check `standby`; plus the same
/// decisions in a dry-run gate `dry`.
struct Rig {
    rig: GateRig,
    standby: TargetApp,
}

impl Deref for Rig {
    type Target = GateRig;
    fn deref(&self) -> &GateRig {
        &self.rig
    }
}

impl DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut GateRig {
        &mut self.rig
    }
}

impl Rig {
    async fn start(knobs: Knobs) -> Self {
        let standby = TargetApp::start().await.expect("standby app");
        let rig = GateRig::start(knobs.requests_per_second, |_, zone_id| {
            let policy = format!(
                "wait_period = \"1s\"\nmax_changes = {}\nauto_failback = {}\n",
                knobs.max_changes, knobs.auto_failback
            );
            [
                standby_check(&standby.url()),
                failover_gate(
                    GATE,
                    zone_id,
                    RECORD_NAME,
                    &format!(
                        "{policy}window = \"1h\"\nwriter_stagger = \"{}\"",
                        knobs.writer_stagger
                    ),
                ),
                "\n# The same decisions in dry-run: computed, logged and audited, never written."
                    .to_owned(),
                failover_gate(
                    "dry",
                    zone_id,
                    &format!("dry.{ZONE_NAME}"),
                    &format!("mode = \"dry-run\"\n{policy}"),
                ),
            ]
            .concat()
        })
        .await;
        Self { rig, standby }
    }
}

/// Scenario 2: the primary fails for everyone → exactly one fenced batch moves the record to
/// the secondary, the epoch goes 1 → 2, every agent adopts it, and the audit logs verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_pair_moves_once_through_the_fence() {
    let rig = Rig::start(Knobs::default()).await;
    rig.emu.reset_stats().await;
    rig.c.app.set_down(true);
    rig.wait_answer(SECONDARY_IP).await;
    rig.wait_gates("every agent at active=secondary, epoch 2", |g| {
        g.current == "active=secondary" && g.epoch == 2 && !g.busy
    })
    .await;
    assert_eq!(rig.epoch().await, 2, "the fence moved exactly one epoch");
    assert_eq!(rig.accepted_writes().await, 1, "exactly one batch landed");
    // Who writes first is a liveness choice (the lowest-ranked member whose ballots it sees as
    // live goes first, the others wait rank × stagger): on a loaded machine a member can see
    // euw1's ballots expire and go first. Safety is what this test checks: whoever the fence
    // names wrote the one batch, and persisted it.
    let fence = fence_now(&rig.api, &rig.zone_id).await.expect("fence");
    let writer = rig
        .c
        .written
        .agents
        .iter()
        .position(|a| a.id == fence.by)
        .unwrap_or_else(|| panic!("the fence names a member: {}", fence.by));

    // The decision (with its certificates) and the batch were persisted by the writer; every
    // agent's log verifies (chain, certificates, commands).
    let decisions = rig.audit_events(writer, "gate_decision");
    assert!(
        decisions.iter().any(|d| d["to"] == "active=secondary"
            && d["reason"] == "failover"
            && d["certificates"].as_array().is_some_and(|c| !c.is_empty())),
        "{decisions:?}"
    );
    let writes = rig.audit_events(writer, "gate_write");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0]["batch"].to_string().contains(SECONDARY_IP));
    let outcomes = rig.audit_events(writer, "gate_outcome");
    assert!(outcomes
        .iter()
        .any(|o| o["result"] == "applied" && o["epoch"] == 2));
    rig.verify_audits();
    // `quorumgate status` shows both gates.
    let line = rig.status_line("app");
    assert!(line.contains("active=secondary"), "{line}");
    let line = rig.status_line("dry");
    assert!(line.contains("dry-run"), "{line}");

    // The dry-run gate decided the same move, audited it, and wrote nothing.
    for i in 0..rig.c.len() {
        let s = rig.c.status(i).await;
        let dry = s.gates.iter().find(|g| g.id == "dry").expect("dry gate");
        assert_eq!(dry.mode, "dry-run");
        assert_eq!(dry.current, "active=secondary", "{dry:?}");
        assert_eq!(dry.changes, 1);
        let outcomes = rig.audit_events(i, "gate_outcome");
        assert!(
            outcomes
                .iter()
                .any(|o| o["gate"] == "dry" && o["result"] == "dry_run"),
            "{outcomes:?}"
        );
    }
    let all = super::zone_records(&rig.api, &rig.zone_id).await;
    assert!(
        !all.iter().any(|r| r.name().contains("dry.")),
        "dry-run wrote nothing: {all:?}"
    );
    let m = rig.c.metrics(writer).await;
    assert_eq!(
        metric(
            &m,
            "quorumgate_gate_changes_total",
            "gate=\"app\",mode=\"live\",result=\"applied\""
        ),
        1.0,
        "{m}"
    );
}

/// Scenario 3: all three agents write at the same instant (no stagger): one batch wins, the
/// others lose the race or find it done, nothing partial remains; then a stale writer with an
/// old epoch is refused without touching anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_land_one_batch_and_a_stale_writer_changes_nothing() {
    let rig = Rig::start(Knobs {
        writer_stagger: "0s",
        requests_per_second: 5,
        ..Knobs::default()
    })
    .await;
    rig.emu.reset_stats().await;
    rig.c.app.set_down(true);
    rig.wait_answer(SECONDARY_IP).await;
    rig.wait_gates("every agent at active=secondary, epoch 2", |g| {
        g.current == "active=secondary" && g.epoch == 2 && !g.busy
    })
    .await;
    assert_eq!(rig.accepted_writes().await, 1, "exactly one batch landed");
    assert_eq!(rig.epoch().await, 2);
    let records = super::zone_records(&rig.api, &rig.zone_id).await;
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.name() == RECORD_NAME || r.name().starts_with("_quorumgate."))
        .collect();
    assert_eq!(
        mine.len(),
        2,
        "one A record and one fence, nothing partial: {mine:?}"
    );

    // A writer whose decision was based on epoch 1 (it missed the failover) must not write.
    let stale = writer(rig.api.clone(), &rig.zone_id, "stale-agent");
    let primary = quorumgate::route53::DesiredRecords::new(ZONE_NAME, [a_record(PRIMARY_IP)])
        .expect("records");
    let outcome = stale.apply(1, &primary).await.expect("apply");
    assert!(
        matches!(
            outcome,
            quorumgate::route53::ApplyOutcome::Stale {
                expected_epoch: 1,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(rig.answer().await, [SECONDARY_IP.to_owned()]);
    assert_eq!(rig.epoch().await, 2);
    assert_eq!(rig.accepted_writes().await, 1);
}

/// Scenario 4: every target down → nothing written and an alert; the standby back → failover;
/// the primary back → failback waits for `approve`; `freeze` stops everything; `max_changes`
/// makes further changes wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_rules_fail_open_approval_freeze_and_velocity() {
    let rig = Rig::start(Knobs {
        max_changes: 2,
        ..Knobs::default()
    })
    .await;
    rig.emu.reset_stats().await;

    // Everything looks down: fail open, change nothing, alert.
    rig.standby.set_down(true);
    rig.c.app.set_down(true);
    rig.wait_gates("every agent holds fail_open with an alert", |g| {
        g.last_evaluation == "fail_open" && g.alert
    })
    .await;
    let m = rig.c.metrics(0).await;
    assert_eq!(
        metric(&m, "quorumgate_gate_alert", "gate=\"app\""),
        1.0,
        "{m}"
    );
    assert_eq!(rig.accepted_writes().await, 0, "fail open writes nothing");
    assert_eq!(rig.answer().await, [PRIMARY_IP.to_owned()]);

    // The standby recovers: failover (change 1 of 2).
    rig.standby.set_down(false);
    rig.wait_answer(SECONDARY_IP).await;

    // The primary recovers: failback is deliberate.
    rig.c.app.set_down(false);
    rig.wait_gates("failback awaits approval", |g| {
        g.last_evaluation == "awaiting_approval" && g.alert
    })
    .await;
    assert_eq!(rig.answer().await, [SECONDARY_IP.to_owned()]);
    let (ok, text) = rig.operator(&["approve", "app"]);
    assert!(ok, "{text}");
    assert_eq!(
        text.matches(" ok ").count(),
        3,
        "every agent applied it: {text}"
    );
    rig.wait_answer(PRIMARY_IP).await; // change 2 of 2
    rig.wait_gates("every agent back at the primary", |g| {
        g.current == "active=primary" && !g.busy
    })
    .await;

    // Frozen: the primary fails, nothing moves.
    let (ok, text) = rig.operator(&["freeze", "app"]);
    assert!(ok, "{text}");
    rig.c.app.set_down(true);
    rig.wait_gates("frozen gate holds", |g| {
        g.last_evaluation == "frozen" && g.frozen_by.as_deref() == Some("alice")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rig.answer().await,
        [PRIMARY_IP.to_owned()],
        "frozen: nothing written"
    );

    // Unfrozen, the failover would be the third change in the window: velocity holds it.
    let (ok, text) = rig.operator(&["unfreeze", "app"]);
    assert!(ok, "{text}");
    rig.wait_gates("max_changes reached: velocity hold", |g| {
        g.last_evaluation == "velocity"
    })
    .await;
    assert_eq!(rig.answer().await, [PRIMARY_IP.to_owned()]);
    assert_eq!(
        rig.accepted_writes().await,
        2,
        "exactly the two allowed changes"
    );

    rig.verify_audits();
}

/// Operator commands are authenticated: an unsigned, wrongly signed, unknown-operator,
/// replayed, older-format or other-cluster command is refused by every agent, counted, and
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_or_replayed_operator_commands_change_nothing() {
    use quorum::operator::{Action, OperatorCommand, SignedCommand};
    let mut rig = Rig::start(Knobs::default()).await;
    let save = rig.keys.path().join("freeze.cmd");
    let (ok, text) = rig.operator(&["freeze", "app", "--save", save.to_str().expect("utf-8")]);
    assert!(ok, "{text}");
    rig.wait_gates("frozen everywhere", |g| {
        g.frozen_by.as_deref() == Some("alice")
    })
    .await;
    // A restarted agent restores the freeze (and the operator's last seq) from its audit log.
    rig.c.restart(1).await;
    rig.wait_gates("still frozen after a restart", |g| {
        g.frozen_by.as_deref() == Some("alice")
    })
    .await;
    let (ok, text) = rig.operator(&["unfreeze", "app"]);
    assert!(ok, "{text}");
    rig.wait_gates("unfrozen", |g| g.frozen_by.is_none()).await;

    // The saved freeze, sent again after a newer command: a replay.
    let out = Command::new(exe())
        .args(["resend", "--config"])
        .arg(&rig.c.written.agents[0].config_path)
        .arg(&save)
        .output()
        .expect("run resend");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    // One refusal per agent, and advice that does not tell the operator to re-send.
    assert_eq!(text.matches("rejected: replay").count(), 3, "{text}");
    assert!(
        text.contains("re-sending the same command cannot change that"),
        "{text}"
    );

    // Signed by a key that is not alice's; and by an operator nobody configured.
    let mallory = quorumgate::keys::generate().expect("key");
    let now = quorumgate::clock::Clock::now(&quorumgate::clock::SystemClock::default());
    let ours = rig.cluster_id();
    let command = |operator: &str, cluster: Option<quorum::ClusterId>| OperatorCommand {
        cluster,
        ..OperatorCommand::new(
            ours.clone(),
            quorum::OperatorId::new(operator).expect("id"),
            quorum::GateId::new("app").expect("gate"),
            Action::Freeze,
            now.0 + 1_000,
            now,
            60_000,
        )
    };
    let forge = |operator: &str| {
        let cmd = command(operator, Some(ours.clone()));
        SignedCommand::sign(&cmd, &mallory).expect("sign").to_wire()
    };
    // Alice's own key, but for another cluster (same gate name), or in the old format
    // without a cluster identity.
    let alice = quorumgate::keys::load_signing_key(&rig.operator_key).expect("alice's key");
    let by_alice = |cluster: Option<quorum::ClusterId>| {
        let cmd = command("alice", cluster);
        SignedCommand::sign(&cmd, &alice).expect("sign").to_wire()
    };
    let staging = quorum::ClusterId {
        name: "staging".to_owned(),
        ..ours.clone()
    };
    for (body, reason) in [
        (forge("alice"), "bad_signature"),
        (forge("mallory"), "unknown_operator"),
        (b"not a command".to_vec(), "decode"),
        (by_alice(Some(staging)), "wrong_cluster"),
        (by_alice(None), "old_version"),
    ] {
        for i in 0..rig.c.len() {
            let (code, answer) = rig
                .c
                .request(i, http::Method::POST, "v1/operator", body.clone())
                .await
                .expect("agent reachable");
            let answer = String::from_utf8_lossy(&answer);
            assert_eq!(code, 403, "{reason}: {answer}");
            assert!(answer.contains(reason), "{reason}: {answer}");
        }
    }
    for i in 0..rig.c.len() {
        let m = rig.c.metrics(i).await;
        for reason in [
            "replay",
            "bad_signature",
            "unknown_operator",
            "decode",
            "wrong_cluster",
            "old_version",
        ] {
            assert_eq!(
                metric(
                    &m,
                    "quorumgate_operator_commands_total",
                    &format!("result=\"{reason}\"")
                ),
                1.0,
                "{reason}: {m}"
            );
        }
    }
    // Nothing froze; the audit logs hold only the two genuine commands, and verify.
    for g in rig.gates().await {
        assert!(g.frozen_by.is_none(), "{g:?}");
    }
    for i in 0..rig.c.len() {
        assert_eq!(rig.audit_events(i, "operator_command").len(), 2);
    }
    rig.verify_audits();
}

/// Scenario 5 and 6: Route 53 stalls during a failover — the agents keep answering
/// `/v1/health`, retry with backoff, and once it answers again (first with Throttling and
/// PriorRequestNotComplete) apply the change exactly once, within the request budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_outage_during_failover_is_retried_and_applied_once() {
    let rig = Rig::start(Knobs::default()).await;
    rig.emu.reset_stats().await;
    rig.emu
        .fault(json!({ "kind": "stall", "count": 10000, "stall_ms": 120000 }))
        .await;
    rig.c.app.set_down(true);
    // The data plane does not need the API: every agent reports the quorum's verdict.
    rig.c
        .wait_until(
            Duration::from_secs(20),
            "every agent answers 503",
            || async { rig.c.healths().await.iter().all(|h| *h == Some(503)) },
        )
        .await;
    rig.wait_gates("every agent is retrying", |g| {
        g.retry_at_ms.is_some() || g.busy
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.accepted_writes().await, 0);
    assert!(rig.c.healths().await.iter().all(|h| *h == Some(503)));

    // Back, but throttling first.
    rig.emu.clear_faults().await;
    rig.emu
        .fault(json!({ "faults": [
            { "kind": "throttling", "count": 3, "op": "ChangeResourceRecordSets" },
            { "kind": "prior_request_not_complete", "count": 2, "op": "ChangeResourceRecordSets" },
        ]}))
        .await;
    // Watch the agents, not the emulator: the rate check below counts every request it saw.
    rig.wait_gates("every agent at active=secondary, epoch 2", |g| {
        g.current == "active=secondary" && g.epoch == 2 && !g.busy
    })
    .await;
    let (log, _) = rig.emu.stats().await;
    assert_eq!(rig.answer().await, [SECONDARY_IP.to_owned()]);
    assert_eq!(rig.accepted_writes().await, 1, "applied exactly once");
    assert_eq!(rig.epoch().await, 2, "no second epoch");
    let throttled = log
        .iter()
        .filter(|r| r.outcome == "throttling" || r.outcome == "prior_request_not_complete")
        .count();
    assert_eq!(throttled, 5, "every injected fault was met and retried");
    let answered: Vec<_> = log.into_iter().filter(|r| r.status != -1).collect();
    let peak = max_in_window(&answered, 1000);
    assert!(
        peak <= 5,
        "at most 5 requests in any second, saw {peak}: {:?}",
        answered
            .iter()
            .map(|r| format!("{} {} {} {}", r.t_ms, r.op, r.outcome, r.status))
            .collect::<Vec<_>>()
    );
    rig.verify_audits();
}

/// Scenario 7: a minority — one hallucinating agent plus forged and replayed ballots — never
/// causes a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_never_causes_a_write() {
    let rig = Rig::start(Knobs::default()).await;
    rig.emu.reset_stats().await;
    let liar = rig.c.id(0).to_owned();
    rig.c.app.break_view(&liar);

    // Forged: ballots "from" the other agents saying the primary is down, signed by a key
    // that is not theirs; replayed: an old genuine ballot of another agent.
    let old = rig.c.ballots(1).await;
    for round in 0..10u64 {
        let forger = quorumgate::keys::generate().expect("key");
        for victim in [1usize, 2] {
            let cfg = config::Config::load(Some(&rig.c.written.agents[victim].config_path))
                .expect("config");
            let ballot = quorum::Ballot::new(
                quorum::AgentId::new(rig.c.id(victim)).expect("id"),
                u64::MAX / 2 + round,
                quorumgate::clock::Clock::now(&quorumgate::clock::SystemClock::default()),
                5_000,
                cfg.digest,
                vec![quorum::Observation::new(
                    quorum::CheckId::new("app").expect("check"),
                    quorum::Status::Unhealthy,
                    quorum::Reason::from_static("status"),
                    1,
                    quorum::UnixMillis(0),
                )],
            )
            .expect("ballot");
            let wire = quorum::SignedBallot::sign(&ballot, &forger).to_wire();
            for target in 0..rig.c.len() {
                let (code, text) = rig
                    .c
                    .post_ballot(target, wire.clone())
                    .await
                    .expect("agent reachable");
                assert_eq!(code, 400, "a forged ballot is refused: {text}");
                assert!(text.contains("bad_signature"), "{text}");
                for b in &old {
                    let (code, text) = rig
                        .c
                        .post_ballot(target, b.clone())
                        .await
                        .expect("agent reachable");
                    assert_ne!(code, 202, "an old ballot is never accepted anew: {text}");
                }
            }
        }
        tokio::time::sleep(rig.c.round()).await;
    }
    // The liar really votes the primary down; it stays a minority.
    let s = rig.c.status(0).await;
    let app = s.checks.iter().find(|c| c.id == "app").expect("check app");
    assert_eq!(app.observations[&liar].status, "unhealthy", "{app:?}");
    // Several fall times have passed; the quorum still says healthy and nothing was written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.accepted_writes().await, 0, "no write without a quorum");
    assert_eq!(rig.answer().await, [PRIMARY_IP.to_owned()]);
    for g in rig.gates().await {
        assert_eq!(g.current, "active=primary");
        assert_eq!(g.epoch, 1);
    }
    let m = rig.c.metrics(1).await;
    assert!(
        metric(
            &m,
            "quorumgate_ballots_rejected_total",
            "reason=\"bad_signature\""
        ) >= 1.0,
        "{m}"
    );
}
