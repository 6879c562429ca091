//! Validation on receipt, and the latest valid ballot of every member.
//!
//! [`BallotBook::handle_ballot`] is the only way a ballot gets counted. It checks, in order:
//! size, decoding, known agent, signature, config digest, sequence (replay, equivocation),
//! claimed validity (at most the cluster's `ballot_valid_for`), clock skew (from the future)
//! and expiry. Each failure is a distinct [`Rejection`] with a stable metric label from
//! [`Rejection::reason`]. The stateless checks (up to the digest) also run on their own,
//! outside whatever guards the book (`receipt.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ballot::{Ballot, ConfigDigest};
use crate::codec::DecodeError;
use crate::ids::AgentId;
use crate::membership::Membership;
use crate::signed::SignedBallot;
use crate::time::UnixMillis;
use sha2::{Digest, Sha256};

mod receipt;
pub use receipt::{Prechecked, Receipt};

/// Hard ceiling on a signed ballot's wire size, whatever the configuration says.
pub const MAX_BALLOT_BYTES: usize = 16 * 1024 * 1024;

/// How many of each member's latest accepted seqs the book remembers, each with the digest of
/// the ballot signed under it, to recognise a second, different ballot under one of them (at
/// one ballot a round, about a minute of a member's history; 40 bytes each).
pub const REMEMBERED_SEQS: usize = 64;

/// Proof that a member signed two different ballots under one seq: what a seq names is one
/// statement, and an honest member signs each seq once (its seq only rises, from the wall
/// clock in ms, across restarts). Kept by the book, the latest per member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    pub agent: AgentId,
    pub seq: u64,
    /// SHA-256 of the wire form of the ballot accepted first under `seq`.
    pub first_sha256: [u8; 32],
    /// That ballot itself, when the book still held it (it was the member's latest).
    pub first: Option<SignedBallot>,
    /// The second, different ballot under `seq`; its signature verified with the member's key.
    pub second: SignedBallot,
}

/// Receipt policy shared by every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookConfig {
    /// Largest accepted wire size (capped at [`MAX_BALLOT_BYTES`]).
    pub max_ballot_bytes: usize,
    /// How far ahead of our clock an issuer's `issued_at` may be.
    pub max_clock_skew_ms: u64,
    /// Longest `valid_for_ms` a ballot may claim: `cluster.ballot_valid_for`, the value every
    /// honest member signs (it is part of the config digest, so a ballot that passed the
    /// digest check was made under the same value). A longer claim would keep one vote live
    /// for up to ~49 days after its issuer went quiet.
    pub max_valid_for_ms: u64,
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
    #[error("{agent} signed two different ballots with seq {seq} (first sha256 {first}, second sha256 {second})")]
    Equivocation {
        agent: AgentId,
        seq: u64,
        /// Hex SHA-256 of the two wire forms, for the log.
        first: String,
        second: String,
    },
    #[error("{agent}'s ballot is issued {ahead_ms} ms in our future (beyond the allowed skew)")]
    FromFuture { agent: AgentId, ahead_ms: u64 },
    #[error("{agent}'s ballot expired {age_ms} ms ago")]
    Expired { agent: AgentId, age_ms: u64 },
    #[error(
        "{agent}'s ballot claims to stay valid for {valid_for_ms} ms; the cluster's \
         ballot_valid_for is {max} ms, which every member signs"
    )]
    ValidityTooLong {
        agent: AgentId,
        valid_for_ms: u32,
        max: u64,
    },
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
            Rejection::ValidityTooLong { .. } => "validity_too_long",
        }
    }

    /// Every label [`reason`](Self::reason) can return, so exporters can pre-register them.
    pub const REASONS: [&'static str; 10] = [
        "too_large",
        "decode",
        "unknown_agent",
        "bad_signature",
        "config_drift",
        "replay",
        "equivocation",
        "from_future",
        "expired",
        "validity_too_long",
    ];
}

/// The latest valid ballot of every member.
#[derive(Clone, Debug)]
pub struct BallotBook {
    membership: Membership,
    config: BookConfig,
    latest: BTreeMap<AgentId, Arc<VerifiedBallot>>,
    /// Per member: the last [`REMEMBERED_SEQS`] accepted seqs and their wire digests, oldest
    /// first.
    seen: BTreeMap<AgentId, VecDeque<(u64, [u8; 32])>>,
    /// Per member: the latest proof of equivocation.
    equivocations: BTreeMap<AgentId, Equivocation>,
}

impl BallotBook {
    #[must_use]
    pub fn new(membership: Membership, mut config: BookConfig) -> Self {
        config.max_ballot_bytes = config.max_ballot_bytes.min(MAX_BALLOT_BYTES);
        Self {
            membership,
            config,
            latest: BTreeMap::new(),
            seen: BTreeMap::new(),
            equivocations: BTreeMap::new(),
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

    /// Keeps the proof that `agent` signed `second` under `seq` after a different ballot, and
    /// the rejection that counts it.
    fn record_equivocation(
        &mut self,
        agent: AgentId,
        seq: u64,
        first_sha256: [u8; 32],
        first: Option<SignedBallot>,
        second: SignedBallot,
        second_sha256: [u8; 32],
    ) -> Rejection {
        self.equivocations.insert(
            agent.clone(),
            Equivocation {
                agent: agent.clone(),
                seq,
                first_sha256,
                first,
                second,
            },
        );
        Rejection::Equivocation {
            agent,
            seq,
            first: hex::encode(first_sha256),
            second: hex::encode(second_sha256),
        }
    }

    /// The latest proof that `agent` equivocated, if it ever did since this book was made.
    #[must_use]
    pub fn equivocation(&self, agent: &AgentId) -> Option<&Equivocation> {
        self.equivocations.get(agent)
    }

    /// The latest proof of equivocation of every member that has one, in member order.
    pub fn equivocations(&self) -> impl Iterator<Item = &Equivocation> {
        self.equivocations.values()
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

/// SHA-256 of a signed ballot's wire form (one wire form per ballot: the envelope and the
/// ballot encoding are canonical).
fn wire_digest(signed: &SignedBallot) -> [u8; 32] {
    Sha256::digest(signed.to_wire()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Member;
    use crate::signed::SigningKey;

    const DIGEST: ConfigDigest = ConfigDigest([9; 32]);

    pub(super) fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i + 1; 32])
    }

    fn book() -> BallotBook {
        book_with(DIGEST)
    }

    /// Three members `a0`…`a2` (keys [`key`]), 4 KiB ballots, 1 s skew, under `digest`.
    pub(super) fn book_with(digest: ConfigDigest) -> BallotBook {
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
            max_valid_for_ms: 10_000,
            config_digest: digest,
        };
        BallotBook::new(Membership::new(members).unwrap(), cfg)
    }

    pub(super) fn wire(
        agent: &str,
        signer: u8,
        seq: u64,
        issued: u64,
        digest: ConfigDigest,
    ) -> Vec<u8> {
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

    /// A ballot issued at 100 000 claiming `valid_for_ms`.
    fn wire_valid_for(agent: &str, signer: u8, seq: u64, valid_for_ms: u32) -> Vec<u8> {
        let b = Ballot::new(
            AgentId::new(agent).unwrap(),
            seq,
            UnixMillis(100_000),
            valid_for_ms,
            DIGEST,
            vec![],
        )
        .unwrap();
        SignedBallot::sign(&b, &key(signer)).to_wire()
    }

    /// A member's ballot may claim at most the cluster's validity: a longer claim is refused
    /// and counted, not kept live for weeks; exactly the limit is what honest members sign.
    #[test]
    fn validity_is_bounded_by_the_cluster_setting() {
        let now = UnixMillis(100_000);
        let mut b = book();
        let err = b
            .handle_ballot(now, &wire_valid_for("a1", 1, 1, u32::MAX))
            .unwrap_err();
        assert_eq!(err.reason(), "validity_too_long");
        assert!(
            err.to_string().contains("ballot_valid_for is 10000 ms"),
            "{err}"
        );
        assert!(b.latest(&AgentId::new("a1").unwrap()).is_none());
        assert!(matches!(
            b.handle_ballot(now, &wire_valid_for("a1", 1, 1, 10_000)),
            Ok(Accepted::New(_))
        ));
        // Long after the honest window, nothing from a1 counts any more.
        assert_eq!(b.live(UnixMillis(100_000 + 10_001)).count(), 0);
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
            (wire_valid_for("a1", 1, 9, 10_001), "validity_too_long"),
        ];
        for (bytes, reason) in cases {
            let err = b.handle_ballot(now, &bytes).expect_err(reason);
            assert_eq!(err.reason(), reason, "{err}");
        }
        assert!(Rejection::REASONS.len() == 10);
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

    /// A second, different ballot under a seq the member already used is equivocation even
    /// when newer ballots replaced the first (before, it passed as a mere replay), and the
    /// book keeps the proof; an old ballot delivered again unchanged stays a replay.
    #[test]
    fn equivocation_under_an_older_seq_is_caught_with_its_proof() {
        let now = UnixMillis(100_000);
        let mut b = book();
        let a0 = AgentId::new("a0").unwrap();
        let first = wire("a0", 0, 5, 99_000, DIGEST);
        for w in [&first, &wire("a0", 0, 6, 99_500, DIGEST)] {
            assert!(matches!(b.handle_ballot(now, w), Ok(Accepted::New(_))));
        }
        assert_eq!(
            b.handle_ballot(now, &first).unwrap_err().reason(),
            "replay",
            "the same ballot again, late: ordinary reordering"
        );
        assert!(b.equivocation(&a0).is_none());
        let second = wire("a0", 0, 5, 99_001, DIGEST);
        let err = b.handle_ballot(now, &second).unwrap_err();
        assert_eq!(err.reason(), "equivocation", "{err}");
        let proof = b.equivocation(&a0).expect("proof kept");
        assert_eq!(proof.seq, 5);
        assert_eq!(proof.first_sha256, <[u8; 32]>::from(Sha256::digest(&first)));
        assert_eq!(proof.first, None, "no longer held");
        assert_eq!(proof.second.to_wire(), second);
        assert!(
            err.to_string().contains(&hex::encode(proof.first_sha256)),
            "{err}"
        );
        // Under the held seq, the proof carries both ballots.
        let other6 = wire("a0", 0, 6, 99_501, DIGEST);
        assert_eq!(
            b.handle_ballot(now, &other6).unwrap_err().reason(),
            "equivocation"
        );
        let proof = b.equivocation(&a0).unwrap();
        assert_eq!(proof.seq, 6);
        assert!(proof.first.is_some());
        // The held ballot did not change; a newer honest ballot is still accepted.
        assert_eq!(b.latest(&a0).unwrap().ballot.seq(), 6);
        assert!(matches!(
            b.handle_ballot(now, &wire("a0", 0, 7, 99_900, DIGEST)),
            Ok(Accepted::New(_))
        ));
        assert_eq!(b.equivocations().count(), 1);
    }

    /// A bad signature under a remembered seq is a forgery, not the member's equivocation.
    #[test]
    fn a_forged_ballot_under_a_used_seq_is_no_proof() {
        let now = UnixMillis(100_000);
        let mut b = book();
        for seq in [5, 6] {
            let w = wire("a0", 0, seq, 99_000 + seq, DIGEST);
            assert!(b.handle_ballot(now, &w).is_ok());
        }
        let forged = wire("a0", 1, 5, 99_999, DIGEST);
        assert_eq!(
            b.handle_ballot(now, &forged).unwrap_err().reason(),
            "bad_signature"
        );
        assert!(b.equivocations().next().is_none());
    }

    #[test]
    fn skew_within_limit_is_accepted() {
        let mut b = book();
        assert!(b
            .handle_ballot(UnixMillis(100_000), &wire("a2", 2, 1, 101_000, DIGEST))
            .is_ok());
    }
}
