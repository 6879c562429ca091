//! The fence: a TXT record `_quorumgate.<gate>.<zone>` holding
//! `"epoch=<n> digest=<sha256 of the desired records> by=<agent>"`.
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
    /// The TXT value, quoted as Route 53 stores it.
    pub fn txt_value(&self) -> String {
        format!("\"{self}\"")
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

    /// Parses `"epoch=<n> digest=<hex> by=<agent>"` (quotes optional).
    pub fn parse_txt(value: &str) -> Result<Self, FenceError> {
        let syntax = |why| FenceError::Syntax {
            value: value.to_owned(),
            why,
        };
        let inner = value.trim();
        let inner = inner
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(inner);
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
        if parts.next().is_some() {
            return Err(syntax("trailing fields"));
        }
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(syntax("digest is not 64 lower-case hex digits"));
        }
        validate_writer_id(&by)?;
        Ok(Self { epoch, digest, by })
    }
}

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch={} digest={} by={}",
            self.epoch, self.digest, self.by
        )
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
