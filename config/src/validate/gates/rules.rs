//! Gate rules beyond a gate's own fields: its plane, its targets' answers, what `GateSpec`
//! refuses (mapped to paths), and one gate per record.

use quorum::gate::GateSpecError;
use quorum::TargetId;

use super::targets::Targets;
use super::Location;
use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::model::{Plane, RecordAnswer};
use crate::raw::{RawGate, RawGateKind, RawMode, RawRecordType};
use crate::validate::cluster::Members;

/// What a gate's plane requires of it and of the members, and settings it ignores.
pub(super) fn plane_rules(
    raw: &RawGate,
    plane: Plane,
    kind: Option<RawGateKind>,
    targets: &Targets,
    members: &Members,
    p: &FieldPath,
    report: &mut Report,
) {
    let gate = match &raw.id {
        Some(t) => format!("{p} ({:?})", t.0),
        None => p.to_string(),
    };
    match plane {
        Plane::Data => {
            if raw.mode == Some(RawMode::DryRun) {
                report.warn(
                    &p.key("mode"),
                    "dry-run has no effect on a data-plane gate: the data plane never writes at run time (Route 53 follows the agents' health answers)",
                    "remove mode, or use plane = \"control\" to rehearse record changes",
                );
            }
            if raw.writer_stagger.is_some() {
                report.warn(
                    &p.key("writer_stagger"),
                    "has no effect on a data-plane gate: the agents write no records at run time",
                    "remove writer_stagger",
                );
            }
            let members_path = FieldPath::root().key("members");
            for (j, id) in &members.without_health_url {
                let who = id.as_ref().map_or_else(
                    || format!("members[{j}]"),
                    |id| format!("member {:?}", id.as_str()),
                );
                report.error(
                    &members_path.index(*j).key("health_url"),
                    format!("is required: {gate} has plane = \"data\", so Route 53's checkers must reach {who}"),
                    format!("add health_url = \"https://…:8443\" (this agent's public health listener), or set plane = \"control\" on {gate}"),
                );
            }
            let limit = defaults::CALCULATED_CHILDREN_LIMIT;
            if members.count > limit {
                report.error(
                    &p.key("plane"),
                    format!("{} members are configured; a data-plane gate's CALCULATED health check has at most {limit} children (one per member)", members.count),
                    format!("use plane = \"control\", or at most {limit} members"),
                );
            }
        }
        Plane::Control => {
            for (key, set) in [
                ("health_check_interval", raw.health_check_interval.is_some()),
                (
                    "health_check_failure_threshold",
                    raw.health_check_failure_threshold.is_some(),
                ),
                ("health_check_regions", raw.health_check_regions.is_some()),
            ] {
                if set {
                    report.warn(
                        &p.key(key),
                        "has no effect on a control-plane gate: its records carry no Route 53 health checks",
                        format!("remove {key}, or use plane = \"data\""),
                    );
                }
            }
            if kind == Some(RawGateKind::Failover) {
                distinct_answers(targets, p, report);
            }
        }
    }
}

/// A control-plane failover record answers with the active target's answer, and the agent
/// reads the record back to tell which target is active: the two answers must differ.
fn distinct_answers(targets: &Targets, p: &FieldPath, report: &mut Report) {
    let [a, b] = targets.parts.as_slice() else {
        return;
    };
    let (Some(x), Some(y)) = (&a.answer, &b.answer) else {
        return;
    };
    let same = match (x, y) {
        (RecordAnswer::Values(x), RecordAnswer::Values(y)) => {
            let (mut x, mut y) = (x.clone(), y.clone());
            x.sort();
            y.sort();
            x == y
        }
        (
            RecordAnswer::Alias {
                hosted_zone_id: z1,
                dns_name: n1,
                ..
            },
            RecordAnswer::Alias {
                hosted_zone_id: z2,
                dns_name: n2,
                ..
            },
        ) => z1 == z2 && n1 == n2,
        _ => false,
    };
    if same {
        let key = match y {
            RecordAnswer::Values(_) => "values",
            RecordAnswer::Alias { .. } => "alias",
        };
        report.error(
            &p.key("targets").index(b.index).key(key),
            format!("answers the same as targets[{}]: on a control-plane failover gate the agent tells the active target by the record's answer", a.index),
            "give each target its own answer (e.g. each region's addresses or load balancer)",
        );
    }
}

/// Maps what `GateSpec::new` refuses to the field that causes it. Most of these are caught
/// above with a more specific message (and then this one is an echo at the same path, which
/// the report drops); the mapping keeps a new rule there from being silently lost.
pub(super) fn spec_error(
    e: &GateSpecError,
    raw: &RawGate,
    targets: &Targets,
    p: &FieldPath,
    report: &mut Report,
) {
    let tp = p.key("targets");
    let at = |id: &TargetId, key: &str| {
        targets
            .index_of(id)
            .map_or_else(|| tp.clone(), |i| tp.index(i).key(key))
    };
    let (path, problem, fix): (FieldPath, String, String) = match e {
        GateSpecError::NoTargets => (
            tp.clone(),
            e.to_string(),
            "add at least one [[gates.targets]] table".into(),
        ),
        GateSpecError::TooManyTargets(_) => (
            tp.clone(),
            e.to_string(),
            "split the targets across several gates".into(),
        ),
        GateSpecError::DuplicateTarget(id) => (
            at(id, "id"),
            e.to_string(),
            "give every target of a gate a unique id".into(),
        ),
        GateSpecError::SharedCheck(check) => {
            let i = targets
                .parts
                .iter()
                .rev()
                .find(|t| t.target.as_ref().is_some_and(|t| &t.check == check))
                .map(|t| t.index);
            (
                i.map_or_else(|| tp.clone(), |i| tp.index(i).key("check")),
                e.to_string(),
                "give each target its own check".into(),
            )
        }
        GateSpecError::ZeroWeight(id) => (
            at(id, "weight"),
            e.to_string(),
            "use a weight of 1-255".into(),
        ),
        GateSpecError::MinServing { max, .. } => (
            p.key("min_serving"),
            e.to_string(),
            if raw.kind == Some(RawGateKind::Failover) {
                "a failover pair always serves exactly one target: remove min_serving or set it to 1".into()
            } else {
                format!("use 1-{max}: a weighted set cannot keep more targets serving than it has")
            },
        ),
        GateSpecError::ZeroMaxChanges => (
            p.key("max_changes"),
            e.to_string(),
            "allow at least 1 change per window".into(),
        ),
        GateSpecError::ZeroWindow => (
            p.key("window"),
            e.to_string(),
            "use a positive window, e.g. \"1h\"".into(),
        ),
        GateSpecError::RpoWithoutLagCheck(id) => (
            at(id, "lag_check"),
            format!("is required: max_rpo is set, and secondary {id} needs a lag check to measure what a failover into it would lose"),
            "add lag_check = \"…\" naming a replication_lag check of this target's database, or remove max_rpo".into(),
        ),
        GateSpecError::LagCheckWithoutRpo(id) => (
            at(id, "lag_check"),
            format!("is set on target {id} but the gate has no max_rpo"),
            "set max_rpo = \"30s\" on the gate (the most data a failover may lose without an approval), or remove lag_check".into(),
        ),
        GateSpecError::RpoOnWeighted => {
            let with_lag = targets.parts.iter().find(|t| {
                t.target
                    .as_ref()
                    .is_some_and(|t| t.lag_check.is_some())
            });
            let path = match (raw.max_rpo.is_some(), with_lag) {
                (false, Some(t)) => tp.index(t.index).key("lag_check"),
                _ => p.key("max_rpo"),
            };
            (
                path,
                e.to_string(),
                "remove max_rpo and lag_check, or make the gate kind = \"failover\"".into(),
            )
        }
    };
    report.error(&path, problem, fix);
}

/// Two gates writing one record would undo each other's changes (and a CNAME cannot share
/// its name with any other record); one hosted zone id has one name.
pub(super) fn one_gate_per_record(
    loc: &Location,
    earlier: &[(usize, Location)],
    p: &FieldPath,
    report: &mut Report,
) {
    for (j, other) in earlier {
        if other.zone_id != loc.zone_id {
            continue;
        }
        if other.zone != loc.zone {
            report.error(
                &p.key("zone"),
                format!(
                    "hosted zone {} is {} in gates[{j}], not {}",
                    loc.zone_id, other.zone, loc.zone
                ),
                "one hosted zone id has one name: correct zone or zone_id",
            );
            return;
        }
        if other.record != loc.record {
            continue;
        }
        let (a, b) = (loc.record_type, other.record_type);
        if a == b {
            report.error(
                &p.key("record"),
                format!(
                    "gates[{j}] already manages {} {} in zone {}",
                    loc.record,
                    a.as_str(),
                    loc.zone_id
                ),
                "manage each record with one gate (a gate can have several targets), or correct record or type",
            );
            return;
        }
        if a == RawRecordType::Cname || b == RawRecordType::Cname {
            report.error(
                &p.key("record"),
                format!(
                    "gates[{j}] manages {} {}; a CNAME cannot share its name with another record",
                    loc.record,
                    b.as_str()
                ),
                "give the CNAME gate a name of its own, or use A/AAAA records",
            );
            return;
        }
    }
}
