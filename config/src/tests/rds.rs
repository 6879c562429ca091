//! The `rds` probe table: parsing, defaults, one case per rule (all at once), the digest.

use std::collections::HashMap;

use super::{assert_cases, errors, ok, Edit, Set};
use crate::probe::{ProbeSpec, RdsProbe, RdsTarget};

const INSTANCE: &str = r#"{ id = "db-rds", rds = { instance = "app-db" } }"#;
const CLUSTER: &str = r#"{ id = "db-rds", rds = { cluster = "app-aurora" } }"#;

/// The base config plus one rds check appended as `checks[3]`, then `edits`.
fn with<'a>(check: &'a str, edits: &[Edit<'a>]) -> Vec<Edit<'a>> {
    let mut all = vec![Set("checks.3", check)];
    all.extend_from_slice(edits);
    all
}

fn spec(edits: &[Edit<'_>]) -> RdsProbe {
    let c = ok(edits);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    match &c.shared.checks[3].probe {
        ProbeSpec::Rds(r) => r.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_fill_in() {
    let r = spec(&with(INSTANCE, &[]));
    assert_eq!(
        r,
        RdsProbe {
            target: RdsTarget::Instance("app-db".into()),
            region: None,
            endpoint_url: None,
            require_multi_az: false,
        }
    );
    let r = spec(&with(CLUSTER, &[]));
    assert_eq!(
        r.target,
        RdsTarget::Cluster {
            id: "app-aurora".into(),
            expect_writer: None
        }
    );
    assert_eq!(r.target.kind(), "cluster");
    assert_eq!(r.target.id(), "app-aurora");
}

#[test]
fn every_setting_is_read_and_identifiers_are_lower_cased() {
    let r = spec(&with(
        r#"{ id = "db-rds", rds = { cluster = "App-Aurora", expect_writer = "App-Aurora-1", region = "eu-west-1", endpoint_url = "http://127.0.0.1:5000", require_multi_az = true } }"#,
        &[],
    ));
    assert_eq!(
        r.target,
        RdsTarget::Cluster {
            id: "app-aurora".into(),
            expect_writer: Some("app-aurora-1".into())
        }
    );
    assert_eq!(r.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        r.endpoint_url.as_ref().map(url::Url::as_str),
        Some("http://127.0.0.1:5000/")
    );
    assert!(r.require_multi_az);
}

#[test]
fn control_probes_may_be_rds_probes() {
    let c = ok(&[Set(
        "local.control.1",
        r#"{ id = "rds-api", timeout = "1s", rds = { instance = "app-db", region = "us-east-1" } }"#,
    )]);
    assert_eq!(c.local.control[1].probe.kind(), "rds");
}

#[test]
fn every_rule_reports_its_path() {
    #[rustfmt::skip]
    let cases: Vec<(Vec<Edit<'_>>, &str, &str)> = vec![
        (with(INSTANCE, &[Set("checks.3.rds.instanse", r#""x""#)]), "checks[3].rds.instanse", "unknown key"),
        (with(INSTANCE, &[Set("checks.3.rds.instance", r#""app_db""#)]), "checks[3].rds.instance", "not a DB instance identifier"),
        (with(INSTANCE, &[Set("checks.3.rds.instance", r#""1db""#)]), "checks[3].rds.instance", "not a DB instance identifier"),
        (with(INSTANCE, &[Set("checks.3.rds.instance", r#""db-""#)]), "checks[3].rds.instance", "not a DB instance identifier"),
        (with(INSTANCE, &[Set("checks.3.rds.instance", r#""arn:aws:rds:us-east-1:123456789012:db:app-db""#)]), "checks[3].rds.instance", "not a DB instance identifier"),
        (with(INSTANCE, &[Set("checks.3.rds.instance", "7")]), "checks[3].rds.instance", "expected a string"),
        (with(CLUSTER, &[Set("checks.3.rds.cluster", r#""app--aurora""#)]), "checks[3].rds.cluster", "not a DB cluster identifier"),
        (with(INSTANCE, &[Set("checks.3.rds.cluster", r#""app-aurora""#)]), "checks[3].rds.cluster", "only one of instance and cluster"),
        (with(INSTANCE, &[Set("checks.3.rds.expect_writer", r#""app-db""#)]), "checks[3].rds.expect_writer", "only used with cluster"),
        (with(CLUSTER, &[Set("checks.3.rds.expect_writer", r#""writer one""#)]), "checks[3].rds.expect_writer", "not a DB instance identifier"),
        (with(r#"{ id = "db-rds", rds = { region = "us-east-1" } }"#, &[]), "checks[3].rds", "names no DB instance or cluster"),
        (with(INSTANCE, &[Set("checks.3.rds.region", r#""US East""#)]), "checks[3].rds.region", "not an AWS region code"),
        (with(INSTANCE, &[Set("checks.3.rds.endpoint_url", r#""127.0.0.1:5000""#)]), "checks[3].rds.endpoint_url", "URL"),
        (with(INSTANCE, &[Set("checks.3.rds.endpoint_url", r#""https://user:pw@rds.example""#)]), "checks[3].rds.endpoint_url", "credentials"),
        (with(INSTANCE, &[Set("checks.3.rds.require_multi_az", r#""yes""#)]), "checks[3].rds.require_multi_az", "expected a boolean"),
        (with(INSTANCE, &[Set("checks.3.tcp", r#"{ address = "x:1" }"#)]), "checks[3]", "has 2 probes"),
    ];
    assert_cases(cases.iter().map(|(e, p, m)| (e.as_slice(), *p, *m)));
}

/// Every mistake in one table is reported at once, each at its own path.
#[test]
fn all_mistakes_are_reported_together() {
    let errs = errors(&with(
        r#"{ id = "db-rds", rds = { cluster = "bad_id", expect_writer = "-w", region = "mars", endpoint_url = "ftp://x", require_multi_az = 1 } }"#,
        &[],
    ));
    for path in [
        "checks[3].rds.cluster",
        "checks[3].rds.expect_writer",
        "checks[3].rds.region",
        "checks[3].rds.endpoint_url",
        "checks[3].rds.require_multi_az",
    ] {
        assert!(
            errs.at(path).is_some_and(|e| !e.fix.is_empty()),
            "{path}: {errs}"
        );
    }
}

#[test]
fn missing_table_contents_name_both_choices() {
    let errs = errors(&with(r#"{ id = "db-rds", rds = {} }"#, &[]));
    let e = errs.at("checks[3].rds").expect("error at the table");
    assert!(
        e.fix.contains("instance") && e.fix.contains("cluster"),
        "{e}"
    );
    // And "has no probe" lists [checks.rds] among the choices.
    let errs = errors(&[Set("checks.3", r#"{ id = "nothing" }"#)]);
    let e = errs.at("checks[3]").expect("has no probe");
    assert!(e.fix.contains("[checks.rds]"), "{e}");
}

#[test]
fn digest_covers_every_setting_and_ignores_spelling() {
    let base = ok(&with(INSTANCE, &[])).digest;
    let same: &[&[Edit<'_>]] = &[
        &[Set("checks.3.rds.instance", r#""APP-DB""#)],
        &[Set("checks.3.rds.require_multi_az", "false")],
    ];
    for edits in same {
        assert_eq!(ok(&with(INSTANCE, edits)).digest, base, "{edits:?}");
    }
    let changes: Vec<Vec<Edit<'_>>> = vec![
        with(INSTANCE, &[Set("checks.3.rds.instance", r#""app-db-2""#)]),
        with(INSTANCE, &[Set("checks.3.rds.region", r#""us-east-1""#)]),
        with(
            INSTANCE,
            &[Set(
                "checks.3.rds.endpoint_url",
                r#""http://127.0.0.1:5000""#,
            )],
        ),
        with(INSTANCE, &[Set("checks.3.rds.require_multi_az", "true")]),
        with(r#"{ id = "db-rds", rds = { cluster = "app-db" } }"#, &[]),
        with(CLUSTER, &[]),
        with(
            CLUSTER,
            &[Set("checks.3.rds.expect_writer", r#""app-aurora-1""#)],
        ),
    ];
    let mut seen: HashMap<String, usize> = HashMap::new();
    seen.insert(base.to_hex(), usize::MAX);
    for (i, edits) in changes.iter().enumerate() {
        let d = ok(edits).digest.to_hex();
        if let Some(j) = seen.insert(d, i) {
            panic!("{edits:?} gives the same digest as case {j}");
        }
    }
    let lines = crate::digest::canonical_lines(&ok(&with(CLUSTER, &[])).shared);
    assert!(
        lines.contains(&r#"checks[db-rds].probe.rds.cluster="app-aurora""#.to_owned()),
        "{lines:#?}"
    );
}
