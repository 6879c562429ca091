//! Applying a [`Plan`], in the only safe order:
//!
//! 1. health checks: agent checks first, then the calculated checks over them (a calculated
//!    check needs its children's ids); creates (tagged right after), in-place updates (with
//!    the HealthCheckVersion read, so a concurrent edit fails the update instead of being
//!    overwritten) and the new halves of replacements;
//! 2. records: one fenced write per gate that needs one (they reference the calculated ids);
//! 3. deletes: replaced and obsolete owned checks, calculated ones before their children, and
//!    only those nothing references any more (every record of the configured zones and every
//!    other health check is read again first).
//!
//! It stops at the first error: what is done stays done, the next run picks up from there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::diff::{is_placeholder, placeholder, Action, CheckChange, DeleteReason, PlannedId};
use super::identity::{caller_reference, tags, ObjectId, MAX_GENERATIONS};
use super::plan::{gate_records, writer_for, GatePlan, GateStatus, Options, Plan};
use super::ProvisionError;
use crate::route53::{
    ApiError, ApplyOutcome, HealthCheck, HealthCheckKind, HealthCheckSpec, Route53Api, TagResource,
};

/// What `apply` did, one line per write, plus what it deliberately left alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub done: Vec<String>,
    /// Obsolete checks kept because something still references them.
    pub kept: Vec<String>,
    /// Write requests sent (creates, updates, tag changes, record batches, deletes).
    pub writes: usize,
}

/// An owned check to delete at the end, and why.
type Doomed = (ObjectId, HealthCheck, &'static str);

/// Applies `plan` (from [`super::plan()`] against the same API, just before).
pub async fn apply(
    api: Arc<dyn Route53Api>,
    plan: &Plan,
    options: &Options,
) -> Result<Applied, ProvisionError> {
    let mut out = Applied::default();
    let mut ids: BTreeMap<ObjectId, String> = BTreeMap::new();
    let mut doomed: Vec<Doomed> = Vec::new();

    // 1. Health checks, in object order: agent checks, then calculated ones.
    for change in &plan.checks.changes {
        let id = apply_check(api.as_ref(), plan, change, &ids, &mut doomed, &mut out).await?;
        ids.insert(change.object.clone(), id);
    }

    // 2. Records, through each gate's fence, with the real ids.
    let mut known = plan.checks.clone();
    for (object, id) in &ids {
        known
            .ids
            .insert(object.clone(), PlannedId::Known(id.clone()));
    }
    for gate_plan in &plan.gates {
        if let GateStatus::Write { epoch, .. } = gate_plan.status {
            apply_gate(&api, plan, gate_plan, epoch, &known, options, &mut out).await?;
        }
    }

    // 3. Deletes, once nothing references them.
    for o in &plan.checks.obsolete {
        let why = match o.reason {
            DeleteReason::NotConfigured => "no longer configured",
            DeleteReason::Duplicate => "duplicate",
        };
        doomed.push((o.object.clone(), o.check.clone(), why));
    }
    if !doomed.is_empty() {
        delete_unreferenced(api.as_ref(), plan, doomed, &mut out).await?;
    }
    Ok(out)
}

/// Creates `spec` as `object`: CallerReference generation 0 first, the next generation when
/// Route 53 says the reference was used by a check that no longer exists (or by other
/// settings), so an interrupted earlier create is found again rather than duplicated.
async fn create(
    api: &dyn Route53Api,
    cluster: &str,
    object: &ObjectId,
    spec: &HealthCheckSpec,
) -> Result<HealthCheck, ProvisionError> {
    for generation in 0..=MAX_GENERATIONS {
        let reference = caller_reference(cluster, object, spec, generation);
        match api.create_health_check(&reference, spec).await {
            Ok(hc) => return Ok(hc),
            Err(ApiError::Rejected { code, .. }) if code == "HealthCheckAlreadyExists" => {
                tracing::debug!(%object, reference, "caller reference used before; next generation");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ProvisionError::ReferencesExhausted {
        object: object.to_string(),
    })
}

/// Step 1 for one object; returns its id.
async fn apply_check(
    api: &dyn Route53Api,
    plan: &Plan,
    change: &CheckChange,
    ids: &BTreeMap<ObjectId, String>,
    doomed: &mut Vec<Doomed>,
    out: &mut Applied,
) -> Result<String, ProvisionError> {
    let object = &change.object;
    let cluster = &plan.desired.cluster;
    let want = plan
        .desired
        .checks
        .get(object)
        .ok_or_else(|| ProvisionError::Internal(format!("{object} planned but not desired")))?;
    let mut missing = None;
    let spec = want.resolve(|child| {
        ids.get(child).cloned().unwrap_or_else(|| {
            missing = Some(child.clone());
            placeholder(child)
        })
    });
    if let Some(child) = missing {
        return Err(ProvisionError::Internal(format!(
            "{object}: child {child} has no id yet"
        )));
    }
    match (change.action, &change.current) {
        (Action::Create | Action::Replace, current) => {
            let hc = create(api, cluster, object, &spec).await?;
            out.writes += 1;
            api.change_tags(
                TagResource::HealthCheck,
                &hc.id,
                &tags(cluster, object),
                &[],
            )
            .await?;
            out.writes += 1;
            if let Some(old) = current {
                out.done.push(format!(
                    "replaced health check {object}: {} -> {}",
                    old.id, hc.id
                ));
                doomed.push((object.clone(), old.clone(), "replaced"));
            } else {
                out.done
                    .push(format!("created health check {object}: {}", hc.id));
            }
            Ok(hc.id)
        }
        (Action::Update, Some(current)) => {
            if change.settings_differ() {
                api.update_health_check(&current.id, Some(current.version), &spec)
                    .await?;
                out.writes += 1;
            }
            if change.retag {
                let t = tags(cluster, object);
                api.change_tags(TagResource::HealthCheck, &current.id, &t, &[])
                    .await?;
                out.writes += 1;
            }
            let what: Vec<&str> = change.fields.iter().map(|f| f.field).collect();
            out.done.push(format!(
                "updated health check {object} ({}): {}",
                current.id,
                what.join(", ")
            ));
            Ok(current.id.clone())
        }
        (Action::Unchanged, Some(current)) => Ok(current.id.clone()),
        (action, _) => Err(ProvisionError::Internal(format!(
            "{object}: cannot apply {}",
            action.as_str()
        ))),
    }
}

/// Step 2 for one gate: one fenced write from `epoch`.
async fn apply_gate(
    api: &Arc<dyn Route53Api>,
    plan: &Plan,
    gate_plan: &GatePlan,
    epoch: u64,
    known: &super::CheckPlan,
    options: &Options,
    out: &mut Applied,
) -> Result<(), ProvisionError> {
    let name = &gate_plan.gate;
    let gate = plan
        .desired
        .gates
        .iter()
        .find(|g| g.spec.id().as_str() == name)
        .ok_or_else(|| ProvisionError::Internal(format!("gate {name} vanished")))?;
    let records = gate_records(gate, known)?;
    if records
        .records()
        .any(|r| r.health_check_id().is_some_and(is_placeholder))
    {
        return Err(ProvisionError::Internal(format!(
            "gate {name}: a record would reference a health check without an id"
        )));
    }
    let writer = writer_for(api, gate, options)?;
    let outcome = match writer.plan(epoch, &records).await? {
        crate::route53::Plan::Done(outcome) => outcome,
        crate::route53::Plan::Write(write) => {
            out.writes += 1;
            writer.commit(write).await?
        }
    };
    match outcome {
        ApplyOutcome::Applied {
            epoch,
            change_id,
            in_sync,
        } => out.done.push(format!(
            "wrote gate {name} records (fence epoch {epoch}, change {change_id}{})",
            if in_sync { ", INSYNC" } else { "" }
        )),
        ApplyOutcome::AlreadyInPlace { epoch } => out.done.push(format!(
            "gate {name} records already in place (fence epoch {epoch})"
        )),
        ApplyOutcome::Stale {
            expected_epoch,
            current,
        } => {
            return Err(ProvisionError::Stale {
                gate: name.clone(),
                expected: expected_epoch,
                current: current.map_or_else(|| "no fence".to_owned(), |f| f.to_string()),
            })
        }
        ApplyOutcome::LostRace { messages, .. } => {
            return Err(ProvisionError::LostRace {
                gate: name.clone(),
                messages: messages.join("; "),
            })
        }
    }
    Ok(())
}

/// Step 3: deletes calculated checks before the checks they aggregate, and keeps any check
/// something still references (a kept calculated check keeps its children too).
async fn delete_unreferenced(
    api: &dyn Route53Api,
    plan: &Plan,
    mut doomed: Vec<Doomed>,
    out: &mut Applied,
) -> Result<(), ProvisionError> {
    doomed.sort_by_key(|(_, c, _)| c.spec.kind != HealthCheckKind::Calculated);
    let doomed_ids: BTreeSet<String> = doomed.iter().map(|(_, c, _)| c.id.clone()).collect();
    let mut referenced = references(api, plan, &doomed_ids).await?;
    for (object, check, why) in doomed {
        if let Some(by) = referenced.get(&check.id) {
            out.kept.push(format!(
                "kept health check {object} ({}, {why}): still referenced by {by}",
                check.id
            ));
            for child in &check.spec.children {
                referenced
                    .entry(child.clone())
                    .or_insert_with(|| format!("kept calculated check {}", check.id));
            }
            continue;
        }
        match api.delete_health_check(&check.id).await {
            Ok(()) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        out.writes += 1;
        out.done.push(format!(
            "deleted health check {object} ({}, {why})",
            check.id
        ));
    }
    Ok(())
}

/// Health-check id → what references it: a record of a configured zone, or a calculated
/// check that is not about to be deleted.
async fn references(
    api: &dyn Route53Api,
    plan: &Plan,
    doomed: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, ProvisionError> {
    let mut by = BTreeMap::new();
    for hc in api.list_health_checks().await? {
        if doomed.contains(&hc.id) {
            continue;
        }
        for child in hc.spec.children {
            by.entry(child)
                .or_insert_with(|| format!("calculated check {}", hc.id));
        }
    }
    let zones: BTreeSet<&str> = plan
        .desired
        .gates
        .iter()
        .map(|g| g.zone_id.as_str())
        .collect();
    for zone in zones {
        for record in api.list_record_sets(zone, None).await? {
            if let Some(id) = record.health_check_id() {
                by.entry(id.to_owned())
                    .or_insert_with(|| format!("record {} in zone {zone}", record.key()));
            }
        }
    }
    Ok(by)
}
