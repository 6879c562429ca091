//! The audit log: append-only JSON lines, each hash-chained to the previous one and fsynced
//! before the action it describes is taken ("persist before act").
//!
//! ```text
//! {"seq":0,"prev":"000…0","at_ms":…,"agent":"use1","event":"started","body":{…}}
//! {"seq":1,"prev":"<sha256 of line 0>","at_ms":…,"agent":"use1","event":"transition","body":{…}}
//! ```
//! `prev` is the SHA-256 (hex) of the previous line's bytes, so editing, dropping or reordering
//! any line breaks the chain at the next one. Certificates inside bodies (fields named
//! `certificate` or `certificates`, base64 of `quorum::Certificate::to_bytes`) are re-verified
//! by [`verify_file`] against the configured members' keys.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::{AgentId, ConfigDigest, Membership, OperatorId, UnixMillis, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    pub at_ms: u64,
    pub agent: String,
    pub event: String,
    pub body: Value,
}

/// Why the log cannot be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log line {line}: {why}")]
    Corrupt { line: u64, why: String },
}

/// An open audit log, positioned after its last record.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    agent: AgentId,
    next_seq: u64,
    prev: String,
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl AuditLog {
    /// Opens (or creates) the log and checks the existing chain, so appends continue it.
    pub fn open(path: &Path, agent: AgentId) -> Result<Self, AuditError> {
        Self::open_inner(path, agent, |_| {})
    }

    /// [`open`](Self::open), also returning every record already in the log (start-up
    /// replay): the file is read and checked once.
    pub fn open_with_history(
        path: &Path,
        agent: AgentId,
    ) -> Result<(Self, Vec<Record>), AuditError> {
        let mut history = Vec::new();
        let log = Self::open_inner(path, agent, |r| history.push(r))?;
        Ok((log, history))
    }

    fn open_inner(
        path: &Path,
        agent: AgentId,
        each: impl FnMut(Record),
    ) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let (next_seq, prev) = match File::open(path) {
            Ok(f) => walk_chain(BufReader::new(f), each)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, GENESIS.to_owned()),
            Err(e) => return Err(io(e)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            agent,
            next_seq,
            prev,
        })
    }

    /// Appends one record and fsyncs it. Only after this returns may the action proceed.
    pub fn append(
        &mut self,
        at: UnixMillis,
        event: &str,
        body: Value,
    ) -> Result<Record, AuditError> {
        let record = Record {
            seq: self.next_seq,
            prev: self.prev.clone(),
            at_ms: at.0,
            agent: self.agent.to_string(),
            event: event.to_owned(),
            body,
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| AuditError::Corrupt {
            line: record.seq,
            why: e.to_string(),
        })?;
        let hash = sha_hex(&line);
        line.push(b'\n');
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.next_seq += 1;
        self.prev = hash;
        Ok(record)
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tests: every later append fails as on a full disk (writes go to `/dev/full`), until
    /// [`reopen_for_test`](Self::reopen_for_test).
    #[cfg(test)]
    pub(crate) fn fail_writes_for_test(&mut self) {
        self.file = OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .expect("/dev/full opens");
    }

    /// Tests: appends go to the log's file again.
    #[cfg(test)]
    pub(crate) fn reopen_for_test(&mut self) {
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .expect("the audit log reopens");
    }
}

/// The log shared by everything in the agent that acts (decisions, gate writes, operator
/// commands). Take the lock only around an append; never across an await.
pub type SharedAudit = std::sync::Arc<std::sync::Mutex<AuditLog>>;

/// Appends to a shared log (poisoning is ignored: a panicked appender left at worst a torn
/// last line, which [`AuditLog::open`] rejects at the next start).
pub fn append_shared(
    log: &SharedAudit,
    at: UnixMillis,
    event: &str,
    body: Value,
) -> Result<Record, AuditError> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .append(at, event, body)
}

/// Every record of a log, in order, after checking its chain (for replay at start-up).
pub fn read_records(path: &Path) -> Result<Vec<Record>, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuditError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut records = Vec::new();
    walk_chain(BufReader::new(file), |r| records.push(r))?;
    Ok(records)
}

/// Walks a log, checking the chain and handing each record to `each`; returns the next seq
/// and the last line's hash.
fn walk_chain(
    reader: impl BufRead,
    mut each: impl FnMut(Record),
) -> Result<(u64, String), AuditError> {
    let mut prev = GENESIS.to_owned();
    let mut seq = 0u64;
    for (i, line) in reader.split(b'\n').enumerate() {
        let n = i as u64;
        let line = line.map_err(|e| AuditError::Corrupt {
            line: n,
            why: e.to_string(),
        })?;
        if line.is_empty() {
            continue;
        }
        let record: Record = serde_json::from_slice(&line).map_err(|e| AuditError::Corrupt {
            line: n,
            why: format!("not a record: {e}"),
        })?;
        if record.seq != seq {
            return Err(AuditError::Corrupt {
                line: n,
                why: format!("seq {} where {seq} was expected", record.seq),
            });
        }
        if record.prev != prev {
            return Err(AuditError::Corrupt {
                line: n,
                why: "hash chain broken: prev does not match the previous line".into(),
            });
        }
        prev = sha_hex(&line);
        seq += 1;
        each(record);
    }
    Ok((seq, prev))
}

/// What a verified log contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub certificates: u64,
    /// Signed operator commands whose signature verified.
    pub commands: u64,
}

/// What a log is verified against: the configured members (certificates) and operators
/// (signed commands).
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub membership: &'a Membership,
    pub digest: &'a ConfigDigest,
    pub skew_ms: u64,
    pub operators: &'a [(OperatorId, VerifyingKey)],
}

/// Verifies the whole chain, every certificate and every signed operator command in it.
pub fn verify_file(path: &Path, trust: &Trust<'_>) -> Result<Summary, AuditError> {
    let Trust {
        membership,
        digest,
        skew_ms,
        operators,
    } = *trust;
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut all = Vec::new();
    let (records, _) = walk_chain(BufReader::new(file), |r| all.push(r))?;
    let mut certificates = 0;
    let mut commands = 0;
    for record in &all {
        for cert in certificate_fields(&record.body) {
            let bytes = STANDARD.decode(cert).map_err(|e| AuditError::Corrupt {
                line: record.seq,
                why: format!("certificate is not base64: {e}"),
            })?;
            quorum::verify_certificate(&bytes, membership, Some(digest), skew_ms).map_err(|e| {
                AuditError::Corrupt {
                    line: record.seq,
                    why: format!("certificate does not verify: {e}"),
                }
            })?;
            certificates += 1;
        }
        if record.event == "operator_command" {
            verify_command(record, operators)?;
            commands += 1;
        }
    }
    Ok(Summary {
        records,
        certificates,
        commands,
    })
}

/// An `operator_command` record's `signed` field must be a command signed by the operator
/// it names, about the gate and action the record names.
fn verify_command(
    record: &Record,
    operators: &[(OperatorId, VerifyingKey)],
) -> Result<(), AuditError> {
    let corrupt = |why: String| AuditError::Corrupt {
        line: record.seq,
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

#[cfg(test)]
mod tests {
    use super::*;
    use quorum::{
        Ballot, BallotBook, BookConfig, CheckId, Member, Observation, Reason, SignedBallot,
        SigningKey, Status,
    };
    use serde_json::json;

    fn trust<'a>(membership: &'a Membership, digest: &'a ConfigDigest) -> Trust<'a> {
        Trust {
            membership,
            digest,
            skew_ms: 1000,
            operators: &[],
        }
    }

    fn members() -> (Membership, Vec<SigningKey>) {
        let keys: Vec<SigningKey> = (1..=3).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let members = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Member {
                id: AgentId::new(format!("a{i}")).unwrap(),
                region: "r".into(),
                key: k.verifying_key(),
            })
            .collect();
        (Membership::new(members).unwrap(), keys)
    }

    fn certificate(membership: &Membership, keys: &[SigningKey], digest: ConfigDigest) -> String {
        let cfg = BookConfig {
            max_ballot_bytes: 1 << 20,
            max_clock_skew_ms: 1000,
            max_valid_for_ms: u64::from(u32::MAX),
            config_digest: digest,
        };
        let mut book = BallotBook::new(membership.clone(), cfg);
        let check = CheckId::new("app").unwrap();
        for (i, k) in keys.iter().enumerate() {
            let obs = Observation::new(
                check.clone(),
                Status::Unhealthy,
                Reason::from_static("status"),
                1,
                UnixMillis(1000),
            );
            let b = Ballot::new(
                AgentId::new(format!("a{i}")).unwrap(),
                1,
                UnixMillis(1000),
                5000,
                digest,
                vec![obs],
            )
            .unwrap();
            book.handle_ballot(UnixMillis(1000), &SignedBallot::sign(&b, k).to_wire())
                .unwrap();
        }
        let cert = quorum::tally(&book, &check, UnixMillis(1000))
            .certificate
            .unwrap();
        STANDARD.encode(cert.to_bytes())
    }

    #[test]
    fn appends_chain_and_verify_then_tampering_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (membership, keys) = members();
        let digest = ConfigDigest([4; 32]);
        let cert = certificate(&membership, &keys, digest);
        let agent = AgentId::new("a0").unwrap();
        {
            let mut log = AuditLog::open(&path, agent.clone()).unwrap();
            log.append(UnixMillis(1), "started", json!({"version": "x"}))
                .unwrap();
            log.append(
                UnixMillis(2),
                "transition",
                json!({"check": "app", "certificate": cert}),
            )
            .unwrap();
        }
        // Reopening continues the chain.
        let mut log = AuditLog::open(&path, agent).unwrap();
        let r = log
            .append(
                UnixMillis(3),
                "change_planned",
                json!({"gate": {"certificates": [cert]}}),
            )
            .unwrap();
        assert_eq!(r.seq, 2);
        let summary = verify_file(&path, &trust(&membership, &digest)).unwrap();
        assert_eq!(
            summary,
            Summary {
                records: 3,
                certificates: 2,
                commands: 0
            }
        );

        // Any edit of an earlier line breaks the chain at the next line.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen("\"version\":\"x\"", "\"version\":\"y\"", 1),
        )
        .unwrap();
        let err = verify_file(&path, &trust(&membership, &digest)).unwrap_err();
        assert!(matches!(err, AuditError::Corrupt { line: 1, .. }), "{err}");

        // A dropped line is caught too.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(verify_file(&path, &trust(&membership, &digest)).is_err());

        // A certificate under another digest does not verify.
        std::fs::write(&path, &text).unwrap();
        assert!(verify_file(&path, &trust(&membership, &ConfigDigest([5; 32]))).is_err());
        assert!(verify_file(&path, &trust(&membership, &digest)).is_ok());
    }
}
