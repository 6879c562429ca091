//! `quorumgate status`: one agent's `/v1/status`, as a table or JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::client::fetch_status;
use crate::status::Status;
use crate::tls;

/// `quorumgate status`.
pub async fn status(
    url: &Url,
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    json: bool,
) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let tls = tls::client_config(ca_file, identity)?;
    let doc = fetch_status(url, tls, Duration::from_secs(5)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render_status(&doc));
    }
    Ok(())
}

fn ago(now: u64, then: u64) -> String {
    let ms = now.saturating_sub(then);
    if ms < 10_000 {
        format!("{:.1}s ago", ms as f64 / 1000.0)
    } else {
        format!("{}s ago", ms / 1000)
    }
}

/// A gate's drill, in one phrase of the status table.
fn drill_detail(now: u64, d: &crate::status::DrillStatus) -> String {
    let dry = if d.dry_run { " (dry run)" } else { "" };
    match d.state.as_str() {
        "running" => format!(
            "DRILL {}{dry} by {} running, ends in {}s",
            d.seq,
            d.by,
            d.ends_at_ms.saturating_sub(now) / 1000
        ),
        "ended" => format!(
            "DRILL {}{dry} ended ({}), failing back",
            d.seq,
            d.end_cause.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "last drill {}{dry}: {}",
            d.seq,
            d.result.as_deref().unwrap_or("being judged")
        ),
    }
}

/// One member's vote in the status table: `use1=healthy:ok`, with a replication-lag check's
/// measured lag (`[lag 1.2s]`: how far the standby is behind) and, when the ballot carrying it
/// no longer counts, `[EXPIRED, observed 34s ago]`: the last thing it said, not a current vote.
fn vote(now: u64, agent: &str, ob: &crate::status::ObservationStatus) -> String {
    let mut v = format!("{agent}={}:{}", ob.status, ob.reason);
    if let Some(lag) = ob.lag_ms {
        let _ = write!(v, "[lag {}]", lag_text(lag));
    }
    if !ob.live {
        let _ = write!(v, "[EXPIRED, observed {}]", ago(now, ob.observed_at_ms));
    }
    v
}

/// A replication lag for people: `0.4s`, `12s`, `3m 5s`.
fn lag_text(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Human view of a status document.
#[must_use]
pub fn render_status(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "agent {} ({}) · cluster {} · quorum {}/{} · rounds {} · {} · digest {}",
        s.agent,
        s.region,
        s.cluster,
        s.quorum,
        s.members_total,
        s.rounds,
        if s.ready { "ready" } else { "NOT READY" },
        &s.config_digest[..12.min(s.config_digest.len())]
    );
    if let Some(why) = &s.abstaining {
        let _ = writeln!(o, "ABSTAINING from accusations: {why}");
    }
    let _ = writeln!(
        o,
        "\n{:<14} {:<14} {:<28} LAST PUSH",
        "MEMBER", "REGION", "LATEST BALLOT"
    );
    for m in &s.members {
        let ballot = m.ballot.as_ref().map_or_else(
            || "none".to_owned(),
            |b| {
                format!(
                    "{} {}",
                    if b.live { "live" } else { "EXPIRED" },
                    ago(s.now_ms, b.issued_at_ms)
                )
            },
        );
        let name = if m.is_self {
            format!("{}*", m.id)
        } else {
            m.id.clone()
        };
        let push = if m.is_self {
            "-".to_owned()
        } else {
            m.last_push.clone().unwrap_or_else(|| "-".to_owned())
        };
        let _ = writeln!(o, "{name:<14} {:<14} {ballot:<28} {push}", m.region);
    }
    let _ = writeln!(
        o,
        "\n{:<20} {:<10} {:<10} {:<12} {:<22} VOTES",
        "CHECK", "DECISION", "BASIS", "SINCE", "TALLY (h/u/a)"
    );
    for c in &s.checks {
        let tally = c.tally.as_ref().map_or_else(
            || "pending".to_owned(),
            |t| format!("{} {}/{}/{}", t.outcome, t.healthy, t.unhealthy, t.abstain),
        );
        let votes: Vec<String> = c
            .observations
            .iter()
            .map(|(agent, ob)| vote(s.now_ms, agent, ob))
            .collect();
        let basis = if c.basis.is_empty() { "-" } else { &c.basis };
        let _ = writeln!(
            o,
            "{:<20} {:<10} {basis:<10} {:<12} {tally:<22} {}",
            c.id,
            c.decision.to_uppercase(),
            ago(s.now_ms, c.since_ms),
            votes.join(" ")
        );
    }
    if !s.gates.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<14} {:<8} {:<24} {:<6} {:<18} DETAIL",
            "GATE", "MODE", "DNS", "EPOCH", "EVALUATION"
        );
        for g in &s.gates {
            let mut detail = Vec::new();
            if g.alert {
                detail.push("ALERT".to_owned());
            }
            if let (Some(hold), Some(since)) = (&g.hold, g.hold_since_ms) {
                if g.last_evaluation != "no_change" {
                    detail.push(format!("{hold} (since {})", ago(s.now_ms, since)));
                }
            }
            if let Some(by) = &g.frozen_by {
                detail.push(format!("frozen by {by}"));
            }
            if let Some(a) = &g.approval {
                detail.push(format!("approved: {a}"));
            }
            if let Some(d) = &g.drill {
                detail.push(drill_detail(s.now_ms, d));
            }
            if let Some(out) = &g.last_outcome {
                detail.push(format!("last: {out}"));
            }
            if !g.synced {
                detail.push("not yet read from Route 53".to_owned());
            }
            let _ = writeln!(
                o,
                "{:<14} {:<8} {:<24} {:<6} {:<18} {}",
                g.id,
                g.mode,
                g.current,
                g.epoch,
                g.last_evaluation,
                detail.join("; ")
            );
        }
    }
    if !s.rejected.is_empty() {
        let parts: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(o, "\nrejected ballots: {}", parts.join(" "));
        if let Some(last) = &s.last_rejection {
            let _ = writeln!(o, "last rejection: {last}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::render_status;

    #[test]
    fn status_shows_lag_and_marks_expired_votes() {
        let doc = serde_json::json!({
            "agent": "use1", "region": "us-east-1", "cluster": "prod", "version": "0",
            "config_digest": "00112233445566778899", "now_ms": 100_000, "members_total": 3,
            "quorum": 2, "ready": true, "rounds": 7, "abstaining": null, "controls": [],
            "members": [], "rejected": {}, "last_rejection": null,
            "checks": [{
                "id": "db-lag", "kind": "replication_lag", "decision": "healthy",
                "basis": "decided", "since_ms": 50_000, "transitions": 0, "pending_rounds": 0,
                "tally": null,
                "observations": {
                    "use1": { "status": "healthy", "reason": "ok", "latency_ms": 3,
                              "observed_at_ms": 99_000, "lag_ms": 1_200, "detail": "", "live": true },
                    "usw2": { "status": "unhealthy", "reason": "lag", "latency_ms": 3,
                              "observed_at_ms": 66_000, "lag_ms": 185_000, "detail": "", "live": false }
                }
            }]
        });
        let status = serde_json::from_value(doc).unwrap();
        let text = render_status(&status);
        assert!(text.contains("use1=healthy:ok[lag 1.2s]"), "{text}");
        assert!(
            text.contains("usw2=unhealthy:lag[lag 3m 5s][EXPIRED, observed 34s ago]"),
            "{text}"
        );
    }
}
