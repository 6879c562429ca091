//! What `provision` owns and how it recognises it: every health check it creates carries the
//! cluster tag and a stable object identity, and a CallerReference derived from both and from
//! the exact settings sent.
//!
//! - Ownership is the `quorumgate:cluster` tag: a health check without it (or with another
//!   cluster's) is foreign and never updated or deleted.
//! - Identity is the `quorumgate:object` tag: `agent/<member>/<check>` (one per agent and
//!   check) or `calculated/<check>`. It survives replacement, so a replaced check is found as
//!   "the same object with other settings".
//! - The CallerReference is `qg-<52 hex>-<generation>`: SHA-256 over the cluster, the identity
//!   and the settings. A create that succeeded but whose answer (or tagging) was lost is
//!   retried with the same reference, and Route 53 answers with the check it already made
//!   instead of a second one. Route 53 also remembers the references of *deleted* checks and
//!   refuses them (`HealthCheckAlreadyExists`), so returning to settings used before moves to
//!   the next generation.

use std::collections::BTreeMap;
use std::fmt;

use quorum::{AgentId, CheckId};
use sha2::{Digest as _, Sha256};

use crate::route53::HealthCheckSpec;

/// The tag that says which cluster's `provision` owns a health check.
pub const TAG_CLUSTER: &str = "quorumgate:cluster";
/// The tag that says which object of the plan a health check is.
pub const TAG_OBJECT: &str = "quorumgate:object";
/// The console shows this tag as the health check's name.
pub const TAG_NAME: &str = "Name";

/// Route 53 allows 64 characters.
pub const MAX_CALLER_REFERENCE: usize = 64;
/// How many generations a CallerReference may go through before `provision` gives up.
pub const MAX_GENERATIONS: u32 = 32;

const REFERENCE_DOMAIN: &[u8] = b"quorumgate/provision/caller-reference/v1";

/// One health check of the plan.
///
/// Ordered agent checks first (by check, then member), then calculated checks: the order in
/// which they are created, since a calculated check needs its children's ids.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectId {
    /// The HTTPS (or HTTP) string-match check of one agent's `/v1/health/{check}`.
    Agent { check: CheckId, member: AgentId },
    /// The CALCULATED check over every agent's check of `check`.
    Calculated { check: CheckId },
}

impl ObjectId {
    #[must_use]
    pub fn check(&self) -> &CheckId {
        match self {
            Self::Agent { check, .. } | Self::Calculated { check } => check,
        }
    }

    /// Parses the `quorumgate:object` tag value.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let id = match (parts.next()?, parts.next()?, parts.next()) {
            ("agent", member, Some(check)) => Self::Agent {
                check: CheckId::new(check).ok()?,
                member: AgentId::new(member).ok()?,
            },
            ("calculated", check, None) => Self::Calculated {
                check: CheckId::new(check).ok()?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(id)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent { check, member } => write!(f, "agent/{member}/{check}"),
            Self::Calculated { check } => write!(f, "calculated/{check}"),
        }
    }
}

/// Whose a health check is, by its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// No cluster tag, or another cluster's: never touched.
    Foreign,
    /// Ours, and this object of the plan (which may no longer be configured).
    Owned(ObjectId),
    /// Ours by the cluster tag, but the object tag is missing or unreadable: reported, never
    /// touched (deleting what we cannot identify is not safe).
    Unidentified(Option<String>),
}

/// Classifies a health check by its tags.
#[must_use]
pub fn ownership(cluster: &str, tags: &BTreeMap<String, String>) -> Ownership {
    if tags.get(TAG_CLUSTER).map(String::as_str) != Some(cluster) {
        return Ownership::Foreign;
    }
    match tags.get(TAG_OBJECT) {
        Some(v) => ObjectId::parse(v).map_or_else(
            || Ownership::Unidentified(Some(v.clone())),
            Ownership::Owned,
        ),
        None => Ownership::Unidentified(None),
    }
}

/// The tags `provision` puts on the health check of `object`.
#[must_use]
pub fn tags(cluster: &str, object: &ObjectId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_CLUSTER.to_owned(), cluster.to_owned()),
        (TAG_OBJECT.to_owned(), object.to_string()),
        (
            TAG_NAME.to_owned(),
            format!("quorumgate {cluster} {object}"),
        ),
    ])
}

/// The CallerReference for creating `object` with exactly `spec` (children included), in
/// `generation` (0 first; the next one after Route 53 refused a reference it remembers).
#[must_use]
pub fn caller_reference(
    cluster: &str,
    object: &ObjectId,
    spec: &HealthCheckSpec,
    generation: u32,
) -> String {
    let mut h = Sha256::new();
    put(&mut h, REFERENCE_DOMAIN);
    put(&mut h, cluster.as_bytes());
    put(&mut h, object.to_string().as_bytes());
    put_spec(&mut h, spec);
    let digest = hex::encode(h.finalize());
    format!("qg-{}-{generation}", &digest[..52])
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn put_opt(h: &mut Sha256, value: Option<String>) {
    match value {
        Some(v) => {
            h.update([1]);
            put(h, v.as_bytes());
        }
        None => h.update([0]),
    }
}

/// Every field of the request, in a fixed order, length-prefixed.
fn put_spec(h: &mut Sha256, s: &HealthCheckSpec) {
    put(h, s.kind.as_str().as_bytes());
    put_opt(h, s.fqdn.clone());
    put_opt(h, s.ip_address.clone());
    put_opt(h, s.port.map(|p| p.to_string()));
    put_opt(h, s.resource_path.clone());
    put_opt(h, s.search_string.clone());
    put_opt(h, s.request_interval_s.map(|v| v.to_string()));
    put_opt(h, s.failure_threshold.map(|v| v.to_string()));
    put_opt(h, s.health_threshold.map(|v| v.to_string()));
    h.update((s.children.len() as u64).to_be_bytes());
    for c in &s.children {
        put(h, c.as_bytes());
    }
    h.update([u8::from(s.inverted), u8::from(s.disabled)]);
    put_opt(h, s.enable_sni.map(|v| v.to_string()));
    h.update((s.regions.len() as u64).to_be_bytes());
    for r in &s.regions {
        put(h, r.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(member: &str, check: &str) -> ObjectId {
        ObjectId::Agent {
            check: CheckId::new(check).expect("check"),
            member: AgentId::new(member).expect("member"),
        }
    }

    #[test]
    fn object_ids_round_trip_through_their_tag() {
        for id in [
            agent("use1", "app-use1"),
            ObjectId::Calculated {
                check: CheckId::new("db.primary").expect("check"),
            },
        ] {
            assert_eq!(ObjectId::parse(&id.to_string()), Some(id));
        }
        for bad in [
            "",
            "agent/x",
            "agent/a/b/c",
            "calculated/a/b",
            "other/a",
            "agent//b",
        ] {
            assert_eq!(ObjectId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn agent_checks_sort_before_calculated_ones() {
        let c = ObjectId::Calculated {
            check: CheckId::new("a").expect("check"),
        };
        assert!(agent("zzz", "zzz") < c);
        assert!(agent("a", "x") < agent("b", "x"));
    }

    #[test]
    fn ownership_needs_our_cluster_tag() {
        let mut t = tags("prod", &agent("use1", "app"));
        assert_eq!(
            ownership("prod", &t),
            Ownership::Owned(agent("use1", "app"))
        );
        assert_eq!(ownership("staging", &t), Ownership::Foreign);
        assert_eq!(ownership("prod", &BTreeMap::new()), Ownership::Foreign);
        t.insert(TAG_OBJECT.into(), "junk".into());
        assert_eq!(
            ownership("prod", &t),
            Ownership::Unidentified(Some("junk".into()))
        );
        t.remove(TAG_OBJECT);
        assert_eq!(ownership("prod", &t), Ownership::Unidentified(None));
    }

    #[test]
    fn caller_references_are_short_deterministic_and_spec_sensitive() {
        let spec =
            HealthCheckSpec::https_string_match("a.example.com", 443, "/v1/health/x", "HEALTHY");
        let id = agent("use1", "x");
        let r0 = caller_reference("prod", &id, &spec, 0);
        assert_eq!(r0, caller_reference("prod", &id, &spec, 0));
        assert!(r0.len() <= MAX_CALLER_REFERENCE, "{r0}");
        assert!(r0.starts_with("qg-") && r0.ends_with("-0"), "{r0}");
        let longest = caller_reference("prod", &id, &spec, MAX_GENERATIONS);
        assert!(longest.len() <= MAX_CALLER_REFERENCE, "{longest}");
        assert_ne!(r0, caller_reference("prod", &id, &spec, 1));
        assert_ne!(r0, caller_reference("staging", &id, &spec, 0));
        assert_ne!(r0, caller_reference("prod", &agent("use2", "x"), &spec, 0));
        let mut other = spec.clone();
        other.request_interval_s = Some(30);
        assert_ne!(r0, caller_reference("prod", &id, &other, 0));
    }
}
