//! Logs (tracing) and metrics (Prometheus) set-up, and the metric names in one place.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const BALLOTS_ACCEPTED: &str = "quorumgate_ballots_accepted_total";
pub const BALLOTS_REJECTED: &str = "quorumgate_ballots_rejected_total";
pub const DECISION: &str = "quorumgate_decision";
pub const VERDICT: &str = "quorumgate_verdict";
pub const TRANSITIONS: &str = "quorumgate_transitions_total";
pub const ROUNDS: &str = "quorumgate_rounds_total";
pub const ABSTAINING: &str = "quorumgate_abstaining";
pub const PEER_PUSH: &str = "quorumgate_peer_push_total";
pub const PEER_PULL: &str = "quorumgate_peer_pull_total";
pub const AUDIT_ERRORS: &str = "quorumgate_audit_errors_total";
pub const BUILD_INFO: &str = "quorumgate_build_info";
pub const REPLICATION_LAG: &str = "quorumgate_replication_lag_seconds";

/// Installs the Prometheus recorder for this process and describes our metrics.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])?
        .install_recorder()?;
    metrics::describe_counter!(BALLOTS_ACCEPTED, "Ballots accepted, by issuing member");
    metrics::describe_counter!(BALLOTS_REJECTED, "Ballots rejected on receipt, by reason");
    metrics::describe_gauge!(DECISION, "Decided state per check: 1 healthy, 0 unhealthy");
    metrics::describe_gauge!(
        VERDICT,
        "Last tally per check: 1 for the current outcome label, 0 otherwise"
    );
    metrics::describe_counter!(TRANSITIONS, "Decision transitions, by check and new state");
    metrics::describe_counter!(ROUNDS, "Ballot rounds issued by this agent");
    metrics::describe_gauge!(
        ABSTAINING,
        "1 while this agent withholds Unhealthy votes (control probes failed or overrun)"
    );
    metrics::describe_counter!(PEER_PUSH, "Ballot pushes to peers, by peer and result");
    metrics::describe_counter!(
        PEER_PULL,
        "Ballot catch-up pulls from peers, by peer and result"
    );
    metrics::describe_counter!(AUDIT_ERRORS, "Audit records that could not be persisted");
    metrics::describe_gauge!(
        REPLICATION_LAG,
        "Replication lag measured by this agent's replication_lag probe (now - newest heartbeat), by check"
    );
    Ok(handle)
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
