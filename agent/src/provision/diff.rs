//! The difference between what exists and what should exist, per object, as data.
//!
//! Health checks are matched by their `quorumgate:object` tag, never by settings, and only
//! among the ones carrying this cluster's tag. Settings are compared field by field after
//! normalising what Route 53 fills in by itself (default interval, threshold, regions, SNI).
//! A difference Route 53 can apply in place is an update (UpdateHealthCheck, with the
//! version read); a difference in an immutable field (type, request interval), or one that
//! would need a field cleared, is a replacement: create the new check, repoint, delete the
//! old one.

use std::collections::{BTreeMap, BTreeSet};

use super::desired::{Desired, DEFAULT_REGIONS};
use super::identity::{ownership, tags, ObjectId, Ownership};
use crate::route53::{
    DesiredRecords, HealthCheck, HealthCheckKind, HealthCheckSpec, RecordKey, RecordSet,
    RecordTarget, View,
};

/// A health check as read, with its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedCheck {
    pub check: HealthCheck,
    pub tags: BTreeMap<String, String>,
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    pub field: &'static str,
    /// `-` for "not set".
    pub from: String,
    pub to: String,
    /// Route 53 cannot change it in place.
    pub forces_replacement: bool,
}

/// What happens to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    Unchanged,
}

impl Action {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Replace => "replace",
            Self::Delete => "delete",
            Self::Unchanged => "unchanged",
        }
    }
}

/// The plan for one desired health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckChange {
    pub object: ObjectId,
    /// Create, Update, Replace or Unchanged.
    pub action: Action,
    /// The existing check this object is (Update, Unchanged) or replaces (Replace).
    pub current: Option<HealthCheck>,
    /// Settings that differ (tags included, as `tags.<key>`).
    pub fields: Vec<FieldDiff>,
    /// Only the tags differ, or they differ too.
    pub retag: bool,
}

impl CheckChange {
    /// Whether UpdateHealthCheck is needed (not just tags).
    #[must_use]
    pub fn settings_differ(&self) -> bool {
        self.fields.iter().any(|f| !f.field.starts_with("tags."))
    }
}

/// Why an owned health check goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its object is no longer in the config (a member, check or gate was removed).
    NotConfigured,
    /// Another check of the same object was chosen (left over from an interrupted run).
    Duplicate,
}

/// An owned health check that should not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obsolete {
    pub object: ObjectId,
    pub check: HealthCheck,
    pub reason: DeleteReason,
}

/// An id as far as planning knows it: an existing check's, or one only `apply` will learn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlannedId {
    Known(String),
    New,
}

/// The health-check half of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckPlan {
    /// One per desired object, in object order.
    pub changes: Vec<CheckChange>,
    /// Owned checks to delete, after the records no longer use them.
    pub obsolete: Vec<Obsolete>,
    /// Checks without this cluster's tag: never touched.
    pub foreign: usize,
    /// Checks with this cluster's tag but no readable object tag: reported, never touched.
    pub unidentified: Vec<(String, Option<String>)>,
    /// The id each desired object will have.
    pub ids: BTreeMap<ObjectId, PlannedId>,
}

/// How an unknown id is shown (and carried through record planning).
#[must_use]
pub fn placeholder(object: &ObjectId) -> String {
    format!("(new {object})")
}

/// Whether `id` is a [`placeholder`], not a Route 53 id.
#[must_use]
pub fn is_placeholder(id: &str) -> bool {
    id.starts_with("(new ")
}

impl CheckPlan {
    /// The id of `object` for display and record planning: the real one, or a placeholder.
    #[must_use]
    pub fn id_or_placeholder(&self, object: &ObjectId) -> String {
        match self.ids.get(object) {
            Some(PlannedId::Known(id)) => id.clone(),
            _ => placeholder(object),
        }
    }
}

/// Matches what exists against what should, object by object.
#[must_use]
pub fn plan_checks(desired: &Desired, observed: &[ObservedCheck]) -> CheckPlan {
    let mut plan = CheckPlan::default();
    let mut owned: BTreeMap<ObjectId, Vec<&ObservedCheck>> = BTreeMap::new();
    for o in observed {
        match ownership(&desired.cluster, &o.tags) {
            Ownership::Foreign => plan.foreign += 1,
            Ownership::Unidentified(tag) => plan.unidentified.push((o.check.id.clone(), tag)),
            Ownership::Owned(object) => owned.entry(object).or_default().push(o),
        }
    }
    for (object, want) in &desired.checks {
        let mut candidates = owned.remove(object).unwrap_or_default();
        candidates.sort_by(|a, b| a.check.id.cmp(&b.check.id));
        let spec = want.resolve(|child| plan.id_or_placeholder(child));
        let wanted_tags = tags(&desired.cluster, object);
        // Prefer a check needing nothing, then one that can be updated in place.
        let scored = candidates.iter().enumerate().map(|(i, c)| {
            let fields = diff_check(&c.check.spec, &spec, &c.tags, &wanted_tags);
            let rank = if fields.is_empty() {
                0
            } else if fields.iter().any(|f| f.forces_replacement) {
                2
            } else {
                1
            };
            (rank, i, fields)
        });
        let best = scored.min_by_key(|(rank, i, _)| (*rank, *i));
        let change = match best {
            None => {
                plan.ids.insert(object.clone(), PlannedId::New);
                CheckChange {
                    object: object.clone(),
                    action: Action::Create,
                    current: None,
                    fields: Vec::new(),
                    retag: false,
                }
            }
            Some((rank, index, fields)) => {
                let chosen = candidates.remove(index);
                for dup in candidates {
                    plan.obsolete.push(Obsolete {
                        object: object.clone(),
                        check: dup.check.clone(),
                        reason: DeleteReason::Duplicate,
                    });
                }
                let retag = fields.iter().any(|f| f.field.starts_with("tags."));
                let action = match rank {
                    0 => Action::Unchanged,
                    1 => Action::Update,
                    _ => Action::Replace,
                };
                let id = if action == Action::Replace {
                    PlannedId::New
                } else {
                    PlannedId::Known(chosen.check.id.clone())
                };
                plan.ids.insert(object.clone(), id);
                CheckChange {
                    object: object.clone(),
                    action,
                    current: Some(chosen.check.clone()),
                    fields,
                    retag,
                }
            }
        };
        plan.changes.push(change);
    }
    for (object, checks) in owned {
        for c in checks {
            plan.obsolete.push(Obsolete {
                object: object.clone(),
                check: c.check.clone(),
                reason: DeleteReason::NotConfigured,
            });
        }
    }
    // Parents before children: a calculated check goes before the checks it aggregates.
    plan.obsolete
        .sort_by(|a, b| b.object.cmp(&a.object).then(a.check.id.cmp(&b.check.id)));
    plan
}

fn show(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn is_endpoint(kind: &HealthCheckKind) -> bool {
    matches!(
        kind,
        HealthCheckKind::Http
            | HealthCheckKind::Https
            | HealthCheckKind::HttpStrMatch
            | HealthCheckKind::HttpsStrMatch
            | HealthCheckKind::Tcp
    )
}

/// The fields of `spec` that matter for its kind, normalised to what Route 53 reports.
fn fields(spec: &HealthCheckSpec) -> Vec<(&'static str, String)> {
    let mut out = vec![("type", spec.kind.as_str().to_owned())];
    if is_endpoint(&spec.kind) {
        let https = matches!(
            spec.kind,
            HealthCheckKind::Https | HealthCheckKind::HttpsStrMatch
        );
        let str_match = matches!(
            spec.kind,
            HealthCheckKind::HttpStrMatch | HealthCheckKind::HttpsStrMatch
        );
        let mut regions: Vec<&str> = spec.regions.iter().map(String::as_str).collect();
        regions.sort_unstable();
        regions.dedup();
        let mut default = DEFAULT_REGIONS.to_vec();
        default.sort_unstable();
        let regions = (!regions.is_empty() && regions != default).then(|| regions.join(","));
        out.extend([
            (
                "fqdn",
                show(spec.fqdn.as_ref().map(|f| f.to_ascii_lowercase())),
            ),
            ("ip_address", show(spec.ip_address.as_ref())),
            ("port", show(spec.port)),
            ("resource_path", show(spec.resource_path.as_ref())),
            (
                "search_string",
                show(spec.search_string.as_ref().filter(|_| str_match)),
            ),
            // Route 53's defaults when not given: 30 s, 3 failures.
            (
                "request_interval",
                spec.request_interval_s.unwrap_or(30).to_string(),
            ),
            (
                "failure_threshold",
                spec.failure_threshold.unwrap_or(3).to_string(),
            ),
            (
                "enable_sni",
                // Meaningful for HTTPS only, where Route 53 defaults it to true.
                show(https.then(|| spec.enable_sni.unwrap_or(true))),
            ),
            ("regions", show(regions)),
        ]);
    } else if spec.kind == HealthCheckKind::Calculated {
        let mut children = spec.children.clone();
        children.sort();
        out.extend([
            ("health_threshold", show(spec.health_threshold)),
            (
                "children",
                show((!children.is_empty()).then(|| children.join(","))),
            ),
        ]);
    }
    out.extend([
        ("inverted", spec.inverted.to_string()),
        ("disabled", spec.disabled.to_string()),
    ]);
    out
}

/// Fields that differ between `current` and `wanted`, our tags included.
#[must_use]
pub fn diff_check(
    current: &HealthCheckSpec,
    wanted: &HealthCheckSpec,
    current_tags: &BTreeMap<String, String>,
    wanted_tags: &BTreeMap<String, String>,
) -> Vec<FieldDiff> {
    let now: BTreeMap<_, _> = fields(current).into_iter().collect();
    let mut out = Vec::new();
    for (field, to) in fields(wanted) {
        let from = now.get(field).cloned().unwrap_or_else(|| "-".to_owned());
        if from == to {
            continue;
        }
        // Type and interval are fixed at creation; a field that must become empty cannot be
        // cleared by UpdateHealthCheck without ResetElements (and IPAddress not at all).
        let forces_replacement =
            matches!(field, "type" | "request_interval") || (to == "-" && from != "-");
        out.push(FieldDiff {
            field,
            from,
            to,
            forces_replacement,
        });
    }
    for (key, to) in wanted_tags {
        let from = current_tags.get(key);
        if from != Some(to) {
            out.push(FieldDiff {
                field: tag_field(key),
                from: show(from),
                to: to.clone(),
                forces_replacement: false,
            });
        }
    }
    out
}

fn tag_field(key: &str) -> &'static str {
    match key {
        super::identity::TAG_NAME => "tags.Name",
        super::identity::TAG_CLUSTER => "tags.quorumgate:cluster",
        _ => "tags.quorumgate:object",
    }
}

/// The change of one record set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordDiff {
    pub key: RecordKey,
    /// Create, Update, Delete or Unchanged.
    pub action: Action,
    /// The record as it will be (the current one for a delete).
    pub record: RecordSet,
    pub fields: Vec<FieldDiff>,
}

fn record_fields(r: &RecordSet) -> Vec<(&'static str, String)> {
    let mut out = vec![("routing", r.routing().to_string())];
    match r.target() {
        RecordTarget::Values { ttl, values } => {
            out.push(("ttl", ttl.to_string()));
            out.push(("values", values.join(",")));
        }
        RecordTarget::Alias { .. } => out.push(("alias", r.target().to_string())),
    }
    out.push(("health_check", show(r.health_check_id())));
    out
}

/// Record-by-record difference between the gate's records in the zone and the desired ones.
#[must_use]
pub fn diff_records(view: &View, desired: &DesiredRecords) -> Vec<RecordDiff> {
    let current: BTreeMap<&RecordKey, &RecordSet> =
        view.records.iter().map(|r| (r.key(), r)).collect();
    let keys: BTreeSet<&RecordKey> = current
        .keys()
        .copied()
        .chain(desired.records().map(RecordSet::key))
        .collect();
    let mut out = Vec::new();
    for key in keys {
        let (action, record, fields) = match (current.get(key), desired.get(key)) {
            (None, Some(want)) => (Action::Create, want, Vec::new()),
            (Some(now), None) => (Action::Delete, *now, Vec::new()),
            (Some(now), Some(want)) if *now == want => (Action::Unchanged, want, Vec::new()),
            (Some(now), Some(want)) => {
                let before: BTreeMap<_, _> = record_fields(now).into_iter().collect();
                let after: BTreeMap<_, _> = record_fields(want).into_iter().collect();
                let names: BTreeSet<&&str> = before.keys().chain(after.keys()).collect();
                let fields = names
                    .into_iter()
                    .filter_map(|f| {
                        let from = before.get(f).cloned().unwrap_or_else(|| "-".into());
                        let to = after.get(f).cloned().unwrap_or_else(|| "-".into());
                        (from != to).then_some(FieldDiff {
                            field: f,
                            from,
                            to,
                            forces_replacement: false,
                        })
                    })
                    .collect();
                (Action::Update, want, fields)
            }
            (None, None) => continue,
        };
        out.push(RecordDiff {
            key: key.clone(),
            action,
            record: record.clone(),
            fields,
        });
    }
    out
}
