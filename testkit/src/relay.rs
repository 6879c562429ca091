//! A user-space TCP relay in the hub namespace: the only path between regions.
//!
//! The kernel here has no netem, so latency and partitions are made in user space. Every
//! service a test exposes gets a VIP on the hub's loopback (`10.77.200.k`); regions reach it
//! over their veth (their default route points at the hub), the hub does not forward, so the
//! relay is the only way from one region to another. On accept the relay tells the source
//! region from the peer address (`10.77.<i+1>.2`) and applies the state of the link
//! (source region -> the service's home):
//!
//! - latency: each chunk read is delivered `latency` later, in both directions of the
//!   connection (one-way delay; no throughput limit);
//! - cut: a blackhole, like a firewall that drops packets. Existing connections stop
//!   forwarding (nothing more is read or written, so the sender's kernel buffers fill as they
//!   would with lost segments); new connections are accepted but nothing is forwarded. A
//!   client therefore sees what it sees on a dropped path: a timeout, never a refusal. On
//!   heal, data held back flows again (like TCP retransmissions getting through), if the
//!   endpoints still wait for it. One difference from a packet filter: the relay completes the
//!   TCP handshake itself, so a bare TCP connect probe through a cut link succeeds; probes
//!   that exchange data (HTTP, TLS, databases) time out as they would on a dropped path.
//!
//! Connections from the hub itself (a test's request, the relay's own upstream dials) have no
//! link: no latency, never cut. Directions matter: a link `(from, to)` governs connections
//! *opened by* `from` towards services homed at `to`, both ways; cutting `(b, a)` but not
//! `(a, b)` is an asymmetric partition (a still reaches b, b no longer reaches a).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::hub::NsThread;
use crate::netns::Netns;
use crate::topology;

/// Where a service runs: a region's namespace or the hub's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Home {
    Region(usize),
    Hub,
}

/// Counters of one link since the relay started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections accepted on the link (including blackholed ones).
    pub connections: u64,
    /// Bytes read from either end (delivered or still held back).
    pub bytes: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Link {
    latency: Duration,
    cut: bool,
    stats: LinkStats,
}

type LinkKey = (usize, Home);

/// The VIP port of a service whose upstream listens on an ephemeral port.
const VIP_FALLBACK_PORT: u16 = 8000;

#[derive(Debug)]
struct Shared {
    links: Mutex<HashMap<LinkKey, Link>>,
    /// Bumped on every cut/heal, to wake the connections waiting on a cut link.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<LinkKey, Link>) -> R) -> R {
        f(&mut self.links.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn link(&self, key: LinkKey) -> Link {
        self.with(|l| l.get(&key).copied().unwrap_or_default())
    }

    fn count(&self, key: Option<LinkKey>, connections: u64, bytes: u64) {
        if let Some(key) = key {
            self.with(|l| {
                let s = &mut l.entry(key).or_default().stats;
                s.connections += connections;
                s.bytes += bytes;
            });
        }
    }

    /// Returns once `key` is not cut (at once for hub-originated connections).
    async fn wait_open(&self, key: Option<LinkKey>) {
        let Some(key) = key else { return };
        let mut rx = self.changed.subscribe();
        while self.link(key).cut {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn latency(&self, key: Option<LinkKey>) -> Duration {
        key.map_or(Duration::ZERO, |k| self.link(k).latency)
    }
}

/// One exposed service.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub home: Home,
    pub vip: SocketAddrV4,
    pub upstream: SocketAddrV4,
}

/// The relay; owned by a [`Topology`](crate::topology::Topology), running on its hub thread.
#[derive(Debug)]
pub struct Relay {
    regions: usize,
    shared: Arc<Shared>,
    hub: Arc<NsThread>,
    hub_ns: String,
    services: Mutex<Vec<Service>>,
}

impl Relay {
    pub(crate) fn new(regions: usize, hub: Arc<NsThread>, hub_ns: &Netns) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            regions,
            shared: Arc::new(Shared {
                links: Mutex::new(HashMap::new()),
                changed,
            }),
            hub,
            hub_ns: hub_ns.name().to_owned(),
            services: Mutex::new(Vec::new()),
        }
    }

    /// Exposes `upstream` (reachable from the hub: a region address, or the hub's own
    /// loopback for `Home::Hub`) as a VIP every region reaches through the relay. The VIP's
    /// port is the upstream's, or 8000 when that is an ephemeral port (each VIP has its own
    /// address, so ports never collide).
    pub async fn expose(
        &self,
        name: &str,
        home: Home,
        upstream: SocketAddrV4,
    ) -> anyhow::Result<SocketAddrV4> {
        if let Home::Region(r) = home {
            anyhow::ensure!(r < self.regions, "no region {r}");
        }
        let k = {
            let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
            anyhow::ensure!(
                services.iter().all(|s| s.name != name),
                "service {name} is already exposed"
            );
            services.len() + 1
        };
        let k = u8::try_from(k)
            .ok()
            .filter(|k| *k < 255)
            .context("too many services")?;
        let vip_ip = Ipv4Addr::new(10, 77, 200, k);
        crate::netns::ip(&[
            "-n",
            &self.hub_ns,
            "addr",
            "add",
            &format!("{vip_ip}/32"),
            "dev",
            "lo",
        ])?;
        // Keep the VIP's port out of the ephemeral range and the project's reserved block.
        let port = match upstream.port() {
            p if p < 32768 && !(20000..=20999).contains(&p) => p,
            _ => VIP_FALLBACK_PORT,
        };
        let vip = SocketAddrV4::new(vip_ip, port);
        let shared = Arc::clone(&self.shared);
        let listener = self
            .hub
            .run(move || async move { TcpListener::bind(vip).await })
            .await?
            .with_context(|| format!("binding the relay for {name} on {vip}"))?;
        self.hub
            .spawn(move || accept_loop(listener, home, upstream, shared))?;
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Service {
                name: name.to_owned(),
                home,
                vip,
                upstream,
            });
        Ok(vip)
    }

    /// The exposed services.
    #[must_use]
    pub fn services(&self) -> Vec<Service> {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn homes(&self) -> Vec<Home> {
        (0..self.regions)
            .map(Home::Region)
            .chain(std::iter::once(Home::Hub))
            .collect()
    }

    fn update(&self, keys: &[LinkKey], f: impl Fn(&mut Link)) {
        self.shared.with(|l| {
            for k in keys {
                f(l.entry(*k).or_default());
            }
        });
        self.shared.changed.send_modify(|g| *g += 1);
    }

    /// One-way latency of the link `from -> to` (applies to chunks read from now on).
    pub fn set_latency(&self, from: usize, to: Home, latency: Duration) {
        self.update(&[(from, to)], |l| l.latency = latency);
    }

    /// The same one-way latency on every link that leaves its region (region to another
    /// region, region to hub); same-region links stay at zero.
    pub fn set_latency_all(&self, latency: Duration) {
        let keys: Vec<LinkKey> = (0..self.regions)
            .flat_map(|f| {
                self.homes()
                    .into_iter()
                    .filter(move |h| *h != Home::Region(f))
                    .map(move |h| (f, h))
            })
            .collect();
        self.update(&keys, |l| l.latency = latency);
    }

    /// Blackholes the link `from -> to` (see the module doc).
    pub fn cut(&self, from: usize, to: Home) {
        self.update(&[(from, to)], |l| l.cut = true);
    }

    /// Restores the link `from -> to`.
    pub fn heal(&self, from: usize, to: Home) {
        self.update(&[(from, to)], |l| l.cut = false);
    }

    /// Cuts region `i` from everything else and everything else from it (its own region's
    /// link stays up).
    pub fn isolate(&self, i: usize) {
        let mut keys: Vec<LinkKey> = self
            .homes()
            .into_iter()
            .filter(|h| *h != Home::Region(i))
            .map(|h| (i, h))
            .collect();
        keys.extend(
            (0..self.regions)
                .filter(|f| *f != i)
                .map(|f| (f, Home::Region(i))),
        );
        self.update(&keys, |l| l.cut = true);
    }

    /// Heals every link (latencies stay).
    pub fn heal_all(&self) {
        let keys: Vec<LinkKey> = self.shared.with(|l| l.keys().copied().collect());
        self.update(&keys, |l| l.cut = false);
    }

    /// Whether `from -> to` is cut now.
    #[must_use]
    pub fn is_cut(&self, from: usize, to: Home) -> bool {
        self.shared.link((from, to)).cut
    }

    /// Counters of the link `from -> to`.
    #[must_use]
    pub fn stats(&self, from: usize, to: Home) -> LinkStats {
        self.shared.link((from, to)).stats
    }
}

async fn accept_loop(
    listener: TcpListener,
    home: Home,
    upstream: SocketAddrV4,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let key = topology::region_of(peer).map(|r| (r, home));
        shared.count(key, 1, 0);
        tokio::task::spawn_local(relay_one(client, key, upstream, Arc::clone(&shared)));
    }
}

async fn relay_one(
    client: TcpStream,
    key: Option<LinkKey>,
    upstream: SocketAddrV4,
    shared: Arc<Shared>,
) {
    // A new connection on a cut link: accepted, never forwarded (until healed).
    shared.wait_open(key).await;
    let Ok(up) = TcpStream::connect(SocketAddr::V4(upstream)).await else {
        // The service is down: the client sees the connection closed.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = up.into_split();
    tokio::join!(
        pipe(cr, uw, key, Arc::clone(&shared)),
        pipe(ur, cw, key, shared)
    );
}

/// One direction: read chunks, hold each `latency`, write them in order; EOF is forwarded as
/// a half-close. Both ends stall while the link is cut.
async fn pipe(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    key: Option<LinkKey>,
    shared: Arc<Shared>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let reader = {
        let shared = Arc::clone(&shared);
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                shared.wait_open(key).await;
                shared.count(key, 0, n as u64);
                let due = Instant::now() + shared.latency(key);
                if tx.send((due, Bytes::copy_from_slice(&buf[..n]))).is_err() {
                    break;
                }
            }
            // Dropping `tx` tells the writer that the stream ended.
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            shared.wait_open(key).await;
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}
