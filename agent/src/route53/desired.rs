//! `DesiredRecords`: the full set of record sets a gate manages, validated, with the digest that
//! goes into the fence.
//!
//! The gate's *scope* is every (name, type) pair its desired records use: a record of such a
//! pair that is not desired is deleted by a fenced write; records of other pairs are never
//! touched.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

use super::fence::FENCE_LABEL;
use super::types::{normalize_name, RecordKey, RecordSet, RecordTarget, Routing};

const DIGEST_DOMAIN: &[u8] = b"quorumgate/route53/desired-records/v1";

/// Why a set of records cannot be a gate's desired state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    #[error("a gate must manage at least one record set")]
    Empty,
    #[error("{0}: name is not inside zone {1}")]
    OutsideZone(String, String),
    #[error("{0}: names starting with `{FENCE_LABEL}.` are reserved for fences")]
    Reserved(String),
    #[error("{0}: listed twice")]
    Duplicate(RecordKey),
    #[error("{0}: weighted and failover records need a set identifier")]
    MissingSetIdentifier(RecordKey),
    #[error("{0}: a set identifier needs a weighted or failover routing policy")]
    SetIdentifierWithoutRouting(RecordKey),
    #[error("{0}: routing policy not supported by the writer")]
    Unsupported(RecordKey),
    #[error("{0} {1}: records of one name and type must share one routing policy")]
    MixedRouting(String, String),
    #[error("{0} {1}: more than one {2} failover record")]
    DuplicateFailoverRole(String, String, &'static str),
    #[error("{0}: a record set needs at least one value")]
    NoValues(RecordKey),
}

/// The record sets one gate wants in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRecords {
    zone_name: String,
    records: BTreeMap<RecordKey, RecordSet>,
}

impl DesiredRecords {
    pub fn new(
        zone_name: &str,
        records: impl IntoIterator<Item = RecordSet>,
    ) -> Result<Self, DesiredError> {
        let zone_name = normalize_name(zone_name);
        let mut map = BTreeMap::new();
        for record in records {
            check_record(&zone_name, &record)?;
            let key = record.key().clone();
            if map.insert(key.clone(), record).is_some() {
                return Err(DesiredError::Duplicate(key));
            }
        }
        if map.is_empty() {
            return Err(DesiredError::Empty);
        }
        check_groups(&map)?;
        Ok(Self {
            zone_name,
            records: map,
        })
    }

    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// In key order.
    pub fn records(&self) -> impl Iterator<Item = &RecordSet> {
        self.records.values()
    }

    pub fn get(&self, key: &RecordKey) -> Option<&RecordSet> {
        self.records.get(key)
    }

    /// The (name, type) pairs this gate manages.
    pub fn scope(&self) -> BTreeSet<(String, String)> {
        self.records.keys().map(RecordKey::name_and_type).collect()
    }

    /// Distinct names in scope.
    pub fn names(&self) -> BTreeSet<String> {
        self.records.keys().map(|k| k.name().to_owned()).collect()
    }

    pub fn in_scope(&self, key: &RecordKey) -> bool {
        self.records
            .keys()
            .any(|k| k.name() == key.name() && k.record_type() == key.record_type())
    }

    /// True when the in-scope records of `current` are exactly the desired ones.
    pub fn matches<'a>(&self, current: impl IntoIterator<Item = &'a RecordSet>) -> bool {
        let mut seen = 0usize;
        for record in current {
            if !self.in_scope(record.key()) {
                continue;
            }
            if self.records.get(record.key()) != Some(record) {
                return false;
            }
            seen += 1;
        }
        seen == self.records.len()
    }

    /// Hex SHA-256 over a canonical, length-prefixed encoding of the zone and every record.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        put(&mut h, DIGEST_DOMAIN);
        put(&mut h, self.zone_name.as_bytes());
        for r in self.records.values() {
            put(&mut h, r.name().as_bytes());
            put(&mut h, r.record_type().as_bytes());
            put(&mut h, r.set_identifier().unwrap_or("").as_bytes());
            put(&mut h, r.routing().to_string().as_bytes());
            match r.target() {
                RecordTarget::Values { ttl, values } => {
                    put(&mut h, b"values");
                    put(&mut h, &ttl.to_be_bytes());
                    put(&mut h, &(values.len() as u64).to_be_bytes());
                    for v in values {
                        put(&mut h, v.as_bytes());
                    }
                }
                RecordTarget::Alias {
                    hosted_zone_id,
                    dns_name,
                    evaluate_target_health,
                } => {
                    put(&mut h, b"alias");
                    put(&mut h, hosted_zone_id.as_bytes());
                    put(&mut h, dns_name.as_bytes());
                    put(&mut h, &[u8::from(*evaluate_target_health)]);
                }
            }
            put(&mut h, r.health_check_id().unwrap_or("").as_bytes());
        }
        hex::encode(h.finalize())
    }
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn check_record(zone_name: &str, record: &RecordSet) -> Result<(), DesiredError> {
    let key = record.key();
    let name = key.name();
    if name != zone_name && !name.ends_with(&format!(".{zone_name}")) {
        return Err(DesiredError::OutsideZone(
            name.to_owned(),
            zone_name.to_owned(),
        ));
    }
    if name.starts_with(&format!("{FENCE_LABEL}.")) {
        return Err(DesiredError::Reserved(name.to_owned()));
    }
    match (record.routing(), key.set_identifier()) {
        (Routing::Unsupported(_), _) => return Err(DesiredError::Unsupported(key.clone())),
        (Routing::Simple, Some(_)) => {
            return Err(DesiredError::SetIdentifierWithoutRouting(key.clone()))
        }
        (Routing::Weighted { .. } | Routing::Failover(_), None) => {
            return Err(DesiredError::MissingSetIdentifier(key.clone()))
        }
        _ => {}
    }
    if let RecordTarget::Values { values, .. } = record.target() {
        if values.is_empty() {
            return Err(DesiredError::NoValues(key.clone()));
        }
    }
    Ok(())
}

fn check_groups(records: &BTreeMap<RecordKey, RecordSet>) -> Result<(), DesiredError> {
    let mut groups: BTreeMap<(String, String), Vec<&RecordSet>> = BTreeMap::new();
    for r in records.values() {
        groups.entry(r.key().name_and_type()).or_default().push(r);
    }
    for ((name, rtype), members) in groups {
        let kind = |r: &RecordSet| std::mem::discriminant(r.routing());
        if members.iter().any(|r| kind(r) != kind(members[0])) {
            return Err(DesiredError::MixedRouting(name, rtype));
        }
        for role in [
            super::types::FailoverRole::Primary,
            super::types::FailoverRole::Secondary,
        ] {
            let n = members
                .iter()
                .filter(|r| *r.routing() == Routing::Failover(role))
                .count();
            if n > 1 {
                return Err(DesiredError::DuplicateFailoverRole(
                    name,
                    rtype,
                    role.as_str(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route53::types::FailoverRole;

    fn weighted(set: &str, weight: u8, ip: &str) -> RecordSet {
        RecordSet::new("app.example.com", "A", RecordTarget::values(60, [ip]))
            .with_routing(set, Routing::Weighted { weight })
    }

    #[test]
    fn digest_is_order_insensitive_and_content_sensitive() {
        let a = DesiredRecords::new(
            "example.com",
            [weighted("eu", 100, "1.1.1.1"), weighted("us", 0, "2.2.2.2")],
        )
        .expect("valid");
        let b = DesiredRecords::new(
            "example.com.",
            [weighted("us", 0, "2.2.2.2"), weighted("eu", 100, "1.1.1.1")],
        )
        .expect("valid");
        let c = DesiredRecords::new(
            "example.com",
            [weighted("eu", 0, "1.1.1.1"), weighted("us", 100, "2.2.2.2")],
        )
        .expect("valid");
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn matches_only_looks_at_the_scope() {
        let desired =
            DesiredRecords::new("example.com", [weighted("eu", 100, "1.1.1.1")]).expect("valid");
        let other = RecordSet::new(
            "app.example.com",
            "TXT",
            RecordTarget::values(60, ["\"x\""]),
        );
        assert!(desired.matches([&weighted("eu", 100, "1.1.1.1"), &other]));
        assert!(!desired.matches([&weighted("eu", 50, "1.1.1.1")]));
        assert!(!desired.matches([
            &weighted("eu", 100, "1.1.1.1"),
            &weighted("us", 0, "2.2.2.2")
        ]));
        assert!(!desired.matches([&other]));
    }

    #[test]
    fn rejects_what_route53_or_the_fence_would_refuse() {
        let v = || RecordTarget::values(60, ["1.1.1.1"]);
        let cases: Vec<(Vec<RecordSet>, &str)> = vec![
            (vec![], "empty"),
            (vec![RecordSet::new("app.example.org", "A", v())], "outside"),
            (
                vec![RecordSet::new("_quorumgate.g.example.com", "TXT", v())],
                "reserved",
            ),
            (
                vec![weighted("eu", 1, "1.1.1.1"), weighted("eu", 2, "1.1.1.1")],
                "duplicate",
            ),
            (
                vec![RecordSet::new("a.example.com", "A", v()).with_routing("x", Routing::Simple)],
                "set id without routing",
            ),
            (
                vec![
                    weighted("eu", 1, "1.1.1.1"),
                    RecordSet::new("app.example.com", "A", v())
                        .with_routing("us", Routing::Failover(FailoverRole::Primary)),
                ],
                "mixed",
            ),
            (
                vec![
                    RecordSet::new("app.example.com", "A", v())
                        .with_routing("a", Routing::Failover(FailoverRole::Primary)),
                    RecordSet::new("app.example.com", "A", v())
                        .with_routing("b", Routing::Failover(FailoverRole::Primary)),
                ],
                "two primaries",
            ),
            (
                vec![RecordSet::new(
                    "a.example.com",
                    "A",
                    RecordTarget::values(60, Vec::<String>::new()),
                )],
                "no values",
            ),
        ];
        for (records, what) in cases {
            assert!(
                DesiredRecords::new("example.com", records).is_err(),
                "{what} accepted"
            );
        }
    }
}
