//! The plan and the apply report as text for operators, terraform-style: `+` create,
//! `~` update, `-/+` replace, `-` delete; unchanged objects are counted, not listed.

use std::fmt::Write as _;

use config::Plane;

use super::diff::{Action, CheckChange, DeleteReason, FieldDiff, RecordDiff};
use super::plan::{GatePlan, GateStatus, Plan};
use super::Applied;
use crate::route53::{HealthCheckKind, HealthCheckSpec};

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
        Action::Unchanged => "=",
    }
}

fn fields(o: &mut String, fields: &[FieldDiff]) {
    for f in fields {
        let _ = writeln!(
            o,
            "        {}: {} -> {}{}",
            f.field,
            f.from,
            f.to,
            if f.forces_replacement {
                "  (forces replacement)"
            } else {
                ""
            }
        );
    }
}

/// One line about what a health check does.
fn summary(spec: &HealthCheckSpec, children: usize) -> String {
    if spec.kind == HealthCheckKind::Calculated {
        return format!(
            "CALCULATED, healthy when {} of {children} children are",
            spec.health_threshold.unwrap_or(0)
        );
    }
    let scheme = if spec.kind == HealthCheckKind::HttpsStrMatch {
        "https"
    } else {
        "http"
    };
    let host = spec
        .fqdn
        .clone()
        .or_else(|| {
            spec.ip_address.as_ref().map(|ip| {
                if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                }
            })
        })
        .unwrap_or_default();
    format!(
        "{} {scheme}://{host}:{}{} every {}s, {} failures{}",
        spec.kind.as_str(),
        spec.port.unwrap_or(0),
        spec.resource_path.as_deref().unwrap_or(""),
        spec.request_interval_s.unwrap_or(30),
        spec.failure_threshold.unwrap_or(3),
        if spec.regions.is_empty() {
            String::new()
        } else {
            format!(", from {}", spec.regions.join(","))
        }
    )
}

fn check_line(o: &mut String, plan: &Plan, c: &CheckChange) {
    let id = c
        .current
        .as_ref()
        .map(|h| format!(" (id {})", h.id))
        .unwrap_or_default();
    let _ = write!(
        o,
        "  {:<3} {:<9} {}{id}",
        symbol(c.action),
        c.action.as_str(),
        c.object
    );
    if let Some(want) = plan.desired.checks.get(&c.object) {
        if c.action == Action::Create || c.action == Action::Replace {
            let _ = write!(o, ": {}", summary(&want.spec, want.children.len()));
        }
    }
    o.push('\n');
    fields(o, &c.fields);
}

fn record_lines(o: &mut String, records: &[RecordDiff]) {
    let unchanged = records
        .iter()
        .filter(|r| r.action == Action::Unchanged)
        .count();
    for r in records.iter().filter(|r| r.action != Action::Unchanged) {
        let _ = write!(
            o,
            "  {:<3} {:<9} {}",
            symbol(r.action),
            r.action.as_str(),
            r.key
        );
        if matches!(r.action, Action::Create | Action::Delete) {
            let _ = write!(o, ": {} {}", r.record.routing(), r.record.target());
            if let Some(hc) = r.record.health_check_id() {
                let _ = write!(o, " health_check={hc}");
            }
        }
        o.push('\n');
        fields(o, &r.fields);
    }
    if unchanged > 0 {
        let _ = writeln!(o, "      ({unchanged} record(s) unchanged)");
    }
}

fn gate(o: &mut String, g: &GatePlan) {
    let plane = match g.plane {
        Plane::Data => "data plane",
        Plane::Control => "control plane",
    };
    let _ = write!(
        o,
        "\ngate {} ({plane}, {}) in zone {} ({}), fence {}: ",
        g.gate,
        g.mode.as_str(),
        g.zone_name,
        g.zone_id,
        g.fence_name
    );
    match &g.status {
        GateStatus::InPlace { epoch } => {
            let _ = writeln!(o, "records in place (epoch {epoch})");
        }
        GateStatus::Write { epoch, records } => {
            let _ = writeln!(
                o,
                "one fenced write, epoch {epoch} -> {}",
                epoch.saturating_add(1)
            );
            record_lines(o, records);
        }
        GateStatus::DryRun { epoch, records } => {
            let _ = writeln!(
                o,
                "dry-run gate: no records created (epoch {epoch}); a live gate would get:"
            );
            record_lines(o, records);
        }
        GateStatus::OwnedByAgents { epoch, records } => {
            let _ = writeln!(
                o,
                "owned by the agents (epoch {epoch}, {records} record(s)); not touched"
            );
        }
    }
}

/// The plan, as `quorumgate plan` prints it.
#[must_use]
pub fn plan(p: &Plan) -> String {
    let mut o = String::new();
    let d = &p.desired;
    let data = d.gates.iter().filter(|g| g.plane == Plane::Data).count();
    let _ = writeln!(
        o,
        "cluster {}: {} members, quorum {}; {} data-plane gate(s), {} control-plane gate(s)",
        d.cluster,
        d.members,
        d.quorum,
        data,
        d.gates.len() - data
    );
    for w in &d.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    let _ = writeln!(o, "\nhealth checks:");
    for c in p
        .checks
        .changes
        .iter()
        .filter(|c| c.action != Action::Unchanged)
    {
        check_line(&mut o, p, c);
    }
    for ob in &p.checks.obsolete {
        let why = match ob.reason {
            DeleteReason::NotConfigured => "no longer configured",
            DeleteReason::Duplicate => "duplicate of the one kept",
        };
        let _ = writeln!(
            o,
            "  {:<3} {:<9} {} (id {}): {why}",
            symbol(Action::Delete),
            Action::Delete.as_str(),
            ob.object,
            ob.check.id
        );
    }
    let counts = p.counts();
    if counts.unchanged > 0 {
        let _ = writeln!(o, "      ({} health check(s) unchanged)", counts.unchanged);
    }
    if p.checks.foreign > 0 {
        let _ = writeln!(
            o,
            "      ({} health check(s) without this cluster's tag: not ours, never touched)",
            p.checks.foreign
        );
    }
    for (id, tag) in &p.checks.unidentified {
        let _ = writeln!(
            o,
            "  warning: health check {id} has this cluster's tag but {}; not touched",
            tag.as_ref().map_or_else(
                || "no quorumgate:object tag".to_owned(),
                |t| format!("an unknown quorumgate:object tag {t:?}")
            )
        );
    }
    for g in &p.gates {
        gate(&mut o, g);
    }
    o.push('\n');
    if p.has_changes() {
        let _ = writeln!(
            o,
            "Plan: {} to create, {} to update, {} to replace, {} to delete (health checks); {} gate(s) to write.",
            counts.create, counts.update, counts.replace, counts.delete, counts.gate_writes
        );
    } else {
        let _ = writeln!(o, "No changes: Route 53 matches the configuration.");
    }
    o
}

/// What `provision` did.
#[must_use]
pub fn applied(a: &Applied) -> String {
    let mut o = String::new();
    for line in &a.done {
        let _ = writeln!(o, "  {line}");
    }
    for line in &a.kept {
        let _ = writeln!(o, "  warning: {line}");
    }
    let _ = writeln!(o, "Applied: {} write request(s).", a.writes);
    o
}
