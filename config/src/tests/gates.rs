//! `[[gates]]`, `[[operators]]`, the members' `health_url`, `cluster.operator_max_valid_for`
//! and `[local.route53]`: parsing, defaults, one case per rule, and the environment.

// `Jail::expect_with` takes closures returning `figment::Result`, whose error is large.
#![allow(clippy::result_large_err)]

use std::path::Path;

use base64::Engine as _;
use figment::Jail;
use quorum::gate::{GateKind, GatePolicy, Mode};

use super::{assert_cases, edited, errors, ok, Del, Edit, Set};
use crate::{Config, Plane, RecordAnswer};

/// A second operator with a key of its own.
pub(crate) const OPERATOR_BOB: &str =
    r#"{ id = "bob", public_key = "DhUzvpSERjXm96zd7jH5k7o2SE07Ylrb9xlk9Dudd0M=" }"#;

/// `checks[3]`: the standby region's database; `checks[4]`: its replication lag.
const CHECK_DB_USW2: &str = r#"{ id = "db-usw2", tcp = { address = "db-usw2.internal:5432" } }"#;
const CHECK_DB_LAG: &str = r#"{ id = "db-lag", replication_lag = { engine = "postgres", host = "db-usw2.internal", dbname = "orders", user = "qg" } }"#;

/// `gates[2]`: a control-plane failover pair with the RPO rule.
const GATE_DB: &str = r#"{ id = "db", plane = "control", zone_id = "Z0123456789ABC", zone = "example.com", record = "db.example.com", type = "CNAME", kind = "failover", max_rpo = "30s", targets = [
    { id = "use1", check = "db", role = "primary", values = ["db-use1.example.net"] },
    { id = "usw2", check = "db-usw2", role = "secondary", values = ["db-usw2.example.net"], lag_check = "db-lag" },
] }"#;

/// The base plus `gates[2]` (and the checks it needs), then `extra`.
pub(crate) fn with_db<'a>(extra: &[Edit<'a>]) -> Vec<Edit<'a>> {
    let mut all = vec![
        Set("checks.3", CHECK_DB_USW2),
        Set("checks.4", CHECK_DB_LAG),
        Set("gates.2", GATE_DB),
    ];
    all.extend_from_slice(extra);
    all
}

fn values(v: &[&str]) -> RecordAnswer {
    RecordAnswer::Values(v.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn base_gates_parse_into_expected_values() {
    let c = ok(&[]);
    let [app, web] = c.shared.gates.as_slice() else {
        panic!("{:?}", c.shared.gates)
    };

    assert_eq!(app.spec.id().as_str(), "app");
    assert_eq!(app.plane, Plane::Data);
    assert_eq!(app.spec.mode(), Mode::Live);
    assert_eq!(app.zone_id, "Z0123456789ABC");
    assert_eq!(app.zone_name, "example.com.");
    assert_eq!(app.record_name, "app.example.com.");
    assert_eq!(app.record_type, "A");
    assert_eq!(app.ttl_s, 60);
    assert_eq!(*app.spec.policy(), GatePolicy::default());
    let GateKind::Failover { primary, secondary } = app.spec.kind() else {
        panic!("{:?}", app.spec.kind())
    };
    assert_eq!(
        (primary.id.as_str(), primary.check.as_str()),
        ("use1", "app")
    );
    assert_eq!(
        (secondary.id.as_str(), secondary.check.as_str()),
        ("usw2", "dns")
    );
    assert_eq!(secondary.lag_check, None);
    let ids: Vec<&str> = app.targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["use1", "usw2"]);
    assert_eq!(app.targets[0].answer, values(&["192.0.2.10"]));
    assert_eq!(app.targets[1].answer, values(&["192.0.2.20", "192.0.2.21"]));
    assert_eq!(app.health_checks.request_interval_s, 10);
    assert_eq!(app.health_checks.failure_threshold, 2);
    assert_eq!(
        app.health_checks.regions,
        ["us-east-1", "us-west-2", "eu-west-1"]
    );

    assert_eq!(web.plane, Plane::Control);
    assert_eq!(web.spec.mode(), Mode::DryRun);
    assert_eq!(web.zone_id, "Z0123456789ABC"); // "/hostedzone/" dropped
    assert_eq!(
        (web.record_name.as_str(), web.record_type.as_str()),
        ("www.example.com.", "CNAME")
    );
    assert_eq!(web.ttl_s, 300);
    assert_eq!(web.writer_stagger_ms, 2000);
    assert_eq!(
        *web.spec.policy(),
        GatePolicy {
            min_serving: 1,
            max_changes: 5,
            window_ms: 1_800_000,
            wait_period_ms: 10_000,
            auto_failback: true,
            max_rpo_ms: None,
        }
    );
    let GateKind::Weighted { targets } = web.spec.kind() else {
        panic!("{:?}", web.spec.kind())
    };
    let weights: Vec<(&str, &str, u8)> = targets
        .iter()
        .map(|w| (w.target.id.as_str(), w.target.check.as_str(), w.weight))
        .collect();
    assert_eq!(weights, [("use1", "app", 100), ("usw2", "db", 50)]);
    // written usw2, use1; kept in the spec's order (by id)
    let ids: Vec<&str> = web.targets.iter().map(|t| t.id.as_str()).collect();
    let spec_ids: Vec<&str> = web.spec.targets().iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        (ids.as_slice(), spec_ids.as_slice()),
        (&["use1", "usw2"][..], &["use1", "usw2"][..])
    );
    assert_eq!(
        web.targets[0].answer,
        RecordAnswer::Alias {
            hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
            dns_name: "lb-1.us-east-1.elb.amazonaws.com.".into(),
            evaluate_target_health: false,
        }
    );
    assert_eq!(web.targets[1].answer, values(&["www-usw2.example.net."]));
    assert_eq!(
        web.target(&quorum::TargetId::new("usw2").unwrap())
            .map(|t| &t.answer),
        Some(&values(&["www-usw2.example.net."]))
    );

    let [alice] = c.shared.operators.as_slice() else {
        panic!("{:?}", c.shared.operators)
    };
    assert_eq!(alice.id.as_str(), "alice");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(alice.public_key.as_bytes()),
        "QdWSz1xsjJTOzkyHpX8WKeDhuR2py7ASg2VshZJR2yw="
    );
    assert_eq!(c.shared.cluster.operator_max_valid_for_ms, 3_600_000);
    assert_eq!(
        c.member(&quorum::AgentId::new("usw2").unwrap())
            .and_then(|m| m.health_url.as_ref())
            .map(url::Url::as_str),
        Some("https://usw2.example.com:8443/")
    );

    let r = &c.local.route53;
    assert_eq!(
        r.endpoint_url.as_ref().map(url::Url::as_str),
        Some("http://127.0.0.1:5000/")
    );
    assert_eq!(r.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        (
            r.connect_timeout_ms,
            r.attempt_timeout_ms,
            r.operation_timeout_ms,
            r.max_requests_per_second,
            r.insync_timeout_ms
        ),
        (3000, 10_000, 60_000, 4, 120_000)
    );
}

#[test]
fn rpo_gate_and_several_operators_parse() {
    let c = ok(&with_db(&[Set("operators.1", OPERATOR_BOB)]));
    let db = &c.shared.gates[2];
    assert_eq!(db.spec.policy().max_rpo_ms, Some(30_000));
    let GateKind::Failover { primary, secondary } = db.spec.kind() else {
        panic!("{:?}", db.spec.kind())
    };
    assert_eq!(primary.lag_check, None);
    assert_eq!(
        secondary.lag_check.as_ref().map(|c| c.as_str()),
        Some("db-lag")
    );
    assert_eq!(db.targets[1].answer, values(&["db-usw2.example.net."]));
    let ids: Vec<&str> = c.shared.operators.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    // failover targets follow the spec (primary first), not the file
    let c = ok(&with_db(&[
        Set("gates.2.targets.0.role", r#""secondary""#),
        Set("gates.2.targets.1.role", r#""primary""#),
        Del("gates.2.targets.1.lag_check"),
        Set("gates.2.targets.0.lag_check", r#""db-lag""#),
    ]));
    let ids: Vec<&str> = c.shared.gates[2]
        .targets
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(ids, ["usw2", "use1"]);
}

#[test]
fn defaults_are_applied() {
    let c = ok(&[
        Del("cluster.operator_max_valid_for"),
        Set(
            "gates.0",
            r#"{ id = "app", zone_id = "Z1", zone = "example.com", record = "example.com", kind = "failover", targets = [
                { id = "a", check = "app", role = "primary", values = ["192.0.2.1"] },
                { id = "b", check = "dns", role = "secondary", alias = { zone_id = "Z2", name = "lb.example.net" } },
            ] }"#,
        ),
        Set(
            "gates.1",
            r#"{ id = "web", plane = "control", zone_id = "Z1", zone = "example.com", record = "www.example.com", kind = "weighted", targets = [
                { id = "a", check = "app", weight = 1, values = ["192.0.2.1"] },
            ] }"#,
        ),
        Del("local.route53"),
    ]);
    assert_eq!(c.shared.cluster.operator_max_valid_for_ms, 3_600_000);
    let [app, web] = c.shared.gates.as_slice() else {
        panic!()
    };
    for g in [app, web] {
        assert_eq!(*g.spec.policy(), GatePolicy::default());
        assert_eq!(g.spec.mode(), Mode::Live);
        assert_eq!((g.record_type.as_str(), g.ttl_s), ("A", 60));
        assert_eq!(g.writer_stagger_ms, 2000);
        assert_eq!(
            (
                g.health_checks.request_interval_s,
                g.health_checks.failure_threshold,
                g.health_checks.regions.len()
            ),
            (10, 2, 0)
        );
    }
    assert_eq!(app.plane, Plane::Data);
    assert_eq!(app.record_name, "example.com."); // the apex
    assert_eq!(
        app.targets[1].answer,
        RecordAnswer::Alias {
            hosted_zone_id: "Z2".into(),
            dns_name: "lb.example.net.".into(),
            evaluate_target_health: false,
        }
    );
    let r = &c.local.route53;
    assert_eq!((r.endpoint_url.as_ref(), r.region.as_deref()), (None, None));
    assert_eq!(
        (
            r.connect_timeout_ms,
            r.attempt_timeout_ms,
            r.operation_timeout_ms,
            r.max_requests_per_second,
            r.insync_timeout_ms
        ),
        (3000, 10_000, 60_000, 4, 120_000)
    );
    // no [[gates]] and no [[operators]] at all, and health_url is optional then
    let c = ok(&[Del("gates"), Del("operators"), Del("members.0.health_url")]);
    assert!(c.shared.gates.is_empty() && c.shared.operators.is_empty());
    assert_eq!(c.shared.members[0].health_url, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // insync_timeout may be zero: don't wait
    let c = ok(&[Set("local.route53.insync_timeout", r#""0s""#)]);
    assert_eq!(c.local.route53.insync_timeout_ms, 0);
}

/// (edits, expected error path, substring of the problem).
type Case = (&'static [Edit<'static>], &'static str, &'static str);

const MEMBER0_KEY: &str = r#""iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=""#;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // unknown keys and wrong types
    (&[Set("gates.0.zone_name", r#""x""#)], "gates[0].zone_name", "unknown key"),
    (&[Set("gates.0.targets.0.valeus", "[]")], "gates[0].targets[0].valeus", "unknown key"),
    (&[Set("gates.1.targets.1.alias.ttl", "1")], "gates[1].targets[1].alias.ttl", "unknown key"),
    (&[Set("operators.0.key", r#""x""#)], "operators[0].key", "unknown key"),
    (&[Set("local.route53.endpoint", r#""x""#)], "local.route53.endpoint", "unknown key"),
    (&[Set("gates", "{}")], "gates", "expected an array"),
    (&[Set("operators", "1")], "operators", "expected an array"),
    (&[Set("gates.0.targets", "{}")], "gates[0].targets", "expected an array"),
    (&[Set("gates.0.targets.1.values", "[1]")], "gates[0].targets[1].values[0]", "expected a string"),
    (&[Set("gates.0.plane", r#""both""#)], "gates[0].plane", "unknown value"),
    (&[Set("gates.0.mode", r#""dryrun""#)], "gates[0].mode", "unknown value"),
    (&[Set("gates.0.kind", r#""roundrobin""#)], "gates[0].kind", "unknown value"),
    (&[Set("gates.0.type", r#""MX""#)], "gates[0].type", "unknown value"),
    (&[Set("gates.0.targets.0.role", r#""main""#)], "gates[0].targets[0].role", "unknown value"),
    (&[Set("gates.0.ttl", "-1")], "gates[0].ttl", "expected a non-negative integer"),
    (&[Set("gates.0.auto_failback", r#""no""#)], "gates[0].auto_failback", "expected a boolean"),
    (&[Set("gates.1.targets.1.alias.evaluate_target_health", r#""yes""#)], "gates[1].targets[1].alias.evaluate_target_health", "expected a boolean"),
    (&[Set("local.route53", "5")], "local.route53", "expected a table"),
    // [cluster]
    (&[Set("cluster.operator_max_valid_for", r#""25h""#)], "cluster.operator_max_valid_for", "must be at most 1day"),
    (&[Set("cluster.operator_max_valid_for", r#""0s""#)], "cluster.operator_max_valid_for", "at least 1ms"),
    // [[members]] health_url
    (&[Set("members.0.health_url", r#""ftp://use1.example.com""#)], "members[0].health_url", "scheme"),
    (&[Set("members.0.health_url", r#""https://use1.example.com:8443/?a=1""#)], "members[0].health_url", "query"),
    (&[Set("members.0.health_url", r#""https://u:p@use1.example.com""#)], "members[0].health_url", "credentials"),
    (&[Set("members.1.health_url", r#""https://use1.example.com:8443""#)], "members[1].health_url", "same health URL as members[0]"),
    (&[Del("members.1.health_url")], "members[1].health_url", "is required: gates[0] (\"app\") has plane = \"data\""),
    (&[Del("members.1.health_url")], "members[1].health_url", "member \"usw2\""),
    // [[operators]]
    (&[Del("operators.0.id")], "operators[0].id", "required"),
    (&[Set("operators.0.id", r#""al ice""#)], "operators[0].id", "not a valid id"),
    (&[Del("operators.0.public_key")], "operators[0].public_key", "required"),
    (&[Set("operators.0.public_key", r#""AAEC""#)], "operators[0].public_key", "decodes to 3 bytes"),
    (&[Set("operators.1", r#"{ id = "alice", public_key = "DhUzvpSERjXm96zd7jH5k7o2SE07Ylrb9xlk9Dudd0M=" }"#)], "operators[1].id", "duplicate id"),
    (&[Set("operators.1", r#"{ id = "bob", public_key = "QdWSz1xsjJTOzkyHpX8WKeDhuR2py7ASg2VshZJR2yw=" }"#)], "operators[1].public_key", "same public key as operators[0]"),
    (&[Set("operators.0.public_key", MEMBER0_KEY)], "operators[0].public_key", "an agent key must not also authorise operator commands"),
    // [[gates]]: id, zone, record, type, ttl, kind
    (&[Del("gates.0.id")], "gates[0].id", "required"),
    (&[Set("gates.0.id", r#""App""#)], "gates[0].id", "not one DNS label"),
    (&[Set("gates.0.id", r#""app-""#)], "gates[0].id", "not one DNS label"),
    (&[Set("gates.0.id", r#""app.eu""#)], "gates[0].id", "not one DNS label"),
    (&[Set("gates.0.id", r#""app/1""#)], "gates[0].id", "not a valid id"),
    (&[Set("gates.1.id", r#""app""#)], "gates[1].id", "duplicate id \"app\" (also gates[0])"),
    (&[Del("gates.0.zone_id")], "gates[0].zone_id", "required"),
    (&[Set("gates.0.zone_id", r#""z0123""#)], "gates[0].zone_id", "not a Route 53 hosted zone id"),
    (&[Set("gates.0.zone_id", r#""/hostedzone/""#)], "gates[0].zone_id", "not a Route 53 hosted zone id"),
    (&[Set("gates.0.zone_id", r#""Z0123456789ABCDEFGHIJKLMNOPQRSTUV""#)], "gates[0].zone_id", "not a Route 53 hosted zone id"),
    (&[Del("gates.0.zone")], "gates[0].zone", "required"),
    (&[Set("gates.0.zone", r#""example..com""#)], "gates[0].zone", "not a DNS name"),
    (&[Del("gates.0.record")], "gates[0].record", "required"),
    (&[Set("gates.0.record", r#""app example.com""#)], "gates[0].record", "not a DNS name"),
    (&[Set("gates.0.record", r#""app.example.org""#)], "gates[0].record", "not in the zone example.com."),
    (&[Set("gates.0.record", r#""badexample.com""#)], "gates[0].record", "not in the zone"),
    (&[Set("gates.0.record", r#""_quorumgate.app.example.com""#)], "gates[0].record", "fence record"),
    (&[Set("gates.1.record", r#""example.com""#)], "gates[1].type", "CNAME record cannot be at the zone apex"),
    (&[Set("gates.0.ttl", "2147483648")], "gates[0].ttl", "between 0 and 2147483647"),
    (&[Del("gates.0.kind")], "gates[0].kind", "required"),
    // policy
    (&[Set("gates.0.min_serving", "0")], "gates[0].min_serving", "between 1 and 100"),
    (&[Set("gates.0.min_serving", "2")], "gates[0].min_serving", "between 1 and 1 for this gate"),
    (&[Set("gates.1.min_serving", "3")], "gates[1].min_serving", "between 1 and 2 for this gate"),
    (&[Set("gates.0.max_changes", "0")], "gates[0].max_changes", "between 1 and"),
    (&[Set("gates.0.window", r#""0s""#)], "gates[0].window", "at least 1ms"),
    (&[Set("gates.0.wait_period", r#""soon""#)], "gates[0].wait_period", "not a duration"),
    (&[Set("gates.1.writer_stagger", r#""soon""#)], "gates[1].writer_stagger", "not a duration"),
    (&[Set("gates.0.max_rpo", r#""0s""#)], "gates[0].max_rpo", "at least 1ms"),
    (&[Set("gates.1.max_rpo", r#""30s""#)], "gates[1].max_rpo", "failover gates only"),
    (&[Set("gates.0.max_rpo", r#""30s""#)], "gates[0].targets[1].lag_check", "is required: max_rpo is set"),
    // health checks
    (&[Set("gates.0.health_check_interval", "20")], "gates[0].health_check_interval", "must be 10 or 30"),
    (&[Set("gates.0.health_check_failure_threshold", "0")], "gates[0].health_check_failure_threshold", "between 1 and 10"),
    (&[Set("gates.0.health_check_failure_threshold", "11")], "gates[0].health_check_failure_threshold", "between 1 and 10"),
    (&[Set("gates.0.health_check_regions", r#"["us-east-1", "us-west-2"]"#)], "gates[0].health_check_regions", "Route 53 needs at least 3"),
    (&[Set("gates.0.health_check_regions", r#"["us-east-1", "us-west-2", "us-east-1"]"#)], "gates[0].health_check_regions[2]", "listed twice"),
    (&[Set("gates.0.health_check_regions", r#"["us-east-1", "us-west-2", "Mars"]"#)], "gates[0].health_check_regions[2]", "not an AWS region code"),
    // targets: shape
    (&[Del("gates.0.targets")], "gates[0].targets", "is required"),
    (&[Set("gates.0.targets", "[]")], "gates[0].targets", "exactly 2 targets"),
    (&[Set("gates.0.targets.2", r#"{ id = "euc1", check = "db", role = "secondary", values = ["192.0.2.30"] }"#)], "gates[0].targets", "exactly 2 targets"),
    (&[Set("gates.1.targets", "[]")], "gates[1].targets", "at least one target"),
    (&[Set("gates.0.targets.1.role", r#""primary""#)], "gates[0].targets[1].role", "targets[0] is also the primary"),
    (&[Set("gates.0.targets.0.role", r#""secondary""#)], "gates[0].targets[1].role", "targets[0] is also the secondary"),
    (&[Del("gates.0.targets.0.role")], "gates[0].targets[0].role", "required"),
    (&[Set("gates.0.targets.0.weight", "10")], "gates[0].targets[0].weight", "have a role, not a weight"),
    (&[Set("gates.1.targets.0.role", r#""primary""#)], "gates[1].targets[0].role", "have a weight, not a role"),
    (&[Del("gates.1.targets.0.weight")], "gates[1].targets[0].weight", "required"),
    (&[Set("gates.1.targets.0.weight", "0")], "gates[1].targets[0].weight", "between 1 and 255"),
    (&[Set("gates.1.targets.0.weight", "256")], "gates[1].targets[0].weight", "between 1 and 255"),
    // targets: ids and checks
    (&[Del("gates.0.targets.0.id")], "gates[0].targets[0].id", "required"),
    (&[Set("gates.0.targets.0.id", r#""use 1""#)], "gates[0].targets[0].id", "not a valid id"),
    (&[Set("gates.0.targets.1.id", r#""use1""#)], "gates[0].targets[1].id", "duplicate id \"use1\" (also targets[0])"),
    (&[Del("gates.0.targets.0.check")], "gates[0].targets[0].check", "required"),
    (&[Set("gates.0.targets.0.check", r#""nope""#)], "gates[0].targets[0].check", "not a [[checks]] id"),
    (&[Set("gates.0.targets.1.check", r#""app""#)], "gates[0].targets[1].check", "already judges targets[0]"),
    (&[Set("gates.0.max_rpo", r#""30s""#), Set("gates.0.targets.1.lag_check", r#""db""#)], "gates[0].targets[1].lag_check", "is a tcp check"),
    (&[Set("gates.0.max_rpo", r#""30s""#), Set("gates.0.targets.1.lag_check", r#""nope""#)], "gates[0].targets[1].lag_check", "not a [[checks]] id"),
    (&[Set("gates.1.targets.0.lag_check", r#""dns""#)], "gates[1].targets[0].lag_check", "failover gates only"),
    // targets: answers
    (&[Set("gates.1.targets.1.values", r#"["x.example.net"]"#)], "gates[1].targets[1].alias", "both set"),
    (&[Del("gates.0.targets.0.values")], "gates[0].targets[0]", "has no answer"),
    (&[Set("gates.0.targets.0.values", "[]")], "gates[0].targets[0].values", "must not be empty"),
    (&[Set("gates.0.targets.1.values", r#"["192.0.2.20", "2001:db8::1"]"#)], "gates[0].targets[1].values[1]", "not an IPv4 address"),
    (&[Set("gates.0.targets.1.values", r#"["192.0.2.20", "192.0.2.20"]"#)], "gates[0].targets[1].values[1]", "listed twice"),
    (&[Set("gates.0.type", r#""AAAA""#)], "gates[0].targets[0].values[0]", "not an IPv6 address"),
    (&[Set("gates.1.targets.0.values", r#"["a.example.net", "b.example.net"]"#)], "gates[1].targets[0].values", "exactly one"),
    (&[Set("gates.1.targets.0.values", r#"["not a name"]"#)], "gates[1].targets[0].values[0]", "not a DNS name"),
    (&[Del("gates.1.targets.1.alias.zone_id")], "gates[1].targets[1].alias.zone_id", "required"),
    (&[Set("gates.1.targets.1.alias.zone_id", r#""elb""#)], "gates[1].targets[1].alias.zone_id", "not a Route 53 hosted zone id"),
    (&[Set("gates.1.targets.1.alias.name", r#""lb 1""#)], "gates[1].targets[1].alias.name", "not a DNS name"),
    (&[Del("gates.1.targets.1.alias.name")], "gates[1].targets[1].alias.name", "required"),
    // plane rules and rules across gates
    (&[Set("gates.0.plane", r#""control""#), Set("gates.0.targets.1.values", r#"["192.0.2.10"]"#)], "gates[0].targets[1].values", "answers the same as targets[0]"),
    (&[Set("gates.1.record", r#""app.example.com""#), Set("gates.1.type", r#""A""#), Set("gates.1.targets.0.values", r#"["192.0.2.30"]"#)], "gates[1].record", "gates[0] already manages app.example.com. A"),
    (&[Set("gates.1.record", r#""app.example.com""#)], "gates[1].record", "a CNAME cannot share its name"),
    (&[Set("gates.1.zone", r#""example.org""#), Set("gates.1.record", r#""www.example.org""#)], "gates[1].zone", "hosted zone Z0123456789ABC is example.com. in gates[0]"),
    // [local.route53]
    (&[Set("local.route53.endpoint_url", r#""ftp://127.0.0.1:5000""#)], "local.route53.endpoint_url", "scheme"),
    (&[Set("local.route53.endpoint_url", r#""moto""#)], "local.route53.endpoint_url", "not a URL"),
    (&[Set("local.route53.region", r#""useast1""#)], "local.route53.region", "not an AWS region code"),
    (&[Set("local.route53.connect_timeout", r#""0s""#)], "local.route53.connect_timeout", "at least 1ms"),
    (&[Set("local.route53.attempt_timeout", r#""10""#)], "local.route53.attempt_timeout", "not a duration"),
    (&[Set("local.route53.operation_timeout", r#""10s""#)], "local.route53.operation_timeout", "longer than attempt_timeout (10s)"),
    (&[Set("local.route53.max_requests_per_second", "0")], "local.route53.max_requests_per_second", "between 1 and 5"),
    (&[Set("local.route53.max_requests_per_second", "6")], "local.route53.max_requests_per_second", "between 1 and 5"),
    (&[Set("local.route53.insync_timeout", r#""soon""#)], "local.route53.insync_timeout", "not a duration"),
];

#[test]
fn every_rule_reports_its_path() {
    assert_cases(CASES.iter().map(|(e, p, m)| (*e, *p, *m)));
}

/// Rules that need the RPO gate (and its checks) of [`with_db`].
#[test]
fn rpo_rules_report_their_paths() {
    let cases: Vec<(Vec<Edit<'static>>, &str, &str)> = vec![
        (
            with_db(&[Del("gates.2.max_rpo")]),
            "gates[2].targets[1].lag_check",
            "the gate has no max_rpo",
        ),
        (
            with_db(&[Del("gates.2.targets.1.lag_check")]),
            "gates[2].targets[1].lag_check",
            "is required: max_rpo is set",
        ),
        (
            with_db(&[Set("gates.2.targets.1.lag_check", r#""db-usw2""#)]),
            "gates[2].targets[1].lag_check",
            "is a tcp check",
        ),
        (
            with_db(&[Set(
                "gates.2.targets.1.values",
                r#"["DB-use1.example.net."]"#,
            )]),
            "gates[2].targets[1].values",
            "answers the same as targets[0]",
        ),
        (
            with_db(&[Set("gates.2.kind", r#""weighted""#)]),
            "gates[2].max_rpo",
            "failover gates only",
        ),
    ];
    assert_cases(cases.iter().map(|(e, p, m)| (e.as_slice(), *p, *m)));
}

#[test]
fn the_fence_record_name_must_fit_dns() {
    let label = "a".repeat(60);
    let zone = format!("\"{label}.{label}.{label}.{label}.com\"");
    let errs = errors(&[
        Set("gates.0.id", &format!("\"{}\"", "g".repeat(63))),
        Set("gates.0.zone", &zone),
        Set("gates.0.record", &zone),
    ]);
    let e = errs.at("gates[0].id").unwrap_or_else(|| panic!("{errs}"));
    assert!(e.problem.contains("at most 253"), "{e}");
}

#[test]
fn weighted_gates_have_at_most_max_targets() {
    let n = quorum::gate::MAX_TARGETS + 1;
    let mut edits: Vec<(String, String)> = Vec::new();
    let mut targets = Vec::new();
    for i in 0..n {
        edits.push((
            format!("checks.{}", 3 + i),
            format!(r#"{{ id = "t{i}", tcp = {{ address = "t{i}.internal:1" }} }}"#),
        ));
        targets.push(format!(
            r#"{{ id = "t{i}", check = "t{i}", weight = 1, values = ["x{i}.example.net"] }}"#
        ));
    }
    edits.push((
        "gates.1.targets".into(),
        format!("[{}]", targets.join(", ")),
    ));
    let edits: Vec<Edit<'_>> = edits.iter().map(|(p, v)| Set(p, v)).collect();
    let errs = errors(&edits);
    assert_eq!(errs.paths(), ["gates[1].targets"], "{errs}");
    assert!(errs.errors[0].problem.contains("at most 100"), "{errs}");
}

#[test]
fn data_plane_gates_need_at_most_255_members() {
    let members: Vec<String> = (0..256u32)
        .map(|i| {
            let mut seed = [9u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let key = quorum::SigningKey::from_bytes(&seed).verifying_key();
            let key = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
            format!("{{ id = \"m{i}\", region = \"r\", url = \"http://m{i}.internal:1\", public_key = \"{key}\", health_url = \"https://m{i}.example.com\" }}")
        })
        .collect();
    let members = format!("[{}]", members.join(", "));
    let errs = errors(&[Set("members", &members), Set("local.agent_id", r#""m0""#)]);
    let e = errs
        .at("gates[0].plane")
        .unwrap_or_else(|| panic!("{errs}"));
    assert!(e.problem.contains("at most 255 children"), "{e}");
    // the control-plane gate has no such limit (the member list still has its own)
    assert_eq!(errs.paths(), ["members", "gates[0].plane"], "{errs}");
}

#[test]
fn several_gate_mistakes_are_reported_together() {
    let errs = errors(&[
        Set("gates.0.id", r#""App""#),
        Set("gates.0.zone_id", r#""z1""#),
        Set("gates.0.targets.0.check", r#""nope""#),
        Set("gates.0.targets.1.values", r#"["192.0.2.300"]"#),
        Set("gates.0.health_check_interval", "15"),
        Set("gates.1.targets.0.weight", "0"),
        Set("gates.1.targets.1.role", r#""primary""#),
        Set("gates.1.min_serving", "0"),
        Set("operators.0.public_key", MEMBER0_KEY),
        Del("members.2.health_url"),
        Set("local.route53.max_requests_per_second", "10"),
    ]);
    let mut paths = errs.paths();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "gates[0].health_check_interval",
            "gates[0].id",
            "gates[0].targets[0].check",
            "gates[0].targets[1].values[0]",
            "gates[0].zone_id",
            "gates[1].min_serving",
            "gates[1].targets[0].weight",
            "gates[1].targets[1].role",
            "local.route53.max_requests_per_second",
            "members[2].health_url",
            "operators[0].public_key",
        ],
        "{errs}"
    );
    for e in &errs.errors {
        assert!(!e.problem.is_empty() && !e.fix.is_empty(), "{e}");
    }
}

#[test]
fn a_broken_check_does_not_make_gates_report_unknown_checks() {
    // checks[0] ("app") is invalid; gates name it, but only the check's own error is reported
    let errs = errors(&[Set("checks.0.timeout", r#""9s""#)]);
    assert_eq!(errs.paths(), ["checks[0].timeout"], "{errs}");
}

#[test]
fn a_broken_check_does_not_turn_off_gate_references() {
    // Issue 15's first repro: a check's own error and a gate naming a missing check, together.
    let errs = errors(&[
        Set("checks.0.timeout", r#""9s""#),
        Set("gates.1.targets.0.check", r#""app-nonexistent""#),
    ]);
    assert_eq!(
        errs.paths(),
        ["checks[0].timeout", "gates[1].targets[0].check"],
        "{errs}"
    );
    let e = errs.at("gates[1].targets[0].check").unwrap();
    assert!(e.fix.contains("app, db, dns"), "{e}");
}

#[test]
fn a_duplicate_check_id_does_not_hide_a_missing_check() {
    // Issue 15's second repro.
    let errs = errors(&[
        Set("checks.2.id", r#""db""#),
        Set("gates.0.targets.0.check", r#""nope""#),
    ]);
    let mut paths = errs.paths();
    paths.sort_unstable();
    // "dns" is gone too, so gates[0].targets[1] names a missing check as well.
    assert_eq!(
        paths,
        [
            "checks[2].id",
            "gates[0].targets[0].check",
            "gates[0].targets[1].check"
        ],
        "{errs}"
    );
}

#[test]
fn a_check_with_an_error_still_takes_its_id() {
    // Issue 15's third repro: checks[1] ("db") is broken, checks[2] reuses its id.
    let errs = errors(&[
        Set("checks.1.interval", r#""1s""#),
        Set("checks.1.timeout", r#""2s""#),
        Set("checks.2.id", r#""db""#),
        Set("gates.0.targets.1.check", r#""app""#),
        Set("gates.0.targets.0.check", r#""db""#),
    ]);
    let mut paths = errs.paths();
    paths.sort_unstable();
    assert_eq!(paths, ["checks[1].timeout", "checks[2].id"], "{errs}");
}

#[test]
fn a_lag_check_is_judged_by_its_probe_table_even_when_the_check_is_broken() {
    let errs = errors(&with_db(&[
        Set("checks.0.timeout", r#""9s""#),
        Set("gates.2.targets.1.lag_check", r#""app""#),
    ]));
    let mut paths = errs.paths();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["checks[0].timeout", "gates[2].targets[1].lag_check"],
        "{errs}"
    );
}

#[test]
fn warnings_for_settings_without_effect() {
    let warned = |edits: &[Edit<'_>], path: &str| {
        let c = ok(edits);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.path == path && !w.fix.is_empty()),
            "{edits:?}: no warning at {path}: {:?}",
            c.warnings
        );
    };
    warned(&[Set("gates.0.mode", r#""dry-run""#)], "gates[0].mode");
    warned(
        &[Set("gates.0.writer_stagger", r#""1s""#)],
        "gates[0].writer_stagger",
    );
    warned(
        &[Set("gates.1.health_check_interval", "30")],
        "gates[1].health_check_interval",
    );
    warned(
        &[Set("gates.1.health_check_regions", "[]")],
        "gates[1].health_check_regions",
    );
    warned(&[Del("operators")], "operators");
    warned(
        &[Set("members.1.health_url", r#""https://10.0.0.5:8443""#)],
        "members[1].health_url",
    );
    // dry-run on a control-plane gate is what it is for
    let c = ok(&[]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

fn load(path: &str) -> Result<Config, crate::ConfigErrors> {
    Config::load(Some(Path::new(path)))
}

#[test]
fn env_overrides_route53_and_operator_settings() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[Del("local.route53")]))?;
        jail.set_env(
            "QUORUMGATE_LOCAL__ROUTE53__ENDPOINT_URL",
            "http://127.0.0.1:5999",
        );
        jail.set_env("QUORUMGATE_LOCAL__ROUTE53__MAX_REQUESTS_PER_SECOND", "2");
        jail.set_env("QUORUMGATE_LOCAL__ROUTE53__INSYNC_TIMEOUT", "0s");
        jail.set_env("QUORUMGATE_CLUSTER__OPERATOR_MAX_VALID_FOR", "15m");
        let c = load("quorumgate.toml").unwrap_or_else(|e| panic!("{e}"));
        let r = &c.local.route53;
        assert_eq!(
            r.endpoint_url.as_ref().map(url::Url::as_str),
            Some("http://127.0.0.1:5999/")
        );
        assert_eq!((r.max_requests_per_second, r.insync_timeout_ms), (2, 0));
        assert_eq!(r.attempt_timeout_ms, 10_000); // default
        assert_eq!(c.shared.cluster.operator_max_valid_for_ms, 900_000);
        Ok(())
    });
}

#[test]
fn bad_route53_env_value_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[]))?;
        jail.set_env("QUORUMGATE_LOCAL__ROUTE53__MAX_REQUESTS_PER_SECOND", "50");
        let errs = load("quorumgate.toml").unwrap_err();
        let e = errs
            .at("local.route53.max_requests_per_second")
            .unwrap_or_else(|| panic!("{errs}"));
        assert!(
            e.problem
                .contains("QUORUMGATE_LOCAL__ROUTE53__MAX_REQUESTS_PER_SECOND"),
            "{e}"
        );
        Ok(())
    });
}

/// An array of tables cannot be patched element by element from the environment: figment
/// turns `QUORUMGATE_GATES__0__MODE` into a table `gates = { 0 = { mode = … } }`, which
/// replaces the array. That must fail closed, naming the variable, never half-apply.
#[test]
fn env_cannot_patch_a_gate_and_says_so() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[]))?;
        jail.set_env("QUORUMGATE_GATES__0__MODE", "dry-run");
        let errs = load("quorumgate.toml").unwrap_err();
        let e = errs.at("gates").unwrap_or_else(|| panic!("{errs}"));
        assert!(e.problem.contains("QUORUMGATE_GATES"), "{e}");
        assert!(e.fix.contains("only be written in the config file"), "{e}");
        Ok(())
    });
}

/// `[gates.promote]`: parsed on a control-plane failover gate, refused elsewhere, and in the
/// digest.
#[test]
fn promote_is_a_control_plane_failover_option() {
    use crate::{PromoteAction, PromoteConfig};
    let cfg = ok(&with_db(&[Set(
        "gates.2.promote",
        r#"{ rds_read_replica = "Orders-Replica", region = "us-east-1" }"#,
    )]));
    assert_eq!(
        cfg.shared.gates[2].promote,
        Some(PromoteConfig {
            action: PromoteAction::RdsReadReplica {
                instance: "orders-replica".into()
            },
            region: Some("us-east-1".into()),
            endpoint_url: None,
        })
    );
    let aurora = ok(&with_db(&[Set(
        "gates.2.promote",
        r#"{ aurora_cluster = "orders", target_instance = "orders-2", endpoint_url = "http://127.0.0.1:5000" }"#,
    )]));
    assert!(matches!(
        &aurora.shared.gates[2].promote,
        Some(PromoteConfig { action: PromoteAction::AuroraFailover { cluster, target_instance: Some(t) }, endpoint_url: Some(_), .. })
            if cluster == "orders" && t == "orders-2"
    ));
    assert_ne!(
        cfg.digest, aurora.digest,
        "the promotion is part of the shared config"
    );
    assert_ne!(cfg.digest, ok(&with_db(&[])).digest);

    let cases: Vec<(Vec<Edit<'static>>, &str, &str)> = vec![
        (
            vec![Set("gates.0.promote", r#"{ rds_read_replica = "r" }"#)],
            "gates[0].promote",
            "data-plane gate",
        ),
        (
            vec![Set("gates.1.promote", r#"{ rds_read_replica = "r" }"#)],
            "gates[1].promote",
            "only a failover gate",
        ),
        (
            with_db(&[Set("gates.2.promote", "{}")]),
            "gates[2].promote",
            "exactly one of rds_read_replica and aurora_cluster",
        ),
        (
            with_db(&[Set(
                "gates.2.promote",
                r#"{ rds_read_replica = "r", aurora_cluster = "c" }"#,
            )]),
            "gates[2].promote",
            "exactly one of",
        ),
        (
            with_db(&[Set(
                "gates.2.promote",
                r#"{ rds_read_replica = "1bad--id" }"#,
            )]),
            "gates[2].promote.rds_read_replica",
            "not an RDS identifier",
        ),
        (
            with_db(&[Set(
                "gates.2.promote",
                r#"{ rds_read_replica = "r", target_instance = "t" }"#,
            )]),
            "gates[2].promote.target_instance",
            "aurora_cluster only",
        ),
        (
            with_db(&[Set(
                "gates.2.promote",
                r#"{ aurora_cluster = "c", region = "moon" }"#,
            )]),
            "gates[2].promote.region",
            "not an AWS region code",
        ),
        (
            with_db(&[Set(
                "gates.2.promote",
                r#"{ aurora_cluster = "c", endpoint_url = "rds" }"#,
            )]),
            "gates[2].promote.endpoint_url",
            "not a URL",
        ),
        (
            with_db(&[Set("gates.2.promote", r#"{ rds_instance = "r" }"#)]),
            "gates[2].promote.rds_instance",
            "unknown key",
        ),
    ];
    assert_cases(cases.iter().map(|(e, p, m)| (e.as_slice(), *p, *m)));
}
