//! Signed checkpoints: a record (event `checkpoint`) sealing the chain's head — the record
//! just before it — with the agent's ed25519 key, so cutting records off the end of the log
//! is seen by `quorumgate verify --audit` (up to the last checkpoint; see ARCHITECTURE.md for
//! what stays undetectable).
//!
//! Body: `{"head_seq", "head_hash", "reason", "signature"}`; `reason` is `periodic`,
//! `rotation` or `shutdown`; `signature` is base64 of the ed25519 signature over
//! [`message`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _};
use quorum::{SigningKey, VerifyingKey};
use serde_json::{json, Value};

use super::Record;

pub const EVENT: &str = "checkpoint";

/// Sealed records since the last checkpoint: a checkpoint follows every this many records …
pub const EVERY_RECORDS: u64 = 1000;
/// … and, checked once a round, any record left unsealed this long.
pub const AFTER_MS: u64 = 60_000;

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Periodic,
    Rotation,
    Shutdown,
}

impl Reason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Periodic => "periodic",
            Self::Rotation => "rotation",
            Self::Shutdown => "shutdown",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Periodic, Self::Rotation, Self::Shutdown]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The signed bytes: domain, agent, the head's seq and hash, the checkpoint's own time and
/// reason.
#[must_use]
pub fn message(agent: &str, head_seq: u64, head_hash: &str, at_ms: u64, reason: &str) -> Vec<u8> {
    format!("quorumgate audit checkpoint v1\nagent={agent}\nhead_seq={head_seq}\nhead_hash={head_hash}\nat_ms={at_ms}\nreason={reason}\n")
        .into_bytes()
}

/// The body of a checkpoint sealing `(head_seq, head_hash)`.
#[must_use]
pub fn body(
    key: &SigningKey,
    agent: &str,
    head_seq: u64,
    head_hash: &str,
    at_ms: u64,
    reason: Reason,
) -> Value {
    let sig = key.sign(&message(agent, head_seq, head_hash, at_ms, reason.as_str()));
    json!({
        "head_seq": head_seq,
        "head_hash": head_hash,
        "reason": reason.as_str(),
        "signature": STANDARD.encode(sig.to_bytes()),
    })
}

/// Checks a checkpoint record: it seals the record just before it (its seq and `prev`) and
/// its signature verifies with `key`, the key of the member it names.
pub fn check(record: &Record, key: &VerifyingKey) -> Result<Reason, String> {
    let b = &record.body;
    let head_seq = b
        .get("head_seq")
        .and_then(Value::as_u64)
        .ok_or("checkpoint without head_seq")?;
    let head_hash = b
        .get("head_hash")
        .and_then(Value::as_str)
        .ok_or("checkpoint without head_hash")?;
    let reason_text = b
        .get("reason")
        .and_then(Value::as_str)
        .ok_or("checkpoint without reason")?;
    let reason = Reason::parse(reason_text)
        .ok_or_else(|| format!("unknown checkpoint reason {reason_text:?}"))?;
    if record.seq == 0 || head_seq != record.seq - 1 || head_hash != record.prev {
        return Err(format!(
            "checkpoint seals seq {head_seq} hash {head_hash}, but the record before it is seq {} hash {}",
            record.seq.saturating_sub(1),
            record.prev
        ));
    }
    let sig = b
        .get("signature")
        .and_then(Value::as_str)
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|s| <[u8; 64]>::try_from(s.as_slice()).ok())
        .ok_or("checkpoint signature is not 64 bytes of base64")?;
    let msg = message(
        &record.agent,
        head_seq,
        head_hash,
        record.at_ms,
        reason_text,
    );
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
        .map_err(|_| {
            format!(
                "checkpoint signature does not verify with member {}'s key",
                record.agent
            )
        })?;
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(key: &SigningKey, seq: u64, prev: &str) -> Record {
        Record {
            seq,
            prev: prev.to_owned(),
            at_ms: 77,
            agent: "a0".into(),
            event: EVENT.into(),
            body: body(key, "a0", seq - 1, prev, 77, Reason::Shutdown),
        }
    }

    #[test]
    fn a_checkpoint_verifies_only_for_its_head_and_key() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let good = checkpoint(&key, 5, "ab");
        assert_eq!(check(&good, &key.verifying_key()), Ok(Reason::Shutdown));
        assert!(check(&good, &other.verifying_key())
            .unwrap_err()
            .contains("does not verify"));
        let mut moved = good.clone();
        moved.seq = 6;
        assert!(check(&moved, &key.verifying_key())
            .unwrap_err()
            .contains("seals seq 4"));
        let mut retimed = good.clone();
        retimed.at_ms = 78;
        assert!(check(&retimed, &key.verifying_key()).is_err());
        let mut relabelled = good;
        relabelled.body["reason"] = json!("periodic");
        assert!(check(&relabelled, &key.verifying_key()).is_err());
    }
}
