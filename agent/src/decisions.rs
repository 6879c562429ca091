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
//! the node's journal thread, so neither the node lock nor the runtime waits for the disk: at
//! a round's evaluation, when since the last one a check's decision changed (a transition) or
//! a check was first decided after start — once per round at most, whatever the number of
//! checks, and never after a round without such a change. Each change is first in the audit
//! log (a `transition` or `decided` record, fsynced by the same thread before the file, and
//! before any answer reflects it), and [`restore`] lets a record newer than the file's entry
//! win, so an agent stopped between the two restores the newer decision. Each decision the current tally still
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
use std::sync::Arc;

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

#[cfg(test)]
mod tests;
