//! `[[gates]]`: which checks move which records, within the gate's safety rules.
//!
//! A gate is read field by field here, its targets by [`targets`], then handed to
//! [`GateSpec::new`] (the quorum crate's own rules); [`rules`] maps what that refuses back to
//! the field that causes it, and holds the rules that need more than the gate's own fields:
//! what its plane requires (members' `health_url`), distinct answers, one gate per record.

mod drill;
mod promote;
mod rules;
mod targets;

use std::collections::HashMap;

use figment::value::Value;
use quorum::gate::{GatePolicy, GateSpec, Mode, MAX_TARGETS};
use quorum::{GateId, TargetId};

use self::rules::{one_gate_per_record, plane_rules, spec_error};
use self::targets::{TargetContext, Targets};
use super::checks::DeclaredChecks;
use super::cluster::Members;
use super::elements;
use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::model::{GateConfig, GateTargetConfig, HealthCheckSettings, Plane, RecordAnswer};
use crate::parse::{
    dns_name, duration_ms, duration_or, duration_or_zero, hosted_zone_id, id_error, in_range,
    is_dns_label, is_region_code, or_default, required,
};
use crate::raw::{RawGate, RawGateKind, RawMode, RawPlane, RawRecordType, Text};

/// The first label of every fence record: `_quorumgate.<gate>.<zone>`.
const FENCE_PREFIX: &str = "_quorumgate.";

/// The gates in file order; `Some(vec![])` when there are none.
pub(super) fn gates(
    raw: Option<&[Value]>,
    checks: &DeclaredChecks,
    members: &Members,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Vec<GateConfig>> {
    let Some(items) = raw else {
        return (!report.has_error_at(path)).then(Vec::new);
    };
    let mut out = Vec::with_capacity(items.len());
    let mut first_id: HashMap<GateId, usize> = HashMap::new();
    let mut managed: Vec<(usize, Location)> = Vec::new();
    for (i, raw) in elements::<RawGate>(items, path, report)
        .into_iter()
        .enumerate()
    {
        let Some(raw) = raw else { continue };
        let p = path.index(i);
        let gate = gate(&raw, checks, members, &p, report);
        if let Some(id) = &gate.id {
            if let Some(&j) = first_id.get(id) {
                report.error(
                    &p.key("id"),
                    format!("duplicate id {:?} (also gates[{j}])", id.as_str()),
                    "give every gate a unique id",
                );
            } else {
                first_id.insert(id.clone(), i);
            }
        }
        if let Some(loc) = gate.location {
            one_gate_per_record(&loc, &managed, &p, report);
            managed.push((i, loc));
        }
        out.extend(gate.config);
    }
    (out.len() == items.len() && !report.has_error_at(path)).then_some(out)
}

/// Where a gate writes: its zone and record.
#[derive(Debug)]
struct Location {
    zone_id: String,
    zone: String,
    record: String,
    record_type: RawRecordType,
}

/// One gate's outcome: the parts other gates are compared on, and the gate if it validated.
struct Parsed {
    id: Option<GateId>,
    location: Option<Location>,
    config: Option<GateConfig>,
}

fn gate(
    raw: &RawGate,
    checks: &DeclaredChecks,
    members: &Members,
    p: &FieldPath,
    report: &mut Report,
) -> Parsed {
    let id = gate_id(raw.id.as_ref(), p, report);
    let plane =
        or_default(raw.plane.as_ref(), RawPlane::Data, &p.key("plane"), report).map(
            |pl| match pl {
                RawPlane::Data => Plane::Data,
                RawPlane::Control => Plane::Control,
            },
        );
    let mode =
        or_default(raw.mode.as_ref(), RawMode::Live, &p.key("mode"), report).map(|m| match m {
            RawMode::Live => Mode::Live,
            RawMode::DryRun => Mode::DryRun,
        });
    let location = location(raw, id.as_ref(), p, report);
    let ttl_path = p.key("ttl");
    let ttl = or_default(raw.ttl.as_ref(), defaults::GATE_TTL, &ttl_path, report)
        .and_then(|t| {
            in_range(
                t,
                0,
                defaults::TTL_LIMIT,
                &ttl_path,
                report,
                "use a TTL in seconds, e.g. 60 (short: clients follow a change sooner)",
            )
        })
        .and_then(|t| u32::try_from(t).ok());
    let kind = required(
        raw.kind.as_ref(),
        &p.key("kind"),
        report,
        "add kind = \"failover\" (a primary and a secondary) or kind = \"weighted\" (traffic shared by weight)",
    )
    .copied();
    let policy = policy(raw, kind, p, report);
    let health_checks = health_checks(raw, p, report);
    // Zero is allowed: every agent writes at once and the fence picks one winner.
    let stagger = duration_or_zero(
        raw.writer_stagger.as_ref(),
        defaults::GATE_WRITER_STAGGER,
        &p.key("writer_stagger"),
        report,
    );

    let targets_path = p.key("targets");
    let ctx = TargetContext {
        kind,
        record_type: raw_record_type(raw, p, report),
        checks,
    };
    let targets = targets::targets(raw.targets.as_deref(), ctx, &targets_path, report);
    let gate_kind = kind.and_then(|k| targets::kind(k, &targets, &targets_path, report));
    let promote = promote::promote(raw.promote.as_ref(), plane, kind, &p.key("promote"), report);
    if let Some(plane) = plane {
        plane_rules(raw, plane, kind, &targets, members, p, report);
    }
    let spec = match (id.clone(), gate_kind, policy, mode) {
        (Some(id), Some(k), Some(policy), Some(mode)) => GateSpec::new(id, k, policy, mode)
            .map_err(|errors| {
                for e in &errors {
                    spec_error(e, raw, &targets, p, report);
                }
            })
            .ok(),
        _ => None,
    };

    let drill = drill::drill(
        raw.drill.as_ref(),
        plane,
        kind,
        spec.as_ref(),
        checks,
        &p.key("drill"),
        report,
    );

    let config = (|| {
        let spec = spec?;
        let loc = location.as_ref()?;
        let answers = spec
            .targets()
            .into_iter()
            .map(|t| answer_of(&targets, &t.id).map(|answer| (t.id.clone(), answer)))
            .collect::<Option<Vec<_>>>()?;
        Some(GateConfig {
            plane: plane?,
            zone_id: loc.zone_id.clone(),
            zone_name: loc.zone.clone(),
            record_name: loc.record.clone(),
            record_type: loc.record_type.as_str().to_owned(),
            ttl_s: ttl?,
            targets: answers
                .into_iter()
                .map(|(id, answer)| GateTargetConfig { id, answer })
                .collect(),
            writer_stagger_ms: stagger?,
            health_checks: health_checks?,
            promote: promote?,
            drill: drill?,
            spec,
        })
    })();
    Parsed {
        id,
        location,
        config,
    }
}

fn answer_of(targets: &Targets, id: &TargetId) -> Option<RecordAnswer> {
    targets
        .parts
        .iter()
        .find(|t| t.target.as_ref().is_some_and(|t| &t.id == id))
        .and_then(|t| t.answer.clone())
}

/// A gate id is also one DNS label: it names the fence record `_quorumgate.<gate>.<zone>`.
fn gate_id(raw: Option<&Text>, p: &FieldPath, report: &mut Report) -> Option<GateId> {
    let ip = p.key("id");
    let t = required(
        raw,
        &ip,
        report,
        "add id = \"app\" (the gate's unique id; it names the gate's fence record)",
    )?;
    let id = GateId::new(t.0.as_str())
        .map_err(|e| id_error(&e, &t.0, &ip, report))
        .ok()?;
    if is_dns_label(id.as_str()) {
        return Some(id);
    }
    report.error(
        &ip,
        format!(
            "{:?} is not one DNS label; it names the fence record {FENCE_PREFIX}<gate>.<zone>",
            id.as_str()
        ),
        "use 1-63 lower-case letters, digits and '-', not starting or ending with '-', e.g. \"app\"",
    );
    None
}

/// The record type as written (default A); `None` when it was rejected.
fn raw_record_type(raw: &RawGate, p: &FieldPath, report: &Report) -> Option<RawRecordType> {
    or_default(
        raw.record_type.as_ref(),
        RawRecordType::A,
        &p.key("type"),
        report,
    )
}

/// `zone_id`, `zone`, `record` and `type`, checked against each other.
fn location(
    raw: &RawGate,
    id: Option<&GateId>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<Location> {
    let zid_path = p.key("zone_id");
    let zone_id = required(
        raw.zone_id.as_ref(),
        &zid_path,
        report,
        "add zone_id = \"Z0123456789ABC\" (the hosted zone's id, as Route 53 shows it)",
    )
    .and_then(|z| hosted_zone_id(z, &zid_path, report));
    let zone_path = p.key("zone");
    let zone = required(
        raw.zone.as_ref(),
        &zone_path,
        report,
        "add zone = \"example.com\" (the hosted zone's name)",
    )
    .and_then(|z| dns_name(z, "example.com", &zone_path, report));
    let record_path = p.key("record");
    let mut record = required(
        raw.record.as_ref(),
        &record_path,
        report,
        "add record = \"app.example.com\" (the name this gate manages)",
    )
    .and_then(|r| dns_name(r, "app.example.com", &record_path, report));
    let mut record_type = raw_record_type(raw, p, report);

    if let Some(r) = &record {
        if r.starts_with(FENCE_PREFIX) {
            report.error(
                &record_path,
                format!("{r} is a fence record name ({FENCE_PREFIX}<gate>.<zone>): quorumgate writes those itself"),
                "manage the application's own name, e.g. \"app.example.com\"",
            );
            record = None;
        }
    }
    if let (Some(r), Some(z)) = (&record, &zone) {
        if r != z && !r.ends_with(&format!(".{z}")) {
            report.error(
                &record_path,
                format!("{r} is not in the zone {z}"),
                format!("write the zone apex or a name that ends in .{z}, or correct zone"),
            );
            record = None;
        } else if r == z && record_type == Some(RawRecordType::Cname) {
            report.error(
                &p.key("type"),
                format!("a CNAME record cannot be at the zone apex ({z})"),
                "use type = \"A\" or \"AAAA\" (with alias targets for a load balancer), or a name below the apex",
            );
            record_type = None;
        }
    }
    if let (Some(id), Some(z)) = (id, &zone) {
        // Text form without the final dot: `_quorumgate.` + gate + `.` + zone.
        let len = FENCE_PREFIX.len() + id.as_str().len() + z.len();
        if len > 253 {
            report.error(
                &p.key("id"),
                format!("the fence record {FENCE_PREFIX}{id}.{z} would be {len} characters; a DNS name has at most 253"),
                "use a shorter gate id",
            );
        }
    }
    Some(Location {
        zone_id: zone_id?,
        zone: zone?,
        record: record?,
        record_type: record_type?,
    })
}

/// `min_serving`, velocity, `auto_failback` and `max_rpo` (failover gates only).
fn policy(
    raw: &RawGate,
    kind: Option<RawGateKind>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<GatePolicy> {
    let min_path = p.key("min_serving");
    let min_serving = or_default(
        raw.min_serving.as_ref(),
        defaults::GATE_MIN_SERVING,
        &min_path,
        report,
    )
    .and_then(|n| {
        in_range(
            n,
            1,
            MAX_TARGETS as u64,
            &min_path,
            report,
            "never drain the last target: use at least 1 (the default)",
        )
    })
    .and_then(|n| usize::try_from(n).ok());
    let changes_path = p.key("max_changes");
    let max_changes = or_default(
        raw.max_changes.as_ref(),
        defaults::GATE_MAX_CHANGES,
        &changes_path,
        report,
    )
    .and_then(|n| {
        in_range(
            n,
            1,
            u64::from(u32::MAX),
            &changes_path,
            report,
            "allow at least 1 change per window, e.g. 3",
        )
    })
    .and_then(|n| u32::try_from(n).ok());
    let window = duration_or(
        raw.window.as_ref(),
        defaults::GATE_WINDOW,
        &p.key("window"),
        report,
    );
    let wait = duration_or(
        raw.wait_period.as_ref(),
        defaults::GATE_WAIT_PERIOD,
        &p.key("wait_period"),
        report,
    );
    let auto_failback = or_default(
        raw.auto_failback.as_ref(),
        false,
        &p.key("auto_failback"),
        report,
    );
    let rpo_path = p.key("max_rpo");
    let max_rpo = match &raw.max_rpo {
        None => Some(None),
        Some(_) if kind == Some(RawGateKind::Weighted) => {
            report.error(
                &rpo_path,
                "the RPO rule (max_rpo, lag_check) applies to failover gates only",
                "remove max_rpo, or make the gate kind = \"failover\"",
            );
            None
        }
        Some(d) => duration_ms(&d.0, &rpo_path, report).map(Some),
    };
    Some(GatePolicy {
        min_serving: min_serving?,
        max_changes: max_changes?,
        window_ms: window?,
        wait_period_ms: wait?,
        auto_failback: auto_failback?,
        max_rpo_ms: max_rpo?,
    })
}

/// The Route 53 health checks `provision` creates for a data-plane gate.
fn health_checks(raw: &RawGate, p: &FieldPath, report: &mut Report) -> Option<HealthCheckSettings> {
    let interval_path = p.key("health_check_interval");
    let interval = or_default(
        raw.health_check_interval.as_ref(),
        defaults::HEALTH_CHECK_INTERVAL,
        &interval_path,
        report,
    )
    .and_then(|n| {
        if matches!(n, 10 | 30) {
            return u32::try_from(n).ok();
        }
        report.error(
            &interval_path,
            format!("must be 10 or 30 (seconds), is {n}"),
            "Route 53 checks every 10 s (fast) or 30 s (standard): use 10 or 30",
        );
        None
    });
    let threshold_path = p.key("health_check_failure_threshold");
    let threshold = or_default(
        raw.health_check_failure_threshold.as_ref(),
        defaults::HEALTH_CHECK_FAILURE_THRESHOLD,
        &threshold_path,
        report,
    )
    .and_then(|n| {
        in_range(
            n,
            1,
            10,
            &threshold_path,
            report,
            "Route 53 allows 1-10 consecutive results, e.g. 2",
        )
    })
    .and_then(|n| u32::try_from(n).ok());
    let regions = match &raw.health_check_regions {
        None if report.has_error_at(&p.key("health_check_regions")) => None,
        None => Some(Vec::new()),
        Some(list) => regions(list, &p.key("health_check_regions"), report),
    };
    Some(HealthCheckSettings {
        request_interval_s: interval?,
        failure_threshold: threshold?,
        regions: regions?,
    })
}

/// Checker regions: empty (Route 53's default set), or at least 3 distinct region codes.
fn regions(list: &[String], p: &FieldPath, report: &mut Report) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, r) in list.iter().enumerate() {
        if !is_region_code(r) {
            report.error(
                &p.index(i),
                format!("{r:?} is not an AWS region code"),
                "write a Route 53 health checker region like \"us-east-1\", \"eu-west-1\" or \"ap-southeast-1\"",
            );
            ok = false;
        } else if let Some(j) = out.iter().position(|o| o == r) {
            report.error(
                &p.index(i),
                format!("{r:?} is listed twice (also [{j}])"),
                "list each region once",
            );
            ok = false;
        }
        out.push(r.clone());
    }
    let min = defaults::MIN_HEALTH_CHECK_REGIONS;
    if ok && !out.is_empty() && out.len() < min {
        report.error(
            p,
            format!(
                "lists {} region(s); Route 53 needs at least {min}",
                out.len()
            ),
            format!("list at least {min} regions, or [] for Route 53's default set"),
        );
        ok = false;
    }
    ok.then_some(out)
}
