//! The records, changes and health checks of the control plane, independent of the SDK.
//!
//! Names and values are normalised on construction (lower case, one trailing dot, values sorted
//! and deduplicated), so two `RecordSet`s compare equal exactly when Route 53 would say "the
//! values provided match the current values".

use std::collections::BTreeMap;
use std::fmt;

/// Normalises a DNS name the way Route 53 returns it: lower case, one trailing dot, and the
/// `\DDD` octal escapes of ListResourceRecordSets (e.g. `\052` for `*`) decoded.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        let octal = rest
            .get(1..4)
            .filter(|d| d.bytes().all(|b| (b'0'..=b'7').contains(&b)))
            .and_then(|d| u8::from_str_radix(d, 8).ok())
            .filter(u8::is_ascii);
        match (c, octal) {
            ('\\', Some(byte)) => {
                out.push(char::from(byte));
                rest = &rest[4..];
            }
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.make_ascii_lowercase();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// What identifies a record set in a zone: name, type and (for routing policies) set identifier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    name: String,
    record_type: String,
    set_identifier: Option<String>,
}

impl RecordKey {
    pub fn new(name: &str, record_type: &str, set_identifier: Option<&str>) -> Self {
        Self {
            name: normalize_name(name),
            record_type: record_type.to_ascii_uppercase(),
            set_identifier: set_identifier.map(str::to_owned),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn record_type(&self) -> &str {
        &self.record_type
    }

    pub fn set_identifier(&self) -> Option<&str> {
        self.set_identifier.as_deref()
    }

    /// The (name, type) pair this record belongs to.
    pub fn name_and_type(&self) -> (String, String) {
        (self.name.clone(), self.record_type.clone())
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.record_type)?;
        if let Some(id) = &self.set_identifier {
            write!(f, " [{id}]")?;
        }
        Ok(())
    }
}

/// The role of a failover record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailoverRole {
    Primary,
    Secondary,
}

impl FailoverRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Secondary => "SECONDARY",
        }
    }
}

/// How Route 53 chooses between record sets of one name and type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Routing {
    Simple,
    /// Weighted routing; Route 53 allows 0..=255.
    Weighted {
        weight: u8,
    },
    Failover(FailoverRole),
    /// A policy this crate does not manage (latency, geolocation, multivalue, CIDR, …), with a
    /// description. Read from Route 53; the writer refuses to touch such records.
    Unsupported(String),
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Simple => f.write_str("simple"),
            Self::Weighted { weight } => write!(f, "weight={weight}"),
            Self::Failover(role) => write!(f, "failover={}", role.as_str()),
            Self::Unsupported(what) => write!(f, "unsupported({what})"),
        }
    }
}

/// What a record set answers: a TTL and values, or an alias.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordTarget {
    Values {
        ttl: u32,
        /// Sorted and deduplicated.
        values: Vec<String>,
    },
    Alias {
        hosted_zone_id: String,
        /// Normalised (lower case, trailing dot).
        dns_name: String,
        evaluate_target_health: bool,
    },
}

impl RecordTarget {
    pub fn values<I, S>(ttl: u32, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
        values.sort();
        values.dedup();
        Self::Values { ttl, values }
    }

    pub fn alias(hosted_zone_id: &str, dns_name: &str, evaluate_target_health: bool) -> Self {
        Self::Alias {
            hosted_zone_id: hosted_zone_id.to_owned(),
            dns_name: normalize_name(dns_name),
            evaluate_target_health,
        }
    }
}

impl fmt::Display for RecordTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Values { ttl, values } => write!(f, "ttl={ttl} {}", values.join(",")),
            Self::Alias {
                hosted_zone_id,
                dns_name,
                evaluate_target_health,
            } => write!(
                f,
                "alias {dns_name} zone={hosted_zone_id} evaluate={evaluate_target_health}"
            ),
        }
    }
}

/// One resource record set, normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordSet {
    key: RecordKey,
    routing: Routing,
    target: RecordTarget,
    health_check_id: Option<String>,
}

impl RecordSet {
    /// A simple-routing record set without a health check.
    pub fn new(name: &str, record_type: &str, target: RecordTarget) -> Self {
        Self {
            key: RecordKey::new(name, record_type, None),
            routing: Routing::Simple,
            target,
            health_check_id: None,
        }
    }

    /// Gives the record a set identifier and a routing policy.
    pub fn with_routing(mut self, set_identifier: &str, routing: Routing) -> Self {
        self.key.set_identifier = Some(set_identifier.to_owned());
        self.routing = routing;
        self
    }

    pub fn with_health_check(mut self, health_check_id: &str) -> Self {
        self.health_check_id = Some(health_check_id.to_owned());
        self
    }

    /// Builds a record set from its parts as read from the API (`key` already built).
    pub fn from_parts(
        key: RecordKey,
        routing: Routing,
        target: RecordTarget,
        health_check_id: Option<String>,
    ) -> Self {
        Self {
            key,
            routing,
            target,
            health_check_id,
        }
    }

    pub fn key(&self) -> &RecordKey {
        &self.key
    }

    pub fn name(&self) -> &str {
        &self.key.name
    }

    pub fn record_type(&self) -> &str {
        &self.key.record_type
    }

    pub fn set_identifier(&self) -> Option<&str> {
        self.key.set_identifier.as_deref()
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    pub fn target(&self) -> &RecordTarget {
        &self.target
    }

    pub fn health_check_id(&self) -> Option<&str> {
        self.health_check_id.as_deref()
    }

    /// How many resource records Route 53 counts for this set in a change batch.
    pub fn value_count(&self) -> usize {
        match &self.target {
            RecordTarget::Values { values, .. } => values.len(),
            RecordTarget::Alias { .. } => 0,
        }
    }

    /// Characters of values Route 53 counts towards a batch's 32,000-character limit.
    pub fn value_chars(&self) -> usize {
        match &self.target {
            RecordTarget::Values { values, .. } => values.iter().map(String::len).sum(),
            RecordTarget::Alias { dns_name, .. } => dns_name.len(),
        }
    }
}

impl fmt::Display for RecordSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.key, self.routing, self.target)?;
        if let Some(hc) = &self.health_check_id {
            write!(f, " health_check={hc}")?;
        }
        Ok(())
    }
}

/// A change batch action. The fenced writer never uses `Upsert` (an unconditional overwrite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeAction {
    Create,
    Delete,
    Upsert,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
            Self::Upsert => "UPSERT",
        }
    }
}

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    pub action: ChangeAction,
    pub record: RecordSet,
}

impl Change {
    pub fn create(record: RecordSet) -> Self {
        Self {
            action: ChangeAction::Create,
            record,
        }
    }

    pub fn delete(record: RecordSet) -> Self {
        Self {
            action: ChangeAction::Delete,
            record,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.as_str(), self.record)
    }
}

/// Propagation state of an accepted change batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStatus {
    Pending,
    InSync,
}

/// What Route 53 returns for an accepted change batch (and for GetChange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    /// Without the `/change/` prefix.
    pub id: String,
    pub status: ChangeStatus,
}

/// The kind of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HealthCheckKind {
    Http,
    Https,
    HttpStrMatch,
    HttpsStrMatch,
    Tcp,
    Calculated,
    /// A kind this crate does not create (CLOUDWATCH_METRIC, RECOVERY_CONTROL, …).
    Other(String),
}

impl HealthCheckKind {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::HttpStrMatch => "HTTP_STR_MATCH",
            Self::HttpsStrMatch => "HTTPS_STR_MATCH",
            Self::Tcp => "TCP",
            Self::Calculated => "CALCULATED",
            Self::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "HTTP" => Self::Http,
            "HTTPS" => Self::Https,
            "HTTP_STR_MATCH" => Self::HttpStrMatch,
            "HTTPS_STR_MATCH" => Self::HttpsStrMatch,
            "TCP" => Self::Tcp,
            "CALCULATED" => Self::Calculated,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// The configuration of a health check, as created or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub kind: HealthCheckKind,
    pub fqdn: Option<String>,
    pub ip_address: Option<String>,
    pub port: Option<u16>,
    pub resource_path: Option<String>,
    pub search_string: Option<String>,
    /// 10 or 30 (seconds); fixed at creation.
    pub request_interval_s: Option<u32>,
    /// 1..=10.
    pub failure_threshold: Option<u32>,
    /// CALCULATED: how many children must be healthy.
    pub health_threshold: Option<u32>,
    /// CALCULATED: child health check ids (≤ 255).
    pub children: Vec<String>,
    pub inverted: bool,
    pub disabled: bool,
    pub enable_sni: Option<bool>,
    /// Checker regions (empty: Route 53's default set).
    pub regions: Vec<String>,
}

impl HealthCheckSpec {
    /// An HTTPS string-match check (the data plane's per-agent check).
    pub fn https_string_match(fqdn: &str, port: u16, path: &str, search: &str) -> Self {
        Self {
            kind: HealthCheckKind::HttpsStrMatch,
            fqdn: Some(fqdn.to_owned()),
            ip_address: None,
            port: Some(port),
            resource_path: Some(path.to_owned()),
            search_string: Some(search.to_owned()),
            request_interval_s: Some(10),
            failure_threshold: Some(3),
            health_threshold: None,
            children: Vec::new(),
            inverted: false,
            disabled: false,
            enable_sni: Some(true),
            regions: Vec::new(),
        }
    }

    /// A CALCULATED check over `children`, healthy when `threshold` of them are.
    pub fn calculated(threshold: u32, children: Vec<String>) -> Self {
        Self {
            kind: HealthCheckKind::Calculated,
            fqdn: None,
            ip_address: None,
            port: None,
            resource_path: None,
            search_string: None,
            request_interval_s: None,
            failure_threshold: None,
            health_threshold: Some(threshold),
            children,
            inverted: false,
            disabled: false,
            enable_sni: None,
            regions: Vec::new(),
        }
    }
}

/// A health check as Route 53 holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub id: String,
    pub caller_reference: String,
    /// Route 53 bumps it on every update (moto does not).
    pub version: i64,
    pub spec: HealthCheckSpec,
}

/// Resources that carry tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TagResource {
    HealthCheck,
    HostedZone,
}

impl TagResource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HealthCheck => "healthcheck",
            Self::HostedZone => "hostedzone",
        }
    }
}

/// Tags by resource id.
pub type TagsById = BTreeMap<String, BTreeMap<String, String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_route53_returns_them() {
        assert_eq!(normalize_name("App.Example.COM"), "app.example.com.");
        assert_eq!(normalize_name("app.example.com."), "app.example.com.");
        assert_eq!(normalize_name("\\052.example.com."), "*.example.com.");
        assert_eq!(normalize_name("a\\05"), "a\\05.");
    }

    #[test]
    fn values_are_sorted_and_deduplicated() {
        let a = RecordTarget::values(60, ["2.2.2.2", "1.1.1.1", "2.2.2.2"]);
        let b = RecordTarget::values(60, ["1.1.1.1", "2.2.2.2"]);
        assert_eq!(a, b);
        let r1 = RecordSet::new("App.example.com", "a", a);
        let r2 = RecordSet::new("app.example.com.", "A", b);
        assert_eq!(r1, r2);
        assert_eq!(r1.value_count(), 2);
    }
}
