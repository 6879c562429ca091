//! The decisions file, `<state_dir>/decisions.json`: each check's decided state and the
//! certificate that decided it, so a restarted agent answers what the quorum last decided —
//! or, knowing nothing, 503 `UNDECIDED` — and never the configured `initial` state.
//!
//! **Why a file of its own, and not the audit log.** The audit log records changes only
//! (`transition`, and `decided` when an undecided check gets its first verdict). A check that
//! a brand-new install decided Healthy (its `initial` state) and that never moved has no
//! record there, so the log cannot say "Healthy, decided by quorum"; the file holds every
//! decided check. The log is only the fallback when the file is missing but the log shows an
//! earlier run (an upgrade from a version without the file, or a deleted file): the latest
//! `transition`/`decided` record of each check is restored and every other check starts
//! undecided. Only a state dir with neither (a brand-new install) starts in `initial`.
//!
//! **When it is written.** Atomically (temp file, fsync, rename, fsync of the directory), by
//! a [`Writer`] thread, so neither the node lock nor the runtime waits for the disk: at a
//! round's evaluation, when since the last one a check's decision changed (a transition) or a
//! check was first decided after start — once per round at most, whatever the number of
//! checks, and never after a round without such a change. Each change is first in the audit
//! log (a `transition` or `decided` record, fsynced under the node lock before any answer
//! reflects it), and [`restore`] lets a record newer than the file's entry win, so an agent
//! stopped between the two restores the newer decision. Each decision the current tally still
//! proves is stored with the current certificate, so the file holds about one round's ballots.
//!
//! **Format**, version 1 (JSON):
//! ```text
//! {"format":"quorumgate-decisions","version":1,"agent":"use1","written_at_ms":…,
//!  "ballots":["<base64 signed wire ballot>",…],
//!  "checks":{"app":{"state":"unhealthy","since_ms":…,"last_transition_ms":…,"ballots":[0,1]}}}
//! ```
//! A certificate is the check, the outcome its state names, and the listed ballots (its
//! portable form is `quorum::portable_certificate`). Each ballot carries every check's
//! observation, so the certificates of one round share their ballots: each is stored once.
//! Every restored certificate is re-verified against the configured members' keys; a check
//! whose certificate does not verify starts undecided. Not against the config digest: a
//! decision survives a change of the shared config (it is still the quorum's last word, and
//! during a rolling change the new digest has no quorum yet), a change of members' keys not. A file that cannot be read or parsed,
//! or of another format or version, is logged and counts as "no decision" for every check.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::{
    certificate_parts, portable_certificate, verify_certificate, AgentId, Ballot, CheckId,
    Membership, Outcome, Restored, SignedBallot, Start, State, Status, UnixMillis,
};
use serde::{Deserialize, Serialize};

use crate::audit::Record;

pub const FILE_NAME: &str = "decisions.json";
const FORMAT: &str = "quorumgate-decisions";
const VERSION: u32 = 1;

/// One check's decision and the ballots of the certificate that proves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub state: State,
    /// When this state began.
    pub since: UnixMillis,
    /// The last transition (hold-down carries across a restart).
    pub last_transition: Option<UnixMillis>,
    /// Signed wire ballots; shared (`Arc`) between the checks one round decided.
    pub ballots: Vec<Arc<[u8]>>,
}

impl Decision {
    /// The certificate in its portable form (`quorumgate verify --cert` reads it).
    #[must_use]
    pub fn certificate(&self, check: &CheckId) -> Vec<u8> {
        portable_certificate(
            check,
            outcome_of(self.state),
            self.ballots.iter().map(AsRef::as_ref),
        )
    }

    fn restored(&self) -> Restored {
        Restored {
            state: self.state,
            since: self.since,
            last_transition: self.last_transition,
        }
    }
}

fn outcome_of(state: State) -> Outcome {
    match state {
        State::Healthy => Outcome::Healthy,
        State::Unhealthy => Outcome::Unhealthy,
    }
}

fn parse_state(s: &str) -> Option<State> {
    match s {
        "healthy" => Some(State::Healthy),
        "unhealthy" => Some(State::Unhealthy),
        _ => None,
    }
}

/// Why the file was not read or written.
#[derive(Debug, thiserror::Error)]
pub enum DecisionsError {
    #[error("decisions file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decisions file {path}: {why}")]
    Corrupt { path: PathBuf, why: String },
}

#[derive(Serialize, Deserialize)]
struct FileV1 {
    format: String,
    version: u32,
    agent: String,
    written_at_ms: u64,
    ballots: Vec<String>,
    checks: BTreeMap<String, EntryV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryV1 {
    state: String,
    since_ms: u64,
    last_transition_ms: Option<u64>,
    ballots: Vec<usize>,
}

/// Where a restarted agent's decisions came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Nothing in the state dir: a brand-new install, checks start in `initial`.
    BrandNew,
    File,
    /// No file, but an audit log of an earlier run.
    AuditLog,
    /// The file exists but could not be used: every check starts undecided.
    Unreadable,
}

/// What a restarted agent knows about each check.
#[derive(Debug)]
pub struct Restore {
    pub source: Source,
    /// Verified decisions by check.
    pub decisions: BTreeMap<CheckId, Decision>,
    /// What was not restored and why (the caller logs them).
    pub problems: Vec<String>,
}

impl Restore {
    /// A brand-new install: nothing to restore.
    #[must_use]
    pub fn brand_new() -> Self {
        Self {
            source: Source::BrandNew,
            decisions: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    /// How `check` starts: restored, in `initial` (brand-new install only) or undecided.
    #[must_use]
    pub fn start(&self, check: &CheckId) -> Start {
        match self.decisions.get(check) {
            Some(d) => Start::Restored(d.restored()),
            None if self.source == Source::BrandNew => Start::Initial,
            None => Start::Undecided,
        }
    }
}

/// Reads what the state dir knows: the decisions file, else the audit `history` (the records
/// already in the log when the agent started). Never fails: what cannot be used is reported
/// in `problems` and counts as no decision.
#[must_use]
pub fn restore(
    state_dir: &Path,
    history: &[Record],
    membership: &Membership,
    skew_ms: u64,
) -> Restore {
    let path = state_dir.join(FILE_NAME);
    let (source, candidates, mut problems) = match read(&path) {
        Ok(Some(mut candidates)) => {
            // The file is written once per round; every change is in the audit log first.
            // A change newer than the file's entry (the agent stopped before writing) wins.
            let (journal, problems) = from_history(history);
            for (check, d) in journal {
                if candidates.get(&check).is_none_or(|f| d.since > f.since) {
                    candidates.insert(check, d);
                }
            }
            (Source::File, candidates, problems)
        }
        Ok(None) if history.is_empty() => return Restore::brand_new(),
        Ok(None) => {
            let (candidates, problems) = from_history(history);
            (Source::AuditLog, candidates, problems)
        }
        Err(e) => (Source::Unreadable, BTreeMap::new(), vec![e.to_string()]),
    };
    let mut decisions = BTreeMap::new();
    // The checks one round decided share their ballots: verify each set of ballots once
    // (signatures, members, quorum, one instant), then only each check's votes.
    let mut verified: HashMap<Vec<*const u8>, Vec<Ballot>> = HashMap::new();
    for (check, d) in candidates {
        let key: Vec<*const u8> = d.ballots.iter().map(|b| b.as_ptr()).collect();
        if let Some(ballots) = verified.get(&key) {
            let claimed = match d.state {
                State::Healthy => Status::Healthy,
                State::Unhealthy => Status::Unhealthy,
            };
            if ballots
                .iter()
                .all(|b| b.observation(&check).map(|o| o.status) == Some(claimed))
            {
                decisions.insert(check, d);
            } else {
                problems.push(format!(
                    "{check}: the certificate's ballots do not all say {}",
                    d.state.as_str()
                ));
            }
            continue;
        }
        let bytes = d.certificate(&check);
        match verify_certificate(&bytes, membership, None, skew_ms) {
            Ok(v) if v.check == check && v.outcome == outcome_of(d.state) => {
                let ballots = d
                    .ballots
                    .iter()
                    .map(|w| SignedBallot::from_wire(w).and_then(|s| s.decode_unverified()))
                    .collect::<Result<Vec<_>, _>>();
                // They decoded a moment ago inside verify_certificate; if not, no cache.
                if let Ok(ballots) = ballots {
                    verified.insert(key, ballots);
                }
                decisions.insert(check, d);
            }
            Ok(v) => problems.push(format!(
                "{check}: the certificate proves {} {}, not {}",
                v.check,
                v.outcome.as_str(),
                d.state.as_str()
            )),
            Err(e) => problems.push(format!("{check}: certificate does not verify: {e}")),
        }
    }
    Restore {
        source,
        decisions,
        problems,
    }
}

/// The file's decisions, unverified; `None` when there is no file.
fn read(path: &Path) -> Result<Option<BTreeMap<CheckId, Decision>>, DecisionsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DecisionsError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let corrupt = |why: String| DecisionsError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let file: FileV1 = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(corrupt(format!(
            "format {:?} version {} (this agent reads {FORMAT:?} version {VERSION})",
            file.format, file.version
        )));
    }
    let ballots = file
        .ballots
        .iter()
        .map(|b| STANDARD.decode(b).map(Arc::<[u8]>::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(format!("a ballot is not base64: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, entry) in file.checks {
        let check = CheckId::new(&name).map_err(|e| corrupt(format!("check {name:?}: {e}")))?;
        let state = parse_state(&entry.state)
            .ok_or_else(|| corrupt(format!("check {name}: state {:?}", entry.state)))?;
        let ballots = entry
            .ballots
            .iter()
            .map(|i| ballots.get(*i).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt(format!("check {name}: a ballot index is out of range")))?;
        out.insert(
            check,
            Decision {
                state,
                since: UnixMillis(entry.since_ms),
                last_transition: entry.last_transition_ms.map(UnixMillis),
                ballots,
            },
        );
    }
    Ok(Some(out))
}

/// The latest `transition` or `decided` record of each check, unverified.
fn from_history(history: &[Record]) -> (BTreeMap<CheckId, Decision>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for r in history {
        let transition = match r.event.as_str() {
            "transition" => true,
            "decided" => false,
            _ => continue,
        };
        match from_record(r, transition) {
            Some((check, decision)) => {
                out.insert(check, decision);
            }
            None => problems.push(format!(
                "audit record {} ({}) is unreadable",
                r.seq, r.event
            )),
        }
    }
    (out, problems)
}

fn from_record(r: &Record, transition: bool) -> Option<(CheckId, Decision)> {
    let text = |k: &str| r.body.get(k).and_then(serde_json::Value::as_str);
    let check = CheckId::new(text("check")?).ok()?;
    let state = parse_state(text("to")?)?;
    let cert = STANDARD.decode(text("certificate")?).ok()?;
    let (_, _, wires) = certificate_parts(&cert).ok()?;
    let at = UnixMillis(r.at_ms);
    let decision = Decision {
        state,
        since: at,
        last_transition: transition.then_some(at),
        ballots: wires.into_iter().map(Arc::<[u8]>::from).collect(),
    };
    Some((check, decision))
}

/// Writes every decision to `<state_dir>/decisions.json` atomically: the file on disk is
/// always either the previous complete one or this one.
pub fn save(
    state_dir: &Path,
    agent: &AgentId,
    now: UnixMillis,
    decisions: &BTreeMap<CheckId, Decision>,
) -> Result<(), DecisionsError> {
    let path = state_dir.join(FILE_NAME);
    let io = |source| DecisionsError::Io {
        path: path.clone(),
        source,
    };
    // Each distinct ballot once: the node shares one `Arc` per ballot between checks.
    let mut index: HashMap<*const u8, usize> = HashMap::new();
    let mut ballots = Vec::new();
    let mut checks = BTreeMap::new();
    for (check, d) in decisions {
        let refs = d
            .ballots
            .iter()
            .map(|b| {
                *index.entry(b.as_ptr()).or_insert_with(|| {
                    ballots.push(STANDARD.encode(b));
                    ballots.len() - 1
                })
            })
            .collect();
        checks.insert(
            check.to_string(),
            EntryV1 {
                state: d.state.as_str().to_owned(),
                since_ms: d.since.0,
                last_transition_ms: d.last_transition.map(|t| t.0),
                ballots: refs,
            },
        );
    }
    let file = FileV1 {
        format: FORMAT.to_owned(),
        version: VERSION,
        agent: agent.to_string(),
        written_at_ms: now.0,
        ballots,
        checks,
    };
    let json = serde_json::to_vec(&file).map_err(|e| DecisionsError::Corrupt {
        path: path.clone(),
        why: format!("cannot encode: {e}"),
    })?;
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let tmp = state_dir.join(format!("{FILE_NAME}.tmp"));
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&json).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io)?;
    // The rename itself is durable only once the directory is synced.
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// Writes the decisions file on a thread of its own, so neither the node lock nor a runtime
/// worker ever waits for the disk: [`submit`](Self::submit) hands over a snapshot, the newest
/// one wins, and each is written with [`save`]. Every change a snapshot carries is already in
/// the audit log (written under the node lock), and [`restore`] takes the newer of the two.
#[derive(Debug, Clone)]
pub struct Writer {
    shared: Arc<(Mutex<WriterState>, Condvar)>,
}

#[derive(Debug, Default)]
struct WriterState {
    next: Option<(UnixMillis, BTreeMap<CheckId, Decision>)>,
    busy: bool,
}

impl Writer {
    /// Starts the writer thread for `state_dir`; it ends when the last `Writer` is dropped
    /// and nothing is left to write.
    #[must_use]
    pub fn start(state_dir: PathBuf, agent: AgentId) -> Self {
        let shared = Arc::new((Mutex::new(WriterState::default()), Condvar::new()));
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("decisions-writer".to_owned())
            .spawn(move || loop {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let (lock, cv) = &*shared;
                let job = {
                    let mut st = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    st.busy = false;
                    cv.notify_all();
                    let (st, _) = cv
                        .wait_timeout_while(st, Duration::from_millis(500), |st| {
                            st.next.is_none()
                        })
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut st = st;
                    let job = st.next.take();
                    st.busy = job.is_some();
                    job
                };
                drop(shared);
                if let Some((now, decisions)) = job {
                    if let Err(e) = save(&state_dir, &agent, now, &decisions) {
                        metrics::counter!(crate::telemetry::DECISIONS_WRITE_ERRORS).increment(1);
                        tracing::error!(error = %e, "could not persist the decisions; the audit log still holds every change");
                    }
                }
            })
            .map_or_else(
                |e| tracing::error!(error = %e, "cannot start the decisions writer; decisions are not persisted"),
                |_| {},
            );
        Self { shared }
    }

    /// Hands over the latest decisions; an older snapshot not yet written is dropped.
    pub fn submit(&self, now: UnixMillis, decisions: BTreeMap<CheckId, Decision>) {
        let (lock, cv) = &*self.shared;
        let mut st = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.next = Some((now, decisions));
        cv.notify_all();
    }

    /// Waits (at most `limit`) until everything submitted is on disk; whether it is.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let (lock, cv) = &*self.shared;
        let st = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (st, _) = cv
            .wait_timeout_while(st, limit, |st| st.next.is_some() || st.busy)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.next.is_none() && !st.busy
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use config::Config;
    use quorum::{Basis, Reason, SigningKey};

    use super::*;
    use crate::audit::AuditLog;
    use crate::keys;
    use crate::node::Node;
    use crate::probe::ProbeOutcome;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    /// One member (Q = 1), check `app` with fall_after = rise_after = 2 and a 1 s hold-down.
    fn solo() -> (Arc<Config>, SigningKey) {
        solo_with("")
    }

    /// [`solo`] with `extra` shared TOML (more checks).
    fn solo_with(extra: &str) -> (Arc<Config>, SigningKey) {
        let key = SigningKey::from_bytes(&[9; 32]);
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
{extra}
[local]
agent_id = "solo"
key_file = "/nonexistent"
"#,
            keys::public_key_base64(&key.verifying_key())
        );
        (
            Arc::new(Config::from_toml_str(&toml).expect("valid test config")),
            key,
        )
    }

    fn app() -> CheckId {
        CheckId::new("app").expect("id")
    }

    fn outcome(healthy: bool) -> ProbeOutcome {
        ProbeOutcome {
            healthy,
            reason: Reason::from_static(if healthy { "ok" } else { "status" }),
            latency: Duration::from_millis(3),
            detail: String::new(),
            lag_ms: None,
        }
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

    fn answer(node: &Node) -> (Option<State>, Basis) {
        let h = node.health(&app()).expect("known check");
        (h.decision, h.basis)
    }

    /// The file as the writer thread left it once idle.
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
}
