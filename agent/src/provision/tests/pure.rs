//! The desired objects and the diff, without any API.

use std::collections::BTreeMap;

use config::Plane;
use quorum::{AgentId, CheckId};

use super::{failover_gate, id, shared, weighted_gate};
use crate::provision::desired::{desired, Desired, ModelError, DEFAULT_REGIONS};
use crate::provision::diff::{
    diff_records, plan_checks, Action, CheckPlan, DeleteReason, ObservedCheck, PlannedId,
};
use crate::provision::identity::{tags, ObjectId, TAG_CLUSTER, TAG_NAME, TAG_OBJECT};
use crate::provision::plan::gate_records;
use crate::route53::{
    FailoverRole, HealthCheck, HealthCheckKind, HealthCheckSpec, RecordSet, RecordTarget, Routing,
    View,
};

fn agent(member: &str, check: &str) -> ObjectId {
    ObjectId::Agent {
        check: id::<CheckId>(check),
        member: id::<AgentId>(member),
    }
}

fn calculated(check: &str) -> ObjectId {
    ObjectId::Calculated {
        check: id::<CheckId>(check),
    }
}

fn both() -> Desired {
    desired(&shared(vec![
        failover_gate(Plane::Data),
        weighted_gate(Plane::Data),
    ]))
    .expect("desired")
}

#[test]
fn one_string_match_check_per_agent_and_one_calculated_check_per_check() {
    let d = both();
    assert_eq!((d.members, d.quorum), (3, 2));
    // app-use1 is shared by both gates: three checks, each 3 agents + 1 calculated.
    let objects: Vec<String> = d.checks.keys().map(ToString::to_string).collect();
    assert_eq!(
        objects,
        [
            "agent/euc1/app-euc1",
            "agent/use1/app-euc1",
            "agent/usw2/app-euc1",
            "agent/euc1/app-use1",
            "agent/use1/app-use1",
            "agent/usw2/app-use1",
            "agent/euc1/app-usw2",
            "agent/use1/app-usw2",
            "agent/usw2/app-usw2",
            "calculated/app-euc1",
            "calculated/app-use1",
            "calculated/app-usw2",
        ]
    );
    let a = &d.checks[&agent("usw2", "app-use1")];
    assert_eq!(
        a.spec,
        HealthCheckSpec {
            kind: HealthCheckKind::HttpsStrMatch,
            fqdn: Some("usw2.example.com".into()),
            ip_address: None,
            port: Some(8443),
            resource_path: Some("/v1/health/app-use1".into()),
            search_string: Some("HEALTHY".into()),
            request_interval_s: Some(10),
            failure_threshold: Some(2),
            health_threshold: None,
            children: vec![],
            inverted: false,
            disabled: false,
            enable_sni: Some(true),
            regions: vec![],
        }
    );
    let c = &d.checks[&calculated("app-use1")];
    assert_eq!(c.spec.kind, HealthCheckKind::Calculated);
    assert_eq!(c.spec.health_threshold, Some(2));
    assert_eq!(
        c.children,
        [
            agent("euc1", "app-use1"),
            agent("use1", "app-use1"),
            agent("usw2", "app-use1")
        ]
    );
    assert_eq!(
        c.resolve(|o| format!("id-{o}")).children,
        [
            "id-agent/euc1/app-use1",
            "id-agent/use1/app-use1",
            "id-agent/usw2/app-use1"
        ]
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn http_urls_ip_literals_and_base_paths() {
    let mut cfg = shared(vec![failover_gate(Plane::Data)]);
    cfg.members[0].health_url = Some("http://203.0.114.7/qg/".parse().expect("url"));
    cfg.members[1].health_url = Some("https://[2001:db8::7]:9000/".parse().expect("url"));
    cfg.members[2].health_url = Some("https://10.0.0.7/".parse().expect("url"));
    let d = desired(&cfg).expect("desired");
    let euc1 = &d.checks[&agent("euc1", "app-use1")].spec;
    assert_eq!(euc1.kind, HealthCheckKind::HttpStrMatch);
    assert_eq!(euc1.ip_address.as_deref(), Some("203.0.114.7"));
    assert_eq!(euc1.fqdn, None);
    assert_eq!(euc1.port, Some(80));
    assert_eq!(
        euc1.resource_path.as_deref(),
        Some("/qg/v1/health/app-use1")
    );
    assert_eq!(euc1.enable_sni, None, "SNI is an HTTPS setting");
    let use1 = &d.checks[&agent("use1", "app-use1")].spec;
    assert_eq!(use1.kind, HealthCheckKind::HttpsStrMatch);
    assert_eq!(use1.ip_address.as_deref(), Some("2001:db8::7"));
    assert_eq!(use1.port, Some(9000));
    assert_eq!(use1.enable_sni, Some(false), "no name to send");
    // Route 53's checkers cannot reach a private address.
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("10.0.0.7"), "{:?}", d.warnings);
}

#[test]
fn config_problems_are_all_reported() {
    let mut cfg = shared(vec![failover_gate(Plane::Data)]);
    cfg.members[0].health_url = None;
    cfg.members[1].health_url = Some("ftp://x.example.com/".parse().expect("url"));
    let mut other = weighted_gate(Plane::Data);
    other.health_checks.request_interval_s = 30;
    cfg.gates.push(other);
    let errors = desired(&cfg).expect_err("invalid");
    assert!(errors
        .iter()
        .any(|e| matches!(e, ModelError::MissingHealthUrl { member, .. } if member == "euc1")));
    assert!(errors
        .iter()
        .any(|e| matches!(e, ModelError::BadHealthUrl { member, .. } if member == "use1")));
    assert!(errors.iter().any(
        |e| matches!(e, ModelError::ConflictingSettings { check, .. } if check == "app-use1")
    ));
    // Control-plane gates need no health checks (nor health URLs).
    let mut cfg = shared(vec![failover_gate(Plane::Control)]);
    cfg.members[0].health_url = None;
    assert!(desired(&cfg).expect("control only").checks.is_empty());
}

#[test]
fn a_calculated_check_takes_at_most_255_children() {
    let base = shared(vec![failover_gate(Plane::Data)]);
    let with = |n: usize| {
        let mut cfg = base.clone();
        let template = cfg.members[0].clone();
        cfg.members = (0..n)
            .map(|i| {
                let mut m = template.clone();
                m.id = id(&format!("m{i:03}"));
                m
            })
            .collect();
        desired(&cfg)
    };
    let d = with(255).expect("255 children fit");
    assert_eq!(d.checks[&calculated("app-use1")].children.len(), 255);
    let errors = with(256).expect_err("256 do not");
    assert!(matches!(
        errors[..],
        [ModelError::TooManyChildren { children: 256, .. }, ..]
    ));
}

#[test]
fn records_carry_the_calculated_check_of_their_target() {
    let d = both();
    let mut plan = CheckPlan::default();
    for o in d.checks.keys() {
        plan.ids
            .insert(o.clone(), PlannedId::Known(format!("hc-{o}")));
    }
    let failover = gate_records(&d.gates[0], &plan).expect("records");
    let records: Vec<&RecordSet> = failover.records().collect();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].routing(),
        &Routing::Failover(FailoverRole::Primary)
    );
    assert_eq!(records[0].set_identifier(), Some("use1"));
    assert_eq!(records[0].health_check_id(), Some("hc-calculated/app-use1"));
    assert_eq!(
        records[1].routing(),
        &Routing::Failover(FailoverRole::Secondary)
    );
    assert_eq!(records[1].health_check_id(), Some("hc-calculated/app-usw2"));
    let weighted = gate_records(&d.gates[1], &plan).expect("records");
    let records: Vec<&RecordSet> = weighted.records().collect();
    assert_eq!(records[0].set_identifier(), Some("euc1"));
    assert_eq!(records[0].routing(), &Routing::Weighted { weight: 50 });
    assert_eq!(records[0].health_check_id(), Some("hc-calculated/app-euc1"));
    assert!(matches!(records[0].target(), RecordTarget::Alias { .. }));
    assert_eq!(records[1].routing(), &Routing::Weighted { weight: 100 });
    assert_eq!(records[1].health_check_id(), Some("hc-calculated/app-use1"));
    // Before apply, new checks show as placeholders.
    let failover = gate_records(&d.gates[0], &CheckPlan::default()).expect("records");
    assert_eq!(
        failover
            .records()
            .next()
            .and_then(RecordSet::health_check_id),
        Some("(new calculated/app-use1)")
    );
}

/// What provision would have created for `d`, as Route 53 reports it (moto's quirks included).
fn existing(d: &Desired) -> Vec<ObservedCheck> {
    let ids: BTreeMap<ObjectId, String> = d
        .checks
        .keys()
        .enumerate()
        .map(|(i, o)| (o.clone(), format!("hc-{i:02}")))
        .collect();
    d.checks
        .values()
        .map(|want| {
            let mut spec = want.resolve(|o| ids[o].clone());
            if spec.kind == HealthCheckKind::Calculated {
                spec.enable_sni = Some(false); // moto reports it for calculated checks
            } else {
                spec.regions = DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect();
            }
            ObservedCheck {
                check: HealthCheck {
                    id: ids[&want.object].clone(),
                    caller_reference: format!("ref-{}", ids[&want.object]),
                    version: 1,
                    spec,
                },
                tags: tags(&d.cluster, &want.object),
            }
        })
        .collect()
}

fn foreign(id: &str, tags: &[(&str, &str)]) -> ObservedCheck {
    ObservedCheck {
        check: HealthCheck {
            id: id.into(),
            caller_reference: id.into(),
            version: 1,
            spec: HealthCheckSpec::https_string_match("x.example.com", 443, "/", "HEALTHY"),
        },
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn change<'a>(plan: &'a CheckPlan, object: &ObjectId) -> &'a crate::provision::CheckChange {
    plan.changes
        .iter()
        .find(|c| &c.object == object)
        .expect("planned")
}

#[test]
fn nothing_exists_so_everything_is_created() {
    let d = both();
    let plan = plan_checks(&d, &[]);
    assert!(plan.changes.iter().all(|c| c.action == Action::Create));
    assert_eq!(plan.changes.len(), 12);
    assert!(plan.ids.values().all(|i| *i == PlannedId::New));
}

#[test]
fn what_provision_made_is_unchanged_and_foreign_checks_are_ignored() {
    let d = both();
    let mut observed = existing(&d);
    observed.push(foreign("untagged", &[]));
    observed.push(foreign(
        "other-cluster",
        &[
            (TAG_CLUSTER, "staging"),
            (TAG_OBJECT, "agent/use1/app-use1"),
        ],
    ));
    observed.push(foreign("ours-unreadable", &[(TAG_CLUSTER, "prod")]));
    let plan = plan_checks(&d, &observed);
    let actions: Vec<Action> = plan.changes.iter().map(|c| c.action).collect();
    assert!(
        actions.iter().all(|a| *a == Action::Unchanged),
        "{:?}",
        plan.changes
    );
    assert!(plan.obsolete.is_empty());
    assert_eq!(plan.foreign, 2);
    assert_eq!(plan.unidentified, [("ours-unreadable".to_owned(), None)]);
}

#[test]
fn mutable_drift_is_an_update_with_the_fields_that_differ() {
    let d = both();
    let mut observed = existing(&d);
    let target = agent("use1", "app-use1");
    let o = observed
        .iter_mut()
        .find(|o| o.tags[TAG_OBJECT] == target.to_string())
        .expect("observed");
    o.check.spec.search_string = Some("OK".into());
    o.check.spec.failure_threshold = Some(5);
    o.tags.remove(TAG_NAME);
    let plan = plan_checks(&d, &observed);
    let c = change(&plan, &target);
    assert_eq!(c.action, Action::Update);
    assert!(c.retag && c.settings_differ());
    let fields: Vec<(&str, &str, &str)> = c
        .fields
        .iter()
        .map(|f| (f.field, f.from.as_str(), f.to.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("search_string", "OK", "HEALTHY"),
            ("failure_threshold", "5", "2"),
            ("tags.Name", "-", "quorumgate prod agent/use1/app-use1"),
        ]
    );
    let others = plan
        .changes
        .iter()
        .filter(|c| c.object != target && c.action != Action::Unchanged)
        .count();
    assert_eq!(others, 0, "the calculated check keeps its children");
}

#[test]
fn immutable_drift_replaces_and_the_calculated_parent_follows() {
    let d = both();
    let mut observed = existing(&d);
    let target = agent("euc1", "app-usw2");
    let o = observed
        .iter_mut()
        .find(|o| o.tags[TAG_OBJECT] == target.to_string())
        .expect("observed");
    o.check.spec.request_interval_s = Some(30);
    let old_id = o.check.id.clone();
    let plan = plan_checks(&d, &observed);
    let c = change(&plan, &target);
    assert_eq!(c.action, Action::Replace);
    assert!(c
        .fields
        .iter()
        .any(|f| f.field == "request_interval" && f.forces_replacement));
    assert_eq!(
        c.current.as_ref().map(|h| h.id.as_str()),
        Some(old_id.as_str())
    );
    let parent = change(&plan, &calculated("app-usw2"));
    assert_eq!(parent.action, Action::Update);
    assert_eq!(parent.fields.len(), 1);
    assert_eq!(parent.fields[0].field, "children");
    assert!(parent.fields[0].to.contains("(new agent/euc1/app-usw2)"));
}

#[test]
fn clearing_a_field_or_changing_the_type_replaces() {
    let d = both();
    let target = agent("use1", "app-euc1");
    for mutate in [
        (|s: &mut HealthCheckSpec| s.kind = HealthCheckKind::HttpStrMatch)
            as fn(&mut HealthCheckSpec),
        |s| s.regions = vec!["us-east-1".into(), "eu-west-1".into(), "sa-east-1".into()],
        |s| s.ip_address = Some("203.0.113.9".into()),
    ] {
        let mut observed = existing(&d);
        let o = observed
            .iter_mut()
            .find(|o| o.tags[TAG_OBJECT] == target.to_string())
            .expect("observed");
        mutate(&mut o.check.spec);
        let plan = plan_checks(&d, &observed);
        assert_eq!(
            change(&plan, &target).action,
            Action::Replace,
            "{:?}",
            change(&plan, &target).fields
        );
    }
}

#[test]
fn obsolete_and_duplicate_owned_checks_are_deleted_parents_first() {
    let d = both();
    let mut observed = existing(&d);
    // A member that was removed from the config, with its calculated check of a removed check.
    for (i, object) in [agent("gone", "app-use1"), calculated("old-check")]
        .into_iter()
        .enumerate()
    {
        observed.push(ObservedCheck {
            check: HealthCheck {
                id: format!("obsolete-{i}"),
                caller_reference: format!("obsolete-{i}"),
                version: 1,
                spec: HealthCheckSpec::calculated(2, vec![]),
            },
            tags: tags("prod", &object),
        });
    }
    // A second check of one object (an interrupted replacement), with worse settings.
    let mut dup = observed[0].clone();
    dup.check.id = "zz-duplicate".into();
    dup.check.spec.request_interval_s = Some(30);
    observed.push(dup);
    let plan = plan_checks(&d, &observed);
    assert!(plan.changes.iter().all(|c| c.action == Action::Unchanged));
    let deletes: Vec<(&str, DeleteReason)> = plan
        .obsolete
        .iter()
        .map(|o| (o.check.id.as_str(), o.reason))
        .collect();
    assert_eq!(
        deletes,
        [
            ("obsolete-1", DeleteReason::NotConfigured),
            ("obsolete-0", DeleteReason::NotConfigured),
            ("zz-duplicate", DeleteReason::Duplicate),
        ]
    );
}

#[test]
fn record_drift_is_shown_field_by_field() {
    let d = both();
    let mut plan = CheckPlan::default();
    for o in d.checks.keys() {
        plan.ids
            .insert(o.clone(), PlannedId::Known(format!("hc-{o}")));
    }
    let desired = gate_records(&d.gates[0], &plan).expect("records");
    let mut current: Vec<RecordSet> = desired.records().cloned().collect();
    current[1] = RecordSet::new(
        "app.example.com",
        "A",
        RecordTarget::values(300, ["198.51.100.10"]),
    )
    .with_routing("usw2", Routing::Failover(FailoverRole::Secondary))
    .with_health_check("hc-calculated/app-usw2");
    let view = View {
        fence: None,
        fence_record: None,
        records: current,
    };
    let diffs = diff_records(&view, &desired);
    assert_eq!(diffs[0].action, Action::Unchanged);
    assert_eq!(diffs[1].action, Action::Update);
    let f: Vec<(&str, &str, &str)> = diffs[1]
        .fields
        .iter()
        .map(|f| (f.field, f.from.as_str(), f.to.as_str()))
        .collect();
    assert_eq!(f, [("ttl", "300", "60")]);
    let empty = View {
        fence: None,
        fence_record: None,
        records: vec![],
    };
    assert!(diff_records(&empty, &desired)
        .iter()
        .all(|r| r.action == Action::Create));
}
