//! Logs (tracing) and metrics (Prometheus) set-up, and the metric names in one place.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub mod checks;

pub use checks::{DECISION, PROBE_DURATION, PROBE_TOTAL, REPLICATION_LAG, TRANSITIONS, VERDICT};

pub const BALLOTS_ACCEPTED: &str = "quorumgate_ballots_accepted_total";
pub const BALLOTS_REJECTED: &str = "quorumgate_ballots_rejected_total";
pub const ROUNDS: &str = "quorumgate_rounds_total";
pub const ABSTAINING: &str = "quorumgate_abstaining";
pub const PEER_PUSH: &str = "quorumgate_peer_push_total";
pub const PEER_PULL: &str = "quorumgate_peer_pull_total";
pub const AUDIT_ERRORS: &str = "quorumgate_audit_errors_total";
/// Seq of the last signed checkpoint in this agent's audit log.
pub const AUDIT_CHECKPOINT_SEQ: &str = "quorumgate_audit_checkpoint_seq";
pub const DECISIONS_WRITE_ERRORS: &str = "quorumgate_decisions_write_errors_total";
pub const BUILD_INFO: &str = "quorumgate_build_info";
pub const GATE_CHANGES: &str = "quorumgate_gate_changes_total";
pub const GATE_HOLD: &str = "quorumgate_gate_hold";
pub const GATE_ALERT: &str = "quorumgate_gate_alert";
pub const GATE_EPOCH: &str = "quorumgate_gate_fence_epoch";
pub const OPERATOR_COMMANDS: &str = "quorumgate_operator_commands_total";
pub const GATE_PROMOTIONS: &str = "quorumgate_gate_promotions_total";
pub const HTTP_REJECTED: &str = "quorumgate_http_rejected_total";
pub const ABSTENTIONS: &str = "quorumgate_abstentions_total";
pub const EARLY_BALLOTS: &str = "quorumgate_early_ballots_total";
pub const LOCAL_RESOURCE_ERRORS: &str = "quorumgate_local_resource_errors_total";
/// Every reason this agent abstains for, pre-registered at zero so `increase()` sees the first.
pub const ABSTAIN_REASONS: [&str; 6] = [
    "no_data",
    "stale",
    "control_failed",
    "starved",
    "local_resource",
    "overrun",
];
pub const HTTP_MAX_CONNECTIONS: &str = "quorumgate_http_max_connections";
pub const PROBE_OVERRUNS: &str = "quorumgate_probe_overruns_total";
pub const PERSIST_PENDING: &str = "quorumgate_persist_pending";
pub const HTTP_BODY_BYTES: &str = "quorumgate_http_body_bytes_reserved";

/// Installs the Prometheus recorder for this process and describes our metrics.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        // No histogram goes through the exporter today; any that does later gets the same
        // buckets as the probe durations.
        .set_buckets(&checks::DURATION_BUCKETS)?
        .install_recorder()?;
    metrics::describe_counter!(BALLOTS_ACCEPTED, "Ballots accepted, by issuing member");
    metrics::describe_counter!(
        GATE_CHANGES,
        "Gate changes decided, by gate, mode (live, dry-run) and result (applied, \
         already_in_place, stale, lost_race, dry_run, unavailable, …)"
    );
    metrics::describe_gauge!(
        GATE_HOLD,
        "1 for the reason a gate currently holds (no_change, fail_open, frozen, velocity, …)"
    );
    metrics::describe_gauge!(
        GATE_ALERT,
        "1 while a gate cannot do what the decisions ask (fail_open, min_serving, awaiting \
         approval, unknown check): page someone"
    );
    metrics::describe_gauge!(GATE_EPOCH, "The gate's fence epoch as last read or written");
    metrics::describe_counter!(
        OPERATOR_COMMANDS,
        "Signed operator commands received, by result (accepted, duplicate, or the rejection reason)"
    );
    metrics::describe_counter!(
        GATE_PROMOTIONS,
        "Database promotions run by a gate's failover, by result (started, already_done, error)"
    );
    metrics::describe_counter!(
        HTTP_REJECTED,
        "Connections and requests cut off by the HTTP server's limits, by listener (full, \
         health) and reason (connection_limit, heavy_source, shed_idle, accept_no_fd, \
         accept_error, header_timeout, header_too_large, tls_timeout, body_timeout, too_large, \
         body_budget, lifetime)"
    );
    metrics::describe_gauge!(
        HTTP_MAX_CONNECTIONS,
        "Most connections a listener holds at once (full, health): its share of the \
         descriptor limit after the probes' and peers' reserve"
    );
    crate::route53::describe_metrics();
    crate::drill::describe_metrics();
    metrics::describe_counter!(BALLOTS_REJECTED, "Ballots rejected on receipt, by reason");
    metrics::describe_counter!(ROUNDS, "Ballot rounds issued by this agent");
    metrics::describe_gauge!(
        ABSTAINING,
        "1 while this agent withholds Unhealthy votes on every check (control probes failed, \
         starved, out of a local resource)"
    );
    metrics::describe_counter!(
        ABSTENTIONS,
        "Abstaining votes this agent cast, summed over its ballots, by reason (no_data, stale, \
         control_failed, starved, local_resource, overrun)"
    );
    metrics::describe_counter!(
        LOCAL_RESOURCE_ERRORS,
        "Probe or peer calls that failed for lack of a local resource (descriptors, buffers, \
         memory, ephemeral ports); each makes the agent abstain"
    );
    metrics::describe_counter!(
        EARLY_BALLOTS,
        "Ballots issued between rounds because a probe result changed this agent's vote"
    );
    for reason in ABSTAIN_REASONS {
        metrics::counter!(ABSTENTIONS, "reason" => reason).increment(0);
    }
    metrics::counter!(LOCAL_RESOURCE_ERRORS).increment(0);
    metrics::describe_counter!(PEER_PUSH, "Ballot pushes to peers, by peer and result");
    metrics::describe_counter!(
        PEER_PULL,
        "Ballot catch-up pulls from peers, by peer and result"
    );
    metrics::describe_counter!(AUDIT_ERRORS, "Audit records that could not be persisted");
    metrics::describe_gauge!(
        AUDIT_CHECKPOINT_SEQ,
        "Seq of the last signed checkpoint in this agent's audit log"
    );
    metrics::describe_gauge!(
        PERSIST_PENDING,
        "Decision changes (audit records, decisions file) handed to the journal and not yet \
         on disk; a changed answer is served only once its record is written"
    );
    metrics::describe_gauge!(
        HTTP_BODY_BYTES,
        "Request body bytes the HTTP server holds (or has reserved) across all connections, \
         against local.http_body_budget_bytes"
    );
    metrics::describe_counter!(
        DECISIONS_WRITE_ERRORS,
        "Failed writes of the decisions file (restart safety); retried after the next round"
    );
    metrics::describe_gauge!(
        BUILD_INFO,
        "1, labelled with this agent's version and config digest"
    );
    metrics::describe_counter!(
        PROBE_OVERRUNS,
        "Probe runs that overran their interval or could not start on time (feeds abstention)"
    );
    Ok(handle)
}

/// The `result` labels of a live gate change (`GATE_CHANGES`): the outcomes, the Route 53
/// API's error labels (`ApiError::label`) and `error` for every other write failure.
pub const GATE_CHANGE_RESULTS: [&str; 10] = [
    "applied",
    "already_in_place",
    "stale",
    "lost_race",
    "invalid_change_batch",
    "not_found",
    "rejected",
    "unavailable",
    "malformed",
    "error",
];

/// The `result` labels of `GATE_PROMOTIONS`.
pub const PROMOTION_RESULTS: [&str; 3] = ["started", "already_done", "error"];

/// Registers, at 0, every labelled counter the alerts (`deploy/prometheus/alerts.yml`) take an
/// `increase()` or `rate()` of, for every label value this agent can report: a counter that
/// only appears at its first increment shows no increase, so a single forged ballot or failed
/// command would go unnoticed. Label values that depend on the config (peers, gates) come
/// from `cfg`. Call once, after [`install_metrics`].
pub fn init_counters(cfg: &config::Config) {
    for reason in quorum::Rejection::REASONS {
        metrics::counter!(BALLOTS_REJECTED, "reason" => reason).increment(0);
    }
    for result in quorum::operator::CommandRejection::REASONS
        .into_iter()
        .chain(["accepted", "duplicate", "audit_failed"])
    {
        metrics::counter!(OPERATOR_COMMANDS, "result" => result).increment(0);
    }
    for name in [ROUNDS, AUDIT_ERRORS, DECISIONS_WRITE_ERRORS, EARLY_BALLOTS] {
        metrics::counter!(name).increment(0);
    }
    // Request bodies turned away because the bodies in flight fill the byte budget.
    metrics::counter!(HTTP_REJECTED, "listener" => "full", "reason" => "body_budget").increment(0);
    metrics::gauge!(HTTP_BODY_BYTES).set(0.0);
    metrics::gauge!(PERSIST_PENDING).set(0.0);
    // The push alert compares the `ok` rate with the total: `ok` must exist for a peer never
    // reached since start.
    for m in cfg
        .shared
        .members
        .iter()
        .filter(|m| m.id != cfg.local.agent_id)
    {
        metrics::counter!(PEER_PUSH, "peer" => m.id.to_string(), "result" => "ok").increment(0);
    }
    // The Route 53 reachability alert compares the `ok` rate with the total: with a live
    // control-plane gate, the agent's own calls must have an `ok` series from the start.
    let writes =
        cfg.shared.gates.iter().any(|g| {
            g.plane == config::Plane::Control && g.spec.mode() == quorum::gate::Mode::Live
        });
    if writes {
        for op in [
            "ListResourceRecordSets",
            "ChangeResourceRecordSets",
            "GetChange",
        ] {
            metrics::counter!(crate::route53::REQUESTS_TOTAL, "op" => op, "result" => "ok")
                .increment(0);
        }
    }
    for g in &cfg.shared.gates {
        let gate = g.spec.id().to_string();
        if g.plane == config::Plane::Control {
            if g.spec.mode() == quorum::gate::Mode::DryRun {
                metrics::counter!(GATE_CHANGES, "gate" => gate.clone(), "mode" => "dry-run", "result" => "dry_run")
                    .increment(0);
            } else {
                for result in GATE_CHANGE_RESULTS {
                    metrics::counter!(GATE_CHANGES, "gate" => gate.clone(), "mode" => "live", "result" => result)
                        .increment(0);
                }
            }
        }
        if g.promote.is_some() {
            for result in PROMOTION_RESULTS {
                metrics::counter!(GATE_PROMOTIONS, "gate" => gate.clone(), "result" => result)
                    .increment(0);
            }
        }
    }
}

/// The `/metrics` text: the exporter's series, then the per-check ones ([`checks`]), which
/// the exporter does not hold (no name is in both, so every family appears once).
#[must_use]
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    checks::global().render_into(&mut out);
    out
}

/// Log output format.
pub use config::LogFormat;

/// Installs the tracing subscriber (`RUST_LOG` overrides `level`).
pub fn install_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second install (tests, demo) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The shipped example (agent use1; gates: `app` data plane, `api` control weighted,
    /// `orders-db` control failover with a promotion), rendered through a local recorder.
    #[test]
    fn init_counters_registers_every_alerted_series_at_zero() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/quorumgate.example.toml"
        );
        let cfg = config::Config::load(Some(std::path::Path::new(example))).unwrap();
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || init_counters(&cfg));
        let text = handle.render();
        let zero = |series: String| {
            assert!(
                text.lines().any(|l| l == format!("{series} 0")),
                "no {series} 0 in:\n{text}"
            );
        };
        for reason in quorum::Rejection::REASONS {
            zero(format!("{BALLOTS_REJECTED}{{reason=\"{reason}\"}}"));
        }
        for peer in ["usw2", "euc1"] {
            zero(format!("{PEER_PUSH}{{peer=\"{peer}\",result=\"ok\"}}"));
        }
        for gate in ["api", "orders-db"] {
            for result in GATE_CHANGE_RESULTS {
                zero(format!(
                    "{GATE_CHANGES}{{gate=\"{gate}\",mode=\"live\",result=\"{result}\"}}"
                ));
            }
        }
        assert!(
            !text.contains("gate=\"app\""),
            "a data-plane gate writes nothing"
        );
        for result in PROMOTION_RESULTS {
            zero(format!(
                "{GATE_PROMOTIONS}{{gate=\"orders-db\",result=\"{result}\"}}"
            ));
        }
        zero(format!(
            "{}{{op=\"ChangeResourceRecordSets\",result=\"ok\"}}",
            crate::route53::REQUESTS_TOTAL
        ));
        zero(AUDIT_ERRORS.to_owned());
    }
}
