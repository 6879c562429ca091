//! One agent's timeline of one drill, read from that agent's audit records.
//!
//! A pure function of the records, so the agent (its own verdict and
//! `quorumgate_drill_result`), the `drill` command (the report) and the tests all read the
//! same numbers: every mark is an audit record's `at_ms` — or, for a change Route 53 accepted
//! or confirmed INSYNC, the `accepted_at_ms` / `in_sync_at_ms` that record carries — and
//! names the record's `seq`.
//!
//! ```text
//! start            operator_command  action=drill, seq=<drill>
//! detected         transition        the primary's check → unhealthy (the quorum decision)
//! decided          gate_decision     reason=failover (with rpo_lag_ms)
//! sent             gate_write        to=active=<secondary> (the writer only)
//! changed          gate_outcome      applied (accepted_at_ms) | already_in_place | dry_run
//! in_sync          gate_outcome      in_sync=true (in_sync_at_ms)
//! ended            drill_end         seq=<drill> (elapsed, aborted, abort_check)
//! recovered        transition        the primary's check → healthy
//! failback_*       the same four for reason=failback
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Record;

/// The phases of a drill, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Start,
    Detected,
    Decided,
    Sent,
    Changed,
    InSync,
    Ended,
    Recovered,
    FailbackDecided,
    FailbackSent,
    FailbackChanged,
    FailbackInSync,
}

impl Phase {
    pub const ALL: [Phase; 12] = [
        Phase::Start,
        Phase::Detected,
        Phase::Decided,
        Phase::Sent,
        Phase::Changed,
        Phase::InSync,
        Phase::Ended,
        Phase::Recovered,
        Phase::FailbackDecided,
        Phase::FailbackSent,
        Phase::FailbackChanged,
        Phase::FailbackInSync,
    ];

    /// Stable name in JSON reports.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Detected => "detected",
            Phase::Decided => "decided",
            Phase::Sent => "sent",
            Phase::Changed => "changed",
            Phase::InSync => "in_sync",
            Phase::Ended => "ended",
            Phase::Recovered => "recovered",
            Phase::FailbackDecided => "failback_decided",
            Phase::FailbackSent => "failback_sent",
            Phase::FailbackChanged => "failback_changed",
            Phase::FailbackInSync => "failback_in_sync",
        }
    }

    /// For people.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Phase::Start => "drill start",
            Phase::Detected => "quorum decision: primary unhealthy",
            Phase::Decided => "gate decision: failover",
            Phase::Sent => "fenced batch sent",
            Phase::Changed => "fenced change accepted",
            Phase::InSync => "change INSYNC",
            Phase::Ended => "drill end",
            Phase::Recovered => "quorum decision: primary healthy",
            Phase::FailbackDecided => "gate decision: failback",
            Phase::FailbackSent => "failback batch sent",
            Phase::FailbackChanged => "failback change accepted",
            Phase::FailbackInSync => "failback INSYNC",
        }
    }

    #[must_use]
    pub fn from_code(code: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// One phase as one agent's audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub phase: String,
    pub at_ms: u64,
    /// The audit record's `seq` in that agent's log.
    pub audit_seq: u64,
    pub event: String,
    /// E.g. the outcome (`applied`, `already_in_place`, `dry_run`) or the authority.
    pub detail: String,
}

/// What identifies a drill's records in an audit log.
#[derive(Debug, Clone)]
pub struct DrillKey {
    pub gate: String,
    /// The drill command's seq.
    pub seq: u64,
    pub primary_check: String,
    /// `active=<target>` as gate records write the states.
    pub primary_state: String,
    pub secondary_state: String,
}

/// One agent's view of one drill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTimeline {
    pub agent: String,
    /// In phase order; a phase this agent did not record is absent.
    pub marks: Vec<Mark>,
    /// `rpo_lag_ms` of this agent's failover decision.
    pub rpo_lag_ms: Option<u64>,
    /// This agent's batch was the one Route 53 applied (failover / failback).
    pub wrote_failover: bool,
    pub wrote_failback: bool,
    /// Why the drill ended, as this agent recorded it.
    pub end_cause: Option<String>,
    /// The agent's own verdict (`drill_result` record), once it has one.
    pub result: Option<String>,
}

impl AgentTimeline {
    #[must_use]
    pub fn mark(&self, phase: Phase) -> Option<&Mark> {
        self.marks.iter().find(|m| m.phase == phase.code())
    }

    #[must_use]
    pub fn at(&self, phase: Phase) -> Option<u64> {
        self.mark(phase).map(|m| m.at_ms)
    }

    fn has(&self, phase: Phase) -> bool {
        self.mark(phase).is_some()
    }

    fn set(&mut self, phase: Phase, r: &Record, at_ms: u64, detail: String) {
        if self.has(phase) {
            return;
        }
        self.marks.push(Mark {
            phase: phase.code().to_owned(),
            at_ms,
            audit_seq: r.seq,
            event: r.event.clone(),
            detail,
        });
        self.marks
            .sort_by_key(|m| Phase::from_code(&m.phase).unwrap_or(Phase::Start));
    }
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn number(body: &Value, field: &str) -> Option<u64> {
    body.get(field).and_then(Value::as_u64)
}

/// The timeline of drill `key` in one agent's records (in log order).
#[must_use]
pub fn timeline(agent: &str, key: &DrillKey, records: &[Record]) -> AgentTimeline {
    let mut t = AgentTimeline {
        agent: agent.to_owned(),
        ..AgentTimeline::default()
    };
    for r in records {
        let b = &r.body;
        let ours = text(b, "gate") == key.gate;
        let started = t.has(Phase::Start);
        match r.event.as_str() {
            "operator_command" if ours && text(b, "action") == "drill" => {
                if number(b, "seq") == Some(key.seq) {
                    t.set(Phase::Start, r, r.at_ms, text(b, "detail").to_owned());
                } else if started {
                    break; // the next drill of this gate
                }
            }
            _ if !started => {}
            "transition" if text(b, "check") == key.primary_check => match text(b, "to") {
                "unhealthy" => t.set(Phase::Detected, r, r.at_ms, String::new()),
                "healthy" if t.has(Phase::Detected) => {
                    t.set(Phase::Recovered, r, r.at_ms, String::new());
                }
                _ => {}
            },
            "gate_decision" if ours => decision(&mut t, r),
            "gate_write" if ours => {
                let to = text(b, "to");
                if to == key.secondary_state && t.has(Phase::Decided) {
                    t.set(
                        Phase::Sent,
                        r,
                        r.at_ms,
                        format!("epoch {}", text_num(b, "expected_epoch")),
                    );
                } else if to == key.primary_state && t.has(Phase::FailbackDecided) {
                    t.set(
                        Phase::FailbackSent,
                        r,
                        r.at_ms,
                        format!("epoch {}", text_num(b, "expected_epoch")),
                    );
                }
            }
            "gate_outcome" if ours => outcome(&mut t, r),
            "drill_end" if ours && number(b, "seq") == Some(key.seq) => {
                let cause = text(b, "cause").to_owned();
                t.set(Phase::Ended, r, r.at_ms, text(b, "detail").to_owned());
                t.end_cause = Some(cause);
            }
            "drill_result" if ours && number(b, "seq") == Some(key.seq) => {
                t.result = Some(text(b, "result").to_owned());
            }
            _ => {}
        }
    }
    t
}

fn text_num(b: &Value, field: &str) -> String {
    number(b, field).map_or_else(|| "?".to_owned(), |n| n.to_string())
}

fn decision(t: &mut AgentTimeline, r: &Record) {
    let b = &r.body;
    let authority = b
        .get("authority")
        .and_then(|a| a.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let detail = format!(
        "{} → {} ({authority}, {})",
        text(b, "from"),
        text(b, "to"),
        text(b, "mode")
    );
    match text(b, "reason") {
        "failover" if !t.has(Phase::Decided) => {
            t.rpo_lag_ms = number(b, "rpo_lag_ms");
            t.set(Phase::Decided, r, r.at_ms, detail);
        }
        "failback" if t.has(Phase::Decided) => t.set(Phase::FailbackDecided, r, r.at_ms, detail),
        _ => {}
    }
}

fn outcome(t: &mut AgentTimeline, r: &Record) {
    let b = &r.body;
    let result = text(b, "result");
    if !matches!(result, "applied" | "already_in_place" | "dry_run") {
        return;
    }
    let (changed, in_sync) = if t.has(Phase::FailbackDecided) {
        if t.has(Phase::FailbackChanged) {
            return;
        }
        t.wrote_failback = result == "applied";
        (Phase::FailbackChanged, Phase::FailbackInSync)
    } else if t.has(Phase::Decided) {
        if t.has(Phase::Changed) {
            return;
        }
        t.wrote_failover = result == "applied";
        (Phase::Changed, Phase::InSync)
    } else {
        return;
    };
    let accepted = number(b, "accepted_at_ms").unwrap_or(r.at_ms);
    let epoch = number(b, "epoch").map_or_else(String::new, |e| format!(" at epoch {e}"));
    t.set(changed, r, accepted, format!("{result}{epoch}"));
    if b.get("in_sync").and_then(Value::as_bool) == Some(true) {
        let at = number(b, "in_sync_at_ms").unwrap_or(r.at_ms);
        t.set(in_sync, r, at, String::new());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn key() -> DrillKey {
        DrillKey {
            gate: "app".into(),
            seq: 100,
            primary_check: "app".into(),
            primary_state: "active=primary".into(),
            secondary_state: "active=secondary".into(),
        }
    }

    pub(crate) fn rec(seq: u64, at_ms: u64, event: &str, body: Value) -> Record {
        Record {
            seq,
            prev: String::new(),
            at_ms,
            agent: "use1".into(),
            event: event.into(),
            body,
        }
    }

    /// A writer's whole drill, with noise around it.
    pub(crate) fn writer_log() -> Vec<Record> {
        vec![
            rec(
                0,
                500,
                "transition",
                json!({ "check": "app", "to": "unhealthy" }),
            ),
            rec(
                1,
                1_000,
                "operator_command",
                json!({ "gate": "app", "action": "drill", "seq": 100, "detail": "duration_ms=5000" }),
            ),
            rec(
                2,
                1_900,
                "transition",
                json!({ "check": "other", "to": "unhealthy" }),
            ),
            rec(
                3,
                2_000,
                "transition",
                json!({ "check": "app", "to": "unhealthy" }),
            ),
            rec(
                4,
                2_000,
                "gate_decision",
                json!({ "gate": "dry", "reason": "failover" }),
            ),
            rec(
                5,
                2_000,
                "gate_decision",
                json!({ "gate": "app", "reason": "failover", "from": "active=primary", "to": "active=secondary", "mode": "live", "authority": { "kind": "automatic" }, "rpo_lag_ms": 1200 }),
            ),
            rec(
                6,
                2_100,
                "gate_write",
                json!({ "gate": "app", "to": "active=secondary", "expected_epoch": 1 }),
            ),
            rec(
                7,
                2_300,
                "gate_outcome",
                json!({ "gate": "app", "result": "applied", "epoch": 2, "in_sync": true, "accepted_at_ms": 2_200, "in_sync_at_ms": 2_290 }),
            ),
            rec(
                8,
                6_000,
                "drill_end",
                json!({ "gate": "app", "seq": 100, "cause": "elapsed" }),
            ),
            rec(
                9,
                7_000,
                "transition",
                json!({ "check": "app", "to": "healthy" }),
            ),
            rec(
                10,
                7_000,
                "gate_decision",
                json!({ "gate": "app", "reason": "failback", "from": "active=secondary", "to": "active=primary", "mode": "live", "authority": { "kind": "drill" } }),
            ),
            rec(
                11,
                7_100,
                "gate_write",
                json!({ "gate": "app", "to": "active=primary", "expected_epoch": 2 }),
            ),
            rec(
                12,
                7_150,
                "gate_outcome",
                json!({ "gate": "app", "result": "error", "error": "throttled" }),
            ),
            rec(
                13,
                8_300,
                "gate_outcome",
                json!({ "gate": "app", "result": "applied", "epoch": 3, "in_sync": false, "accepted_at_ms": 8_250 }),
            ),
            rec(
                14,
                8_600,
                "drill_result",
                json!({ "gate": "app", "seq": 100, "result": "pass" }),
            ),
            rec(
                15,
                9_000,
                "operator_command",
                json!({ "gate": "app", "action": "drill", "seq": 200 }),
            ),
            rec(
                16,
                9_500,
                "transition",
                json!({ "check": "app", "to": "unhealthy" }),
            ),
        ]
    }

    #[test]
    fn every_phase_is_read_from_its_record() {
        let t = timeline("use1", &key(), &writer_log());
        let got: Vec<(&str, u64, u64)> = t
            .marks
            .iter()
            .map(|m| (m.phase.as_str(), m.at_ms, m.audit_seq))
            .collect();
        assert_eq!(
            got,
            [
                ("start", 1_000, 1),
                ("detected", 2_000, 3),
                ("decided", 2_000, 5),
                ("sent", 2_100, 6),
                ("changed", 2_200, 7),
                ("in_sync", 2_290, 7),
                ("ended", 6_000, 8),
                ("recovered", 7_000, 9),
                ("failback_decided", 7_000, 10),
                ("failback_sent", 7_100, 11),
                ("failback_changed", 8_250, 13),
            ]
        );
        assert_eq!(t.rpo_lag_ms, Some(1_200));
        assert!(t.wrote_failover && t.wrote_failback);
        assert_eq!(t.end_cause.as_deref(), Some("elapsed"));
        assert_eq!(t.result.as_deref(), Some("pass"));
        assert!(t
            .mark(Phase::FailbackDecided)
            .is_some_and(|m| m.detail.contains("drill")));
    }

    #[test]
    fn another_agent_adopts_the_change_and_nothing_before_the_drill_counts() {
        let log = vec![
            rec(
                0,
                900,
                "gate_decision",
                json!({ "gate": "app", "reason": "failover" }),
            ),
            rec(
                1,
                1_010,
                "operator_command",
                json!({ "gate": "app", "action": "drill", "seq": 100 }),
            ),
            rec(
                2,
                2_050,
                "transition",
                json!({ "check": "app", "to": "unhealthy" }),
            ),
            rec(
                3,
                2_050,
                "gate_decision",
                json!({ "gate": "app", "reason": "failover" }),
            ),
            rec(
                4,
                3_100,
                "gate_outcome",
                json!({ "gate": "app", "result": "already_in_place", "epoch": 2 }),
            ),
        ];
        let t = timeline("usw2", &key(), &log);
        assert_eq!(t.at(Phase::Start), Some(1_010));
        assert_eq!(t.at(Phase::Decided), Some(2_050));
        assert_eq!(t.at(Phase::Changed), Some(3_100));
        assert!(!t.wrote_failover);
        assert_eq!(t.at(Phase::InSync), None);
        assert_eq!(
            timeline("x", &key(), &log[..1]),
            AgentTimeline {
                agent: "x".into(),
                ..AgentTimeline::default()
            }
        );
    }
}
