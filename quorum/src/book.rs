//! Validation on receipt, and the latest valid ballot of every member.
//!
//! [`BallotBook::handle_ballot`] is the only way a ballot gets counted. It checks, in order:
//! size, decoding, known agent, signature, config digest, sequence (replay), clock skew
//! (from the future) and expiry. Each failure is a distinct [`Rejection`] with a stable
//! metric label from [`Rejection::reason`]. The stateless checks (up to the digest) also run
//! on their own, outside whatever guards the book (`receipt.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ballot::{Ballot, ConfigDigest};
use crate::codec::DecodeError;
use crate::ids::AgentId;
use crate::membership::Membership;
use crate::signed::SignedBallot;
use crate::time::UnixMillis;

mod receipt;
pub use receipt::{Prechecked, Receipt};

/// Hard ceiling on a signed ballot's wire size, whatever the configuration says.
pub const MAX_BALLOT_BYTES: usize = 16 * 1024 * 1024;

/// Receipt policy shared by every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookConfig {
    /// Largest accepted wire size (capped at [`MAX_BALLOT_BYTES`]).
    pub max_ballot_bytes: usize,
    /// How far ahead of our clock an issuer's `issued_at` may be.
    pub max_clock_skew_ms: u64,
    /// Digest of our shared configuration; ballots made under another are refused.
    pub config_digest: ConfigDigest,
}

/// A ballot whose signature, issuer and digest have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBallot {
    pub signed: SignedBallot,
    pub ballot: Ballot,
}

/// A ballot that passed validation.
#[derive(Clone, Debug)]
pub enum Accepted {
    /// Newer than anything held from that member; it replaced the previous one.
    New(Arc<VerifiedBallot>),
    /// Byte-identical to the ballot already held (e.g. pushed and also pulled). Idempotent.
    Duplicate,
}

/// Why a ballot was not counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("undecodable: {0}")]
    Decode(#[from] DecodeError),
    #[error("agent {0} is not a configured member")]
    UnknownAgent(AgentId),
    #[error("signature of {0}'s ballot does not verify with its configured key")]
    BadSignature(AgentId),
    #[error("{agent} votes under config digest {theirs}, ours differs")]
    ConfigDrift {
        agent: AgentId,
        theirs: ConfigDigest,
    },
    #[error("{agent} seq {seq} is not above the last accepted seq {last}")]
    Replay { agent: AgentId, seq: u64, last: u64 },
    #[error("{agent} signed two different ballots with seq {seq}")]
    Equivocation { agent: AgentId, seq: u64 },
    #[error("{agent}'s ballot is issued {ahead_ms} ms in our future (beyond the allowed skew)")]
    FromFuture { agent: AgentId, ahead_ms: u64 },
    #[error("{agent}'s ballot expired {age_ms} ms ago")]
    Expired { agent: AgentId, age_ms: u64 },
}

impl Rejection {
    /// Stable low-cardinality label for `quorumgate_ballots_rejected_total{reason}`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Decode(_) => "decode",
            Rejection::UnknownAgent(_) => "unknown_agent",
            Rejection::BadSignature(_) => "bad_signature",
            Rejection::ConfigDrift { .. } => "config_drift",
            Rejection::Replay { .. } => "replay",
            Rejection::Equivocation { .. } => "equivocation",
            Rejection::FromFuture { .. } => "from_future",
            Rejection::Expired { .. } => "expired",
        }
    }

    /// Every label [`reason`](Self::reason) can return, so exporters can pre-register them.
    pub const REASONS: [&'static str; 9] = [
        "too_large",
        "decode",
        "unknown_agent",
        "bad_signature",
        "config_drift",
        "replay",
        "equivocation",
        "from_future",
        "expired",
    ];
}

/// The latest valid ballot of every member.
#[derive(Clone, Debug)]
pub struct BallotBook {
    membership: Membership,
    config: BookConfig,
    latest: BTreeMap<AgentId, Arc<VerifiedBallot>>,
}

impl BallotBook {
    #[must_use]
    pub fn new(membership: Membership, mut config: BookConfig) -> Self {
        config.max_ballot_bytes = config.max_ballot_bytes.min(MAX_BALLOT_BYTES);
        Self {
            membership,
            config,
            latest: BTreeMap::new(),
        }
    }

    #[must_use]
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    #[must_use]
    pub fn config(&self) -> &BookConfig {
        &self.config
    }

    /// Validates a wire-encoded signed ballot received at `now` and, if it is newer than what
    /// we hold from its issuer, keeps it. Never panics, whatever `wire` holds.
    pub fn handle_ballot(&mut self, now: UnixMillis, wire: &[u8]) -> Result<Accepted, Rejection> {
        let limit = self.config.max_ballot_bytes;
        if wire.len() > limit {
            return Err(Rejection::TooLarge {
                size: wire.len(),
                limit,
            });
        }
        let signed = SignedBallot::from_wire(wire)?;
        self.handle_signed(now, signed)
    }

    /// The latest accepted ballot of `agent`, live or not.
    #[must_use]
    pub fn latest(&self, agent: &AgentId) -> Option<&Arc<VerifiedBallot>> {
        self.latest.get(agent)
    }

    /// The latest accepted ballot of every member that has one, in member order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<VerifiedBallot>> {
        self.latest.values()
    }

    /// The ballots that count at `now` (within validity, allowing the configured skew).
    pub fn live(&self, now: UnixMillis) -> impl Iterator<Item = &Arc<VerifiedBallot>> {
        let skew = self.config.max_clock_skew_ms;
        self.latest
            .values()
            .filter(move |v| v.ballot.is_live_at(now, skew))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Member;
    use crate::signed::SigningKey;

    const DIGEST: ConfigDigest = ConfigDigest([9; 32]);

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i + 1; 32])
    }

    fn book() -> BallotBook {
        let members = (0..3)
            .map(|i| Member {
                id: AgentId::new(format!("a{i}")).unwrap(),
                region: "r".into(),
                key: key(i).verifying_key(),
            })
            .collect();
        let cfg = BookConfig {
            max_ballot_bytes: 4096,
            max_clock_skew_ms: 1_000,
            config_digest: DIGEST,
        };
        BallotBook::new(Membership::new(members).unwrap(), cfg)
    }

    fn wire(agent: &str, signer: u8, seq: u64, issued: u64, digest: ConfigDigest) -> Vec<u8> {
        let b = Ballot::new(
            AgentId::new(agent).unwrap(),
            seq,
            UnixMillis(issued),
            10_000,
            digest,
            vec![],
        )
        .unwrap();
        SignedBallot::sign(&b, &key(signer)).to_wire()
    }

    #[test]
    fn every_rejection_reason() {
        let now = UnixMillis(100_000);
        let mut b = book();
        assert!(matches!(
            b.handle_ballot(now, &wire("a0", 0, 5, 100_000, DIGEST)),
            Ok(Accepted::New(_))
        ));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0; 5000], "too_large"),
            (b"garbage".to_vec(), "decode"),
            (wire("zz", 0, 9, 100_000, DIGEST), "unknown_agent"),
            (wire("a1", 2, 9, 100_000, DIGEST), "bad_signature"),
            (
                wire("a1", 1, 9, 100_000, ConfigDigest([1; 32])),
                "config_drift",
            ),
            (wire("a0", 0, 4, 100_000, DIGEST), "replay"),
            (wire("a0", 0, 5, 100_001, DIGEST), "equivocation"),
            (wire("a1", 1, 9, 101_001, DIGEST), "from_future"),
            (wire("a1", 1, 9, 89_999, DIGEST), "expired"),
        ];
        for (bytes, reason) in cases {
            let err = b.handle_ballot(now, &bytes).expect_err(reason);
            assert_eq!(err.reason(), reason, "{err}");
        }
        assert!(Rejection::REASONS.len() == 9);
    }

    #[test]
    fn duplicates_are_idempotent_and_newer_replaces() {
        let now = UnixMillis(100_000);
        let mut b = book();
        let w = wire("a0", 0, 5, 100_000, DIGEST);
        assert!(matches!(b.handle_ballot(now, &w), Ok(Accepted::New(_))));
        assert!(matches!(b.handle_ballot(now, &w), Ok(Accepted::Duplicate)));
        assert!(matches!(
            b.handle_ballot(now, &wire("a0", 0, 6, 100_000, DIGEST)),
            Ok(Accepted::New(_))
        ));
        assert_eq!(
            b.latest(&AgentId::new("a0").unwrap()).unwrap().ballot.seq(),
            6
        );
        assert_eq!(b.live(now).count(), 1);
        assert_eq!(b.live(UnixMillis(200_000)).count(), 0);
    }

    #[test]
    fn skew_within_limit_is_accepted() {
        let mut b = book();
        assert!(b
            .handle_ballot(UnixMillis(100_000), &wire("a2", 2, 1, 101_000, DIGEST))
            .is_ok());
    }
}
