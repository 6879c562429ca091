//! Crate tests: the shipped example, layering, the error report, the digest, and one test per
//! validation rule. Unit tests of single modules live beside them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod db;
mod digest;
mod drill;
mod gates;
mod layering;
mod rds;
mod report;
mod rules;

use crate::{Config, ConfigErrors};

/// A valid configuration using every section; each test edits it. Its gates: `gates[0]` a
/// data-plane failover pair (checks app, dns), `gates[1]` a control-plane weighted set
/// (checks db, app) written in reverse id order, one with values and one with an alias.
pub(crate) const BASE: &str = r#"
[cluster]
name = "app-prod"
round_interval = "5s"
ballot_valid_for = "15s"
max_clock_skew = "2s"
max_ballot_bytes = 4194304
peer_timeout = "1s"
allow_single_member = false
operator_max_valid_for = "1h"

[[members]]
id = "use1"
region = "us-east-1"
url = "https://use1.internal:9443"
health_url = "https://use1.example.com:8443/"
public_key = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="

[[members]]
id = "usw2"
region = "us-west-2"
url = "https://usw2.internal:9443"
health_url = "https://usw2.example.com:8443/"
public_key = "gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q="

[[members]]
id = "euc1"
region = "eu-central-1"
url = "https://euc1.internal:9443"
health_url = "https://euc1.example.com:8443/"
public_key = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E="

[[checks]]
id = "app"
interval = "5s"
timeout = "2s"
fall_after = 3
rise_after = 5
hold_down = "30s"
initial = "healthy"
[checks.http]
url = "https://app.internal/healthz"
method = "GET"
expect_status = [200]
body_contains = "ok"
headers = { "X-Env" = "prod" }
host = "app.example.com"
latency_threshold = "800ms"
max_body_bytes = 65536
ca_file = "/etc/ssl/app-ca.pem"
server_name = "app.example.com"

[[checks]]
id = "db"
[checks.tcp]
address = "db.internal:5432"
tls = true
ca_file = "/etc/ssl/db-ca.pem"
server_name = "db.internal"

[[checks]]
id = "dns"
[checks.dns]
name = "app.internal"
type = "A"
nameserver = "10.0.0.2:53"
transport = "udp"
expect = ["192.0.2.1"]

[[gates]]
id = "app"
plane = "data"
mode = "live"
zone_id = "Z0123456789ABC"
zone = "example.com"
record = "app.example.com"
type = "A"
ttl = 60
kind = "failover"
min_serving = 1
max_changes = 3
window = "1h"
wait_period = "5s"
auto_failback = false
health_check_interval = 10
health_check_failure_threshold = 2
health_check_regions = ["us-east-1", "us-west-2", "eu-west-1"]
[[gates.targets]]
id = "use1"
check = "app"
role = "primary"
values = ["192.0.2.10"]
[[gates.targets]]
id = "usw2"
check = "dns"
role = "secondary"
values = ["192.0.2.20", "192.0.2.21"]

[[gates]]
id = "web"
plane = "control"
mode = "dry-run"
zone_id = "/hostedzone/Z0123456789ABC"
zone = "example.com"
record = "www.example.com"
type = "CNAME"
ttl = 300
kind = "weighted"
min_serving = 1
max_changes = 5
window = "30m"
wait_period = "10s"
auto_failback = true
writer_stagger = "2s"
[[gates.targets]]
id = "usw2"
check = "db"
weight = 50
values = ["www-usw2.example.net"]
[[gates.targets]]
id = "use1"
check = "app"
weight = 100
alias = { zone_id = "Z35SXDOTRQ7X7K", name = "lb-1.us-east-1.elb.amazonaws.com", evaluate_target_health = false }

[[operators]]
id = "alice"
public_key = "QdWSz1xsjJTOzkyHpX8WKeDhuR2py7ASg2VshZJR2yw="

[local]
agent_id = "use1"
listen = "0.0.0.0:9443"
key_file = "/var/lib/quorumgate/agent.key"
state_dir = "/var/lib/quorumgate"
log_format = "human"
log_level = "info"
probe_concurrency = 64
control_failures_to_abstain = 1
[local.tls]
cert_file = "/etc/quorumgate/server.pem"
key_file = "/etc/quorumgate/server.key"
[local.peer_tls]
ca_file = "/etc/quorumgate/peers-ca.pem"
[local.route53]
endpoint_url = "http://127.0.0.1:5000"
region = "us-east-1"
connect_timeout = "3s"
attempt_timeout = "10s"
operation_timeout = "60s"
max_requests_per_second = 4
insync_timeout = "2m"
[[local.control]]
id = "vpc-dns"
timeout = "1s"
[local.control.dns]
name = "s3.amazonaws.com"
nameserver = "169.254.169.253:53"
"#;

/// One edit of [`BASE`]: set the value at a dotted path (array indices as numbers; missing
/// tables are created) to a TOML literal, or delete it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Edit<'a> {
    Set(&'a str, &'a str),
    Del(&'a str),
}
pub(crate) use Edit::{Del, Set};

/// [`BASE`] with `edits` applied, as TOML text.
pub(crate) fn edited(edits: &[Edit<'_>]) -> String {
    let mut doc: toml::Value = toml::from_str(BASE).unwrap();
    for edit in edits {
        let (path, new) = match *edit {
            Set(p, literal) => {
                let v: toml::Table = toml::from_str(&format!("v = {literal}")).expect(literal);
                (p, Some(v["v"].clone()))
            }
            Del(p) => (p, None),
        };
        let keys: Vec<&str> = path.split('.').collect();
        let (last, parents) = keys.split_last().unwrap();
        let mut cur = &mut doc;
        for k in parents {
            cur = match cur {
                toml::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                toml::Value::Table(t) => t
                    .entry(k.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new())),
                other => panic!("{path}: {k} is inside {other:?}"),
            };
        }
        match (cur, new) {
            (toml::Value::Table(t), Some(v)) => {
                t.insert(last.to_string(), v);
            }
            (toml::Value::Table(t), None) => {
                t.remove(*last).expect(path);
            }
            (toml::Value::Array(a), None) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            (toml::Value::Array(a), Some(v)) => match last.parse::<usize>().unwrap() {
                i if i == a.len() => a.push(v),
                i => a[i] = v,
            },
            (other, _) => panic!("{path}: cannot edit inside {other:?}"),
        }
    }
    toml::to_string(&doc).unwrap()
}

pub(crate) fn load(edits: &[Edit<'_>]) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(&edited(edits))
}

pub(crate) fn ok(edits: &[Edit<'_>]) -> Config {
    match load(edits) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config for {edits:?}, got:\n{e}"),
    }
}

pub(crate) fn errors(edits: &[Edit<'_>]) -> ConfigErrors {
    match load(edits) {
        Ok(_) => panic!("expected errors for {edits:?}"),
        Err(e) => e,
    }
}

/// Each case (edits, expected error path, substring of the problem) must produce an error at
/// exactly that path, with a fix; all failures are reported together.
/// `SHOW_ERRORS=1` prints every report (to review the wording).
pub(crate) fn assert_cases<'a>(
    cases: impl IntoIterator<Item = (&'a [Edit<'a>], &'a str, &'a str)>,
) {
    let mut failures = Vec::new();
    let mut count = 0;
    for (edits, path, problem) in cases {
        count += 1;
        let errs = match load(edits) {
            Ok(_) => {
                failures.push(format!("{edits:?}: no error at all"));
                continue;
            }
            Err(e) => e,
        };
        match errs.at(path) {
            Some(e) if e.problem.contains(problem) && !e.fix.is_empty() => {
                if std::env::var_os("SHOW_ERRORS").is_some() {
                    println!("{edits:?} ({} errors)\n{errs}", errs.errors.len());
                }
            }
            Some(e) => failures.push(format!(
                "{edits:?}: {path}: problem {:?} lacks {problem:?}",
                e.problem
            )),
            None => failures.push(format!("{edits:?}: no error at {path}; got:\n{errs}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn base_is_valid_without_warnings() {
    let c = ok(&[]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn shipped_example_parses() {
    let c = Config::from_toml_str(include_str!("../../../examples/quorumgate.example.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.shared.members.len(), 3);
    assert_eq!(c.shared.membership.quorum(), 2);
    let kinds: Vec<_> = c.shared.checks.iter().map(|c| c.probe.kind()).collect();
    assert_eq!(
        kinds,
        [
            "http",
            "http",
            "tcp",
            "dns",
            "postgres",
            "replication_lag",
            "mysql",
            "rds"
        ]
    );
    assert_eq!(c.local.control.len(), 2);
    assert_eq!(c.me().map(|m| m.id.as_str()), Some("use1"));
    assert!(c.shared.members.iter().all(|m| m.health_url.is_some()));
    let gates: Vec<_> = c
        .shared
        .gates
        .iter()
        .map(|g| (g.spec.id().as_str(), g.plane, g.targets.len()))
        .collect();
    assert_eq!(
        gates,
        [
            ("app", crate::Plane::Data, 2),
            ("api", crate::Plane::Control, 2),
            ("orders-db", crate::Plane::Control, 2)
        ]
    );
    assert_eq!(c.shared.gates[2].spec.policy().max_rpo_ms, Some(30_000));
    assert_eq!(c.shared.operators.len(), 1);
    assert_eq!(c.local.route53.region.as_deref(), Some("us-east-1"));
}
