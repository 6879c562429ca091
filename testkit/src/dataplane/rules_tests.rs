//! Table-driven tests of the health rules; every case cites the documented rule it checks.

use std::collections::BTreeMap;

use super::*;
use crate::dataplane::model::{HealthCheck, HealthCheckKind};

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

#[test]
fn timeouts_scale_with_a_floor() {
    assert_eq!(scaled_timeout(HTTP_CONNECT, 1.0), HTTP_CONNECT);
    assert_eq!(
        scaled_timeout(HTTP_CONNECT, 0.5),
        std::time::Duration::from_secs(2)
    );
    assert_eq!(scaled_timeout(HTTP_RESPONSE, 0.05), MIN_TIMEOUT);
}
