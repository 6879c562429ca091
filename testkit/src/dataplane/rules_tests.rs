//! Table-driven tests of the rules; every case cites the documented rule it checks.

use std::collections::BTreeMap;

use super::*;
use crate::dataplane::model::{Alias, HealthCheck, HealthCheckKind, Record, Routing, Zone};

#[test]
fn one_checker_flips_after_failure_threshold_results_in_a_row() {
    // (threshold, results, expected healthy after each result)
    let cases: &[(&str, u32, &[bool], &[bool])] = &[
        (
            // "Route 53 considers a new health check to be healthy until there's enough data
            // to determine the actual status"; FailureThreshold consecutive failures flip it.
            "three failures in a row",
            3,
            &[false, false, false],
            &[true, true, false],
        ),
        (
            // Consecutive: a success in between starts the count again.
            "interrupted failures",
            3,
            &[false, false, true, false, false, false],
            &[true, true, true, true, true, false],
        ),
        (
            // "The number of consecutive health checks that an endpoint must pass or fail for
            // Amazon Route 53 to change the current status of the endpoint from unhealthy to
            // healthy or vice versa": recovery also needs FailureThreshold successes.
            "recovery needs threshold successes",
            2,
            &[false, false, true, false, true, true],
            &[true, false, false, false, false, true],
        ),
        (
            // FailureThreshold 1: every result decides.
            "threshold one",
            1,
            &[false, true, false],
            &[false, true, false],
        ),
        (
            // Successes while healthy change nothing.
            "healthy stays healthy",
            3,
            &[true, true, true, true],
            &[true, true, true, true],
        ),
    ];
    for (what, threshold, results, expected) in cases {
        let mut view = CheckerView::default();
        assert!(view.healthy, "{what}: a new checker starts healthy");
        for (i, (ok, want)) in results.iter().zip(expected.iter()).enumerate() {
            view = checker_step(view, *ok, *threshold);
            assert_eq!(view.healthy, *want, "{what}: after result {i}");
        }
    }
}

#[test]
fn more_than_18_percent_of_checkers_make_an_endpoint_healthy() {
    // "If more than 18% of health checkers report that an endpoint is healthy, Route 53
    // considers it healthy. If 18% of health checkers or fewer report that an endpoint is
    // healthy, Route 53 considers it unhealthy."
    let cases = [
        (0, 3, false),
        (1, 3, true), // 33 % > 18 %
        (3, 3, true),
        (0, 8, false),
        (1, 8, false), // 12.5 % <= 18 %
        (2, 8, true),  // 25 %
        (1, 6, false), // 16.7 %
        (2, 6, true),
        (1, 5, true), // 20 %
        (0, 0, true), // no data yet: a new check is healthy
    ];
    for (healthy, total, want) in cases {
        assert_eq!(
            endpoint_healthy(healthy, total),
            want,
            "{healthy} of {total} checkers"
        );
    }
}

#[test]
fn http_success_needs_2xx_3xx_and_the_string_in_5120_bytes() {
    let mut far = vec![b'x'; SEARCH_WINDOW];
    far.extend_from_slice(b"HEALTHY");
    let mut edge = vec![b'x'; SEARCH_WINDOW - 7];
    edge.extend_from_slice(b"HEALTHY");
    let mut straddling = vec![b'x'; SEARCH_WINDOW - 3];
    straddling.extend_from_slice(b"HEALTHY");
    let cases: &[(&str, HealthCheckKind, u16, &[u8], bool)] = &[
        // HTTP: "waits for an HTTP status code of 200 or greater and less than 400".
        ("200", HealthCheckKind::Http, 200, b"", true),
        ("302", HealthCheckKind::Http, 302, b"", true),
        ("399", HealthCheckKind::Http, 399, b"", true),
        ("199", HealthCheckKind::Http, 199, b"", false),
        ("404", HealthCheckKind::Http, 404, b"", false),
        ("503", HealthCheckKind::Https, 503, b"HEALTHY", false),
        // HTTP_STR_MATCH: "searches the first 5,120 bytes of the response body for the string
        // that you specify in SearchString".
        (
            "match",
            HealthCheckKind::HttpStrMatch,
            200,
            b"200 HEALTHY",
            true,
        ),
        ("no match", HealthCheckKind::HttpStrMatch, 200, b"ok", false),
        // The status still has to be 2xx/3xx: UNHEALTHY contains HEALTHY, the 503 fails it.
        (
            "503 UNHEALTHY",
            HealthCheckKind::HttpsStrMatch,
            503,
            b"UNHEALTHY",
            false,
        ),
        // "The string must appear entirely in the first 5,120 bytes of the response body".
        (
            "ends at 5120",
            HealthCheckKind::HttpStrMatch,
            200,
            &edge,
            true,
        ),
        (
            "straddles 5120",
            HealthCheckKind::HttpStrMatch,
            200,
            &straddling,
            false,
        ),
        (
            "beyond 5120",
            HealthCheckKind::HttpsStrMatch,
            200,
            &far,
            false,
        ),
    ];
    for (what, kind, status, body, want) in cases {
        assert_eq!(
            http_success(*kind, *status, body, "HEALTHY"),
            *want,
            "{what}"
        );
    }
}

#[test]
fn inverted_and_disabled() {
    // (measured, inverted, disabled, status)
    let cases = [
        // Inverted: "Route 53 considers the health check to be unhealthy when the status is
        // healthy and vice versa".
        (true, false, false, true),
        (false, false, false, false),
        (true, true, false, false),
        (false, true, false, true),
        // Disabled: "Route 53 considers the status of the health check to always be healthy".
        (false, false, true, true),
        (true, false, true, true),
        // "If you want to stop routing traffic to a resource, change the value of Inverted":
        // disabled and inverted is unhealthy.
        (false, true, true, false),
        (true, true, true, false),
    ];
    for (measured, inverted, disabled, want) in cases {
        assert_eq!(
            apply_flags(measured, inverted, disabled),
            want,
            "measured {measured} inverted {inverted} disabled {disabled}"
        );
    }
}

#[test]
fn calculated_threshold() {
    let cases: &[(u32, &[bool], bool)] = &[
        // "The number of child health checks ... that Amazon Route 53 must consider healthy for
        // the CALCULATED health check to be considered healthy".
        (2, &[true, true, false], true),
        (2, &[true, false, false], false),
        (3, &[true, true, true], true),
        // "If you specify 0, Route 53 always considers this health check to be healthy."
        (0, &[false, false, false], true),
        (0, &[], true),
        // "If you specify a number greater than the number of child health checks, Route 53
        // always considers this health check to be unhealthy."
        (4, &[true, true, true], false),
    ];
    for (threshold, children, want) in cases {
        assert_eq!(
            calculated_healthy(*threshold, children),
            *want,
            "{threshold} of {children:?}"
        );
    }
}

fn endpoint(id: &str) -> HealthCheck {
    HealthCheck::new(id, HealthCheckKind::HttpStrMatch)
}

fn calculated(id: &str, threshold: u32, children: &[&str]) -> HealthCheck {
    let mut hc = HealthCheck::new(id, HealthCheckKind::Calculated);
    hc.health_threshold = threshold;
    hc.children = children.iter().map(|c| (*c).to_owned()).collect();
    hc
}

#[test]
fn evaluate_combines_checkers_flags_and_children() {
    let mut disabled = endpoint("disabled");
    disabled.disabled = true;
    let mut inverted = endpoint("inverted");
    inverted.inverted = true;
    let state = State {
        health_checks: vec![
            endpoint("up"),
            endpoint("down"),
            endpoint("new"),
            disabled,
            inverted,
            calculated("two-of-three", 2, &["up", "down", "disabled"]),
            calculated("needs-down", 2, &["up", "down", "gone"]),
        ],
        zones: vec![],
    };
    let views: BTreeMap<String, Vec<bool>> = [
        ("up", vec![true, false, false]), // 1 of 3 > 18 %
        ("down", vec![false, false, false]),
        ("disabled", vec![false, false, false]),
        ("inverted", vec![false, false, false]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let s = evaluate(&state, &views);
    assert!(s["up"]);
    assert!(!s["down"]);
    // A new health check is healthy until there's enough data.
    assert!(s["new"]);
    // Disabled: always healthy, whatever its checkers saw (Route 53 stops polling it).
    assert!(s["disabled"]);
    assert!(s["inverted"]);
    // A disabled child counts as healthy: up + disabled = 2 of 3.
    assert!(s["two-of-three"]);
    // An unknown child is not healthy: only `up` is.
    assert!(!s["needs-down"]);
}

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

#[test]
fn timeouts_scale_with_a_floor() {
    assert_eq!(scaled_timeout(HTTP_CONNECT, 1.0), HTTP_CONNECT);
    assert_eq!(
        scaled_timeout(HTTP_CONNECT, 0.5),
        std::time::Duration::from_secs(2)
    );
    assert_eq!(scaled_timeout(HTTP_RESPONSE, 0.05), MIN_TIMEOUT);
}
