use std::time::Duration;

use config::Config;
use quorum::{Basis, SigningKey};

use super::*;
use crate::audit::AuditLog;
use crate::node::tests::{app, outcome, solo_config};
use crate::node::Node;

const T0: UnixMillis = UnixMillis(1_700_000_000_000);

/// One member (Q = 1), check `app` with fall_after = rise_after = 2 and a 1 s hold-down.
fn solo() -> (Arc<Config>, SigningKey) {
    solo_config("", "")
}

/// [`solo`] with `extra` shared TOML (more checks).
fn solo_with(extra: &str) -> (Arc<Config>, SigningKey) {
    solo_config(extra, "")
}

/// Runs rounds `from..to` (1 s apart) with the app answering `healthy`.
fn rounds(node: &mut Node, key: &SigningKey, healthy: bool, from: u64, to: u64) {
    for i in from..to {
        let now = T0.plus(i * 1_000);
        node.record_check(app(), &outcome(healthy), now, false);
        node.round(now, key);
    }
}

fn restore_from(dir: &Path, history: &[Record], cfg: &Config) -> Restore {
    restore(dir, history, &cfg.shared.membership, 500)
}

/// What the node answers once the journal has written (and published) every change so far.
fn answer(node: &Node) -> (Option<State>, Basis) {
    assert!(
        node.wait_decisions_written(Duration::from_secs(10)),
        "journal busy"
    );
    let h = node.health(&app()).expect("known check");
    (h.decision, h.basis)
}

/// The file as the journal thread left it once idle.
fn on_disk(node: &Node, dir: &Path) -> serde_json::Value {
    assert!(
        node.wait_decisions_written(Duration::from_secs(10)),
        "writer busy"
    );
    read_file(dir)
}

fn read_file(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(FILE_NAME)).expect("file")).expect("json")
}

#[test]
fn a_decision_survives_a_restart_with_its_certificate_and_hold_down() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, key) = solo();
    // Brand-new: nothing in the state dir, so the configured initial (Healthy) answers.
    let r = restore_from(dir.path(), &[], &cfg);
    assert_eq!(r.source, Source::BrandNew);
    let mut node = Node::restored(Arc::clone(&cfg), T0, r);
    node.set_decisions_dir(dir.path().to_owned());
    assert_eq!(answer(&node), (Some(State::Healthy), Basis::Initial));
    rounds(&mut node, &key, false, 0, 1);
    // A quorum verdict that disagrees with Healthy: decided, no certificate for Healthy,
    // so nothing is written yet.
    assert_eq!(answer(&node), (Some(State::Healthy), Basis::Decided));
    assert!(node.wait_decisions_written(Duration::from_secs(10)));
    assert!(!dir.path().join(FILE_NAME).exists());
    rounds(&mut node, &key, false, 1, 2);
    assert_eq!(answer(&node).0, Some(State::Unhealthy));
    let written = on_disk(&node, dir.path());
    assert_eq!(written["version"], 1);
    assert_eq!(written["checks"]["app"]["state"], "unhealthy");
    assert_eq!(written["checks"]["app"]["last_transition_ms"], T0.0 + 1_000);
    // Rounds that change nothing do not write.
    rounds(&mut node, &key, false, 2, 6);
    assert_eq!(
        on_disk(&node, dir.path()),
        written,
        "rewritten without a change"
    );

    let r = restore_from(dir.path(), &[], &cfg);
    assert_eq!((r.source, r.problems.len()), (Source::File, 0));
    let d = &r.decisions[&app()];
    assert_eq!(
        (d.state, d.since, d.last_transition),
        (State::Unhealthy, T0.plus(1_000), Some(T0.plus(1_000)))
    );
    // The restarted node answers the restored decision before any round …
    let mut node = Node::restored(Arc::clone(&cfg), T0.plus(1_500), r);
    node.set_decisions_dir(dir.path().to_owned());
    assert_eq!(answer(&node), (Some(State::Unhealthy), Basis::Restored));
    assert_eq!(node.status(T0.plus(1_500)).checks[0].basis, "restored");
    // … and continues with the normal hysteresis: two Healthy rounds to rise, but not
    // within the 1 s hold-down of the earlier run's transition (at 1 s).
    for (ms, want) in [
        (1_100, State::Unhealthy),
        (1_900, State::Unhealthy),
        (2_000, State::Healthy),
    ] {
        let now = T0.plus(ms);
        node.record_check(app(), &outcome(true), now, false);
        node.round(now, &key);
        assert_eq!(answer(&node), (Some(want), Basis::Decided), "at {ms} ms");
    }
    assert_eq!(
        on_disk(&node, dir.path())["checks"]["app"]["state"],
        "healthy"
    );
}

#[test]
fn without_a_usable_file_an_earlier_run_means_undecided() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, key) = solo();
    let audit_path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&audit_path, AgentId::new("solo").unwrap()).unwrap();
    log.append(T0, "started", serde_json::json!({})).unwrap();
    let (_, history) =
        AuditLog::open_with_history(&audit_path, AgentId::new("solo").unwrap()).unwrap();
    // No file, but the audit log shows an earlier run: undecided, not initial.
    let r = restore_from(dir.path(), &history, &cfg);
    assert_eq!(r.source, Source::AuditLog);
    let mut node = Node::restored(Arc::clone(&cfg), T0, r);
    node.set_decisions_dir(dir.path().to_owned());
    node.set_audit(Arc::new(std::sync::Mutex::new(log)));
    assert_eq!(answer(&node), (None, Basis::Undecided));
    let status = node.status(T0);
    assert_eq!(
        (
            status.checks[0].decision.as_str(),
            status.checks[0].basis.as_str()
        ),
        ("undecided", "undecided")
    );
    let text = crate::cli::render_status(&status);
    let row = text
        .lines()
        .find(|l| l.starts_with("app "))
        .expect("check row");
    assert!(
        row.contains("UNDECIDED") && row.contains(" undecided "),
        "{text}"
    );
    // No quorum yet (no probe result: an abstention): still undecided.
    node.round(T0, &key);
    assert_eq!(answer(&node), (None, Basis::Undecided));
    // The first quorum verdict is the state at once, although fall_after = 2.
    rounds(&mut node, &key, false, 1, 2);
    assert_eq!(answer(&node), (Some(State::Unhealthy), Basis::Decided));
    assert_eq!(
        on_disk(&node, dir.path())["checks"]["app"]["state"],
        "unhealthy"
    );
    // The first decision is audited (with its certificate), so the log alone could
    // restore it; and the log still verifies.
    let (_, history) =
        AuditLog::open_with_history(&audit_path, AgentId::new("solo").unwrap()).unwrap();
    let decided = history
        .iter()
        .find(|r| r.event == "decided")
        .expect("decided record");
    assert_eq!(
        (decided.body["from"].as_str(), decided.body["to"].as_str()),
        (Some("undecided"), Some("unhealthy"))
    );
    std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
    let r = restore_from(dir.path(), &history, &cfg);
    assert_eq!((r.source, r.problems.len()), (Source::AuditLog, 0));
    assert_eq!(
        r.start(&app()),
        Start::Restored(Restored {
            state: State::Unhealthy,
            since: T0.plus(1_000),
            last_transition: None,
        })
    );
}

#[test]
fn a_change_in_the_audit_log_newer_than_the_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, key) = solo();
    let audit_path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&audit_path, AgentId::new("solo").unwrap()).unwrap();
    let mut node = Node::new(Arc::clone(&cfg), T0);
    node.set_decisions_dir(dir.path().to_owned());
    node.set_audit(Arc::new(std::sync::Mutex::new(log)));
    rounds(&mut node, &key, false, 0, 2);
    let unhealthy = on_disk(&node, dir.path());
    assert_eq!(unhealthy["checks"]["app"]["state"], "unhealthy");
    rounds(&mut node, &key, true, 2, 5);
    assert_eq!(
        on_disk(&node, dir.path())["checks"]["app"]["state"],
        "healthy"
    );
    // Stopped after the audit record of the rise but before the file caught up.
    std::fs::write(
        dir.path().join(FILE_NAME),
        serde_json::to_vec(&unhealthy).unwrap(),
    )
    .unwrap();
    let (_, history) =
        AuditLog::open_with_history(&audit_path, AgentId::new("solo").unwrap()).unwrap();
    let r = restore_from(dir.path(), &history, &cfg);
    assert_eq!((r.source, r.problems.len()), (Source::File, 0));
    assert_eq!(r.decisions[&app()].state, State::Healthy);
    // Without the audit record the file's older decision is all there is.
    let r = restore_from(dir.path(), &[], &cfg);
    assert_eq!(r.decisions[&app()].state, State::Unhealthy);
}

#[test]
fn a_corrupt_file_or_certificate_is_no_decision_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, key) = solo();
    let mut node = Node::new(Arc::clone(&cfg), T0);
    node.set_decisions_dir(dir.path().to_owned());
    rounds(&mut node, &key, true, 0, 1);
    assert!(node.wait_decisions_written(Duration::from_secs(10)));
    let good = std::fs::read(dir.path().join(FILE_NAME)).expect("first decision written");
    assert_eq!(restore_from(dir.path(), &[], &cfg).decisions.len(), 1);

    let mut tampered = on_disk(&node, dir.path());
    let ballot = tampered["ballots"][0].as_str().unwrap().to_owned();
    let mut bytes = STANDARD.decode(ballot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    tampered["ballots"][0] = STANDARD.encode(bytes).into();
    let wrong_state = {
        let mut f: serde_json::Value = serde_json::from_slice(&good).unwrap();
        f["checks"]["app"]["state"] = "unhealthy".into();
        f
    };
    let future = {
        let mut f: serde_json::Value = serde_json::from_slice(&good).unwrap();
        f["version"] = 2.into();
        f
    };
    let cases: [(&str, Vec<u8>, Source); 6] = [
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            Source::Unreadable,
        ),
        ("empty", Vec::new(), Source::Unreadable),
        ("not json", b"\xff\x00garbage".to_vec(), Source::Unreadable),
        (
            "unknown version",
            serde_json::to_vec(&future).unwrap(),
            Source::Unreadable,
        ),
        (
            "bad signature",
            serde_json::to_vec(&tampered).unwrap(),
            Source::File,
        ),
        (
            "state the certificate does not prove",
            serde_json::to_vec(&wrong_state).unwrap(),
            Source::File,
        ),
    ];
    for (name, bytes, source) in cases {
        std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
        let r = restore_from(dir.path(), &[], &cfg);
        assert_eq!(r.source, source, "{name}");
        assert!(
            r.decisions.is_empty() && !r.problems.is_empty(),
            "{name}: {:?}",
            r.problems
        );
        assert_eq!(r.start(&app()), Start::Undecided, "{name}");
        let node = Node::restored(Arc::clone(&cfg), T0, r);
        assert_eq!(answer(&node), (None, Basis::Undecided), "{name}");
    }
}

#[test]
fn checks_sharing_ballots_are_verified_each_for_its_own_vote() {
    let dir = tempfile::tempdir().unwrap();
    let web = "[[checks]]\nid = \"web\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n[checks.http]\nurl = \"http://127.0.0.1:1/\"\n";
    let (cfg, key) = solo_with(web);
    let mut node = Node::new(Arc::clone(&cfg), T0);
    node.set_decisions_dir(dir.path().to_owned());
    node.record_check(app(), &outcome(true), T0, false);
    node.record_check(CheckId::new("web").unwrap(), &outcome(true), T0, false);
    node.round(T0, &key);
    let mut f = on_disk(&node, dir.path());
    assert_eq!(
        f["ballots"].as_array().map(Vec::len),
        Some(1),
        "one ballot for both"
    );
    assert_eq!(f["checks"]["web"]["ballots"], serde_json::json!([0]));
    let r = restore_from(dir.path(), &[], &cfg);
    assert_eq!((r.decisions.len(), r.problems.len()), (2, 0));
    // The same ballot does not say web is Unhealthy: only web loses its decision.
    f["checks"]["web"]["state"] = "unhealthy".into();
    std::fs::write(dir.path().join(FILE_NAME), serde_json::to_vec(&f).unwrap()).unwrap();
    let r = restore_from(dir.path(), &[], &cfg);
    assert_eq!(r.decisions.keys().collect::<Vec<_>>(), [&app()]);
    assert_eq!(r.start(&CheckId::new("web").unwrap()), Start::Undecided);
    assert!(r.problems[0].starts_with("web: "), "{:?}", r.problems);
}

#[test]
fn the_file_stores_each_shared_ballot_once() {
    let ballot: Arc<[u8]> = Arc::from(vec![1u8, 2, 3]);
    let other: Arc<[u8]> = Arc::from(vec![4u8]);
    let d = |ballots: Vec<Arc<[u8]>>| Decision {
        state: State::Healthy,
        since: T0,
        last_transition: None,
        ballots,
    };
    let decisions: BTreeMap<CheckId, Decision> = [
        ("a", vec![Arc::clone(&ballot)]),
        ("b", vec![Arc::clone(&ballot), Arc::clone(&other)]),
        ("c", vec![Arc::clone(&other)]),
    ]
    .into_iter()
    .map(|(c, b)| (CheckId::new(c).unwrap(), d(b)))
    .collect();
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &AgentId::new("solo").unwrap(), T0, &decisions).unwrap();
    let f = read_file(dir.path());
    assert_eq!(f["ballots"].as_array().map(Vec::len), Some(2));
    assert_eq!(f["checks"]["b"]["ballots"], serde_json::json!([0, 1]));
    assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    let back = read(&dir.path().join(FILE_NAME)).unwrap().unwrap();
    assert_eq!(back, decisions);
}
