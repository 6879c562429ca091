//! The Route 53 state the data plane serves: health checks and hosted zones with their record
//! sets, as serde types (the `--state-file` format is [`State`] serialized as JSON).
//!
//! Names are kept as Route 53 lists them (lowercase, fully qualified with a trailing dot);
//! [`State::normalized`] brings hand-written files to that form.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Route 53's default health-checker regions, used when a check lists none.
pub const DEFAULT_REGIONS: [&str; 8] = [
    "ap-northeast-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "eu-west-1",
    "sa-east-1",
    "us-east-1",
    "us-west-1",
    "us-west-2",
];

/// A health check's `Type`. Only the kinds the data plane evaluates; CloudWatch-alarm and
/// recovery-control checks are not modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckKind {
    Http,
    Https,
    HttpStrMatch,
    HttpsStrMatch,
    Tcp,
    Calculated,
}

impl HealthCheckKind {
    /// The API's spelling (`HTTPS_STR_MATCH`, ...), or `None` for a kind not modelled.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "HTTP" => Self::Http,
            "HTTPS" => Self::Https,
            "HTTP_STR_MATCH" => Self::HttpStrMatch,
            "HTTPS_STR_MATCH" => Self::HttpsStrMatch,
            "TCP" => Self::Tcp,
            "CALCULATED" => Self::Calculated,
            _ => return None,
        })
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::HttpStrMatch => "HTTP_STR_MATCH",
            Self::HttpsStrMatch => "HTTPS_STR_MATCH",
            Self::Tcp => "TCP",
            Self::Calculated => "CALCULATED",
        }
    }

    /// Whether health checkers poll an endpoint for it (everything but CALCULATED).
    #[must_use]
    pub fn is_endpoint(self) -> bool {
        self != Self::Calculated
    }

    #[must_use]
    pub fn is_https(self) -> bool {
        matches!(self, Self::Https | Self::HttpsStrMatch)
    }

    #[must_use]
    pub fn is_http(self) -> bool {
        !matches!(self, Self::Tcp | Self::Calculated)
    }

    #[must_use]
    pub fn is_str_match(self) -> bool {
        matches!(self, Self::HttpStrMatch | Self::HttpsStrMatch)
    }

    /// The port Route 53 uses when the check names none.
    #[must_use]
    pub fn default_port(self) -> u16 {
        if self.is_https() {
            443
        } else {
            80
        }
    }
}

fn default_interval() -> u32 {
    30
}

fn default_failure_threshold() -> u32 {
    3
}

/// One health check (`HealthCheckConfig` plus its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub id: String,
    pub kind: HealthCheckKind,
    #[serde(default)]
    pub ip_address: Option<IpAddr>,
    #[serde(default)]
    pub fqdn: Option<String>,
    /// `None`: 80, or 443 for the HTTPS kinds.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub resource_path: Option<String>,
    #[serde(default)]
    pub search_string: Option<String>,
    /// 10 or 30.
    #[serde(default = "default_interval")]
    pub request_interval_s: u32,
    /// 1..=10.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Empty: [`DEFAULT_REGIONS`].
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub inverted: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub enable_sni: bool,
    /// CALCULATED only: the child health check ids.
    #[serde(default)]
    pub children: Vec<String>,
    /// CALCULATED only: how many children must be healthy.
    #[serde(default)]
    pub health_threshold: u32,
}

impl HealthCheck {
    /// A check of `kind` with Route 53's defaults for everything else.
    #[must_use]
    pub fn new(id: impl Into<String>, kind: HealthCheckKind) -> Self {
        Self {
            id: id.into(),
            kind,
            ip_address: None,
            fqdn: None,
            port: None,
            resource_path: None,
            search_string: None,
            request_interval_s: default_interval(),
            failure_threshold: default_failure_threshold(),
            regions: Vec::new(),
            inverted: false,
            disabled: false,
            enable_sni: false,
            children: Vec::new(),
            health_threshold: 0,
        }
    }

    /// What `quorumgate provision` creates per agent and check: an `HTTP_STR_MATCH` check of
    /// `at`'s `/v1/health/{check}` for `HEALTHY`, every 10 s, `failure_threshold` failures.
    #[must_use]
    pub fn agent_health(
        id: impl Into<String>,
        at: SocketAddr,
        check: &str,
        failure_threshold: u32,
    ) -> Self {
        let mut hc = Self::new(id, HealthCheckKind::HttpStrMatch);
        hc.ip_address = Some(at.ip());
        hc.port = Some(at.port());
        hc.resource_path = Some(format!("/v1/health/{check}"));
        hc.search_string = Some("HEALTHY".to_owned());
        hc.request_interval_s = 10;
        hc.failure_threshold = failure_threshold;
        hc
    }

    /// A `CALCULATED` check healthy when `threshold` of `children` are.
    #[must_use]
    pub fn calculated(id: impl Into<String>, children: Vec<String>, threshold: u32) -> Self {
        let mut hc = Self::new(id, HealthCheckKind::Calculated);
        hc.children = children;
        hc.health_threshold = threshold;
        hc
    }

    /// The regions whose checkers poll it.
    #[must_use]
    pub fn effective_regions(&self) -> Vec<String> {
        if self.regions.is_empty() {
            DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect()
        } else {
            self.regions.clone()
        }
    }

    #[must_use]
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.kind.default_port())
    }

    /// `Host` header value: the FQDN if set, else the IP address; with `:port` unless the port
    /// is the scheme's default (what Route 53 sends).
    #[must_use]
    pub fn host_header(&self) -> String {
        let host = match (&self.fqdn, self.ip_address) {
            (Some(f), _) => f.trim_end_matches('.').to_owned(),
            (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => String::new(),
        };
        let port = self.effective_port();
        if port == self.kind.default_port() {
            host
        } else {
            format!("{host}:{port}")
        }
    }

    /// The request path, always starting with `/`.
    #[must_use]
    pub fn path(&self) -> String {
        match self.resource_path.as_deref() {
            None | Some("") => "/".to_owned(),
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailoverRole {
    Primary,
    Secondary,
}

/// A record set's routing policy (latency, geolocation, multivalue... are not modelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Routing {
    Simple,
    Failover { role: FailoverRole },
    Weighted { weight: u32 },
}

/// `AliasTarget`: another record set of the same zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub dns_name: String,
    #[serde(default)]
    pub evaluate_target_health: bool,
}

/// One resource record set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `NS`, `SOA`, ...
    pub rtype: String,
    /// `None` for an alias (the target's TTL answers).
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub set_identifier: Option<String>,
    pub routing: Routing,
    #[serde(default)]
    pub health_check_id: Option<String>,
    /// Presentation-format values (`192.0.2.1`, `"a txt string"`, ...). Empty for an alias.
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub alias: Option<Alias>,
}

impl Record {
    /// One side of a failover pair: an `A` record of `name` answering `ip` (TTL 60), set
    /// identifier `primary` / `secondary`, carrying `health_check` if any.
    #[must_use]
    pub fn failover_a(
        name: &str,
        role: FailoverRole,
        ip: &str,
        health_check: Option<&str>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            rtype: "A".to_owned(),
            ttl: Some(60),
            set_identifier: Some(format!("{role:?}").to_lowercase()),
            routing: Routing::Failover { role },
            health_check_id: health_check.map(str::to_owned),
            values: vec![ip.to_owned()],
            alias: None,
        }
    }
}

/// A hosted zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub records: Vec<Record>,
}

/// Everything the data plane serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    #[serde(default)]
    pub zones: Vec<Zone>,
}

/// Lowercase, fully qualified (trailing dot), Route 53's `\052` escape for `*` undone.
#[must_use]
pub fn normalize_name(name: &str) -> String {
    let mut n = name.replace("\\052", "*").to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

impl State {
    /// Names normalized ([`normalize_name`]), record types uppercase, the zone whose name is
    /// the longest first (so lookups find the most specific zone).
    #[must_use]
    pub fn normalized(mut self) -> Self {
        for z in &mut self.zones {
            z.name = normalize_name(&z.name);
            for r in &mut z.records {
                r.name = normalize_name(&r.name);
                r.rtype = r.rtype.to_ascii_uppercase();
                if let Some(a) = &mut r.alias {
                    a.dns_name = normalize_name(&a.dns_name);
                }
            }
        }
        for hc in &mut self.health_checks {
            if let Some(f) = &mut hc.fqdn {
                *f = f.trim_end_matches('.').to_ascii_lowercase();
            }
        }
        self.zones
            .sort_by(|a, b| b.name.len().cmp(&a.name.len()).then(a.name.cmp(&b.name)));
        self
    }

    #[must_use]
    pub fn health_check(&self, id: &str) -> Option<&HealthCheck> {
        self.health_checks.iter().find(|h| h.id == id)
    }

    /// The most specific zone containing `name` (normalized).
    #[must_use]
    pub fn zone_for(&self, name: &str) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| in_zone(name, &z.name))
            .max_by_key(|z| z.name.len())
    }
}

/// Whether normalized `name` is `zone` or below it.
#[must_use]
pub fn in_zone(name: &str, zone: &str) -> bool {
    zone == "." || name == zone || name.ends_with(&format!(".{zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_use_the_api_spelling() {
        let json = serde_json::to_string(&HealthCheckKind::HttpsStrMatch).expect("json");
        assert_eq!(json, "\"HTTPS_STR_MATCH\"");
        for k in [
            HealthCheckKind::Http,
            HealthCheckKind::Https,
            HealthCheckKind::HttpStrMatch,
            HealthCheckKind::HttpsStrMatch,
            HealthCheckKind::Tcp,
            HealthCheckKind::Calculated,
        ] {
            assert_eq!(HealthCheckKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(HealthCheckKind::parse("CLOUDWATCH_METRIC"), None);
    }

    #[test]
    fn a_minimal_file_gets_route53_defaults() {
        let state: State = serde_json::from_str(
            r#"{"health_checks": [{"id": "hc", "kind": "HTTP", "ip_address": "127.0.0.1"}],
                "zones": [{"id": "Z1", "name": "Example.COM", "records": [
                  {"name": "app.example.com", "rtype": "a", "ttl": 60,
                   "routing": {"type": "Failover", "role": "Primary"},
                   "set_identifier": "p", "health_check_id": "hc", "values": ["192.0.2.1"]}]}]}"#,
        )
        .expect("parse");
        let state = state.normalized();
        let hc = &state.health_checks[0];
        assert_eq!(hc.request_interval_s, 30);
        assert_eq!(hc.failure_threshold, 3);
        assert_eq!(hc.effective_regions().len(), 8);
        assert_eq!(hc.effective_port(), 80);
        assert_eq!(hc.path(), "/");
        assert_eq!(hc.host_header(), "127.0.0.1");
        assert_eq!(state.zones[0].name, "example.com.");
        assert_eq!(state.zones[0].records[0].name, "app.example.com.");
        assert_eq!(state.zones[0].records[0].rtype, "A");
    }

    #[test]
    fn the_most_specific_zone_wins() {
        let state = State {
            health_checks: vec![],
            zones: vec![
                Zone {
                    id: "a".into(),
                    name: "example.com.".into(),
                    records: vec![],
                },
                Zone {
                    id: "b".into(),
                    name: "sub.example.com.".into(),
                    records: vec![],
                },
            ],
        }
        .normalized();
        assert_eq!(
            state.zone_for("x.sub.example.com.").map(|z| &*z.id),
            Some("b")
        );
        assert_eq!(state.zone_for("example.com.").map(|z| &*z.id), Some("a"));
        assert_eq!(state.zone_for("notexample.com."), None);
    }
}
