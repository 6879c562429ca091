//! Runs every probe on its own fixed-rate schedule and reports each result.
//!
//! - **Jitter:** each probe starts at a seeded offset within its interval ([`start_offset`]), so
//!   a thousand checks with one interval don't fire at once, and a given seed always spreads them
//!   the same way.
//! - **No drift:** ticks are `start + k × interval` (tokio `interval_at`, missed ticks skipped), not
//!   "interval after the previous run ended".
//! - **Bounded:** at most `concurrency` probes run at once (a semaphore); each is bounded by its
//!   timeout.
//! - **Overruns** feed abstention: a probe whose previous run is still going at its next tick, a
//!   probe that cannot start within [`START_BUDGET_DIVISOR`]⁻¹ of its interval after its tick
//!   (the concurrency limit is saturated, or the loop stalled and the tick fired late) is an
//!   overrun. It is counted ([`SchedulerHandle::overruns_total`], `quorumgate_probe_overruns_total`),
//!   timestamped ([`SchedulerHandle::last_overrun_at`]) and flagged on that probe's next report.
//!
//! One task per probe; a probe's run is polled by its own task (no task per run). Probe results
//! go to an `mpsc` channel; a full channel holds the probe back, which shows as an overrun.

use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use config::probe::ProbeSpec;
use metrics::Counter;
use quorum::{CheckId, UnixMillis};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::probe::{ProbeOutcome, Prober};

mod probe_metrics;
use probe_metrics::ProbeMetrics;

/// A probe must start within `interval / START_BUDGET_DIVISOR` of its tick, or it is an overrun.
pub const START_BUDGET_DIVISOR: u32 = 4;

/// Which probe a report belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKey {
    /// A configured check: its result becomes this agent's vote.
    Check(CheckId),
    /// A control probe (local health awareness): its failure makes the agent abstain.
    Control(String),
}

impl fmt::Display for ProbeKey {
    /// The metric label: the check id, or `control:<id>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeKey::Check(id) => f.write_str(id.as_str()),
            ProbeKey::Control(id) => write!(f, "control:{id}"),
        }
    }
}

/// One probe and its schedule. `timeout` should be below `interval` (the config validator
/// ensures it); a run that outlasts its interval is an overrun.
#[derive(Debug, Clone)]
pub struct ScheduledProbe {
    pub key: ProbeKey,
    pub spec: ProbeSpec,
    pub interval: Duration,
    pub timeout: Duration,
}

/// One result.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub key: ProbeKey,
    pub outcome: ProbeOutcome,
    /// When the probe finished, by the agent's clock.
    pub observed_at: UnixMillis,
    /// This run started late, or a tick of this probe was skipped since its previous report.
    pub overrun: bool,
}

/// What the scheduler runs: [`Prober`] in production, fakes in tests.
pub trait ProbeRunner: Send + Sync + 'static {
    fn run(&self, spec: &ProbeSpec, timeout: Duration)
        -> impl Future<Output = ProbeOutcome> + Send;
}

impl ProbeRunner for Prober {
    fn run(
        &self,
        spec: &ProbeSpec,
        timeout: Duration,
    ) -> impl Future<Output = ProbeOutcome> + Send {
        self.probe(spec, timeout)
    }
}

/// The probe's start offset within its interval: SplitMix64 of the seed and the key, so the same
/// seed always gives the same spread and different keys spread evenly.
#[must_use]
pub fn start_offset(seed: u64, key: &ProbeKey, interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    // FNV-1a of the label; labels are unique per key (check ids cannot contain ':').
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_nanos(splitmix64(seed ^ h) % nanos)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Default)]
struct OverrunStats {
    total: AtomicU64,
    /// `UnixMillis` of the last overrun; 0 = never.
    last_ms: AtomicU64,
}

/// Read-only view of a scheduler's overruns; cheap to clone.
#[derive(Debug, Clone)]
pub struct Overruns(Arc<OverrunStats>);

impl Overruns {
    /// Overruns since start.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }

    /// When the last overrun happened, by the agent's clock.
    #[must_use]
    pub fn last_at(&self) -> Option<UnixMillis> {
        match self.0.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UnixMillis(ms)),
        }
    }
}

/// Controls a running scheduler.
#[derive(Debug)]
pub struct SchedulerHandle {
    stats: Arc<OverrunStats>,
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Overruns since start.
    #[must_use]
    pub fn overruns_total(&self) -> u64 {
        self.overruns().total()
    }

    /// When the last overrun happened, by the agent's clock.
    #[must_use]
    pub fn last_overrun_at(&self) -> Option<UnixMillis> {
        self.overruns().last_at()
    }

    /// A cloneable view of the overrun counters, for whoever decides to abstain while this
    /// handle is kept for [`join`](Self::join).
    #[must_use]
    pub fn overruns(&self) -> Overruns {
        Overruns(Arc::clone(&self.stats))
    }

    /// Stops every probe (in-flight runs are cancelled). The caller's token is not cancelled.
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// Waits until every probe loop has ended: after [`shutdown`](Self::shutdown), after the
    /// caller's token is cancelled, or once the report receiver is dropped.
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Shared<R> {
    runner: Arc<R>,
    clock: SharedClock,
    permits: Semaphore,
    tx: mpsc::Sender<ProbeReport>,
    seed: u64,
    stats: Arc<OverrunStats>,
    overruns_metric: Counter,
}

impl<R> Shared<R> {
    fn record_overrun(&self, key: &ProbeKey, why: &'static str) {
        let now = self.clock.now();
        self.stats.total.fetch_add(1, Ordering::Relaxed);
        self.stats.last_ms.store(now.0.max(1), Ordering::Relaxed);
        self.overruns_metric.increment(1);
        tracing::debug!(probe = %key, why, "probe overrun");
    }
}

/// Starts one task per probe. Reports go to `tx`; every loop ends when `shutdown` (or
/// [`SchedulerHandle::shutdown`]) is cancelled or `tx`'s receiver is dropped.
///
/// Metric handles are registered here: install the metrics recorder before calling this.
pub fn spawn<R: ProbeRunner>(
    probes: Vec<ScheduledProbe>,
    prober: Arc<R>,
    clock: SharedClock,
    concurrency: usize,
    seed: u64,
    tx: mpsc::Sender<ProbeReport>,
    shutdown: CancellationToken,
) -> SchedulerHandle {
    let stats = Arc::new(OverrunStats::default());
    let token = shutdown.child_token();
    let shared = Arc::new(Shared {
        runner: prober,
        clock,
        permits: Semaphore::new(concurrency.max(1)),
        tx,
        seed,
        stats: Arc::clone(&stats),
        overruns_metric: metrics::counter!("quorumgate_probe_overruns_total"),
    });
    let tasks = probes
        .into_iter()
        .map(|probe| tokio::spawn(probe_loop(probe, Arc::clone(&shared), token.clone())))
        .collect();
    SchedulerHandle {
        stats,
        token,
        tasks,
    }
}

enum Flow {
    Continue,
    Stop,
}

async fn probe_loop<R: ProbeRunner>(
    probe: ScheduledProbe,
    shared: Arc<Shared<R>>,
    token: CancellationToken,
) {
    // `interval_at` panics on a zero period; the validator never allows one.
    let interval = probe.interval.max(Duration::from_millis(1));
    let budget = interval / START_BUDGET_DIVISOR;
    let metrics = ProbeMetrics::new(&probe);
    let first = Instant::now() + start_offset(shared.seed, &probe.key, interval);
    let mut ticker = tokio::time::interval_at(first, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);

    // A tick was skipped (the run was still going) since this probe's last report.
    let skipped = AtomicBool::new(false);
    let mut in_flight = pin!(None);
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            flow = poll_opt(in_flight.as_mut()), if in_flight.is_some() => {
                in_flight.set(None);
                if let Flow::Stop = flow {
                    return;
                }
            }
            scheduled = ticker.tick() => {
                if in_flight.is_some() {
                    shared.record_overrun(&probe.key, "still_running");
                    skipped.store(true, Ordering::Relaxed);
                    continue;
                }
                let late = Instant::now().saturating_duration_since(scheduled) > budget;
                if late {
                    shared.record_overrun(&probe.key, "late_tick");
                }
                // Boxed: a run's future is as large as the largest probe kind's (several KB);
                // inline, every idle probe task would hold that much for its whole life.
                in_flight.set(Some(Box::pin(run_once(&probe, &shared, &metrics, &skipped, scheduled + budget, late))));
            }
        }
    }
}

async fn poll_opt<F: Future>(fut: Pin<&mut Option<F>>) -> F::Output {
    match fut.as_pin_mut() {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

async fn run_once<R: ProbeRunner>(
    probe: &ScheduledProbe,
    shared: &Shared<R>,
    metrics: &ProbeMetrics,
    skipped: &AtomicBool,
    start_by: Instant,
    mut overrun: bool,
) -> Flow {
    let permit = if overrun {
        shared.permits.acquire().await
    } else {
        match tokio::time::timeout_at(start_by, shared.permits.acquire()).await {
            Ok(permit) => permit,
            Err(_) => {
                shared.record_overrun(&probe.key, "saturated");
                overrun = true;
                shared.permits.acquire().await
            }
        }
    };
    // The semaphore is never closed.
    let Ok(_permit) = permit else {
        return Flow::Stop;
    };

    // Each probe kind keeps its own deadline; this outer bound (10% grace) only guards against
    // one that doesn't.
    let guard = probe.timeout + probe.timeout / 10;
    let outcome =
        match tokio::time::timeout(guard, shared.runner.run(&probe.spec, probe.timeout)).await {
            Ok(outcome) => outcome,
            Err(_) => ProbeOutcome::unhealthy("timeout", guard, "probe exceeded its timeout"),
        };
    drop(_permit);
    metrics.record(&outcome);
    // Flag this report if the run outlasted a tick (or a tick was skipped before it started).
    overrun |= skipped.swap(false, Ordering::Relaxed);
    let report = ProbeReport {
        key: probe.key.clone(),
        outcome,
        observed_at: shared.clock.now(),
        overrun,
    };
    match shared.tx.send(report).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Stop,
    }
}

#[cfg(test)]
mod tests;
