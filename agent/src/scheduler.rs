//! Runs every probe on its own fixed-rate schedule and reports each result.
//!
//! - **Jitter:** each probe starts at a seeded offset within its interval ([`start_offset`]), so
//!   a thousand checks with one interval don't fire at once, and a given seed always spreads them
//!   the same way.
//! - **No drift:** ticks are `start + k × interval` (tokio `interval_at`), not "interval after the
//!   previous run ended".
//! - **Bounded:** at most `concurrency` probes run at once (a semaphore); each is bounded by its
//!   timeout, measured from its own start, so a timeout is always a full-length measurement.
//! - **A run never races the next one:** a tick that finds the check's previous run still going
//!   (a hung target with a timeout close to the interval) is not lost and not an agent problem:
//!   the next run starts as soon as the previous one ends, and the delay is that check's own
//!   lateness ([`ProbeReport::late`]).
//! - **Lateness** ([`ProbeReport::late`]): a run that starts more than
//!   [`START_BUDGET_DIVISOR`]⁻¹ of its interval after its tick. It is counted
//!   (`quorumgate_probe_overruns_total`) and stays with its check; the node decides what it does
//!   to that check's vote.
//! - **Starvation** ([`Overruns::last_starved_at`]): late starts *across many probes* — at least
//!   [`STARVED_MIN_LATE`] and at least 1/[`STARVED_FRACTION`] of the runs that started in the
//!   last [`STARVED_WINDOW`], not counting a check delayed by its own previous run — mean the
//!   runtime or the probe slots cannot keep up: the agent itself is sick, and it abstains on
//!   every check for a while.
//!
//! One task per probe; a probe's run is polled by its own task (no task per run). Probe results
//! go to an `mpsc` channel; a full channel holds the probe back, which shows as lateness.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// A probe must start within `interval / START_BUDGET_DIVISOR` of its tick, or it is late.
pub const START_BUDGET_DIVISOR: u32 = 4;
/// Late starts in [`STARVED_WINDOW`] needed (at the least) to call the agent starved.
pub const STARVED_MIN_LATE: u32 = 3;
/// ... and the share of that window's starts they must be, as 1/N.
pub const STARVED_FRACTION: u32 = 10;
/// The window over which starvation is judged.
pub const STARVED_WINDOW: Duration = Duration::from_secs(2);

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
/// ensures it); a run that still outlasts its interval delays that probe's next run.
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
    /// This run started more than its start budget after its tick: no probe slot was free, the
    /// runtime fired the tick late, or the check's own previous run was still going.
    pub late: bool,
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

/// Starts and late starts in the last [`STARVED_WINDOW`], in buckets of a tenth of it.
#[derive(Debug, Default)]
struct StartWindow {
    /// `(bucket start, starts, late starts)`, oldest first.
    buckets: VecDeque<(Instant, u32, u32)>,
}

impl StartWindow {
    const BUCKET: Duration = Duration::from_millis(200);

    /// Counts one start; returns whether the window now shows starvation.
    fn record(&mut self, now: Instant, late: bool) -> bool {
        while self
            .buckets
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) >= STARVED_WINDOW)
        {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some((at, starts, lates)) if now.saturating_duration_since(*at) < Self::BUCKET => {
                *starts += 1;
                *lates += u32::from(late);
            }
            _ => self.buckets.push_back((now, 1, u32::from(late))),
        }
        let (starts, lates) = self
            .buckets
            .iter()
            .fold((0u32, 0u32), |(s, l), (_, bs, bl)| (s + bs, l + bl));
        late && lates >= STARVED_MIN_LATE && lates.saturating_mul(STARVED_FRACTION) >= starts
    }
}

#[derive(Debug, Default)]
struct OverrunStats {
    total: AtomicU64,
    /// `UnixMillis` of the last late start; 0 = never.
    last_ms: AtomicU64,
    /// `UnixMillis` of the last time the window showed starvation; 0 = never.
    starved_ms: AtomicU64,
    window: Mutex<StartWindow>,
}

/// Read-only view of a scheduler's late starts and starvation; cheap to clone.
#[derive(Debug, Clone)]
pub struct Overruns(Arc<OverrunStats>);

impl Overruns {
    /// Late starts since start.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }

    /// When the last late start happened, by the agent's clock.
    #[must_use]
    pub fn last_at(&self) -> Option<UnixMillis> {
        millis(self.0.last_ms.load(Ordering::Relaxed))
    }

    /// When late starts across many probes last showed a starved agent, by its clock.
    #[must_use]
    pub fn last_starved_at(&self) -> Option<UnixMillis> {
        millis(self.0.starved_ms.load(Ordering::Relaxed))
    }
}

fn millis(ms: u64) -> Option<UnixMillis> {
    (ms != 0).then_some(UnixMillis(ms))
}

/// Controls a running scheduler.
#[derive(Debug)]
pub struct SchedulerHandle {
    stats: Arc<OverrunStats>,
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Late starts since start.
    #[must_use]
    pub fn overruns_total(&self) -> u64 {
        self.overruns().total()
    }

    /// When the last late start happened, by the agent's clock.
    #[must_use]
    pub fn last_overrun_at(&self) -> Option<UnixMillis> {
        self.overruns().last_at()
    }

    /// When the scheduler last saw starvation (see the module docs).
    #[must_use]
    pub fn last_starved_at(&self) -> Option<UnixMillis> {
        self.overruns().last_starved_at()
    }

    /// A cloneable view of the lateness counters, for whoever decides to abstain while this
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
    /// Counts one start. `own_delay` is the part of the delay caused by this check's own
    /// previous run; it makes the run late for its check but is no sign of a starved agent.
    fn record_start(&self, key: &ProbeKey, delay: Duration, own_delay: Duration, budget: Duration) {
        let late = delay > budget;
        let starving = delay.saturating_sub(own_delay) > budget;
        let now = self.clock.now();
        // Nothing in the window can be left inconsistent by a panic; keep using it.
        let starved = self
            .stats
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(Instant::now(), starving);
        if starved {
            self.stats.starved_ms.store(now.0.max(1), Ordering::Relaxed);
        }
        if late {
            self.stats.total.fetch_add(1, Ordering::Relaxed);
            self.stats.last_ms.store(now.0.max(1), Ordering::Relaxed);
            self.overruns_metric.increment(1);
            tracing::debug!(probe = %key, delay_ms = delay.as_millis() as u64, own_ms = own_delay.as_millis() as u64, "probe started late");
        }
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

/// When a run was due, and how much of its delay its own check caused.
#[derive(Clone, Copy)]
struct Due {
    tick: Instant,
    /// The previous run of this check was still going at `tick`: it ended at this instant.
    own_until: Option<Instant>,
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
    // A run that outlasts a tick makes the next run start when it ends (below); a tick missed
    // beyond that one (the runtime stalled for whole intervals) is not made up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);

    // A tick that arrived while the previous run was still going: the run it is owed.
    let mut owed: Option<Instant> = None;
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
                if let Some(tick) = owed.take() {
                    let due = Due { tick, own_until: Some(Instant::now()) };
                    in_flight.set(Some(Box::pin(run_once(&probe, &shared, &metrics, due, budget))));
                }
            }
            tick = ticker.tick() => {
                if in_flight.is_some() {
                    // Keep the earliest owed tick; a second one in one run is skipped.
                    owed.get_or_insert(tick);
                    continue;
                }
                // Boxed: a run's future is as large as the largest probe kind's (several KB);
                // inline, every idle probe task would hold that much for its whole life.
                let due = Due { tick, own_until: None };
                in_flight.set(Some(Box::pin(run_once(&probe, &shared, &metrics, due, budget))));
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
    due: Due,
    budget: Duration,
) -> Flow {
    // The semaphore is never closed.
    let Ok(_permit) = shared.permits.acquire().await else {
        return Flow::Stop;
    };
    let started = Instant::now();
    let own_delay = due
        .own_until
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(due.tick));
    let delay = started.saturating_duration_since(due.tick);
    shared.record_start(&probe.key, delay, own_delay, budget);

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
    let report = ProbeReport {
        key: probe.key.clone(),
        outcome,
        observed_at: shared.clock.now(),
        late: delay > budget,
    };
    match shared.tx.send(report).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Stop,
    }
}

#[cfg(test)]
mod tests;
