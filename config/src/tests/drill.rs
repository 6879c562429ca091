//! `[gates.drill]`: parsed on a control-plane failover gate, refused elsewhere, every rule at
//! its path, and in the digest only when set.

use super::gates::with_db;
use super::{assert_cases, ok, Edit, Set};
use crate::DrillConfig;

#[test]
fn drill_settings_parse_and_default_to_nothing() {
    let plain = ok(&with_db(&[]));
    assert_eq!(plain.shared.gates[2].drill, DrillConfig::default());
    let cfg = ok(&with_db(&[Set(
        "gates.2.drill",
        r#"{ abort_check = "db-lag", rto = "90s", rpo = "5s" }"#,
    )]));
    let d = &cfg.shared.gates[2].drill;
    assert_eq!(
        d.abort_check.as_ref().map(quorum::CheckId::as_str),
        Some("db-lag")
    );
    assert_eq!((d.rto_ms, d.rpo_ms), (Some(90_000), Some(5_000)));
    assert_ne!(cfg.digest, plain.digest, "drill settings are shared");
    let rto_only = ok(&with_db(&[Set("gates.2.drill", r#"{ rto = "90s" }"#)]));
    assert_ne!(rto_only.digest, plain.digest);
    assert_ne!(rto_only.digest, cfg.digest);
    // An empty table is the default, and keeps the digest of configs without it.
    let empty = ok(&with_db(&[Set("gates.2.drill", "{}")]));
    assert_eq!(empty.shared.gates[2].drill, DrillConfig::default());
    assert_eq!(empty.digest, plain.digest);
    // The secondary's own check may be named (it always aborts a drill anyway).
    let secondary = ok(&with_db(&[Set(
        "gates.2.drill",
        r#"{ abort_check = "db-usw2" }"#,
    )]));
    assert!(secondary.shared.gates[2].drill.abort_check.is_some());
}

#[test]
fn drill_rules_report_their_paths() {
    let no_lag: &[Edit<'static>] = &[
        Set("gates.2.targets.1.lag_check", r#""db-lag""#),
        Set("gates.2.drill", r#"{ rpo = "5s" }"#),
    ];
    let cases: Vec<(Vec<Edit<'static>>, &str, &str)> = vec![
        (
            vec![Set("gates.0.drill", r#"{ rto = "60s" }"#)],
            "gates[0].drill",
            "data-plane gate",
        ),
        (
            vec![Set("gates.1.drill", r#"{ rto = "60s" }"#)],
            "gates[1].drill",
            "failover gates only",
        ),
        (
            with_db(&[Set("gates.2.drill", r#"{ abort_check = "db" }"#)]),
            "gates[2].drill.abort_check",
            "the primary's own check",
        ),
        (
            with_db(&[Set("gates.2.drill", r#"{ abort_check = "nope" }"#)]),
            "gates[2].drill.abort_check",
            "not a [[checks]] id",
        ),
        (
            with_db(&[Set("gates.2.drill", r#"{ abort_check = "a b" }"#)]),
            "gates[2].drill.abort_check",
            "not a valid id",
        ),
        (
            with_db(&[Set("gates.2.drill", r#"{ rto = "soon" }"#)]),
            "gates[2].drill.rto",
            "not a duration",
        ),
        (
            with_db(&[Set("gates.2.drill", r#"{ rto = "0s" }"#)]),
            "gates[2].drill.rto",
            "at least 1ms",
        ),
        (
            with_db(&[Set("gates.2.drill", r#"{ rpo = "-" }"#)]),
            "gates[2].drill.rpo",
            "not a duration",
        ),
        (
            with_db(&[Set("gates.2.drill", r#"{ rtO = "1s" }"#)]),
            "gates[2].drill.rtO",
            "unknown key",
        ),
        (
            with_db(&[Set("gates.2.drill", "5")]),
            "gates[2].drill",
            "expected a table",
        ),
        (
            // The RPO objective needs the secondary's measured lag.
            with_db(&[
                Set("gates.2.drill", r#"{ rpo = "5s" }"#),
                super::Del("gates.2.max_rpo"),
                super::Del("gates.2.targets.1.lag_check"),
            ]),
            "gates[2].drill.rpo",
            "has no lag_check",
        ),
    ];
    assert!(ok(&with_db(no_lag)).shared.gates[2].drill.rpo_ms.is_some());
    assert_cases(cases.iter().map(|(e, p, m)| (e.as_slice(), *p, *m)));
}
