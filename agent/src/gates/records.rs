//! A gate's DNS records as a pure function of its configuration and state, and back.
//!
//! - Control plane, failover pair: one simple record answering the active target.
//! - Control plane, weighted set: one weighted record per target (set identifier = target id)
//!   with the state's weight (0 = drained).
//! - Data plane, failover pair: PRIMARY and SECONDARY failover records (set identifier =
//!   target id), each carrying the CALCULATED health check of its target's check.
//! - Data plane, weighted set: one weighted record per target with its normal weight, carrying
//!   its check's CALCULATED health check.

use std::collections::BTreeMap;

use config::{GateConfig, RecordAnswer};
use quorum::gate::{DesiredState, GateKind};
use quorum::{CheckId, TargetId};

use crate::route53::{
    DesiredError, DesiredRecords, FailoverRole, RecordSet, RecordTarget, Routing,
};

/// What a target's record answers, as a Route 53 record target.
#[must_use]
pub fn answer_target(answer: &RecordAnswer, ttl_s: u32) -> RecordTarget {
    match answer {
        RecordAnswer::Values(values) => RecordTarget::values(ttl_s, values.iter().cloned()),
        RecordAnswer::Alias {
            hosted_zone_id,
            dns_name,
            evaluate_target_health,
        } => RecordTarget::alias(hosted_zone_id, dns_name, *evaluate_target_health),
    }
}

fn target_answer(gate: &GateConfig, id: &TargetId) -> Option<RecordTarget> {
    gate.target(id)
        .map(|t| answer_target(&t.answer, gate.ttl_s))
}

/// Why records cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("gate {gate}: state names target {target}, which has no record answer")]
    UnknownTarget { gate: String, target: TargetId },
    #[error("gate {gate}: state {state} does not fit a {kind} gate")]
    Shape {
        gate: String,
        state: String,
        kind: &'static str,
    },
    #[error("gate {gate}: no calculated health check for check {check}")]
    NoHealthCheck { gate: String, check: CheckId },
    #[error("gate {gate}: {source}")]
    Desired {
        gate: String,
        #[source]
        source: DesiredError,
    },
}

fn kind_name(gate: &GateConfig) -> &'static str {
    match gate.spec.kind() {
        GateKind::Failover { .. } => "failover",
        GateKind::Weighted { .. } => "weighted",
    }
}

fn finish(gate: &GateConfig, records: Vec<RecordSet>) -> Result<DesiredRecords, RecordsError> {
    DesiredRecords::new(&gate.zone_name, records).map_err(|source| RecordsError::Desired {
        gate: gate.spec.id().to_string(),
        source,
    })
}

/// The control-plane records of `gate` in `state`.
pub fn control_records(
    gate: &GateConfig,
    state: &DesiredState,
) -> Result<DesiredRecords, RecordsError> {
    let gate_id = gate.spec.id().to_string();
    let unknown = |target: &TargetId| RecordsError::UnknownTarget {
        gate: gate_id.clone(),
        target: target.clone(),
    };
    let records = match (gate.spec.kind(), state) {
        (GateKind::Failover { .. }, DesiredState::Failover { active }) => {
            let target = target_answer(gate, active).ok_or_else(|| unknown(active))?;
            vec![RecordSet::new(&gate.record_name, &gate.record_type, target)]
        }
        (GateKind::Weighted { targets }, DesiredState::Weighted { weights }) => {
            let mut out = Vec::with_capacity(targets.len());
            for t in targets {
                let id = &t.target.id;
                let answer = target_answer(gate, id).ok_or_else(|| unknown(id))?;
                let weight = weights.get(id).copied().unwrap_or(0);
                out.push(
                    RecordSet::new(&gate.record_name, &gate.record_type, answer)
                        .with_routing(id.as_str(), Routing::Weighted { weight }),
                );
            }
            out
        }
        _ => {
            return Err(RecordsError::Shape {
                gate: gate_id,
                state: state.to_string(),
                kind: kind_name(gate),
            })
        }
    };
    finish(gate, records)
}

/// The control-plane state the zone's `records` are in: `None` when they are not exactly the
/// records of any state the gate can produce (missing, edited by hand, another shape).
#[must_use]
pub fn state_from_records(gate: &GateConfig, records: &[RecordSet]) -> Option<DesiredState> {
    let candidate = match gate.spec.kind() {
        GateKind::Failover { primary, secondary } => {
            let record = records.iter().find(|r| {
                r.name() == gate.record_name
                    && r.record_type() == gate.record_type
                    && r.set_identifier().is_none()
            })?;
            [primary, secondary]
                .into_iter()
                .find(|t| target_answer(gate, &t.id).as_ref() == Some(record.target()))
                .map(|t| DesiredState::Failover {
                    active: t.id.clone(),
                })?
        }
        GateKind::Weighted { targets } => {
            let mut weights = BTreeMap::new();
            for t in targets {
                let record = records.iter().find(|r| {
                    r.name() == gate.record_name
                        && r.record_type() == gate.record_type
                        && r.set_identifier() == Some(t.target.id.as_str())
                })?;
                let Routing::Weighted { weight } = record.routing() else {
                    return None;
                };
                weights.insert(t.target.id.clone(), *weight);
            }
            DesiredState::Weighted { weights }
        }
    };
    // Only a state whose records are exactly what is in the zone.
    let desired = control_records(gate, &candidate).ok()?;
    desired.matches(records).then_some(candidate)
}

/// The data-plane records of `gate`: each carries the CALCULATED health check (by id, from
/// `calculated`) of its target's check. They never change at run time.
pub fn data_plane_records(
    gate: &GateConfig,
    calculated: &BTreeMap<CheckId, String>,
) -> Result<DesiredRecords, RecordsError> {
    let gate_id = gate.spec.id().to_string();
    let health_check = |check: &CheckId| {
        calculated
            .get(check)
            .ok_or_else(|| RecordsError::NoHealthCheck {
                gate: gate_id.clone(),
                check: check.clone(),
            })
    };
    let unknown = |target: &TargetId| RecordsError::UnknownTarget {
        gate: gate_id.clone(),
        target: target.clone(),
    };
    let mut records = Vec::new();
    match gate.spec.kind() {
        GateKind::Failover { primary, secondary } => {
            for (t, role) in [
                (primary, FailoverRole::Primary),
                (secondary, FailoverRole::Secondary),
            ] {
                let answer = target_answer(gate, &t.id).ok_or_else(|| unknown(&t.id))?;
                records.push(
                    RecordSet::new(&gate.record_name, &gate.record_type, answer)
                        .with_routing(t.id.as_str(), Routing::Failover(role))
                        .with_health_check(health_check(&t.check)?),
                );
            }
        }
        GateKind::Weighted { targets } => {
            for t in targets {
                let id = &t.target.id;
                let answer = target_answer(gate, id).ok_or_else(|| unknown(id))?;
                records.push(
                    RecordSet::new(&gate.record_name, &gate.record_type, answer)
                        .with_routing(id.as_str(), Routing::Weighted { weight: t.weight })
                        .with_health_check(health_check(&t.target.check)?),
                );
            }
        }
    }
    finish(gate, records)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use config::{GateTargetConfig, HealthCheckSettings, Plane};
    use quorum::gate::{GatePolicy, GateSpec, Mode, Target, WeightedTarget};
    use quorum::GateId;

    fn t(s: &str) -> TargetId {
        TargetId::new(s).unwrap()
    }
    fn c(s: &str) -> CheckId {
        CheckId::new(s).unwrap()
    }

    fn gate(kind: GateKind, answers: &[(&str, RecordAnswer)]) -> GateConfig {
        let spec = GateSpec::new(
            GateId::new("app").unwrap(),
            kind,
            GatePolicy::default(),
            Mode::Live,
        )
        .unwrap();
        GateConfig {
            spec,
            plane: Plane::Control,
            zone_id: "Z1".into(),
            zone_name: "example.com.".into(),
            record_name: "app.example.com.".into(),
            record_type: "A".into(),
            ttl_s: 60,
            targets: answers
                .iter()
                .map(|(id, a)| GateTargetConfig {
                    id: t(id),
                    answer: a.clone(),
                })
                .collect(),
            writer_stagger_ms: 2_000,
            health_checks: HealthCheckSettings {
                request_interval_s: 10,
                failure_threshold: 2,
                regions: Vec::new(),
            },
            promote: None,
            drill: config::DrillConfig::default(),
        }
    }

    fn ip(v: &str) -> RecordAnswer {
        RecordAnswer::Values(vec![v.to_owned()])
    }

    pub(crate) fn failover() -> GateConfig {
        gate(
            GateKind::Failover {
                primary: Target::new(t("use1"), c("app-use1")),
                secondary: Target::new(t("usw2"), c("app-usw2")),
            },
            &[("use1", ip("192.0.2.1")), ("usw2", ip("192.0.2.2"))],
        )
    }

    fn weighted() -> GateConfig {
        let wt = |id: &str, check: &str, weight| WeightedTarget {
            target: Target::new(t(id), c(check)),
            weight,
        };
        gate(
            GateKind::Weighted {
                targets: vec![wt("eu", "app-eu", 50), wt("us", "app-us", 100)],
            },
            &[("eu", ip("192.0.2.1")), ("us", ip("192.0.2.2"))],
        )
    }

    #[test]
    fn failover_states_round_trip_through_records() {
        let g = failover();
        for active in ["use1", "usw2"] {
            let state = DesiredState::Failover { active: t(active) };
            let records = control_records(&g, &state).unwrap();
            let list: Vec<RecordSet> = records.records().cloned().collect();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].set_identifier(), None);
            assert_eq!(state_from_records(&g, &list), Some(state));
        }
    }

    #[test]
    fn weighted_states_round_trip_through_records() {
        let g = weighted();
        let state = DesiredState::weighted([(t("eu"), 0), (t("us"), 100)]);
        let records = control_records(&g, &state).unwrap();
        let list: Vec<RecordSet> = records.records().cloned().collect();
        assert_eq!(list.len(), 2);
        assert!(list
            .iter()
            .any(|r| r.set_identifier() == Some("eu")
                && *r.routing() == Routing::Weighted { weight: 0 }));
        assert_eq!(state_from_records(&g, &list), Some(state));
    }

    #[test]
    fn records_edited_by_hand_are_no_state() {
        let g = failover();
        let foreign = RecordSet::new(
            "app.example.com.",
            "A",
            RecordTarget::values(60, ["203.0.113.9"]),
        );
        assert_eq!(state_from_records(&g, &[foreign]), None);
        assert_eq!(state_from_records(&g, &[]), None);
        // The right value with another TTL is not the gate's record either.
        let ttl = RecordSet::new(
            "app.example.com.",
            "A",
            RecordTarget::values(300, ["192.0.2.1"]),
        );
        assert_eq!(state_from_records(&g, &[ttl]), None);
        // A weighted set missing one member.
        let w = weighted();
        let only_us = RecordSet::new(
            "app.example.com.",
            "A",
            RecordTarget::values(60, ["192.0.2.2"]),
        )
        .with_routing("us", Routing::Weighted { weight: 100 });
        assert_eq!(state_from_records(&w, &[only_us]), None);
    }

    #[test]
    fn a_state_of_the_wrong_shape_is_refused() {
        let g = failover();
        let err = control_records(&g, &DesiredState::weighted([(t("use1"), 1)])).unwrap_err();
        assert!(matches!(err, RecordsError::Shape { .. }), "{err}");
        let err = control_records(&g, &DesiredState::Failover { active: t("nope") }).unwrap_err();
        assert!(matches!(err, RecordsError::UnknownTarget { .. }), "{err}");
    }

    #[test]
    fn data_plane_records_carry_each_checks_calculated_health_check() {
        let g = failover();
        let calculated: BTreeMap<CheckId, String> = [
            (c("app-use1"), "hc-1".to_owned()),
            (c("app-usw2"), "hc-2".to_owned()),
        ]
        .into();
        let records = data_plane_records(&g, &calculated).unwrap();
        let list: Vec<&RecordSet> = records.records().collect();
        assert_eq!(list.len(), 2);
        let primary = list
            .iter()
            .find(|r| r.set_identifier() == Some("use1"))
            .unwrap();
        assert_eq!(*primary.routing(), Routing::Failover(FailoverRole::Primary));
        assert_eq!(primary.health_check_id(), Some("hc-1"));
        let secondary = list
            .iter()
            .find(|r| r.set_identifier() == Some("usw2"))
            .unwrap();
        assert_eq!(
            *secondary.routing(),
            Routing::Failover(FailoverRole::Secondary)
        );
        assert_eq!(secondary.health_check_id(), Some("hc-2"));

        let missing: BTreeMap<CheckId, String> = [(c("app-use1"), "hc-1".to_owned())].into();
        assert!(matches!(
            data_plane_records(&g, &missing),
            Err(RecordsError::NoHealthCheck { .. })
        ));

        let w = weighted();
        let calculated: BTreeMap<CheckId, String> = [
            (c("app-eu"), "hc-eu".to_owned()),
            (c("app-us"), "hc-us".to_owned()),
        ]
        .into();
        let records = data_plane_records(&w, &calculated).unwrap();
        let eu = records
            .records()
            .find(|r| r.set_identifier() == Some("eu"))
            .unwrap();
        assert_eq!(*eu.routing(), Routing::Weighted { weight: 50 });
        assert_eq!(eu.health_check_id(), Some("hc-eu"));
    }
}
