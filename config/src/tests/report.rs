//! The error report: every mistake at once, each with its path.

use super::{errors, Del, Set};

#[test]
fn several_mistakes_are_reported_together() {
    let errs = errors(&[
        Set("gate", "[]"),                        // unknown top-level key (gates is known)
        Set("cluster.peer_timeout", r#""10s""#),  // >= round_interval
        Set("members.2.id", r#""use1""#),         // duplicate member id
        Set("members.1.public_key", r#""AAEC""#), // 3 bytes
        Set("checks.0.timout", r#""1s""#),        // unknown key in checks[0]
        Set("checks.0.timeout", r#""9s""#),       // and a rule in checks[0]
        Set(
            "checks.2",
            r#"{ id = "web", http = { url = "gopher://x" } }"#,
        ), // bad URL in checks[2], which replaces "dns": gates[0] now names a missing check
        Set("checks.1.tcp", r#"{ address = "db", tls = "yes" }"#), // two errors in one table
        Set("local.listen", r#""localhost:9443""#),
        Del("local.agent_id"),
        Set("local.control.0.dns.nameserver", r#""resolver""#),
    ]);
    let mut paths = errs.paths();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "checks[0].timeout",
            "checks[0].timout",
            "checks[1].tcp.address",
            "checks[1].tcp.tls",
            "checks[2].http.url",
            "cluster.peer_timeout",
            "gate",
            "gates[0].targets[1].check",
            "local.agent_id",
            "local.control[0].dns.nameserver",
            "local.listen",
            "members[1].public_key",
            "members[2].id",
        ],
        "{errs}"
    );
    for e in &errs.errors {
        assert!(!e.problem.is_empty() && !e.fix.is_empty(), "{e}");
    }
    // Display: one line per error.
    let text = errs.to_string();
    assert_eq!(text.lines().count(), errs.errors.len());
    assert!(
        text.lines()
            .all(|l| l.starts_with("  - ") && l.contains(" (fix: ")),
        "{text}"
    );
}

#[test]
fn a_rejected_value_is_not_replaced_by_its_default() {
    // `interval = 5` is a type error; the default "5s" must not quietly stand in for it (and
    // no echo "timeout must be shorter than interval" may follow from a guessed value).
    let errs = errors(&[
        Set("checks.0.interval", "5"),
        Set("checks.0.timeout", r#""9s""#),
    ]);
    assert_eq!(errs.paths(), ["checks[0].interval"], "{errs}");
}

#[test]
fn syntax_errors_name_the_source() {
    let errs = crate::Config::from_toml_str("[cluster\nname = 1").unwrap_err();
    assert_eq!(errs.errors.len(), 1, "{errs}");
    assert_eq!(
        errs.errors[0].problem,
        "TOML parse error at line 1, column 9: invalid table header; expected `.`, `]`",
        "{errs}"
    );
    assert_eq!(errs.to_string().lines().count(), 1);
}
