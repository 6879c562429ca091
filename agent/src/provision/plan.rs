//! Reading Route 53 and planning: what `quorumgate plan` shows and `quorumgate provision`
//! then applies. Reads only.

use std::collections::BTreeMap;
use std::sync::Arc;

use config::{GateConfig, Plane, SharedConfig};
use quorum::gate::Mode;

use super::desired::{desired, Desired};
use super::diff::{diff_records, plan_checks, Action, CheckPlan, ObservedCheck, RecordDiff};
use super::ProvisionError;
use crate::gates::records::{control_records, data_plane_records};
use crate::route53::{
    ApiError, DesiredRecords, FencedWriter, GateTarget, Route53Api, TagResource, View,
    WriterOptions,
};

/// `by=` in the fence of every record write `provision` makes: it is not an agent, and the
/// fence says so.
pub const WRITER_ID: &str = "provision";

/// How `provision` writes records.
#[derive(Clone, Debug)]
pub struct Options {
    /// `by=` in the fences it writes.
    pub writer_id: String,
    pub writer: WriterOptions,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            writer_id: WRITER_ID.to_owned(),
            writer: WriterOptions::default(),
        }
    }
}

/// What happens to one gate's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateStatus {
    /// The records are what they should be.
    InPlace { epoch: u64 },
    /// One fenced write (expecting the fence at `epoch`) makes them so.
    Write {
        epoch: u64,
        records: Vec<RecordDiff>,
    },
    /// A control-plane gate in `mode = "dry-run"` without records yet: what the initial write
    /// would do; `provision` leaves the zone alone (quorumgate writes no DNS for it).
    DryRun {
        epoch: u64,
        records: Vec<RecordDiff>,
    },
    /// A control-plane gate whose fence or records exist: the agents own them; never touched.
    OwnedByAgents { epoch: u64, records: usize },
}

/// The plan for one gate's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatePlan {
    pub gate: String,
    pub plane: Plane,
    pub mode: Mode,
    pub zone_id: String,
    pub zone_name: String,
    pub fence_name: String,
    pub status: GateStatus,
}

/// Everything `plan` found and `provision` would do.
#[derive(Clone, Debug)]
pub struct Plan {
    pub desired: Desired,
    pub checks: CheckPlan,
    /// One per gate, in config order.
    pub gates: Vec<GatePlan>,
}

/// How many objects change, by kind of change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub unchanged: usize,
    /// Gates whose records one fenced write changes.
    pub gate_writes: usize,
}

impl Plan {
    #[must_use]
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for change in &self.checks.changes {
            match change.action {
                Action::Create => c.create += 1,
                Action::Update => c.update += 1,
                Action::Replace => c.replace += 1,
                Action::Delete => c.delete += 1,
                Action::Unchanged => c.unchanged += 1,
            }
        }
        c.delete += self.checks.obsolete.len();
        c.gate_writes = self
            .gates
            .iter()
            .filter(|g| matches!(g.status, GateStatus::Write { .. }))
            .count();
        c
    }

    /// Whether `provision` would send any write.
    #[must_use]
    pub fn has_changes(&self) -> bool {
        let c = self.counts();
        c.create + c.update + c.replace + c.delete + c.gate_writes > 0
    }
}

/// Every health check of the account with its tags (ListHealthChecks, then
/// ListTagsForResources in batches of 10).
pub async fn read_checks(api: &dyn Route53Api) -> Result<Vec<ObservedCheck>, ApiError> {
    let checks = api.list_health_checks().await?;
    let ids: Vec<String> = checks.iter().map(|c| c.id.clone()).collect();
    let mut tags = api.list_tags(TagResource::HealthCheck, &ids).await?;
    Ok(checks
        .into_iter()
        .map(|check| ObservedCheck {
            tags: tags.remove(&check.id).unwrap_or_default(),
            check,
        })
        .collect())
}

/// The fenced writer of `gate`'s records.
pub fn writer_for(
    api: &Arc<dyn Route53Api>,
    gate: &GateConfig,
    options: &Options,
) -> Result<FencedWriter, ProvisionError> {
    Ok(FencedWriter::new(
        api.clone(),
        GateTarget {
            zone_id: gate.zone_id.clone(),
            zone_name: gate.zone_name.clone(),
            gate: gate.spec.id().to_string(),
            agent: options.writer_id.clone(),
        },
        options.writer,
    )?)
}

/// The records `gate` should have, with the calculated checks' ids (or placeholders) `ids`.
pub fn gate_records(
    gate: &GateConfig,
    checks: &CheckPlan,
) -> Result<DesiredRecords, ProvisionError> {
    Ok(match gate.plane {
        Plane::Data => {
            let ids: BTreeMap<_, _> = gate
                .spec
                .targets()
                .into_iter()
                .map(|t| {
                    let object = Desired::calculated(&t.check);
                    (t.check.clone(), checks.id_or_placeholder(&object))
                })
                .collect();
            data_plane_records(gate, &ids)?
        }
        Plane::Control => control_records(gate, &gate.spec.normal_state())?,
    })
}

/// Pure: what to do with `gate`'s records given what was read.
#[must_use]
pub fn gate_status(gate: &GateConfig, view: &View, desired: &DesiredRecords) -> GateStatus {
    let epoch = view.epoch();
    if gate.plane == Plane::Control && (view.fence.is_some() || !view.records.is_empty()) {
        return GateStatus::OwnedByAgents {
            epoch,
            records: view.records.len(),
        };
    }
    if desired.matches(&view.records) {
        return GateStatus::InPlace { epoch };
    }
    let records = diff_records(view, desired);
    // Dry-run matters for control-plane gates only: a data-plane gate never writes at run
    // time, so its mode changes nothing (the config warns about it).
    match (gate.plane, gate.spec.mode()) {
        (Plane::Control, Mode::DryRun) => GateStatus::DryRun { epoch, records },
        _ => GateStatus::Write { epoch, records },
    }
}

/// Reads Route 53 and plans everything for `shared`'s gates.
pub async fn plan(
    api: Arc<dyn Route53Api>,
    shared: &SharedConfig,
    options: &Options,
) -> Result<Plan, ProvisionError> {
    let desired = desired(shared).map_err(ProvisionError::Model)?;
    plan_desired(api, desired, options).await
}

/// [`plan`] for an already computed [`Desired`].
pub async fn plan_desired(
    api: Arc<dyn Route53Api>,
    desired: Desired,
    options: &Options,
) -> Result<Plan, ProvisionError> {
    let observed = read_checks(api.as_ref()).await?;
    let checks = plan_checks(&desired, &observed);
    let mut gates = Vec::with_capacity(desired.gates.len());
    for gate in &desired.gates {
        let records = gate_records(gate, &checks)?;
        let writer = writer_for(&api, gate, options)?;
        let view = writer.read(&records).await?;
        gates.push(GatePlan {
            gate: gate.spec.id().to_string(),
            plane: gate.plane,
            mode: gate.spec.mode(),
            zone_id: gate.zone_id.clone(),
            zone_name: gate.zone_name.clone(),
            fence_name: writer.fence_name().to_owned(),
            status: gate_status(gate, &view, &records),
        });
    }
    Ok(Plan {
        desired,
        checks,
        gates,
    })
}
