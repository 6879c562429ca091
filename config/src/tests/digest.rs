//! The config digest: shared values in, nothing else.

use std::collections::HashMap;

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
    assert_eq!(
        digest(&[]),
        PINNED,
        "canonical lines:\n{}",
        lines.join("\n")
    );
}
const PINNED: &str = "4c899780a75690d66b9bf0114254fd12d218b51fe3bd89677724a19932151ba6";

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
            r#"{ id = "euc1", region = "eu-central-1", url = "https://euc1.internal:9443", public_key = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E=" }"#,
        ),
        Set(
            "members.2",
            r#"{ id = "use1", region = "us-east-1", url = "https://use1.internal:9443", public_key = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=" }"#,
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
            r#"{ id = "apse1", region = "ap-southeast-1", url = "https://apse1.internal:9443", public_key = "ypOsFwUYcHHWe4PH/w7+gQjo7EUwV113JoeTM9vavnw=" }"#,
        )],
        &[Set("checks.0.id", r#""app2""#)],
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
    ];
    let mut seen: HashMap<String, usize> = HashMap::new();
    seen.insert(digest(&[]), usize::MAX);
    for (i, edits) in changes.iter().enumerate() {
        if let Some(j) = seen.insert(digest(edits), i) {
            panic!("{edits:?} gives the same digest as case {j} (usize::MAX = the base)");
        }
    }
}
