//! `quorumgate provision --terraform`: the same objects as Terraform HCL, from the config
//! alone (no API call, no credentials). Deterministic: the same config prints the same text.
//!
//! - every health check as an `aws_route53_health_check` with the same settings and tags
//!   (Terraform makes its own CallerReference); calculated checks reference their children
//!   as `aws_route53_health_check.<name>.id`;
//! - live data-plane gates' records as `aws_route53_record`s with `set_identifier`,
//!   `failover_routing_policy` / `weighted_routing_policy` and `health_check_id`;
//! - control-plane gates' initial records with `lifecycle { ignore_changes = all }`: the
//!   agents rewrite them through their fence, Terraform must not fight them;
//! - control-plane gates in dry-run: a comment instead of records (`provision` does not
//!   create them either).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use config::{GateConfig, Plane};
use quorum::gate::Mode;

use super::desired::{Desired, DesiredCheck};
use super::identity::{tags, ObjectId};
use super::ProvisionError;
use crate::gates::records::{control_records, data_plane_records};
use crate::route53::{FailoverRole, HealthCheckKind, RecordSet, RecordTarget, Routing};

/// An HCL expression or nested block.
enum Item {
    /// `key = expr` (expr already rendered, may span lines).
    Attr(String, String),
    Blank,
    Block(String, Vec<Item>),
}

fn attr(key: &str, expr: impl Into<String>) -> Item {
    Item::Attr(key.to_owned(), expr.into())
}

/// A quoted HCL string: escapes, and `${` / `%{` so nothing is interpolated.
fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                o.push(c);
                o.push(c);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn list(items: &[String], indent: usize) -> String {
    if items.len() <= 1 || items.iter().map(String::len).sum::<usize>() < 60 {
        return format!("[{}]", items.join(", "));
    }
    let pad = " ".repeat(indent + 2);
    let mut o = String::from("[\n");
    for i in items {
        let _ = writeln!(o, "{pad}{i},");
    }
    let _ = write!(o, "{}]", " ".repeat(indent));
    o
}

fn map(entries: &BTreeMap<String, String>, indent: usize) -> String {
    let key = |k: &str| {
        let bare = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            k.to_owned()
        } else {
            string(k)
        }
    };
    let width = entries.keys().map(|k| key(k).len()).max().unwrap_or(0);
    let pad = " ".repeat(indent + 2);
    let mut o = String::from("{\n");
    for (k, v) in entries {
        let _ = writeln!(o, "{pad}{:<width$} = {}", key(k), string(v));
    }
    let _ = write!(o, "{}}}", " ".repeat(indent));
    o
}

/// Renders items, aligning `=` over runs of consecutive single-line attributes like
/// `terraform fmt`.
fn items(o: &mut String, items: &[Item], indent: usize) {
    let pad = " ".repeat(indent);
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Item::Blank => {
                o.push('\n');
                i += 1;
            }
            Item::Block(header, inner) => {
                let _ = writeln!(o, "{pad}{header} {{");
                self::items(o, inner, indent + 2);
                let _ = writeln!(o, "{pad}}}");
                i += 1;
            }
            Item::Attr(k, v) if v.contains('\n') => {
                // `terraform fmt` leaves a multi-line attribute out of the alignment.
                let _ = writeln!(o, "{pad}{k} = {v}");
                i += 1;
            }
            Item::Attr(..) => {
                let run: Vec<(&String, &String)> = items[i..]
                    .iter()
                    .map_while(|it| match it {
                        Item::Attr(k, v) if !v.contains('\n') => Some((k, v)),
                        _ => None,
                    })
                    .collect();
                let width = run.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (k, v) in &run {
                    let _ = writeln!(o, "{pad}{k:<width$} = {v}");
                }
                i += run.len();
            }
        }
    }
}

fn resource(o: &mut String, kind: &str, name: &str, body: &[Item]) {
    let _ = writeln!(o, "resource {} {} {{", string(kind), string(name));
    items(o, body, 2);
    let _ = writeln!(o, "}}");
}

/// A Terraform identifier: the prefix (a letter first), then the parts with every character
/// other than a letter or digit as `_` (a collision is an error, see [`render`]).
fn ident(prefix: &str, parts: &[&str]) -> String {
    let mut s = prefix.to_owned();
    for p in parts {
        s.push('_');
        s.extend(
            p.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    s
}

fn check_name(object: &ObjectId) -> String {
    match object {
        ObjectId::Agent { check, member } => ident("agent", &[member.as_str(), check.as_str()]),
        ObjectId::Calculated { check } => ident("calculated", &[check.as_str()]),
    }
}

fn check_body(cluster: &str, want: &DesiredCheck) -> Vec<Item> {
    let s = &want.spec;
    let mut body = vec![attr("type", string(s.kind.as_str()))];
    if s.kind == HealthCheckKind::Calculated {
        body.push(attr(
            "child_health_threshold",
            s.health_threshold.unwrap_or(0).to_string(),
        ));
        let children: Vec<String> = want
            .children
            .iter()
            .map(|c| format!("aws_route53_health_check.{}.id", check_name(c)))
            .collect();
        body.push(attr("child_healthchecks", list(&children, 2)));
    } else {
        if let Some(fqdn) = &s.fqdn {
            body.push(attr("fqdn", string(fqdn)));
        }
        if let Some(ip) = &s.ip_address {
            body.push(attr("ip_address", string(ip)));
        }
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                body.push(attr(k, v));
            }
        };
        push("port", s.port.map(|p| p.to_string()));
        push("resource_path", s.resource_path.as_deref().map(string));
        push("search_string", s.search_string.as_deref().map(string));
        push(
            "request_interval",
            s.request_interval_s.map(|v| v.to_string()),
        );
        push(
            "failure_threshold",
            s.failure_threshold.map(|v| v.to_string()),
        );
        push("enable_sni", s.enable_sni.map(|v| v.to_string()));
        if !s.regions.is_empty() {
            let regions: Vec<String> = s.regions.iter().map(|r| string(r)).collect();
            body.push(attr("regions", list(&regions, 2)));
        }
    }
    body.push(Item::Blank);
    body.push(attr("tags", map(&tags(cluster, &want.object), 2)));
    body
}

fn record_body(
    gate: &GateConfig,
    r: &RecordSet,
    checks: &BTreeSet<String>,
    control: bool,
) -> Vec<Item> {
    let mut body = vec![
        attr("zone_id", string(&gate.zone_id)),
        attr("name", string(r.name().trim_end_matches('.'))),
        attr("type", string(r.record_type())),
    ];
    if let Some(set) = r.set_identifier() {
        body.push(attr("set_identifier", string(set)));
    }
    if let Some(hc) = r.health_check_id() {
        let expr = if checks.contains(hc) {
            format!("aws_route53_health_check.{hc}.id")
        } else {
            string(hc)
        };
        body.push(attr("health_check_id", expr));
    }
    match r.target() {
        RecordTarget::Values { ttl, values } => {
            body.push(attr("ttl", ttl.to_string()));
            let values: Vec<String> = values.iter().map(|v| string(v)).collect();
            body.push(attr("records", list(&values, 2)));
        }
        RecordTarget::Alias {
            hosted_zone_id,
            dns_name,
            evaluate_target_health,
        } => {
            body.push(Item::Blank);
            body.push(Item::Block(
                "alias".into(),
                vec![
                    attr("name", string(dns_name.trim_end_matches('.'))),
                    attr("zone_id", string(hosted_zone_id)),
                    attr("evaluate_target_health", evaluate_target_health.to_string()),
                ],
            ));
        }
    }
    match r.routing() {
        Routing::Failover(role) => {
            body.push(Item::Blank);
            let role = match role {
                FailoverRole::Primary => "PRIMARY",
                FailoverRole::Secondary => "SECONDARY",
            };
            body.push(Item::Block(
                "failover_routing_policy".into(),
                vec![attr("type", string(role))],
            ));
        }
        Routing::Weighted { weight } => {
            body.push(Item::Blank);
            body.push(Item::Block(
                "weighted_routing_policy".into(),
                vec![attr("weight", weight.to_string())],
            ));
        }
        Routing::Simple | Routing::Unsupported(_) => {}
    }
    if control {
        body.push(Item::Blank);
        body.push(Item::Block(
            "lifecycle".into(),
            vec![attr("ignore_changes", "all")],
        ));
    }
    body
}

/// The config's Route 53 objects as Terraform HCL.
pub fn render(desired: &Desired) -> Result<String, ProvisionError> {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Generated by `quorumgate provision --terraform` for cluster {}: {} members, quorum {}.\n\
         # The objects `quorumgate provision` manages; change the quorumgate config, not this file.",
        string(&desired.cluster),
        desired.members,
        desired.quorum
    );
    let mut names = BTreeSet::new();
    let mut unique = |name: String| {
        if names.insert(name.clone()) {
            Ok(name)
        } else {
            Err(ProvisionError::Terraform(format!(
                "two objects map to the Terraform name {name}; rename a member, check or gate"
            )))
        }
    };
    let mut check_names = BTreeSet::new();
    for want in desired.checks.values() {
        let name = unique(check_name(&want.object))?;
        check_names.insert(name.clone());
        o.push('\n');
        resource(
            &mut o,
            "aws_route53_health_check",
            &name,
            &check_body(&desired.cluster, want),
        );
    }
    for gate in &desired.gates {
        let id = gate.spec.id().as_str();
        let (records, control) = match (gate.plane, gate.spec.mode()) {
            (Plane::Control, Mode::DryRun) => {
                let _ = writeln!(
                    o,
                    "\n# gate {id} (control plane, dry-run): no records until the gate is live."
                );
                continue;
            }
            (Plane::Data, _) => {
                let ids: BTreeMap<_, _> = gate
                    .spec
                    .targets()
                    .into_iter()
                    .map(|t| (t.check.clone(), check_name(&Desired::calculated(&t.check))))
                    .collect();
                let _ = writeln!(
                    o,
                    "\n# gate {id} (data plane): each record carries its target's calculated health check."
                );
                (data_plane_records(gate, &ids)?, false)
            }
            (Plane::Control, _) => {
                let _ = writeln!(
                    o,
                    "\n# gate {id} (control plane): the agents rewrite these records through the fence\n\
                     # _quorumgate.{id}.{}; Terraform only creates them (ignore_changes = all).",
                    gate.zone_name.trim_end_matches('.')
                );
                (control_records(gate, &gate.spec.normal_state())?, true)
            }
        };
        let mut first = true;
        for r in records.records() {
            let name = match r.set_identifier() {
                Some(set) => ident("gate", &[id, set]),
                None => ident("gate", &[id]),
            };
            let name = unique(name)?;
            if !first {
                o.push('\n');
            }
            first = false;
            resource(
                &mut o,
                "aws_route53_record",
                &name,
                &record_body(gate, r, &check_names, control),
            );
        }
    }
    Ok(o)
}
