//! Route 53's health checkers: for every enabled endpoint check, `checkers_per_region` tasks per
//! region, each polling on its own (random initial phase, nothing coordinated) every
//! RequestInterval × time scale, from its region's source address, and keeping its view
//! (FailureThreshold applied) and its latest observation. One poll: [`super::probe`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::model::HealthCheck;
use super::probe::{poll, PollOutcome, Prober, Resolve};
use super::rules::{self, CheckerView};
use super::Rng;

/// One checker's latest poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// When the poll started: ms since the emulator started (monotonic).
    pub at_ms: u64,
    /// How long ago the poll started, when this was read.
    pub age_ms: u64,
    /// Whether this poll succeeded.
    pub ok: bool,
    /// The HTTP status, if one arrived.
    pub status: Option<u16>,
    pub latency_ms: f64,
    /// Why it failed (`None` when `ok`).
    pub error: Option<String>,
    /// How many polls in a row had this outcome.
    pub consecutive: u32,
    /// The checker's status after this poll (FailureThreshold applied).
    pub healthy: bool,
}

/// One checker as the status page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckerStatus {
    pub region: String,
    /// Which of the region's checkers (0-based).
    pub index: usize,
    pub source: IpAddr,
    pub healthy: bool,
    pub polls: u64,
    pub last: Option<Observation>,
}

#[derive(Debug)]
struct CheckerState {
    view: CheckerView,
    polls: u64,
    last: Option<(Instant, Observation)>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One running checker's shared state.
#[derive(Debug)]
pub struct Checker {
    region: String,
    index: usize,
    source: IpAddr,
    state: Mutex<CheckerState>,
}

impl Checker {
    fn lock(&self) -> std::sync::MutexGuard<'_, CheckerState> {
        // Plain data, no invariant a panicking holder could break.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[must_use]
    pub fn healthy(&self) -> bool {
        self.lock().view.healthy
    }

    #[must_use]
    pub fn status(&self) -> CheckerStatus {
        let s = self.lock();
        CheckerStatus {
            region: self.region.clone(),
            index: self.index,
            source: self.source,
            healthy: s.view.healthy,
            polls: s.polls,
            last: s.last.as_ref().map(|(at, o)| Observation {
                age_ms: millis(at.elapsed()),
                ..o.clone()
            }),
        }
    }

    fn record(
        &self,
        epoch: Instant,
        started: Instant,
        outcome: PollOutcome,
        failure_threshold: u32,
    ) {
        let mut s = self.lock();
        s.view = rules::checker_step(s.view, outcome.ok, failure_threshold);
        s.polls += 1;
        let observation = Observation {
            at_ms: millis(started.saturating_duration_since(epoch)),
            age_ms: 0,
            ok: outcome.ok,
            status: outcome.status,
            latency_ms: outcome.latency.as_secs_f64() * 1000.0,
            error: outcome.error,
            consecutive: s.view.streak,
            healthy: s.view.healthy,
        };
        s.last = Some((started, observation));
    }
}

/// What the checkers of every check share.
#[derive(Debug, Clone)]
pub struct CheckerConfig {
    pub prober: Prober,
    pub checkers_per_region: usize,
    pub source_for_region: BTreeMap<String, IpAddr>,
    /// Observation times count from here.
    pub epoch: Instant,
}

impl CheckerConfig {
    pub fn new(
        time_scale: f64,
        checkers_per_region: usize,
        source_for_region: BTreeMap<String, IpAddr>,
        resolve: Resolve,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            prober: Prober::new(time_scale, resolve)?,
            checkers_per_region: checkers_per_region.max(1),
            source_for_region,
            epoch: Instant::now(),
        })
    }

    fn source(&self, region: &str) -> IpAddr {
        self.source_for_region
            .get(region)
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

/// The checkers of one health check; dropping it stops them.
#[derive(Debug)]
pub struct CheckRunner {
    /// The check as it was when the checkers started (a change restarts them).
    pub check: HealthCheck,
    pub checkers: Vec<Arc<Checker>>,
    tasks: Vec<AbortHandle>,
}

impl Drop for CheckRunner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl CheckRunner {
    /// Starts the checkers of `check` (an enabled endpoint check), each after a random phase
    /// within one interval drawn from `rng`.
    pub fn start(check: &HealthCheck, config: &CheckerConfig, rng: &mut Rng) -> Self {
        let interval = Duration::from_secs(u64::from(check.request_interval_s.max(1)))
            .mul_f64(config.prober.time_scale.max(0.0))
            .max(Duration::from_millis(10));
        let spec = Arc::new(check.clone());
        let mut checkers = Vec::new();
        let mut tasks = Vec::new();
        for region in check.effective_regions() {
            for index in 0..config.checkers_per_region {
                let checker = Arc::new(Checker {
                    region: region.clone(),
                    index,
                    source: config.source(&region),
                    state: Mutex::new(CheckerState {
                        view: CheckerView::default(),
                        polls: 0,
                        last: None,
                    }),
                });
                let phase = interval.mul_f64(rng.next_f64());
                let task = tokio::spawn(run(
                    Arc::clone(&checker),
                    Arc::clone(&spec),
                    config.clone(),
                    phase,
                    interval,
                ));
                tasks.push(task.abort_handle());
                checkers.push(checker);
            }
        }
        Self {
            check: check.clone(),
            checkers,
            tasks,
        }
    }

    /// Whether the running checkers still probe what `check` describes (the fields that only
    /// matter to evaluation, Inverted and the calculated ones, do not count).
    #[must_use]
    pub fn probes_same(&self, check: &HealthCheck) -> bool {
        let strip = |c: &HealthCheck| HealthCheck {
            inverted: false,
            children: Vec::new(),
            health_threshold: 0,
            ..c.clone()
        };
        strip(&self.check) == strip(check)
    }

    /// Each checker's current status (FailureThreshold applied).
    #[must_use]
    pub fn views(&self) -> Vec<bool> {
        self.checkers.iter().map(|c| c.healthy()).collect()
    }
}

async fn run(
    checker: Arc<Checker>,
    check: Arc<HealthCheck>,
    config: CheckerConfig,
    phase: Duration,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + phase, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let outcome = poll(&check, &config.prober, checker.source).await;
        checker.record(config.epoch, started, outcome, check.failure_threshold);
    }
}
