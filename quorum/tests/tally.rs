//! Table tests for the tally, and what `verify_certificate` accepts and refuses.

// Test code: a failed unwrap is a failed test (clippy.toml allows it in #[test] fns only).
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{check, outsider_key, Cluster, Draft, DIGEST, OTHER_DIGEST, SKEW_MS, T0, VALID_MS};
use quorum::{
    certificate_parts, portable_certificate, tally, tally_all, verify_certificate, Accepted,
    CertError, Certificate, Outcome, Status, UnixMillis, VerifiedBallot, VerifiedCertificate,
};

/// The instant every table row is tallied at.
const NOW: UnixMillis = UnixMillis(T0.0 + 100_000);
/// The check under test, and a second one every ballot votes the opposite way on.
const CHECK: &str = "api";
const MIRROR: &str = "api-mirror";

/// What one member contributed to a row.
#[derive(Clone, Copy, Debug)]
enum Vote {
    /// A live ballot issued a second before `NOW`.
    Live(Status),
    /// A ballot accepted when fresh, expired one millisecond before `NOW`.
    Expired(Status),
    /// A ballot expiring exactly at `NOW` (still counts).
    LastMs(Status),
    /// A ballot issued `SKEW_MS` ahead of `NOW` (the most skew allowed; counts).
    Future(Status),
    /// A live ballot with no observation of either check.
    NoObs,
    /// No ballot from this member.
    Missing,
}

const H: Vote = Vote::Live(Status::Healthy);
const U: Vote = Vote::Live(Status::Unhealthy);
const A: Vote = Vote::Live(Status::Abstain);
const XH: Vote = Vote::Expired(Status::Healthy);
const XU: Vote = Vote::Expired(Status::Unhealthy);
const LH: Vote = Vote::LastMs(Status::Healthy);
const LU: Vote = Vote::LastMs(Status::Unhealthy);
const FH: Vote = Vote::Future(Status::Healthy);
const FU: Vote = Vote::Future(Status::Unhealthy);
const FA: Vote = Vote::Future(Status::Abstain);
const NO: Vote = Vote::NoObs;
const MISS: Vote = Vote::Missing;

fn mirror(s: Status) -> Status {
    match s {
        Status::Healthy => Status::Unhealthy,
        Status::Unhealthy => Status::Healthy,
        Status::Abstain => Status::Abstain,
    }
}

fn mirror_outcome(o: Outcome) -> Outcome {
    match o {
        Outcome::Healthy => Outcome::Unhealthy,
        Outcome::Unhealthy => Outcome::Healthy,
        Outcome::NoQuorum => Outcome::NoQuorum,
    }
}

/// Feeds one row into a fresh book, each ballot at an instant the book accepts it.
fn book_for(cluster: &Cluster, votes: &[Vote]) -> quorum::BallotBook {
    assert_eq!(votes.len(), cluster.n(), "row width");
    let mut book = cluster.book();
    for (i, vote) in votes.iter().enumerate() {
        let (status, issued, received) = match *vote {
            Vote::Missing => continue,
            Vote::NoObs => (None, NOW.minus(1_000), NOW),
            Vote::Live(s) => (Some(s), NOW.minus(1_000), NOW),
            Vote::Expired(s) => {
                let at = NOW.minus(u64::from(VALID_MS) + 1);
                (Some(s), at, at)
            }
            Vote::LastMs(s) => {
                let at = NOW.minus(u64::from(VALID_MS));
                (Some(s), at, at)
            }
            Vote::Future(s) => (Some(s), NOW.plus(SKEW_MS), NOW),
        };
        let votes = match status {
            Some(s) => vec![(CHECK, s), (MIRROR, mirror(s))],
            None => vec![("unrelated", Status::Healthy)],
        };
        let wire = Draft::new(&cluster.ids[i], &votes)
            .issued_at(issued)
            .wire(&cluster.keys[i]);
        let got = book.handle_ballot(received, &wire);
        assert!(matches!(got, Ok(Accepted::New(_))), "member {i}: {got:?}");
    }
    book
}

/// Everything a decided verdict's certificate must satisfy.
fn assert_certificate(cluster: &Cluster, verdict: &quorum::Verdict, row: &str) {
    let Some(cert) = &verdict.certificate else {
        assert_eq!(
            verdict.outcome,
            Outcome::NoQuorum,
            "{row}: decided without certificate"
        );
        return;
    };
    assert_ne!(
        verdict.outcome,
        Outcome::NoQuorum,
        "{row}: certificate for no_quorum"
    );
    assert_eq!(cert.outcome, verdict.outcome, "{row}");
    assert_eq!(cert.check, verdict.check, "{row}");
    assert_eq!(
        cert.ballots.len(),
        cluster.quorum(),
        "{row}: exactly Q ballots"
    );
    let agents: BTreeSet<_> = cert.agents().collect();
    assert_eq!(agents.len(), cluster.quorum(), "{row}: distinct members");
    let said = match verdict.outcome {
        Outcome::Healthy => Status::Healthy,
        _ => Status::Unhealthy,
    };
    for b in &cert.ballots {
        assert!(cluster.membership.get(b.ballot.agent()).is_some(), "{row}");
        let obs = b.ballot.observation(&verdict.check).map(|o| o.status);
        assert_eq!(
            obs,
            Some(said),
            "{row}: {} voted otherwise",
            b.ballot.agent()
        );
    }
    let vc = verify_certificate(
        &cert.to_bytes(),
        &cluster.membership,
        Some(&DIGEST),
        SKEW_MS,
    )
    .unwrap_or_else(|e| panic!("{row}: tally's own certificate refused: {e}"));
    assert_eq!(vc.outcome, verdict.outcome, "{row}");
    assert_eq!(vc.check, verdict.check, "{row}");
    assert_eq!(vc.config_digest, DIGEST, "{row}");
    assert_eq!(vc.agents.len(), cluster.quorum(), "{row}");
    assert!(
        vc.valid_from <= NOW && NOW <= vc.valid_until,
        "{row}: certificate not live at the tally instant: {vc:?}"
    );
}

type Row = (&'static [Vote], Outcome, (usize, usize, usize));

#[test]
fn tally_table() {
    use Outcome::{Healthy as OH, NoQuorum as NQ, Unhealthy as OU};
    let rows: &[Row] = &[
        // N = 1, Q = 1
        (&[H], OH, (1, 0, 0)),
        (&[U], OU, (0, 1, 0)),
        (&[A], NQ, (0, 0, 1)),
        (&[NO], NQ, (0, 0, 1)),
        (&[MISS], NQ, (0, 0, 1)),
        (&[XU], NQ, (0, 0, 1)),
        (&[LU], OU, (0, 1, 0)),
        (&[FU], OU, (0, 1, 0)),
        // N = 3, Q = 2
        (&[H, H, H], OH, (3, 0, 0)),
        (&[H, H, U], OH, (2, 1, 0)),
        (&[U, H, U], OU, (1, 2, 0)),
        (&[H, U, A], NQ, (1, 1, 1)),
        (&[U, U, MISS], OU, (0, 2, 1)),
        (&[U, MISS, MISS], NQ, (0, 1, 2)),
        (&[H, XH, U], NQ, (1, 1, 1)),
        (&[FH, H, A], OH, (2, 0, 1)),
        (&[U, FU, XH], OU, (0, 2, 1)),
        (&[A, A, A], NQ, (0, 0, 3)),
        (&[NO, H, H], OH, (2, 0, 1)),
        (&[NO, NO, U], NQ, (0, 1, 2)),
        (&[LH, XH, H], OH, (2, 0, 1)),
        // N = 4, Q = 3: a 2–2 split decides nothing
        (&[H, H, U, U], NQ, (2, 2, 0)),
        (&[H, H, H, U], OH, (3, 1, 0)),
        (&[U, U, U, MISS], OU, (0, 3, 1)),
        (&[H, H, XH, MISS], NQ, (2, 0, 2)),
        (&[H, H, FH, A], OH, (3, 0, 1)),
        (&[U, U, A, A], NQ, (0, 2, 2)),
        // N = 5, Q = 3
        (&[H, H, H, U, U], OH, (3, 2, 0)),
        (&[U, U, U, H, H], OU, (2, 3, 0)),
        (&[H, H, U, U, A], NQ, (2, 2, 1)),
        (&[U, U, XU, MISS, FU], OU, (0, 3, 2)),
        (&[H, H, A, A, A], NQ, (2, 0, 3)),
        (&[FH, FH, FH, U, MISS], OH, (3, 1, 1)),
        (&[XU, XU, XU, H, H], NQ, (2, 0, 3)),
        (&[FA, NO, U, U, LU], OU, (0, 3, 2)),
        (&[MISS, MISS, MISS, H, H], NQ, (2, 0, 3)),
        // N = 7, Q = 4
        (&[H, H, H, U, U, U, A], NQ, (3, 3, 1)),
        (&[H, H, H, H, U, U, U], OH, (4, 3, 0)),
        (&[U, U, U, U, XH, XH, XH], OU, (0, 4, 3)),
        (&[H, H, H, MISS, MISS, MISS, U], NQ, (3, 1, 3)),
        (&[FU, U, LU, U, H, NO, MISS], OU, (1, 4, 2)),
        (&[H, H, H, XH, A, A, A], NQ, (3, 0, 4)),
    ];
    let (check_id, mirror_id) = (check(CHECK), check(MIRROR));
    for (i, (votes, outcome, (h, u, a))) in rows.iter().enumerate() {
        let cluster = Cluster::new(votes.len());
        let book = book_for(&cluster, votes);
        let row = format!("row {i} {votes:?}");

        let v = tally(&book, &check_id, NOW);
        assert_eq!(v.outcome, *outcome, "{row}");
        assert_eq!((v.healthy, v.unhealthy, v.abstain), (*h, *u, *a), "{row}");
        assert_eq!(v.at, NOW, "{row}");
        assert_eq!(v.check, check_id, "{row}");
        assert_certificate(&cluster, &v, &row);

        // Every ballot votes the other way on the mirror check: the tally is per check.
        let m = tally(&book, &mirror_id, NOW);
        assert_eq!(m.outcome, mirror_outcome(*outcome), "{row} (mirror)");
        assert_eq!(
            (m.healthy, m.unhealthy, m.abstain),
            (*u, *h, *a),
            "{row} (mirror)"
        );
        assert_certificate(&cluster, &m, &format!("{row} (mirror)"));

        // tally_all agrees with tally, check by check and in order.
        let all = tally_all(&book, [&check_id, &mirror_id, &check("absent")], NOW);
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].outcome, all[0].healthy), (v.outcome, v.healthy));
        assert_eq!((all[1].outcome, all[1].unhealthy), (m.outcome, m.unhealthy));
        assert_eq!(all[2].outcome, Outcome::NoQuorum, "{row}: unknown check");
        assert_eq!(all[2].abstain, cluster.n(), "{row}: unknown check");
    }
}

#[test]
fn verdict_follows_the_clock() {
    // Three live Unhealthy ballots of N = 5 decide until the first one expires.
    let cluster = Cluster::new(5);
    let mut book = cluster.book();
    for (i, issued) in [(0, 0), (1, 4_000), (2, 8_000)] {
        let wire = Draft::new(&cluster.ids[i], &[(CHECK, Status::Unhealthy)])
            .issued_at(T0.plus(issued))
            .wire(&cluster.keys[i]);
        if issued > SKEW_MS {
            let early = book.handle_ballot(T0, &wire).unwrap_err();
            assert_eq!(early.reason(), "from_future");
        }
        book.handle_ballot(T0.plus(issued), &wire).unwrap();
    }
    let c = check(CHECK);
    // Before the last ballot is within skew of our clock it does not count yet.
    assert_eq!(
        tally(&book, &c, T0.plus(8_000 - SKEW_MS - 1)).outcome,
        Outcome::NoQuorum
    );
    assert_eq!(
        tally(&book, &c, T0.plus(8_000 - SKEW_MS)).outcome,
        Outcome::Unhealthy
    );
    let last = T0.plus(u64::from(VALID_MS));
    assert_eq!(tally(&book, &c, last).outcome, Outcome::Unhealthy);
    let v = tally(&book, &c, last.plus(1));
    assert_eq!(
        (v.outcome, v.unhealthy, v.abstain),
        (Outcome::NoQuorum, 2, 3)
    );
}

// ---------------------------------------------------------------------------------------
// verify_certificate: a fixture of N = 5 where m0, m1, m2 say Unhealthy, m3 Healthy,
// m4 Abstain, and one certificate made by the tally.

struct Fixture {
    cluster: Cluster,
    /// The tally's certificate (m0, m1, m2, all Unhealthy).
    cert: Certificate,
    /// Every member's ballot, as held by the book.
    ballots: Vec<Arc<VerifiedBallot>>,
}

fn fixture() -> Fixture {
    let cluster = Cluster::new(5);
    let statuses = [
        Status::Unhealthy,
        Status::Unhealthy,
        Status::Unhealthy,
        Status::Healthy,
        Status::Abstain,
    ];
    let mut book = cluster.book();
    for (i, s) in statuses.into_iter().enumerate() {
        let wire = Draft::new(&cluster.ids[i], &[(CHECK, s), ("db", Status::Healthy)])
            .wire(&cluster.keys[i]);
        book.handle_ballot(T0, &wire).unwrap();
    }
    let verdict = tally(&book, &check(CHECK), T0);
    assert_eq!(verdict.outcome, Outcome::Unhealthy);
    Fixture {
        ballots: book.iter().cloned().collect(),
        cert: verdict.certificate.unwrap(),
        cluster,
    }
}

impl Fixture {
    fn verify(&self, bytes: &[u8]) -> Result<VerifiedCertificate, CertError> {
        verify_certificate(bytes, &self.cluster.membership, Some(&DIGEST), SKEW_MS)
    }

    /// The certificate with its ballots replaced.
    fn with(&self, ballots: Vec<Arc<VerifiedBallot>>) -> Vec<u8> {
        Certificate {
            ballots,
            ..self.cert.clone()
        }
        .to_bytes()
    }

    /// The certificate with ballot `index` replaced.
    fn swap(&self, index: usize, ballot: Arc<VerifiedBallot>) -> Vec<u8> {
        let mut ballots = self.cert.ballots.clone();
        ballots[index] = ballot;
        self.with(ballots)
    }

    fn draft(&self, member: usize, status: Status) -> Draft {
        Draft::new(&self.cluster.ids[member], &[(CHECK, status)])
    }
}

#[test]
fn accepts_the_tallys_certificate_and_a_larger_one() {
    let f = fixture();
    let vc = f.verify(&f.cert.to_bytes()).unwrap();
    assert_eq!(vc.outcome, Outcome::Unhealthy);
    assert_eq!(vc.agents, f.cluster.ids[..3].to_vec());
    assert_eq!(vc.valid_from, T0.minus(SKEW_MS));
    assert_eq!(vc.valid_until, T0.plus(u64::from(VALID_MS)));
    // More than Q unanimous ballots still prove the verdict.
    let extra = f
        .draft(3, Status::Unhealthy)
        .seq(2)
        .verified(&f.cluster.keys[3]);
    let mut ballots = f.cert.ballots.clone();
    ballots.push(extra);
    assert_eq!(f.verify(&f.with(ballots)).unwrap().agents.len(), 4);
    // No expected digest: any single digest is fine, and is reported.
    let any = verify_certificate(&f.cert.to_bytes(), &f.cluster.membership, None, SKEW_MS);
    assert_eq!(any.unwrap().config_digest, DIGEST);
}

#[test]
fn a_certificate_splits_into_its_ballots_and_rebuilds_byte_for_byte() {
    let f = fixture();
    let bytes = f.cert.to_bytes();
    let (check_id, outcome, wires) = certificate_parts(&bytes).unwrap();
    assert_eq!(
        (check_id.as_str(), outcome, wires.len()),
        (CHECK, Outcome::Unhealthy, 3)
    );
    let expected: Vec<Vec<u8>> = f.cert.ballots.iter().map(|b| b.signed.to_wire()).collect();
    assert_eq!(
        wires,
        expected.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    let rebuilt = portable_certificate(&check_id, outcome, wires.iter().copied());
    assert_eq!(rebuilt, bytes);
    assert!(f.verify(&rebuilt).is_ok());
    // Any truncation is an error, never a panic or a shorter certificate.
    for cut in 0..bytes.len() {
        assert!(certificate_parts(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn rejects_every_single_byte_tampering() {
    let f = fixture();
    let bytes = f.cert.to_bytes();
    for i in 0..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut t = bytes.clone();
            t[i] ^= mask;
            assert!(f.verify(&t).is_err(), "byte {i} ^ {mask:#x} still verifies");
        }
    }
}

#[test]
fn rejects_a_non_member_ballot() {
    let f = fixture();
    let stranger = Draft::new(
        &quorum::AgentId::new("stranger").unwrap(),
        &[(CHECK, Status::Unhealthy)],
    )
    .verified(&outsider_key());
    assert!(matches!(
        f.verify(&f.swap(2, stranger)),
        Err(CertError::UnknownAgent { index: 2, .. })
    ));
    // A member's name signed with a key that is not that member's.
    let impostor = f.draft(3, Status::Unhealthy).verified(&outsider_key());
    assert!(matches!(
        f.verify(&f.swap(2, impostor)),
        Err(CertError::BadSignature { index: 2, .. })
    ));
    let wrong_member_key = f.draft(3, Status::Unhealthy).verified(&f.cluster.keys[4]);
    assert!(matches!(
        f.verify(&f.swap(0, wrong_member_key)),
        Err(CertError::BadSignature { index: 0, .. })
    ));
    // The same certificate checked against another group that uses our member names.
    let others = Cluster::with_first_seed(5, 100);
    assert!(matches!(
        verify_certificate(
            &f.cert.to_bytes(),
            &others.membership,
            Some(&DIGEST),
            SKEW_MS
        ),
        Err(CertError::BadSignature { index: 0, .. })
    ));
}

#[test]
fn rejects_a_duplicate_agent() {
    let f = fixture();
    let same = Arc::clone(&f.cert.ballots[0]);
    assert_eq!(
        f.verify(&f.swap(1, same)).unwrap_err(),
        CertError::DuplicateAgent(f.cluster.ids[0].clone())
    );
    // Two distinct, validly signed ballots of one member are still one vote.
    let newer = f
        .draft(0, Status::Unhealthy)
        .seq(7)
        .verified(&f.cluster.keys[0]);
    assert_eq!(
        f.verify(&f.swap(2, newer)).unwrap_err(),
        CertError::DuplicateAgent(f.cluster.ids[0].clone())
    );
}

#[test]
fn rejects_a_ballot_that_voted_otherwise() {
    let f = fixture();
    // m3 said Healthy, m4 abstained: neither supports Unhealthy.
    for member in [3, 4] {
        assert!(matches!(
            f.verify(&f.swap(2, Arc::clone(&f.ballots[member]))),
            Err(CertError::WrongVote {
                index: 2,
                claimed: Outcome::Unhealthy,
                ..
            })
        ));
    }
    // A ballot with no observation of the check.
    let silent =
        Draft::new(&f.cluster.ids[3], &[("db", Status::Unhealthy)]).verified(&f.cluster.keys[3]);
    assert!(matches!(
        f.verify(&f.swap(1, silent)),
        Err(CertError::WrongVote { index: 1, .. })
    ));
    // The right ballots under the opposite claim.
    let flipped = Certificate {
        outcome: Outcome::Healthy,
        ..f.cert.clone()
    };
    assert!(matches!(
        f.verify(&flipped.to_bytes()),
        Err(CertError::WrongVote {
            index: 0,
            claimed: Outcome::Healthy,
            ..
        })
    ));
    // The right ballots for another check.
    let other_check = Certificate {
        check: check("db"),
        ..f.cert.clone()
    };
    assert!(matches!(
        f.verify(&other_check.to_bytes()),
        Err(CertError::WrongVote { index: 0, .. })
    ));
    // No certificate proves no_quorum.
    let nq = Certificate {
        outcome: Outcome::NoQuorum,
        ..f.cert.clone()
    };
    assert_eq!(
        f.verify(&nq.to_bytes()).unwrap_err(),
        CertError::NoQuorumClaimed
    );
}

#[test]
fn rejects_too_few_ballots() {
    let f = fixture();
    let q = f.cluster.quorum();
    for keep in 0..q {
        assert_eq!(
            f.verify(&f.with(f.cert.ballots[..keep].to_vec()))
                .unwrap_err(),
            CertError::TooFew {
                have: keep,
                need: q
            }
        );
    }
    // Quorum is of configured members: the same ballots do not convince a group of 7.
    let seven = Cluster::new(7);
    assert_eq!(
        verify_certificate(
            &f.cert.to_bytes(),
            &seven.membership,
            Some(&DIGEST),
            SKEW_MS
        )
        .unwrap_err(),
        CertError::TooFew { have: 3, need: 4 }
    );
}

#[test]
fn rejects_mixed_and_unexpected_digests() {
    let f = fixture();
    let drifted = f
        .draft(2, Status::Unhealthy)
        .digest(OTHER_DIGEST)
        .verified(&f.cluster.keys[2]);
    assert_eq!(
        f.verify(&f.swap(2, drifted)).unwrap_err(),
        CertError::MixedDigests
    );

    let all_other: Vec<_> = (0..3)
        .map(|i| {
            f.draft(i, Status::Unhealthy)
                .digest(OTHER_DIGEST)
                .verified(&f.cluster.keys[i])
        })
        .collect();
    let bytes = f.with(all_other);
    assert_eq!(
        f.verify(&bytes).unwrap_err(),
        CertError::WrongDigest(OTHER_DIGEST)
    );
    let any = verify_certificate(&bytes, &f.cluster.membership, None, SKEW_MS).unwrap();
    assert_eq!(any.config_digest, OTHER_DIGEST);
    // The tally's own certificate, checked against a digest it was not made under.
    assert_eq!(
        verify_certificate(
            &f.cert.to_bytes(),
            &f.cluster.membership,
            Some(&OTHER_DIGEST),
            SKEW_MS
        )
        .unwrap_err(),
        CertError::WrongDigest(DIGEST)
    );
}

#[test]
fn rejects_ballots_never_live_together() {
    let f = fixture();
    // m0 and m1 are issued at T0 and expire at T0 + VALID; a ballot issued later than
    // T0 + VALID + SKEW never overlaps them, even allowing for skew.
    let edge = T0.plus(u64::from(VALID_MS) + SKEW_MS);
    let touching = f
        .draft(2, Status::Unhealthy)
        .issued_at(edge)
        .seq(2)
        .verified(&f.cluster.keys[2]);
    let vc = f.verify(&f.swap(2, touching)).unwrap();
    assert_eq!(
        (vc.valid_from, vc.valid_until),
        (T0.plus(u64::from(VALID_MS)), T0.plus(u64::from(VALID_MS)))
    );

    let late = f
        .draft(2, Status::Unhealthy)
        .issued_at(edge.plus(1))
        .seq(2)
        .verified(&f.cluster.keys[2]);
    assert_eq!(
        f.verify(&f.swap(2, late)).unwrap_err(),
        CertError::NotSimultaneous
    );
    // An already-expired ballot (valid for 0 ms, issued long before) with fresh ones.
    let stale = f
        .draft(1, Status::Unhealthy)
        .issued_at(T0.minus(60_000))
        .valid_for_ms(0)
        .verified(&f.cluster.keys[1]);
    assert_eq!(
        f.verify(&f.swap(1, stale)).unwrap_err(),
        CertError::NotSimultaneous
    );
    // With no skew allowance the touching pair no longer overlaps.
    let touching = f
        .draft(2, Status::Unhealthy)
        .issued_at(edge)
        .seq(2)
        .verified(&f.cluster.keys[2]);
    assert_eq!(
        verify_certificate(
            &f.swap(2, touching),
            &f.cluster.membership,
            Some(&DIGEST),
            0
        )
        .unwrap_err(),
        CertError::NotSimultaneous
    );
}

#[test]
fn rejects_garbage_and_truncations_without_panicking() {
    let f = fixture();
    let bytes = f.cert.to_bytes();
    for cut in 0..bytes.len() {
        assert!(
            f.verify(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes verified"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(f.verify(&trailing), Err(CertError::Decode(_))));
    // Deterministic pseudo-random garbage, with and without a valid header.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..512 {
        let mut g: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        assert!(f.verify(&g).is_err());
        if g.len() >= 4 {
            g[..4].copy_from_slice(b"QGC\x01");
            assert!(f.verify(&g).is_err());
        }
    }
    // A header that declares 65,535 ballots and holds none.
    assert!(f.verify(b"QGC\x01\x03api\x01\xff\xff").is_err());
}

/// `tally_all` walks sorted check lists in step with the ballots; it must agree with one
/// `tally` per check whatever order (sorted, reversed, repeated, unknown checks) it is given.
#[test]
fn tally_all_agrees_with_tally_in_any_order() {
    let c = Cluster::new(5);
    let mut book = c.book();
    let statuses = [
        quorum::Status::Healthy,
        quorum::Status::Unhealthy,
        quorum::Status::Abstain,
    ];
    for (i, id) in c.ids.iter().enumerate() {
        // Member i skips every (i+2)-th check, so ballots have different gaps.
        let names: Vec<String> = (0..40)
            .filter(|k| k % (i + 2) != 0)
            .map(|k| format!("c{k:02}"))
            .collect();
        let votes: Vec<(&str, quorum::Status)> = names
            .iter()
            .enumerate()
            .map(|(k, n)| (n.as_str(), statuses[(k * 7 + i) % 3]))
            .collect();
        book.handle_ballot(T0, &Draft::new(id, &votes).wire(&c.keys[i]))
            .unwrap();
    }
    let sorted: Vec<quorum::CheckId> = (0..45).map(|k| check(&format!("c{k:02}"))).collect();
    let mut orders = vec![sorted.clone(), sorted.iter().rev().cloned().collect()];
    orders.push(sorted.iter().flat_map(|c| [c.clone(), c.clone()]).collect());
    // A high check, then a low one, then one between: the last is above its predecessor but
    // below where the walk already stands.
    orders.push(vec![
        sorted[30].clone(),
        sorted[2].clone(),
        sorted[10].clone(),
    ]);
    // Interleaved descents and ascents.
    orders.push((0..45).map(|k| sorted[(k * 17) % 45].clone()).collect());
    for order in orders {
        let all = quorum::tally_all(&book, &order, T0);
        for (verdict, id) in all.iter().zip(&order) {
            let one = quorum::tally(&book, id, T0);
            assert_eq!(
                (
                    verdict.outcome,
                    verdict.healthy,
                    verdict.unhealthy,
                    verdict.abstain
                ),
                (one.outcome, one.healthy, one.unhealthy, one.abstain),
                "check {id}"
            );
        }
    }
}
