//! The agent's side of a drill that the gate driver calls: which checks a gate's drill
//! involves, the audit records it writes and reads back after a restart, its status, and
//! this agent's own verdict once the drill is finished (`drill_result`,
//! `quorumgate_drill_result{gate,result}`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use config::GateConfig;
use quorum::gate::{Drill, DrillEnd, DrillEndCause, FinishedDrill, GateKind, Inputs};
use quorum::{CheckId, GateId, OperatorId, UnixMillis};
use serde_json::{json, Value};

use super::report::{self, DrillInfo, Objectives, Report};
use super::timeline::{self, DrillKey};
use super::{log, DRILL_RESULT};
use crate::audit::Record;
use crate::status::DrillStatus;

/// The primary target's check: what a drill of the gate votes down.
#[must_use]
pub fn primary_check(gate: &GateConfig) -> Option<CheckId> {
    match gate.spec.kind() {
        GateKind::Failover { primary, .. } => Some(primary.check.clone()),
        GateKind::Weighted { .. } => None,
    }
}

/// The checks whose Unhealthy decision ends a running drill: the secondary's own, and the
/// configured `abort_check`.
#[must_use]
pub fn guards(gate: &GateConfig) -> Vec<CheckId> {
    let mut out = Vec::new();
    if let GateKind::Failover { secondary, .. } = gate.spec.kind() {
        out.push(secondary.check.clone());
    }
    out.extend(gate.drill.abort_check.iter().cloned());
    out
}

/// The gate's own checks (targets, lag checks, the abort check) from a round's inputs.
#[must_use]
pub fn gate_inputs(gate: &GateConfig, inputs: &Inputs) -> Inputs {
    let mut out = Inputs::new();
    let checks = gate
        .spec
        .checks()
        .into_iter()
        .cloned()
        .chain(gate.drill.abort_check.iter().cloned());
    for c in checks {
        if let Some(i) = inputs.get(&c) {
            out.insert(c, i.clone());
        }
    }
    out
}

/// The `drill_end` record's body.
#[must_use]
pub fn end_body(gate: &GateId, seq: u64, end: &DrillEnd) -> Value {
    let mut body = json!({
        "gate": gate.as_str(),
        "seq": seq,
        "cause": end.cause.code(),
        "ended_at_ms": end.at.0,
        "detail": end.cause.to_string(),
    });
    match &end.cause {
        DrillEndCause::Aborted { by, seq } => {
            body["by"] = json!(by.as_str());
            body["abort_seq"] = json!(seq);
        }
        DrillEndCause::AbortCheck(c) => body["check"] = json!(c.as_str()),
        DrillEndCause::Elapsed => {}
    }
    body
}

/// A `drill_end` record read back (replay after a restart): the gate, the drill's seq, its end.
#[must_use]
pub fn end_from_record(r: &Record) -> Option<(GateId, u64, DrillEnd)> {
    let b = &r.body;
    let text = |f: &str| b.get(f).and_then(Value::as_str);
    let gate = GateId::new(text("gate")?).ok()?;
    let seq = b.get("seq").and_then(Value::as_u64)?;
    let at = UnixMillis(b.get("ended_at_ms").and_then(Value::as_u64)?);
    let cause = match text("cause")? {
        "elapsed" => DrillEndCause::Elapsed,
        "aborted" => DrillEndCause::Aborted {
            by: OperatorId::new(text("by")?).ok()?,
            seq: b.get("abort_seq").and_then(Value::as_u64)?,
        },
        "abort_check" => DrillEndCause::AbortCheck(CheckId::new(text("check")?).ok()?),
        _ => return None,
    };
    Some((gate, seq, DrillEnd { at, cause }))
}

/// `(gate, drill seq)` of every drill this agent already judged (`drill_result`).
#[must_use]
pub fn judged(records: &[Record]) -> BTreeSet<(String, u64)> {
    records
        .iter()
        .filter(|r| r.event == "drill_result")
        .filter_map(|r| {
            let gate = r.body.get("gate")?.as_str()?.to_owned();
            Some((gate, r.body.get("seq")?.as_u64()?))
        })
        .collect()
}

/// A finished drill as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRecord {
    pub seq: u64,
    pub by: String,
    pub started_at_ms: u64,
    pub ends_at_ms: u64,
    pub dry_run: bool,
    pub ended_at_ms: Option<u64>,
    pub end_cause: Option<String>,
    pub back_at_primary: Option<bool>,
    pub result: Option<String>,
}

impl FinishedRecord {
    #[must_use]
    pub fn new(done: &FinishedDrill) -> Self {
        let d = &done.drill;
        Self {
            seq: d.seq,
            by: d.by.to_string(),
            started_at_ms: d.started_at.0,
            ends_at_ms: d.ends_at.0,
            dry_run: d.dry_run,
            ended_at_ms: d.ended.as_ref().map(|e| e.at.0),
            end_cause: d.ended.as_ref().map(|e| e.cause.code().to_owned()),
            back_at_primary: Some(done.back_at_primary),
            result: None,
        }
    }
}

/// The latest `drill_result` of `gate` in the log (status and the gauge after a restart).
#[must_use]
pub fn last_result(records: &[Record], gate: &GateId) -> Option<FinishedRecord> {
    let r = records.iter().rev().find(|r| {
        r.event == "drill_result"
            && r.body.get("gate").and_then(Value::as_str) == Some(gate.as_str())
    })?;
    let b = &r.body;
    let num = |f: &str| b.get(f).and_then(Value::as_u64);
    let text = |f: &str| b.get(f).and_then(Value::as_str).map(str::to_owned);
    Some(FinishedRecord {
        seq: num("seq")?,
        by: text("by").unwrap_or_default(),
        started_at_ms: num("started_at_ms").unwrap_or_default(),
        ends_at_ms: num("ends_at_ms").unwrap_or_default(),
        dry_run: b
            .get("dry_run")
            .and_then(Value::as_bool)
            .unwrap_or_default(),
        ended_at_ms: num("ended_at_ms"),
        end_cause: text("end_cause"),
        back_at_primary: b.get("back_at_primary").and_then(Value::as_bool),
        result: text("result"),
    })
}

/// `quorumgate_drill_result{gate,result}`: 1 for the last drill's result, 0 for the other.
pub fn set_result_gauge(gate: &GateId, result: Option<&str>) {
    for label in ["pass", "fail"] {
        let on = if result == Some(label) { 1.0 } else { 0.0 };
        metrics::gauge!(DRILL_RESULT, "gate" => gate.to_string(), "result" => label).set(on);
    }
}

/// The drill in force, or else the last finished one.
#[must_use]
pub fn status(
    drill: Option<&Drill>,
    last: Option<&FinishedRecord>,
    now: UnixMillis,
) -> Option<DrillStatus> {
    if let Some(d) = drill {
        return Some(DrillStatus {
            seq: d.seq,
            by: d.by.to_string(),
            started_at_ms: d.started_at.0,
            ends_at_ms: d.ends_at.0,
            dry_run: d.dry_run,
            state: if d.running(now) { "running" } else { "ended" }.to_owned(),
            ended_at_ms: d.ended.as_ref().map(|e| e.at.0),
            end_cause: d.ended.as_ref().map(|e| e.cause.code().to_owned()),
            back_at_primary: None,
            result: None,
        });
    }
    last.map(|l| DrillStatus {
        seq: l.seq,
        by: l.by.clone(),
        started_at_ms: l.started_at_ms,
        ends_at_ms: l.ends_at_ms,
        dry_run: l.dry_run,
        state: "finished".to_owned(),
        ended_at_ms: l.ended_at_ms,
        end_cause: l.end_cause.clone(),
        back_at_primary: l.back_at_primary,
        result: l.result.clone(),
    })
}

/// How a gate's drill `seq` shows in audit records.
#[must_use]
pub fn key(gate: &GateConfig, seq: u64) -> Option<DrillKey> {
    let GateKind::Failover { primary, secondary } = gate.spec.kind() else {
        return None;
    };
    Some(DrillKey {
        gate: gate.spec.id().to_string(),
        seq,
        primary_check: primary.check.to_string(),
        primary_state: format!("active={}", primary.id),
        secondary_state: format!("active={}", secondary.id),
    })
}

/// What a report needs to know about drill `seq` of `gate`.
#[must_use]
pub fn info(
    gate: &GateConfig,
    seq: u64,
    operator: &str,
    started_at_ms: u64,
    ends_at_ms: u64,
    dry_run: bool,
) -> Option<DrillInfo> {
    let GateKind::Failover { primary, secondary } = gate.spec.kind() else {
        return None;
    };
    Some(DrillInfo {
        gate: gate.spec.id().to_string(),
        plane: gate.plane.as_str().to_owned(),
        seq,
        operator: operator.to_owned(),
        dry_run,
        started_at_ms,
        duration_ms: ends_at_ms.saturating_sub(started_at_ms),
        primary: primary.id.to_string(),
        secondary: secondary.id.to_string(),
        objectives: Objectives {
            rto_ms: gate.drill.rto_ms,
            rpo_ms: gate.drill.rpo_ms,
        },
    })
}

/// This agent's verdict on a finished drill: the report of its own timeline (no DNS).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub seq: u64,
    pub back_at_primary: bool,
    pub report: Report,
}

impl Verdict {
    #[must_use]
    pub fn result(&self) -> &'static str {
        if self.report.passed() {
            "pass"
        } else {
            "fail"
        }
    }

    /// One line: the failed criteria, or the measures.
    #[must_use]
    pub fn summary(&self) -> String {
        let failed: Vec<String> = self
            .report
            .criteria
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if failed.is_empty() {
            let m = &self.report.measured;
            format!(
                "rto_ms={:?} rpo_lag_ms={:?} failback_ms={:?}",
                m.rto_ms, m.rpo_lag_ms, m.failback_ms
            )
        } else {
            failed.join("; ")
        }
    }

    /// The `drill_result` record's body.
    #[must_use]
    pub fn body(&self, gate: &GateId) -> Value {
        let r = &self.report;
        let d = &r.drill;
        json!({
            "gate": gate.as_str(),
            "seq": self.seq,
            "by": d.operator,
            "result": self.result(),
            "dry_run": d.dry_run,
            "started_at_ms": d.started_at_ms,
            "ends_at_ms": d.started_at_ms + d.duration_ms,
            "ended_at_ms": r.phase(super::timeline::Phase::Ended).map(|p| p.at_ms),
            "end_cause": r.end_cause,
            "back_at_primary": self.back_at_primary,
            "rto_ms": r.measured.rto_ms,
            "rpo_lag_ms": r.measured.rpo_lag_ms,
            "failback_ms": r.measured.failback_ms,
            "failed": r.criteria.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect::<Vec<_>>(),
        })
    }
}

/// Judges a finished drill from this agent's audit log at `path` (blocking I/O).
pub fn judge(
    path: &Path,
    agent: &str,
    gate: &GateConfig,
    done: &FinishedDrill,
) -> Result<Verdict, String> {
    let d = &done.drill;
    let since = d.started_at.0.saturating_sub(super::LOOKBACK_MS);
    let (records, _) = log::read_since(path, since, usize::MAX).map_err(|e| e.to_string())?;
    let key = key(gate, d.seq).ok_or("not a failover gate")?;
    let info = info(
        gate,
        d.seq,
        d.by.as_str(),
        d.started_at.0,
        d.ends_at.0,
        d.dry_run,
    )
    .ok_or("not a failover gate")?;
    let mine = timeline::timeline(agent, &key, &records);
    Ok(Verdict {
        seq: d.seq,
        back_at_primary: done.back_at_primary,
        report: report::build(info, vec![mine], None),
    })
}

/// Most records one `GET /v1/audit` returns.
pub const MAX_AUDIT_RECORDS: usize = 20_000;

/// Answers `GET /v1/audit?since=<unix ms>[&limit=N]`: `{agent, records, truncated}`.
pub async fn serve_audit(
    path: PathBuf,
    agent: String,
    query: Option<&str>,
) -> Result<Vec<u8>, (http::StatusCode, String)> {
    let bad = |why: String| (http::StatusCode::BAD_REQUEST, why);
    let (mut since, mut limit) = (0u64, MAX_AUDIT_RECORDS);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("since", v)) => {
                since = v
                    .parse()
                    .map_err(|_| bad(format!("since={v}: expected unix milliseconds")))?
            }
            Some(("limit", v)) => {
                limit = v
                    .parse::<usize>()
                    .map_err(|_| bad(format!("limit={v}: expected a number")))?
                    .min(MAX_AUDIT_RECORDS);
            }
            _ => return Err(bad(format!("unknown parameter {pair:?} (since, limit)"))),
        }
    }
    let read = tokio::task::spawn_blocking(move || log::read_since(&path, since, limit)).await;
    let internal = |why: String| (http::StatusCode::INTERNAL_SERVER_ERROR, why);
    let (records, truncated) = read
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("audit log: {e}")))?;
    serde_json::to_vec(&json!({ "agent": agent, "records": records, "truncated": truncated }))
        .map_err(|e| internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, body: Value) -> Record {
        Record {
            seq: 0,
            prev: String::new(),
            at_ms: 5,
            agent: "a".into(),
            event: event.into(),
            body,
        }
    }

    #[test]
    fn drill_end_records_read_back_as_written() {
        let gate = GateId::new("app").expect("gate");
        let ends = [
            DrillEndCause::Elapsed,
            DrillEndCause::Aborted {
                by: OperatorId::new("bob").expect("op"),
                seq: 9,
            },
            DrillEndCause::AbortCheck(CheckId::new("standby").expect("check")),
        ];
        for cause in ends {
            let end = DrillEnd {
                at: UnixMillis(1_234),
                cause,
            };
            let r = record("drill_end", end_body(&gate, 77, &end));
            assert_eq!(end_from_record(&r), Some((gate.clone(), 77, end)));
        }
        assert_eq!(
            end_from_record(&record("drill_end", json!({ "gate": "app" }))),
            None
        );
    }

    #[test]
    fn judged_drills_and_the_last_result_are_found() {
        let gate = GateId::new("app").expect("gate");
        let log = [
            record(
                "drill_result",
                json!({ "gate": "app", "seq": 1, "result": "fail" }),
            ),
            record(
                "drill_result",
                json!({ "gate": "db", "seq": 2, "result": "pass" }),
            ),
            record(
                "drill_result",
                json!({ "gate": "app", "seq": 3, "result": "pass", "dry_run": true }),
            ),
        ];
        assert_eq!(
            judged(&log),
            [
                ("app".to_owned(), 1),
                ("app".to_owned(), 3),
                ("db".to_owned(), 2)
            ]
            .into_iter()
            .collect()
        );
        let last = last_result(&log, &gate).expect("a result");
        assert_eq!(
            (last.seq, last.result.as_deref(), last.dry_run),
            (3, Some("pass"), true)
        );
        let s = status(None, Some(&last), UnixMillis(0)).expect("status");
        assert_eq!(
            (s.state.as_str(), s.result.as_deref()),
            ("finished", Some("pass"))
        );
        assert_eq!(last_result(&log, &GateId::new("web").expect("gate")), None);
    }
}
