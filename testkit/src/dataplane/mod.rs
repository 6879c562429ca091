//! An emulated Route 53 *data plane*, for tests, the demo and benchmarks: health checkers that
//! poll the endpoints of the health checks, health computed the way Route 53 documents it, and
//! an authoritative DNS server answering from failover/weighted record selection, so a test can
//! watch the DNS answer change. Never part of the shipped binary.
//!
//! The state (health checks, hosted zones, record sets) is read from the Route 53 API (the
//! strict emulator: what the agents and `quorumgate provision` wrote) or from a JSON file, and
//! read again every `refresh`, so records and checks changed later are picked up. (Those reads
//! show in the strict emulator's request log, and a fault plan queued without an `op` may hit
//! them.)
//!
//! What it models:
//! - endpoint checks (HTTP, HTTPS, HTTP_STR_MATCH, HTTPS_STR_MATCH, TCP): one checker per
//!   region (or several), uncoordinated, polling every RequestInterval, FailureThreshold
//!   consecutive results to flip one checker either way, healthy when more than 18 % of the
//!   checkers say so; the documented 4 s / 2 s / 10 s limits and the 5,120-byte search window;
//!   certificates not validated, SNI only with EnableSNI; all times scaled by `time_scale`;
//! - CALCULATED checks (HealthThreshold over the children), Inverted, Disabled;
//! - simple, failover and weighted records (weight 0, "all unhealthy = all healthy"), alias
//!   records to another record of the same zone with EvaluateTargetHealth, CNAMEs;
//! - A/AAAA/CNAME/TXT/... answers, SOA/NS at the apex, NXDOMAIN, REFUSED outside the zones.
//!
//! What it does not: latency, geolocation, geoproximity, IP-based and multivalue routing
//! (such records are ignored), CloudWatch-alarm and recovery-control checks, wildcard records,
//! aliases to AWS resources or other zones, DNSSEC, EDNS client subnet, latency measurement,
//! the health checkers' real source ranges, the health-check and DNS propagation delays of
//! the real service (a change is seen at the next `refresh`, a status at the next query).
//! Calculated checks may nest (Route 53 allows one level; more is evaluated the same way).
//! An FQDN-only endpoint check resolves its name through the emulated zones first, then the
//! system resolver.
//!
//! - [`model`]: the state's types; [`rules`]: the documented rules as pure functions;
//! - [`checker`]: the health checkers, [`probe`]: one checker's poll; [`dns`]: the DNS server; [`status`]: the snapshot and
//!   its JSON page; [`source`]: reading the state; [`client`]: DNS queries for tests.

pub mod checker;
pub mod client;
pub mod dns;
pub mod model;
pub mod probe;
pub mod rules;
pub mod source;
pub mod status;

mod running;

use std::collections::BTreeMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use client::{query, query_tcp};
pub use model::State;
pub use status::Snapshot;

use running::Shared;

/// Where the state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The Route 53 API at `endpoint` (e.g. `http://127.0.0.1:PORT`, the strict emulator),
    /// with dummy static credentials, region us-east-1.
    Route53 { endpoint: String },
    /// A [`State`] as JSON, read again at every refresh.
    File(PathBuf),
    /// A fixed state.
    Static(State),
}

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// 1.0: Route 53's timing (RequestInterval, connect and response limits); 0.05: twenty
    /// times faster. Timeouts never go below 200 ms.
    pub time_scale: f64,
    /// Checkers per region and check (Route 53 runs several; 1 is enough for most tests).
    pub checkers_per_region: usize,
    /// Seeds the checkers' initial phases and the weighted picks.
    pub seed: u64,
    /// The DNS server's address, UDP and TCP.
    pub dns_listen: SocketAddr,
    /// The JSON status page's address, if any.
    pub status_listen: Option<SocketAddr>,
    /// How often the source is read again.
    pub refresh: Duration,
    /// Each region's checkers connect from this address (default 127.0.0.1), so a test
    /// endpoint can tell Route 53's checkers, and their regions, from other clients.
    pub source_for_region: BTreeMap<String, IpAddr>,
}

/// A seed from the process's random hasher keys.
#[must_use]
pub fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

impl Default for Options {
    fn default() -> Self {
        Self {
            source: Source::File(PathBuf::new()),
            time_scale: 1.0,
            checkers_per_region: 1,
            seed: random_seed(),
            dns_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            status_listen: None,
            refresh: Duration::from_secs(1),
            source_for_region: BTreeMap::new(),
        }
    }
}

/// A running emulator; everything stops when it is dropped.
pub struct DataPlane {
    shared: Arc<Shared>,
    dns_addr: SocketAddr,
    status_addr: Option<SocketAddr>,
    dns: Option<hickory_server::Server<dns::Handler>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("dns_addr", &self.dns_addr)
            .field("status_addr", &self.status_addr)
            .finish_non_exhaustive()
    }
}

impl DataPlane {
    /// Reads the source once (an error if that fails), starts the checkers, the DNS server,
    /// the status page and the refresh loop.
    pub async fn start(opts: Options) -> anyhow::Result<DataPlane> {
        let shared = Shared::new(&opts).await?;
        shared.reload().await?;
        let lookup: dns::Lookuper = {
            let shared = Arc::downgrade(&shared);
            Arc::new(move |name: &str, rtype: &str| match shared.upgrade() {
                Some(s) => s.lookup(name, rtype),
                None => dns::Lookup::Refused,
            })
        };
        let (server, dns_addr) = dns::serve(opts.dns_listen, lookup).await?;
        let mut tasks = Vec::new();
        let mut status_addr = None;
        if let Some(listen) = opts.status_listen {
            let weak = Arc::downgrade(&shared);
            let snapshot = Arc::new(move || {
                weak.upgrade()
                    .map(|s| s.snapshot())
                    .unwrap_or_else(running::empty_snapshot)
            });
            let (addr, task) = status::serve(listen, snapshot).await?;
            status_addr = Some(addr);
            tasks.push(task);
        }
        let weak = Arc::downgrade(&shared);
        let refresh = opts.refresh.max(Duration::from_millis(10));
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(refresh);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(s) = weak.upgrade() else { return };
                // A failed read keeps the previous state; the snapshot reports the error.
                let _ = s.reload().await;
            }
        }));
        Ok(DataPlane {
            shared,
            dns_addr,
            status_addr,
            dns: Some(server),
            tasks,
        })
    }

    /// The DNS server's address (UDP and TCP).
    #[must_use]
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    #[must_use]
    pub fn status_addr(&self) -> Option<SocketAddr> {
        self.status_addr
    }

    /// Every health check's status and checkers, every record name's current answer.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// What DNS would answer now for (`name`, `rtype`): the selected values (a weighted
    /// group: one record picked by weight). Empty for NXDOMAIN, NODATA or a name outside the
    /// zones.
    #[must_use]
    pub fn answer(&self, name: &str, rtype: &str) -> Vec<String> {
        let name = model::normalize_name(name);
        match self.shared.lookup(&name, &rtype.to_ascii_uppercase()) {
            dns::Lookup::Answer { answers, .. } => answers.into_iter().map(|rr| rr.value).collect(),
            dns::Lookup::NxDomain { .. } | dns::Lookup::Refused => Vec::new(),
        }
    }

    /// A health check's computed status; `None` for an unknown id.
    #[must_use]
    pub fn check_healthy(&self, id: &str) -> Option<bool> {
        self.shared.statuses().1.get(id).copied()
    }

    /// Reads the source now (the refresh loop goes on as well).
    pub async fn refresh_now(&self) -> anyhow::Result<()> {
        self.shared.reload().await
    }

    /// Stops the DNS server gracefully, then everything else.
    pub async fn shutdown(mut self) {
        if let Some(mut server) = self.dns.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), server.shutdown_gracefully()).await;
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.stop_checkers();
        // Dropping the server aborts its tasks.
        self.dns.take();
    }
}

/// A small seeded generator (SplitMix64): the checkers' phases and the weighted picks.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64;
        x / (1u64 << 53) as f64
    }
}
