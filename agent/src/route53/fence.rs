//! The fence: a TXT record `_quorumgate.<gate>.<zone>` holding
//! `"epoch=<n> digest=<sha256 of the desired records> by=<agent> change=<epoch>@<unix ms> …"`.
//!
//! The `change=` entries are the gate's recent changes (the last `max_changes`, this one
//! last) with the time their writer planned each: every agent learns from one read what the
//! velocity rule must count, including changes it never saw (it was down, or restarted). A
//! value longer than one TXT string (255 characters) is split into several at spaces.
//! Agents before this format read `change=` as trailing fields and refuse the fence (they
//! stop writing the gate, never write past it): upgrade every agent of a cluster.
//!
//! Every fenced write deletes the current fence exactly and creates the next one in the same
//! change batch, so the batch is a compare-and-swap on the epoch: of two writers that read the
//! same epoch, Route 53 accepts one batch and rejects the other as a whole.

use std::fmt;

use super::types::{RecordSet, RecordTarget};

/// First label of every fence name; desired records may not use it.
pub const FENCE_LABEL: &str = "_quorumgate";
/// TTL of the fence record (it is read through the API, never resolved).
pub const FENCE_TTL: u32 = 60;

/// The content of a fence record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Rises by one with every accepted write; 0 means "no fence yet".
    pub epoch: u64,
    /// Hex SHA-256 of the desired records the write installed ([`super::DesiredRecords::digest`]).
    pub digest: String,
    /// The agent that wrote it.
    pub by: String,
    /// Recent changes `(epoch, unix ms when planned by their writer)`, oldest first.
    pub changes: Vec<(u64, u64)>,
}

/// Why a fence record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    #[error("fence record has {0} values, expected exactly one")]
    ValueCount(usize),
    #[error("fence record is an alias, expected a TXT value")]
    Alias,
    #[error("fence value {value:?} is not `\"epoch=<n> digest=<sha256> by=<agent>\"`: {why}")]
    Syntax { value: String, why: &'static str },
    #[error("invalid gate name {0:?}: one DNS label of a-z, 0-9 and '-'")]
    GateName(String),
    #[error("invalid writer id {0:?}: 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'")]
    WriterId(String),
}

impl Fence {
    /// The TXT value, quoted as Route 53 stores it: one or more character strings of at
    /// most 255 characters, split at spaces.
    pub fn txt_value(&self) -> String {
        let text = self.to_string();
        let mut strings: Vec<String> = Vec::new();
        for token in text.split(' ') {
            match strings.last_mut() {
                Some(last) if last.len() + 1 + token.len() <= 255 => {
                    last.push(' ');
                    last.push_str(token);
                }
                _ => strings.push(token.to_owned()),
            }
        }
        strings
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The fence as a record set named `fence_name`.
    pub fn record(&self, fence_name: &str) -> RecordSet {
        RecordSet::new(
            fence_name,
            "TXT",
            RecordTarget::values(FENCE_TTL, [self.txt_value()]),
        )
    }

    /// Reads a fence from its record set.
    pub fn from_record(record: &RecordSet) -> Result<Self, FenceError> {
        match record.target() {
            RecordTarget::Alias { .. } => Err(FenceError::Alias),
            RecordTarget::Values { values, .. } if values.len() != 1 => {
                Err(FenceError::ValueCount(values.len()))
            }
            RecordTarget::Values { values, .. } => Self::parse_txt(&values[0]),
        }
    }

    /// Parses `"epoch=<n> digest=<hex> by=<agent> [change=<e>@<ms> …]"` (quotes optional;
    /// several character strings are read as one, joined by spaces).
    pub fn parse_txt(value: &str) -> Result<Self, FenceError> {
        let syntax = |why| FenceError::Syntax {
            value: value.to_owned(),
            why,
        };
        let inner = value.trim();
        let joined;
        let inner = match inner.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(quoted) => {
                joined = quoted.split("\" \"").collect::<Vec<_>>().join(" ");
                joined.as_str()
            }
            None => inner,
        };
        let mut parts = inner.split(' ');
        let mut field = |key: &str, why| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(key))
                .and_then(|p| p.strip_prefix('='))
                .ok_or_else(|| syntax(why))
        };
        let epoch = field("epoch", "missing epoch=")?
            .parse::<u64>()
            .map_err(|_| syntax("epoch is not a number"))?;
        let digest = field("digest", "missing digest=")?.to_owned();
        let by = field("by", "missing by=")?.to_owned();
        let mut changes = Vec::new();
        for part in parts {
            let entry = part
                .strip_prefix("change=")
                .ok_or_else(|| syntax("trailing fields"))?;
            let (e, at) = entry
                .split_once('@')
                .and_then(|(e, at)| Some((e.parse::<u64>().ok()?, at.parse::<u64>().ok()?)))
                .ok_or_else(|| syntax("change= is not <epoch>@<unix ms>"))?;
            if changes.len() >= MAX_CHANGES {
                return Err(syntax("more change= entries than any gate keeps"));
            }
            changes.push((e, at));
        }
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(syntax("digest is not 64 lower-case hex digits"));
        }
        validate_writer_id(&by)?;
        Ok(Self {
            epoch,
            digest,
            by,
            changes,
        })
    }
}

/// At most this many `change=` entries are read (the largest `max_changes` is smaller).
pub const MAX_CHANGES: usize = 100;

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch={} digest={} by={}",
            self.epoch, self.digest, self.by
        )?;
        for (epoch, at) in &self.changes {
            write!(f, " change={epoch}@{at}")?;
        }
        Ok(())
    }
}

/// `_quorumgate.<gate>.<zone>.`
pub fn fence_name(gate: &str, zone_name: &str) -> Result<String, FenceError> {
    validate_gate_name(gate)?;
    Ok(super::types::normalize_name(&format!(
        "{FENCE_LABEL}.{gate}.{}",
        zone_name.trim_end_matches('.')
    )))
}

/// A gate name becomes a DNS label of the fence name.
pub fn validate_gate_name(gate: &str) -> Result<(), FenceError> {
    let ok = (1..=63).contains(&gate.len())
        && gate
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !gate.starts_with('-')
        && !gate.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(FenceError::GateName(gate.to_owned()))
    }
}

/// A writer id appears unquoted in the fence value.
pub fn validate_writer_id(by: &str) -> Result<(), FenceError> {
    let ok = (1..=64).contains(&by.len())
        && by
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(FenceError::WriterId(by.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence() -> Fence {
        Fence {
            epoch: 7,
            digest: "ab".repeat(32),
            by: "eu-west-1a".into(),
            changes: Vec::new(),
        }
    }

    #[test]
    fn carries_recent_changes_across_several_strings() {
        let mut f = fence();
        f.changes = (1..=20)
            .map(|e| (e, 1_700_000_000_000 + e * 1_000))
            .collect();
        let value = f.txt_value();
        assert!(value.starts_with("\"epoch=7 digest="), "{value}");
        let strings: Vec<&str> = value.split("\" \"").collect();
        assert!(strings.len() > 1, "{value}");
        assert!(
            strings.iter().all(|s| s.trim_matches('"').len() <= 255),
            "{value}"
        );
        assert_eq!(Fence::parse_txt(&value), Ok(f.clone()));
        let record = f.record("_quorumgate.app.example.com");
        assert_eq!(Fence::from_record(&record), Ok(f));
        for bad in ["change=1", "change=x@1", "change=1@", "extra=1"] {
            let v = format!("\"epoch=1 digest={} by=a {bad}\"", "ab".repeat(32));
            assert!(Fence::parse_txt(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn round_trips_through_its_record() {
        let f = fence();
        let record = f.record("_quorumgate.app.example.com");
        assert_eq!(record.name(), "_quorumgate.app.example.com.");
        assert_eq!(record.record_type(), "TXT");
        assert_eq!(
            f.txt_value(),
            format!("\"epoch=7 digest={} by=eu-west-1a\"", "ab".repeat(32))
        );
        assert_eq!(Fence::from_record(&record), Ok(f));
    }

    #[test]
    fn rejects_malformed_values() {
        let d = "ab".repeat(32);
        for bad in [
            String::new(),
            "\"epoch=x digest=00 by=a\"".to_owned(),
            format!("\"epoch=1 digest={d}\""),
            format!("\"epoch=1 by=a digest={d}\""),
            format!("\"epoch=1 digest={} by=a\"", "AB".repeat(32)),
            format!("\"epoch=1 digest={d} by=a extra=1\""),
            format!("\"epoch=1 digest={d} by=a\\\"b\""),
        ] {
            assert!(Fence::parse_txt(&bad).is_err(), "{bad}");
        }
        let two = RecordSet::new(
            "_quorumgate.g.example.com",
            "TXT",
            RecordTarget::values(60, ["\"a\"", "\"b\""]),
        );
        assert_eq!(Fence::from_record(&two), Err(FenceError::ValueCount(2)));
    }

    #[test]
    fn fence_names_are_one_label_per_gate() {
        assert_eq!(
            fence_name("app", "Example.com.").as_deref(),
            Ok("_quorumgate.app.example.com.")
        );
        for bad in ["", "a.b", "-a", "a-", "A", "a b", &"a".repeat(64)] {
            assert!(fence_name(bad, "example.com").is_err(), "{bad:?}");
        }
    }
}
