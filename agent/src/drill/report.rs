//! A drill's report: the cluster's phases from every agent's timeline and the DNS
//! observation, the measured RTO and RPO, and the verdict against the gate's objectives.
//! Pure: the same inputs give the same report (the agents use it for their own verdict).

use serde::{Deserialize, Serialize};

use super::criteria::criteria;
use super::timeline::{AgentTimeline, Phase};

/// What the report needs to know about the drill and its gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillInfo {
    pub gate: String,
    /// `control`: the agents write the failover through the fence; `data`: the agents' votes
    /// flip Route 53's calculated health checks and Route 53 moves DNS by itself, so the
    /// agents' part ends at the quorum's decision and the rest is seen only in DNS.
    #[serde(default = "control_plane")]
    pub plane: String,
    /// The drill command's seq.
    pub seq: u64,
    pub operator: String,
    pub dry_run: bool,
    /// The command's `issued_at`: t = 0 of every time in the report.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub primary: String,
    pub secondary: String,
    pub objectives: Objectives,
}

fn control_plane() -> String {
    "control".to_owned()
}

impl DrillInfo {
    /// A data-plane gate's drill.
    #[must_use]
    pub fn data_plane(&self) -> bool {
        self.plane == "data"
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objectives {
    pub rto_ms: Option<u64>,
    pub rpo_ms: Option<u64>,
}

/// What DNS answered during the drill, from the drill command's vantage point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsReport {
    /// `resolver 127.0.0.1:5353`, or `route53-api` (ListResourceRecordSets: what Route 53
    /// holds, not what resolvers answer).
    pub source: String,
    pub note: Option<String>,
    /// Every change of the answer (the first sample included), in time order.
    pub samples: Vec<DnsSample>,
    /// Samples taken (changed or not) and failed.
    pub queries: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSample {
    pub at_ms: u64,
    /// The answer as observed (sorted values, or the error).
    pub answer: String,
    /// The gate target it is, if any.
    pub target: Option<String>,
}

impl DnsReport {
    /// First time the answer was `target` at or after `after_ms`.
    #[must_use]
    pub fn first(&self, target: &str, after_ms: u64) -> Option<u64> {
        self.samples
            .iter()
            .find(|s| s.at_ms >= after_ms && s.target.as_deref() == Some(target))
            .map(|s| s.at_ms)
    }
}

/// One phase of the cluster as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPhase {
    pub phase: String,
    pub label: String,
    pub at_ms: u64,
    pub after_start_ms: u64,
    /// Where the time comes from: `audit <agent> #<seq>`, `command issued_at`, `dns …`.
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// Drill start → the failover change INSYNC (accepted when INSYNC is unknown; the gate's
    /// simulated decision in a dry run). A data-plane gate: → DNS answered the secondary, or
    /// → the quorum's decision when DNS was not watched.
    pub rto_ms: Option<u64>,
    /// What the RTO was measured to: `in_sync`, `changed`, `dns`, `detected`.
    pub rto_to: Option<String>,
    /// The standby's replication lag the failover accepted (its decision's `rpo_lag_ms`).
    pub rpo_lag_ms: Option<u64>,
    /// Drill end → the failback change accepted (a data-plane gate: → the quorum's decision
    /// that the primary is healthy again).
    pub failback_ms: Option<u64>,
    /// Drill start → DNS answered the secondary; drill end → DNS answered the primary again.
    pub dns_failover_ms: Option<u64>,
    pub dns_failback_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criterion {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The whole report (`drill-<gate>-<time>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub drill: DrillInfo,
    pub end_cause: Option<String>,
    /// The agent whose batch Route 53 applied, failover and failback.
    pub writer: Option<String>,
    pub failback_writer: Option<String>,
    pub phases: Vec<ClusterPhase>,
    pub agents: Vec<AgentTimeline>,
    pub dns: Option<DnsReport>,
    pub measured: Measured,
    pub criteria: Vec<Criterion>,
    /// `pass` or `fail`.
    pub result: String,
    pub notes: Vec<String>,
}

impl Report {
    #[must_use]
    pub fn passed(&self) -> bool {
        self.result == "pass"
    }

    #[must_use]
    pub fn phase(&self, phase: Phase) -> Option<&ClusterPhase> {
        self.phases.iter().find(|p| p.phase == phase.code())
    }
}

fn earliest(agents: &[AgentTimeline], phase: Phase) -> Option<(u64, &AgentTimeline)> {
    agents
        .iter()
        .filter_map(|t| t.at(phase).map(|at| (at, t)))
        .min_by_key(|(at, _)| *at)
}

/// The cluster's time of `phase`: the applying writer's for a change, the earliest agent's
/// otherwise (the first agent to hold the quorum's certificate is when the quorum decided).
fn cluster_phase<'a>(
    agents: &'a [AgentTimeline],
    phase: Phase,
    writer: Option<&'a AgentTimeline>,
) -> Option<(u64, &'a AgentTimeline)> {
    let from_writer = matches!(
        phase,
        Phase::Sent
            | Phase::Changed
            | Phase::InSync
            | Phase::FailbackSent
            | Phase::FailbackChanged
            | Phase::FailbackInSync
    );
    match writer {
        Some(w) if from_writer => w
            .at(phase)
            .map(|at| (at, w))
            .or_else(|| earliest(agents, phase)),
        _ => earliest(agents, phase),
    }
}

/// Builds the report of `drill` from every agent's timeline and, when observed, DNS.
#[must_use]
pub fn build(drill: DrillInfo, agents: Vec<AgentTimeline>, dns: Option<DnsReport>) -> Report {
    let start = drill.started_at_ms;
    let writer = agents.iter().find(|t| t.wrote_failover);
    let failback_writer = agents.iter().find(|t| t.wrote_failback);
    let mut phases = vec![ClusterPhase {
        phase: Phase::Start.code().to_owned(),
        label: Phase::Start.label().to_owned(),
        at_ms: start,
        after_start_ms: 0,
        source: "command issued_at".to_owned(),
    }];
    for phase in Phase::ALL.into_iter().skip(1) {
        let failback = phase >= Phase::Recovered;
        let w = if failback { failback_writer } else { writer };
        if let Some((at, t)) = cluster_phase(&agents, phase, w) {
            let seq = t.mark(phase).map_or(0, |m| m.audit_seq);
            phases.push(ClusterPhase {
                phase: phase.code().to_owned(),
                label: phase.label().to_owned(),
                at_ms: at,
                after_start_ms: at.saturating_sub(start),
                source: format!("audit {} #{seq}", t.agent),
            });
        }
    }
    let at = |phases: &[ClusterPhase], p: Phase| {
        phases.iter().find(|c| c.phase == p.code()).map(|c| c.at_ms)
    };
    let ended = at(&phases, Phase::Ended);
    let mut notes = Vec::new();
    let (dns_failover, dns_failback) = match &dns {
        Some(d) => {
            let over = d.first(&drill.secondary, start);
            let back = over.and_then(|o| d.first(&drill.primary, o));
            if let (Some(o), Some(c)) = (over, at(&phases, Phase::Changed)) {
                if o < c {
                    notes.push(format!(
                        "DNS answered the secondary {} ms before the writer recorded Route 53's acceptance (clocks, or the answer raced the response)",
                        c - o
                    ));
                }
            }
            (over, back)
        }
        None => (None, None),
    };
    for (phase, label, at_ms) in [
        ("dns_failover", "DNS answers the secondary", dns_failover),
        (
            "dns_failback",
            "DNS answers the primary again",
            dns_failback,
        ),
    ] {
        if let (Some(at_ms), Some(d)) = (at_ms, &dns) {
            phases.push(ClusterPhase {
                phase: phase.to_owned(),
                label: label.to_owned(),
                at_ms,
                after_start_ms: at_ms.saturating_sub(start),
                source: format!("dns {}", d.source),
            });
        }
    }
    let (rto_at, rto_to) = if drill.data_plane() {
        match (&dns, dns_failover, at(&phases, Phase::Detected)) {
            (Some(_), over, _) => (over, over.map(|_| "dns")),
            (None, _, Some(t)) => (Some(t), Some("detected")),
            (None, _, None) => (None, None),
        }
    } else {
        match (at(&phases, Phase::InSync), at(&phases, Phase::Changed)) {
            (Some(t), _) => (Some(t), Some("in_sync")),
            (None, Some(t)) => (Some(t), Some("changed")),
            _ => (None, None),
        }
    };
    let failback_phase = if drill.data_plane() {
        Phase::Recovered
    } else {
        Phase::FailbackChanged
    };
    let measured = Measured {
        rto_ms: rto_at.map(|t| t.saturating_sub(start)),
        rto_to: rto_to.map(str::to_owned),
        rpo_lag_ms: writer
            .and_then(|w| w.rpo_lag_ms)
            .or_else(|| agents.iter().filter_map(|t| t.rpo_lag_ms).max()),
        failback_ms: match (ended, at(&phases, failback_phase)) {
            (Some(e), Some(f)) => Some(f.saturating_sub(e)),
            _ => None,
        },
        dns_failover_ms: dns_failover.map(|t| t.saturating_sub(start)),
        dns_failback_ms: match (ended, dns_failback) {
            (Some(e), Some(b)) => Some(b.saturating_sub(e)),
            _ => None,
        },
    };
    let end_cause = agents
        .iter()
        .filter_map(|t| t.mark(Phase::Ended).map(|m| (m.at_ms, t)))
        .min_by_key(|(at, _)| *at)
        .and_then(|(_, t)| t.end_cause.clone());
    let criteria = criteria(&drill, &agents, &phases, &measured, dns.as_ref());
    let result = if criteria.iter().all(|c| c.passed) {
        "pass"
    } else {
        "fail"
    };
    if drill.dry_run {
        notes.push("dry run: the gate decided and audited every change and wrote nothing; INSYNC and the DNS change do not apply".to_owned());
    }
    if dns.as_ref().is_some_and(|d| d.source == "route53-api") {
        notes.push("DNS was observed through the Route 53 API (ListResourceRecordSets), not a resolver: it shows when Route 53 held the new records, not when resolvers answered them".to_owned());
    }
    Report {
        version: 1,
        writer: writer.map(|w| w.agent.clone()),
        failback_writer: failback_writer.map(|w| w.agent.clone()),
        drill,
        end_cause,
        phases,
        agents,
        dns,
        measured,
        criteria,
        result: result.to_owned(),
        notes,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::timeline::tests::{key, writer_log};
    use super::super::timeline::timeline;
    use super::*;

    pub(crate) fn info(rto_ms: Option<u64>, rpo_ms: Option<u64>) -> DrillInfo {
        DrillInfo {
            gate: "app".into(),
            plane: "control".into(),
            seq: 100,
            operator: "alice".into(),
            dry_run: false,
            started_at_ms: 1_000,
            duration_ms: 5_000,
            primary: "primary".into(),
            secondary: "secondary".into(),
            objectives: Objectives { rto_ms, rpo_ms },
        }
    }

    pub(crate) fn dns() -> DnsReport {
        let s = |at_ms, target: &str| DnsSample {
            at_ms,
            answer: format!("[{target}]"),
            target: Some(target.into()),
        };
        DnsReport {
            source: "resolver 127.0.0.1:5353".into(),
            note: None,
            samples: vec![
                s(900, "primary"),
                s(2_400, "secondary"),
                s(8_400, "primary"),
            ],
            queries: 40,
            errors: 0,
        }
    }

    pub(crate) fn sample() -> Report {
        let t = timeline("use1", &key(), &writer_log());
        build(info(Some(2_000), Some(5_000)), vec![t], Some(dns()))
    }

    /// A data-plane drill as one agent logs it: no decision, write or outcome of its own.
    fn data_plane_log() -> Vec<crate::audit::Record> {
        use super::super::timeline::tests::rec;
        use serde_json::json;
        vec![
            rec(
                1,
                1_000,
                "operator_command",
                json!({ "gate": "app", "action": "drill", "seq": 100, "detail": "duration_ms=5000" }),
            ),
            rec(
                2,
                2_000,
                "transition",
                json!({ "check": "app", "to": "unhealthy" }),
            ),
            rec(
                3,
                6_000,
                "drill_end",
                json!({ "gate": "app", "seq": 100, "cause": "elapsed", "detail": "its time is over" }),
            ),
            rec(
                4,
                7_500,
                "transition",
                json!({ "check": "app", "to": "healthy" }),
            ),
        ]
    }

    #[test]
    fn a_data_plane_drill_is_measured_to_the_dns_answer() {
        let mut i = info(Some(2_000), None);
        i.plane = "data".into();
        let t = timeline("use1", &key(), &data_plane_log());
        let r = build(i.clone(), vec![t.clone()], Some(dns()));
        assert!(r.passed(), "{:#?}", r.criteria);
        // DNS answered the secondary at 2.4 s (start 1.0 s): the RTO ends there, not at the
        // quorum's decision, and the failback is the quorum's healthy decision after the end.
        assert_eq!(r.measured.rto_ms, Some(1_400));
        assert_eq!(r.measured.rto_to.as_deref(), Some("dns"));
        assert_eq!(r.measured.failback_ms, Some(1_500));
        assert_eq!(r.measured.dns_failback_ms, Some(2_400));
        let failover = r
            .criteria
            .iter()
            .find(|c| c.name == "failover")
            .expect("criterion");
        assert!(
            failover.detail.contains("decided by the quorum"),
            "{}",
            failover.detail
        );

        // The agent's own verdict has no DNS: measured to the quorum's decision.
        let own = build(i.clone(), vec![t.clone()], None);
        assert_eq!(own.measured.rto_to.as_deref(), Some("detected"));
        assert_eq!(own.measured.rto_ms, Some(1_000));
        assert!(own.passed(), "{:#?}", own.criteria);

        // DNS that never left the primary fails the drill, and the RTO is then unmeasured.
        let mut stuck = dns();
        stuck
            .samples
            .retain(|s| s.target.as_deref() == Some("primary"));
        let r = build(i.clone(), vec![t], Some(stuck));
        assert!(!r.passed());
        assert_eq!(r.measured.rto_ms, None);

        // No quorum decision at all: no failover to speak of.
        let quiet = timeline("use1", &key(), &data_plane_log()[..1]);
        let r = build(i, vec![quiet], None);
        let failover = r
            .criteria
            .iter()
            .find(|c| c.name == "failover")
            .expect("criterion");
        assert!(!failover.passed);
    }

    #[test]
    fn phases_measures_and_verdict() {
        let r = sample();
        let got: Vec<(&str, u64)> = r
            .phases
            .iter()
            .map(|p| (p.phase.as_str(), p.after_start_ms))
            .collect();
        assert_eq!(
            got,
            [
                ("start", 0),
                ("detected", 1_000),
                ("decided", 1_000),
                ("sent", 1_100),
                ("changed", 1_200),
                ("in_sync", 1_290),
                ("ended", 5_000),
                ("recovered", 6_000),
                ("failback_decided", 6_000),
                ("failback_sent", 6_100),
                ("failback_changed", 7_250),
                ("dns_failover", 1_400),
                ("dns_failback", 7_400),
            ]
        );
        assert_eq!(
            r.phase(Phase::Changed).map(|p| p.source.as_str()),
            Some("audit use1 #7")
        );
        assert_eq!(
            (
                r.measured.rto_ms,
                r.measured.rto_to.as_deref(),
                r.measured.rpo_lag_ms,
                r.measured.failback_ms
            ),
            (Some(1_290), Some("in_sync"), Some(1_200), Some(2_250))
        );
        assert_eq!(
            (r.measured.dns_failover_ms, r.measured.dns_failback_ms),
            (Some(1_400), Some(2_400))
        );
        let verdicts: Vec<(&str, bool)> = r
            .criteria
            .iter()
            .map(|c| (c.name.as_str(), c.passed))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("failover", true),
                ("failback", true),
                ("rto", true),
                ("rpo", true),
                ("order", true),
                ("dns", true)
            ]
        );
        assert!(r.passed());
        assert_eq!(
            (r.writer.as_deref(), r.end_cause.as_deref()),
            (Some("use1"), Some("elapsed"))
        );
    }

    #[test]
    fn objectives_missed_or_phases_missing_fail() {
        let t = timeline("use1", &key(), &writer_log());
        let r = build(info(Some(1_000), Some(1_000)), vec![t.clone()], None);
        let failed: Vec<&str> = r
            .criteria
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["rto", "rpo"]);
        assert_eq!(r.result, "fail");

        let mut no_failback = t.clone();
        no_failback
            .marks
            .retain(|m| !m.phase.starts_with("failback"));
        let r = build(info(None, None), vec![no_failback], None);
        assert!(r.criteria.iter().any(|c| c.name == "failback" && !c.passed));

        let mut shuffled = t;
        shuffled.marks[2].at_ms = 999;
        let r = build(info(None, None), vec![shuffled], None);
        let order = r
            .criteria
            .iter()
            .find(|c| c.name == "order")
            .expect("order");
        assert!(
            !order.passed && order.detail.contains("use1: decided"),
            "{}",
            order.detail
        );
    }

    #[test]
    fn a_dry_run_must_leave_dns_alone() {
        let mut drill = info(None, None);
        drill.dry_run = true;
        let t = timeline("use1", &key(), &writer_log());
        let r = build(drill.clone(), vec![t.clone()], Some(dns()));
        assert!(r.criteria.iter().any(|c| c.name == "dns" && !c.passed));
        let mut quiet = dns();
        quiet.samples.truncate(1);
        let r = build(drill, vec![t], Some(quiet));
        assert!(r.criteria.iter().any(|c| c.name == "dns" && c.passed));
        assert!(r.notes.iter().any(|n| n.contains("dry run")));
    }
}
