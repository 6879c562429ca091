//! The config digest: shared values in, nothing else.

use std::collections::HashMap;

use super::gates::{with_db, OPERATOR_BOB};
use super::{edited, ok, Del, Edit, Set, BASE};
use crate::{digest_of, Config};

fn digest(edits: &[Edit<'_>]) -> String {
    ok(edits).digest.to_hex()
}

#[test]
fn digest_is_digest_of_shared() {
    let c = ok(&[]);
    assert_eq!(c.digest, digest_of(&c.shared));
}

/// Pinned: the canonical form is a wire contract between agents of different versions.
/// Changing it on purpose means every agent must be upgraded together; update this value then.
#[test]
fn digest_of_base_is_pinned() {
    let lines = crate::digest::canonical_lines(&ok(&[]).shared);
    assert_eq!(lines[0], "quorumgate-config-digest-v1");
    assert!(
        lines.contains(&"checks[app].probe.http.expect_status=[200]".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"members[use1].url=\"https://use1.internal:9443/\"".to_owned()),
        "{lines:#?}"
    );
    for line in [
        "gates[web].targets[usw2].values=[\"www-usw2.example.net.\"]",
        "gates[app].targets[usw2].role=\"secondary\"",
        "gates[app].health_check.regions=[\"eu-west-1\",\"us-east-1\",\"us-west-2\"]",
        "operators[alice].public_key=\"41d592cf5c6c8c94cece4c87a57f1629e0e1b91da9cbb01283656c859251db2c\"",
        "cluster.operator_max_valid_for_ms=3600000",
    ] {
        assert!(lines.contains(&line.to_owned()), "{line} not in {lines:#?}");
    }
    assert_eq!(
        digest(&[]),
        PINNED,
        "canonical lines:\n{}",
        lines.join("\n")
    );
}
const PINNED: &str = "3f57fefefff17d80cd5272e249e8993b90d9438d1d5180a0fe2988523ca5f115";

/// The digest of [`BASE`] before gates, operators and `health_url` existed. A config that
/// uses none of them must keep it, so agents can be upgraded one at a time.
const PINNED_WITHOUT_GATES: &str =
    "4c899780a75690d66b9bf0114254fd12d218b51fe3bd89677724a19932151ba6";

#[test]
fn a_config_without_the_newer_sections_keeps_its_digest() {
    let lines = crate::digest::canonical_lines(&ok(OLDER).shared);
    assert_eq!(
        digest(OLDER),
        PINNED_WITHOUT_GATES,
        "canonical lines:\n{}",
        lines.join("\n")
    );
    // operator_max_valid_for means nothing without operators, so it is left out with them
    let mut longer = OLDER.to_vec();
    longer.push(Set("cluster.operator_max_valid_for", r#""2h""#));
    assert_eq!(digest(&longer), PINNED_WITHOUT_GATES);
}

/// [`BASE`] minus everything added with gates.
const OLDER: &[Edit<'static>] = &[
    Del("gates"),
    Del("operators"),
    Del("members.0.health_url"),
    Del("members.1.health_url"),
    Del("members.2.health_url"),
    Del("cluster.operator_max_valid_for"),
];

#[test]
fn local_settings_do_not_change_it() {
    let base = digest(&[]);
    let local_edits: &[&[Edit<'_>]] = &[
        &[Set("local.agent_id", r#""usw2""#)],
        &[Set("local.listen", r#""127.0.0.1:1""#)],
        &[Set("local.key_file", r#""/k""#)],
        &[Set("local.state_dir", r#""/s""#)],
        &[Set("local.log_format", r#""json""#)],
        &[Set("local.log_level", r#""debug""#)],
        &[Set("local.probe_concurrency", "1")],
        &[Set("local.jitter_seed", "7")],
        &[Set("local.control_failures_to_abstain", "3")],
        &[Del("local.tls")],
        &[Set("local.tls.client_ca_file", r#""/ca""#)],
        &[Del("local.peer_tls")],
        &[Del("local.control")],
        &[Set("local.control.0.timeout", r#""500ms""#)],
        &[Del("local.route53")],
        &[Set(
            "local.route53.endpoint_url",
            r#""http://127.0.0.1:5001""#,
        )],
        &[Set("local.route53.region", r#""eu-west-1""#)],
        &[Set("local.route53.max_requests_per_second", "1")],
        &[Set("local.route53.insync_timeout", r#""0s""#)],
    ];
    for edits in local_edits {
        assert_eq!(digest(edits), base, "{edits:?}");
    }
}

#[test]
fn formatting_order_and_spelled_out_defaults_do_not_change_it() {
    let base = digest(&[]);
    let reformatted = [
        // comments and whitespace
        BASE.replace("\n[cluster]\n", "\n# shared\n  [cluster]   # c\n\n")
            .replace(" = ", "=  "),
        // re-serialised: key order, inline tables become tables, quoting style
        edited(&[]),
    ];
    for text in &reformatted {
        assert_eq!(
            Config::from_toml_str(text).unwrap().digest.to_hex(),
            base,
            "{text}"
        );
    }
    // the order of [[members]] and [[checks]]
    let reordered = ok(&[
        Set(
            "members.0",
            r#"{ id = "euc1", region = "eu-central-1", url = "https://euc1.internal:9443", public_key = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E=", health_url = "https://euc1.example.com:8443/" }"#,
        ),
        Set(
            "members.2",
            r#"{ id = "use1", region = "us-east-1", url = "https://use1.internal:9443", public_key = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=", health_url = "https://use1.example.com:8443/" }"#,
        ),
        Set(
            "checks.0",
            r#"{ id = "dns", dns = { name = "app.internal", nameserver = "10.0.0.2:53", expect = ["192.0.2.1"] } }"#,
        ),
        Set(
            "checks.2",
            r#"{ id = "app", http = { url = "https://app.internal/healthz", body_contains = "ok", headers = { "X-Env" = "prod" }, host = "app.example.com", latency_threshold = "800ms", ca_file = "/etc/ssl/app-ca.pem", server_name = "app.example.com" } }"#,
        ),
    ]);
    assert_eq!(reordered.shared.members[0].id.as_str(), "euc1");
    assert_eq!(reordered.digest.to_hex(), base);
    // the order of [[gates]], of a gate's [[gates.targets]], and of [[operators]]
    let more = with_db(&[Set("operators.1", OPERATOR_BOB)]);
    let text = edited(&more);
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    for key in ["gates", "operators"] {
        let toml::Value::Array(list) = &mut doc[key] else {
            panic!("{key}")
        };
        list.reverse();
    }
    let toml::Value::Array(gates) = &mut doc["gates"] else {
        panic!("gates")
    };
    for g in gates.iter_mut() {
        let toml::Value::Array(targets) = &mut g["targets"] else {
            panic!("targets")
        };
        targets.reverse();
    }
    let reversed = Config::from_toml_str(&toml::to_string(&doc).unwrap()).unwrap();
    assert_eq!(reversed.shared.gates[0].spec.id().as_str(), "db");
    assert_eq!(reversed.shared.operators[0].id.as_str(), "bob");
    assert_eq!(reversed.digest.to_hex(), digest(&more));
    // defaults omitted vs spelled out; equivalent spellings
    let same = [
        vec![
            Del("cluster.round_interval"),
            Del("cluster.allow_single_member"),
            Del("checks.0.initial"),
        ],
        vec![
            Del("checks.0.http.method"),
            Del("checks.0.http.expect_status"),
            Del("checks.0.http.max_body_bytes"),
        ],
        vec![
            Set("cluster.round_interval", r#""5000ms""#),
            Set("checks.0.http.method", r#""get""#),
        ],
        vec![
            Set("checks.0.http.expect_status", "[200, 200]"),
            Set("checks.2.dns.type", r#""a""#),
        ],
        vec![Set("members.0.url", r#""https://USE1.internal:9443/""#)],
        vec![Set("checks.0.http.headers", r#"{ "x-env" = "prod" }"#)],
        vec![Del("cluster.operator_max_valid_for")],
        vec![Set("cluster.operator_max_valid_for", r#""60m""#)],
        vec![Set(
            "members.0.health_url",
            r#""https://USE1.example.com:8443""#,
        )],
        // every gate default omitted
        vec![
            Del("gates.0.plane"),
            Del("gates.0.mode"),
            Del("gates.0.type"),
            Del("gates.0.ttl"),
            Del("gates.0.min_serving"),
            Del("gates.0.max_changes"),
            Del("gates.0.window"),
            Del("gates.0.wait_period"),
            Del("gates.0.auto_failback"),
            Del("gates.0.health_check_interval"),
            Del("gates.0.health_check_failure_threshold"),
            Del("gates.1.writer_stagger"),
            Del("gates.1.min_serving"),
            Del("gates.1.targets.1.alias.evaluate_target_health"),
        ],
        // equivalent spellings of names, zone ids, types and answers
        vec![
            Set("gates.0.zone_id", r#""/hostedzone/Z0123456789ABC""#),
            Set("gates.0.zone", r#""Example.COM.""#),
            Set("gates.0.record", r#""APP.example.com.""#),
            Set("gates.0.type", r#""a""#),
            Set(
                "gates.0.targets.1.values",
                r#"["192.0.2.21", "192.0.2.20"]"#,
            ),
            Set(
                "gates.0.health_check_regions",
                r#"["eu-west-1", "us-west-2", "us-east-1"]"#,
            ),
            Set("gates.1.window", r#""1800s""#),
            Set("gates.1.type", r#""cname""#),
            Set("gates.1.targets.0.values", r#"["WWW-usw2.example.net."]"#),
            Set(
                "gates.1.targets.1.alias.name",
                r#""LB-1.us-east-1.elb.amazonaws.com.""#,
            ),
        ],
    ];
    for edits in &same {
        assert_eq!(digest(edits), base, "{edits:?}");
    }
}

#[test]
fn every_shared_setting_changes_it() {
    let changes: &[&[Edit<'_>]] = &[
        &[Set("cluster.name", r#""app-stage""#)],
        &[Set("cluster.round_interval", r#""4s""#)],
        &[Set("cluster.ballot_valid_for", r#""20s""#)],
        &[Set("cluster.max_clock_skew", r#""1s""#)],
        &[Set("cluster.max_ballot_bytes", "1048576")],
        &[Set("cluster.peer_timeout", r#""2s""#)],
        &[Set("cluster.allow_single_member", "true")],
        &[
            Set("members.0.id", r#""use1a""#),
            Set("local.agent_id", r#""use1a""#),
        ],
        &[Set("members.0.region", r#""us-east-2""#)],
        &[Set("members.0.url", r#""https://use1.internal:9444""#)],
        &[Set(
            "members.0.public_key",
            r#""ypOsFwUYcHHWe4PH/w7+gQjo7EUwV113JoeTM9vavnw=""#,
        )],
        &[Set(
            "members.3",
            r#"{ id = "apse1", region = "ap-southeast-1", url = "https://apse1.internal:9443", public_key = "ypOsFwUYcHHWe4PH/w7+gQjo7EUwV113JoeTM9vavnw=", health_url = "https://apse1.example.com:8443/" }"#,
        )],
        &[Set(
            "members.0.health_url",
            r#""https://use1.example.com:9443/""#,
        )],
        &[
            Set("checks.0.id", r#""app2""#),
            Set("gates.0.targets.0.check", r#""app2""#),
            Set("gates.1.targets.1.check", r#""app2""#),
        ],
        &[Set("checks.0.interval", r#""6s""#)],
        &[Set("checks.0.timeout", r#""3s""#)],
        &[Set("checks.0.fall_after", "4")],
        &[Set("checks.0.fall_after", r#""3ms""#)],
        &[Set("checks.0.rise_after", "6")],
        &[Set("checks.0.hold_down", r#""31s""#)],
        &[Set("checks.0.initial", r#""unhealthy""#)],
        &[Set("checks.0.http.url", r#""https://app.internal/health""#)],
        &[Set("checks.0.http.method", r#""HEAD""#)],
        &[Set("checks.0.http.expect_status", "[200, 204]")],
        &[Set("checks.0.http.body_contains", r#""OK""#)],
        &[Del("checks.0.http.body_contains")],
        &[Set("checks.0.http.headers", r#"{ "X-Env" = "stage" }"#)],
        &[Set("checks.0.http.host", r#""app2.example.com""#)],
        &[Set("checks.0.http.latency_threshold", r#""900ms""#)],
        &[Set("checks.0.http.max_body_bytes", "1024")],
        &[Set("checks.0.http.ca_file", r#""/etc/ssl/other.pem""#)],
        &[Set("checks.0.http.server_name", r#""other.example.com""#)],
        &[Set("checks.1.tcp.address", r#""db.internal:5433""#)],
        &[
            Set("checks.1.tcp.tls", "false"),
            Del("checks.1.tcp.ca_file"),
            Del("checks.1.tcp.server_name"),
        ],
        &[Set("checks.1.tcp.ca_file", r#""/etc/ssl/other.pem""#)],
        &[Set("checks.1.tcp.server_name", r#""db2.internal""#)],
        &[Set("checks.2.dns.name", r#""app2.internal""#)],
        &[Set("checks.2.dns.type", r#""TXT""#)],
        &[Set("checks.2.dns.nameserver", r#""10.0.0.3:53""#)],
        &[Set("checks.2.dns.transport", r#""tcp""#)],
        &[Set("checks.2.dns.expect", "[]")],
        &[Set(
            "checks.3",
            r#"{ id = "extra", tcp = { address = "x:1" } }"#,
        )],
        // operators
        &[Set("cluster.operator_max_valid_for", r#""2h""#)],
        &[Set("operators.0.id", r#""alice2""#)],
        &[Set(
            "operators.0.public_key",
            r#""DhUzvpSERjXm96zd7jH5k7o2SE07Ylrb9xlk9Dudd0M=""#,
        )],
        &[Set("operators.1", OPERATOR_BOB)],
        &[Del("operators")],
        // gates: every field
        &[Del("gates.1")],
        &[Set("gates.0.id", r#""app2""#)],
        &[
            Set("gates.0.plane", r#""control""#),
            Del("gates.0.health_check_interval"),
            Del("gates.0.health_check_failure_threshold"),
            Del("gates.0.health_check_regions"),
        ],
        &[Set("gates.0.mode", r#""dry-run""#)],
        &[Set("gates.0.zone_id", r#""Z999""#)],
        &[
            Set("gates.0.zone", r#""app.example.com""#),
            Set("gates.0.type", r#""AAAA""#),
            Set("gates.0.targets.0.values", r#"["2001:db8::10"]"#),
            Set("gates.0.targets.1.values", r#"["2001:db8::20"]"#),
            Set("gates.0.zone_id", r#""Z999""#),
        ],
        &[Set("gates.0.record", r#""api.example.com""#)],
        &[
            Set("gates.0.type", r#""CNAME""#),
            Set("gates.0.targets.0.values", r#"["a.example.net"]"#),
            Set("gates.0.targets.1.values", r#"["b.example.net"]"#),
        ],
        &[Set("gates.0.ttl", "30")],
        &[
            Set("gates.0.kind", r#""weighted""#),
            Del("gates.0.targets.0.role"),
            Del("gates.0.targets.1.role"),
            Set("gates.0.targets.0.weight", "1"),
            Set("gates.0.targets.1.weight", "1"),
        ],
        &[Set("gates.1.min_serving", "2")],
        &[Set("gates.0.max_changes", "4")],
        &[Set("gates.0.window", r#""2h""#)],
        &[Set("gates.0.wait_period", r#""6s""#)],
        &[Set("gates.0.auto_failback", "true")],
        &[Set("gates.1.writer_stagger", r#""3s""#)],
        &[Set("gates.0.health_check_interval", "30")],
        &[Set("gates.0.health_check_failure_threshold", "3")],
        &[Set("gates.0.health_check_regions", "[]")],
        &[Set("gates.0.targets.0.id", r#""use1b""#)],
        &[Set("gates.0.targets.0.check", r#""db""#)],
        &[
            Set("gates.0.targets.0.role", r#""secondary""#),
            Set("gates.0.targets.1.role", r#""primary""#),
        ],
        &[Set("gates.0.targets.0.values", r#"["192.0.2.11"]"#)],
        &[Set("gates.0.targets.1.values", r#"["192.0.2.20"]"#)],
        &[
            Del("gates.0.targets.0.values"),
            Set(
                "gates.0.targets.0.alias",
                r#"{ zone_id = "Z35SXDOTRQ7X7K", name = "lb-9.elb.amazonaws.com" }"#,
            ),
        ],
        &[Set("gates.1.targets.0.weight", "51")],
        &[Set("gates.1.targets.1.alias.zone_id", r#""Z1""#)],
        &[Set(
            "gates.1.targets.1.alias.name",
            r#""lb-2.us-east-1.elb.amazonaws.com""#,
        )],
        &[Set(
            "gates.1.targets.1.alias.evaluate_target_health",
            "true",
        )],
    ];
    // with a third gate (and the checks it needs): its RPO rule
    let with_gate: Vec<Vec<Edit<'_>>> = vec![
        with_db(&[]),
        with_db(&[Set("gates.2.max_rpo", r#""31s""#)]),
        with_db(&[Set("gates.2.targets.0.lag_check", r#""db-lag""#)]),
        with_db(&[Set("checks.4.replication_lag.max_lag", r#""1m""#)]),
    ];
    let mut seen: HashMap<String, usize> = HashMap::new();
    seen.insert(digest(&[]), usize::MAX);
    let all = changes
        .iter()
        .copied()
        .chain(with_gate.iter().map(Vec::as_slice));
    for (i, edits) in all.enumerate() {
        if let Some(j) = seen.insert(digest(edits), i) {
            panic!("{edits:?} gives the same digest as case {j} (usize::MAX = the base)");
        }
    }
}
