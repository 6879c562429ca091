//! The pass/fail criteria of a drill report: the measures against the gate's objectives,
//! and the consistency of every agent's timeline.

use super::report::{ClusterPhase, Criterion, DnsReport, DrillInfo, Measured};
use super::timeline::{AgentTimeline, Phase};

fn ms(v: u64) -> String {
    format!("{:.3} s", v as f64 / 1000.0)
}

pub(super) fn criteria(
    drill: &DrillInfo,
    agents: &[AgentTimeline],
    phases: &[ClusterPhase],
    m: &Measured,
    dns: Option<&DnsReport>,
) -> Vec<Criterion> {
    let mut out = Vec::new();
    let mut push = |name: &str, passed: bool, detail: String| {
        out.push(Criterion {
            name: name.to_owned(),
            passed,
            detail,
        });
    };
    let at = |p: Phase| phases.iter().find(|c| c.phase == p.code());
    // A data-plane gate's agents never write: their failover is the quorum's decision.
    let (over_phase, back_phase, what) = if drill.data_plane() {
        (Phase::Detected, Phase::Recovered, "decided by the quorum")
    } else if drill.dry_run {
        (Phase::Changed, Phase::FailbackChanged, "decided (dry run)")
    } else {
        (
            Phase::Changed,
            Phase::FailbackChanged,
            "accepted by Route 53",
        )
    };
    match at(over_phase) {
        Some(c) => push(
            "failover",
            true,
            format!("{what} at +{} ({})", ms(c.after_start_ms), c.source),
        ),
        None => push("failover", false, format!("no failover change was {what}")),
    }
    match (at(back_phase), at(over_phase)) {
        (Some(c), _) => push(
            "failback",
            true,
            format!("{what} at +{} ({})", ms(c.after_start_ms), c.source),
        ),
        (None, Some(_)) => push(
            "failback",
            false,
            "the gate did not return to the primary".to_owned(),
        ),
        (None, None) => push(
            "failback",
            false,
            "there was no failover to return from".to_owned(),
        ),
    }
    if let Some(objective) = drill.objectives.rto_ms {
        match m.rto_ms {
            Some(rto) => push(
                "rto",
                rto <= objective,
                format!(
                    "{} to {} (objective {})",
                    ms(rto),
                    m.rto_to.as_deref().unwrap_or("?"),
                    ms(objective)
                ),
            ),
            None => push(
                "rto",
                false,
                format!("not measured (objective {})", ms(objective)),
            ),
        }
    }
    if let Some(objective) = drill.objectives.rpo_ms {
        match m.rpo_lag_ms {
            Some(lag) => push(
                "rpo",
                lag <= objective,
                format!(
                    "standby lag {} at the failover (objective {})",
                    ms(lag),
                    ms(objective)
                ),
            ),
            None => push(
                "rpo",
                false,
                format!(
                    "the standby's lag was unknown (objective {})",
                    ms(objective)
                ),
            ),
        }
    }
    let mut disorder = Vec::new();
    let cluster: Vec<(&str, u64)> = Phase::ALL
        .into_iter()
        .filter_map(|p| at(p).map(|c| (p.code(), c.at_ms)))
        .collect();
    disorder.extend(out_of_order("cluster", &cluster));
    for t in agents {
        let marks: Vec<(&str, u64)> = t
            .marks
            .iter()
            .map(|m| (m.phase.as_str(), m.at_ms))
            .collect();
        disorder.extend(out_of_order(&t.agent, &marks));
    }
    // DNS can only follow a batch that was sent; on the data plane, the quorum's decision
    // that the agents' health answers follow.
    let follows = if drill.data_plane() {
        [
            ("dns_failover", Phase::Detected),
            ("dns_failback", Phase::Recovered),
        ]
    } else {
        [
            ("dns_failover", Phase::Sent),
            ("dns_failback", Phase::FailbackSent),
        ]
    };
    for (dns_phase, after) in follows {
        let seen = phases.iter().find(|c| c.phase == dns_phase);
        if let (Some(seen), Some(sent)) = (seen, at(after)) {
            if seen.at_ms < sent.at_ms {
                disorder.push(format!("{dns_phase} before {}", after.code()));
            }
        }
    }
    push(
        "order",
        disorder.is_empty(),
        if disorder.is_empty() {
            "every phase follows the one before it".to_owned()
        } else {
            disorder.join("; ")
        },
    );
    if let Some(d) = dns {
        let over = phases.iter().any(|c| c.phase == "dns_failover");
        let back = phases.iter().any(|c| c.phase == "dns_failback");
        if drill.dry_run {
            let moved = d
                .samples
                .iter()
                .any(|s| s.target.as_deref() == Some(drill.secondary.as_str()));
            push(
                "dns",
                !moved,
                if moved {
                    "DNS answered the secondary during a dry run".to_owned()
                } else {
                    format!("DNS kept answering the primary ({} queries)", d.queries)
                },
            );
        } else {
            push(
                "dns",
                over && back,
                match (over, back) {
                    (true, true) => format!("observed the secondary at +{} and the primary again {} after the drill's end", opt_ms(m.dns_failover_ms), opt_ms(m.dns_failback_ms)),
                    (true, false) => "observed the secondary, never the primary again".to_owned(),
                    _ => format!("never observed the secondary ({} queries, {} errors)", d.queries, d.errors),
                },
            );
        }
    }
    out
}

fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_owned(), ms)
}

/// Every place where a phase is earlier than the one before it.
fn out_of_order(who: &str, marks: &[(&str, u64)]) -> Vec<String> {
    marks
        .windows(2)
        .filter(|w| w[1].1 < w[0].1)
        .map(|w| {
            format!(
                "{who}: {} ({}) before {} ({})",
                w[1].0, w[1].1, w[0].0, w[0].1
            )
        })
        .collect()
}
