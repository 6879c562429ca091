//! A byzantine cluster member, as test code: it exists only inside the chaos test process, so
//! no production build or configuration can ever turn an agent into one.
//!
//! It holds one member's real signing key (that member's agent is not running) and, from
//! inside that member's region namespace, POSTs four kinds of ballot to every honest agent
//! each round:
//! - `unhealthy`: validly signed, "Unhealthy" for every configured check, seq increasing. A
//!   member may lie; the book must accept these, and the quorum must outvote them.
//! - `replay`: genuine ballots of honest members captured earlier from their `GET /v1/ballots`
//!   and sent again once newer ones are held.
//! - `bad_signature`: a ballot claiming to be an honest member's, signed with our own key.
//! - `config_drift`: our own identity and key, but the digest of another configuration.
//!
//! Every answer is checked against what the agents must say (202, or 400 naming the
//! rejection reason as `quorum::Rejection::reason` spells it) and tallied per kind.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorum::{
    AgentId, Ballot, CheckId, ConfigDigest, Observation, Reason, SignedBallot, SigningKey, Status,
    UnixMillis,
};
use quorumgate::clock::{Clock, SystemClock};
use quorumgate::{bundle, net};
use url::Url;

/// The kinds of ballot sent, each with the rejection reason the agents must answer (None: the
/// ballot is valid and must be accepted).
pub const KINDS: [(&str, Option<&str>); 4] = [
    ("unhealthy", None),
    ("replay", Some("replay")),
    ("bad_signature", Some("bad_signature")),
    ("config_drift", Some("config_drift")),
];

/// What one kind of ballot got, summed over rounds and honest agents.
#[derive(Debug, Default, Clone)]
pub struct KindTally {
    pub sent: u64,
    /// Accepted (202) when the kind is valid, refused with the expected reason otherwise.
    pub as_expected: u64,
    /// Anything else, verbatim (status and body), for the assertion message.
    pub unexpected: Vec<String>,
}

/// One honest agent as the byzantine member reaches it (through the relay).
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: String,
    pub url: Url,
}

/// The byzantine member. Build it with [`Byzantine::new`], then drive it with
/// [`Byzantine::run`] from a task inside its region's namespace.
#[derive(Debug)]
pub struct Byzantine {
    me: AgentId,
    key: SigningKey,
    digest: ConfigDigest,
    other_digest: ConfigDigest,
    checks: Vec<CheckId>,
    valid_for_ms: u32,
    round_ms: u64,
    peers: Vec<Peer>,
    tls: Arc<rustls::ClientConfig>,
    clock: SystemClock,
    seq: u64,
    /// Genuine ballots of honest members, captured at the first round, and when.
    captured: Vec<Vec<u8>>,
    captured_at: Option<tokio::time::Instant>,
    pub tally: BTreeMap<&'static str, KindTally>,
}

impl Byzantine {
    /// `config_path` is an agent config of the cluster (its digest and checks); `me` the
    /// member the byzantine task is, `key` that member's signing key; `peers` the honest agents.
    pub fn new(
        config_path: &Path,
        me: &str,
        key: SigningKey,
        peers: Vec<Peer>,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let cfg = config::Config::load(Some(config_path))
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", config_path.display()))?;
        // "Another config digest": the digest of this very cluster's configuration with one
        // setting changed, as an agent left on a stale config would sign.
        let text = std::fs::read_to_string(config_path)?;
        let changed = text.replacen("max_ballot_bytes = ", "max_ballot_bytes = 1", 1);
        anyhow::ensure!(
            changed != text,
            "no max_ballot_bytes in {}",
            config_path.display()
        );
        let dir = tempfile::tempdir()?;
        let other_path = dir.path().join("other.toml");
        std::fs::write(&other_path, changed)?;
        let other = config::Config::load(Some(&other_path))
            .map_err(|e| anyhow::anyhow!("loading the changed config: {e}"))?;
        anyhow::ensure!(
            other.digest != cfg.digest,
            "the changed config has the same digest"
        );
        Ok(Self {
            me: AgentId::new(me)?,
            key,
            digest: cfg.digest,
            other_digest: other.digest,
            checks: cfg.shared.checks.iter().map(|c| c.id.clone()).collect(),
            valid_for_ms: cfg.shared.cluster.ballot_valid_for_ms,
            round_ms: cfg.shared.cluster.round_interval_ms,
            peers,
            tls,
            clock: SystemClock::default(),
            seq: 0,
            captured: Vec::new(),
            captured_at: None,
            tally: KINDS
                .iter()
                .map(|(k, _)| (*k, KindTally::default()))
                .collect(),
        })
    }

    /// Runs `rounds` rounds, `interval` apart: first captures honest ballots, then sends every
    /// kind to every honest agent each round (see [`Self::send_round`] for the replays).
    pub async fn run(mut self, rounds: u32, interval: Duration) -> anyhow::Result<Self> {
        self.capture().await?;
        for _ in 0..rounds {
            self.send_round().await;
            tokio::time::sleep(interval).await;
        }
        Ok(self)
    }

    /// Keeps sending until `stop` is cancelled (or `max_rounds` passed): the noise of
    /// scenario 7.
    pub async fn run_until(
        mut self,
        interval: Duration,
        max_rounds: u32,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Self> {
        self.capture().await?;
        for _ in 0..max_rounds {
            if stop.is_cancelled() {
                break;
            }
            self.send_round().await;
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => break,
            }
        }
        Ok(self)
    }

    /// Honest members' genuine ballots, from each honest agent's `GET /v1/ballots`.
    async fn capture(&mut self) -> anyhow::Result<()> {
        let honest: Vec<String> = self.peers.iter().map(|p| p.id.clone()).collect();
        for peer in self.peers.clone() {
            let url = peer.url.join("v1/ballots")?;
            let req = net::Request::get(url, Some(Arc::clone(&self.tls)), 16 * 1024 * 1024);
            let resp = net::send(&req, Duration::from_secs(3))
                .await
                .map_err(|e| anyhow::anyhow!("GET {}/v1/ballots: {e}", peer.id))?;
            for wire in bundle::decode(&resp.body)? {
                let from = SignedBallot::from_wire(wire)
                    .and_then(|s| s.decode_unverified())
                    .map(|b| b.agent().as_str().to_owned());
                if from.is_ok_and(|a| honest.contains(&a)) {
                    self.captured.push(wire.to_vec());
                }
            }
        }
        self.captured_at = Some(tokio::time::Instant::now());
        anyhow::ensure!(
            !self.captured.is_empty(),
            "no honest ballot to capture from {honest:?}"
        );
        Ok(())
    }

    fn ballot(&self, agent: &AgentId, seq: u64, now: UnixMillis, digest: ConfigDigest) -> Ballot {
        let observations = self
            .checks
            .iter()
            .map(|c| {
                Observation::new(
                    c.clone(),
                    Status::Unhealthy,
                    Reason::from_static("status"),
                    1,
                    now,
                )
                .with_detail("byzantine: everything is down")
            })
            .collect();
        Ballot::new(
            agent.clone(),
            seq,
            now,
            self.valid_for_ms,
            digest,
            observations,
        )
        .expect("a ballot of the configured checks is well formed")
    }

    /// One ballot of each kind to every honest agent. Replays start once three rounds have
    /// passed since the capture, so every captured ballot is surely superseded where it lands
    /// (a ballot still held would be answered as a harmless duplicate, not a replay).
    async fn send_round(&mut self) {
        let with_replays = self.captured_at.is_some_and(|at| {
            at.elapsed() > Duration::from_millis(self.round_ms.saturating_mul(3))
        });
        let now = self.clock.now();
        self.seq = self.seq.saturating_add(1).max(now.0);
        let lie = SignedBallot::sign(
            &self.ballot(&self.me, self.seq, now, self.digest),
            &self.key,
        )
        .to_wire();
        let drift = SignedBallot::sign(
            &self.ballot(&self.me, self.seq, now, self.other_digest),
            &self.key,
        )
        .to_wire();
        // Each peer gets its ballots in order, all peers at once (a round takes one peer's
        // worth of round trips, not the sum).
        let mut tasks = tokio::task::JoinSet::new();
        for peer in self.peers.clone() {
            let victim = AgentId::new(&peer.id).expect("member ids are valid agent ids");
            let forged = SignedBallot::sign(
                &self.ballot(&victim, u64::MAX / 2 + self.seq, now, self.digest),
                &self.key,
            )
            .to_wire();
            let mut sends = vec![
                ("unhealthy", lie.clone()),
                ("bad_signature", forged),
                ("config_drift", drift.clone()),
            ];
            if with_replays {
                sends.extend(self.captured.iter().map(|w| ("replay", w.clone())));
            }
            let tls = Arc::clone(&self.tls);
            tasks.spawn(async move {
                let mut answers = Vec::new();
                for (kind, body) in sends {
                    answers.push((kind, post(&peer.url, &tls, body).await));
                }
                (peer.id, answers)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let Ok((peer, answers)) = done else {
                continue;
            };
            for (kind, answer) in answers {
                self.note(&peer, kind, &answer);
            }
        }
    }

    fn note(&mut self, peer: &str, kind: &'static str, answer: &Result<(u16, String), String>) {
        let expected = KINDS.iter().find(|(k, _)| *k == kind).and_then(|(_, r)| *r);
        let tally = self.tally.entry(kind).or_default();
        tally.sent += 1;
        let ok = match (answer, expected) {
            (Ok((202, _)), None) => true,
            (Ok((400, text)), Some(reason)) => text.contains(&format!("rejected: {reason}:")),
            _ => false,
        };
        if ok {
            tally.as_expected += 1;
        } else {
            tally
                .unexpected
                .push(format!("{kind} to {peer}: {answer:?}"));
        }
    }
}

/// `POST {base}v1/ballots`: (status, body), or why there was no answer.
async fn post(
    base: &Url,
    tls: &Arc<rustls::ClientConfig>,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let url = base.join("v1/ballots").map_err(|e| e.to_string())?;
    let req = net::Request::get(url, Some(Arc::clone(tls)), 64 * 1024)
        .with_body(http::Method::POST, Bytes::from(body));
    net::send(&req, Duration::from_secs(3))
        .await
        .map(|r| {
            (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .map_err(|e| e.to_string())
}
