//! A probe's metric handles: `quorumgate_probe_duration_seconds{check,kind}`,
//! `quorumgate_probe_total{check,kind,result,reason}` and, for lag probes,
//! `quorumgate_replication_lag_seconds{check}`, all in the hand-rendered per-check registry
//! (`telemetry::checks`).

use std::sync::Mutex;

use config::probe::ProbeSpec;
use quorum::Reason;

use super::ScheduledProbe;
use crate::probe::ProbeOutcome;
use crate::telemetry::checks::{self, Counter, Gauge, Histogram};

/// Metric handles of one probe, registered once (a registry lookup per result would cost more
/// than the increment).
pub(super) struct ProbeMetrics {
    check: String,
    kind: &'static str,
    duration: Histogram,
    /// `quorumgate_replication_lag_seconds{check}`, for probes that measure lag.
    lag: Option<Gauge>,
    /// `(healthy, reason)` → counter; a handful of entries per probe.
    totals: Mutex<Vec<(bool, Reason, Counter)>>,
}

impl ProbeMetrics {
    pub(super) fn new(probe: &ScheduledProbe) -> Self {
        let registry = checks::global();
        let check = probe.key.to_string();
        let kind = probe.spec.kind();
        let duration = registry.probe_duration(&check, kind);
        let lag = matches!(probe.spec, ProbeSpec::ReplicationLag(_))
            .then(|| registry.replication_lag(&check));
        Self {
            check,
            kind,
            duration,
            lag,
            totals: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn record(&self, outcome: &ProbeOutcome) {
        self.duration.record(outcome.latency);
        if let (Some(gauge), Some(lag_ms)) = (&self.lag, outcome.lag_ms) {
            // Lags are far below 2^53 ms, where an f64 stops being exact.
            #[allow(clippy::cast_precision_loss)]
            gauge.set(lag_ms as f64 / 1000.0);
        }
        // Nothing in the list can be left inconsistent by a panic; keep using it.
        let mut totals = self
            .totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, counter)) = totals
            .iter()
            .find(|(h, r, _)| *h == outcome.healthy && *r == outcome.reason)
        {
            counter.increment(1);
            return;
        }
        let counter = checks::global().probe_total(
            &self.check,
            self.kind,
            outcome.healthy,
            outcome.reason.as_str(),
        );
        counter.increment(1);
        totals.push((outcome.healthy, outcome.reason.clone(), counter));
    }
}
