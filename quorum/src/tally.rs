//! The majority count, and the certificate that proves it.
//!
//! For a check C at `now`, over the live ballot of each configured member: H members say
//! Healthy, U say Unhealthy, A abstain or are missing/expired. The verdict is `Healthy` if
//! H ≥ Q, `Unhealthy` if U ≥ Q, otherwise `NoQuorum` (Q counts *configured* members; two
//! opposite quorums cannot coexist because Q > N/2 and each member has one live ballot).
//! A decided verdict carries a [`Certificate`]: Q signed ballots anyone can re-check with
//! [`verify_certificate`] and the members' public keys.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ballot::ConfigDigest;
use crate::book::{BallotBook, VerifiedBallot};
use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{AgentId, CheckId};
use crate::membership::Membership;
use crate::observation::Status;
use crate::signed::SignedBallot;
use crate::time::UnixMillis;

/// The quorum's answer for one check at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Healthy,
    Unhealthy,
    NoQuorum,
}

impl Outcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Healthy => "healthy",
            Outcome::Unhealthy => "unhealthy",
            Outcome::NoQuorum => "no_quorum",
        }
    }
}

/// Proof of a decided verdict: Q ballots from distinct members that all say `outcome` for
/// `check`. Ballots are shared (`Arc`) with the book, so certificates are cheap to make.
#[derive(Clone, Debug)]
pub struct Certificate {
    pub check: CheckId,
    pub outcome: Outcome,
    pub ballots: Vec<Arc<VerifiedBallot>>,
}

/// One tally result.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub check: CheckId,
    pub outcome: Outcome,
    pub healthy: usize,
    pub unhealthy: usize,
    /// Abstained, missing or expired.
    pub abstain: usize,
    pub at: UnixMillis,
    /// `Some` exactly when `outcome` is not `NoQuorum`.
    pub certificate: Option<Certificate>,
}

/// Tallies one check at `now`.
#[must_use]
pub fn tally(book: &BallotBook, check: &CheckId, now: UnixMillis) -> Verdict {
    let live: Vec<&Arc<VerifiedBallot>> = book.live(now).collect();
    let votes = live
        .iter()
        .map(|v| (*v, v.ballot.observation(check).map(|o| o.status)));
    count(votes, book.membership(), check, now)
}

/// Tallies many checks at `now`, collecting the live ballots once.
///
/// When `checks` come in ascending order (as the engine passes them) each ballot's sorted
/// observations are walked in step with them, so a round costs O(checks + observations) per
/// ballot instead of a binary search per ballot and check. Any order is correct: a check at or
/// below the highest one walked so far (where every cursor already stands) is looked up by
/// binary search instead, and leaves the cursors where they are.
#[must_use]
pub fn tally_all<'a>(
    book: &BallotBook,
    checks: impl IntoIterator<Item = &'a CheckId>,
    now: UnixMillis,
) -> Vec<Verdict> {
    let live: Vec<&Arc<VerifiedBallot>> = book.live(now).collect();
    let mut cursors = vec![0usize; live.len()];
    let mut highest: Option<&CheckId> = None;
    checks
        .into_iter()
        .map(|check| {
            let ascending = highest.is_none_or(|h| h < check);
            if ascending {
                highest = Some(check);
            }
            let votes = live.iter().zip(cursors.iter_mut()).map(|(v, cursor)| {
                let obs = v.ballot.observations();
                let found = if ascending {
                    walk(obs, cursor, check)
                } else {
                    v.ballot.observation(check)
                };
                (*v, found.map(|o| o.status))
            });
            count(votes, book.membership(), check, now)
        })
        .collect()
}

/// Advances `cursor` through sorted `obs` to `check`; the cursor never moves backwards.
fn walk<'o>(
    obs: &'o [crate::Observation],
    cursor: &mut usize,
    check: &CheckId,
) -> Option<&'o crate::Observation> {
    while obs.get(*cursor).is_some_and(|o| o.check < *check) {
        *cursor += 1;
    }
    obs.get(*cursor).filter(|o| o.check == *check)
}

fn count<'v>(
    votes: impl Iterator<Item = (&'v Arc<VerifiedBallot>, Option<Status>)>,
    membership: &Membership,
    check: &CheckId,
    now: UnixMillis,
) -> Verdict {
    let q = membership.quorum();
    let (mut healthy, mut unhealthy) = (Vec::with_capacity(q), Vec::with_capacity(q));
    for (v, status) in votes {
        match status {
            Some(Status::Healthy) => healthy.push(v),
            Some(Status::Unhealthy) => unhealthy.push(v),
            Some(Status::Abstain) | None => {}
        }
    }
    let (h, u) = (healthy.len(), unhealthy.len());
    let decided = if h >= q {
        Some((Outcome::Healthy, healthy))
    } else if u >= q {
        Some((Outcome::Unhealthy, unhealthy))
    } else {
        None
    };
    let (outcome, certificate) = match decided {
        Some((outcome, voters)) => {
            let ballots = voters.into_iter().take(q).cloned().collect();
            (
                outcome,
                Some(Certificate {
                    check: check.clone(),
                    outcome,
                    ballots,
                }),
            )
        }
        None => (Outcome::NoQuorum, None),
    };
    Verdict {
        check: check.clone(),
        outcome,
        healthy: h,
        unhealthy: u,
        abstain: membership.len() - h - u,
        at: now,
        certificate,
    }
}

const CERT_MAGIC: &[u8; 3] = b"QGC";

impl Certificate {
    /// Portable form: `"QGC" version:u8 check:str8 outcome:u8 count:u16 (len:u32 signed_wire)*`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let wires: Vec<Vec<u8>> = self.ballots.iter().map(|b| b.signed.to_wire()).collect();
        portable_certificate(&self.check, self.outcome, wires.iter().map(Vec::as_slice))
    }

    /// SHA-256 of [`to_bytes`](Self::to_bytes), hex: what logs and audit records cite.
    #[must_use]
    pub fn digest_hex(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.to_bytes()))
    }

    /// The members whose ballots form this certificate.
    pub fn agents(&self) -> impl Iterator<Item = &AgentId> {
        self.ballots.iter().map(|b| b.ballot.agent())
    }
}

/// The portable form ([`Certificate::to_bytes`]) of a certificate from its parts: for a
/// reader that kept only the ballots' wire bytes (the agent's decisions file stores each
/// ballot once for all the checks it proves). Check it with [`verify_certificate`].
#[must_use]
pub fn portable_certificate<'a>(
    check: &CheckId,
    outcome: Outcome,
    wires: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(CERT_MAGIC);
    w.u8(crate::codec::BALLOT_VERSION);
    let check = check.as_str().as_bytes();
    w.u8(check.len() as u8); // CheckId is at most 64 bytes
    w.bytes(check);
    w.u8(match outcome {
        Outcome::Healthy => 0,
        Outcome::Unhealthy => 1,
        Outcome::NoQuorum => 2,
    });
    let wires: Vec<&[u8]> = wires.into_iter().collect();
    w.u16(wires.len() as u16); // at most Q ≤ 255 ballots
    for wire in wires {
        w.u32(wire.len() as u32); // bounded by MAX_BALLOT_BYTES
        w.bytes(wire);
    }
    w.buf
}

/// A certificate's head: the magic, the check and the raw outcome byte (each caller maps the
/// byte: a portable certificate may say NoQuorum, a verified one may not).
fn read_head(r: &mut Reader<'_>) -> Result<(CheckId, u8), DecodeError> {
    r.magic(CERT_MAGIC, "certificate")?;
    let len = usize::from(r.u8()?);
    let check_str =
        std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::NotUtf8 { field: "check" })?;
    let check = CheckId::new(check_str).map_err(|source| DecodeError::BadId {
        field: "check",
        source,
    })?;
    Ok((check, r.u8()?))
}

/// The parts of a portable certificate — check, outcome and each ballot's wire bytes —
/// *unverified*: only [`verify_certificate`] says whether they prove anything.
pub fn certificate_parts(bytes: &[u8]) -> Result<(CheckId, Outcome, Vec<&[u8]>), DecodeError> {
    let mut r = Reader::new(bytes);
    let (check, outcome) = read_head(&mut r)?;
    let outcome = match outcome {
        0 => Outcome::Healthy,
        1 => Outcome::Unhealthy,
        2 => Outcome::NoQuorum,
        value => {
            return Err(DecodeError::BadEnum {
                field: "outcome",
                value,
            })
        }
    };
    let count = usize::from(r.u16()?);
    let mut wires = Vec::new();
    for _ in 0..count {
        let len = r.u32()? as usize;
        wires.push(r.take(len)?);
    }
    r.finish()?;
    Ok((check, outcome, wires))
}

/// What a valid certificate proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCertificate {
    pub check: CheckId,
    pub outcome: Outcome,
    pub agents: Vec<AgentId>,
    pub config_digest: ConfigDigest,
    /// The interval in which every ballot of the certificate was live.
    pub valid_from: UnixMillis,
    pub valid_until: UnixMillis,
}

/// Why a certificate does not prove its claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("undecodable certificate: {0}")]
    Decode(#[from] DecodeError),
    #[error("a certificate cannot prove no_quorum")]
    NoQuorumClaimed,
    #[error("ballot {index}: {agent} is not a member")]
    UnknownAgent { index: usize, agent: AgentId },
    #[error("ballot {index}: signature of {agent} does not verify")]
    BadSignature { index: usize, agent: AgentId },
    #[error("{0} appears twice")]
    DuplicateAgent(AgentId),
    #[error("ballot {index}: {agent} did not vote {claimed:?} for the check")]
    WrongVote {
        index: usize,
        agent: AgentId,
        claimed: Outcome,
    },
    #[error("ballots were made under different config digests")]
    MixedDigests,
    #[error("config digest {0} is not the expected one")]
    WrongDigest(ConfigDigest),
    #[error("{have} ballots; quorum is {need}")]
    TooFew { have: usize, need: usize },
    #[error("the ballots were never all live at the same instant")]
    NotSimultaneous,
}

/// Checks a certificate in its portable form against the members' public keys.
///
/// `expected_digest`: the config digest it must have been made under (`None`: any single one).
/// `skew_ms`: the clock skew allowance the agents ran with.
pub fn verify_certificate(
    bytes: &[u8],
    membership: &Membership,
    expected_digest: Option<&ConfigDigest>,
    skew_ms: u64,
) -> Result<VerifiedCertificate, CertError> {
    let mut r = Reader::new(bytes);
    let (check, outcome) = read_head(&mut r)?;
    let outcome = match outcome {
        0 => Outcome::Healthy,
        1 => Outcome::Unhealthy,
        2 => return Err(CertError::NoQuorumClaimed),
        value => {
            return Err(DecodeError::BadEnum {
                field: "outcome",
                value,
            }
            .into())
        }
    };
    let claimed = match outcome {
        Outcome::Healthy => Status::Healthy,
        _ => Status::Unhealthy,
    };
    let count = usize::from(r.u16()?);
    let mut seen = BTreeSet::new();
    let mut digest: Option<ConfigDigest> = None;
    let (mut from, mut until) = (UnixMillis(0), UnixMillis(u64::MAX));
    for index in 0..count {
        let len = r.u32()? as usize;
        let signed = SignedBallot::from_wire(r.take(len)?)?;
        let ballot = signed.decode_unverified()?;
        let agent = ballot.agent().clone();
        let member = membership
            .get(&agent)
            .ok_or_else(|| CertError::UnknownAgent {
                index,
                agent: agent.clone(),
            })?;
        signed
            .verify_signature(&member.key)
            .map_err(|_| CertError::BadSignature {
                index,
                agent: agent.clone(),
            })?;
        if !seen.insert(agent.clone()) {
            return Err(CertError::DuplicateAgent(agent));
        }
        if ballot.observation(&check).map(|o| o.status) != Some(claimed) {
            return Err(CertError::WrongVote {
                index,
                agent,
                claimed: outcome,
            });
        }
        match digest {
            None => digest = Some(*ballot.config_digest()),
            Some(d) if d != *ballot.config_digest() => return Err(CertError::MixedDigests),
            Some(_) => {}
        }
        from = from.max(ballot.issued_at().minus(skew_ms));
        until = until.min(ballot.expires_at());
    }
    r.finish()?;
    if seen.len() < membership.quorum() {
        return Err(CertError::TooFew {
            have: seen.len(),
            need: membership.quorum(),
        });
    }
    let config_digest = digest.unwrap_or_default();
    if expected_digest.is_some_and(|e| *e != config_digest) {
        return Err(CertError::WrongDigest(config_digest));
    }
    if from > until {
        return Err(CertError::NotSimultaneous);
    }
    Ok(VerifiedCertificate {
        check,
        outcome,
        agents: seen.into_iter().collect(),
        config_digest,
        valid_from: from,
        valid_until: until,
    })
}
