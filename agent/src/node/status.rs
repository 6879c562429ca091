//! The `/v1/status` document of a node.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::{State, UnixMillis};

use super::journal::Answer;
use super::Node;
use crate::status::{
    BallotSummary, CheckStatus, ControlStatus, MemberStatus, ObservationStatus,
    Status as StatusDoc, TallyStatus,
};

impl Node {
    /// The `/v1/status` document.
    #[must_use]
    pub fn status(&self, now: UnixMillis) -> StatusDoc {
        let cfg = &self.cfg;
        let book = self.engine.book();
        let skew = cfg.shared.cluster.max_clock_skew_ms;
        let members = cfg
            .shared
            .members
            .iter()
            .map(|m| MemberStatus {
                id: m.id.to_string(),
                region: m.region.clone(),
                url: m.url.to_string(),
                is_self: m.id == cfg.local.agent_id,
                ballot: book.latest(&m.id).map(|v| BallotSummary {
                    seq: v.ballot.seq(),
                    issued_at_ms: v.ballot.issued_at().0,
                    expires_at_ms: v.ballot.expires_at().0,
                    live: v.ballot.is_live_at(now, skew),
                }),
                last_push: self.last_push.get(&m.id).cloned(),
            })
            .collect();
        let answers = self.journal.answers();
        let (rejected, last_rejection) = self.rejections.snapshot();
        let checks = cfg
            .shared
            .checks
            .iter()
            .filter_map(|c| self.check_status(c, answers.get(&c.id).copied(), now))
            .collect();
        StatusDoc {
            gates: Vec::new(),
            agent: cfg.local.agent_id.to_string(),
            region: cfg
                .member(&cfg.local.agent_id)
                .map(|m| m.region.clone())
                .unwrap_or_default(),
            cluster: cfg.shared.cluster.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config_digest: cfg.digest.to_hex(),
            now_ms: now.0,
            members_total: book.membership().len(),
            quorum: book.membership().quorum(),
            ready: self.ready,
            rounds: self.rounds,
            abstaining: self.abstain_cause(now).map(|c| c.describe()),
            controls: self
                .controls
                .iter()
                .map(|(id, c)| ControlStatus {
                    id: id.clone(),
                    healthy: c.last.healthy,
                    reason: c.last.reason.to_string(),
                    consecutive_failures: c.consecutive_failures,
                    observed_at_ms: c.observed_at.0,
                })
                .collect(),
            members,
            checks,
            rejected,
            last_rejection,
        }
    }

    /// `answer`: what `/v1/health` answers for the check (the decision status shows).
    fn check_status(
        &self,
        c: &config::CheckConfig,
        answer: Option<Answer>,
        now: UnixMillis,
    ) -> Option<CheckStatus> {
        let m = self.engine.machine(&c.id)?;
        let a = answer?;
        let skew = self.cfg.shared.cluster.max_clock_skew_ms;
        let observations = self
            .engine
            .book()
            .iter()
            .filter_map(|v| {
                let o = v.ballot.observation(&c.id)?;
                Some((
                    v.ballot.agent().to_string(),
                    ObservationStatus {
                        status: o.status.as_str().to_owned(),
                        reason: o.reason.to_string(),
                        latency_ms: o.latency_ms,
                        observed_at_ms: o.observed_at.0,
                        lag_ms: o.lag_ms,
                        detail: o.detail.clone(),
                        live: v.ballot.is_live_at(now, skew),
                    },
                ))
            })
            .collect();
        let tally = self.engine.verdict(&c.id).map(|v| TallyStatus {
            outcome: v.outcome.as_str().to_owned(),
            healthy: v.healthy,
            unhealthy: v.unhealthy,
            abstain: v.abstain,
            at_ms: v.at.0,
            certificate: v
                .certificate
                .as_ref()
                .map(|cert| STANDARD.encode(cert.to_bytes())),
            certificate_sha256: v.certificate.as_ref().map(quorum::Certificate::digest_hex),
        });
        Some(CheckStatus {
            id: c.id.to_string(),
            kind: c.probe.kind().to_owned(),
            decision: a.decision.map_or("undecided", State::as_str).to_owned(),
            basis: a.basis.as_str().to_owned(),
            since_ms: a.since.0,
            transitions: m.transitions(),
            pending_rounds: m.pending_rounds(),
            tally,
            observations,
        })
    }
}
