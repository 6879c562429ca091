//! Plan and apply against the strict in-memory Route 53: order, idempotency, replacement,
//! ownership, CallerReference generations, control-plane and dry-run gates.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{Plane, SharedConfig};

use super::{dry_run, failover_gate, shared, weighted_gate, ZONE_ID};
use crate::provision::identity::{TAG_CLUSTER, TAG_OBJECT};
use crate::provision::{apply, plan, Action, GateStatus, Options, Plan};
use crate::route53::{
    ApiError, ApiFuture, Change, ChangeInfo, Fence, HealthCheck, HealthCheckSpec, MemoryRoute53,
    RecordSet, RecordTarget, Route53Api, TagResource, TagsById, WriterOptions,
};

/// [`MemoryRoute53`] that logs every call in order.
#[derive(Debug, Default)]
struct Recording {
    inner: MemoryRoute53,
    log: Mutex<Vec<String>>,
}

impl Recording {
    fn new() -> Arc<Self> {
        let r = Self::default();
        r.inner.add_zone(ZONE_ID, "example.com");
        Arc::new(r)
    }

    fn note(&self, op: &str, detail: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{op} {detail}").trim().to_owned());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn writes(log: &[String]) -> Vec<&String> {
        log.iter()
            .filter(|l| !l.starts_with("List") && !l.starts_with("GetChange"))
            .collect()
    }
}

impl Route53Api for Recording {
    fn list_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        name: Option<&'a str>,
    ) -> ApiFuture<'a, Vec<RecordSet>> {
        self.note("ListResourceRecordSets", name.unwrap_or("*"));
        self.inner.list_record_sets(zone_id, name)
    }
    fn change_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        changes: &'a [Change],
        comment: &'a str,
    ) -> ApiFuture<'a, ChangeInfo> {
        self.note("ChangeResourceRecordSets", "");
        self.inner.change_record_sets(zone_id, changes, comment)
    }
    fn get_change<'a>(&'a self, change_id: &'a str) -> ApiFuture<'a, ChangeInfo> {
        self.note("GetChange", "");
        self.inner.get_change(change_id)
    }
    fn create_health_check<'a>(
        &'a self,
        caller_reference: &'a str,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck> {
        self.note("CreateHealthCheck", spec.kind.as_str());
        self.inner.create_health_check(caller_reference, spec)
    }
    fn list_health_checks(&self) -> ApiFuture<'_, Vec<HealthCheck>> {
        self.note("ListHealthChecks", "");
        self.inner.list_health_checks()
    }
    fn update_health_check<'a>(
        &'a self,
        id: &'a str,
        version: Option<i64>,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck> {
        self.note("UpdateHealthCheck", id);
        self.inner.update_health_check(id, version, spec)
    }
    fn delete_health_check<'a>(&'a self, id: &'a str) -> ApiFuture<'a, ()> {
        self.note("DeleteHealthCheck", id);
        self.inner.delete_health_check(id)
    }
    fn list_tags<'a>(
        &'a self,
        resource: TagResource,
        ids: &'a [String],
    ) -> ApiFuture<'a, TagsById> {
        self.note("ListTagsForResources", "");
        self.inner.list_tags(resource, ids)
    }
    fn change_tags<'a>(
        &'a self,
        resource: TagResource,
        id: &'a str,
        add: &'a BTreeMap<String, String>,
        remove: &'a [String],
    ) -> ApiFuture<'a, ()> {
        self.note("ChangeTagsForResource", id);
        self.inner.change_tags(resource, id, add, remove)
    }
}

fn options() -> Options {
    Options {
        writer: WriterOptions {
            insync_poll: Duration::from_millis(10),
            insync_timeout: Duration::ZERO,
        },
        ..Options::default()
    }
}

async fn plan_for(api: &Arc<Recording>, cfg: &SharedConfig) -> Plan {
    let api: Arc<dyn Route53Api> = api.clone();
    plan(api, cfg, &options()).await.expect("plan")
}

async fn provision(api: &Arc<Recording>, cfg: &SharedConfig) -> Plan {
    let p = plan_for(api, cfg).await;
    let dyn_api: Arc<dyn Route53Api> = api.clone();
    apply(dyn_api, &p, &options()).await.expect("apply");
    p
}

async fn checks(api: &Recording) -> Vec<HealthCheck> {
    api.inner.list_health_checks().await.expect("list")
}

async fn tags_of(api: &Recording, id: &str) -> BTreeMap<String, String> {
    api.inner
        .list_tags(TagResource::HealthCheck, &[id.to_owned()])
        .await
        .expect("tags")
        .remove(id)
        .unwrap_or_default()
}

fn position(log: &[String], prefix: &str) -> Vec<usize> {
    log.iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test]
async fn first_provision_creates_children_then_parents_then_records() {
    let api = Recording::new();
    let cfg = shared(vec![failover_gate(Plane::Data), weighted_gate(Plane::Data)]);
    let p = provision(&api, &cfg).await;
    assert_eq!(p.counts().create, 12);
    let log = api.take();

    let agents = position(&log, "CreateHealthCheck HTTPS_STR_MATCH");
    let calculated = position(&log, "CreateHealthCheck CALCULATED");
    let records = position(&log, "ChangeResourceRecordSets");
    assert_eq!((agents.len(), calculated.len(), records.len()), (9, 3, 2));
    assert!(agents.iter().max() < calculated.iter().min(), "{log:#?}");
    assert!(calculated.iter().max() < records.iter().min(), "{log:#?}");
    assert_eq!(position(&log, "ChangeTagsForResource").len(), 12);
    assert!(position(&log, "DeleteHealthCheck").is_empty());

    // Every check tagged; every calculated check over its three agents with threshold 2.
    let all = checks(&api).await;
    assert_eq!(all.len(), 12);
    let by_id: BTreeMap<&str, &HealthCheck> = all.iter().map(|h| (h.id.as_str(), h)).collect();
    for hc in &all {
        let t = tags_of(&api, &hc.id).await;
        assert_eq!(t[TAG_CLUSTER], "prod");
        if t[TAG_OBJECT].starts_with("calculated/") {
            assert_eq!(hc.spec.health_threshold, Some(2));
            assert_eq!(hc.spec.children.len(), 3);
            let check = t[TAG_OBJECT].trim_start_matches("calculated/");
            for child in &hc.spec.children {
                let path = by_id[child.as_str()].spec.resource_path.clone();
                assert_eq!(
                    path.as_deref(),
                    Some(format!("/v1/health/{check}").as_str())
                );
            }
        }
    }
    // The records carry the calculated checks, behind a fence written by `provision`.
    let records = api.inner.records(ZONE_ID);
    let app: Vec<&RecordSet> = records
        .iter()
        .filter(|r| r.name() == "app.example.com.")
        .collect();
    assert_eq!(app.len(), 2);
    for r in &app {
        let hc = by_id[r.health_check_id().expect("health check")];
        assert!(hc.spec.health_threshold.is_some(), "a calculated check");
    }
    let fence = records
        .iter()
        .find(|r| r.name() == "_quorumgate.app.example.com.")
        .map(|r| Fence::from_record(r).expect("fence"))
        .expect("fence written");
    assert_eq!((fence.epoch, fence.by.as_str()), (1, "provision"));
}

#[tokio::test]
async fn a_second_provision_has_nothing_to_do_and_writes_nothing() {
    let api = Recording::new();
    let cfg = shared(vec![failover_gate(Plane::Data), weighted_gate(Plane::Data)]);
    provision(&api, &cfg).await;
    api.take();
    let p = provision(&api, &cfg).await;
    assert!(!p.has_changes(), "{}", crate::provision::render::plan(&p));
    assert!(p
        .gates
        .iter()
        .all(|g| matches!(g.status, GateStatus::InPlace { epoch: 1 })));
    let log = api.take();
    assert!(Recording::writes(&log).is_empty(), "{log:#?}");
    assert!(crate::provision::render::plan(&p).contains("No changes"));
}

#[tokio::test]
async fn an_immutable_change_replaces_repoints_then_deletes_the_old_checks() {
    let api = Recording::new();
    let mut cfg = shared(vec![failover_gate(Plane::Data)]);
    provision(&api, &cfg).await;
    let before: Vec<String> = checks(&api).await.into_iter().map(|h| h.id).collect();
    api.take();

    cfg.gates[0].health_checks.request_interval_s = 30;
    let p = provision(&api, &cfg).await;
    let c = p.counts();
    // 6 agent checks replaced (interval is immutable); the 2 calculated ones updated in place
    // with their new children.
    assert_eq!((c.replace, c.update, c.create, c.delete), (6, 2, 0, 0));
    let log = api.take();
    let creates = position(&log, "CreateHealthCheck");
    let updates = position(&log, "UpdateHealthCheck");
    let records = position(&log, "ChangeResourceRecordSets");
    let deletes = position(&log, "DeleteHealthCheck");
    assert_eq!((creates.len(), updates.len(), deletes.len()), (6, 2, 6));
    // The records did not change (same calculated ids): no record write.
    assert!(records.is_empty(), "{log:#?}");
    assert!(creates.iter().max() < updates.iter().min());
    assert!(updates.iter().max() < deletes.iter().min());

    let after = checks(&api).await;
    assert_eq!(after.len(), 8);
    for hc in &after {
        if hc.spec.health_threshold.is_none() {
            assert_eq!(hc.spec.request_interval_s, Some(30));
            assert!(
                !before.contains(&hc.id),
                "old agent check {} survived",
                hc.id
            );
        }
    }
    assert!(!provision(&api, &cfg).await.has_changes());
}

#[tokio::test]
async fn a_replaced_calculated_check_is_repointed_before_it_is_deleted() {
    let api = Recording::new();
    let cfg = shared(vec![failover_gate(Plane::Data)]);
    provision(&api, &cfg).await;
    // Someone replaced a calculated check by hand with a check of another type, and moved
    // our tags to it: only a replacement can fix that.
    let calc = checks(&api)
        .await
        .into_iter()
        .find(|h| h.spec.health_threshold.is_some())
        .expect("calculated");
    let t = tags_of(&api, &calc.id).await;
    let mut broken = calc.spec.clone();
    broken.kind = crate::route53::HealthCheckKind::Tcp;
    api.inner
        .delete_health_check(&calc.id)
        .await
        .expect("delete");
    let new = api
        .inner
        .create_health_check("manual", &broken)
        .await
        .expect("create");
    api.inner
        .change_tags(TagResource::HealthCheck, &new.id, &t, &[])
        .await
        .expect("tag");
    api.take();

    let p = provision(&api, &cfg).await;
    let change = p
        .checks
        .changes
        .iter()
        .find(|c| c.current.as_ref().is_some_and(|h| h.id == new.id))
        .expect("planned");
    assert_eq!(change.action, Action::Replace);
    let log = api.take();
    let create = position(&log, "CreateHealthCheck CALCULATED");
    let records = position(&log, "ChangeResourceRecordSets");
    let delete = position(&log, &format!("DeleteHealthCheck {}", new.id));
    assert_eq!(
        (create.len(), records.len(), delete.len()),
        (1, 1, 1),
        "{log:#?}"
    );
    assert!(create[0] < records[0] && records[0] < delete[0], "{log:#?}");
    assert!(!provision(&api, &cfg).await.has_changes());
}

#[tokio::test]
async fn foreign_checks_are_never_touched_and_referenced_obsolete_checks_are_kept() {
    let api = Recording::new();
    let full = shared(vec![failover_gate(Plane::Data), weighted_gate(Plane::Data)]);
    // A foreign check with exactly our settings, and one tagged by another cluster.
    let spec = HealthCheckSpec::https_string_match(
        "use1.example.com",
        8443,
        "/v1/health/app-use1",
        "HEALTHY",
    );
    let untagged = api
        .inner
        .create_health_check("foreign-1", &spec)
        .await
        .expect("create");
    let other = api
        .inner
        .create_health_check("foreign-2", &spec)
        .await
        .expect("create");
    let other_tags = BTreeMap::from([(TAG_CLUSTER.to_owned(), "staging".to_owned())]);
    api.inner
        .change_tags(TagResource::HealthCheck, &other.id, &other_tags, &[])
        .await
        .expect("tag");
    provision(&api, &full).await;

    // Drop the weighted gate: app-euc1's four checks become obsolete, but the gate's records
    // (which provision no longer manages) still use its calculated check: all four stay.
    let only_app = shared(vec![failover_gate(Plane::Data)]);
    let p = plan_for(&api, &only_app).await;
    assert_eq!(p.checks.obsolete.len(), 4);
    assert_eq!(p.checks.foreign, 2);
    api.take();
    let dyn_api: Arc<dyn Route53Api> = api.clone();
    let done = apply(dyn_api, &p, &options()).await.expect("apply");
    assert_eq!(done.kept.len(), 4, "{done:#?}");
    assert!(
        done.kept[0].contains("still referenced by record www.example.com. A [euc1]"),
        "{done:#?}"
    );
    assert!(Recording::writes(&api.take()).is_empty());

    // Once those records are gone, the next provision deletes them; foreign checks stay.
    let www: Vec<Change> = api
        .inner
        .records(ZONE_ID)
        .into_iter()
        .filter(|r| r.name() == "www.example.com.")
        .map(Change::delete)
        .collect();
    api.inner
        .change_record_sets(ZONE_ID, &www, "")
        .await
        .expect("delete www");
    let p = provision(&api, &only_app).await;
    assert_eq!(p.checks.obsolete.len(), 4);
    let log = api.take();
    assert_eq!(position(&log, "DeleteHealthCheck").len(), 4);
    let ids: Vec<String> = checks(&api).await.into_iter().map(|h| h.id).collect();
    assert_eq!(ids.len(), 8 + 2);
    assert!(ids.contains(&untagged.id) && ids.contains(&other.id));
    assert!(Recording::writes(&log)
        .iter()
        .all(|l| !l.contains(&untagged.id) && !l.contains(&other.id)));
    assert!(!provision(&api, &only_app).await.has_changes());
}

#[tokio::test]
async fn a_used_caller_reference_moves_to_the_next_generation() {
    let api = Recording::new();
    let cfg = shared(vec![failover_gate(Plane::Data)]);
    api.inner.fail_next(
        "CreateHealthCheck",
        ApiError::Rejected {
            op: "CreateHealthCheck",
            code: "HealthCheckAlreadyExists".into(),
            message: "used".into(),
        },
    );
    provision(&api, &cfg).await;
    let refs: Vec<String> = checks(&api)
        .await
        .into_iter()
        .map(|h| h.caller_reference)
        .collect();
    assert_eq!(refs.len(), 8);
    assert_eq!(
        refs.iter().filter(|r| r.ends_with("-1")).count(),
        1,
        "{refs:?}"
    );
    assert!(refs.iter().all(|r| r.len() <= 64));
}

#[tokio::test]
async fn a_lost_tag_is_recovered_through_the_caller_reference() {
    let api = Recording::new();
    let cfg = shared(vec![failover_gate(Plane::Data)]);
    // The create succeeds but the tagging fails (a crash between the two calls).
    api.inner.fail_next(
        "ChangeTagsForResource",
        ApiError::Unavailable {
            op: "ChangeTagsForResource",
            attempts: 1,
            elapsed_ms: 0,
            last: "test".into(),
        },
    );
    let p = plan_for(&api, &cfg).await;
    let dyn_api: Arc<dyn Route53Api> = api.clone();
    apply(dyn_api, &p, &options())
        .await
        .expect_err("tagging failed");
    assert_eq!(checks(&api).await.len(), 1);
    // The untagged check is foreign to the next plan; creating it again returns it.
    let p = provision(&api, &cfg).await;
    assert_eq!(p.checks.foreign, 1);
    assert_eq!(checks(&api).await.len(), 8, "no duplicate");
    assert!(!provision(&api, &cfg).await.has_changes());
}

#[tokio::test]
async fn control_plane_gates_get_initial_records_once_and_are_then_left_to_the_agents() {
    let api = Recording::new();
    let cfg = shared(vec![failover_gate(Plane::Control)]);
    let p = provision(&api, &cfg).await;
    assert!(p.checks.changes.is_empty());
    assert!(matches!(
        p.gates[0].status,
        GateStatus::Write { epoch: 0, .. }
    ));
    let app: Vec<RecordSet> = api
        .inner
        .records(ZONE_ID)
        .into_iter()
        .filter(|r| r.name() == "app.example.com.")
        .collect();
    assert_eq!(app.len(), 1);
    assert_eq!(app[0].target(), &RecordTarget::values(60, ["192.0.2.10"]));

    // The agents fail over (epoch 2): provision reports and does not touch it.
    let fence = api
        .inner
        .records(ZONE_ID)
        .into_iter()
        .find(|r| r.name().starts_with("_quorumgate."))
        .expect("fence");
    let next = Fence {
        epoch: 2,
        digest: "ab".repeat(32),
        by: "usw2".into(),
        changes: Vec::new(),
    };
    let moved = RecordSet::new(
        "app.example.com",
        "A",
        RecordTarget::values(60, ["198.51.100.10"]),
    );
    api.inner
        .change_record_sets(
            ZONE_ID,
            &[
                Change::delete(app[0].clone()),
                Change::delete(fence),
                Change::create(moved),
                Change::create(next.record("_quorumgate.app.example.com")),
            ],
            "",
        )
        .await
        .expect("agents' write");
    api.take();
    let p = provision(&api, &cfg).await;
    assert_eq!(
        p.gates[0].status,
        GateStatus::OwnedByAgents {
            epoch: 2,
            records: 1
        }
    );
    assert!(!p.has_changes());
    assert!(Recording::writes(&api.take()).is_empty());
    assert!(crate::provision::render::plan(&p).contains("owned by the agents (epoch 2"));
}

#[tokio::test]
async fn dry_run_only_holds_back_a_control_plane_gate() {
    let api = Recording::new();
    // A data-plane gate never writes at run time: dry-run changes nothing for provision.
    let cfg = shared(vec![
        dry_run(failover_gate(Plane::Data)),
        dry_run(weighted_gate(Plane::Control)),
    ]);
    let p = provision(&api, &cfg).await;
    assert!(matches!(p.gates[0].status, GateStatus::Write { .. }));
    assert!(matches!(p.gates[1].status, GateStatus::DryRun { .. }));
    assert_eq!(checks(&api).await.len(), 8);
    let names: Vec<String> = api
        .inner
        .records(ZONE_ID)
        .iter()
        .map(|r| r.name().to_owned())
        .collect();
    assert!(names.iter().any(|n| n == "app.example.com."));
    assert!(names.iter().all(|n| !n.contains("www")), "{names:?}");
    let again = plan_for(&api, &cfg).await;
    assert!(
        !again.has_changes(),
        "a dry-run gate's initial records are not a pending change"
    );
    assert!(crate::provision::render::plan(&again).contains("dry-run gate"));
}
