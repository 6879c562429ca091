//! The running emulator's shared state: the current Route 53 state, the checkers of every
//! enabled endpoint check, reading the source and reconciling the checkers with it, and the
//! status and answers computed from both.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, ToSocketAddrs as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};

use super::checker::{CheckRunner, CheckerConfig};
use super::dns::{self, Lookup};
use super::model::{normalize_name, Routing, State};
use super::probe::Resolve;
use super::rules::{self, Statuses};
use super::status::{AnswerStatus, Candidate, CheckStatus, Snapshot};
use super::{source, Options, Rng, Source};

enum Loader {
    Route53(aws_sdk_route53::Client),
    File(std::path::PathBuf),
    Static(State),
}

pub(super) struct Shared {
    loader: Loader,
    state: RwLock<Arc<State>>,
    runners: Mutex<BTreeMap<String, CheckRunner>>,
    rng: Mutex<Rng>,
    config: CheckerConfig,
    refreshes: AtomicU64,
    source_error: Mutex<Option<String>>,
    /// One reload at a time (the refresh loop and `refresh_now`).
    reloading: tokio::sync::Mutex<()>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data, no invariant a panicking holder could break.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn empty_snapshot() -> Snapshot {
    Snapshot {
        checks: BTreeMap::new(),
        answers: Vec::new(),
        refreshes: 0,
        source_error: None,
    }
}

impl Shared {
    pub(super) async fn new(opts: &Options) -> anyhow::Result<Arc<Self>> {
        let loader = match &opts.source {
            Source::Route53 { endpoint } => Loader::Route53(source::route53_client(endpoint).await),
            Source::File(path) => {
                anyhow::ensure!(
                    !path.as_os_str().is_empty(),
                    "Options.source: no state file given (Source::File with an empty path)"
                );
                Loader::File(path.clone())
            }
            Source::Static(state) => Loader::Static(state.clone().normalized()),
        };
        // The checkers resolve FQDNs through the zones: a weak reference set once built.
        let me: Arc<OnceLock<Weak<Self>>> = Arc::new(OnceLock::new());
        let resolve: Resolve = {
            let me = Arc::clone(&me);
            Arc::new(move |fqdn: &str| me.get()?.upgrade()?.resolve(fqdn))
        };
        let config = CheckerConfig::new(
            opts.time_scale,
            opts.checkers_per_region,
            opts.source_for_region.clone(),
            resolve,
        )?;
        let shared = Arc::new(Self {
            loader,
            state: RwLock::new(Arc::new(State::default())),
            runners: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(Rng::new(opts.seed)),
            config,
            refreshes: AtomicU64::new(0),
            source_error: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            stopped: AtomicBool::new(false),
        });
        let _ = me.set(Arc::downgrade(&shared));
        Ok(shared)
    }

    fn current(&self) -> Arc<State> {
        Arc::clone(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the source and applies it; a failure keeps the previous state.
    pub(super) async fn reload(&self) -> anyhow::Result<()> {
        let _one = self.reloading.lock().await;
        let loaded = match &self.loader {
            Loader::Route53(client) => source::load_route53(client).await,
            Loader::File(path) => source::load_file(path).await,
            Loader::Static(state) => Ok(state.clone()),
        };
        match loaded {
            Ok(state) => {
                self.apply(state);
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                *lock(&self.source_error) = None;
                Ok(())
            }
            Err(e) => {
                *lock(&self.source_error) = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Makes `state` current and the checkers match it: a check that is new, changed in what
    /// its checkers probe, or enabled again gets new checkers (healthy until they have data);
    /// a check deleted or disabled loses them.
    fn apply(&self, state: State) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut runners = lock(&self.runners);
        let wanted: BTreeSet<&str> = state
            .health_checks
            .iter()
            .filter(|h| h.kind.is_endpoint() && !h.disabled)
            .map(|h| h.id.as_str())
            .collect();
        runners.retain(|id, _| wanted.contains(id.as_str()));
        let mut rng = lock(&self.rng);
        for hc in &state.health_checks {
            if !wanted.contains(hc.id.as_str()) {
                continue;
            }
            if runners.get(&hc.id).is_some_and(|r| r.probes_same(hc)) {
                if let Some(r) = runners.get_mut(&hc.id) {
                    r.check = hc.clone();
                }
                continue;
            }
            runners.insert(
                hc.id.clone(),
                CheckRunner::start(hc, &self.config, &mut rng),
            );
        }
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
    }

    pub(super) fn stop_checkers(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        lock(&self.runners).clear();
    }

    /// The current state and every check's status.
    pub(super) fn statuses(&self) -> (Arc<State>, Statuses) {
        let state = self.current();
        let views: BTreeMap<String, Vec<bool>> = lock(&self.runners)
            .iter()
            .map(|(id, r)| (id.clone(), r.views()))
            .collect();
        let statuses = rules::evaluate(&state, &views);
        (state, statuses)
    }

    /// What a query for normalized `name` and uppercase `rtype` answers now.
    pub(super) fn lookup(&self, name: &str, rtype: &str) -> Lookup {
        let (state, statuses) = self.statuses();
        let random = lock(&self.rng).next_f64();
        dns::lookup(&state, &statuses, name, rtype, random)
    }

    /// An FQDN-only check's address: its A (then AAAA) answer in the emulated zones, else the
    /// system resolver.
    fn resolve(&self, fqdn: &str) -> Option<IpAddr> {
        let name = normalize_name(fqdn);
        for rtype in ["A", "AAAA"] {
            if let Lookup::Answer { answers, .. } = self.lookup(&name, rtype) {
                if let Some(ip) = answers.iter().find_map(|rr| rr.value.parse().ok()) {
                    return Some(ip);
                }
            }
        }
        (fqdn.trim_end_matches('.'), 0)
            .to_socket_addrs()
            .ok()?
            .next()
            .map(|a| a.ip())
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let (state, statuses) = self.statuses();
        let runners = lock(&self.runners);
        let checks = state
            .health_checks
            .iter()
            .map(|hc| {
                let checkers = runners
                    .get(&hc.id)
                    .map(|r| r.checkers.iter().map(|c| c.status()).collect())
                    .unwrap_or_default();
                let status = CheckStatus {
                    kind: hc.kind.as_str().to_owned(),
                    healthy: statuses.get(&hc.id).copied().unwrap_or(true),
                    inverted: hc.inverted,
                    disabled: hc.disabled,
                    children: hc.children.clone(),
                    health_threshold: hc.health_threshold,
                    checkers,
                };
                (hc.id.clone(), status)
            })
            .collect();
        drop(runners);
        let mut answers = Vec::new();
        for zone in &state.zones {
            let mut seen = BTreeSet::new();
            for r in &zone.records {
                if !seen.insert((r.name.as_str(), r.rtype.as_str())) {
                    continue;
                }
                let group = rules::group(zone, &r.name, &r.rtype);
                let healthy =
                    |x: &super::model::Record| rules::record_healthy(zone, &statuses, x, 0);
                let candidates = rules::eligible(&group, &healthy)
                    .into_iter()
                    .map(|c| Candidate {
                        set_identifier: c.set_identifier.clone(),
                        weight: match c.routing {
                            Routing::Weighted { weight } => Some(weight),
                            _ => None,
                        },
                        values: match &c.alias {
                            Some(a) => rules::resolve(zone, &statuses, &a.dns_name, &c.rtype, 0.5)
                                .map(|(_, v)| v)
                                .unwrap_or_default(),
                            None => c.values.clone(),
                        },
                    })
                    .collect();
                let routing = match r.routing {
                    Routing::Simple => "Simple",
                    Routing::Failover { .. } => "Failover",
                    Routing::Weighted { .. } => "Weighted",
                };
                answers.push(AnswerStatus {
                    zone: zone.name.clone(),
                    name: r.name.clone(),
                    rtype: r.rtype.clone(),
                    routing: routing.to_owned(),
                    candidates,
                });
            }
        }
        Snapshot {
            checks,
            answers,
            refreshes: self.refreshes.load(Ordering::Relaxed),
            source_error: lock(&self.source_error).clone(),
        }
    }
}
