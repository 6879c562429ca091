//! `[[gates.targets]]`: each target's check, role or weight, lag check and record answer, and
//! the gate kind they make together.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use figment::value::Value;
use quorum::gate::{GateKind, Target, WeightedTarget, MAX_TARGETS};
use quorum::{CheckId, TargetId};

use crate::errors::{FieldPath, Report};
use crate::model::RecordAnswer;
use crate::parse::{dns_name, hosted_zone_id, id_error, in_range, or_default, required};
use crate::raw::{RawAlias, RawGateKind, RawRecordType, RawRole, RawTarget, Text};
use crate::validate::checks::DeclaredChecks;
use crate::validate::elements;

/// Where a target sits in its gate's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Role(RawRole),
    Weight(u8),
}

/// One target's parts, each `None` if it was wrong.
#[derive(Debug)]
pub(super) struct TargetParts {
    /// Position in the file (`targets[index]`).
    pub index: usize,
    /// Id, check and lag check: what the gate spec needs.
    pub target: Option<Target>,
    pub slot: Option<Slot>,
    pub answer: Option<RecordAnswer>,
}

/// What the gate knows when it reads its targets.
#[derive(Clone, Copy, Debug)]
pub(super) struct TargetContext<'a> {
    pub kind: Option<RawGateKind>,
    pub record_type: Option<RawRecordType>,
    /// The check ids the file declares (valid or not).
    pub checks: &'a DeclaredChecks,
}

/// The targets that deserialized (`complete`: all of them).
#[derive(Debug, Default)]
pub(super) struct Targets {
    pub parts: Vec<TargetParts>,
    pub complete: bool,
}

impl Targets {
    /// The file index of the last target with this id (a duplicate is the later one).
    pub(super) fn index_of(&self, id: &TargetId) -> Option<usize> {
        self.parts
            .iter()
            .rev()
            .find(|t| t.target.as_ref().is_some_and(|t| &t.id == id))
            .map(|t| t.index)
    }
}

pub(super) fn targets(
    raw: Option<&[Value]>,
    ctx: TargetContext<'_>,
    path: &FieldPath,
    report: &mut Report,
) -> Targets {
    let Some(items) = raw else {
        if !report.has_error_at(path) {
            report.error(
                path,
                "is required",
                "add [[gates.targets]] tables: two (primary, secondary) for a failover gate, one or more for a weighted gate",
            );
        }
        return Targets::default();
    };
    let mut out = Targets {
        parts: Vec::with_capacity(items.len()),
        complete: true,
    };
    let mut first_id: HashMap<TargetId, usize> = HashMap::new();
    let mut first_check: HashMap<CheckId, usize> = HashMap::new();
    for (i, raw) in elements::<RawTarget>(items, path, report)
        .into_iter()
        .enumerate()
    {
        let Some(raw) = raw else {
            out.complete = false;
            continue;
        };
        let p = path.index(i);
        let parts = target(&raw, i, ctx, &p, report);
        if let Some(t) = &parts.target {
            if let Some(&j) = first_id.get(&t.id) {
                report.error(
                    &p.key("id"),
                    format!("duplicate id {:?} (also targets[{j}])", t.id.as_str()),
                    "give every target of a gate a unique id",
                );
            } else {
                first_id.insert(t.id.clone(), i);
            }
            if let Some(&j) = first_check.get(&t.check) {
                report.error(
                    &p.key("check"),
                    format!(
                        "check {:?} already judges targets[{j}]",
                        t.check.as_str()
                    ),
                    "give each target its own check (e.g. one per region), so one target's failure says nothing about another",
                );
            } else {
                first_check.insert(t.check.clone(), i);
            }
        }
        out.parts.push(parts);
    }
    out
}

fn target(
    raw: &RawTarget,
    index: usize,
    ctx: TargetContext<'_>,
    p: &FieldPath,
    report: &mut Report,
) -> TargetParts {
    let id_path = p.key("id");
    let id = required(
        raw.id.as_ref(),
        &id_path,
        report,
        "add id = \"use1\" (the target's id, unique in the gate)",
    )
    .and_then(|t| {
        TargetId::new(t.0.as_str())
            .map_err(|e| id_error(&e, &t.0, &id_path, report))
            .ok()
    });
    let check_path = p.key("check");
    let check = required(
        raw.check.as_ref(),
        &check_path,
        report,
        "add check = \"…\": the [[checks]] id whose quorum decision says whether this target is healthy",
    )
    .and_then(|t| check_ref(t, ctx.checks, &check_path, report));
    let lag_check = match &raw.lag_check {
        None => Some(None),
        Some(t) => lag_check(t, ctx, &p.key("lag_check"), report).map(Some),
    };
    let slot = slot(raw, ctx.kind, p, report);
    let answer = answer(raw, ctx.record_type, p, report);
    let target = match (id, check, lag_check) {
        (Some(id), Some(check), Some(lag)) => {
            let t = Target::new(id, check);
            Some(match lag {
                Some(l) => t.with_lag_check(l),
                None => t,
            })
        }
        _ => None,
    };
    TargetParts {
        index,
        target,
        slot,
        answer,
    }
}

/// A check id that must name one of the `[[checks]]`.
pub(super) fn check_ref(
    raw: &Text,
    checks: &DeclaredChecks,
    p: &FieldPath,
    report: &mut Report,
) -> Option<CheckId> {
    let id = CheckId::new(raw.0.as_str())
        .map_err(|e| id_error(&e, &raw.0, p, report))
        .ok()?;
    if checks.contains(&id) {
        return Some(id);
    }
    let mut known: Vec<&str> = Vec::new();
    for c in checks.ids() {
        if !known.contains(&c.as_str()) {
            known.push(c.as_str());
        }
    }
    let fix = if known.is_empty() {
        format!("add a [[checks]] entry with id = {:?}", id.as_str())
    } else {
        format!(
            "use one of: {} (or add a [[checks]] entry with id = {:?})",
            known.join(", "),
            id.as_str()
        )
    };
    report.error(p, format!("{:?} is not a [[checks]] id", id.as_str()), fix);
    None
}

/// A replication-lag check, on a failover gate only.
fn lag_check(
    raw: &Text,
    ctx: TargetContext<'_>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<CheckId> {
    if ctx.kind == Some(RawGateKind::Weighted) {
        report.error(
            p,
            "the RPO rule (max_rpo, lag_check) applies to failover gates only",
            "remove lag_check, or make the gate kind = \"failover\"",
        );
        return None;
    }
    let id = check_ref(raw, ctx.checks, p, report)?;
    match ctx.checks.kind_of(&id) {
        Some("replication_lag") | None => Some(id),
        Some(other) => {
            report.error(
                p,
                format!(
                    "check {:?} is a {other} check; a lag_check must measure replication lag",
                    id.as_str(),
                ),
                "name a [[checks]] entry with a [checks.replication_lag] table (on the standby this target would promote)",
            );
            None
        }
    }
}

/// `role` on failover gates, `weight` on weighted ones; never the other.
fn slot(
    raw: &RawTarget,
    kind: Option<RawGateKind>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<Slot> {
    let (role_path, weight_path) = (p.key("role"), p.key("weight"));
    match kind? {
        RawGateKind::Failover => {
            if raw.weight.is_some() {
                report.error(
                    &weight_path,
                    "a failover gate's targets have a role, not a weight",
                    "remove weight (or make the gate kind = \"weighted\")",
                );
                return None;
            }
            required(
                raw.role.as_ref(),
                &role_path,
                report,
                "add role = \"primary\" or role = \"secondary\"",
            )
            .map(|r| Slot::Role(*r))
        }
        RawGateKind::Weighted => {
            if raw.role.is_some() {
                report.error(
                    &role_path,
                    "a weighted gate's targets have a weight, not a role",
                    "remove role (or make the gate kind = \"failover\")",
                );
                return None;
            }
            required(
                raw.weight.as_ref(),
                &weight_path,
                report,
                "add weight = 100 (1-255: the share of traffic this target gets when healthy)",
            )
            .and_then(|w| {
                in_range(
                    *w,
                    1,
                    255,
                    &weight_path,
                    report,
                    "use 1-255 (a target that should get no traffic does not belong in the gate)",
                )
            })
            .and_then(|w| u8::try_from(w).ok())
            .map(Slot::Weight)
        }
    }
}

/// Exactly one of `values` and `alias`.
fn answer(
    raw: &RawTarget,
    record_type: Option<RawRecordType>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<RecordAnswer> {
    let (values_path, alias_path) = (p.key("values"), p.key("alias"));
    match (&raw.values, &raw.alias) {
        (Some(_), Some(_)) => {
            report.error(
                &alias_path,
                "values and alias are both set; a target answers with one of them",
                "keep values (literal answers with the gate's ttl) or alias (a Route 53 alias), not both",
            );
            None
        }
        (None, None) => {
            if !report.has_error_at(&values_path) && !report.has_error_at(&alias_path) {
                report.error(
                    p,
                    "has no answer",
                    "add values = [\"192.0.2.10\"] (the record's answers) or alias = { zone_id = \"…\", name = \"…\" }",
                );
            }
            None
        }
        (Some(values), None) => {
            let values = self::values(values, record_type?, &values_path, report)?;
            Some(RecordAnswer::Values(values))
        }
        (None, Some(alias)) => self::alias(alias, &alias_path, report),
    }
}

/// Literal answers: addresses of the record's family (normalised), or one CNAME target name.
fn values(
    raw: &[String],
    record_type: RawRecordType,
    p: &FieldPath,
    report: &mut Report,
) -> Option<Vec<String>> {
    if raw.is_empty() {
        report.error(
            p,
            "must not be empty",
            "list the record's answers, e.g. [\"192.0.2.10\"]",
        );
        return None;
    }
    if record_type == RawRecordType::Cname && raw.len() != 1 {
        report.error(
            p,
            format!("has {} values; a CNAME record has exactly one", raw.len()),
            "give one target name, e.g. [\"app-use1.example.net\"]",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, v) in raw.iter().enumerate() {
        let vp = p.index(i);
        let norm = match record_type {
            RawRecordType::Cname => dns_name(v, "app-use1.example.net", &vp, report),
            RawRecordType::A => address(
                v.parse::<Ipv4Addr>().map(|a| a.to_string()).ok(),
                v,
                record_type,
                &vp,
                report,
            ),
            RawRecordType::Aaaa => address(
                v.parse::<Ipv6Addr>().map(|a| a.to_string()).ok(),
                v,
                record_type,
                &vp,
                report,
            ),
        };
        let Some(norm) = norm else {
            ok = false;
            continue;
        };
        if let Some(j) = out.iter().position(|o| *o == norm) {
            report.error(
                &vp,
                format!("{v:?} is listed twice (also values[{j}])"),
                "list each answer once",
            );
            ok = false;
        }
        out.push(norm);
    }
    ok.then_some(out)
}

/// An address value in canonical form, or an error naming the family the type needs.
fn address(
    parsed: Option<String>,
    raw: &str,
    record_type: RawRecordType,
    p: &FieldPath,
    report: &mut Report,
) -> Option<String> {
    if parsed.is_none() {
        let what = if record_type == RawRecordType::A {
            "an IPv4 address"
        } else {
            "an IPv6 address"
        };
        report.error(
            p,
            format!(
                "{raw:?} is not {what} (the record type is {})",
                record_type.as_str()
            ),
            format!(
                "write {what}, or change the gate's type (A: IPv4, AAAA: IPv6, CNAME: one name)"
            ),
        );
    }
    parsed
}

fn alias(raw: &RawAlias, p: &FieldPath, report: &mut Report) -> Option<RecordAnswer> {
    let zone_path = p.key("zone_id");
    let zone = required(
        raw.zone_id.as_ref(),
        &zone_path,
        report,
        "add zone_id = \"…\": the hosted zone id of the alias target (e.g. the load balancer's)",
    )
    .and_then(|z| hosted_zone_id(z, &zone_path, report));
    let name_path = p.key("name");
    let name = required(
        raw.name.as_ref(),
        &name_path,
        report,
        "add name = \"…\": the alias target's DNS name (e.g. the load balancer's)",
    )
    .and_then(|n| dns_name(n, "lb-1.elb.amazonaws.com", &name_path, report));
    let evaluate = or_default(
        raw.evaluate_target_health.as_ref(),
        false,
        &p.key("evaluate_target_health"),
        report,
    );
    Some(RecordAnswer::Alias {
        hosted_zone_id: zone?,
        dns_name: name?,
        evaluate_target_health: evaluate?,
    })
}

/// The gate kind the targets make, once every target's spec parts are valid.
pub(super) fn kind(
    kind: RawGateKind,
    targets: &Targets,
    path: &FieldPath,
    report: &mut Report,
) -> Option<GateKind> {
    if !targets.complete {
        return None;
    }
    let mut parts = Vec::with_capacity(targets.parts.len());
    for t in &targets.parts {
        parts.push((t.index, t.target.clone()?, t.slot?));
    }
    match kind {
        RawGateKind::Failover => failover(&parts, path, report),
        RawGateKind::Weighted => {
            if parts.len() > MAX_TARGETS {
                // GateSpec refuses it too; said here with the fix.
                report.error(
                    path,
                    format!("{} targets; a gate has at most {MAX_TARGETS}", parts.len()),
                    "split the targets across several gates",
                );
                return None;
            }
            let targets = parts
                .into_iter()
                .filter_map(|(_, target, slot)| match slot {
                    Slot::Weight(weight) => Some(WeightedTarget { target, weight }),
                    Slot::Role(_) => None,
                })
                .collect();
            Some(GateKind::Weighted { targets })
        }
    }
}

fn failover(
    parts: &[(usize, Target, Slot)],
    path: &FieldPath,
    report: &mut Report,
) -> Option<GateKind> {
    if parts.len() != 2 {
        report.error(
            path,
            format!(
                "a failover gate has exactly 2 targets (one primary, one secondary); found {}",
                parts.len()
            ),
            "keep one target with role = \"primary\" and one with role = \"secondary\" (use kind = \"weighted\" for more)",
        );
        return None;
    }
    let (mut primary, mut secondary) = (None, None);
    for (i, target, slot) in parts {
        let (seat, name) = match slot {
            Slot::Role(RawRole::Primary) => (&mut primary, "primary"),
            Slot::Role(RawRole::Secondary) => (&mut secondary, "secondary"),
            Slot::Weight(_) => return None,
        };
        if let Some((j, _)) = seat {
            report.error(
                &path.index(*i).key("role"),
                format!("targets[{j}] is also the {name}"),
                "make one target role = \"primary\" and the other role = \"secondary\"",
            );
            return None;
        }
        *seat = Some((*i, target.clone()));
    }
    Some(GateKind::Failover {
        primary: primary?.1,
        secondary: secondary?.1,
    })
}
