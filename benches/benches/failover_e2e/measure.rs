//! What the agents' audit logs say happened after a mark: when the quorum decided, who wrote,
//! and when the fenced batch was accepted. All times are the agents' `at_ms` wall-clock
//! stamps (same host, same clock as the mark), so polling latency never enters a figure.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;

use anyhow::Context as _;
use quorumgate::audit::Record;
use serde_json::Value;

/// Follows one agent's `audit.jsonl` as it grows; a line is taken once it is complete.
#[derive(Debug)]
pub struct AuditTail {
    pub agent: String,
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    pub records: Vec<Record>,
}

impl AuditTail {
    pub fn new(agent: String, path: PathBuf) -> Self {
        Self {
            agent,
            path,
            offset: 0,
            partial: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Reads whatever was appended since the last call.
    pub fn poll(&mut self) -> anyhow::Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("{}", self.path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let n = file.read_to_end(&mut self.partial)?;
        self.offset += n as u64;
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            if line.is_empty() {
                continue;
            }
            let record: Record = serde_json::from_slice(line).with_context(|| {
                format!(
                    "{}: record {} does not parse",
                    self.path.display(),
                    self.records.len()
                )
            })?;
            self.records.push(record);
        }
        Ok(())
    }
}

/// What one episode (a failover or a failback) waits for.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// The check whose decision moves the gate, and the decision.
    pub check: &'static str,
    pub check_to: &'static str,
    /// The gate, the state it moves to, and the fence epoch the batch creates.
    pub gate: &'static str,
    pub gate_to: &'static str,
    pub epoch: u64,
}

/// One measured change, all times in wall-clock milliseconds.
#[derive(Debug, Clone)]
pub struct Episode {
    /// Just before the target's behaviour was changed.
    pub mark_ms: u64,
    /// The first agent whose decision machine made the transition, and when.
    pub first_agent: String,
    pub first_decision_ms: u64,
    /// The agent whose batch was accepted.
    pub writer: String,
    /// The writer's `gate_decision` (same round as its own transition).
    pub writer_decision_ms: u64,
    /// The writer's `gate_write`: reads done, batch persisted, about to send it.
    pub planned_ms: u64,
    /// The writer's `gate_outcome` with `result = "applied"`.
    pub accepted_ms: u64,
}

impl Episode {
    pub fn detect_ms(&self) -> u64 {
        self.first_decision_ms.saturating_sub(self.mark_ms)
    }
    pub fn write_ms(&self) -> u64 {
        self.accepted_ms.saturating_sub(self.first_decision_ms)
    }
    pub fn total_ms(&self) -> u64 {
        self.accepted_ms.saturating_sub(self.mark_ms)
    }
    pub fn writer_lag_ms(&self) -> u64 {
        self.writer_decision_ms
            .saturating_sub(self.first_decision_ms)
    }
    pub fn plan_ms(&self) -> u64 {
        self.planned_ms.saturating_sub(self.writer_decision_ms)
    }
    pub fn commit_ms(&self) -> u64 {
        self.accepted_ms.saturating_sub(self.planned_ms)
    }
}

fn str_of<'a>(body: &'a Value, key: &str) -> &'a str {
    body.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The episode `want` describes, among the records after `from[i]` of each tail; `None`
/// while no agent has logged the applied batch yet.
pub fn find(
    tails: &[AuditTail],
    from: &[usize],
    mark_ms: u64,
    want: &Want,
) -> anyhow::Result<Option<Episode>> {
    let new = |i: usize| &tails[i].records[from[i].min(tails[i].records.len())..];
    let applied = (0..tails.len()).find_map(|i| {
        new(i)
            .iter()
            .position(|r| {
                r.event == "gate_outcome"
                    && str_of(&r.body, "gate") == want.gate
                    && str_of(&r.body, "result") == "applied"
                    && r.body.get("epoch").and_then(Value::as_u64) == Some(want.epoch)
            })
            .map(|p| (i, p))
    });
    let Some((w, pos)) = applied else {
        return Ok(None);
    };
    let before = &new(w)[..pos];
    let accepted_ms = new(w)[pos].at_ms;
    let writer = tails[w].agent.clone();
    let decision = before
        .iter()
        .rev()
        .find(|r| {
            r.event == "gate_decision"
                && str_of(&r.body, "gate") == want.gate
                && str_of(&r.body, "to") == want.gate_to
        })
        .with_context(|| {
            format!(
                "{writer} applied epoch {} without a gate_decision to {} after the mark",
                want.epoch, want.gate_to
            )
        })?;
    let planned = before
        .iter()
        .rev()
        .find(|r| r.event == "gate_write" && str_of(&r.body, "gate") == want.gate)
        .with_context(|| format!("{writer} applied epoch {} without a gate_write", want.epoch))?;
    let (first_agent, first_decision_ms) = (0..tails.len())
        .filter_map(|i| {
            new(i)
                .iter()
                .find(|r| {
                    r.event == "transition"
                        && str_of(&r.body, "check") == want.check
                        && str_of(&r.body, "to") == want.check_to
                })
                .map(|r| (tails[i].agent.clone(), r.at_ms))
        })
        .min_by_key(|(_, at)| *at)
        .with_context(|| {
            format!(
                "epoch {} applied without any {} -> {} transition after the mark",
                want.epoch, want.check, want.check_to
            )
        })?;
    Ok(Some(Episode {
        mark_ms,
        first_agent,
        first_decision_ms,
        writer,
        writer_decision_ms: decision.at_ms,
        planned_ms: planned.at_ms,
        accepted_ms,
    }))
}
