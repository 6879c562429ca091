//! The demo's Route 53: the health checks and records `quorumgate provision` would create for
//! the demo's data-plane gate (the same pure functions), served by the test kit's data-plane
//! emulator — its health checkers poll the agents' public health listeners and its DNS server
//! answers `dig @127.0.0.1 -p PORT app.demo.example`. Built only with the `emulator` feature
//! (on by default for `cargo run`; the packaged binary is built without it).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context as _;
use config::{Config, Plane};
use quorumgate_testkit::dataplane::{self, model, DataPlane, Options, Source};

use crate::gates::records::data_plane_records;
use crate::provision::{desired, Desired, ObjectId};
use crate::route53::{FailoverRole, RecordSet, RecordTarget, Routing};

/// The demo's running Route 53 data plane.
#[derive(Debug)]
pub struct DemoDns {
    dp: DataPlane,
    record: String,
}

impl DemoDns {
    /// Starts the emulator for `cfg`'s data-plane gates, its checkers at `time_scale` of
    /// Route 53's timing.
    pub async fn start(cfg: &Config, zone_id: &str, time_scale: f64) -> anyhow::Result<Self> {
        let state = state(cfg, zone_id)?;
        let record = cfg
            .shared
            .gates
            .iter()
            .find(|g| g.plane == Plane::Data)
            .map(|g| g.record_name.clone())
            .context("the demo config has no data-plane gate")?;
        let dp = DataPlane::start(Options {
            source: Source::Static(state),
            time_scale,
            ..Options::default()
        })
        .await?;
        Ok(Self { dp, record })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.dp.dns_addr()
    }

    /// The command a reader can run to see the answer themselves.
    #[must_use]
    pub fn dig(&self) -> String {
        let a = self.addr();
        format!(
            "dig @{} -p {} {} A +short",
            a.ip(),
            a.port(),
            self.record.trim_end_matches('.')
        )
    }

    /// The record's A answer by a real DNS query, e.g. `192.0.2.10`.
    pub async fn answer(&self) -> String {
        match dataplane::query(self.addr(), &self.record, "A").await {
            Ok(mut v) => {
                v.sort();
                v.join(",")
            }
            Err(e) => format!("error: {e:#}"),
        }
    }
}

/// What `provision` would create for `cfg`'s data-plane gates, with made-up ids, as the
/// emulator's state.
fn state(cfg: &Config, zone_id: &str) -> anyhow::Result<model::State> {
    let d: Desired = desired(&cfg.shared)
        .map_err(|e| anyhow::anyhow!("the demo config cannot be provisioned: {e:?}"))?;
    let ids: BTreeMap<ObjectId, String> = d
        .checks
        .keys()
        .enumerate()
        .map(|(i, o)| (o.clone(), format!("hc-{i}")))
        .collect();
    let mut checks = Vec::new();
    let mut calculated = BTreeMap::new();
    for (object, want) in &d.checks {
        let spec = want.resolve(|child| ids[child].clone());
        let id = ids[object].clone();
        if let ObjectId::Calculated { check } = object {
            calculated.insert(check.clone(), id.clone());
        }
        let kind = model::HealthCheckKind::parse(spec.kind.as_str())
            .with_context(|| format!("health check kind {}", spec.kind.as_str()))?;
        let mut hc = model::HealthCheck::new(id, kind);
        hc.ip_address = spec.ip_address.as_deref().and_then(|a| a.parse().ok());
        hc.fqdn = spec.fqdn.clone();
        hc.port = spec.port;
        hc.resource_path = spec.resource_path.clone();
        hc.search_string = spec.search_string.clone();
        hc.request_interval_s = spec.request_interval_s.unwrap_or(30);
        hc.failure_threshold = spec.failure_threshold.unwrap_or(3);
        hc.regions = spec.regions.clone();
        hc.inverted = spec.inverted;
        hc.disabled = spec.disabled;
        hc.enable_sni = spec.enable_sni.unwrap_or(false);
        hc.children = spec.children.clone();
        hc.health_threshold = spec.health_threshold.unwrap_or(0);
        checks.push(hc);
    }
    let mut zones: BTreeMap<String, model::Zone> = BTreeMap::new();
    for gate in cfg.shared.gates.iter().filter(|g| g.plane == Plane::Data) {
        let records = data_plane_records(gate, &calculated)?;
        let zone = zones
            .entry(gate.zone_name.clone())
            .or_insert_with(|| model::Zone {
                id: zone_id.to_owned(),
                name: gate.zone_name.clone(),
                records: Vec::new(),
            });
        zone.records.extend(records.records().map(record));
    }
    Ok(model::State {
        health_checks: checks,
        zones: zones.into_values().collect(),
    })
}

fn record(r: &RecordSet) -> model::Record {
    let routing = match r.routing() {
        Routing::Failover(FailoverRole::Primary) => model::Routing::Failover {
            role: model::FailoverRole::Primary,
        },
        Routing::Failover(FailoverRole::Secondary) => model::Routing::Failover {
            role: model::FailoverRole::Secondary,
        },
        Routing::Weighted { weight } => model::Routing::Weighted {
            weight: u32::from(*weight),
        },
        Routing::Simple | Routing::Unsupported(_) => model::Routing::Simple,
    };
    let (ttl, values, alias) = match r.target() {
        RecordTarget::Values { ttl, values } => (Some(*ttl), values.clone(), None),
        RecordTarget::Alias {
            dns_name,
            evaluate_target_health,
            ..
        } => (
            None,
            Vec::new(),
            Some(model::Alias {
                dns_name: dns_name.clone(),
                evaluate_target_health: *evaluate_target_health,
            }),
        ),
    };
    model::Record {
        name: r.name().to_owned(),
        rtype: r.record_type().to_owned(),
        ttl,
        set_identifier: r.set_identifier().map(str::to_owned),
        routing,
        health_check_id: r.health_check_id().map(str::to_owned),
        values,
        alias,
    }
}
