//! Route 53's data plane for the chaos scenarios: the test kit's emulator runs in the hub (the
//! internet, where Route 53's checkers are), polls every agent's public health listener on its
//! region address and answers DNS for `app.chaos.example`, a failover pair whose primary
//! carries the calculated check over the agents' answers for the check (2 of 3) and whose
//! secondary has no health check (it always serves). The scenarios assert what DNS answers,
//! not only what the agents decided.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use quorumgate_testkit::dataplane::{self, model, DataPlane, Options, Source};
use quorumgate_testkit::{region_addr, Topology};

use crate::rig::CHECK;

/// Every agent's public health listener, on its region address.
pub const HEALTH_PORT: u16 = 8443;
pub const RECORD: &str = "app.chaos.example.";
pub const PRIMARY_IP: &str = "192.0.2.10";
pub const SECONDARY_IP: &str = "198.51.100.20";
/// Route 53's checkers: RequestInterval 10 s at this scale (1 s), FailureThreshold 2.
pub const TIME_SCALE: f64 = 0.1;
/// Route 53's checker regions for the agents' checks.
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-1"];

/// The emulator, running on the hub's namespace thread.
pub struct ChaosDns {
    dp: DataPlane,
}

impl std::fmt::Debug for ChaosDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosDns")
            .field("dns", &self.dp.dns_addr())
            .finish()
    }
}

impl ChaosDns {
    pub async fn start(topo: &Topology, agents: usize) -> Self {
        let state = state(agents);
        let dp = topo
            .in_hub(move || async move {
                DataPlane::start(Options {
                    source: Source::Static(state),
                    time_scale: TIME_SCALE,
                    // From the hub's own address (the default, loopback, reaches no region).
                    source_for_region: REGIONS
                        .iter()
                        .map(|r| ((*r).to_owned(), IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
                        .collect(),
                    ..Options::default()
                })
                .await
            })
            .await
            .expect("hub thread")
            .expect("the data-plane emulator in the hub");
        Self { dp }
    }

    /// The record's answer by a real DNS query inside the hub (sorted, joined).
    pub async fn answer(&self, topo: &Topology) -> String {
        let dns = self.dp.dns_addr();
        topo.in_hub(move || async move {
            match dataplane::query(dns, RECORD, "A").await {
                Ok(mut v) => {
                    v.sort();
                    v.join(",")
                }
                Err(e) => format!("error: {e:#}"),
            }
        })
        .await
        .unwrap_or_else(|e| format!("error: {e:#}"))
    }

    /// Every checker of every agent's check has polled successfully FailureThreshold times
    /// in a row.
    pub fn all_seen_healthy(&self) -> bool {
        self.dp
            .snapshot()
            .checks
            .values()
            .flat_map(|c| c.checkers.iter())
            .all(|k| k.last.as_ref().is_some_and(|o| o.ok && o.consecutive >= 2))
    }

    pub fn snapshot(&self) -> dataplane::Snapshot {
        self.dp.snapshot()
    }

    /// Polls of every agent's check so far (evidence that Route 53 was looking).
    pub fn polls(&self) -> u64 {
        self.dp.snapshot().polls(None)
    }
}

fn state(agents: usize) -> model::State {
    let mut checks = Vec::new();
    let mut children = Vec::new();
    for i in 0..agents {
        let id = format!("agent-{i}");
        let at = SocketAddr::new(IpAddr::V4(region_addr(i)), HEALTH_PORT);
        let mut hc = model::HealthCheck::agent_health(&id, at, CHECK, 2);
        hc.regions = REGIONS.map(str::to_owned).to_vec();
        checks.push(hc);
        children.push(id);
    }
    let quorum = u32::try_from(agents / 2 + 1).unwrap_or(u32::MAX);
    checks.push(model::HealthCheck::calculated(
        "calculated",
        children,
        quorum,
    ));
    model::State {
        health_checks: checks,
        zones: vec![model::Zone {
            id: "ZCHAOS".to_owned(),
            name: "chaos.example.".to_owned(),
            records: vec![
                model::Record::failover_a(
                    RECORD,
                    model::FailoverRole::Primary,
                    PRIMARY_IP,
                    Some("calculated"),
                ),
                model::Record::failover_a(
                    RECORD,
                    model::FailoverRole::Secondary,
                    SECONDARY_IP,
                    None,
                ),
            ],
        }],
    }
}
