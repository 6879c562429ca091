//! One case per validation rule: each edit of the valid base must produce an error at exactly
//! the given path, so removing the rule fails its case.

use base64::Engine as _;

use super::{errors, ok, Del, Edit, Set};

type Case = (&'static [Edit<'static>], &'static str, &'static str);

/// (edits, expected error path, substring of the problem).
#[rustfmt::skip]
const CASES: &[Case] = &[
    // unknown keys, everywhere
    (&[Set("clustr", "{}")], "clustr", "unknown key"),
    (&[Set("cluster.round_intervall", r#""5s""#)], "cluster.round_intervall", "unknown key"),
    (&[Set("members.0.key", r#""x""#)], "members[0].key", "unknown key"),
    (&[Set("checks.0.http.follow_redirects", "true")], "checks[0].http.follow_redirects", "unknown key"),
    (&[Set("local.tls.ca_file", r#""/x""#)], "local.tls.ca_file", "unknown key"),
    (&[Set("local.control.0.dns.port", "53")], "local.control[0].dns.port", "unknown key"),
    // types
    (&[Set("cluster.round_interval", "5")], "cluster.round_interval", "expected a duration string"),
    (&[Set("members", r#""use1""#)], "members", "expected an array"),
    (&[Set("cluster.max_ballot_bytes", "-1")], "cluster.max_ballot_bytes", "expected a non-negative integer"),
    // [cluster]
    (&[Del("cluster.name")], "cluster.name", "required"),
    (&[Set("cluster.name", r#""  ""#)], "cluster.name", "empty"),
    (&[Set("cluster.round_interval", r#""0s""#)], "cluster.round_interval", "at least 1ms"),
    (&[Set("cluster.round_interval", r#""5""#)], "cluster.round_interval", "not a duration"),
    (&[Set("cluster.ballot_valid_for", r#""5s""#)], "cluster.ballot_valid_for", "longer than round_interval"),
    (&[Set("cluster.ballot_valid_for", r#""60days""#)], "cluster.ballot_valid_for", "too long"),
    (&[Set("cluster.max_clock_skew", r#""0s""#)], "cluster.max_clock_skew", "at least 1ms"),
    (&[Set("cluster.max_ballot_bytes", "0")], "cluster.max_ballot_bytes", "between 1 and"),
    (&[Set("cluster.max_ballot_bytes", "16777217")], "cluster.max_ballot_bytes", "between 1 and 16777216"),
    (&[Set("cluster.max_ballot_bytes", "1000")], "cluster.max_ballot_bytes", "too small for"),
    (&[Set("cluster.peer_timeout", r#""5s""#)], "cluster.peer_timeout", "shorter than round_interval"),
    (&[Set("cluster.peer_timeout", r#""0ms""#)], "cluster.peer_timeout", "at least 1ms"),
    (&[Set("cluster.allow_single_member", r#""yes""#)], "cluster.allow_single_member", "expected a boolean"),
    // [[members]]
    (&[Del("members.2")], "members", "at least 3"),
    (&[Set("members", "[]"), Set("cluster.allow_single_member", "true")], "members", "no members"),
    (&[Del("members")], "members", "no [[members]]"),
    (&[Set("members.0.id", r#""use 1""#)], "members[0].id", "not a valid id"),
    (&[Del("members.0.id")], "members[0].id", "required"),
    (&[Set("members.1.id", r#""use1""#)], "members[1].id", "duplicate id"),
    (&[Set("members.0.region", r#""""#)], "members[0].region", "empty"),
    (&[Del("members.0.region")], "members[0].region", "required"),
    (&[Set("members.0", "1")], "members[0]", "expected a table"),
    (&[Set("members.0.url", r#""ftp://use1.internal""#)], "members[0].url", "scheme"),
    (&[Set("members.0.url", r#""use1.internal""#)], "members[0].url", "not a URL"),
    (&[Set("members.0.url", r#""https://use1.internal/?x=1""#)], "members[0].url", "query"),
    (&[Set("members.1.url", r#""https://use1.internal:9443""#)], "members[1].url", "same URL"),
    (&[Set("members.0.public_key", r#""not base64!""#)], "members[0].public_key", "not base64"),
    (&[Set("members.0.public_key", r#""AAEC""#)], "members[0].public_key", "decodes to 3 bytes"),
    (&[Set("members.0.public_key", r#""AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=""#)], "members[0].public_key", "weak"),
    (&[Set("members.1.public_key", r#""iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=""#)], "members[1].public_key", "same public key"),
    // [[checks]]
    (&[Del("checks")], "checks", "no [[checks]]"),
    (&[Set("checks", "[]")], "checks", "no [[checks]]"),
    (&[Set("cluster", "5")], "cluster", "expected a table"),
    (&[Set("checks.0.id", r#""app/1""#)], "checks[0].id", "not a valid id"),
    (&[Set("checks.1.id", r#""app""#)], "checks[1].id", "duplicate id"),
    (&[Set("checks.0.interval", r#""0s""#)], "checks[0].interval", "at least 1ms"),
    (&[Set("checks.0.timeout", r#""5s""#)], "checks[0].timeout", "shorter than interval"),
    (&[Set("checks.0.fall_after", "0")], "checks[0].fall_after", "at least 1 round"),
    (&[Set("checks.0.fall_after", "-2")], "checks[0].fall_after", "at least 1 round"),
    (&[Set("checks.0.rise_after", r#""0s""#)], "checks[0].rise_after", "at least 1ms"),
    (&[Set("checks.0.rise_after", "true")], "checks[0].rise_after", "number of rounds"),
    (&[Set("checks.0.hold_down", r#""-30s""#)], "checks[0].hold_down", "cannot be negative"),
    (&[Set("checks.0.interval", r#""5 sx""#)], "checks[0].interval", "\"sx\" is not a unit"),
    (&[Set("checks.0.interval", r#""5""#)], "checks[0].interval", "needs a unit"),
    (&[Set("members.0.url", r#""use1.internal/""#)], "members[0].url", "no scheme"),
    (&[Set("members.0.public_key", r#""iojj 3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=""#)], "members[0].public_key", "character 5 is a space"),
    (&[Set("checks.0.initial", r#""up""#)], "checks[0].initial", "unknown value"),
    (&[Del("checks.2.dns")], "checks[2]", "has no probe"),
    (&[Set("checks.2.tcp", r#"{ address = "x:1" }"#)], "checks[2]", "has 2 probes"),
    // http
    (&[Del("checks.0.http.url")], "checks[0].http.url", "required"),
    (&[Set("checks.0.http.url", r#""ftp://app.internal/""#)], "checks[0].http.url", "scheme"),
    (&[Set("checks.0.http.url", r#""https://""#)], "checks[0].http.url", "not a URL"),
    (&[Set("checks.0.http.method", r#""GE T""#)], "checks[0].http.method", "not an HTTP method"),
    (&[Set("checks.0.http.expect_status", "[200, 99]")], "checks[0].http.expect_status[1]", "not an HTTP status"),
    (&[Set("checks.0.http.expect_status", "[600]")], "checks[0].http.expect_status[0]", "not an HTTP status"),
    (&[Set("checks.0.http.expect_status", "[]")], "checks[0].http.expect_status", "empty"),
    (&[Set("checks.0.http.body_contains", r#""""#)], "checks[0].http.body_contains", "empty"),
    (&[Set("checks.0.http.headers", r#"{ "X Env" = "a" }"#)], "checks[0].http.headers.\"X Env\"", "not a valid header name"),
    (&[Set("checks.0.http.headers", r#"{ Host = "a" }"#)], "checks[0].http.headers.Host", "cannot be set"),
    (&[Set("checks.0.http.headers", r#"{ X-A = "a\nb" }"#)], "checks[0].http.headers.X-A", "control characters"),
    (&[Set("checks.0.http.headers", r#"{ X-A = "1", x-a = "2" }"#)], "checks[0].http.headers.x-a", "twice"),
    (&[Set("checks.0.http.host", r#""app example""#)], "checks[0].http.host", "host[:port]"),
    (&[Set("checks.0.http.latency_threshold", r#""2s""#)], "checks[0].http.latency_threshold", "shorter than the timeout"),
    (&[Set("checks.0.http.latency_threshold", r#""0s""#)], "checks[0].http.latency_threshold", "at least 1ms"),
    (&[Set("checks.0.http.max_body_bytes", "0")], "checks[0].http.max_body_bytes", "between 1 and"),
    (&[Set("checks.0.http.max_body_bytes", "16777217")], "checks[0].http.max_body_bytes", "between 1 and 16777216"),
    (&[Set("checks.0.http.ca_file", r#""""#)], "checks[0].http.ca_file", "empty"),
    (&[Set("checks.0.http.server_name", r#""app example""#)], "checks[0].http.server_name", "not a DNS name"),
    (&[Set("checks.0.http.url", r#""http://app.internal/healthz""#)], "checks[0].http.ca_file", "http:// URL"),
    // tcp
    (&[Del("checks.1.tcp.address")], "checks[1].tcp.address", "required"),
    (&[Set("checks.1.tcp.address", r#""db.internal""#)], "checks[1].tcp.address", "not host:port"),
    (&[Set("checks.1.tcp.address", r#""db.internal:70000""#)], "checks[1].tcp.address", "not host:port"),
    (&[Set("checks.1.tcp.tls", "false")], "checks[1].tcp.ca_file", "only used with tls = true"),
    (&[Set("checks.1.tcp.server_name", r#""""#)], "checks[1].tcp.server_name", "not a DNS name"),
    // dns
    (&[Set("checks.2.dns.name", r#""app..internal""#)], "checks[2].dns.name", "not a DNS name"),
    (&[Set("checks.2.dns.type", r#""SRV""#)], "checks[2].dns.type", "unknown value"),
    (&[Set("checks.2.dns.nameserver", r#""ns.internal:53""#)], "checks[2].dns.nameserver", "not an IP address"),
    (&[Del("checks.2.dns.nameserver")], "checks[2].dns.nameserver", "required"),
    (&[Set("checks.2.dns.transport", r#""quic""#)], "checks[2].dns.transport", "unknown value"),
    (&[Set("checks.2.dns.expect", r#"["192.0.2.1", "x"]"#)], "checks[2].dns.expect[1]", "not an IPv4 address"),
    (&[Set("checks.2.dns.type", r#""AAAA""#)], "checks[2].dns.expect[0]", "not an IPv6 address"),
    (&[Set("checks.2.dns.type", r#""TXT""#), Set("checks.2.dns.expect", r#"[""]"#)], "checks[2].dns.expect[0]", "empty"),
    // [local]
    (&[Del("local.agent_id")], "local.agent_id", "required"),
    (&[Set("local.agent_id", r#""apse1""#)], "local.agent_id", "not one of the [[members]]"),
    (&[Set("local.agent_id", r#""use 1""#)], "local.agent_id", "not a valid id"),
    (&[Set("local.listen", r#""9443""#)], "local.listen", "not an IP address with a port"),
    (&[Set("local.health_listen", r#""8443""#)], "local.health_listen", "not an IP address with a port"),
    (&[Set("local.health_listen", r#""0.0.0.0:9443""#)], "local.health_listen", "also local.listen"),
    (&[Set("local.health_tls", r#"{ cert_file = "/c", key_file = "/k" }"#)], "local.health_tls", "health_listen is not"),
    (&[Set("local.health_listen", r#""0.0.0.0:8443""#), Set("local.health_tls", r#"{ cert_file = "/c", key_file = "/k", client_ca_file = "/ca" }"#)], "local.health_tls.client_ca_file", "no client certificate"),
    (&[Set("local.health_listen", r#""0.0.0.0:8443""#), Set("local.health_tls", r#"{ cert_file = "/c" }"#)], "local.health_tls.key_file", "required"),
    (&[Set("local.key_file", r#""""#)], "local.key_file", "empty"),
    (&[Set("local.state_dir", r#""""#)], "local.state_dir", "empty"),
    (&[Set("local.log_format", r#""xml""#)], "local.log_format", "unknown value"),
    (&[Set("local.log_level", r#""loud""#)], "local.log_level", "not a log filter"),
    (&[Set("local.log_level", r#""info,quorumgate=loud""#)], "local.log_level", "not a log filter"),
    (&[Set("local.probe_concurrency", "0")], "local.probe_concurrency", "between 1 and"),
    (&[Set("local.probe_concurrency", "65537")], "local.probe_concurrency", "between 1 and 65536"),
    (&[Set("local.audit_rotate_bytes", "1000")], "local.audit_rotate_bytes", "between 65536 and"),
    (&[Set("local.audit_keep_files", "0")], "local.audit_keep_files", "between 1 and 1000"),
    (&[Set("local.http_body_budget_bytes", "1048576")], "local.http_body_budget_bytes", "between 16777216 and"),
    (&[Set("local.http_body_budget_bytes", "4294967297")], "local.http_body_budget_bytes", "between 16777216 and 4294967296"),
    (&[Set("local.jitter_seed", r#""x""#)], "local.jitter_seed", "expected a non-negative integer"),
    (&[Set("local.control_failures_to_abstain", "0")], "local.control_failures_to_abstain", "between 1 and"),
    (&[Del("local.tls.cert_file")], "local.tls.cert_file", "required"),
    (&[Set("local.tls.key_file", r#""""#)], "local.tls.key_file", "empty"),
    (&[Set("local.tls.client_ca_file", r#""""#)], "local.tls.client_ca_file", "empty"),
    (&[Set("local.peer_tls.ca_file", r#""""#)], "local.peer_tls.ca_file", "empty"),
    (&[Set("local.peer_tls.client_cert_file", r#""/c.pem""#)], "local.peer_tls.client_key_file", "required when"),
    (&[Set("local.peer_tls.client_key_file", r#""/c.key""#)], "local.peer_tls.client_cert_file", "required when"),
    (&[Set("local.control.0.id", r#""vpc dns""#)], "local.control[0].id", "not a valid id"),
    (&[Del("local.control.0.id")], "local.control[0].id", "required"),
    (&[Set("local.control.0.timeout", r#""0s""#)], "local.control[0].timeout", "at least 1ms"),
    (&[Del("local.control.0.dns")], "local.control[0]", "has no probe"),
    (&[Set("local.control.1", r#"{ id = "vpc-dns", tcp = { address = "x:1" } }"#)], "local.control[1].id", "duplicate id"),
    (&[Set("local.control.0.http", r#"{ url = "http://x/", latency_threshold = "1s" }"#), Del("local.control.0.dns")],
        "local.control[0].http.latency_threshold", "shorter than the timeout"),
];

#[test]
fn every_rule_reports_its_path() {
    super::assert_cases(CASES.iter().map(|(e, p, m)| (*e, *p, *m)));
}

/// The counterpart of the `members < 3` rule: the explicit acknowledgement allows it.
#[test]
fn allow_single_member_permits_small_clusters() {
    let c = ok(&[
        Del("members.2"),
        Del("members.1"),
        Set("cluster.allow_single_member", "true"),
    ]);
    assert_eq!(c.shared.membership.len(), 1);
    assert_eq!(c.shared.membership.quorum(), 1);
}

#[test]
fn more_than_255_members_are_rejected() {
    let members: Vec<String> = (0..256u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let key = quorum::SigningKey::from_bytes(&seed).verifying_key();
            let key = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
            format!("{{ id = \"m{i}\", region = \"r\", url = \"http://m{i}.internal:1\", public_key = \"{key}\" }}")
        })
        .collect();
    let members = format!("[{}]", members.join(", "));
    // (without gates: a data-plane gate has a 255-member rule of its own, see tests::gates)
    let errs = errors(&[
        Set("members", &members),
        Set("local.agent_id", r#""m0""#),
        Del("gates"),
    ]);
    assert_eq!(errs.paths(), ["members"], "{errs}");
    assert!(errs.errors[0].problem.contains("at most 255"), "{errs}");
}

#[test]
fn key_that_is_not_a_curve_point_is_rejected() {
    let bytes = (0u8..=255)
        .map(|b| [b; 32])
        .find(|k| quorum::VerifyingKey::from_bytes(k).is_err())
        .expect("some constant byte string is not a point");
    let b64 = format!(
        "\"{}\"",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    let errs = errors(&[Set("members.0.public_key", &b64)]);
    assert!(
        errs.at("members[0].public_key")
            .unwrap()
            .problem
            .contains("not a valid ed25519 public key"),
        "{errs}"
    );
}

#[test]
fn id_errors_carry_the_quorum_id_error_text() {
    let long = format!("\"{}\"", "a".repeat(65));
    let errs = errors(&[Set("checks.0.id", &long)]);
    let expected = quorum::CheckId::new("a".repeat(65))
        .unwrap_err()
        .to_string();
    assert!(
        errs.at("checks[0].id").unwrap().problem.contains(&expected),
        "{errs}"
    );
}

#[test]
fn defaults_follow_round_interval() {
    // round_interval = "1s" alone: the 1 s default peer_timeout would be as long as a round.
    let c = ok(&[
        Set("cluster.round_interval", r#""1s""#),
        Del("cluster.peer_timeout"),
        Del("cluster.ballot_valid_for"),
    ]);
    assert_eq!(c.shared.cluster.peer_timeout_ms, 500);
    assert_eq!(c.shared.cluster.ballot_valid_for_ms, 15_000);
    // A round of a minute: the 15 s default validity would be shorter than a round.
    let c = ok(&[
        Set("cluster.round_interval", r#""1m""#),
        Del("cluster.ballot_valid_for"),
    ]);
    assert_eq!(c.shared.cluster.ballot_valid_for_ms, 180_000);
    // An explicit peer_timeout that is too long: the fix names a value that would pass.
    let errs = errors(&[
        Set("cluster.round_interval", r#""1s""#),
        Set("cluster.peer_timeout", r#""1s""#),
    ]);
    let e = errs.at("cluster.peer_timeout").unwrap();
    assert!(e.fix.contains("\"500ms\""), "{e}");
    // hold_down = "0s": no hold-down.
    let c = ok(&[Set("checks.0.hold_down", r#""0s""#)]);
    assert_eq!(c.shared.checks[0].policy.hold_down_ms, 0);
}

#[test]
fn defaults_fill_what_is_unset() {
    let c = ok(&[
        Del("cluster.round_interval"),
        Del("cluster.ballot_valid_for"),
        Del("cluster.peer_timeout"),
        Del("cluster.max_clock_skew"),
        Del("cluster.max_ballot_bytes"),
        Del("cluster.allow_single_member"),
        Del("checks.0.interval"),
        Del("checks.0.timeout"),
        Del("checks.0.fall_after"),
        Del("checks.0.rise_after"),
        Del("checks.0.hold_down"),
        Del("checks.0.initial"),
        Del("checks.0.http.method"),
        Del("checks.0.http.expect_status"),
        Del("checks.0.http.max_body_bytes"),
        Del("local.listen"),
        Del("local.key_file"),
        Del("local.state_dir"),
        Del("local.log_format"),
        Del("local.log_level"),
        Del("local.probe_concurrency"),
        Del("local.control_failures_to_abstain"),
        Del("local.control.0.timeout"),
        Set("local.state_dir", r#""/srv/qg""#),
    ]);
    let k = &c.shared.cluster;
    assert_eq!(
        (
            k.round_interval_ms,
            k.ballot_valid_for_ms,
            k.peer_timeout_ms,
            k.max_clock_skew_ms
        ),
        (5000, 15000, 1000, 2000)
    );
    assert_eq!(k.max_ballot_bytes, 4 << 20);
    assert!(!k.allow_single_member);
    let ch = &c.shared.checks[0];
    assert_eq!((ch.interval_ms, ch.timeout_ms), (5000, 2000));
    assert_eq!(ch.policy, quorum::DecisionPolicy::default());
    let crate::probe::ProbeSpec::Http(h) = &ch.probe else {
        panic!("http")
    };
    assert_eq!(
        (
            h.method.as_str(),
            h.expect_status.as_slice(),
            h.max_body_bytes
        ),
        ("GET", &[200u16][..], 65536)
    );
    let l = &c.local;
    assert_eq!(l.listen, "0.0.0.0:9443".parse().unwrap());
    assert_eq!(l.key_file, std::path::Path::new("/srv/qg/agent.key"));
    assert_eq!(
        (l.log_format, l.log_level.as_str(), l.probe_concurrency),
        (crate::LogFormat::Human, "info", 64)
    );
    assert_eq!(
        (
            l.control_failures_to_abstain,
            l.jitter_seed,
            l.control[0].timeout_ms
        ),
        (1, None, 2000)
    );
    assert_eq!((l.audit_rotate_bytes, l.audit_keep_files), (64 << 20, 8));
}

#[test]
fn values_are_normalised() {
    let c = ok(&[
        Set("checks.0.http.method", r#""post""#),
        Set("checks.0.http.expect_status", "[204, 200, 204]"),
        Set("checks.0.fall_after", r#""15s""#),
        Set("checks.2.dns.type", r#""aaaa""#),
        Set("checks.2.dns.expect", r#"["2001:DB8::1", "2001:db8:0::1"]"#),
        Set("checks.2.dns.nameserver", r#""10.0.0.2""#),
    ]);
    let crate::probe::ProbeSpec::Http(h) = &c.shared.checks[0].probe else {
        panic!("http")
    };
    assert_eq!(
        (h.method.as_str(), h.expect_status.as_slice()),
        ("POST", &[200u16, 204][..])
    );
    assert_eq!(
        c.shared.checks[0].policy.fall_after,
        quorum::After::Millis(15_000)
    );
    let crate::probe::ProbeSpec::Dns(d) = &c.shared.checks[2].probe else {
        panic!("dns")
    };
    assert_eq!(d.record_type, crate::probe::DnsRecordType::Aaaa);
    assert_eq!(d.expect, ["2001:db8::1"]);
    assert_eq!(d.nameserver, "10.0.0.2:53".parse().unwrap());
}

#[test]
fn warnings_for_valid_but_doubtful_settings() {
    let warned = |edits: &[Edit<'_>], path: &str| {
        let c = ok(edits);
        assert!(
            c.warnings.iter().any(|w| w.path == path),
            "{edits:?}: no warning at {path}: {:?}",
            c.warnings
        );
    };
    warned(
        &[Set("cluster.ballot_valid_for", r#""8s""#)],
        "cluster.ballot_valid_for",
    );
    warned(&[Del("local.control")], "local.control");
    warned(&[Del("local.tls")], "local.tls");
    warned(
        &[Set("members.0.url", r#""http://use1.internal:9443""#)],
        "local.tls",
    );
}
