//! Unit tests: the desired objects, the diff, the Terraform output (pure), and plan + apply
//! against the strict in-memory Route 53 (ordering, idempotency, ownership).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod memory;
mod pure;
mod terraform;

use config::{
    Config, GateConfig, GateTargetConfig, HealthCheckSettings, Plane, RecordAnswer, SharedConfig,
};
use quorum::gate::{GateKind, GatePolicy, GateSpec, Mode, Target, WeightedTarget};
use quorum::{CheckId, GateId, TargetId};

pub(crate) const ZONE_ID: &str = "Z0123";

/// Three members (quorum 2) with https health URLs on names, and the checks the gates use.
pub(crate) const BASE: &str = r#"
[cluster]
name = "prod"

[[members]]
id = "euc1"
region = "eu-central-1"
url = "https://euc1.internal:9443"
public_key = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E="

[[members]]
id = "use1"
region = "us-east-1"
url = "https://use1.internal:9443"
public_key = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="

[[members]]
id = "usw2"
region = "us-west-2"
url = "https://usw2.internal:9443"
public_key = "gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q="

[[checks]]
id = "app-use1"
[checks.http]
url = "https://use1.app.internal/healthz"

[[checks]]
id = "app-usw2"
[checks.http]
url = "https://usw2.app.internal/healthz"

[[checks]]
id = "app-euc1"
[checks.http]
url = "https://euc1.app.internal/healthz"

[local]
agent_id = "use1"
listen = "127.0.0.1:0"
key_file = "/tmp/quorumgate-test.key"
"#;

pub(crate) fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

pub(crate) fn settings() -> HealthCheckSettings {
    HealthCheckSettings {
        request_interval_s: 10,
        failure_threshold: 2,
        regions: Vec::new(),
    }
}

fn values(ip: &str) -> RecordAnswer {
    RecordAnswer::Values(vec![ip.to_owned()])
}

/// Gate `app`: failover use1 (check app-use1) → usw2 (check app-usw2) on app.example.com.
pub(crate) fn failover_gate(plane: Plane) -> GateConfig {
    let spec = GateSpec::new(
        id::<GateId>("app"),
        GateKind::Failover {
            primary: Target::new(id::<TargetId>("use1"), id::<CheckId>("app-use1")),
            secondary: Target::new(id::<TargetId>("usw2"), id::<CheckId>("app-usw2")),
        },
        GatePolicy::default(),
        Mode::Live,
    )
    .expect("gate spec");
    GateConfig {
        spec,
        plane,
        zone_id: ZONE_ID.into(),
        zone_name: "example.com.".into(),
        record_name: "app.example.com.".into(),
        record_type: "A".into(),
        ttl_s: 60,
        targets: vec![
            GateTargetConfig {
                id: id("use1"),
                answer: values("192.0.2.10"),
            },
            GateTargetConfig {
                id: id("usw2"),
                answer: values("198.51.100.10"),
            },
        ],
        writer_stagger_ms: 0,
        health_checks: settings(),
        promote: None,
        drill: config::DrillConfig::default(),
    }
}

/// Gate `web`: weighted use1 (check app-use1, shared with `app`) 100, euc1 (app-euc1) 50,
/// on www.example.com, euc1 an alias.
pub(crate) fn weighted_gate(plane: Plane) -> GateConfig {
    let spec = GateSpec::new(
        id::<GateId>("web"),
        GateKind::Weighted {
            targets: vec![
                WeightedTarget {
                    target: Target::new(id::<TargetId>("use1"), id::<CheckId>("app-use1")),
                    weight: 100,
                },
                WeightedTarget {
                    target: Target::new(id::<TargetId>("euc1"), id::<CheckId>("app-euc1")),
                    weight: 50,
                },
            ],
        },
        GatePolicy::default(),
        Mode::Live,
    )
    .expect("gate spec");
    GateConfig {
        spec,
        plane,
        zone_id: ZONE_ID.into(),
        zone_name: "example.com.".into(),
        record_name: "www.example.com.".into(),
        record_type: "A".into(),
        ttl_s: 60,
        targets: vec![
            GateTargetConfig {
                id: id("use1"),
                answer: values("192.0.2.20"),
            },
            GateTargetConfig {
                id: id("euc1"),
                answer: RecordAnswer::Alias {
                    hosted_zone_id: "Z2FDTNDATAQYW2".into(),
                    dns_name: "lb-euc1.example.net.".into(),
                    evaluate_target_health: false,
                },
            },
        ],
        writer_stagger_ms: 0,
        health_checks: settings(),
        promote: None,
        drill: config::DrillConfig::default(),
    }
}

/// [`BASE`] with health URLs `https://<member>.example.com:8443/` and `gates`.
pub(crate) fn shared(gates: Vec<GateConfig>) -> SharedConfig {
    let mut cfg = Config::from_toml_str(BASE).expect("base config").shared;
    for m in &mut cfg.members {
        m.health_url = Some(
            format!("https://{}.example.com:8443/", m.id)
                .parse()
                .expect("url"),
        );
    }
    cfg.gates = gates;
    cfg
}

/// Sets `gate`'s mode to dry-run.
pub(crate) fn dry_run(gate: GateConfig) -> GateConfig {
    let spec = GateSpec::new(
        gate.spec.id().clone(),
        gate.spec.kind().clone(),
        *gate.spec.policy(),
        Mode::DryRun,
    )
    .expect("gate spec");
    GateConfig { spec, ..gate }
}
