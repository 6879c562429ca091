//! Fixtures shared by the integration tests: a cluster of N members with keys from fixed
//! seeds, and helpers to build, sign and certify ballots.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;

use quorum::{
    AgentId, Ballot, BallotBook, BookConfig, CheckId, ConfigDigest, Member, Membership,
    Observation, Reason, SignedBallot, SigningKey, Status, UnixMillis, VerifiedBallot,
};

/// The digest every honest member votes under.
pub const DIGEST: ConfigDigest = ConfigDigest([0x5a; 32]);
/// A digest from a drifted configuration.
pub const OTHER_DIGEST: ConfigDigest = ConfigDigest([0xa5; 32]);
/// The clock skew allowance of every book and every certificate check.
pub const SKEW_MS: u64 = 2_000;
/// How long an honest ballot counts.
pub const VALID_MS: u32 = 15_000;
/// Largest wire ballot a book accepts in these tests.
pub const MAX_BYTES: usize = 64 * 1024;
/// An arbitrary, realistic start of the virtual clock.
pub const T0: UnixMillis = UnixMillis(1_700_000_000_000);

pub fn check(name: &str) -> CheckId {
    CheckId::new(name).unwrap()
}

pub fn book_config() -> BookConfig {
    BookConfig {
        max_ballot_bytes: MAX_BYTES,
        max_clock_skew_ms: SKEW_MS,
        max_valid_for_ms: u64::from(VALID_MS),
        config_digest: DIGEST,
    }
}

/// A key that belongs to no member.
pub fn outsider_key() -> SigningKey {
    SigningKey::from_bytes(&[0xee; 32])
}

/// N members `m0`…`m{N-1}`; member i signs with the key seeded `[i+1; 32]`.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub ids: Vec<AgentId>,
    pub keys: Vec<SigningKey>,
    pub membership: Membership,
}

impl Cluster {
    pub fn new(n: usize) -> Self {
        Self::with_first_seed(n, 1)
    }

    /// Same member ids, keys seeded `[first+i; 32]`: another group that shares our names.
    pub fn with_first_seed(n: usize, first: usize) -> Self {
        let ids: Vec<AgentId> = (0..n)
            .map(|i| AgentId::new(format!("m{i}")).unwrap())
            .collect();
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_bytes(&[u8::try_from(i + first).unwrap(); 32]))
            .collect();
        let members = ids
            .iter()
            .zip(&keys)
            .map(|(id, key)| Member {
                id: id.clone(),
                region: format!("region-{id}"),
                key: key.verifying_key(),
            })
            .collect();
        Self {
            ids,
            keys,
            membership: Membership::new(members).unwrap(),
        }
    }

    pub fn n(&self) -> usize {
        self.ids.len()
    }

    pub fn quorum(&self) -> usize {
        self.membership.quorum()
    }

    pub fn book(&self) -> BallotBook {
        BallotBook::new(self.membership.clone(), book_config())
    }
}

/// A ballot builder with honest defaults: issued at [`T0`], valid [`VALID_MS`], [`DIGEST`].
#[derive(Debug, Clone)]
pub struct Draft {
    pub agent: AgentId,
    pub seq: u64,
    pub issued_at: UnixMillis,
    pub valid_for_ms: u32,
    pub digest: ConfigDigest,
    pub votes: Vec<(CheckId, Status)>,
}

impl Draft {
    pub fn new(agent: &AgentId, votes: &[(&str, Status)]) -> Self {
        Self {
            agent: agent.clone(),
            seq: 1,
            issued_at: T0,
            valid_for_ms: VALID_MS,
            digest: DIGEST,
            votes: votes.iter().map(|(c, s)| (check(c), *s)).collect(),
        }
    }

    pub fn seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    pub fn issued_at(mut self, at: UnixMillis) -> Self {
        self.issued_at = at;
        self
    }

    pub fn valid_for_ms(mut self, ms: u32) -> Self {
        self.valid_for_ms = ms;
        self
    }

    pub fn digest(mut self, digest: ConfigDigest) -> Self {
        self.digest = digest;
        self
    }

    pub fn ballot(&self) -> Ballot {
        let observations = self
            .votes
            .iter()
            .map(|(c, s)| {
                Observation::new(
                    c.clone(),
                    *s,
                    Reason::from_static("ok"),
                    12,
                    self.issued_at.minus(100),
                )
            })
            .collect();
        Ballot::new(
            self.agent.clone(),
            self.seq,
            self.issued_at,
            self.valid_for_ms,
            self.digest,
            observations,
        )
        .unwrap()
    }

    pub fn sign(&self, key: &SigningKey) -> SignedBallot {
        SignedBallot::sign(&self.ballot(), key)
    }

    pub fn wire(&self, key: &SigningKey) -> Vec<u8> {
        self.sign(key).to_wire()
    }

    /// A signed ballot wrapped as if the book had accepted it (no validation: certificates
    /// built from these are for testing the verifier).
    pub fn verified(&self, key: &SigningKey) -> Arc<VerifiedBallot> {
        Arc::new(VerifiedBallot {
            signed: self.sign(key),
            ballot: self.ballot(),
        })
    }
}
