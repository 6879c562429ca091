//! One agent's signed-to-be statement for one probe round.

use std::fmt;

use crate::ids::{AgentId, CheckId};
use crate::observation::{Observation, MAX_DETAIL_LEN};
use crate::time::UnixMillis;

/// SHA-256 over the canonical form of the shared configuration. Agents that disagree on what
/// a check means must not vote together, so every ballot carries the digest it was made under.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ConfigDigest(pub [u8; 32]);

impl ConfigDigest {
    /// Lowercase hex, 64 characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for ConfigDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigDigest({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for ConfigDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Most observations one ballot may carry.
pub const MAX_OBSERVATIONS: usize = 65_536;

/// Why a ballot cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BallotError {
    #[error("check {0} appears more than once in one ballot")]
    DuplicateCheck(CheckId),
    #[error("{0} observations; a ballot holds at most {MAX_OBSERVATIONS}")]
    TooManyObservations(usize),
    #[error("detail of check {0} is longer than {MAX_DETAIL_LEN} bytes")]
    DetailTooLong(CheckId),
}

/// One agent's observations of every check for one round.
///
/// Built only through [`Ballot::new`] (or decoding), which keeps observations sorted by check
/// and unique — the form the canonical encoding requires — so lookups are binary searches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ballot {
    agent: AgentId,
    seq: u64,
    issued_at: UnixMillis,
    valid_for_ms: u32,
    config_digest: ConfigDigest,
    observations: Vec<Observation>,
}

impl Ballot {
    /// Builds a ballot; sorts the observations by check and rejects duplicates.
    pub fn new(
        agent: AgentId,
        seq: u64,
        issued_at: UnixMillis,
        valid_for_ms: u32,
        config_digest: ConfigDigest,
        mut observations: Vec<Observation>,
    ) -> Result<Self, BallotError> {
        if observations.len() > MAX_OBSERVATIONS {
            return Err(BallotError::TooManyObservations(observations.len()));
        }
        observations.sort_by(|a, b| a.check.cmp(&b.check));
        for pair in observations.windows(2) {
            if pair[0].check == pair[1].check {
                return Err(BallotError::DuplicateCheck(pair[0].check.clone()));
            }
        }
        if let Some(o) = observations
            .iter()
            .find(|o| o.detail.len() > MAX_DETAIL_LEN)
        {
            return Err(BallotError::DetailTooLong(o.check.clone()));
        }
        Ok(Self {
            agent,
            seq,
            issued_at,
            valid_for_ms,
            config_digest,
            observations,
        })
    }

    /// Used by the decoder, which has already checked order, uniqueness and lengths.
    pub(crate) fn from_canonical_parts(
        agent: AgentId,
        seq: u64,
        issued_at: UnixMillis,
        valid_for_ms: u32,
        config_digest: ConfigDigest,
        observations: Vec<Observation>,
    ) -> Self {
        Self {
            agent,
            seq,
            issued_at,
            valid_for_ms,
            config_digest,
            observations,
        }
    }

    #[must_use]
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }
    /// Monotonic per agent: a ballot with a seq not above the last accepted one is a replay.
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }
    #[must_use]
    pub fn issued_at(&self) -> UnixMillis {
        self.issued_at
    }
    #[must_use]
    pub fn valid_for_ms(&self) -> u32 {
        self.valid_for_ms
    }
    /// The instant after which this ballot no longer counts.
    #[must_use]
    pub fn expires_at(&self) -> UnixMillis {
        self.issued_at.plus(u64::from(self.valid_for_ms))
    }
    #[must_use]
    pub fn config_digest(&self) -> &ConfigDigest {
        &self.config_digest
    }
    /// Sorted by check, unique.
    #[must_use]
    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// This ballot's observation of `check`, if it has one (binary search).
    #[must_use]
    pub fn observation(&self, check: &CheckId) -> Option<&Observation> {
        self.observations
            .binary_search_by(|o| o.check.cmp(check))
            .ok()
            .map(|i| &self.observations[i])
    }

    /// Whether the ballot counts at `now`, allowing `skew_ms` of issuer clock ahead of ours.
    #[must_use]
    pub fn is_live_at(&self, now: UnixMillis, skew_ms: u64) -> bool {
        self.issued_at.minus(skew_ms) <= now && now <= self.expires_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reason, Status};

    fn obs(c: &str) -> Observation {
        Observation::new(
            CheckId::new(c).unwrap(),
            Status::Healthy,
            Reason::from_static("ok"),
            1,
            UnixMillis(1),
        )
    }

    #[test]
    fn new_sorts_and_rejects_duplicates() {
        let a = AgentId::new("a").unwrap();
        let b = Ballot::new(
            a.clone(),
            1,
            UnixMillis(5),
            10,
            ConfigDigest::default(),
            vec![obs("z"), obs("b")],
        )
        .unwrap();
        let names: Vec<_> = b.observations().iter().map(|o| o.check.as_str()).collect();
        assert_eq!(names, ["b", "z"]);
        assert!(b.observation(&CheckId::new("z").unwrap()).is_some());
        assert!(b.observation(&CheckId::new("q").unwrap()).is_none());
        let dup = Ballot::new(
            a,
            1,
            UnixMillis(5),
            10,
            ConfigDigest::default(),
            vec![obs("x"), obs("x")],
        );
        assert!(matches!(dup, Err(BallotError::DuplicateCheck(_))));
    }

    #[test]
    fn liveness_window() {
        let b = Ballot::new(
            AgentId::new("a").unwrap(),
            1,
            UnixMillis(1_000),
            500,
            ConfigDigest::default(),
            vec![],
        )
        .unwrap();
        assert!(!b.is_live_at(UnixMillis(899), 100));
        assert!(b.is_live_at(UnixMillis(900), 100));
        assert!(b.is_live_at(UnixMillis(1_500), 100));
        assert!(!b.is_live_at(UnixMillis(1_501), 100));
    }
}
