//! Which deployment a signed operator command is meant for.
//!
//! One operator key may be listed in several clusters (staging and production, two regions'
//! pairs). A command names its gate by id only, and gate ids repeat across clusters, so the
//! command also carries a [`ClusterId`]: the cluster's configured name and a digest of its
//! member list. A command saved for one cluster and sent to another is refused there, and so
//! is a command signed before the member list changed (a member added, removed, or re-keyed).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::membership::Membership;

/// Prefix of the member-list digest, so it can never equal a digest of anything else.
const MEMBERS_DOMAIN_TAG: &[u8] = b"quorumgate/members/v1\0";

/// A cluster's identity as signed into operator commands: `cluster.name` and the SHA-256 of
/// its member list (ids and public keys, in id order).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId {
    pub name: String,
    pub members_sha256: [u8; 32],
}

impl ClusterId {
    /// The identity of the cluster `name` made of `membership`.
    #[must_use]
    pub fn new(name: impl Into<String>, membership: &Membership) -> Self {
        Self {
            name: name.into(),
            members_sha256: members_digest(membership),
        }
    }

    /// The member-list digest, hex.
    #[must_use]
    pub fn members_hex(&self) -> String {
        hex::encode(self.members_sha256)
    }
}

/// SHA-256 of `tag ‖ (len:u8 id key:[32])*` over the members in id order: every member's id
/// and key, unambiguously (ids are at most 64 bytes, so one length byte frames each).
#[must_use]
pub fn members_digest(membership: &Membership) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(MEMBERS_DOMAIN_TAG);
    for m in membership.iter() {
        let id = m.id.as_str().as_bytes();
        h.update([u8::try_from(id.len()).unwrap_or(u8::MAX)]);
        h.update(id);
        h.update(m.key.as_bytes());
    }
    h.finalize().into()
}

impl fmt::Display for ClusterId {
    /// `"app-prod" (members 1a2b3c4d5e6f)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (members {})", self.name, &self.members_hex()[..12])
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AgentId;
    use crate::membership::Member;
    use crate::signed::SigningKey;

    fn membership(members: &[(&str, u8)]) -> Membership {
        Membership::new(
            members
                .iter()
                .map(|(id, seed)| Member {
                    id: AgentId::new(*id).unwrap(),
                    region: format!("r{seed}"),
                    key: SigningKey::from_bytes(&[*seed; 32]).verifying_key(),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_identity_follows_names_ids_and_keys_not_order_or_regions() {
        let base = ClusterId::new("prod", &membership(&[("a", 1), ("b", 2)]));
        assert_eq!(
            base,
            ClusterId::new("prod", &membership(&[("b", 2), ("a", 1)])),
            "file order does not matter"
        );
        for other in [
            ClusterId::new("staging", &membership(&[("a", 1), ("b", 2)])),
            ClusterId::new("prod", &membership(&[("a", 1), ("b", 3)])),
            ClusterId::new("prod", &membership(&[("a", 1), ("c", 2)])),
            ClusterId::new("prod", &membership(&[("a", 1)])),
            ClusterId::new("prod", &membership(&[("a", 1), ("b", 2), ("c", 3)])),
        ] {
            assert_ne!(base, other, "{other}");
        }
        let shown = base.to_string();
        assert!(shown.starts_with("\"prod\" (members "), "{shown}");
    }
}
