//! `quorumgate verify --audit`: the chain across every kept file, every certificate, every
//! signed operator command and every checkpoint signature.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::{AgentId, ConfigDigest, Membership, OperatorId, VerifyingKey};
use serde_json::Value;

use super::checkpoint::{self, Reason};
use super::{chain, repair, AuditError, Record};

/// How the end of the log is sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sealed {
    /// No checkpoint at all.
    #[default]
    Never,
    /// The last checkpoint is periodic (or from a rotation): the agent is running, or did
    /// not shut down cleanly.
    Periodic,
    /// The last record is a shutdown checkpoint.
    Shutdown,
}

/// What a verified log contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub certificates: u64,
    /// Signed operator commands whose signature verified.
    pub commands: u64,
    pub checkpoints: u64,
    /// Files verified (`audit.jsonl.N` … `audit.jsonl`).
    pub files: usize,
    /// Seq of the oldest kept record (> 0 when older files were rotated away).
    pub first_seq: u64,
    /// Records after the last checkpoint (all of them without one).
    pub unsealed: u64,
    pub last_checkpoint: Option<u64>,
    pub sealed: Sealed,
    /// `audit_torn_tail` records: torn tails repaired at a start, described.
    pub torn_repairs: Vec<String>,
    /// A torn last line not repaired yet (the agent has not restarted since, or is
    /// writing it right now).
    pub torn_now: Option<String>,
}

/// What a log is verified against: the configured members (certificates, checkpoints) and
/// operators (signed commands).
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub membership: &'a Membership,
    pub digest: &'a ConfigDigest,
    pub skew_ms: u64,
    pub operators: &'a [(OperatorId, VerifyingKey)],
}

/// Verifies the log at `path` and its rotated files: the chain, every certificate, every
/// signed operator command and every checkpoint. Reads one record at a time.
pub fn verify_file(path: &Path, trust: &Trust<'_>) -> Result<Summary, AuditError> {
    if !path.exists() {
        return Err(AuditError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut s = Summary::default();
    let mut failure = None;
    let walked = chain::walk_set(path, |_, r, _, _| {
        if s.records == 0 && r.seq > 0 && r.event != super::log::CONTINUED {
            // Only rotation drops the oldest records, and every rotated file begins with the
            // record that continues the chain into it.
            failure.get_or_insert(AuditError::Invalid {
                seq: r.seq,
                why: format!(
                    "the log begins at seq {} with a {} record, not at seq 0 or an audit_continued record: its beginning was cut off",
                    r.seq, r.event
                ),
            });
        }
        if failure.is_none() {
            if let Err(e) = verify_record(r, trust, &mut s) {
                failure = Some(e);
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    s.files = walked.files.len();
    s.first_seq = walked.first_seq.unwrap_or(0);
    s.torn_now = walked.torn.map(|(p, t)| {
        format!(
            "{} line {}: {} ({} bytes)",
            p.display(),
            t.line,
            t.why,
            t.bytes
        )
    });
    Ok(s)
}

fn verify_record(record: &Record, trust: &Trust<'_>, s: &mut Summary) -> Result<(), AuditError> {
    let invalid = |why: String| AuditError::Invalid {
        seq: record.seq,
        why,
    };
    s.records += 1;
    for cert in certificate_fields(&record.body) {
        let bytes = STANDARD
            .decode(cert)
            .map_err(|e| invalid(format!("certificate is not base64: {e}")))?;
        quorum::verify_certificate(&bytes, trust.membership, Some(trust.digest), trust.skew_ms)
            .map_err(|e| invalid(format!("certificate does not verify: {e}")))?;
        s.certificates += 1;
    }
    match record.event.as_str() {
        "operator_command" => {
            verify_command(record, trust.operators)?;
            s.commands += 1;
        }
        checkpoint::EVENT => {
            let key = AgentId::new(record.agent.clone())
                .ok()
                .and_then(|id| trust.membership.get(&id))
                .map(|m| m.key)
                .ok_or_else(|| {
                    invalid(format!(
                        "checkpoint by {}, which is not a configured member",
                        record.agent
                    ))
                })?;
            let reason = checkpoint::check(record, &key).map_err(invalid)?;
            s.checkpoints += 1;
            s.unsealed = 0;
            s.last_checkpoint = Some(record.seq);
            s.sealed = if reason == Reason::Shutdown {
                Sealed::Shutdown
            } else {
                Sealed::Periodic
            };
            return Ok(());
        }
        repair::EVENT => {
            let b = &record.body;
            s.torn_repairs.push(format!(
                "seq {}: {} bytes cut off line {} ({}), kept in {}",
                record.seq,
                b.get("bytes").and_then(Value::as_u64).unwrap_or_default(),
                b.get("line").and_then(Value::as_u64).unwrap_or_default(),
                b.get("why").and_then(Value::as_str).unwrap_or_default(),
                b.get("saved_to").and_then(Value::as_str).unwrap_or("?"),
            ));
        }
        _ => {}
    }
    s.unsealed += 1;
    if s.sealed == Sealed::Shutdown {
        s.sealed = Sealed::Periodic;
    }
    Ok(())
}

/// An `operator_command` record's `signed` field must be a command signed by the operator
/// it names, about the gate and action the record names.
fn verify_command(
    record: &Record,
    operators: &[(OperatorId, VerifyingKey)],
) -> Result<(), AuditError> {
    let corrupt = |why: String| AuditError::Invalid {
        seq: record.seq,
        why,
    };
    let signed = record
        .body
        .get("signed")
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt("operator command without its signed form".into()))?;
    let wire = STANDARD
        .decode(signed)
        .map_err(|e| corrupt(format!("signed command is not base64: {e}")))?;
    let signed = quorum::operator::SignedCommand::from_wire(&wire)
        .map_err(|e| corrupt(format!("signed command does not decode: {e}")))?;
    let command = signed
        .decode_unverified()
        .map_err(|e| corrupt(format!("signed command does not decode: {e}")))?;
    let key = operators
        .iter()
        .find(|(id, _)| *id == command.operator)
        .map(|(_, k)| k)
        .ok_or_else(|| corrupt(format!("operator {} is not configured", command.operator)))?;
    if !signed.verifies_with(key) {
        return Err(corrupt(format!(
            "command signature of operator {} does not verify",
            command.operator
        )));
    }
    let named = |field: &str| record.body.get(field).and_then(Value::as_str);
    if named("gate") != Some(command.gate.as_str())
        || named("action") != Some(command.action.as_str())
        || named("operator") != Some(command.operator.as_str())
    {
        return Err(corrupt(
            "the record's gate, action or operator differ from the signed command".into(),
        ));
    }
    Ok(())
}

fn certificate_fields(body: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    if let Value::Object(map) = body {
        for (k, v) in map {
            match (k.as_str(), v) {
                ("certificate", Value::String(s)) => out.push(s.as_str()),
                ("certificates", Value::Array(items)) => {
                    out.extend(items.iter().filter_map(Value::as_str))
                }
                (_, nested @ Value::Object(_)) => out.extend(certificate_fields(nested)),
                _ => {}
            }
        }
    }
    out
}
