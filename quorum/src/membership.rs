//! The static member list. Quorum is counted over *configured* members, never reachable ones.

use std::collections::BTreeMap;

use crate::ids::AgentId;
use crate::signed::VerifyingKey;

/// One configured agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: AgentId,
    /// Free-form region label (`us-east-1`), for status and for gates.
    pub region: String,
    pub key: VerifyingKey,
}

/// Why a member list cannot form a quorum group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("no members configured")]
    Empty,
    #[error("member id {0} appears more than once")]
    DuplicateId(AgentId),
    #[error("members {0} and {1} share one public key")]
    DuplicateKey(AgentId, AgentId),
    #[error("{0} members configured; at most 255 are supported")]
    TooMany(usize),
}

/// The configured members and the quorum size Q = ⌊N/2⌋+1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    members: BTreeMap<AgentId, Member>,
    quorum: usize,
}

impl Membership {
    /// Validates a member list: non-empty, ids unique, keys unique (one key voting twice under
    /// two names would let one agent be a majority of two).
    pub fn new(members: Vec<Member>) -> Result<Self, MembershipError> {
        if members.is_empty() {
            return Err(MembershipError::Empty);
        }
        if members.len() > 255 {
            return Err(MembershipError::TooMany(members.len()));
        }
        let mut map: BTreeMap<AgentId, Member> = BTreeMap::new();
        for m in members {
            if let Some(other) = map.values().find(|o| o.key == m.key) {
                return Err(MembershipError::DuplicateKey(
                    other.id.clone(),
                    m.id.clone(),
                ));
            }
            if map.contains_key(&m.id) {
                return Err(MembershipError::DuplicateId(m.id));
            }
            map.insert(m.id.clone(), m);
        }
        let quorum = map.len() / 2 + 1;
        Ok(Self {
            members: map,
            quorum,
        })
    }

    /// Q = ⌊N/2⌋+1.
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// N, the number of configured members.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true for a constructed membership; here for clippy's `len_without_is_empty`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    #[must_use]
    pub fn get(&self, id: &AgentId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Members in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The member's rank in id order (0-based), used to stagger writers.
    #[must_use]
    pub fn rank(&self, id: &AgentId) -> Option<usize> {
        self.members.keys().position(|k| k == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::SigningKey;

    fn member(id: &str, seed: u8) -> Member {
        Member {
            id: AgentId::new(id).unwrap(),
            region: "r".into(),
            key: SigningKey::from_bytes(&[seed; 32]).verifying_key(),
        }
    }

    #[test]
    fn quorum_is_strict_majority_of_configured() {
        for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            let m = Membership::new((0..n).map(|i| member(&format!("a{i}"), i as u8)).collect())
                .unwrap();
            assert_eq!(m.quorum(), q, "N={n}");
        }
    }

    #[test]
    fn rejects_duplicates() {
        assert_eq!(Membership::new(vec![]), Err(MembershipError::Empty));
        assert!(matches!(
            Membership::new(vec![member("a", 1), member("a", 2)]),
            Err(MembershipError::DuplicateId(_))
        ));
        assert!(matches!(
            Membership::new(vec![member("a", 1), member("b", 1)]),
            Err(MembershipError::DuplicateKey(..))
        ));
    }
}
