//! Receipt in two steps, so the costly part needs no book: [`Receipt::precheck`] (size,
//! decoding, known issuer, signature, config digest — pure, and safe to run before taking the
//! lock that guards the book) and [`BallotBook::admit`] (duplicate, sequence and equivocation,
//! claimed validity, skew and expiry
//! against what the book holds, then the insert). [`BallotBook::handle_ballot`] is the two in
//! a row; the rejection is the same either way.

use std::sync::Arc;

use super::{
    wire_digest, Accepted, BallotBook, BookConfig, Rejection, VerifiedBallot, MAX_BALLOT_BYTES,
    REMEMBERED_SEQS,
};
use crate::ballot::Ballot;
use crate::membership::Membership;
use crate::signed::{SignedBallot, VerifyingKey};
use crate::time::UnixMillis;

/// A ballot that passed [`Receipt::precheck`]: its issuer is a member and its signature
/// verifies with that member's key, under our config digest. Only [`BallotBook::admit`]
/// counts it.
#[derive(Clone, Debug)]
pub struct Prechecked {
    verified: VerifiedBallot,
    /// The key the signature was verified with.
    key: VerifyingKey,
}

impl Prechecked {
    #[must_use]
    pub fn ballot(&self) -> &Ballot {
        &self.verified.ballot
    }
}

/// What the stateless checks need: the members, their keys and the receipt policy. Cheap to
/// clone (shared).
#[derive(Clone, Debug)]
pub struct Receipt {
    inner: Arc<(Membership, BookConfig)>,
}

impl Receipt {
    #[must_use]
    pub fn new(membership: Membership, mut config: BookConfig) -> Self {
        config.max_ballot_bytes = config.max_ballot_bytes.min(MAX_BALLOT_BYTES);
        Self {
            inner: Arc::new((membership, config)),
        }
    }

    /// Size, decoding, issuer, signature and digest of a wire-encoded signed ballot. Never
    /// panics, whatever `wire` holds.
    pub fn precheck(&self, wire: &[u8]) -> Result<Prechecked, Rejection> {
        let limit = self.inner.1.max_ballot_bytes;
        if wire.len() > limit {
            return Err(Rejection::TooLarge {
                size: wire.len(),
                limit,
            });
        }
        let signed = SignedBallot::from_wire(wire)?;
        let ballot = signed.decode_unverified()?;
        self.verify(signed, ballot)
    }

    fn verify(&self, signed: SignedBallot, ballot: Ballot) -> Result<Prechecked, Rejection> {
        let (membership, config) = &*self.inner;
        let agent = ballot.agent().clone();
        let Some(member) = membership.get(&agent) else {
            return Err(Rejection::UnknownAgent(agent));
        };
        if signed.verify_signature(&member.key).is_err() {
            return Err(Rejection::BadSignature(agent));
        }
        if *ballot.config_digest() != config.config_digest {
            return Err(Rejection::ConfigDrift {
                agent,
                theirs: *ballot.config_digest(),
            });
        }
        Ok(Prechecked {
            verified: VerifiedBallot { signed, ballot },
            key: member.key,
        })
    }
}

impl BallotBook {
    /// The stateless half of receipt for this book's members and policy.
    #[must_use]
    pub fn receipt(&self) -> Receipt {
        Receipt::new(self.membership.clone(), self.config.clone())
    }

    /// As [`handle_ballot`](Self::handle_ballot) for an already-parsed envelope: a ballot
    /// byte-identical to the one held is a duplicate without a second signature check.
    pub fn handle_signed(
        &mut self,
        now: UnixMillis,
        signed: SignedBallot,
    ) -> Result<Accepted, Rejection> {
        let ballot = signed.decode_unverified()?;
        let held = self.latest.get(ballot.agent());
        if held.is_some_and(|h| h.signed == signed) {
            return Ok(Accepted::Duplicate);
        }
        let pre =
            Receipt::new(self.membership.clone(), self.config.clone()).verify(signed, ballot)?;
        self.admit(now, pre)
    }

    /// Counts a prechecked ballot received at `now` if it is newer than what we hold from its
    /// issuer (sequence, clock skew, expiry). A ballot prechecked against other members or
    /// another digest is refused as such.
    pub fn admit(&mut self, now: UnixMillis, pre: Prechecked) -> Result<Accepted, Rejection> {
        let Prechecked {
            verified: VerifiedBallot { signed, ballot },
            key,
        } = pre;
        let agent = ballot.agent().clone();
        let Some(member) = self.membership.get(&agent) else {
            return Err(Rejection::UnknownAgent(agent));
        };
        if member.key != key {
            return Err(Rejection::BadSignature(agent));
        }
        if *ballot.config_digest() != self.config.config_digest {
            return Err(Rejection::ConfigDrift {
                agent,
                theirs: *ballot.config_digest(),
            });
        }
        let held = self.latest.get(&agent);
        if held.is_some_and(|h| h.signed == signed) {
            return Ok(Accepted::Duplicate);
        }
        let mut digest = None;
        if let Some(h) = held {
            let last = h.ballot.seq();
            if ballot.seq() <= last {
                // Not newer: an ordinary late or repeated delivery (a replay), unless this
                // member already had a different ballot accepted under this very seq.
                let d = wire_digest(&signed);
                let first = self
                    .seen
                    .get(&agent)
                    .and_then(|seen| seen.iter().find(|(seq, _)| *seq == ballot.seq()))
                    .map(|(_, first)| *first)
                    .or_else(|| (ballot.seq() == last).then(|| wire_digest(&h.signed)));
                return match first {
                    Some(first) if first != d => {
                        let held_first = (ballot.seq() == last).then(|| h.signed.clone());
                        Err(self.record_equivocation(
                            agent,
                            ballot.seq(),
                            first,
                            held_first,
                            signed,
                            d,
                        ))
                    }
                    _ => Err(Rejection::Replay {
                        agent,
                        seq: ballot.seq(),
                        last,
                    }),
                };
            }
            digest = Some(wire_digest(&signed));
        }
        if u64::from(ballot.valid_for_ms()) > self.config.max_valid_for_ms {
            return Err(Rejection::ValidityTooLong {
                agent,
                valid_for_ms: ballot.valid_for_ms(),
                max: self.config.max_valid_for_ms,
            });
        }
        let ahead_ms = ballot.issued_at().since(now);
        if ahead_ms > self.config.max_clock_skew_ms {
            return Err(Rejection::FromFuture { agent, ahead_ms });
        }
        if now > ballot.expires_at() {
            return Err(Rejection::Expired {
                agent,
                age_ms: now.since(ballot.expires_at()),
            });
        }
        let digest = digest.unwrap_or_else(|| wire_digest(&signed));
        let seen = self.seen.entry(agent.clone()).or_default();
        seen.push_back((ballot.seq(), digest));
        while seen.len() > REMEMBERED_SEQS {
            seen.pop_front();
        }
        let verified = Arc::new(VerifiedBallot { signed, ballot });
        self.latest.insert(agent, Arc::clone(&verified));
        Ok(Accepted::New(verified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::ConfigDigest;

    use super::super::tests::{book_with as book, wire};

    const DIGEST: ConfigDigest = ConfigDigest([9; 32]);
    const NOW: UnixMillis = UnixMillis(100_000);

    fn outcome(r: Result<Accepted, Rejection>) -> &'static str {
        match r {
            Ok(Accepted::New(_)) => "new",
            Ok(Accepted::Duplicate) => "duplicate",
            Err(e) => e.reason(),
        }
    }

    /// Precheck then admit decides every ballot as `handle_ballot` does, in the same order.
    #[test]
    fn two_steps_decide_as_one() {
        let ballots: Vec<(Vec<u8>, &str)> = vec![
            (wire("a0", 0, 5, 100_000, DIGEST), "new"),
            (wire("a0", 0, 5, 100_000, DIGEST), "duplicate"),
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
            (wire("a1", 1, 9, 100_000, DIGEST), "new"),
        ];
        let (mut one, mut two) = (book(DIGEST), book(DIGEST));
        let receipt = two.receipt();
        for (bytes, want) in ballots {
            let got_one = outcome(one.handle_ballot(NOW, &bytes));
            let got_two = outcome(receipt.precheck(&bytes).and_then(|p| two.admit(NOW, p)));
            assert_eq!((got_one, got_two), (want, want));
        }
    }

    /// A ballot prechecked for other members or another digest does not get in.
    #[test]
    fn a_precheck_for_another_book_is_refused() {
        let other = book(ConfigDigest([1; 32]));
        let pre = other
            .receipt()
            .precheck(&wire("a0", 0, 5, 100_000, ConfigDigest([1; 32])))
            .expect("valid there");
        assert_eq!(outcome(book(DIGEST).admit(NOW, pre)), "config_drift");
    }
}
