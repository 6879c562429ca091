//! What should exist in Route 53, as a pure function of the shared config.
//!
//! For every check a data-plane gate's targets use (each check once, however many gates use
//! it):
//! - one string-match health check per member on `<health_url>/v1/health/<check>`
//!   (`HTTPS_STR_MATCH` for an https URL, `HTTP_STR_MATCH` for http; FQDN, or IPAddress when
//!   the host is an IP literal; search string `HEALTHY`; interval, failure threshold and
//!   regions from the gate's `health_checks`), and
//! - one CALCULATED check over them, healthy when `quorum` of them are. Its children are agent
//!   checks only: one level, never a calculated check under a calculated one.
//!
//! The records that carry the calculated checks come from
//! [`crate::gates::records::data_plane_records`] once their ids are known.

use std::collections::BTreeMap;
use std::net::IpAddr;

use config::{GateConfig, HealthCheckSettings, MemberConfig, Plane, SharedConfig};
use quorum::CheckId;
use url::{Host, Url};

use super::identity::ObjectId;
use crate::route53::{HealthCheckKind, HealthCheckSpec};

/// What the agents' health endpoint answers when the quorum decision is healthy (a 200 with
/// `HEALTHY …`; unhealthy is a 503 with `UNHEALTHY …`, and string-match checks also need a
/// 2xx or 3xx status).
pub const SEARCH_STRING: &str = "HEALTHY";
/// Route 53: a calculated health check has at most 255 children.
pub const MAX_CHILDREN: usize = 255;
/// Route 53: ResourcePath is at most 255 characters.
pub const MAX_RESOURCE_PATH: usize = 255;
/// Route 53's default quota of health checks per account.
pub const DEFAULT_HEALTH_CHECK_QUOTA: usize = 200;
/// The checker regions Route 53 uses when none are given.
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

/// Why the config cannot be turned into Route 53 objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("members[{member}].health_url is missing; data-plane gate {gate} needs every member's public health URL (Route 53's checkers call it)")]
    MissingHealthUrl { member: String, gate: String },
    #[error("members[{member}].health_url {url}: {why}")]
    BadHealthUrl {
        member: String,
        url: String,
        why: &'static str,
    },
    #[error("check {check} is used by data-plane gates {first} and {second} with different health_checks settings; Route 53 gets one health check per agent and check, so make them equal")]
    ConflictingSettings {
        check: String,
        first: String,
        second: String,
    },
    #[error(
        "check {check}: {children} children; a calculated health check has at most {MAX_CHILDREN}"
    )]
    TooManyChildren { check: String, children: usize },
    #[error("gate {gate}: health_checks.{field}: {why}")]
    BadSettings {
        gate: String,
        field: &'static str,
        why: &'static str,
    },
}

/// One health check that should exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCheck {
    pub object: ObjectId,
    /// The settings to send; for a calculated check without its `children` (ids are known
    /// only once they exist).
    pub spec: HealthCheckSpec,
    /// Calculated: the agent checks it aggregates, in object order.
    pub children: Vec<ObjectId>,
}

impl DesiredCheck {
    /// The settings with the children's ids filled in by `id_of`.
    #[must_use]
    pub fn resolve(&self, mut id_of: impl FnMut(&ObjectId) -> String) -> HealthCheckSpec {
        let mut spec = self.spec.clone();
        spec.children = self.children.iter().map(&mut id_of).collect();
        spec
    }
}

/// Everything `provision` wants, computed from the config alone.
#[derive(Clone, Debug)]
pub struct Desired {
    pub cluster: String,
    /// Members, and Q = ⌊N/2⌋+1, the calculated checks' threshold.
    pub members: usize,
    pub quorum: usize,
    /// In [`ObjectId`] order: agent checks, then calculated ones.
    pub checks: BTreeMap<ObjectId, DesiredCheck>,
    /// Every gate, data and control plane, in config order.
    pub gates: Vec<GateConfig>,
    /// Valid but probably wrong (unreachable addresses, quota).
    pub warnings: Vec<String>,
}

impl Desired {
    /// The calculated check of `check`'s data-plane records.
    #[must_use]
    pub fn calculated(check: &CheckId) -> ObjectId {
        ObjectId::Calculated {
            check: check.clone(),
        }
    }
}

/// Computes the desired health checks of every data-plane gate. Reports every problem.
pub fn desired(shared: &SharedConfig) -> Result<Desired, Vec<ModelError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    // check -> (gate that first used it, its settings)
    let mut settings: BTreeMap<CheckId, (String, &HealthCheckSettings)> = BTreeMap::new();
    for gate in shared.gates.iter().filter(|g| g.plane == Plane::Data) {
        let gate_id = gate.spec.id().to_string();
        if let Err(e) = check_settings(&gate_id, &gate.health_checks) {
            errors.push(e);
        }
        for target in gate.spec.targets() {
            match settings.get(&target.check) {
                Some((first, s)) if **s != gate.health_checks => {
                    errors.push(ModelError::ConflictingSettings {
                        check: target.check.to_string(),
                        first: first.clone(),
                        second: gate_id.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    settings.insert(target.check.clone(), (gate_id.clone(), &gate.health_checks));
                }
            }
        }
    }

    let mut members: Vec<&MemberConfig> = shared.members.iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let quorum = shared.membership.quorum();
    let mut checks = BTreeMap::new();
    let mut url_errors = BTreeMap::new();
    for (check, (gate, hc)) in &settings {
        if members.len() > MAX_CHILDREN {
            errors.push(ModelError::TooManyChildren {
                check: check.to_string(),
                children: members.len(),
            });
            continue;
        }
        let mut children = Vec::with_capacity(members.len());
        for m in &members {
            let object = ObjectId::Agent {
                check: check.clone(),
                member: m.id.clone(),
            };
            match agent_spec(m, check, hc, gate) {
                Ok(spec) => {
                    children.push(object.clone());
                    checks.insert(
                        object.clone(),
                        DesiredCheck {
                            object,
                            spec,
                            children: Vec::new(),
                        },
                    );
                }
                // One error per member, not one per member and check.
                Err(e) => {
                    url_errors.entry(m.id.clone()).or_insert(e);
                }
            }
        }
        let object = Desired::calculated(check);
        let threshold = u32::try_from(quorum).unwrap_or(u32::MAX);
        checks.insert(
            object.clone(),
            DesiredCheck {
                object,
                spec: HealthCheckSpec::calculated(threshold, Vec::new()),
                children,
            },
        );
    }
    errors.extend(url_errors.into_values());
    if !errors.is_empty() {
        return Err(errors);
    }

    for m in &members {
        let ip = match m.health_url.as_ref().and_then(Url::host) {
            Some(Host::Ipv4(a)) => IpAddr::V4(a),
            Some(Host::Ipv6(a)) => IpAddr::V6(a),
            _ => continue,
        };
        if !is_public(ip) && !checks.is_empty() {
            warnings.push(format!(
                "members[{}].health_url uses {ip}, which Route 53's health checkers cannot reach (and CreateHealthCheck refuses): use a public address or name",
                m.id
            ));
        }
    }
    if checks.len() > DEFAULT_HEALTH_CHECK_QUOTA {
        warnings.push(format!(
            "{} health checks wanted; Route 53's default quota is {DEFAULT_HEALTH_CHECK_QUOTA} per account (ask AWS for more before provisioning)",
            checks.len()
        ));
    }
    Ok(Desired {
        cluster: shared.cluster.name.clone(),
        members: members.len(),
        quorum,
        checks,
        gates: shared.gates.clone(),
        warnings,
    })
}

fn check_settings(gate: &str, hc: &HealthCheckSettings) -> Result<(), ModelError> {
    let bad = |field, why| ModelError::BadSettings {
        gate: gate.to_owned(),
        field,
        why,
    };
    if !matches!(hc.request_interval_s, 10 | 30) {
        return Err(bad("interval", "Route 53 checks every 10 or 30 seconds"));
    }
    if !(1..=10).contains(&hc.failure_threshold) {
        return Err(bad("failure_threshold", "must be 1..=10"));
    }
    if !hc.regions.is_empty() && hc.regions.len() < 3 {
        return Err(bad(
            "regions",
            "Route 53 needs at least 3 checker regions (or none for its default set)",
        ));
    }
    Ok(())
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation())
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80)
        }
    }
}

/// The string-match check of `member`'s health endpoint for `check`.
fn agent_spec(
    member: &MemberConfig,
    check: &CheckId,
    hc: &HealthCheckSettings,
    gate: &str,
) -> Result<HealthCheckSpec, ModelError> {
    let url = member
        .health_url
        .as_ref()
        .ok_or_else(|| ModelError::MissingHealthUrl {
            member: member.id.to_string(),
            gate: gate.to_owned(),
        })?;
    let bad = |why| ModelError::BadHealthUrl {
        member: member.id.to_string(),
        url: url.to_string(),
        why,
    };
    let kind = match url.scheme() {
        "https" => HealthCheckKind::HttpsStrMatch,
        "http" => HealthCheckKind::HttpStrMatch,
        _ => return Err(bad("the scheme must be http or https")),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment"));
    }
    let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
    let (fqdn, ip_address) = match url.host() {
        Some(Host::Domain(d)) => (Some(d.trim_end_matches('.').to_ascii_lowercase()), None),
        Some(Host::Ipv4(a)) => (None, Some(a.to_string())),
        Some(Host::Ipv6(a)) => (None, Some(a.to_string())),
        None => return Err(bad("no host")),
    };
    let path = format!("{}/v1/health/{check}", url.path().trim_end_matches('/'));
    if path.len() > MAX_RESOURCE_PATH {
        return Err(bad(
            "the health path would exceed Route 53's 255 characters",
        ));
    }
    let https = kind == HealthCheckKind::HttpsStrMatch;
    let mut regions = hc.regions.clone();
    regions.sort();
    regions.dedup();
    Ok(HealthCheckSpec {
        kind,
        enable_sni: https.then_some(fqdn.is_some()),
        fqdn,
        ip_address,
        port: Some(port),
        resource_path: Some(path),
        search_string: Some(SEARCH_STRING.to_owned()),
        request_interval_s: Some(hc.request_interval_s),
        failure_threshold: Some(hc.failure_threshold),
        health_threshold: None,
        children: Vec::new(),
        inverted: false,
        disabled: false,
        regions,
    })
}
