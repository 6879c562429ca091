//! The config digest: SHA-256 over a canonical form of the shared configuration.
//!
//! # Canonical form (version 1)
//!
//! The first line is `quorumgate-config-digest-v1`. Then every shared setting becomes one line
//! `path=value`, where `path` names the setting by ids, not positions (`members[use1].url`,
//! `checks[app].probe.http.expect_status`) and `value` is JSON (strings escaped, so no value
//! can contain a newline). The lines are sorted bytewise and each ends with `\n`.
//!
//! So the order of `[[members]]`, `[[checks]]` and keys, comments and whitespace in the file, and
//! all of `[local]` do not change the digest. Values are normalised: durations in ms, keys as
//! hex of their 32 bytes, URLs as parsed, HTTP status and DNS answer lists as sorted sets.
//! A setting that is unset (`None`) emits no line, so a later version that adds an optional
//! setting keeps the digest of configs that don't use it (agents can be upgraded one by one).
//! For the same reason `cluster.operator_max_valid_for_ms` is emitted only when `[[operators]]`
//! exist: without operators no command is ever accepted, so the bound means nothing, and a
//! config written before operators existed keeps its digest.
//!
//! Gates are named by id and their targets by target id (`gates[app].targets[use1].check`);
//! a target's literal answers, like the checker regions, are sorted sets (an answer's order
//! means nothing to DNS). A failover target's line says its role, a weighted one's its weight.

use quorum::gate::{GateKind, Target};
use quorum::{After, ConfigDigest};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::model::{
    CheckConfig, GateConfig, MemberConfig, OperatorConfig, PromoteAction, RecordAnswer,
    SharedConfig,
};
use crate::probe::{DbConnection, DnsRecordType, DnsTransport, ProbeSpec, RdsTarget, TlsVerify};

const DOMAIN: &str = "quorumgate-config-digest-v1";

/// SHA-256 over the canonical form of `shared` (see the module docs).
#[must_use]
pub fn digest_of(shared: &SharedConfig) -> ConfigDigest {
    let mut sha = Sha256::new();
    for line in canonical_lines(shared) {
        sha.update(line.as_bytes());
        sha.update(b"\n");
    }
    ConfigDigest(sha.finalize().into())
}

/// The canonical lines, sorted, domain line first. Public in the crate for tests and `check`.
pub(crate) fn canonical_lines(shared: &SharedConfig) -> Vec<String> {
    let mut c = Canon(Vec::new());
    let k = &shared.cluster;
    c.put("cluster.name", &k.name);
    c.put("cluster.round_interval_ms", k.round_interval_ms);
    c.put("cluster.ballot_valid_for_ms", k.ballot_valid_for_ms);
    c.put("cluster.max_clock_skew_ms", k.max_clock_skew_ms);
    c.put("cluster.max_ballot_bytes", k.max_ballot_bytes);
    c.put("cluster.peer_timeout_ms", k.peer_timeout_ms);
    c.put("cluster.allow_single_member", k.allow_single_member);
    for m in &shared.members {
        member(&mut c, m);
    }
    for check in &shared.checks {
        self::check(&mut c, check);
    }
    for g in &shared.gates {
        gate(&mut c, g);
    }
    if !shared.operators.is_empty() {
        c.put(
            "cluster.operator_max_valid_for_ms",
            k.operator_max_valid_for_ms,
        );
    }
    for o in &shared.operators {
        operator(&mut c, o);
    }
    let mut lines = c.0;
    lines.sort();
    lines.insert(0, DOMAIN.to_owned());
    lines
}

fn member(c: &mut Canon, m: &MemberConfig) {
    let p = format!("members[{}]", m.id);
    c.put(&format!("{p}.region"), &m.region);
    c.put(&format!("{p}.url"), m.url.as_str());
    c.put(
        &format!("{p}.public_key"),
        hex::encode(m.public_key.as_bytes()),
    );
    c.opt(
        &format!("{p}.health_url"),
        m.health_url.as_ref().map(url::Url::as_str),
    );
}

fn operator(c: &mut Canon, o: &OperatorConfig) {
    c.put(
        &format!("operators[{}].public_key", o.id),
        hex::encode(o.public_key.as_bytes()),
    );
}

fn gate(c: &mut Canon, g: &GateConfig) {
    let p = format!("gates[{}]", g.spec.id());
    c.put(&format!("{p}.plane"), g.plane.as_str());
    c.put(&format!("{p}.mode"), g.spec.mode().as_str());
    c.put(&format!("{p}.zone_id"), &g.zone_id);
    c.put(&format!("{p}.zone"), &g.zone_name);
    c.put(&format!("{p}.record"), &g.record_name);
    c.put(&format!("{p}.type"), &g.record_type);
    c.put(&format!("{p}.ttl_s"), g.ttl_s);
    let policy = g.spec.policy();
    c.put(&format!("{p}.min_serving"), policy.min_serving);
    c.put(&format!("{p}.max_changes"), policy.max_changes);
    c.put(&format!("{p}.window_ms"), policy.window_ms);
    c.put(&format!("{p}.wait_period_ms"), policy.wait_period_ms);
    c.put(&format!("{p}.auto_failback"), policy.auto_failback);
    c.opt(&format!("{p}.max_rpo_ms"), policy.max_rpo_ms);
    c.put(&format!("{p}.writer_stagger_ms"), g.writer_stagger_ms);
    let hc = &g.health_checks;
    c.put(
        &format!("{p}.health_check.interval_s"),
        hc.request_interval_s,
    );
    c.put(
        &format!("{p}.health_check.failure_threshold"),
        hc.failure_threshold,
    );
    c.put(&format!("{p}.health_check.regions"), sorted(&hc.regions));
    let kind = match g.spec.kind() {
        GateKind::Failover { primary, secondary } => {
            target(c, &p, primary, "role", "primary");
            target(c, &p, secondary, "role", "secondary");
            "failover"
        }
        GateKind::Weighted { targets } => {
            for w in targets {
                target(c, &p, &w.target, "weight", w.weight);
            }
            "weighted"
        }
    };
    c.put(&format!("{p}.kind"), kind);
    if let Some(pr) = &g.promote {
        match &pr.action {
            PromoteAction::RdsReadReplica { instance } => {
                c.put(&format!("{p}.promote.rds_read_replica"), instance);
            }
            PromoteAction::AuroraFailover {
                cluster,
                target_instance,
            } => {
                c.put(&format!("{p}.promote.aurora_cluster"), cluster);
                c.opt(
                    &format!("{p}.promote.target_instance"),
                    target_instance.as_ref(),
                );
            }
        }
        c.opt(&format!("{p}.promote.region"), pr.region.as_ref());
        c.opt(
            &format!("{p}.promote.endpoint_url"),
            pr.endpoint_url.as_ref().map(url::Url::as_str),
        );
    }
    let d = &g.drill;
    c.opt(
        &format!("{p}.drill.abort_check"),
        d.abort_check.as_ref().map(quorum::CheckId::as_str),
    );
    c.opt(&format!("{p}.drill.rto_ms"), d.rto_ms);
    c.opt(&format!("{p}.drill.rpo_ms"), d.rpo_ms);
    for t in &g.targets {
        let tp = format!("{p}.targets[{}]", t.id);
        match &t.answer {
            RecordAnswer::Values(v) => c.put(&format!("{tp}.values"), sorted(v)),
            RecordAnswer::Alias {
                hosted_zone_id,
                dns_name,
                evaluate_target_health,
            } => {
                c.put(&format!("{tp}.alias.zone_id"), hosted_zone_id);
                c.put(&format!("{tp}.alias.name"), dns_name);
                c.put(
                    &format!("{tp}.alias.evaluate_target_health"),
                    evaluate_target_health,
                );
            }
        }
    }
}

/// A target's spec lines; `slot` is its role (failover) or weight (weighted).
fn target(c: &mut Canon, gate: &str, t: &Target, slot: &str, value: impl Serialize) {
    let tp = format!("{gate}.targets[{}]", t.id);
    c.put(&format!("{tp}.check"), t.check.as_str());
    c.opt(
        &format!("{tp}.lag_check"),
        t.lag_check.as_ref().map(quorum::CheckId::as_str),
    );
    c.put(&format!("{tp}.{slot}"), value);
}

fn sorted(items: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = items.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

fn check(c: &mut Canon, ch: &CheckConfig) {
    let p = format!("checks[{}]", ch.id);
    c.put(&format!("{p}.interval_ms"), ch.interval_ms);
    c.put(&format!("{p}.timeout_ms"), ch.timeout_ms);
    c.put(&format!("{p}.initial"), ch.policy.initial.as_str());
    c.put(&format!("{p}.fall_after"), after(ch.policy.fall_after));
    c.put(&format!("{p}.rise_after"), after(ch.policy.rise_after));
    c.put(&format!("{p}.hold_down_ms"), ch.policy.hold_down_ms);
    probe(c, &format!("{p}.probe"), &ch.probe);
}

fn after(a: After) -> String {
    match a {
        After::Rounds(n) => format!("rounds:{n}"),
        After::Millis(ms) => format!("ms:{ms}"),
    }
}

fn probe(c: &mut Canon, p: &str, spec: &ProbeSpec) {
    let p = format!("{p}.{}", spec.kind());
    match spec {
        ProbeSpec::Http(h) => {
            c.put(&format!("{p}.url"), h.url.as_str());
            c.put(&format!("{p}.method"), &h.method);
            c.put(&format!("{p}.expect_status"), &h.expect_status);
            c.opt(&format!("{p}.body_contains"), h.body_contains.as_ref());
            c.put(&format!("{p}.headers"), &h.headers);
            c.opt(&format!("{p}.host"), h.host.as_ref());
            tls(c, &p, &h.tls);
            c.opt(&format!("{p}.latency_threshold_ms"), h.latency_threshold_ms);
            c.put(&format!("{p}.max_body_bytes"), h.max_body_bytes);
        }
        ProbeSpec::Tcp(t) => {
            c.put(&format!("{p}.address"), &t.address);
            c.put(&format!("{p}.tls"), t.tls.is_some());
            if let Some(v) = &t.tls {
                tls(c, &p, v);
            }
        }
        ProbeSpec::Dns(d) => {
            c.put(&format!("{p}.name"), &d.name);
            let t = match d.record_type {
                DnsRecordType::A => "A",
                DnsRecordType::Aaaa => "AAAA",
                DnsRecordType::Cname => "CNAME",
                DnsRecordType::Txt => "TXT",
                DnsRecordType::Mx => "MX",
                DnsRecordType::Ns => "NS",
            };
            c.put(&format!("{p}.type"), t);
            c.put(&format!("{p}.nameserver"), d.nameserver.to_string());
            let transport = match d.transport {
                DnsTransport::Udp => "udp",
                DnsTransport::Tcp => "tcp",
            };
            c.put(&format!("{p}.transport"), transport);
            c.put(&format!("{p}.expect"), &d.expect);
        }
        ProbeSpec::Postgres(w) | ProbeSpec::Mysql(w) => {
            db_connection(c, &p, &w.conn);
            c.put(&format!("{p}.create_table"), w.create_table);
        }
        ProbeSpec::ReplicationLag(l) => {
            c.put(&format!("{p}.engine"), l.engine.as_str());
            db_connection(c, &p, &l.conn);
            c.opt(&format!("{p}.max_lag_ms"), l.max_lag_ms);
        }
        ProbeSpec::Rds(r) => {
            match &r.target {
                RdsTarget::Instance(id) => c.put(&format!("{p}.instance"), id),
                RdsTarget::Cluster { id, expect_writer } => {
                    c.put(&format!("{p}.cluster"), id);
                    c.opt(&format!("{p}.expect_writer"), expect_writer.as_ref());
                }
            }
            c.opt(&format!("{p}.region"), r.region.as_ref());
            c.opt(
                &format!("{p}.endpoint_url"),
                r.endpoint_url.as_ref().map(url::Url::as_str),
            );
            c.put(&format!("{p}.require_multi_az"), r.require_multi_az);
        }
    }
}

/// Everything that says which database is probed and how, except the password: credentials
/// are not what a check means, each agent may fetch its own (env, file) and, above all, the
/// digest is published in every ballot and in status — a hash of a password there would be an
/// offline guessing oracle. So neither the password nor its source enters the canonical form.
fn db_connection(c: &mut Canon, p: &str, d: &DbConnection) {
    c.put(&format!("{p}.host"), &d.host);
    c.put(&format!("{p}.port"), d.port);
    c.put(&format!("{p}.dbname"), &d.dbname);
    c.put(&format!("{p}.user"), &d.user);
    c.put(&format!("{p}.sslmode"), d.sslmode.as_str());
    c.opt(
        &format!("{p}.ca_file"),
        d.ca_file.as_ref().map(|f| f.to_string_lossy()),
    );
    c.put(&format!("{p}.connect_timeout_ms"), d.connect_timeout_ms);
    c.put(&format!("{p}.statement_timeout_ms"), d.statement_timeout_ms);
    c.put(&format!("{p}.lock_timeout_ms"), d.lock_timeout_ms);
    c.put(&format!("{p}.table"), &d.table);
}

fn tls(c: &mut Canon, p: &str, t: &TlsVerify) {
    c.opt(
        &format!("{p}.ca_file"),
        t.ca_file.as_ref().map(|f| f.to_string_lossy()),
    );
    c.opt(&format!("{p}.server_name"), t.server_name.as_ref());
}

struct Canon(Vec<String>);

impl Canon {
    fn put(&mut self, path: &str, value: impl Serialize) {
        // Serializing strings, numbers, bools and lists of them to JSON cannot fail.
        let json =
            serde_json::to_string(&value).unwrap_or_else(|e| format!("\"<unserializable: {e}>\""));
        self.0.push(format!("{path}={json}"));
    }

    fn opt(&mut self, path: &str, value: Option<impl Serialize>) {
        if let Some(v) = value {
            self.put(path, v);
        }
    }
}
