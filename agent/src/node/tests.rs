use std::time::Duration;

use quorum::{Reason, Status};

use super::*;
use crate::drill::DrillVote;
use crate::keys;
use crate::local_resource;

const T0: UnixMillis = UnixMillis(1_700_000_000_000);

/// A one-member cluster (Q = 1) with check `app` (fall_after = rise_after = 2, 1 s
/// hold-down); `shared` is appended to the shared settings, `local` to `[local]`. Shared by the
/// node's and the decisions file's tests.
pub(crate) fn solo_config(shared: &str, local: &str) -> (Arc<Config>, SigningKey) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let toml = format!(
        r#"[cluster]
name = "t"
round_interval = "1s"
ballot_valid_for = "4s"
peer_timeout = "500ms"
allow_single_member = true
[[members]]
id = "solo"
region = "r"
url = "http://127.0.0.1:1/"
public_key = "{}"
[[checks]]
id = "app"
interval = "1s"
timeout = "500ms"
fall_after = 2
rise_after = 2
hold_down = "1s"
[checks.http]
url = "http://127.0.0.1:1/healthz"
{shared}
[local]
agent_id = "solo"
key_file = "/nonexistent"
{local}"#,
        keys::public_key_base64(&key.verifying_key())
    );
    (
        Arc::new(Config::from_toml_str(&toml).expect("valid test config")),
        key,
    )
}

/// [`solo_config`], with a control probe when `control`.
fn single_member(control: bool) -> (Arc<Config>, SigningKey) {
    let control = if control {
        "[[local.control]]\nid = \"vpc\"\ntimeout = \"100ms\"\n[local.control.tcp]\naddress = \"127.0.0.1:9\"\n"
    } else {
        ""
    };
    solo_config("", control)
}

pub(crate) fn app() -> CheckId {
    CheckId::new("app").expect("id")
}

/// A probe result: healthy ("ok") or not ("status").
pub(crate) fn outcome(healthy: bool) -> ProbeOutcome {
    let reason = if healthy { "ok" } else { "status" };
    ProbeOutcome {
        healthy,
        reason: Reason::from_static(reason),
        latency: Duration::from_millis(3),
        detail: String::new(),
        lag_ms: None,
    }
}

fn own_vote(node: &Node) -> Observation {
    let v = node
        .engine
        .book()
        .latest(&AgentId::new("solo").expect("id"))
        .expect("own ballot counted");
    v.ballot.observation(&app()).expect("vote for app").clone()
}

#[test]
fn no_result_yet_is_an_abstention() {
    let (cfg, key) = single_member(false);
    let mut node = Node::new(cfg, T0);
    node.round(T0, &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Abstain, "no_data")
    );
}

#[test]
fn a_stale_result_is_an_abstention() {
    let (cfg, key) = single_member(false);
    let mut node = Node::new(cfg, T0);
    node.record_check(app(), &outcome(false), T0, false);
    // 2 intervals + timeout + one round: 3.5 s; a little more makes it stale.
    node.round(T0.plus(3_600), &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Abstain, "stale")
    );
}

#[test]
fn failing_control_probes_turn_accusations_into_abstentions_only() {
    let (cfg, key) = single_member(true);
    let mut node = Node::new(cfg, T0);
    node.record_control("vpc".to_owned(), outcome(false), T0);
    node.record_check(app(), &outcome(false), T0, false);
    node.round(T0, &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Abstain, "control_failed")
    );
    assert!(vote.detail.contains("saw status"), "{}", vote.detail);

    node.record_check(app(), &outcome(true), T0.plus(1_000), false);
    node.round(T0.plus(1_000), &key);
    assert_eq!(
        own_vote(&node).status,
        Status::Healthy,
        "a healthy observation is still a vote"
    );

    node.record_control("vpc".to_owned(), outcome(true), T0.plus(2_000));
    node.record_check(app(), &outcome(false), T0.plus(2_000), false);
    node.round(T0.plus(2_000), &key);
    assert_eq!(
        own_vote(&node).status,
        Status::Unhealthy,
        "control recovered: accuse again"
    );
}

fn timeout() -> ProbeOutcome {
    ProbeOutcome::unhealthy("timeout", Duration::from_millis(500), "")
}

#[test]
fn starvation_abstains_on_every_check_for_two_rounds() {
    let (cfg, key) = single_member(false);
    let mut node = Node::new(cfg, T0);
    node.record_starved(T0);
    node.record_check(app(), &outcome(false), T0.plus(1_000), false);
    node.round(T0.plus(1_000), &key);
    assert_eq!(own_vote(&node).reason.as_str(), "starved");
    node.record_check(app(), &outcome(false), T0.plus(3_000), false);
    node.round(T0.plus(3_000), &key);
    assert_eq!(own_vote(&node).status, Status::Unhealthy);
}

#[test]
fn a_late_run_abstains_on_its_check_only_and_a_timeout_stays_a_vote() {
    let (cfg, key) = single_member(false);
    let mut node = Node::new(cfg, T0);
    // A hung target: the run timed out, late or not, and that is what the vote says.
    node.record_check(app(), &timeout(), T0, true);
    node.round(T0, &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Unhealthy, "timeout")
    );
    assert!(
        node.status(T0).abstaining.is_none(),
        "no agent-wide abstention"
    );
    // Another failure from a run that started late: this check abstains, nothing else.
    node.record_check(app(), &outcome(false), T0.plus(1_000), true);
    node.round(T0.plus(1_000), &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Abstain, "overrun")
    );
    assert!(node.status(T0.plus(1_000)).abstaining.is_none());
    // A healthy result from a late run is still a Healthy vote.
    node.record_check(app(), &outcome(true), T0.plus(2_000), true);
    node.round(T0.plus(2_000), &key);
    assert_eq!(own_vote(&node).status, Status::Healthy);
}

#[test]
fn a_local_resource_failure_is_never_an_accusation() {
    let (cfg, key) = single_member(false);
    let mut node = Node::new(cfg, T0);
    let emfile = ProbeOutcome::unhealthy(
        local_resource::REASON,
        Duration::from_millis(1),
        "connecting to 127.0.0.1:80: Too many open files (os error 24)",
    );
    node.record_check(app(), &emfile, T0, false);
    node.round(T0, &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Abstain, "local_resource")
    );
    // For two rounds every accusation is withheld, whatever the probe saw next.
    node.record_check(app(), &outcome(false), T0.plus(1_000), false);
    node.round(T0.plus(1_000), &key);
    assert_eq!(own_vote(&node).reason.as_str(), "local_resource");
    let abstaining = node.status(T0.plus(1_000)).abstaining.expect("abstaining");
    assert!(abstaining.contains("Too many open files"), "{abstaining}");
    // A peer call failing the same way counts too.
    node.record_local_resource(T0.plus(1_500), "push to b: os error 24".to_owned());
    node.record_check(app(), &outcome(false), T0.plus(3_000), false);
    node.round(T0.plus(3_000), &key);
    assert_eq!(own_vote(&node).reason.as_str(), "local_resource");
    node.record_check(app(), &outcome(false), T0.plus(4_000), false);
    node.round(T0.plus(4_000), &key);
    assert_eq!(
        own_vote(&node).status,
        Status::Unhealthy,
        "over: accuse again"
    );
}

#[test]
fn a_changed_vote_is_due_for_publication_and_decides_early() {
    let (cfg, key) = single_member(false);
    let mut node = Node::new(cfg, T0);
    assert!(node.record_check(app(), &outcome(true), T0, false));
    node.round(T0, &key);
    assert!(!node.publish_due(), "a round publishes everything");
    assert!(
        !node.record_check(app(), &outcome(true), T0.plus(300), false),
        "the same vote again changes nothing"
    );
    assert!(!node.publish_due());
    assert!(node.record_check(app(), &outcome(false), T0.plus(400), false));
    assert!(node.publish_due());
    node.publish(T0.plus(410), &key);
    assert!(!node.publish_due());
    assert_eq!(own_vote(&node).status, Status::Unhealthy);
    // fall_after = 2: the early ballot counted the next round, its tick only confirms it,
    // and the round after decides.
    node.round(T0.plus(1_000), &key);
    assert_eq!(
        node.health(&app()).expect("check").decision,
        Some(State::Healthy)
    );
    node.round(T0.plus(2_000), &key);
    assert_eq!(
        node.health(&app()).expect("check").decision,
        Some(State::Unhealthy)
    );
}

#[test]
fn a_drilled_check_votes_unhealthy_unless_real_or_abstaining() {
    let (cfg, key) = single_member(true);
    let mut node = Node::new(cfg, T0);
    let board = DrillBoard::default();
    node.set_drill_board(board.clone());
    board.set(
        app(),
        DrillVote {
            gate: quorum::GateId::new("app").expect("gate"),
            by: quorum::OperatorId::new("alice").expect("op"),
            seq: 7,
            until: T0.plus(2_500),
        },
    );
    node.record_check(app(), &outcome(true), T0, false);
    node.round(T0, &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Unhealthy, "drill")
    );
    assert!(
        vote.detail.contains("drill 7 of gate app by alice; saw ok"),
        "{}",
        vote.detail
    );

    node.record_check(app(), &outcome(false), T0.plus(1_000), false);
    node.round(T0.plus(1_000), &key);
    let vote = own_vote(&node);
    assert_eq!(
        (vote.status, vote.reason.as_str()),
        (Status::Unhealthy, "status"),
        "a real failure stays real"
    );

    node.record_control("vpc".to_owned(), outcome(false), T0.plus(2_000));
    node.record_check(app(), &outcome(true), T0.plus(2_000), false);
    node.round(T0.plus(2_000), &key);
    assert_eq!(
        own_vote(&node).reason.as_str(),
        "control_failed",
        "an agent that cannot see does not accuse, not even for a drill"
    );

    node.record_control("vpc".to_owned(), outcome(true), T0.plus(3_000));
    node.record_check(app(), &outcome(true), T0.plus(3_000), false);
    node.round(T0.plus(3_000), &key);
    assert_eq!(own_vote(&node).status, Status::Healthy, "the drill is over");
}

#[test]
fn rounds_decide_after_fall_after_and_report_the_transition() {
    let (cfg, key) = single_member(false);
    let mut node = Node::new(cfg, T0);
    let mut transitions = Vec::new();
    for i in 0..3 {
        let now = T0.plus(i * 1_000);
        node.record_check(app(), &outcome(false), now, false);
        transitions.push(node.round(now, &key).1.len());
    }
    assert_eq!(transitions, [0, 1, 0], "fall_after = 2 rounds, then hold");
    let h = node.health(&app()).expect("known check");
    assert_eq!(
        (h.decision, h.basis),
        (Some(State::Unhealthy), Basis::Decided)
    );
    assert!(h.detail.contains("quorum=1/1"), "{}", h.detail);
    let status = node.status(T0.plus(2_000));
    assert_eq!(status.checks[0].decision, "unhealthy");
    assert_eq!(status.checks[0].transitions, 1);
    assert!(status.checks[0]
        .tally
        .as_ref()
        .and_then(|t| t.certificate.as_ref())
        .is_some());
}

#[test]
fn garbage_and_transport_rejections_are_counted() {
    let (cfg, _) = single_member(false);
    let mut node = Node::new(cfg, T0);
    assert!(node.receive(T0, b"\x00\x01garbage", "test").is_err());
    node.reject_transport("too_large", "declared 99 bytes".to_owned());
    let s = node.status(T0);
    assert_eq!(s.rejected.get("decode"), Some(&1));
    assert_eq!(s.rejected.get("too_large"), Some(&1));
}

/// The disk stalls (the audit log's lock is held, as by an append blocked in fsync): the
/// round that makes a transition returns without waiting for it, the node lock stays free,
/// `/v1/health` keeps answering the old decision, and answers the new one only once its
/// record is in the log.
#[test]
fn a_transition_is_answered_only_once_its_record_is_written_and_never_under_the_lock() {
    let (cfg, key) = single_member(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log =
        crate::audit::AuditLog::open(&path, AgentId::new("solo").expect("id")).expect("audit log");
    let audit = Arc::new(std::sync::Mutex::new(log));
    let mut node = Node::new(cfg, T0);
    node.set_audit(Arc::clone(&audit));
    node.set_decisions_dir(dir.path().to_owned());
    node.record_check(app(), &outcome(false), T0, false);
    node.round(T0, &key);
    assert!(node.wait_decisions_written(Duration::from_secs(10)));
    let node = Arc::new(std::sync::Mutex::new(node));

    let stalled = audit.lock().expect("audit lock");
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = {
        let node = Arc::clone(&node);
        let key = key.clone();
        std::thread::spawn(move || {
            let mut n = node.lock().expect("node lock");
            n.record_check(app(), &outcome(false), T0.plus(1_000), false);
            let (_, transitions) = n.round(T0.plus(1_000), &key);
            drop(n);
            let _ = tx.send(transitions.len());
        })
    };
    // Bounded: before the journal the round waited for the log (here, forever).
    let transitions = rx.recv_timeout(Duration::from_secs(20));
    assert_eq!(
        transitions,
        Ok(1),
        "the round (under the node lock) waited for the audit log"
    );
    {
        let n = node
            .try_lock()
            .expect("the node lock is free while the disk stalls");
        assert_eq!(
            n.health(&app()).expect("check").decision,
            Some(State::Healthy),
            "the new decision is answered before its record is on disk"
        );
        assert_eq!(n.persist_pending(), 1, "the transition waits for the disk");
        assert_eq!(
            n.engine.machine(&app()).and_then(DecisionMachine::decision),
            Some(State::Unhealthy),
            "the quorum decided"
        );
    }
    drop(stalled);
    worker.join().expect("round thread");
    let n = node.lock().expect("node lock");
    assert!(n.wait_decisions_written(Duration::from_secs(10)));
    assert_eq!(
        n.health(&app()).expect("check").decision,
        Some(State::Unhealthy)
    );
    let records = crate::audit::read_records(&path).expect("audit log");
    assert!(
        records.iter().any(|r| r.event == "transition"),
        "{records:?}"
    );
}
