//! `[[operators]]`: who may sign `freeze`, `unfreeze`, `approve` and `override` commands.

use std::collections::HashMap;

use figment::value::Value;
use quorum::OperatorId;

use super::cluster::Members;
use super::elements;
use crate::errors::{FieldPath, Report};
use crate::model::OperatorConfig;
use crate::parse::{id_error, public_key, required};
use crate::raw::RawOperator;

/// The operators in file order; `Some(vec![])` when there are none.
pub(super) fn operators(
    raw: Option<&[Value]>,
    members: &Members,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Vec<OperatorConfig>> {
    let Some(items) = raw else {
        return (!report.has_error_at(path)).then(Vec::new);
    };
    let mut out = Vec::with_capacity(items.len());
    let mut first_id: HashMap<OperatorId, usize> = HashMap::new();
    let mut first_key: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, raw) in elements::<RawOperator>(items, path, report)
        .into_iter()
        .enumerate()
    {
        let Some(raw) = raw else { continue };
        let p = path.index(i);
        let id_path = p.key("id");
        let id = required(
            raw.id.as_ref(),
            &id_path,
            report,
            "add id = \"alice\" (the operator's unique id)",
        )
        .and_then(|t| {
            OperatorId::new(t.0.as_str())
                .map_err(|e| id_error(&e, &t.0, &id_path, report))
                .ok()
        });
        if let Some(id) = &id {
            if let Some(&j) = first_id.get(id) {
                report.error(
                    &id_path,
                    format!("duplicate id {:?} (also operators[{j}])", id.as_str()),
                    "give every operator a unique id",
                );
            } else {
                first_id.insert(id.clone(), i);
            }
        }
        let key_path = p.key("public_key");
        let key = required(
            raw.public_key.as_ref(),
            &key_path,
            report,
            "add public_key = \"…\" as printed by `quorumgate keygen` for this operator",
        )
        .and_then(|k| public_key(k, "operator", &key_path, report));
        if let Some(key) = &key {
            if let Some(&(j, _)) = members.keys.iter().find(|(_, m)| m == key) {
                report.error(
                    &key_path,
                    format!("is the public key of members[{j}]: an agent key must not also authorise operator commands"),
                    "give the operator a key pair of their own (`quorumgate keygen` on their workstation)",
                );
            } else if let Some(&j) = first_key.get(key.as_bytes()) {
                report.error(
                    &key_path,
                    format!("same public key as operators[{j}]"),
                    "give every operator a key pair of their own: one key under two names blurs the audit trail",
                );
            } else {
                first_key.insert(*key.as_bytes(), i);
            }
        }
        if let (Some(id), Some(public_key)) = (id, key) {
            out.push(OperatorConfig { id, public_key });
        }
    }
    (out.len() == items.len() && !report.has_error_at(path)).then_some(out)
}
