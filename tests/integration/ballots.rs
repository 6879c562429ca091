//! Issue scenario 4: hostile ballots are rejected, counted by reason, and change nothing.

use std::time::Duration;

use quorum::{
    AgentId, Ballot, CheckId, ConfigDigest, Observation, Reason, SignedBallot, SigningKey, Status,
    UnixMillis,
};

use crate::support::{metric, TestCluster, CHECK};

fn unhealthy_ballot(agent: &str, seq: u64, issued_at: u64, digest: ConfigDigest) -> Ballot {
    unhealthy_ballot_valid_for(agent, seq, issued_at, digest, 60_000)
}

fn unhealthy_ballot_valid_for(
    agent: &str,
    seq: u64,
    issued_at: u64,
    digest: ConfigDigest,
    valid_for_ms: u32,
) -> Ballot {
    let obs = Observation::new(
        CheckId::new(CHECK).expect("check id"),
        Status::Unhealthy,
        Reason::from_static("status"),
        1,
        UnixMillis(issued_at),
    );
    Ballot::new(
        AgentId::new(agent).expect("agent id"),
        seq,
        UnixMillis(issued_at),
        valid_for_ms,
        digest,
        vec![obs],
    )
    .expect("ballot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ballots_are_rejected_by_reason_and_change_nothing() {
    let c = TestCluster::start(|_| {}).await;
    c.wait_until(Duration::from_secs(20), "all HEALTHY", || async {
        c.healths().await.iter().all(|h| *h == Some(200))
    })
    .await;
    let status = c.status(0).await;
    let digest = ConfigDigest::from_hex(&status.config_digest).expect("digest hex");
    let now = status.now_ms;
    let victim = c.id(1).to_owned();
    let stranger = SigningKey::from_bytes(&[0x5a; 32]);

    // An old ballot of the victim, captured now, to replay once a newer one is held.
    let old = c
        .ballots(0)
        .await
        .into_iter()
        .find(|w| {
            SignedBallot::from_wire(w)
                .ok()
                .and_then(|s| s.decode_unverified().ok())
                .is_some_and(|b| b.agent().as_str() == victim)
        })
        .expect("agent 0 holds a ballot of agent 1");
    let old_seq = SignedBallot::from_wire(&old)
        .and_then(|s| s.decode_unverified())
        .map(|b| b.seq())
        .expect("decodes");
    c.wait_until(
        Duration::from_secs(10),
        "a newer ballot of agent 1 at agent 0",
        || async {
            c.status(0)
                .await
                .members
                .iter()
                .any(|m| m.id == victim && m.ballot.as_ref().is_some_and(|b| b.seq > old_seq))
        },
    )
    .await;

    let forged = SignedBallot::sign(
        &unhealthy_ballot(&victim, u64::MAX - 1, now, digest),
        &stranger,
    )
    .to_wire();
    let unknown =
        SignedBallot::sign(&unhealthy_ballot("mallory", 1, now, digest), &stranger).to_wire();
    let drift = SignedBallot::sign(
        &unhealthy_ballot(&victim, u64::MAX - 1, now, ConfigDigest([0xab; 32])),
        &c.written.agents[1].key,
    )
    .to_wire();
    // Genuinely signed by a member, under our digest, but claiming to count for ~49 days.
    let too_long = SignedBallot::sign(
        &unhealthy_ballot_valid_for(&victim, u64::MAX - 1, now, digest, u32::MAX),
        &c.written.agents[1].key,
    )
    .to_wire();
    let mut truncated = forged.clone();
    truncated.truncate(forged.len() / 2);
    let oversized = vec![0u8; 1024 * 1024 + 1];

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad_signature", forged),
        ("replay", old),
        ("unknown_agent", unknown),
        ("config_drift", drift),
        ("validity_too_long", too_long),
        ("decode", truncated),
        ("decode", b"definitely not a ballot".to_vec()),
        ("too_large", oversized),
    ];
    for (reason, body) in cases {
        match c.post_ballot(0, body).await {
            Some((code, text)) => {
                assert!(code == 400 || code == 413, "{reason}: HTTP {code} {text}");
                assert!(text.contains(reason), "{reason}: response says {text:?}");
            }
            // The agent answers 413 as soon as it sees the declared length and closes; a
            // client still writing the body may see the reset before the answer.
            None => assert_eq!(reason, "too_large", "{reason}: no answer"),
        }
    }

    let metrics = c.metrics(0).await;
    for (reason, expected) in [
        ("bad_signature", 1.0),
        ("replay", 1.0),
        ("unknown_agent", 1.0),
        ("config_drift", 1.0),
        ("validity_too_long", 1.0),
        ("decode", 2.0),
        ("too_large", 1.0),
    ] {
        let seen = metric(
            &metrics,
            "quorumgate_ballots_rejected_total",
            &format!("reason=\"{reason}\""),
        );
        assert_eq!(seen, expected, "rejected{{reason={reason}}} in\n{metrics}");
    }
    let s = c.status(0).await;
    assert_eq!(s.rejected.values().sum::<u64>(), 8);

    // Nothing moved, and the agent keeps working: more rounds, still HEALTHY everywhere.
    let rounds = s.rounds;
    c.wait_until(
        Duration::from_secs(10),
        "agent 0 keeps running rounds",
        || async { c.status(0).await.rounds > rounds + 2 },
    )
    .await;
    assert!(c.healths().await.iter().all(|h| *h == Some(200)));
    assert_eq!(c.status(0).await.checks[0].transitions, 0);
}
