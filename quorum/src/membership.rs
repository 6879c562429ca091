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

    /// `me`'s place among the members it sees as live (`live[id]`), in rank order: 0 is the
    /// preferred writer, who goes first; the others wait rank × `writer_stagger`. A member
    /// whose ballots expired does not hold a place, so a dead preferred writer delays no one.
    /// This is liveness only: the fence, not the order, keeps two writers from both landing.
    #[must_use]
    pub fn writer_rank(&self, me: &AgentId, live: &BTreeMap<AgentId, bool>) -> usize {
        let Some(mine) = self.rank(me) else {
            return 0;
        };
        live.iter()
            .filter(|(id, is_live)| **is_live && self.rank(id).is_some_and(|r| r < mine))
            .count()
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
    fn writer_rank_counts_only_live_members_ranked_before_me() {
        let m = Membership::new(vec![
            member("euw1", 1),
            member("use1", 2),
            member("usw2", 3),
        ])
        .unwrap();
        let id = |s: &str| AgentId::new(s).unwrap();
        let live = |flags: [bool; 3]| -> BTreeMap<AgentId, bool> {
            ["euw1", "use1", "usw2"]
                .iter()
                .map(|s| id(s))
                .zip(flags)
                .collect()
        };
        let all = live([true; 3]);
        assert_eq!(m.writer_rank(&id("euw1"), &all), 0, "the preferred writer");
        assert_eq!(m.writer_rank(&id("use1"), &all), 1);
        assert_eq!(m.writer_rank(&id("usw2"), &all), 2);
        // euw1's ballots expired at use1: use1 goes first, usw2 second.
        let no_euw1 = live([false, true, true]);
        assert_eq!(m.writer_rank(&id("use1"), &no_euw1), 0);
        assert_eq!(m.writer_rank(&id("usw2"), &no_euw1), 1);
        // Members later in rank never delay me; strangers are not members.
        assert_eq!(m.writer_rank(&id("euw1"), &live([true, false, false])), 0);
        let mut stranger = all.clone();
        stranger.insert(id("aaa"), true);
        assert_eq!(m.writer_rank(&id("euw1"), &stranger), 0);
        assert_eq!(m.writer_rank(&id("nobody"), &all), 0);
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
