//! Regions as network namespaces around a hub namespace that runs the relay.
//!
//! ```text
//!  region i ns                         hub ns
//!  eth0 10.77.<i+1>.2/24  <--veth-->   r<i> 10.77.<i+1>.1/24
//!  default via 10.77.<i+1>.1           lo: 10.77.200.k/32 (one VIP per exposed service)
//! ```
//!
//! The hub does not forward (`ip_forward = 0`, set explicitly: a new namespace copies the
//! host's value, and podman or Docker turn it on for the host), so a region
//! reaches another region only through a relay VIP, and the relay decides latency and cuts.
//! The hub reaches every region address directly (its veths are on those subnets): a test's
//! own requests from the hub (status, metrics) bypass the relay and keep working while a
//! region is partitioned.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

use crate::hub::NsThread;
use crate::netns::Netns;
use crate::relay::Relay;

/// Turns IPv4 forwarding off inside namespace `ns` (it starts with the host's setting).
fn no_forwarding(ns: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg("echo 0 > /proc/sys/net/ipv4/ip_forward")
        .output()
        .context("running ip netns exec … sh")?;
    anyhow::ensure!(
        out.status.success(),
        "turning off forwarding in {ns}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The address processes in region `i` bind (and that identifies the region to the relay).
#[must_use]
pub fn region_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, region_octet(i), 2)
}

/// The hub's end of region `i`'s veth.
#[must_use]
pub fn hub_side_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, region_octet(i), 1)
}

fn region_octet(i: usize) -> u8 {
    // Topology::create refuses more than 100 regions, so this cannot truncate.
    u8::try_from(i + 1).unwrap_or(u8::MAX)
}

/// The region a peer address belongs to, `None` for anything else (the hub itself).
#[must_use]
pub fn region_of(peer: SocketAddr) -> Option<usize> {
    match peer.ip() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            (a == 10 && b == 77 && (1..=100).contains(&c) && d == 2).then(|| usize::from(c) - 1)
        }
        IpAddr::V6(_) => None,
    }
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// Every namespace the kit names starts with this (then `-<pid in hex>-`), so a later run can
/// find and remove what a killed run left behind.
const NS_PREFIX: &str = "qgk";

/// Hub + regions + relay. Dropping it stops the relay and the namespace threads, kills every
/// process left in the namespaces and deletes them.
#[derive(Debug)]
pub struct Topology {
    // Field order is drop order: the relay and threads go before the namespaces.
    relay: Relay,
    hub_thread: Arc<NsThread>,
    region_threads: Vec<NsThread>,
    names: Vec<String>,
    regions: Vec<Netns>,
    hub: Netns,
}

impl Topology {
    /// Creates the namespaces and links for `regions` (labels, e.g. `us-east-1`). `tag` (a few
    /// letters naming the test) plus this process's pid and a counter make the namespace
    /// names unique among concurrently running tests. Namespaces of earlier runs whose process
    /// is gone (killed before its drops ran) are removed first.
    pub fn create(tag: &str, regions: &[&str]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !regions.is_empty() && regions.len() <= 100,
            "1 to 100 regions"
        );
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        crate::netns::require_ip()?;
        crate::netns::sweep_orphans(NS_PREFIX);
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let base = format!("{NS_PREFIX}-{:x}-{tag}{n}", std::process::id());
        let hub = Netns::create(&format!("{base}h"))?;
        no_forwarding(hub.name())?;
        let mut region_ns = Vec::new();
        for (i, _) in regions.iter().enumerate() {
            let ns = Netns::create(&format!("{base}r{i}"))?;
            // Made inside the hub namespace with the peer moved straight into the region's,
            // so interface names only need to be unique per namespace.
            let hub_if = format!("r{i}");
            hub.ip(&[
                "link",
                "add",
                &hub_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])
            .with_context(|| format!("veth for region {i}"))?;
            hub.ip(&[
                "addr",
                "add",
                &format!("{}/24", hub_side_addr(i)),
                "dev",
                &hub_if,
            ])?;
            hub.ip(&["link", "set", &hub_if, "up"])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/24", region_addr(i)),
                "dev",
                "eth0",
            ])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            ns.ip(&[
                "route",
                "add",
                "default",
                "via",
                &hub_side_addr(i).to_string(),
            ])?;
            region_ns.push(ns);
        }
        let hub_thread = Arc::new(NsThread::start(&hub)?);
        let region_threads = region_ns
            .iter()
            .map(NsThread::start)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let relay = Relay::new(regions.len(), Arc::clone(&hub_thread), &hub);
        Ok(Self {
            relay,
            hub_thread,
            region_threads,
            names: regions.iter().map(|r| (*r).to_owned()).collect(),
            regions: region_ns,
            hub,
        })
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Region `i`'s label, as given to [`create`](Self::create).
    #[must_use]
    pub fn region_name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// See [`region_addr`].
    #[must_use]
    pub fn region_addr(&self, i: usize) -> Ipv4Addr {
        region_addr(i)
    }

    #[must_use]
    pub fn hub_ns(&self) -> &Netns {
        &self.hub
    }

    #[must_use]
    pub fn region_ns(&self, i: usize) -> &Netns {
        &self.regions[i]
    }

    #[must_use]
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Runs `f()` inside the hub namespace (reaches every region address directly and every
    /// VIP without a link: no latency, never cut).
    pub async fn in_hub<F, Fut, T>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.hub_thread.run(f).await
    }

    /// Runs `f()` inside region `i`'s namespace (what it reaches goes through the relay).
    pub async fn in_region<F, Fut, T>(&self, i: usize, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.region_threads
            .get(i)
            .with_context(|| format!("no region {i}"))?
            .run(f)
            .await
    }

    /// The hub's namespace thread, for long-running tasks (servers) homed in the hub.
    #[must_use]
    pub fn hub_thread(&self) -> &NsThread {
        &self.hub_thread
    }

    /// Region `i`'s namespace thread, for long-running tasks (servers) homed there.
    #[must_use]
    pub fn region_thread(&self, i: usize) -> &NsThread {
        &self.region_threads[i]
    }
}
