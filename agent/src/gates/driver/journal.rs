//! The gates' audit records: the JSON each machine record is written as, and the replay form
//! each is read back into at start-up. `quorumgate verify --audit` re-checks the
//! certificates in `gate_decision` and the signatures in `operator_command`.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::gate::machine::{Accepted, AuditRecord, Failure, Outcome, Promoted, Replayed};
use quorum::gate::{Authority, DesiredState, PlannedChange};
use quorum::operator::{Action, OperatorBook, OperatorCommand, SignedCommand, VerifiedCommand};
use quorum::{GateId, UnixMillis};
use serde_json::{json, Value};

use super::Slot;
use crate::audit::Record;
use crate::drill::agent as drills;
use crate::gates::promote;
use crate::gates::records::control_records;

/// The audit event name and body of a record a machine asked for.
pub(super) fn body(slot: &Slot, record: &AuditRecord) -> (&'static str, Value) {
    let gate = slot.id().as_str();
    let promote_what = || {
        slot.cfg
            .promote
            .as_ref()
            .map(|p| promote::describe(&p.action))
    };
    match record {
        AuditRecord::Decision {
            change,
            based_on_epoch,
        } => {
            let digest = control_records(&slot.cfg, &change.to)
                .map(|d| d.digest())
                .unwrap_or_default();
            (
                "gate_decision",
                decision_body(change, *based_on_epoch, &digest),
            )
        }
        AuditRecord::Write {
            plan,
            expected_epoch,
            next_epoch,
            to,
            promote,
        } => {
            let planned = slot.plans.get(plan);
            let batch: Vec<String> = planned
                .map(|w| {
                    w.changes
                        .iter()
                        .map(|c| format!("{} {}", c.action.as_str(), c.record))
                        .collect()
                })
                .unwrap_or_default();
            let body = json!({
                "gate": gate,
                "expected_epoch": expected_epoch,
                "next_epoch": next_epoch,
                "next_fence": planned.map(|w| w.next.txt_value()),
                "to": to.to_string(),
                "to_state": hex::encode(to.to_bytes()),
                "promote": promote,
                "batch": batch,
            });
            ("gate_write", body)
        }
        AuditRecord::Outcome { to, result } => {
            ("gate_outcome", outcome_body(slot, gate, to, result))
        }
        AuditRecord::Promote { epoch } => (
            "gate_promote",
            json!({ "gate": gate, "epoch": epoch, "action": promote_what() }),
        ),
        AuditRecord::PromoteOutcome { epoch, result } => {
            let (label, detail) = match result {
                Ok(Promoted::Started) => ("started", promote_what().unwrap_or_default()),
                Ok(Promoted::AlreadyDone(why)) => ("already_done", why.clone()),
                Err(e) => ("error", e.detail.clone()),
            };
            let body = json!({ "gate": gate, "epoch": epoch, "action": promote_what(), "result": label, "detail": detail });
            ("gate_promote_outcome", body)
        }
        AuditRecord::OperatorCommand(v) => ("operator_command", command_body(v)),
    }
}

fn command_body(v: &VerifiedCommand) -> Value {
    let c = &v.command;
    json!({
        "gate": c.gate.as_str(),
        "operator": c.operator.as_str(),
        "action": c.action.as_str(),
        "detail": action_detail(c),
        "seq": c.seq,
        "issued_at_ms": c.issued_at.0,
        "valid_for_ms": c.valid_for_ms,
        "note": c.note,
        "signed": STANDARD.encode(v.signed.to_wire()),
    })
}

fn decision_body(change: &PlannedChange, epoch: u64, desired_digest: &str) -> Value {
    let authority = match &change.authority {
        Authority::Automatic => json!({ "kind": "automatic" }),
        Authority::Approved(a) => {
            json!({ "kind": "approved", "by": a.by.as_str(), "seq": a.seq, "to": a.to.as_str() })
        }
        Authority::Override { by, seq, force } => {
            json!({ "kind": "override", "by": by.as_str(), "seq": seq, "force": force })
        }
        // The failback that ends a drill: the signed drill command is its approval.
        Authority::Drill { by, seq } => {
            json!({ "kind": "drill", "by": by.as_str(), "seq": seq })
        }
    };
    json!({
        "gate": change.gate.as_str(),
        "mode": change.mode.as_str(),
        "from": change.from.to_string(),
        "to": change.to.to_string(),
        "reason": change.reason.code(),
        "authority": authority,
        "rpo_lag_ms": change.rpo_lag_ms,
        "based_on_epoch": epoch,
        "desired_records_sha256": desired_digest,
        "certificates": change.certificates.iter().map(|c| STANDARD.encode(c.to_bytes())).collect::<Vec<_>>(),
        "certificate_sha256": change.certificates.iter().map(|c| c.digest_hex()).collect::<Vec<_>>(),
    })
}

fn outcome_body(slot: &Slot, gate: &str, to: &DesiredState, result: &Outcome) -> Value {
    let mut body = match result {
        Outcome::Applied(a) => json!({
            "epoch": a.epoch, "change_id": a.change_id, "in_sync": a.in_sync,
            "accepted_at_ms": a.accepted_at_ms, "in_sync_at_ms": a.in_sync_at_ms,
        }),
        Outcome::Won { epoch } => json!({ "epoch": epoch }),
        Outcome::AlreadyInPlace { epoch } => json!({ "epoch": epoch }),
        Outcome::Stale {
            expected_epoch,
            current,
        } => json!({ "expected_epoch": expected_epoch, "current_epoch": current }),
        Outcome::LostRace { current, messages } => {
            json!({ "current_epoch": current, "messages": messages })
        }
        Outcome::Failed(e) => json!({ "error": e.detail, "error_kind": e.label }),
        Outcome::DryRun => {
            let records = control_records(&slot.cfg, to)
                .map(|d| d.records().map(ToString::to_string).collect::<Vec<_>>())
                .unwrap_or_default();
            json!({ "records": records })
        }
    };
    let result_label = match result {
        Outcome::Failed(_) => "error",
        other => other.label(),
    };
    if let Value::Object(map) = &mut body {
        map.insert("gate".into(), json!(gate));
        map.insert("result".into(), json!(result_label));
        map.insert("to".into(), json!(to.to_string()));
    }
    body
}

fn action_detail(c: &OperatorCommand) -> String {
    match &c.action {
        Action::Freeze | Action::Unfreeze | Action::DrillAbort => String::new(),
        Action::Approve { to } => format!("to={to}"),
        Action::Override { desired, force } => format!("{desired} force={force}"),
        Action::Drill {
            duration_ms,
            dry_run,
        } => format!(
            "duration_ms={duration_ms} dry_run={dry_run} ends_at_ms={}",
            c.issued_at.plus(u64::from(*duration_ms)).0
        ),
    }
}

/// The replay form of one audit record, and its gate; operator commands also restore the
/// book's replay protection (drills this agent already judged are over: not restored).
pub(super) fn replayed(
    r: &Record,
    judged: &BTreeSet<(String, u64)>,
    operators: &mut OperatorBook,
) -> Option<(GateId, Replayed)> {
    let at = UnixMillis(r.at_ms);
    let b = &r.body;
    let gate = || {
        b.get("gate")
            .and_then(Value::as_str)
            .and_then(|g| GateId::new(g).ok())
    };
    let num = |k: &str| b.get(k).and_then(Value::as_u64);
    Some(match r.event.as_str() {
        "operator_command" => {
            let wire = STANDARD.decode(b.get("signed")?.as_str()?).ok()?;
            let signed = SignedCommand::from_wire(&wire).ok()?;
            let command = signed.decode_unverified().ok()?;
            operators.restore_seq(command.operator.clone(), command.seq);
            let done = matches!(command.action, Action::Drill { .. })
                && judged.contains(&(command.gate.to_string(), command.seq));
            if done {
                return None;
            }
            let gate = command.gate.clone();
            let command = Box::new(VerifiedCommand { command, signed });
            (gate, Replayed::Command { command, at })
        }
        "drill_end" => {
            let (gate, seq, end) = drills::end_from_record(r)?;
            (gate, Replayed::DrillEnd { seq, end })
        }
        "gate_write" => {
            let to =
                DesiredState::from_bytes(&hex::decode(b.get("to_state")?.as_str()?).ok()?).ok()?;
            let item = Replayed::Write {
                expected_epoch: num("expected_epoch")?,
                to,
                promote: b.get("promote").and_then(Value::as_bool).unwrap_or(false),
            };
            (gate()?, item)
        }
        "gate_outcome" => {
            let epoch = num("epoch");
            let outcome = match b.get("result").and_then(Value::as_str)? {
                "applied" => Outcome::Applied(Accepted {
                    epoch: epoch?,
                    change_id: b
                        .get("change_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    in_sync: b.get("in_sync").and_then(Value::as_bool).unwrap_or(false),
                    accepted_at_ms: num("accepted_at_ms"),
                    in_sync_at_ms: num("in_sync_at_ms"),
                }),
                "won" => Outcome::Won { epoch: epoch? },
                "already_in_place" => Outcome::AlreadyInPlace { epoch: epoch? },
                "stale" => Outcome::Stale {
                    expected_epoch: num("expected_epoch").unwrap_or(0),
                    current: num("current_epoch").unwrap_or(0),
                },
                "lost_race" => Outcome::LostRace {
                    current: num("current_epoch").unwrap_or(0),
                    messages: Vec::new(),
                },
                "dry_run" => Outcome::DryRun,
                _ => Outcome::Failed(Failure::new(
                    "error",
                    b.get("error").and_then(Value::as_str).unwrap_or_default(),
                )),
            };
            (gate()?, Replayed::Outcome { at, outcome })
        }
        "gate_promote" => (
            gate()?,
            Replayed::Promote {
                epoch: num("epoch")?,
            },
        ),
        "gate_promote_outcome" => (
            gate()?,
            Replayed::PromoteOutcome {
                epoch: num("epoch")?,
            },
        ),
        _ => return None,
    })
}
