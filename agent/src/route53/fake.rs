//! `MemoryRoute53`: a strict in-memory [`Route53Api`] for unit tests, and for what the emulator
//! fakes (GetChange always INSYNC, health-check versions neither bumped nor enforced).
//!
//! Change batches follow Route 53: each change is checked against the records as the earlier
//! changes of the batch left them, a DELETE must match the current record exactly, a CREATE of
//! an existing record fails, and a failing batch changes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::api::{ApiError, ApiFuture, Route53Api};
use super::types::{
    normalize_name, Change, ChangeAction, ChangeInfo, ChangeStatus, HealthCheck, HealthCheckSpec,
    RecordKey, RecordSet, TagResource, TagsById,
};

#[derive(Debug, Default)]
struct State {
    zones: BTreeMap<String, Zone>,
    changes: BTreeMap<String, u32>,
    next_id: u64,
    pending_polls: u32,
    failures: VecDeque<(&'static str, ApiError)>,
    requests: BTreeMap<&'static str, usize>,
    health_checks: BTreeMap<String, HealthCheck>,
    tags: BTreeMap<(TagResource, String), BTreeMap<String, String>>,
}

#[derive(Debug, Default)]
struct Zone {
    name: String,
    records: Vec<RecordSet>,
}

/// A strict, in-memory Route 53.
#[derive(Debug, Default)]
pub struct MemoryRoute53 {
    state: Mutex<State>,
}

impl MemoryRoute53 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an empty hosted zone.
    pub fn add_zone(&self, zone_id: &str, zone_name: &str) {
        self.lock().zones.insert(
            zone_id.to_owned(),
            Zone {
                name: normalize_name(zone_name),
                records: Vec::new(),
            },
        );
    }

    /// GetChange answers PENDING this many times per change before INSYNC.
    pub fn set_pending_polls(&self, polls: u32) {
        self.lock().pending_polls = polls;
    }

    /// The next call of `op` (e.g. "ChangeResourceRecordSets") fails with `error`.
    pub fn fail_next(&self, op: &'static str, error: ApiError) {
        self.lock().failures.push_back((op, error));
    }

    /// Calls of `op` so far (failed ones included).
    pub fn requests(&self, op: &str) -> usize {
        self.lock().requests.get(op).copied().unwrap_or(0)
    }

    /// Every record of the zone, in key order.
    pub fn records(&self, zone_id: &str) -> Vec<RecordSet> {
        let mut records = self
            .lock()
            .zones
            .get(zone_id)
            .map(|z| z.records.clone())
            .unwrap_or_default();
        records.sort_by(|a, b| a.key().cmp(b.key()));
        records
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread cannot leave the state half-written: every mutation below
        // installs its result with one assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the call and pops an injected failure for it.
    fn enter(&self, op: &'static str) -> Result<MutexGuard<'_, State>, ApiError> {
        let mut s = self.lock();
        *s.requests.entry(op).or_default() += 1;
        if let Some(i) = s.failures.iter().position(|(o, _)| *o == op) {
            if let Some((_, e)) = s.failures.remove(i) {
                return Err(e);
            }
        }
        Ok(s)
    }
}

fn not_found(op: &'static str, code: &str, message: String) -> ApiError {
    ApiError::NotFound {
        op,
        code: code.to_owned(),
        message,
    }
}

fn describe(key: &RecordKey) -> String {
    match key.set_identifier() {
        None => format!("[name='{}', type='{}']", key.name(), key.record_type()),
        Some(id) => format!(
            "[name='{}', type='{}', set-identifier='{id}']",
            key.name(),
            key.record_type()
        ),
    }
}

fn apply_batch(zone: &Zone, changes: &[Change]) -> Result<Vec<RecordSet>, ApiError> {
    let invalid = |m: String| ApiError::InvalidChangeBatch { messages: vec![m] };
    let mut staged = zone.records.clone();
    for change in changes {
        let key = change.record.key();
        if key.name() != zone.name && !key.name().ends_with(&format!(".{}", zone.name)) {
            return Err(invalid(format!(
                "RRSet with DNS name {} is not permitted in zone {}",
                key.name(),
                zone.name
            )));
        }
        let index = staged.iter().position(|r| r.key() == key);
        match (change.action, index) {
            (ChangeAction::Delete, None) => {
                return Err(invalid(format!(
                    "Tried to delete resource record set {} but it was not found",
                    describe(key)
                )))
            }
            (ChangeAction::Delete, Some(i)) if staged[i] != change.record => {
                return Err(invalid(format!(
                    "Tried to delete resource record set {} but the values provided do not match the current values",
                    describe(key)
                )))
            }
            (ChangeAction::Delete, Some(i)) => {
                staged.remove(i);
            }
            (ChangeAction::Create, Some(_)) => {
                return Err(invalid(format!(
                    "Tried to create resource record set {} but it already exists",
                    describe(key)
                )))
            }
            (ChangeAction::Create | ChangeAction::Upsert, None) => {
                staged.push(change.record.clone())
            }
            (ChangeAction::Upsert, Some(i)) => staged[i] = change.record.clone(),
        }
    }
    Ok(staged)
}

impl Route53Api for MemoryRoute53 {
    fn list_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        name: Option<&'a str>,
    ) -> ApiFuture<'a, Vec<RecordSet>> {
        const OP: &str = "ListResourceRecordSets";
        let result = self.enter(OP).and_then(|s| {
            let zone = s.zones.get(zone_id).ok_or_else(|| {
                not_found(
                    OP,
                    "NoSuchHostedZone",
                    format!("No hosted zone found with ID: {zone_id}"),
                )
            })?;
            let wanted = name.map(normalize_name);
            let mut records: Vec<RecordSet> = zone
                .records
                .iter()
                .filter(|r| wanted.as_deref().is_none_or(|w| r.name() == w))
                .cloned()
                .collect();
            records.sort_by(|a, b| a.key().cmp(b.key()));
            Ok(records)
        });
        Box::pin(async move { result })
    }

    fn change_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        changes: &'a [Change],
        _comment: &'a str,
    ) -> ApiFuture<'a, ChangeInfo> {
        const OP: &str = "ChangeResourceRecordSets";
        let result = self.enter(OP).and_then(|mut s| {
            let zone = s.zones.get(zone_id).ok_or_else(|| {
                not_found(
                    OP,
                    "NoSuchHostedZone",
                    format!("No hosted zone found with ID: {zone_id}"),
                )
            })?;
            let staged = apply_batch(zone, changes)?;
            if let Some(z) = s.zones.get_mut(zone_id) {
                z.records = staged;
            }
            s.next_id += 1;
            let id = format!("C{:012}", s.next_id);
            let pending = s.pending_polls;
            s.changes.insert(id.clone(), pending);
            let status = if pending == 0 {
                ChangeStatus::InSync
            } else {
                ChangeStatus::Pending
            };
            Ok(ChangeInfo { id, status })
        });
        Box::pin(async move { result })
    }

    fn get_change<'a>(&'a self, change_id: &'a str) -> ApiFuture<'a, ChangeInfo> {
        const OP: &str = "GetChange";
        let result = self.enter(OP).and_then(|mut s| {
            let left = s
                .changes
                .get_mut(change_id)
                .ok_or_else(|| not_found(OP, "NoSuchChange", format!("no change {change_id}")))?;
            let status = if *left == 0 {
                ChangeStatus::InSync
            } else {
                *left -= 1;
                ChangeStatus::Pending
            };
            Ok(ChangeInfo {
                id: change_id.to_owned(),
                status,
            })
        });
        Box::pin(async move { result })
    }

    fn create_health_check<'a>(
        &'a self,
        caller_reference: &'a str,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck> {
        const OP: &str = "CreateHealthCheck";
        let result = self.enter(OP).and_then(|mut s| {
            if let Some(existing) = s
                .health_checks
                .values()
                .find(|h| h.caller_reference == caller_reference)
            {
                return if existing.spec == *spec {
                    Ok(existing.clone())
                } else {
                    Err(ApiError::Rejected {
                        op: OP,
                        code: "HealthCheckAlreadyExists".into(),
                        message: format!("caller reference {caller_reference} is in use"),
                    })
                };
            }
            s.next_id += 1;
            let hc = HealthCheck {
                id: format!("hc-{:08}", s.next_id),
                caller_reference: caller_reference.to_owned(),
                version: 1,
                spec: spec.clone(),
            };
            s.health_checks.insert(hc.id.clone(), hc.clone());
            Ok(hc)
        });
        Box::pin(async move { result })
    }

    fn list_health_checks(&self) -> ApiFuture<'_, Vec<HealthCheck>> {
        let result = self
            .enter("ListHealthChecks")
            .map(|s| s.health_checks.values().cloned().collect());
        Box::pin(async move { result })
    }

    fn update_health_check<'a>(
        &'a self,
        id: &'a str,
        version: Option<i64>,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck> {
        const OP: &str = "UpdateHealthCheck";
        let result = self.enter(OP).and_then(|mut s| {
            let hc = s.health_checks.get_mut(id).ok_or_else(|| {
                not_found(
                    OP,
                    "NoSuchHealthCheck",
                    format!("A health check with id {id} does not exist."),
                )
            })?;
            if version.is_some_and(|v| v != hc.version) {
                return Err(ApiError::Rejected {
                    op: OP,
                    code: "HealthCheckVersionMismatch".into(),
                    message: format!("version {version:?} is not the current {}", hc.version),
                });
            }
            let kind = hc.spec.kind.clone();
            let interval = hc.spec.request_interval_s;
            hc.spec = HealthCheckSpec {
                kind,
                request_interval_s: interval,
                ..spec.clone()
            };
            hc.version += 1;
            Ok(hc.clone())
        });
        Box::pin(async move { result })
    }

    fn delete_health_check<'a>(&'a self, id: &'a str) -> ApiFuture<'a, ()> {
        const OP: &str = "DeleteHealthCheck";
        let result = self.enter(OP).and_then(|mut s| {
            s.health_checks.remove(id).map(|_| ()).ok_or_else(|| {
                not_found(
                    OP,
                    "NoSuchHealthCheck",
                    format!("A health check with id {id} does not exist."),
                )
            })
        });
        Box::pin(async move { result })
    }

    fn list_tags<'a>(
        &'a self,
        resource: TagResource,
        ids: &'a [String],
    ) -> ApiFuture<'a, TagsById> {
        let result = self.enter("ListTagsForResources").map(|s| {
            ids.iter()
                .map(|id| {
                    let tags = s
                        .tags
                        .get(&(resource, id.clone()))
                        .cloned()
                        .unwrap_or_default();
                    (id.clone(), tags)
                })
                .collect()
        });
        Box::pin(async move { result })
    }

    fn change_tags<'a>(
        &'a self,
        resource: TagResource,
        id: &'a str,
        add: &'a BTreeMap<String, String>,
        remove: &'a [String],
    ) -> ApiFuture<'a, ()> {
        let result = self.enter("ChangeTagsForResource").map(|mut s| {
            let tags = s.tags.entry((resource, id.to_owned())).or_default();
            for k in remove {
                tags.remove(k);
            }
            tags.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
        });
        Box::pin(async move { result })
    }
}
