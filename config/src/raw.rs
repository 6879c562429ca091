//! Raw serde structs: the TOML shape, nothing more.
//!
//! Every struct denies unknown fields (a typo must fail closed, never be ignored) and every field
//! is optional: "missing" and all semantic checks are the validator's job, so serde only ever
//! fails on an unknown key or a wrong type, and [`crate::lenient`] can report those and go on.
//! Arrays of tables (`[[members]]`, `[[checks]]`, `[[gates]]`, `[[gates.targets]]`,
//! `[[operators]]`, `[[local.control]]`) stay as figment [`Value`]s here and are deserialized
//! element by element, so every element gets its own path.

use std::collections::BTreeMap;
use std::fmt;

use figment::value::Value;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The whole file. Adding a section starts here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub cluster: Option<RawCluster>,
    pub members: Option<Vec<Value>>,
    pub checks: Option<Vec<Value>>,
    pub gates: Option<Vec<Value>>,
    pub operators: Option<Vec<Value>>,
    pub local: Option<RawLocal>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub name: Option<Text>,
    pub round_interval: Option<Dur>,
    pub ballot_valid_for: Option<Dur>,
    pub max_clock_skew: Option<Dur>,
    pub max_ballot_bytes: Option<u64>,
    pub peer_timeout: Option<Dur>,
    pub allow_single_member: Option<bool>,
    pub operator_max_valid_for: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMember {
    pub id: Option<Text>,
    pub region: Option<String>,
    pub url: Option<String>,
    pub public_key: Option<String>,
    pub health_url: Option<String>,
}

/// `[[operators]]`: who may sign operator commands.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOperator {
    pub id: Option<Text>,
    pub public_key: Option<String>,
}

/// `[[gates]]`: one gate; its `[[gates.targets]]` stay [`Value`]s (see the module docs).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGate {
    pub id: Option<Text>,
    pub plane: Option<RawPlane>,
    pub mode: Option<RawMode>,
    pub zone_id: Option<String>,
    pub zone: Option<String>,
    pub record: Option<String>,
    #[serde(rename = "type")]
    pub record_type: Option<RawRecordType>,
    pub ttl: Option<u64>,
    pub kind: Option<RawGateKind>,
    pub min_serving: Option<u64>,
    pub max_changes: Option<u64>,
    pub window: Option<Dur>,
    pub wait_period: Option<Dur>,
    pub auto_failback: Option<bool>,
    pub max_rpo: Option<Dur>,
    pub writer_stagger: Option<Dur>,
    pub health_check_interval: Option<u64>,
    pub health_check_failure_threshold: Option<u64>,
    pub health_check_regions: Option<Vec<String>>,
    pub targets: Option<Vec<Value>>,
    pub promote: Option<RawPromote>,
    pub drill: Option<RawDrill>,
}

/// `[gates.drill]`: game-day drills of a control-plane failover gate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDrill {
    pub abort_check: Option<Text>,
    pub rto: Option<Dur>,
    pub rpo: Option<Dur>,
}

/// `[gates.promote]`: promote the standby database as part of a failover (off when absent).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPromote {
    pub rds_read_replica: Option<String>,
    pub aurora_cluster: Option<String>,
    pub target_instance: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// `[[gates.targets]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub id: Option<Text>,
    pub check: Option<Text>,
    pub role: Option<RawRole>,
    pub weight: Option<u64>,
    pub values: Option<Vec<String>>,
    pub alias: Option<RawAlias>,
    pub lag_check: Option<Text>,
}

/// `alias = { zone_id, name, evaluate_target_health }` of a gate target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlias {
    pub zone_id: Option<String>,
    pub name: Option<String>,
    pub evaluate_target_health: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawPlane {
    Data,
    Control,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawMode {
    Live,
    DryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawGateKind {
    Failover,
    Weighted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawRole {
    Primary,
    Secondary,
}

/// The record types a gate can manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum RawRecordType {
    #[serde(rename = "A", alias = "a")]
    A,
    #[serde(rename = "AAAA", alias = "aaaa")]
    Aaaa,
    #[serde(rename = "CNAME", alias = "cname")]
    Cname,
}

impl RawRecordType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RawRecordType::A => "A",
            RawRecordType::Aaaa => "AAAA",
            RawRecordType::Cname => "CNAME",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub id: Option<Text>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub fall_after: Option<RawAfter>,
    pub rise_after: Option<RawAfter>,
    pub hold_down: Option<Dur>,
    pub initial: Option<RawState>,
    pub http: Option<RawHttp>,
    pub tcp: Option<RawTcp>,
    pub dns: Option<RawDns>,
    pub postgres: Option<RawDb>,
    pub mysql: Option<RawDb>,
    pub replication_lag: Option<RawDb>,
    pub rds: Option<RawRds>,
}

/// `[[local.control]]`: a probe of this agent's own network, not of the application.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub id: Option<Text>,
    pub timeout: Option<Dur>,
    pub http: Option<RawHttp>,
    pub tcp: Option<RawTcp>,
    pub dns: Option<RawDns>,
    pub postgres: Option<RawDb>,
    pub mysql: Option<RawDb>,
    pub replication_lag: Option<RawDb>,
    pub rds: Option<RawRds>,
}

/// The probe tables of a check or control probe. Adding a probe kind: a field here, in
/// [`RawCheck`] and [`RawControl`], and an arm in `validate::probe`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawProbes<'a> {
    pub http: Option<&'a RawHttp>,
    pub tcp: Option<&'a RawTcp>,
    pub dns: Option<&'a RawDns>,
    pub postgres: Option<&'a RawDb>,
    pub mysql: Option<&'a RawDb>,
    pub replication_lag: Option<&'a RawDb>,
    pub rds: Option<&'a RawRds>,
}

impl RawCheck {
    pub(crate) fn probes(&self) -> RawProbes<'_> {
        RawProbes {
            http: self.http.as_ref(),
            tcp: self.tcp.as_ref(),
            dns: self.dns.as_ref(),
            postgres: self.postgres.as_ref(),
            mysql: self.mysql.as_ref(),
            replication_lag: self.replication_lag.as_ref(),
            rds: self.rds.as_ref(),
        }
    }
}

impl RawControl {
    pub(crate) fn probes(&self) -> RawProbes<'_> {
        RawProbes {
            http: self.http.as_ref(),
            tcp: self.tcp.as_ref(),
            dns: self.dns.as_ref(),
            postgres: self.postgres.as_ref(),
            mysql: self.mysql.as_ref(),
            replication_lag: self.replication_lag.as_ref(),
            rds: self.rds.as_ref(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub url: Option<String>,
    pub method: Option<String>,
    pub expect_status: Option<Vec<i64>>,
    pub body_contains: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub host: Option<String>,
    pub latency_threshold: Option<Dur>,
    pub max_body_bytes: Option<u64>,
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcp {
    pub address: Option<String>,
    pub tls: Option<bool>,
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub record_type: Option<RawDnsType>,
    pub nameserver: Option<String>,
    pub transport: Option<RawDnsTransport>,
    pub expect: Option<Vec<String>>,
}

/// `[checks.postgres]`, `[checks.mysql]` and `[checks.replication_lag]` (one shape; the
/// validator rejects the keys a kind does not use). Its `Debug` never shows `password`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDb {
    pub engine: Option<RawDbEngine>,
    pub host: Option<String>,
    pub port: Option<u64>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<RawSecret>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub sslmode: Option<RawSslMode>,
    pub ca_file: Option<String>,
    pub connect_timeout: Option<Dur>,
    pub statement_timeout: Option<Dur>,
    pub lock_timeout: Option<Dur>,
    pub table: Option<String>,
    pub create_table: Option<bool>,
    pub max_lag: Option<Dur>,
}

impl fmt::Debug for RawDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawDb")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("sslmode", &self.sslmode)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("table", &self.table)
            .field("create_table", &self.create_table)
            .field("max_lag", &self.max_lag)
            .finish()
    }
}

/// `[checks.rds]`: an RDS DB instance or DB cluster through the RDS API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRds {
    pub instance: Option<String>,
    pub cluster: Option<String>,
    pub expect_writer: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub require_multi_az: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawDbEngine {
    Postgres,
    Mysql,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawSslMode {
    Disable,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocal {
    pub agent_id: Option<Text>,
    pub listen: Option<String>,
    pub key_file: Option<String>,
    pub state_dir: Option<String>,
    pub log_format: Option<RawLogFormat>,
    pub log_level: Option<String>,
    pub probe_concurrency: Option<u64>,
    pub http_body_budget_bytes: Option<u64>,
    pub jitter_seed: Option<u64>,
    pub audit_rotate_bytes: Option<u64>,
    pub audit_keep_files: Option<u64>,
    pub control_failures_to_abstain: Option<u64>,
    pub tls: Option<RawServerTls>,
    pub health_listen: Option<String>,
    pub health_tls: Option<RawServerTls>,
    pub peer_tls: Option<RawPeerTls>,
    pub control: Option<Vec<Value>>,
    pub route53: Option<RawRoute53>,
}

/// `[local.route53]`: how this agent reaches the Route 53 API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute53 {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub connect_timeout: Option<Dur>,
    pub attempt_timeout: Option<Dur>,
    pub operation_timeout: Option<Dur>,
    pub max_requests_per_second: Option<u64>,
    pub insync_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeerTls {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawState {
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawLogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum RawDnsType {
    #[serde(rename = "A", alias = "a")]
    A,
    #[serde(rename = "AAAA", alias = "aaaa")]
    Aaaa,
    #[serde(rename = "CNAME", alias = "cname")]
    Cname,
    #[serde(rename = "TXT", alias = "txt")]
    Txt,
    #[serde(rename = "MX", alias = "mx")]
    Mx,
    #[serde(rename = "NS", alias = "ns")]
    Ns,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawDnsTransport {
    Udp,
    Tcp,
}

/// A humantime duration string (`"250ms"`, `"5s"`, `"1m"`), parsed by the validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dur(pub String);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"5s\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                Ok(Dur(s.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// `fall_after` / `rise_after`: a number of rounds (`3`) or a duration string (`"15s"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawAfter {
    Rounds(i64),
    Duration(String),
}

impl<'de> Deserialize<'de> for RawAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawAfter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of rounds (3) or a duration string (\"15s\")")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawAfter, E> {
                Ok(RawAfter::Rounds(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawAfter, E> {
                Ok(RawAfter::Rounds(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawAfter, E> {
                Ok(RawAfter::Duration(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string that also accepts a bare number. Environment values are typed by figment, so
/// `QUORUMGATE_LOCAL__AGENT_ID=1` arrives as the integer 1; the id is still the string `"1"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A password as written. Accepts a bare number too (figment types environment values), so a
/// wrongly typed password never reaches an error message: serde errors print the value found.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RawSecret(pub String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawSecret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawSecret, E> {
                Ok(RawSecret(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawSecret, E> {
                Ok(RawSecret(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawSecret, E> {
                Ok(RawSecret(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<RawSecret, E> {
                Ok(RawSecret(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<RawSecret, E> {
                Ok(RawSecret(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
