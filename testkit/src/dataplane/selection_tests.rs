//! Table-driven tests of record selection; every case cites the documented rule it checks.

use super::*;
use crate::dataplane::model::{Alias, Record, Routing, Zone};

fn rec(name: &str, routing: Routing, set_id: &str, hc: Option<&str>, value: &str) -> Record {
    Record {
        name: name.to_owned(),
        rtype: "A".to_owned(),
        ttl: Some(60),
        set_identifier: Some(set_id.to_owned()),
        routing,
        health_check_id: hc.map(str::to_owned),
        values: vec![value.to_owned()],
        alias: None,
    }
}

fn zone(records: Vec<Record>) -> Zone {
    Zone {
        id: "Z".into(),
        name: "example.com.".into(),
        records,
    }
}

fn statuses(pairs: &[(&str, bool)]) -> Statuses {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

const APP: &str = "app.example.com.";

fn failover_zone(primary_hc: Option<&str>, secondary_hc: Option<&str>) -> Zone {
    zone(vec![
        rec(
            APP,
            Routing::Failover {
                role: FailoverRole::Primary,
            },
            "p",
            primary_hc,
            "192.0.2.10",
        ),
        rec(
            APP,
            Routing::Failover {
                role: FailoverRole::Secondary,
            },
            "s",
            secondary_hc,
            "198.51.100.10",
        ),
    ])
}

#[test]
fn failover_selection() {
    let cases = [
        // "When the primary resource record set is healthy, Route 53 responds to DNS queries
        // with the applicable value from the primary resource record set regardless of the
        // health of the secondary resource record set."
        ("primary healthy", true, true, "192.0.2.10"),
        ("primary healthy, secondary not", true, false, "192.0.2.10"),
        // "When the primary resource record set is unhealthy and the secondary resource record
        // set is healthy, Route 53 responds to DNS queries with the applicable value from the
        // secondary resource record set."
        ("primary unhealthy", false, true, "198.51.100.10"),
        // "When the secondary resource record set is unhealthy, Route 53 responds to DNS
        // queries with the applicable value from the primary resource record set regardless of
        // the health of the primary resource record set."
        ("both unhealthy", false, false, "192.0.2.10"),
    ];
    let z = failover_zone(Some("hp"), Some("hs"));
    for (what, p, s, want) in cases {
        let st = statuses(&[("hp", p), ("hs", s)]);
        let got = resolve(&z, &st, APP, "A", 0.5).map(|(_, v)| v);
        assert_eq!(got, Some(vec![want.to_owned()]), "{what}");
    }
}

#[test]
fn a_record_without_a_health_check_is_healthy() {
    // "If a record in a group of records that have the same name and type doesn't have an
    // associated health check, Route 53 always considers it healthy": a secondary without one
    // takes over from an unhealthy primary ("If you omit the HealthCheckId element for the
    // secondary resource record set, and if the primary resource record set is unhealthy,
    // Route 53 always responds to DNS queries with the applicable value from the secondary").
    let z = failover_zone(Some("hp"), None);
    let st = statuses(&[("hp", false)]);
    assert_eq!(
        resolve(&z, &st, APP, "A", 0.5).map(|(_, v)| v),
        Some(vec!["198.51.100.10".to_owned()])
    );
    // A primary without one always answers.
    let z = failover_zone(None, Some("hs"));
    let st = statuses(&[("hs", true)]);
    assert_eq!(
        resolve(&z, &st, APP, "A", 0.5).map(|(_, v)| v),
        Some(vec!["192.0.2.10".to_owned()])
    );
}

fn weighted_zone(weights: &[u32], with_hc: &[bool]) -> Zone {
    zone(
        weights
            .iter()
            .zip(with_hc)
            .enumerate()
            .map(|(i, (w, hc))| {
                rec(
                    APP,
                    Routing::Weighted { weight: *w },
                    &format!("r{}", i + 1),
                    hc.then(|| format!("h{}", i + 1)).as_deref(),
                    &format!("192.0.2.{}", i + 1),
                )
            })
            .collect(),
    )
}

fn eligible_ids(z: &Zone, st: &Statuses) -> Vec<String> {
    let g = group(z, APP, "A");
    let healthy = |r: &Record| record_healthy(z, st, r, 0);
    eligible(&g, &healthy)
        .iter()
        .filter_map(|r| r.set_identifier.clone())
        .collect()
}

#[test]
fn weighted_selection_follows_the_documented_tables() {
    // "Weighted routing", health checks and weight-0 records: weights 1, 1, 0, every record
    // with a health check. "Route 53 initially considers only the nonzero weighted records, if
    // any. If all the records that have a weight greater than 0 are unhealthy, then Route 53
    // considers the zero-weighted records." The table's rows: (statuses, records answered).
    let z = weighted_zone(&[1, 1, 0], &[true, true, true]);
    let rows: &[([bool; 3], &[&str])] = &[
        ([false, false, true], &["r3"]),
        // All unhealthy: "If no record is healthy, all records are healthy" - and then again
        // only the non-zero weights are considered.
        ([false, false, false], &["r1", "r2"]),
        ([false, true, false], &["r2"]),
        ([true, true, false], &["r1", "r2"]),
        ([true, true, true], &["r1", "r2"]),
    ];
    for (health, want) in rows {
        let st = statuses(&[("h1", health[0]), ("h2", health[1]), ("h3", health[2])]);
        assert_eq!(eligible_ids(&z, &st), *want, "statuses {health:?}");
    }
    // The second table: the weight-0 record has no health check (so it is always healthy).
    let z = weighted_zone(&[1, 1, 0], &[true, true, false]);
    let rows: &[([bool; 2], &[&str])] = &[
        ([true, true], &["r1", "r2"]),
        ([false, false], &["r3"]),
        ([false, true], &["r2"]),
    ];
    for (health, want) in rows {
        let st = statuses(&[("h1", health[0]), ("h2", health[1])]);
        assert_eq!(eligible_ids(&z, &st), *want, "statuses {health:?}");
    }
}

#[test]
fn weighted_pick_is_proportional_to_weight() {
    // "Formula for how much traffic is routed to a given resource: weight for a specified
    // record / sum of the weights for all records."
    let z = weighted_zone(&[1, 3], &[false, false]);
    let st = Statuses::new();
    let cases = [
        (0.0, "192.0.2.1"),
        (0.24, "192.0.2.1"),
        (0.25, "192.0.2.2"),
        (0.99, "192.0.2.2"),
    ];
    for (random, want) in cases {
        let got = resolve(&z, &st, APP, "A", random).map(|(_, v)| v);
        assert_eq!(got, Some(vec![want.to_owned()]), "random {random}");
    }
    // All weights zero: uniform among them.
    let z = weighted_zone(&[0, 0], &[false, false]);
    assert_eq!(
        resolve(&z, &st, APP, "A", 0.1).map(|(_, v)| v),
        Some(vec!["192.0.2.1".to_owned()])
    );
    assert_eq!(
        resolve(&z, &st, APP, "A", 0.9).map(|(_, v)| v),
        Some(vec!["192.0.2.2".to_owned()])
    );
}

fn alias(name: &str, target: &str, evaluate: bool) -> Record {
    Record {
        name: name.to_owned(),
        rtype: "A".to_owned(),
        ttl: None,
        set_identifier: None,
        routing: Routing::Simple,
        health_check_id: None,
        values: vec![],
        alias: Some(Alias {
            dns_name: target.to_owned(),
            evaluate_target_health: evaluate,
        }),
    }
}

#[test]
fn alias_records_answer_and_inherit_their_target() {
    // EvaluateTargetHealth: "an alias resource record set inherits the health of the
    // referenced ... resource record set in the hosted zone": a failover pair of aliases, each
    // pointing at a record carrying a health check.
    let mut records = vec![
        rec(
            "use1.example.com.",
            Routing::Simple,
            "-",
            Some("h1"),
            "192.0.2.1",
        ),
        rec(
            "usw2.example.com.",
            Routing::Simple,
            "-",
            Some("h2"),
            "192.0.2.2",
        ),
    ];
    let mut primary = alias(APP, "use1.example.com.", true);
    primary.set_identifier = Some("p".into());
    primary.routing = Routing::Failover {
        role: FailoverRole::Primary,
    };
    let mut secondary = alias(APP, "usw2.example.com.", true);
    secondary.set_identifier = Some("s".into());
    secondary.routing = Routing::Failover {
        role: FailoverRole::Secondary,
    };
    records.extend([primary, secondary]);
    let z = zone(records);
    let cases = [
        (true, true, "192.0.2.1"),
        (false, true, "192.0.2.2"),
        (false, false, "192.0.2.1"),
    ];
    for (h1, h2, want) in cases {
        let st = statuses(&[("h1", h1), ("h2", h2)]);
        let (ttl, values) = resolve(&z, &st, APP, "A", 0.5).expect("answer");
        assert_eq!(values, vec![want.to_owned()], "h1 {h1} h2 {h2}");
        // An alias answers with its target's TTL.
        assert_eq!(ttl, 60);
    }
    // Without EvaluateTargetHealth the alias itself is healthy whatever its target.
    let z = zone(vec![
        rec(
            "t.example.com.",
            Routing::Simple,
            "-",
            Some("h1"),
            "192.0.2.1",
        ),
        alias("a.example.com.", "t.example.com.", false),
        alias("b.example.com.", "t.example.com.", true),
    ]);
    let st = statuses(&[("h1", false)]);
    let a = &group(&z, "a.example.com.", "A")[0];
    let b = &group(&z, "b.example.com.", "A")[0];
    assert!(record_healthy(&z, &st, a, 0));
    assert!(!record_healthy(&z, &st, b, 0));
}

#[test]
fn simple_records_always_answer_and_unknown_names_do_not() {
    let z = zone(vec![
        rec(APP, Routing::Simple, "-", Some("h"), "192.0.2.1"),
        rec(APP, Routing::Simple, "-", None, "192.0.2.2"),
    ]);
    let st = statuses(&[("h", false)]);
    let (_, v) = resolve(&z, &st, APP, "A", 0.3).expect("answer");
    assert_eq!(v, vec!["192.0.2.1".to_owned(), "192.0.2.2".to_owned()]);
    assert_eq!(resolve(&z, &st, "other.example.com.", "A", 0.3), None);
    assert_eq!(resolve(&z, &st, APP, "AAAA", 0.3), None);
}
